//! Runs a log pipeline over one entry: line filters, parsers, label
//! filters, formatters, and `unwrap` for metric queries — with Loki's rules
//! for extracted-name clashes (`<name>_extracted`) and errors (`__error__`,
//! `__error_details__`).
//!
//! PERFORMANCE-CRITICAL PATH: runs for every scanned entry of a query with
//! more than line filters.

use super::ast::{LabelFilter, LabelFmt, LabelSelect, NumKind, Stage, Unwrap, UnwrapConv};
use super::extract::{self, Extracted, ParserError};
use super::template::TemplateData;
use super::units::{parse_bytes, parse_go_duration, UnitError};
use crate::labels::LabelSet;

pub const ERROR_LABEL: &str = "__error__";

/// One log entry as the pipeline takes it: its timestamp (Unix
/// nanoseconds), line and structured metadata — what storage's
/// `Entry::into_parts` gives (this crate depends on no storage type).
pub type LogEntry = (i64, String, Vec<(String, String)>);

/// The most bytes an entry's labels may reach through `label_format`
/// (each template is bounded, but a query may assign many of them).
const MAX_LABEL_BYTES: usize = 4 << 20;
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// An entry on its way through a pipeline.
#[derive(Clone, Debug)]
pub struct Processed {
    pub line: String,
    pub labels: LabelMap,
}

/// An entry's labels in a pipeline: pairs sorted by name. Entries carry a
/// handful, and a map is made for every line (a B-tree allocated a node of
/// about 500 bytes per line for one label).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelMap(Vec<(String, String)>);

