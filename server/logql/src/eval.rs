//! Evaluation of metric queries over a grid of steps: range aggregations
//! over log samples, vector aggregations, binary operations, literals.
//!
//! Evaluation is in two phases so that it can stay synchronous and pure:
//! [`selections`] lists the log data each range aggregation needs (in
//! traversal order); the caller scans it stream by stream, turning each
//! stream's entries into samples with [`Selection::extract`] as it goes (no
//! more than one stream's lines are held at a time); [`evaluate`] computes
//! the result from the samples alone. Binary operations are in [`binary`].

use std::collections::{BTreeMap, HashMap};

use super::ast::*;
use super::pipeline::{self, ERROR_LABEL};
use crate::labels::LabelSet;

mod binary;

pub use binary::fold;
use binary::{vector_scalar, vector_vector};

/// The steps a query is evaluated at: `start, start+step, …, ≤ end`.
#[derive(Clone, Copy, Debug)]
pub struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    pub fn instant(t: i64) -> Self {
        Self { start: t, end: t, step: 1 }
    }

    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step.max(1)) as usize + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// Log data one range aggregation needs: streams matching `matchers` with
/// entries in `[from, through)`, and how they become samples.
#[derive(Clone, Debug)]
pub struct Selection {
    pub matchers: Vec<Matcher>,
    /// The pipeline's leading line filters: lines failing them can be
    /// skipped where chunks are scanned.
    pub prefilter: Vec<LineFilter>,
    pub from: i64,
    pub through: i64,
    range: RangeAgg,
    /// Which parsers Loki would skip for this range aggregation.
    skip: pipeline::ParserSkip,
    /// When every label is kept: a light run of the pipeline that decides
    /// which lines pass, so only those build a full label set.
    sieve: Option<pipeline::ParserSkip>,
    /// The grouping samples are merged by as they are extracted
    /// ([`grouping_in_force`]), so lines that differ only in other labels
    /// share a series.
    project: Option<Grouping>,
}

/// A log sample: time and value (1, the line's bytes, or the unwrapped
/// label).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub ts: i64,
    pub value: f64,
}

/// The samples of one selection per series (labels after the pipeline and
/// the range aggregation's grouping), each series in any order.
pub type SeriesSamples = BTreeMap<LabelSet, Vec<Sample>>;

impl Selection {
    /// Turns one stream's entries into samples and adds them to `out`.
    /// Fails on an entry the pipeline marked with an error that no label
    /// filter removed, as Loki does.
    pub fn extract(&self, stream: &LabelSet, entries: impl IntoIterator<Item = pipeline::LogEntry>, out: &mut SeriesSamples) -> Result<(), EvalError> {
        let r = &self.range;
        let group = |labels: LabelSet| match &self.project {
            Some(g) => group_labels(&labels, g),
            None => labels,
        };
        if r.log.only_line_filters() && r.unwrap.is_none() {
            // The series is the stream's, unless structured metadata joins it.
            let mut plain = Vec::new();
            for (ts, line, metadata) in entries {
                let pass = r.log.stages.iter().all(|s| match s {
                    Stage::LineFilter(f) => f.matches(&line),
                    _ => true,
                });
                if !pass {
                    continue;
                }
                let sample = Sample { ts, value: line_value(r.op, &line) };
                if metadata.is_empty() {
                    plain.push(sample);
                } else if let Some(p) = pipeline::process(&[], stream, (ts, line, metadata)) {
                    out.entry(group(p.label_set())).or_default().push(sample);
                }
            }
            if !plain.is_empty() {
                out.entry(group(stream.clone())).or_default().extend(plain);
            }
            return Ok(());
        }
        // Entries of a stream mostly end in few distinct label sets: collect
        // by the pipeline's own map and build each label set once.
        let mut by_labels: BTreeMap<pipeline::LabelMap, Vec<Sample>> = BTreeMap::new();
        for e in entries {
            let ts = e.0;
            if let Some(sieve) = &self.sieve {
                if pipeline::process_skipping(&r.log.stages, stream, e.clone(), sieve).is_none() {
                    continue;
                }
            }
            let Some(mut p) = pipeline::process_skipping(&r.log.stages, stream, e, &self.skip) else { continue };
            let value = match &r.unwrap {
                Some(u) => match pipeline::unwrap_value(u, &mut p) {
                    Some(v) => v,
                    None => continue,
                },
                None => line_value(r.op, &p.line),
            };
            if let Some(err) = p.labels.get(ERROR_LABEL) {
                // The series as Loki names it: with the stream's labels, which
                // a query needing only some labels did not carry.
                let mut all = p.labels.clone();
                for (k, v) in stream.iter() {
                    if !all.contains_key(k) {
                        all.insert(k.clone(), v.clone());
                    }
                }
                let shown = LabelSet::from_pairs_keep_empty(all.into_iter().collect());
                return Err(EvalError(format!(
                    "pipeline error: '{err}' for series: '{shown}'.\nUse a label filter to intentionally skip this \
                     error. (e.g | __error__!=\"{err}\").\nTo skip all potential errors you can match empty \
                     errors.(e.g __error__=\"\")"
                )));
            }
            let sample = Sample { ts, value };
            let key = match &self.project {
                Some(g) if !g.without => g.labels.iter().filter_map(|l| p.labels.remove_entry(l.as_str())).collect(),
                Some(g) => {
                    p.labels.retain(|k, _| !g.labels.contains(k));
                    p.labels
                }
                None => p.labels,
            };
            match by_labels.get_mut(&key) {
                Some(v) => v.push(sample),
                None => {
                    by_labels.insert(key, vec![sample]);
                }
            }
        }
        for (labels, samples) in by_labels {
            let set = LabelSet::from_pairs_keep_empty(labels.into_iter().collect());
            out.entry(set).or_default().extend(samples);
        }
        Ok(())
    }
}

