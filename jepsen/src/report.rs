//! What a run leaves behind: `results.json` (valid?, counts per anomaly,
//! recovery times) and `report.html` with SVG plots of latency and
//! throughput over time, nemesis intervals shaded.

use std::fmt::Write as _;

use serde::Serialize;

use crate::checker::Analysis;
use crate::history::{Event, Op, OpType, NEMESIS};

/// A fault as it happened: [start, end) in seconds, what and whom.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    pub start: f64,
    pub end: f64,
    pub fault: String,
    pub targets: Vec<u64>,
    /// Seconds from the heal until every writer had a push acknowledged
    /// that it started after the heal.
    pub recovered_after: Option<f64>,
}

/// One completed client operation.
struct Done {
    process: i64,
    invoked: f64,
    latency: f64,
    kind: OpType,
    add: bool,
}

/// Every client operation's invocation paired with its completion, in
/// order of completion.
fn completed(events: &[Event]) -> Vec<Done> {
    let mut open = std::collections::HashMap::new();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.process != NEMESIS) {
        if e.kind == OpType::Invoke {
            open.insert(e.process, e.time);
        } else if let Some(t) = open.remove(&e.process) {
            let add = matches!(e.op, Op::Add { .. });
            out.push(Done { process: e.process, invoked: t, latency: e.time - t, kind: e.kind, add });
        }
    }
    out
}

/// The nemesis's intervals, with the recovery after each heal.
pub fn intervals(events: &[Event]) -> Vec<Interval> {
    // Per writer: (invoked, acknowledged) of each acknowledged push.
    let mut acks: std::collections::BTreeMap<i64, Vec<(f64, f64)>> = Default::default();
    for d in completed(events).into_iter().filter(|d| d.add && d.kind == OpType::Ok) {
        acks.entry(d.process).or_default().push((d.invoked, d.invoked + d.latency));
    }
    let recovered = |heal: f64| -> Option<f64> {
        let mut worst: f64 = 0.0;
        for a in acks.values() {
            let first = a.iter().find(|(inv, _)| *inv >= heal)?;
            worst = worst.max(first.1 - heal);
        }
        Some(worst)
    };
    let mut out: Vec<Interval> = Vec::new();
    for e in events.iter().filter(|e| e.process == NEMESIS) {
        let Op::Nemesis { fault, targets, start } = &e.op else { continue };
        if *start {
            out.push(Interval { start: e.time, end: f64::NAN, fault: fault.clone(), targets: targets.clone(), recovered_after: None });
        } else if let Some(i) = out.iter_mut().rev().find(|i| i.end.is_nan()) {
            i.end = e.time;
            i.recovered_after = recovered(e.time);
        }
    }
    let last = events.last().map_or(0.0, |e| e.time);
    for i in &mut out {
        if i.end.is_nan() {
            i.end = last;
        }
    }
    out
}

/// Recovery times after heals: (p50, max) in seconds.
pub fn recovery(intervals: &[Interval]) -> Option<(f64, f64)> {
    let mut r: Vec<f64> = intervals.iter().filter_map(|i| i.recovered_after).collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    Some((r[r.len() / 2], r[r.len() - 1]))
}

/// Everything `results.json` holds.
#[derive(Serialize)]
pub struct Results<'a> {
    pub valid: bool,
    pub seed: u64,
    pub command: String,
    pub operations: OpCounts,
    pub analysis: &'a Analysis,
    pub faults: &'a [Interval],
    pub recovery_p50_seconds: Option<f64>,
    pub recovery_max_seconds: Option<f64>,
}