impl LabelMap {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name`; the value it had.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.remove_entry(name).map(|(_, v)| v)
    }

    pub fn remove_entry(&mut self, name: &str) -> Option<(String, String)> {
        self.find(name).ok().map(|i| self.0.remove(i))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut String) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// Pairs by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl IntoIterator for LabelMap {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, String)> for LabelMap {
    /// A later pair with a taken name replaces the earlier one.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut m = LabelMap::default();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        m
    }
}

impl Processed {
    /// The labels as a label set (for grouping into series or streams).
    pub fn label_set(&self) -> LabelSet {
        LabelSet::from_pairs_keep_empty(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn set_error(&mut self, kind: &str, details: String) {
        if !self.labels.contains_key(ERROR_LABEL) {
            self.labels.insert(ERROR_LABEL.into(), kind.into());
            if !details.is_empty() {
                self.labels.insert(ERROR_DETAILS_LABEL.into(), details);
            }
        }
    }
}

/// Go's `strconv.ParseFloat`, which also reads `NaN`, `Inf`, `+Inf`.
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Which labels a run of the pipeline needs, and so which parsers may be
/// skipped (as Loki's parser hints decide for metric queries: a skipped
/// parser adds no error labels) and which labels are carried at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ParserSkip {
    /// Every parser runs and every label is kept (log queries; metric
    /// queries that keep labels).
    #[default]
    Never,
    /// No parser runs: the query needs no label at all (e.g. `sum(count_over_time(… | json [1m]))`).
    Always,
    /// Only these labels are carried; parsers stop running once each of
    /// them has been extracted.
    OnceExtracted(Vec<String>),
    /// Only these labels are carried, and every parser runs: enough to
    /// decide whether a line passes the pipeline's filters.
    Only(Vec<String>),
}

impl ParserSkip {
    fn skips(&self, p: &Processed, base: &Base<'_>) -> bool {
        match self {
            ParserSkip::Never | ParserSkip::Only(_) => false,
            ParserSkip::Always => true,
            ParserSkip::OnceExtracted(names) => {
                !names.is_empty() && names.iter().all(|n| !base.has(n) && p.labels.contains_key(n))
            }
        }
    }

    /// The labels carried, when not all of them.
    fn wanted(&self) -> Option<&[String]> {
        match self {
            ParserSkip::Never => None,
            ParserSkip::Always => Some(&[]),
            ParserSkip::OnceExtracted(names) | ParserSkip::Only(names) => Some(names),
        }
    }
}

/// The labels whose values decide whether a line passes `stages`, when
/// they alone do: no template or label formatting reads other labels.
/// Running the pipeline with [`ParserSkip::Only`] these names then keeps
/// exactly the lines the full pipeline keeps.
pub fn filter_labels(stages: &[Stage]) -> Option<Vec<String>> {
    if stages.iter().any(|s| matches!(s, Stage::LineFormat(_) | Stage::LabelFormat(_))) {
        return None;
    }
    let mut names = Vec::new();
    for s in stages {
        if let Stage::LabelFilter(f) = s {
            f.names(&mut names);
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// Runs `stages` on `entry` of a stream. `None`: the entry is filtered out.
pub fn process(stages: &[Stage], stream: &LabelSet, entry: LogEntry) -> Option<Processed> {
    process_skipping(stages, stream, entry, &ParserSkip::Never)
}

/// [`process`], with parsers skipped as `skip` says.
pub fn process_skipping(stages: &[Stage], stream: &LabelSet, entry: LogEntry, skip: &ParserSkip) -> Option<Processed> {
    let (ts, line, metadata) = entry;
    // A query that needs only some labels (Loki's parser hints) carries only
    // those: the stream's other labels are not copied for every line.
    let needed = |k: &str| skip.wanted().is_none_or(|names| names.iter().any(|n| n == k));
    let mut labels: LabelMap = stream.iter().filter(|(k, _)| needed(k)).cloned().collect();
    // Precedence: stream labels, then structured metadata, then parsed
    // labels; a later one with a taken name becomes `<name>_extracted`.
    for (k, v) in &metadata {
        let key = if stream.get(k).is_some() { format!("{k}_extracted") } else { k.clone() };
        if needed(&key) {
            labels.insert(key, v.clone());
        }
    }
    let mut p = Processed { line, labels };
    let base = Base { stream, metadata: &metadata };
    for stage in stages {
        let parser = matches!(stage, Stage::Json(_) | Stage::Logfmt { .. } | Stage::Pattern(_) | Stage::Unpack);
        if parser && skip.skips(&p, &base) {
            continue;
        }
        if !run_stage(stage, &base, ts, skip, &mut p) {
            return None;
        }
    }
    Some(p)
}

/// The labels an entry came with: parsed labels may not take their names.
struct Base<'a> {
    stream: &'a LabelSet,
    metadata: &'a [(String, String)],
}

impl Base<'_> {
    fn has(&self, name: &str) -> bool {
        self.stream.get(name).is_some() || self.metadata.iter().any(|(k, _)| k == name)
    }
}

/// Names a parser never takes from a line: a log field may not set (or
/// mask) the error labels the pipeline itself sets.
const RESERVED_LABELS: [&str; 3] = ["__error__", "__error_details__", "__preserve_error__"];

/// Adds extracted labels: a name the entry came with becomes
/// `<name>_extracted`; the reserved error labels are dropped.
fn add_extracted(p: &mut Processed, base: &Base<'_>, extracted: Extracted) {
    for (k, v) in extracted {
        if RESERVED_LABELS.contains(&k.as_str()) {
            continue;
        }
        let key = if base.has(&k) { format!("{k}_extracted") } else { k };
        p.labels.insert(key, v);
    }
}

fn apply_parser(p: &mut Processed, stream: &Base<'_>, r: Result<Extracted, ParserError>) {
    match r {
        Ok(ex) => add_extracted(p, stream, ex),
        Err(e) => p.set_error(e.kind, e.details),
    }
}

fn run_stage(stage: &Stage, stream: &Base<'_>, ts: i64, skip: &ParserSkip, p: &mut Processed) -> bool {
    match stage {
        Stage::LineFilter(f) => f.matches(&p.line),
        Stage::Json(None) => {
            // The query needs only some labels: extract only those.
            let r = extract::json_only(&p.line, skip.wanted());
            apply_parser(p, stream, r);
            true
        }
        Stage::Json(Some(exprs)) => {
            let r = exprs.extract(&p.line);
            apply_parser(p, stream, r);
            true
        }
        Stage::Logfmt { strict, keep_empty, exprs } => {
            let r = match (exprs, skip) {
                // The query needs only some labels: extract only those.
                (None, _) => extract::logfmt_only(&p.line, *strict, *keep_empty, skip.wanted()),
                (Some(e), _) => e.extract(&p.line, *strict),
            };
            apply_parser(p, stream, r);
            true
        }
        Stage::Regexp(re) => {
            let ex = re.extract(&p.line);
            add_extracted(p, stream, ex);
            true
        }
        Stage::Pattern(pat) => {
            let ex = pat.extract(&p.line);
            add_extracted(p, stream, ex);
            true
        }
        Stage::Unpack => {
            match extract::unpack(&p.line) {
                Ok((ex, line)) => {
                    add_extracted(p, stream, ex);
                    if let Some(l) = line {
                        p.line = l;
                    }
                }
                Err(e) => p.set_error(e.kind, e.details),
            }
            true
        }
        Stage::LabelFilter(f) => eval_label_filter(f, p),
        Stage::LineFormat(t) => {
            let labels: Vec<(String, String)> = p.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            match t.render(&TemplateData { labels: &labels, line: &p.line, ts }) {
                Ok(line) => p.line = line,
                Err(e) => p.set_error("TemplateFormatErr", e.to_string()),
            }
            true
        }
        Stage::LabelFormat(fmts) => {
            let before: Vec<(String, String)> = p.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let mut bytes: usize = before.iter().map(|(k, v)| k.len() + v.len()).sum();
            for f in fmts {
                match f {
                    LabelFmt::Template(dst, t) => match t.render(&TemplateData { labels: &before, line: &p.line, ts }) {
                        Ok(v) if bytes + v.len() > MAX_LABEL_BYTES => {
                            p.set_error("TemplateFormatErr", format!("label_format: labels longer than {MAX_LABEL_BYTES} bytes"));
                            break;
                        }
                        Ok(v) => {
                            bytes += dst.len() + v.len();
                            p.labels.insert(dst.clone(), v);
                        }
                        Err(e) => p.set_error("TemplateFormatErr", e.to_string()),
                    },
                    LabelFmt::Rename(dst, src) => {
                        let v = before.iter().find(|(k, _)| k == src).map(|(_, v)| v.clone()).unwrap_or_default();
                        p.labels.remove(src);
                        p.labels.insert(dst.clone(), v);
                    }
                }
            }
            true
        }
        Stage::Decolorize => {
            p.line = decolorize(&p.line);
            true
        }
        Stage::Drop(sel) => {
            p.labels.retain(|k, v| !sel.iter().any(|s| selects(s, k, v)));
            true
        }
        Stage::Keep(sel) => {
            p.labels.retain(|k, v| sel.iter().any(|s| selects(s, k, v)));
            true
        }
    }
}

fn selects(s: &LabelSelect, name: &str, value: &str) -> bool {
    match s {
        LabelSelect::Name(n) => n == name,
        LabelSelect::Matching(m) => m.name == name && m.matches(Some(value)),
    }
}

/// Removes ANSI colour and cursor escape sequences.
fn decolorize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            while let Some(&n) = chars.peek() {
                chars.next();
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Evaluates a label filter; a value that cannot be read as the filter's
/// kind sets `__error__=LabelFilterErr` and keeps the entry, as Loki does.
fn eval_label_filter(f: &LabelFilter, p: &mut Processed) -> bool {
    match f {
        LabelFilter::And(a, b) => {
            // Both sides run (a later error is still recorded), as in Loki.
            let l = eval_label_filter(a, p);
            let r = eval_label_filter(b, p);
            l && r
        }
        LabelFilter::Or(a, b) => eval_label_filter(a, p) || eval_label_filter(b, p),
        LabelFilter::Str(m) => m.matches(p.labels.get(&m.name).map(String::as_str)),
        LabelFilter::Ip { name, negate, matcher, .. } => {
            // Loki keeps any line that already carries an error.
            if p.labels.contains_key(ERROR_LABEL) {
                return true;
            }
            match p.labels.get(name) {
                Some(v) => matcher.line_contains(v) != *negate,
                None => false,
            }
        }
        LabelFilter::Num { name, op, value, kind } => {
            // A converting filter cannot read `__error__`: it drops the line.
            if name == ERROR_LABEL {
                return false;
            }
            let Some(raw) = p.labels.get(name).cloned() else { return false };
            let parsed = match kind {
                NumKind::Number => parse_go_float(&raw).ok_or_else(|| UnitError::GoFloatSyntax(raw.clone())),
                NumKind::Duration => parse_go_duration(&raw),
                NumKind::Bytes => parse_bytes(&raw),
            };
            match parsed {
                Ok(v) => op.apply(v, *value),
                Err(e) => {
                    p.set_error("LabelFilterErr", e.to_string());
                    true
                }
            }
        }
    }
}

/// Takes the unwrapped value out of the labels (the label is removed from
/// the series), then runs the filters after `unwrap`. `None`: filtered out
/// (also when the entry has no such label).
/// A value that cannot be converted sets `__error__=SampleExtractionErr`.
pub fn unwrap_value(u: &Unwrap, p: &mut Processed) -> Option<f64> {
    let raw = p.labels.get(&u.label).filter(|v| !v.is_empty())?.clone();
    let v = match u.conv {
        UnwrapConv::Float => parse_go_float(&raw).ok_or_else(|| UnitError::GoFloatSyntax(raw.clone())),
        UnwrapConv::Bytes => parse_bytes(&raw),
        UnwrapConv::Duration | UnwrapConv::DurationSeconds => parse_go_duration(&raw),
    };
    let value = match v {
        Ok(v) => v,
        Err(e) => {
            p.set_error("SampleExtractionErr", e.to_string());
            0.0
        }
    };
    for f in &u.post_filters {
        if !eval_label_filter(f, p) {
            return None;
        }
    }
    p.labels.remove(&u.label);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_expr, Expr};

    fn run(q: &str, line: &str) -> Option<Processed> {
        let Expr::Log(l) = parse_expr(q).unwrap() else { panic!() };
        let s = LabelSet::parse(r#"{app="a", level="x"}"#).unwrap();
        process(&l.stages, &s, (1, line.to_string(), Vec::new()))
    }

    #[test]
    fn numeric_filters_and_errors() {
        let p = run(r#"{app="a"} | logfmt | status >= 500"#, "status=503").unwrap();
        assert_eq!(p.labels.get("status").map(String::as_str), Some("503"));
        assert!(run(r#"{app="a"} | logfmt | status >= 500"#, "status=200").is_none());
        let p = run(r#"{app="a"} | logfmt | status >= 500"#, "status=oops").unwrap();
        assert_eq!(p.labels.get(ERROR_LABEL).map(String::as_str), Some("LabelFilterErr"));
        assert!(run(r#"{app="a"} | logfmt | status >= 500 | __error__="""#, "status=oops").is_none());
        let p = run(r#"{app="a"} | logfmt | took > 1s and size < 1MB"#, "took=1.5s size=3kb").unwrap();
        assert!(!p.labels.contains_key(ERROR_LABEL));
    }

    #[test]
    fn a_log_field_cannot_set_the_error_labels() {
        for q in [r#"{app="a"} | logfmt"#, r#"{app="a"} | json"#] {
            let line = if q.ends_with("json") {
                r#"{"__error__":"boom","__error_details__":"d","__preserve_error__":"true","ok":"1"}"#
            } else {
                "__error__=boom __error_details__=d __preserve_error__=true ok=1"
            };
            let p = run(q, line).unwrap();
            assert_eq!(p.label_set().to_string(), r#"{app="a", level="x", ok="1"}"#, "{q}");
        }
        let p = run(r#"{app="a"} | logfmt --strict"#, r#"__preserve_error__=true bad="unterminated"#).unwrap();
        assert_eq!(p.labels.get(ERROR_LABEL).map(String::as_str), Some("LogfmtParserErr"));
    }

    #[test]
    fn the_sieve_keeps_exactly_the_lines_the_full_pipeline_keeps() {
        let stream = LabelSet::parse(r#"{app="a", level="x", pod="p1"}"#).unwrap();
        let queries = [
            r#"{app="a"} | logfmt | level_extracted="error""#,
            r#"{app="a"} | logfmt | status >= 500 or took > 1s"#,
            r#"{app="a"} | json | code=200 | __error__="""#,
            r#"{app="a"} | logfmt --strict | __error__!="" "#,
            r#"{app="a"} | logfmt | drop status | status="" "#,
            r#"{app="a"} | regexp `s=(?P<s>\d+)` | logfmt | s > 1"#,
            r#"{app="a"} | logfmt | json | level_extracted="warn""#,
            r#"{app="a"} | pod="p1" | addr = ip("10.0.0.0/8")"#,
        ];
        let lines = [
            "level=error status=503 took=2s",
            "level=warn status=200 took=10ms s=5 addr=10.1.2.3",
            r#"{"code":200,"level":"warn"}"#,
            "x=\"unterminated level=error",
            "",
        ];
        for q in queries {
            let Expr::Log(l) = parse_expr(q).unwrap() else { panic!() };
            let names = filter_labels(&l.stages).unwrap();
            for line in lines {
                let full = process(&l.stages, &stream, (1, line.to_string(), Vec::new())).is_some();
                let sieve = process_skipping(&l.stages, &stream, (1, line.to_string(), Vec::new()), &ParserSkip::Only(names.clone())).is_some();
                assert_eq!(sieve, full, "{q} on {line:?}");
            }
        }
        let Expr::Log(l) = parse_expr(r#"{app="a"} | logfmt | line_format "{{.x}}" | x="1""#).unwrap() else { panic!() };
        assert_eq!(filter_labels(&l.stages), None, "templates may read any label");
    }

    /// Seeded random lines (JSON-ish, logfmt-ish, escapes, multi-byte
    /// characters, cut anywhere) through seeded random pipelines: a line a
    /// client sent never panics a query, and the light run agrees with the
    /// full one.
    #[test]
    fn random_lines_through_random_pipelines_never_panic() {
        const STAGES: [&str; 16] = [
            "| json", "| logfmt", "| logfmt --strict", "| logfmt --keep-empty level, m=\"msg\"", r#"| json a="a.b[0]", c"#,
            r#"| regexp `(?P<w>\w+)=(?P<v>\S*)`"#, r#"| pattern "<k>=<v> <_>""#, "| unpack", r#"| level="x" or n > 2"#,
            "| took > 1s", "| size < 1KB", r#"| line_format "{{.a | trunc 3}}{{ __line__ | b64enc }}{{ .n | int | add 1 }}""#,
            r#"| label_format a="{{ .level | ToUpper }}", b=n"#, "| drop __error__", "| decolorize", r#"| addr = ip("10.0.0.0/8")"#,
        ];
        const PIECES: [&str; 24] = [
            "{", "}", "[", "]", "\"", "\\", "=", " ", "level", "n", "a", ":", ",", "3", "-1.5e3", "1s", "é", "日本", "\u{1b}[31m",
            "\\u00e9", "\\\"", "null", "true", "10.1.2.3",
        ];
        let mut next = crate::test_rng(0x0dd_f00d_beef_cafe);
        let stream = LabelSet::parse(r#"{app="a", level="x"}"#).unwrap();
        for _ in 0..3_000 {
            let mut q = String::from(r#"{app="a"}"#);
            for _ in 0..1 + next(4) {
                q.push(' ');
                q.push_str(STAGES[next(STAGES.len())]);
            }
            let Ok(Expr::Log(l)) = parse_expr(&q) else { panic!("{q}") };
            for _ in 0..5 {
                let line: String = (0..next(30)).map(|_| PIECES[next(PIECES.len())]).collect();
                let full = process(&l.stages, &stream, (1, line.to_string(), Vec::new()));
                if let Some(names) = filter_labels(&l.stages) {
                    let light = process_skipping(&l.stages, &stream, (1, line.to_string(), Vec::new()), &ParserSkip::Only(names));
                    assert_eq!(light.is_some(), full.is_some(), "{q} on {line:?}");
                }
            }
        }
    }

    #[test]
    fn label_format_cannot_grow_labels_without_bound() {
        let big = r#"`{{ repeat 4000 (repeat 1000 "x") }}`"#;
        let fmts: Vec<String> = (0..1000).map(|i| format!("a{i}={big}")).collect();
        let p = run(&format!(r#"{{app="a"}} | label_format {}"#, fmts.join(", ")), "l").unwrap();
        assert_eq!(p.labels.get(ERROR_LABEL).map(String::as_str), Some("TemplateFormatErr"));
        assert!(p.labels.values().map(String::len).sum::<usize>() <= MAX_LABEL_BYTES + 1024);
    }

    #[test]
    fn clashes_formatting_drop_keep() {
        let p = run(r#"{app="a"} | logfmt | line_format "{{.level_extracted}}/{{.level}}""#, "level=info").unwrap();
        assert_eq!(p.line, "info/x");
        let p = run(r#"{app="a"} | label_format lvl=level | drop app"#, "l").unwrap();
        assert_eq!(p.label_set().to_string(), r#"{lvl="x"}"#);
        let p = run(r#"{app="a"} | keep app"#, "l").unwrap();
        assert_eq!(p.label_set().to_string(), r#"{app="a"}"#);
        assert_eq!(decolorize("\u{1b}[31mred\u{1b}[0m"), "red");
    }
}