/// Why evaluation failed (answered as 400, like Loki's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// One series of a result: a value (or none) per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: LabelSet,
    pub points: Vec<Option<f64>>,
}

/// A result: scalars per step, or series.
#[derive(Clone, Debug)]
pub enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
}

/// The data each range aggregation of `e` needs, in traversal order.
pub fn selections(e: &Expr, steps: Steps) -> Vec<Selection> {
    let mut out = Vec::new();
    collect(e, steps, &mut out);
    out
}

fn collect(e: &Expr, steps: Steps, out: &mut Vec<Selection>) {
    collect_under(e, steps, None, out)
}

/// `parent`: the `sum` directly around a range aggregation, whose grouping
/// Loki pushes down into the extraction.
fn collect_under(e: &Expr, steps: Steps, parent: Option<&VectorAgg>, out: &mut Vec<Selection>) {
    match e {
        Expr::Range(r) => {
            let grouping = grouping_in_force(r, parent);
            let skip = parser_skip(r, grouping.as_ref());
            let sieve = match skip {
                pipeline::ParserSkip::Never => {
                    pipeline::filter_labels(&r.log.stages).filter(|n| !n.is_empty()).map(pipeline::ParserSkip::Only)
                }
                _ => None,
            };
            out.push(Selection {
                matchers: r.log.matchers.clone(),
                prefilter: r.log.leading_line_filters(),
                from: steps.start - r.offset - r.range + 1,
                through: steps.end - r.offset + 1,
                range: r.clone(),
                skip,
                sieve,
                // absent_over_time answers with the selector's labels, not the series'.
                project: grouping.or_else(|| (r.op == RangeOp::AbsentOverTime).then(Grouping::default)),
            })
        }
        Expr::Vector(v) => collect_under(&v.inner, steps, Some(v), out),
        Expr::Binary(b) => {
            collect(&b.lhs, steps, out);
            collect(&b.rhs, steps, out);
        }
        Expr::LabelReplace(l) => collect(&l.inner, steps, out),
        Expr::Log(_) | Expr::Literal(_) | Expr::VectorLit(_) => {}
    }
}

/// Which parsers of `r` Loki skips (its parser hints): with no grouping
/// that keeps labels (its own, or that of a `sum` around a count, rate,
/// bytes or sum over time without one), a query needs only the labels its
/// filters, unwrap and grouping name — none at all skips every parser, else
/// parsing stops once they are all extracted. Queries that format with
/// templates keep every parser (the labels templates read are not listed).
fn parser_skip(r: &RangeAgg, grouping: Option<&Grouping>) -> pipeline::ParserSkip {
    use pipeline::ParserSkip;
    let singleton = grouping.is_some_and(|g| g.labels.is_empty() && !g.without);
    let no_labels = singleton || r.op == RangeOp::AbsentOverTime;
    // Templates may read any label: then nothing is skipped.
    let Some(mut names) = pipeline::filter_labels(&r.log.stages) else { return ParserSkip::Never };
    if let Some(u) = &r.unwrap {
        names.push(u.label.clone());
        for f in &u.post_filters {
            f.names(&mut names);
        }
    }
    let (groups, without) = grouping.map_or((Vec::new(), false), |g| (g.labels.clone(), g.without));
    names.extend(groups.iter().cloned());
    names.sort();
    names.dedup();
    if no_labels {
        if names.is_empty() {
            ParserSkip::Always
        } else {
            ParserSkip::OnceExtracted(names)
        }
    } else if without || groups.is_empty() {
        ParserSkip::Never
    } else {
        ParserSkip::OnceExtracted(names)
    }
}

