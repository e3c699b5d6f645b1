//! LogQL query latency and lines/s over flushed chunks, against the same
//! questions answered by chdb (embedded ClickHouse, PyPI `chdb`) over the
//! same lines in a TSV file, in the same run. Prints ratios; asserts
//! nothing about time; each answer's first value is shown beside chdb's.
//!
//! `cargo run --release -p balsa-bench -- logql --help`

use std::io::Write;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cpu_seconds, ingest_and_flush, line, start, Common, Goal, Report, Rng, NEEDLE, UNLIMITED};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// MiB of raw log lines.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--mib", "64"];

/// One question, in LogQL and in ClickHouse SQL over `f(ts, line)`.
struct Question {
    name: &'static str,
    logql: String,
    sql: String,
    /// Range query with this step (s), else instant over the whole range.
    step: Option<u64>,
}

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let bin = common.balsa_binary()?;
    let work = common.workdir("balsa-logql-")?;
    let tsv = work.path().join("lines.tsv");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let span: i64 = 2_900_000_000_000;
    let begin = now - 3_000_000_000_000;

    // The lines, timestamped, in a TSV file too.
    let target = (args.mib as u64) << 20;
    let mut rng = Rng(0x10991);
    let mut lines = Vec::new();
    let mut raw = 0u64;
    while raw < target {
        let l = line(&mut rng, lines.len(), 200_000);
        raw += l.len() as u64;
        lines.push(l);
    }
    let n = lines.len();
    let step = span / n as i64;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tsv)?);
    for (i, l) in lines.iter().enumerate() {
        writeln!(f, "{}\t{}", begin + i as i64 * step, l.replace('\\', "\\\\"))?;
    }
    f.flush()?;
    drop(f);
    eprintln!("logql: {n} lines, {:.0} MiB raw", raw as f64 / 1048576.0);

    // balsa, fed and flushed.
    let config = format!("{UNLIMITED}  max_query_series: 100000\ningester:\n  flush_check_period: 5s\n");
    let server = start(&bin, &work.path().join("data"), &config)?;
    ingest_and_flush(&server, &lines, begin, step)?;

    let range = "3000s";
    let questions = [
        Question {
            name: "line filter",
            logql: format!("sum(count_over_time({{job=~\".+\"}} |= \"{NEEDLE}\" [{range}]))"),
            sql: format!("SELECT count() FROM f WHERE position(line, '{NEEDLE}') > 0"),
            step: None,
        },
        Question {
            name: "logfmt + label filter",
            logql: format!("sum(count_over_time({{job=~\".+\"}} | logfmt status | status=\"500\" [{range}]))"),
            sql: "SELECT count() FROM f WHERE extract(line, 'status=(\\\\d+)') = '500'".into(),
            step: None,
        },
        Question {
            name: "sum by (level) rate 1m",
            logql: "sum by (level) (rate({job=~\".+\"} | logfmt level [1m]))".into(),
            sql: "SELECT intDiv(ts, 60000000000) AS m, extract(line, 'level=(\\\\w+)') AS level, count() / 60 FROM f GROUP BY m, level".into(),
            step: Some(60),
        },
        Question {
            name: "logfmt (all) by level",
            logql: format!("sum by (level) (count_over_time({{job=~\".+\"}} | logfmt [{range}]))"),
            sql: "SELECT extract(line, 'level=(\\\\w+)') AS level, count() AS c FROM f GROUP BY level ORDER BY c DESC".into(),
            step: None,
        },
        Question {
            name: "topk by status",
            logql: format!("topk(3, sum by (status) (count_over_time({{job=~\".+\"}} | logfmt status [{range}])))"),
            sql: "SELECT extract(line, 'status=(\\\\d+)') AS s, count() AS c FROM f GROUP BY s ORDER BY c DESC LIMIT 3".into(),
            step: None,
        },
    ];
    let at = (now / 1_000_000_000).to_string();
    for q in &questions {
        let cpu = cpu_seconds(server.pid())?;
        let t = Instant::now();
        let mut r = match q.step {
            Some(s) => ureq::get(&format!("{}/loki/api/v1/query_range", server.base))
                .query("start", &((begin + 60_000_000_000) / 1_000_000_000).to_string())
                .query("end", &at)
                .query("step", &s.to_string()),
            None => ureq::get(&format!("{}/loki/api/v1/query", server.base)).query("time", &at),
        };
        r = r.query("query", &q.logql);
        let v: Value = r.call().with_context(|| q.logql.clone())?.into_json()?;
        let balsa_s = t.elapsed().as_secs_f64();
        let cores = (cpu_seconds(server.pid())? - cpu) / balsa_s;
        let series = v["data"]["result"].as_array().map_or(0, |a| a.len());
        let first = v["data"]["result"][0]["value"][1].as_str().unwrap_or("-").to_string();

        let sql = q.sql.replace("FROM f", &format!("FROM file('{}', 'TSV', 'ts Int64, line String')", tsv.display()));
        let script = format!("import chdb, time\nt=time.time()\nr=chdb.query({sql:?}, 'CSV')\nprint(time.time()-t)\nprint(str(r).strip().splitlines()[0] if str(r).strip() else '-')");
        let out = Command::new("python3").arg("-c").arg(&script).output().context("running python3 (with PyPI chdb)")?;
        if !out.status.success() {
            bail!("chdb failed (pip install chdb): {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = text.lines();
        let chdb_s: f64 = it.next().unwrap_or("nan").trim().parse().unwrap_or(f64::NAN);
        let chdb_first = it.next().unwrap_or("-").to_string();
        report.add(
            "logql",
            format!("`{}` over {:.0} MiB: balsa time ÷ chdb time", q.name, raw as f64 / 1048576.0),
            format!("{balsa_s:.2} s on {cores:.1} cores ({:.0} lines/s; {series} series, first {first})", n as f64 / balsa_s),
            format!("{chdb_s:.2} s (first row {chdb_first})"),
            balsa_s / chdb_s,
            Some(Goal::AtMost(1.0)),
        );
    }
    Ok(())
}