#[derive(Serialize, Default)]
pub struct OpCounts {
    pub adds: usize,
    pub reads: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

pub fn op_counts(events: &[Event]) -> OpCounts {
    let mut c = OpCounts::default();
    for d in completed(events) {
        if d.add {
            c.adds += 1;
        } else {
            c.reads += 1;
        }
        match d.kind {
            OpType::Ok => c.ok += 1,
            OpType::Fail => c.fail += 1,
            _ => c.info += 1,
        }
    }
    c
}

const W: f64 = 1000.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

fn color(k: OpType) -> &'static str {
    match k {
        OpType::Ok => "#2a9d3a",
        OpType::Fail => "#d62828",
        _ => "#f4a100",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The shaded nemesis intervals and the time axis of a plot.
fn frame(svg: &mut String, span: f64, intervals: &[Interval], y_label: &str) {
    let x = |t: f64| PAD + t / span * (W - 2.0 * PAD);
    for i in intervals {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{PAD}" width="{:.1}" height="{:.1}" fill="#e63946" fill-opacity="0.15"><title>{} {:?} ({:.1}–{:.1} s)</title></rect><text x="{:.1}" y="{:.1}" font-size="10" fill="#a4161a">{}</text>"##,
            x(i.start),
            (x(i.end) - x(i.start)).max(1.0),
            H - 2.0 * PAD,
            esc(&i.fault),
            i.targets,
            i.start,
            i.end,
            x(i.start) + 2.0,
            PAD - 4.0,
            esc(&i.fault)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#333"/><text x="{cx}" y="{ty}" font-size="12" text-anchor="middle">time (s)</text><text x="12" y="{cy}" font-size="12" transform="rotate(-90 12 {cy})" text-anchor="middle">{y_label}</text>"##,
        b = H - PAD,
        r = W - PAD,
        cx = W / 2.0,
        ty = H - 12.0,
        cy = H / 2.0,
    );
    let step = (span / 10.0).max(1.0).ceil();
    let mut t = 0.0;
    while t <= span {
        let _ = write!(svg, r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{t:.0}</text>"##, x(t), H - PAD + 14.0);
        t += step;
    }
}

/// Latency of every operation over time (log scale), by outcome; adds as
/// circles, reads as squares.
fn latency_svg(done: &[Done], span: f64, intervals: &[Interval]) -> String {
    let mut svg = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"##);
    frame(&mut svg, span, intervals, "latency (ms, log)");
    let (lo, hi) = (1.0f64.log10(), 100_000.0f64.log10());
    let y = |ms: f64| H - PAD - (ms.max(1.0).log10() - lo) / (hi - lo) * (H - 2.0 * PAD);
    for ms in [1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let _ = write!(svg, r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{ms}</text>"##, PAD - 4.0, y(ms) + 3.0);
    }
    for d in done {
        let (cx, cy) = (PAD + d.invoked / span * (W - 2.0 * PAD), y(d.latency * 1000.0));
        if d.add {
            let _ = write!(svg, r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="1.6" fill="{}"/>"##, color(d.kind));
        } else {
            let _ = write!(svg, r##"<rect x="{:.1}" y="{:.1}" width="4" height="4" fill="{}"/>"##, cx - 2.0, cy - 2.0, color(d.kind));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Completed pushes per second, by outcome.
fn throughput_svg(done: &[Done], span: f64, intervals: &[Interval]) -> String {
    let mut svg = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"##);
    frame(&mut svg, span, intervals, "pushes / s");
    let bins = span.ceil().max(1.0) as usize;
    let mut series = [vec![0usize; bins + 1], vec![0usize; bins + 1], vec![0usize; bins + 1]];
    for d in done.iter().filter(|d| d.add) {
        let i = ((d.invoked + d.latency) as usize).min(bins);
        let k = match d.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        series[k][i] += 1;
    }
    let max = series.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let _ = write!(svg, r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{max}</text>"##, PAD - 4.0, PAD + 3.0);
    for (k, kind) in [OpType::Ok, OpType::Fail, OpType::Info].into_iter().enumerate() {
        let pts: Vec<String> = series[k]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let x = PAD + (i as f64 + 0.5) / span * (W - 2.0 * PAD);
                let y = H - PAD - *n as f64 / max * (H - 2.0 * PAD);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(svg, r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"##, pts.join(" "), color(kind));
    }
    svg.push_str("</svg>");
    svg
}

/// `report.html`: the verdict, the counts, the plots and the faults.
pub fn html(events: &[Event], results: &Results) -> String {
    let done = completed(events);
    let span = events.last().map_or(1.0, |e| e.time).max(1.0);
    let verdict = if results.valid { "<b style='color:#2a9d3a'>valid</b>" } else { "<b style='color:#d62828'>INVALID</b>" };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset='utf-8'><title>Balsa jepsen run</title><style>body{{font-family:sans-serif;margin:20px}}td,th{{padding:2px 8px;text-align:left}}</style></head><body><h1>Balsa jepsen run: {verdict}</h1><p><code>{}</code><br>seed {}</p>",
        esc(&results.command),
        results.seed
    );
    let a = results.analysis;
    let _ = write!(
        h,
        "<h2>Elements</h2><table><tr><th>attempted</th><td>{}</td></tr><tr><th>acknowledged</th><td>{}</td></tr><tr><th>failed</th><td>{}</td></tr><tr><th>indeterminate</th><td>{}</td></tr>",
        a.attempted, a.acknowledged, a.failed, a.indeterminate
    );
    for (k, n) in &a.counts {
        let _ = write!(h, "<tr><th>{k}</th><td>{n}</td></tr>");
    }
    h.push_str("</table>");
    if !a.examples.is_empty() {
        h.push_str("<h3>Examples</h3><ul>");
        for x in &a.examples {
            let _ = write!(h, "<li>{}: {}</li>", x.kind, esc(&x.detail));
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<h2>Latency</h2><p>green ok, red fail, orange indeterminate; circles pushes, squares reads; shaded: faults.</p>{}<h2>Throughput</h2>{}",
        latency_svg(&done, span, results.faults),
        throughput_svg(&done, span, results.faults)
    );
    h.push_str("<h2>Faults</h2><table><tr><th>start (s)</th><th>end (s)</th><th>fault</th><th>nodes</th><th>next ack after heal (s)</th></tr>");
    for i in results.faults {
        let rec = i.recovered_after.map_or("—".to_string(), |r| format!("{r:.2}"));
        let _ = write!(h, "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:?}</td><td>{rec}</td></tr>", i.start, i.end, esc(&i.fault), i.targets);
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Element;

    fn ev(time: f64, process: i64, kind: OpType, op: Op) -> Event {
        Event { time, process, kind, op, error: None }
    }

    #[test]
    fn recovery_is_measured_from_each_heal_until_every_writer_is_acknowledged_again() {
        let add = Op::Add { tenant: "t".into(), stream: "s".into(), elements: vec![Element { id: 1, ts: 1 }] };
        let nem = |start| Op::Nemesis { fault: "kill".into(), targets: vec![1], start };
        let events = vec![
            ev(1.0, NEMESIS, OpType::Info, nem(true)),
            ev(1.5, 0, OpType::Invoke, add.clone()),
            ev(3.0, NEMESIS, OpType::Info, nem(false)),
            ev(4.5, 0, OpType::Ok, add.clone()),
            ev(4.6, 0, OpType::Invoke, add.clone()),
            ev(5.0, 0, OpType::Ok, add),
        ];
        let iv = intervals(&events);
        assert_eq!(iv.len(), 1);
        // The push started before the heal does not count.
        assert_eq!((iv[0].start, iv[0].end, iv[0].recovered_after), (1.0, 3.0, Some(2.0)));
        assert_eq!(recovery(&iv), Some((2.0, 2.0)));
        let counts = op_counts(&events);
        assert_eq!((counts.adds, counts.ok), (2, 2));
    }
}