/// The grouping that applies to `r`'s series already: its own, or that of
/// the `sum` around it when `r` has none and is linear in its samples
/// (counts, rates, bytes and sums of merged series are the sums of the
/// series').
fn grouping_in_force(r: &RangeAgg, parent: Option<&VectorAgg>) -> Option<Grouping> {
    let linear = matches!(r.op, RangeOp::BytesOverTime | RangeOp::BytesRate | RangeOp::SumOverTime | RangeOp::Rate | RangeOp::CountOverTime);
    match (&r.grouping, parent) {
        (Some(g), _) => Some(g.clone()),
        (None, Some(v)) if v.op == VecOp::Sum && linear => Some(v.grouping.clone().unwrap_or_default()),
        _ => None,
    }
}

/// Evaluates `e` at `steps` from the fetched data (one entry per selection,
/// in the order of [`selections`]). `max_series` bounds the result's
/// series, like Loki's `max_query_series`.
pub fn evaluate(e: &Expr, steps: Steps, data: &mut dyn Iterator<Item = SeriesSamples>, max_series: usize) -> Result<Value, EvalError> {
    let mut ev = Evaluator { steps, data };
    let v = ev.eval(e)?;
    if let Value::Vector(s) = &v {
        if s.len() > max_series {
            return Err(EvalError(format!("maximum of series ({max_series}) reached for a single query")));
        }
    }
    Ok(v)
}

struct Evaluator<'a> {
    steps: Steps,
    data: &'a mut dyn Iterator<Item = SeriesSamples>,
}

impl Evaluator<'_> {
    fn eval(&mut self, e: &Expr) -> Result<Value, EvalError> {
        let v = match e {
            Expr::Literal(v) => Value::Scalar(vec![*v; self.steps.len()]),
            Expr::VectorLit(v) => {
                Value::Vector(vec![Series { labels: LabelSet::default(), points: vec![Some(*v); self.steps.len()] }])
            }
            Expr::Range(r) => {
                let fetched = self.data.next().unwrap_or_default();
                Value::Vector(self.range_agg(r, fetched)?)
            }
            Expr::Vector(v) => {
                let inner = self.eval(&v.inner)?;
                Value::Vector(self.vector_agg(v, inner)?)
            }
            Expr::Binary(b) => {
                let l = self.eval(&b.lhs)?;
                let r = self.eval(&b.rhs)?;
                self.binary(b, l, r)?
            }
            Expr::LabelReplace(l) => match self.eval(&l.inner)? {
                Value::Vector(series) => Value::Vector(label_replace(l, series)?),
                s => s,
            },
            Expr::Log(_) => return Err(EvalError("a log query cannot be evaluated as a metric query".into())),
        };
        Ok(v)
    }

    /// The function over each step's window `(t - offset - range, t - offset]`
    /// of every series' samples.
    fn range_agg(&self, r: &RangeAgg, by_series: SeriesSamples) -> Result<Vec<Series>, EvalError> {
        let n = self.steps.len();
        if r.op == RangeOp::AbsentOverTime {
            return Ok(self.absent(r, &by_series));
        }
        let mut out = Vec::new();
        for (labels, mut samples) in by_series {
            samples.sort_by_key(|s| s.ts);
            let mut points = Vec::with_capacity(n);
            for i in 0..n {
                let t = self.steps.at(i) - r.offset;
                let lo = samples.partition_point(|s| s.ts <= t - r.range);
                let hi = samples.partition_point(|s| s.ts <= t);
                let window = &samples[lo..hi];
                points.push(if window.is_empty() { None } else { range_fn(r, window, t) });
            }
            if points.iter().any(Option::is_some) {
                out.push(Series { labels, points });
            }
        }
        Ok(out)
    }

    /// `absent_over_time`: 1 at the steps whose window has no sample at all,
    /// labelled with the selector's equality matchers.
    fn absent(&self, r: &RangeAgg, by_series: &BTreeMap<LabelSet, Vec<Sample>>) -> Vec<Series> {
        let mut all: Vec<i64> = by_series.values().flat_map(|s| s.iter().map(|x| x.ts)).collect();
        all.sort_unstable();
        let points: Vec<Option<f64>> = (0..self.steps.len())
            .map(|i| {
                let t = self.steps.at(i) - r.offset;
                let lo = all.partition_point(|&ts| ts <= t - r.range);
                let hi = all.partition_point(|&ts| ts <= t);
                (lo == hi).then_some(1.0)
            })
            .collect();
        if points.iter().all(Option::is_none) {
            return Vec::new();
        }
        let labels = LabelSet::from_pairs_keep_empty(
            r.log
                .matchers
                .iter()
                .filter(|m| m.op == MatchOp::Eq)
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect(),
        );
        vec![Series { labels, points }]
    }

    fn vector_agg(&self, v: &VectorAgg, inner: Value) -> Result<Vec<Series>, EvalError> {
        let Value::Vector(series) = inner else {
            return Err(EvalError("vector aggregation needs a vector, not a scalar".into()));
        };
        let n = self.steps.len();
        match v.op {
            VecOp::Sort | VecOp::SortDesc => {
                let mut series = series;
                let desc = v.op == VecOp::SortDesc;
                series.sort_by(|a, b| by_value(first(a), first(b), desc));
                return Ok(series);
            }
            VecOp::ApproxTopk if self.steps.start != self.steps.end => {
                // Loki answers approx_topk with a count-min sketch, built for one instant.
                return Err(EvalError("approx_topk error: count min sketches are only supported on instant queries".into()));
            }
            VecOp::Topk | VecOp::Bottomk | VecOp::ApproxTopk => {
                let k = v.param.unwrap_or(0.0);
                if k < 1.0 {
                    return Err(EvalError(format!("parameter {k} must be greater than 0")));
                }
                let k = k as usize;
                let mut keep: Vec<Vec<bool>> = vec![vec![false; n]; series.len()];
                for i in 0..n {
                    let mut groups: HashMap<LabelSet, Vec<(usize, f64)>> = HashMap::new();
                    for (si, s) in series.iter().enumerate() {
                        if let Some(val) = s.points[i] {
                            let g = v.grouping.as_ref().map_or_else(LabelSet::default, |g| group_labels(&s.labels, g));
                            groups.entry(g).or_default().push((si, val));
                        }
                    }
                    for (_, mut members) in groups {
                        let desc = v.op != VecOp::Bottomk;
                        members.sort_by(|a, b| by_value(a.1, b.1, desc));
                        for (si, _) in members.into_iter().take(k) {
                            keep[si][i] = true;
                        }
                    }
                }
                let mut out: Vec<Series> = series
                    .into_iter()
                    .zip(keep)
                    .map(|(s, k)| Series {
                        labels: s.labels,
                        points: s.points.into_iter().zip(k).map(|(p, k)| if k { p } else { None }).collect(),
                    })
                    .filter(|s| s.points.iter().any(Option::is_some))
                    .collect();
                let desc = v.op != VecOp::Bottomk;
                out.sort_by(|a, b| by_value(first(a), first(b), desc));
                return Ok(out);
            }
            _ => {}
        }
        let mut groups: BTreeMap<LabelSet, Vec<Vec<f64>>> = BTreeMap::new();
        for s in &series {
            let g = match &v.grouping {
                Some(g) => group_labels(&s.labels, g),
                None => LabelSet::default(),
            };
            let slot = groups.entry(g).or_insert_with(|| vec![Vec::new(); n]);
            for (i, p) in s.points.iter().enumerate() {
                if let Some(val) = p {
                    slot[i].push(*val);
                }
            }
        }
        Ok(groups
            .into_iter()
            .map(|(labels, per_step)| Series {
                labels,
                points: per_step.iter().map(|vals| if vals.is_empty() { None } else { Some(vec_fn(v.op, vals)) }).collect(),
            })
            .filter(|s| s.points.iter().any(Option::is_some))
            .collect())
    }

    fn binary(&self, b: &BinaryExpr, l: Value, r: Value) -> Result<Value, EvalError> {
        let n = self.steps.len();
        match (l, r) {
            (Value::Scalar(a), Value::Scalar(c)) => Ok(Value::Scalar((0..n).map(|i| fold(b.op, a[i], c[i])).collect())),
            (Value::Vector(vs), Value::Scalar(c)) => Ok(Value::Vector(vector_scalar(b, vs, &c, false))),
            (Value::Scalar(a), Value::Vector(vs)) => Ok(Value::Vector(vector_scalar(b, vs, &a, true))),
            (Value::Vector(lv), Value::Vector(rv)) => vector_vector(b, lv, rv, n).map(Value::Vector),
        }
    }
}

/// The value of a series at its first step (NaN when absent).
fn first(s: &Series) -> f64 {
    s.points.iter().flatten().next().copied().unwrap_or(f64::NAN)
}

/// Orders values ascending (or descending), NaN always last, as
/// Prometheus' sort, topk and bottomk do.
fn by_value(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

fn line_value(op: RangeOp, line: &str) -> f64 {
    match op {
        RangeOp::BytesOverTime | RangeOp::BytesRate => line.len() as f64,
        _ => 1.0,
    }
}

fn group_labels(labels: &LabelSet, g: &Grouping) -> LabelSet {
    LabelSet::from_pairs_keep_empty(
        labels
            .iter()
            .filter(|(k, _)| g.labels.iter().any(|l| l == k) != g.without)
            .cloned()
            .collect(),
    )
}

/// The range function over one window (samples ascending, non-empty).
fn range_fn(r: &RangeAgg, w: &[Sample], t: i64) -> Option<f64> {
    let secs = r.range as f64 / 1e9;
    let vals = || w.iter().map(|s| s.value);
    Some(match r.op {
        RangeOp::CountOverTime => w.len() as f64,
        RangeOp::Rate => {
            if r.unwrap.is_some() {
                vals().sum::<f64>() / secs
            } else {
                w.len() as f64 / secs
            }
        }
        RangeOp::BytesOverTime | RangeOp::SumOverTime => vals().sum(),
        RangeOp::BytesRate => vals().sum::<f64>() / secs,
        RangeOp::AvgOverTime => vals().sum::<f64>() / w.len() as f64,
        RangeOp::MinOverTime => vals().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        RangeOp::MaxOverTime => vals().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        RangeOp::StdvarOverTime => stdvar(&vals().collect::<Vec<_>>()),
        RangeOp::StddevOverTime => stdvar(&vals().collect::<Vec<_>>()).sqrt(),
        RangeOp::QuantileOverTime => quantile(r.param.unwrap_or(f64::NAN), &mut vals().collect::<Vec<_>>()),
        RangeOp::FirstOverTime => w[0].value,
        RangeOp::LastOverTime => w[w.len() - 1].value,
        RangeOp::RateCounter => return extrapolated_rate(w, t - r.range, t, secs),
        RangeOp::AbsentOverTime => 1.0,
    })
}

/// Population variance (Welford).
fn stdvar(v: &[f64]) -> f64 {
    let (mut mean, mut m2) = (0.0, 0.0);
    for (i, x) in v.iter().enumerate() {
        let d = x - mean;
        mean += d / (i + 1) as f64;
        m2 += d * (x - mean);
    }
    m2 / v.len() as f64
}

/// Prometheus' quantile with linear interpolation.
fn quantile(q: f64, v: &mut [f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = q * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let w = rank - lo as f64;
    v[lo] * (1.0 - w) + v[hi] * w
}

/// Prometheus' extrapolated counter rate over `(range_start, range_end]`.
fn extrapolated_rate(w: &[Sample], range_start: i64, range_end: i64, range_secs: f64) -> Option<f64> {
    if w.len() < 2 {
        // A rate needs two points; one sample counts as no increase.
        return Some(0.0);
    }
    let first = w[0];
    let last = w[w.len() - 1];
    let mut result = last.value - first.value;
    for pair in w.windows(2) {
        if pair[1].value < pair[0].value {
            result += pair[0].value;
        }
    }
    let mut to_start = (first.ts - range_start) as f64 / 1e9;
    let to_end = (range_end - last.ts) as f64 / 1e9;
    let sampled = (last.ts - first.ts) as f64 / 1e9;
    if sampled <= 0.0 {
        return None;
    }
    let avg = sampled / (w.len() - 1) as f64;
    let threshold = avg * 1.1;
    // The threshold cap first, then the counter's zero point may only
    // shorten the extrapolation further.
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if result > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let mut interval = sampled + to_start;
    interval += if to_end < threshold { to_end } else { avg / 2.0 };
    Some(result * (interval / sampled) / range_secs)
}

fn vec_fn(op: VecOp, vals: &[f64]) -> f64 {
    match op {
        VecOp::Sum => vals.iter().sum(),
        VecOp::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
        VecOp::Min => vals.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        VecOp::Max => vals.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        VecOp::Count => vals.len() as f64,
        VecOp::Stdvar => stdvar(vals),
        VecOp::Stddev => stdvar(vals).sqrt(),
        VecOp::Topk | VecOp::Bottomk | VecOp::ApproxTopk | VecOp::Sort | VecOp::SortDesc => f64::NAN,
    }
}

/// The longest label value `label_replace` may make (Prometheus has no
/// bound; `$1` repeated in a query could otherwise ask for gigabytes).
const MAX_REPLACED_VALUE: usize = 1 << 20;

fn label_replace(l: &LabelReplace, series: Vec<Series>) -> Result<Vec<Series>, EvalError> {
    // Each `$` reference expands to at most the whole source value.
    let refs = l.replacement.matches('$').count();
    series
        .into_iter()
        .map(|s| {
            let src = s.labels.get(&l.src).unwrap_or("").to_string();
            let Some(caps) = l.re.captures(&src) else { return Ok(s) };
            if l.replacement.len() + refs.saturating_mul(src.len()) > MAX_REPLACED_VALUE {
                return Err(EvalError(format!("label_replace: the replacement would be longer than {MAX_REPLACED_VALUE} bytes")));
            }
            let mut value = String::new();
            caps.expand(&l.replacement, &mut value);
            let mut pairs: Vec<(String, String)> = s.labels.iter().filter(|(k, _)| *k != l.dst).cloned().collect();
            // An empty value removes the label, as in Prometheus.
            if !value.is_empty() {
                pairs.push((l.dst.clone(), value));
            }
            Ok(Series { labels: LabelSet::from_pairs_keep_empty(pairs), points: s.points })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_expr;

    const S: i64 = 1_000_000_000;

    /// Streams and their entries, ascending.
    type Streams = BTreeMap<LabelSet, Vec<pipeline::LogEntry>>;

    fn data(lines: &[(&str, i64, &str)]) -> Streams {
        let mut by = Streams::new();
        for (l, t, line) in lines {
            by.entry(LabelSet::parse(l).unwrap()).or_default().push((*t * S, line.to_string(), Vec::new()));
        }
        by
    }

    /// Each selection's samples of the streams of `d` its selector matches,
    /// stream by stream as the querier extracts them.
    fn samples(e: &Expr, steps: Steps, d: &Streams) -> Result<Vec<SeriesSamples>, EvalError> {
        selections(e, steps)
            .iter()
            .map(|sel| {
                let mut out = SeriesSamples::new();
                for (labels, entries) in d.iter().filter(|(l, _)| sel.matchers.iter().all(|m| m.matches(l.get(&m.name)))) {
                    sel.extract(labels, entries.clone(), &mut out)?;
                }
                Ok(out)
            })
            .collect()
    }

    fn run(q: &str, steps: Steps, d: Streams) -> Value {
        let e = parse_expr(q).unwrap();
        let mut it = samples(&e, steps, &d).unwrap().into_iter();
        evaluate(&e, steps, &mut it, 500).unwrap()
    }

    #[test]
    fn windows_are_left_open_right_closed() {
        let d = data(&(0..13).map(|i| (r#"{app="foo"}"#, i * 10, "xbar")).collect::<Vec<_>>());
        let Value::Vector(v) = run(r#"count_over_time({app="foo"}[30s])"#, Steps::instant(60 * S), d.clone()) else { panic!() };
        assert_eq!(v[0].points, vec![Some(3.0)]);
        let Value::Vector(v) = run(r#"rate({app="foo"}[30s])"#, Steps { start: 60 * S, end: 120 * S, step: 15 * S }, d) else {
            panic!()
        };
        assert_eq!(v[0].points, vec![Some(0.1); 5]);
    }

    #[test]
    fn a_sum_by_merges_lines_as_they_are_extracted_and_keeps_only_needed_labels() {
        let d = data(&[
            (r#"{app="a", pod="1", ns="x"}"#, 10, "level=info trace=1 user=u1"),
            (r#"{app="a", pod="2", ns="x"}"#, 20, "level=info trace=2 user=u2"),
            (r#"{app="a", pod="2", ns="x"}"#, 30, "level=warn trace=3"),
        ]);
        let e = parse_expr(r#"sum by (level, pod) (count_over_time({app="a"} | logfmt [1m]))"#).unwrap();
        let st = Steps::instant(60 * S);
        let series = samples(&e, st, &d).unwrap().remove(0);
        let keys: Vec<String> = series.keys().map(ToString::to_string).collect();
        assert_eq!(keys, [r#"{level="info", pod="1"}"#, r#"{level="info", pod="2"}"#, r#"{level="warn", pod="2"}"#], "one series per group, not per line");
        let Value::Vector(v) = evaluate(&e, st, &mut vec![series].into_iter(), 500).unwrap() else { panic!() };
        assert_eq!(v.iter().map(|s| s.points[0]).collect::<Vec<_>>(), [Some(1.0), Some(1.0), Some(1.0)]);
        // An error still names the whole series.
        let bad = data(&[(r#"{app="a", pod="1"}"#, 10, "level=info x=\"unterminated")]);
        let e = parse_expr(r#"sum by (level) (count_over_time({app="a"} | logfmt --strict [1m]))"#).unwrap();
        let msg = samples(&e, st, &bad).unwrap_err().to_string();
        assert!(msg.contains(r#"app="a""#) && msg.contains(r#"pod="1""#) && msg.contains("LogfmtParserErr"), "{msg}");
    }

    #[test]
    fn aggregations_and_binary_ops() {
        let d = data(&[(r#"{app="a", pod="1"}"#, 10, "v=1"), (r#"{app="a", pod="2"}"#, 20, "v=3"), (r#"{app="b", pod="1"}"#, 30, "v=5")]);
        let st = Steps::instant(60 * S);
        let Value::Vector(v) = run(r#"sum by (app) (count_over_time({app=~".+"}[1m]))"#, st, d.clone()) else { panic!() };
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].points, vec![Some(2.0)]);
        let Value::Vector(v) = run(r#"max(max_over_time({app=~".+"} | logfmt | unwrap v [1m]))"#, st, d.clone()) else { panic!() };
        assert_eq!(v[0].points, vec![Some(5.0)]);
        let Value::Vector(v) = run(r#"topk(1, sum by (app) (count_over_time({app=~".+"}[1m])))"#, st, d.clone()) else { panic!() };
        assert_eq!(v.len(), 1);
        let Value::Vector(v) = run(r#"count_over_time({app=~".+"}[1m]) > 1"#, st, d.clone()) else { panic!() };
        assert!(v.is_empty());
        let Value::Vector(v) = run(r#"count_over_time({app=~".+"}[1m]) > bool 0"#, st, d.clone()) else { panic!() };
        assert_eq!(v.len(), 3);
        let Value::Vector(v) = run(r#"vector(1) + vector(1)"#, st, Streams::new()) else { panic!() };
        assert_eq!(v[0].points, vec![Some(2.0)]);
        let Value::Scalar(v) = run(r#"2 * 3 ^ 2"#, st, Streams::new()) else { panic!() };
        assert_eq!(v, vec![18.0]);
    }

    #[test]
    fn binary_operations_follow_lokis_merge_rules() {
        let st = Steps { start: 60 * S, end: 120 * S, step: 60 * S };
        let d = data(&[
            (r#"{app="a", machine="m1"}"#, 10, "x"),
            (r#"{app="a", machine="m2"}"#, 20, "x"),
            (r#"{app="b", machine="m1"}"#, 70, "x"),
        ]);
        // Division by zero is NaN, not infinity.
        let Value::Vector(v) = run(r#"count_over_time({app="a"}[1m]) / 0"#, st, d.clone()) else { panic!() };
        assert!(v[0].points[0].is_some_and(f64::is_nan), "{v:?}");
        // `or` fills the left side's missing steps from an equal-labelled right series.
        let Value::Vector(v) = run(r#"sum(count_over_time({app="b"}[1m])) or vector(0)"#, st, d.clone()) else { panic!() };
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].points, vec![Some(0.0), Some(1.0)]);
        // Duplicates on the matching ("one") side are named by side.
        let e = parse_expr(r#"sum by (app) (count_over_time({app="a"}[1m])) > on (app) count_over_time({app="a"}[1m])"#).unwrap();
        let mut it = samples(&e, st, &d).unwrap().into_iter();
        let err = evaluate(&e, st, &mut it, 500).unwrap_err();
        assert!(err.0.starts_with("found duplicate series on the right hand-side"), "{err}");
        let e = parse_expr(r#"count_over_time({app="a"}[1m]) > on (app) group_right sum by (app) (count_over_time({app="a"}[1m]))"#).unwrap();
        let mut it = samples(&e, st, &d).unwrap().into_iter();
        let err = evaluate(&e, st, &mut it, 500).unwrap_err();
        assert!(err.0.starts_with("found duplicate series on the left hand-side"), "{err}");
    }

    #[test]
    fn parsers_a_query_needs_no_label_from_are_skipped_as_loki_does() {
        let st = Steps::instant(60 * S);
        let d = data(&[(r#"{app="x"}"#, 10, "foo=bar not json")]);
        // No label needed: the json parser never runs, so no error.
        let Value::Vector(v) = run(r#"sum(count_over_time({app="x"} | json [1m]))"#, st, d.clone()) else { panic!() };
        assert_eq!(v[0].points, vec![Some(1.0)]);
        // Every label kept: the parser runs and its error fails the query.
        let e = parse_expr(r#"count_over_time({app="x"} | json [1m])"#).unwrap();
        assert!(samples(&e, st, &d).is_err());
        // The filtered label is extracted by logfmt: unpack after it is skipped.
        let Value::Vector(v) = run(r#"sum(count_over_time({app="x"} | logfmt | unpack | foo="bar" [1m]))"#, st, d.clone()) else {
            panic!()
        };
        assert_eq!(v[0].points, vec![Some(1.0)]);
        // A filter on the error keeps the parser running.
        let Value::Vector(v) = run(r#"sum(count_over_time({app="x"} | json | __error__="" [1m]))"#, st, d) else { panic!() };
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn label_replace_values_are_bounded() {
        let d = data(&[(r#"{app="foo"}"#, 30, "x")]);
        let q = format!(r#"label_replace(count_over_time({{app="foo"}}[1m]), "a", "{}", "app", "(.*)")"#, "$1".repeat(400_000));
        let e = parse_expr(&q).unwrap();
        let steps = Steps::instant(60 * S);
        let mut it = samples(&e, steps, &d).unwrap().into_iter();
        let err = evaluate(&e, steps, &mut it, 500).unwrap_err();
        assert!(err.0.contains("longer than 1048576 bytes"), "{err}");
    }

    #[test]
    fn label_replace_with_an_empty_value_removes_the_label() {
        let d = data(&[(r#"{app="foo"}"#, 10, "x")]);
        let Value::Vector(v) = run(r#"label_replace(count_over_time({app="foo"}[1m]), "app", "$1", "app", "foo(.*)")"#, Steps::instant(60 * S), d)
        else {
            panic!()
        };
        assert_eq!(v[0].labels, LabelSet::default());
    }

    #[test]
    fn approx_topk_answers_instant_queries_only() {
        let d = data(&[(r#"{app="foo"}"#, 10, "x")]);
        let e = parse_expr(r#"approx_topk(1, count_over_time({app="foo"}[1m]))"#).unwrap();
        let range = Steps { start: 60 * S, end: 120 * S, step: 60 * S };
        let mut it = samples(&e, range, &d).unwrap().into_iter();
        let err = evaluate(&e, range, &mut it, 500).unwrap_err();
        assert!(err.0.contains("only supported on instant queries"), "{err}");
        let Value::Vector(v) = run(r#"approx_topk(1, count_over_time({app="foo"}[1m]))"#, Steps::instant(60 * S), d) else { panic!() };
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn pipeline_errors_fail_metric_queries() {
        let d = data(&[(r#"{app="b"}"#, 20, "status=oops")]);
        let e = parse_expr(r#"count_over_time({app="b"} | logfmt | status > 400 [1m])"#).unwrap();
        let err = samples(&e, Steps::instant(60 * S), &d).unwrap_err();
        assert!(err.0.contains("LabelFilterErr"), "{err}");
    }
}
