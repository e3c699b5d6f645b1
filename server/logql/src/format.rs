//! `format_query`: a LogQL query printed as Loki prints it. Every
//! expression has one canonical text (what Loki's AST `String()` gives:
//! `sum by (a)(…)`, binary operations in parentheses, `status>=400`,
//! durations normalized); an expression whose text is longer than 100
//! characters is split over indented lines the way Loki's `Prettify` splits
//! it (arguments one level deeper, each pipeline stage on its own line,
//! binary operators between their operands).
//!
//! One deliberate difference: when Loki splits a long chain of line
//! filters it drops the `or` alternatives of each filter (a bug that
//! changes the query); here they stay.

use std::time::Duration;

use regex_syntax::ast::{self, Ast};

use super::ast::{
    BinOp, BinaryExpr, CmpOp, Expr, GroupSide, Grouping, LabelFilter, LabelFmt, LabelSelect, LineFilterOp, LineFilterSpec,
    LineTestSpec, LogExpr, MatchOp, Matcher, NumKind, RangeAgg, Stage, Unwrap, UnwrapConv, VectorAgg,
};
use super::parser::{parse_expr, ParseError};
use super::units::{go_duration, go_float, humanize_bytes};
use crate::labels::go_quote;

/// Expressions whose canonical text is longer than this are split.
const MAX_CHARS_PER_LINE: usize = 100;

/// `src` formatted as Loki's `format_query` formats it, or its parse error.
pub fn format_query(src: &str) -> Result<String, ParseError> {
    Ok(pretty(&parse_expr(src)?, 0))
}

// ---- canonical text (one line) ----

/// The canonical one-line text of an expression.
pub fn canonical(e: &Expr) -> String {
    match e {
        Expr::Log(l) => log_text(l),
        Expr::Range(r) => range_text(r),
        Expr::Vector(v) => vector_text(v),
        Expr::Binary(b) => format!("({} {} {})", canonical(&b.lhs), binop_text(b, ","), canonical(&b.rhs)),
        Expr::Literal(v) => go_float(*v),
        Expr::VectorLit(v) => format!("vector({})", go_fixed6(*v)),
        Expr::LabelReplace(l) => format!(
            "label_replace({},{},{},{},{})",
            canonical(&l.inner),
            go_quote(&l.dst),
            go_quote(&l.replacement),
            go_quote(&l.src),
            go_quote(&l.regex)
        ),
    }
}

fn selector_text(ms: &[Matcher]) -> String {
    format!("{{{}}}", ms.iter().map(matcher_text).collect::<Vec<_>>().join(", "))
}

fn matcher_text(m: &Matcher) -> String {
    let op = match m.op {
        MatchOp::Eq => "=",
        MatchOp::Neq => "!=",
        MatchOp::Re => "=~",
        MatchOp::Nre => "!~",
    };
    format!("{}{op}{}", m.name, go_quote(&m.value))
}

/// A pipeline as Loki's AST holds it: a run of line filters is one stage.
enum Piece {
    /// One text per filter; a negated filter with `or` alternatives is one
    /// filter per alternative (`!= "a" or "b"` means `!= "a" != "b"`).
    Filters(Vec<String>),
    Stage { text: String, indented: bool },
}

impl Piece {
    fn text(&self) -> String {
        match self {
            Piece::Filters(f) => f.join(" "),
            Piece::Stage { text, .. } => text.clone(),
        }
    }
}

fn pieces(stages: &[Stage]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for stage in stages {
        if let Stage::LineFilter(f) = stage {
            if let Some(Piece::Filters(run)) = out.last_mut() {
                line_filter_texts(&f.spec, run);
            } else {
                let mut run = Vec::new();
                line_filter_texts(&f.spec, &mut run);
                out.push(Piece::Filters(run));
            }
            continue;
        }
        // Loki indents every stage of a split pipeline but `decolorize`.
        out.push(Piece::Stage { text: stage_text(stage), indented: !matches!(stage, Stage::Decolorize) });
    }
    out
}

fn line_filter_texts(f: &LineFilterSpec, out: &mut Vec<String>) {
    let op = match f.op {
        LineFilterOp::Contains => "|=",
        LineFilterOp::NotContains => "!=",
        LineFilterOp::Match => "|~",
        LineFilterOp::NotMatch => "!~",
        LineFilterOp::Pattern => "|>",
        LineFilterOp::NotPattern => "!>",
    };
    let alternatives = f.alternatives.iter().map(|t| match t {
        LineTestSpec::Text(s) | LineTestSpec::Regex(s) | LineTestSpec::Pattern(s) => go_quote(s),
        LineTestSpec::Ip(s) => format!("ip({})", go_quote(s)),
    });
    if f.op.negated() {
        out.extend(alternatives.map(|a| format!("{op} {a}")));
    } else {
        out.push(format!("{op} {}", alternatives.collect::<Vec<_>>().join(" or ")));
    }
}

fn log_text(l: &LogExpr) -> String {
    let mut s = selector_text(&l.matchers);
    for p in pieces(&l.stages) {
        s.push(' ');
        s.push_str(&p.text());
    }
    s
}

fn extraction_list(list: &[(String, String)]) -> String {
    list.iter().map(|(id, e)| format!("{id}={}", go_quote(e))).collect::<Vec<_>>().join(",")
}

fn stage_text(stage: &Stage) -> String {
    match stage {
        Stage::LineFilter(f) => {
            let mut texts = Vec::new();
            line_filter_texts(&f.spec, &mut texts);
            texts.join(" ")
        }
        Stage::Json(None) => "| json".into(),
        Stage::Json(Some(e)) => format!("| json {}", extraction_list(e.source())),
        Stage::Logfmt { strict, keep_empty, exprs } => {
            let mut s = String::from("| logfmt");
            if *strict {
                s.push_str(" --strict");
            }
            if *keep_empty {
                s.push_str(" --keep-empty");
            }
            if let Some(e) = exprs {
                s.push(' ');
                s.push_str(&extraction_list(e.source()));
            }
            s
        }
        Stage::Regexp(r) => format!("| regexp {}", go_quote(r.source())),
        Stage::Pattern(p) => format!("| pattern {}", go_quote(p.source())),
        Stage::Unpack => "| unpack".into(),
        Stage::LabelFilter(f) => format!("| {}", label_filter_text(f)),
        Stage::LineFormat(t) => format!("| line_format {}", go_quote(t.source())),
        Stage::LabelFormat(fmts) => {
            let items: Vec<String> = fmts
                .iter()
                .map(|f| match f {
                    LabelFmt::Template(dst, t) => format!("{dst}={}", go_quote(t.source())),
                    LabelFmt::Rename(dst, src) => format!("{dst}={src}"),
                })
                .collect();
            format!("| label_format {}", items.join(","))
        }
        Stage::Decolorize => "| decolorize".into(),
        Stage::Drop(sel) => format!("| drop {}", select_text(sel)),
        Stage::Keep(sel) => format!("| keep {}", select_text(sel)),
    }
}

fn select_text(sel: &[LabelSelect]) -> String {
    sel.iter()
        .map(|s| match s {
            LabelSelect::Name(n) => n.clone(),
            LabelSelect::Matching(m) => matcher_text(m),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn cmp_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
    }
}

fn label_filter_text(f: &LabelFilter) -> String {
    match f {
        LabelFilter::And(a, b) => format!("( {} , {} )", label_filter_text(a), label_filter_text(b)),
        LabelFilter::Or(a, b) => format!("( {} or {} )", label_filter_text(a), label_filter_text(b)),
        // Loki prints a regex it could not reduce to plain string tests
        // between backquotes.
        LabelFilter::Str(m) if m.op == MatchOp::Re && !go_simplifies(&m.value) => {
            let re = if m.value.contains('`') { go_quote(&m.value) } else { format!("`{}`", m.value) };
            format!("{}=~{re}", m.name)
        }
        LabelFilter::Str(m) => matcher_text(m),
        LabelFilter::Num { name, op, value, kind } => {
            let v = match kind {
                NumKind::Number => value.to_string(),
                NumKind::Duration => go_duration((value * 1e9).round() as i64),
                NumKind::Bytes => humanize_bytes(*value as u64).replace(' ', ""),
            };
            format!("{name}{}{v}", cmp_text(*op))
        }
        LabelFilter::Ip { name, negate, pattern, .. } => {
            format!("{name}{}ip({})", if *negate { "!=" } else { "=" }, go_quote(pattern))
        }
    }
}

fn unwrap_call(u: &Unwrap) -> String {
    match u.conv {
        UnwrapConv::Float => u.label.clone(),
        UnwrapConv::Bytes => format!("bytes({})", u.label),
        UnwrapConv::Duration => format!("duration({})", u.label),
        UnwrapConv::DurationSeconds => format!("duration_seconds({})", u.label),
    }
}

/// A range's log query, unwrap and range: on one line, or split as Loki's
/// `Prettify` splits it (`split_at`: the nesting level).
fn log_range(r: &RangeAgg, split_at: Option<usize>) -> String {
    let (mut s, sep, space) = match split_at {
        None => (log_text(&r.log), " ".to_string(), ""),
        Some(level) => (log_pretty(&r.log, level), format!("\n{}", indent(level + 1)), " "),
    };
    if let Some(u) = &r.unwrap {
        s.push_str(&format!("{sep}| unwrap {}", unwrap_call(u)));
        for f in &u.post_filters {
            s.push_str(&format!("{sep}| {}", label_filter_text(f)));
        }
    }
    s.push_str(&format!("{space}[{}]", model_duration(r.range)));
    if r.offset != 0 {
        // Loki writes the offset as Go does on one line (`1h0m0s`), as
        // Prometheus does when split (`1h`).
        let offset = if split_at.is_none() { go_duration(r.offset) } else { model_duration(r.offset) };
        s.push_str(&format!(" offset {offset}"));
    }
    s
}

fn grouping_text(g: &Grouping) -> String {
    format!(" {} ({})", if g.without { "without" } else { "by" }, g.labels.join(","))
}

fn range_text(r: &RangeAgg) -> String {
    let param = r.param.map(|p| format!("{p},")).unwrap_or_default();
    let grouping = r.grouping.as_ref().map(grouping_text).unwrap_or_default();
    format!("{}({param}{}){grouping}", r.op.name(), log_range(r, None))
}

/// A vector aggregation's grouping, unless it aggregates everything.
fn vector_grouping(v: &VectorAgg) -> Option<&Grouping> {
    v.grouping.as_ref().filter(|g| g.without || !g.labels.is_empty())
}

fn vector_text(v: &VectorAgg) -> String {
    let inner = canonical(&v.inner);
    let args = match v.param {
        Some(p) if v.op.takes_param() => format!("{},{inner}", p as i64),
        _ => inner,
    };
    format!("{}{}({args})", v.op.name(), vector_grouping(v).map(grouping_text).unwrap_or_default())
}

pub(super) fn binop_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "or",
        BinOp::And => "and",
        BinOp::Unless => "unless",
        BinOp::Cmp(c) => cmp_text(c),
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Pow => "^",
    }
}

/// The operator with its modifiers, label lists joined by `sep`. The one-line
/// form (`sep` ",") writes `on ()`; the split form (", ") writes `on`/`ignoring`
/// only with labels — both as Loki does.
fn binop_text(b: &BinaryExpr, sep: &str) -> String {
    let mut op = binop_symbol(b.op).to_string();
    if b.return_bool {
        op.push_str(" bool");
    }
    let m = &b.matching;
    let mut group = match &m.group {
        Some((GroupSide::Left, _)) => "group_left".to_string(),
        Some((GroupSide::Right, _)) => "group_right".to_string(),
        None => String::new(),
    };
    if let Some((_, include)) = &m.group {
        if !include.is_empty() {
            group = format!("{group} ({})", include.join(sep));
        }
    }
    let one_line = sep == ",";
    if !m.labels.is_empty() || (one_line && m.on) {
        op = format!("{op} {} ({}) {group}", if m.on { "on" } else { "ignoring" }, m.labels.join(sep));
    }
    op
}

// ---- split form ----

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

/// The expression at nesting `level`: its canonical text when short enough,
/// else split over lines.
fn pretty(e: &Expr, level: usize) -> String {
    let ind = indent(level);
    let flat = canonical(e);
    if flat.len() <= MAX_CHARS_PER_LINE {
        return ind + &flat;
    }
    match e {
        Expr::Log(l) => log_pretty(l, level),
        Expr::Range(r) => {
            let mut s = format!("{ind}{}(\n", r.op.name());
            if let Some(p) = r.param {
                s.push_str(&format!("{}{},\n", indent(level + 1), go_float(p)));
            }
            s.push_str(&log_range(r, Some(level + 1)));
            s.push_str(&format!("\n{ind})"));
            if let Some(g) = &r.grouping {
                s.push_str(&grouping_pretty(g));
            }
            s
        }
        Expr::Vector(v) => {
            let mut args = Vec::new();
            if let (Some(p), true) = (v.param, v.op.takes_param()) {
                args.push(format!("{}{}", indent(level + 1), p as i64));
            }
            args.push(pretty(&v.inner, level + 1));
            let grouping = v.grouping.as_ref().map(grouping_pretty).unwrap_or_default();
            format!("{ind}{}{grouping}(\n{}\n{ind})", v.op.name(), args.join(",\n"))
        }
        Expr::Binary(b) => {
            format!("{}\n{ind}{}\n{}", pretty(&b.lhs, level + 1), binop_text(b, ", "), pretty(&b.rhs, level + 1))
        }
        Expr::LabelReplace(l) => {
            let arg = indent(level + 1);
            let args = [
                pretty(&l.inner, level + 1),
                format!("{arg}{}", go_quote(&l.dst)),
                format!("{arg}{}", go_quote(&l.replacement)),
                format!("{arg}{}", go_quote(&l.src)),
                format!("{arg}{}", go_quote(&l.regex)),
            ];
            format!("{ind}label_replace(\n{}\n{ind})", args.join(",\n"))
        }
        Expr::Literal(_) | Expr::VectorLit(_) => ind + &flat,
    }
}

/// `{…}` on one line, then each stage on its own line one level deeper.
fn log_pretty(l: &LogExpr, level: usize) -> String {
    let flat = log_text(l);
    if flat.len() <= MAX_CHARS_PER_LINE || l.stages.is_empty() {
        return indent(level) + &flat;
    }
    let mut s = indent(level) + &selector_text(&l.matchers);
    for p in pieces(&l.stages) {
        s.push('\n');
        match p {
            Piece::Filters(f) => s.push_str(&filters_pretty(&f, level + 1)),
            Piece::Stage { text, indented: true } => s.push_str(&(indent(level + 1) + &text)),
            Piece::Stage { text, indented: false } => s.push_str(&text),
        }
    }
    s
}

/// A run of line filters: on one line while short enough, else the last
/// filter on its own line below the others (split the same way).
fn filters_pretty(f: &[String], level: usize) -> String {
    let flat = f.join(" ");
    match f.split_last() {
        Some((last, rest)) if flat.len() > MAX_CHARS_PER_LINE && !rest.is_empty() => {
            format!("{}\n{}{last}", filters_pretty(rest, level), indent(level))
        }
        _ => indent(level) + &flat,
    }
}

fn grouping_pretty(g: &Grouping) -> String {
    let mut s = String::new();
    if g.without {
        s.push_str(" without");
    } else if !g.labels.is_empty() {
        s.push_str(" by");
    }
    if !g.labels.is_empty() {
        s.push_str(&format!(" ({})", g.labels.join(", ")));
    }
    s
}

// ---- numbers, durations and sizes as Go prints them ----


/// Go's `%f`: six decimals.
fn go_fixed6(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        v if v.is_infinite() && v > 0.0 => "+Inf".into(),
        v if v.is_infinite() => "-Inf".into(),
        v => format!("{v:.6}"),
    }
}

/// Prometheus' duration text (`5m`, `1h30m`, `0s`), as Loki prints ranges.
fn model_duration(ns: i64) -> String {
    if ns < 0 {
        // Prometheus writes nothing for a negative duration.
        return String::new();
    }
    crate::units::prometheus_duration(Duration::from_nanos(ns as u64))
}




// ---- which label regexes Loki reduces to string tests ----

/// Go's parse of a regex, as far as Loki's regex simplifier looks at it.
#[derive(Clone, Debug, PartialEq)]
enum Re {
    Lit(Vec<char>),
    Empty,
    AnyNotNl,
    Star(Box<Re>),
    Plus(Box<Re>),
    Concat(Vec<Re>),
    Alt(Vec<Re>),
    /// A character class or anything else the simplifier gives up on.
    Other,
}

/// Whether Loki turns the label regex `re` into plain string tests (it then
/// prints the filter with double quotes, otherwise between backquotes).
fn go_simplifies(re: &str) -> bool {
    match ast::parse::Parser::new().parse(re) {
        Ok(a) => simplifiable(&from_ast(&a)),
        Err(_) => false,
    }
}

fn only_case_flag(f: &ast::Flags) -> bool {
    f.items.iter().all(|i| matches!(i.kind, ast::FlagsItemKind::Flag(ast::Flag::CaseInsensitive)))
}

fn from_ast(a: &Ast) -> Re {
    match a {
        Ast::Empty(_) => Re::Empty,
        Ast::Flags(f) if only_case_flag(&f.flags) => Re::Empty,
        Ast::Literal(l) => Re::Lit(vec![l.c]),
        Ast::Dot(_) => Re::AnyNotNl,
        Ast::Repetition(r) => match r.op.kind {
            ast::RepetitionKind::ZeroOrMore => Re::Star(Box::new(from_ast(&r.ast))),
            ast::RepetitionKind::OneOrMore => Re::Plus(Box::new(from_ast(&r.ast))),
            _ => Re::Other,
        },
        Ast::Group(g) => match &g.kind {
            ast::GroupKind::NonCapturing(f) if !only_case_flag(f) => Re::Other,
            _ => from_ast(&g.ast),
        },
        Ast::Concat(c) => {
            let mut subs: Vec<Re> = Vec::new();
            for sub in c.asts.iter().map(from_ast) {
                match (subs.last_mut(), sub) {
                    (_, Re::Empty) => {}
                    (Some(Re::Lit(prev)), Re::Lit(next)) => prev.extend(next),
                    (_, sub) => subs.push(sub),
                }
            }
            match subs.len() {
                0 => Re::Empty,
                1 => subs.remove(0),
                _ => Re::Concat(subs),
            }
        }
        Ast::Alternation(alt) => collapse_alt(alt.asts.iter().map(from_ast).collect()),
        _ => Re::Other,
    }
}

fn leading_string(r: &Re) -> &[char] {
    match r {
        Re::Lit(s) => s,
        Re::Concat(v) => match v.first() {
            Some(Re::Lit(s)) => s,
            _ => &[],
        },
        _ => &[],
    }
}

fn remove_leading(r: Re, n: usize) -> Re {
    match r {
        Re::Lit(s) if s.len() == n => Re::Empty,
        Re::Lit(s) => Re::Lit(s[n..].to_vec()),
        Re::Concat(mut v) => {
            let first = remove_leading(v.remove(0), n);
            if first != Re::Empty {
                v.insert(0, first);
            }
            match v.len() {
                0 => Re::Empty,
                1 => v.remove(0),
                _ => Re::Concat(v),
            }
        }
        other => other,
    }
}

fn is_char_class(r: &Re) -> bool {
    matches!(r, Re::Lit(s) if s.len() == 1) || matches!(r, Re::AnyNotNl)
}

/// Go's parser factors an alternation: common literal prefixes move out
/// (`warn|warning` is `warn(?:|ing)`), runs of single characters become a
/// class (`a|b` is `[ab]`), runs of empty alternatives become one.
fn collapse_alt(subs: Vec<Re>) -> Re {
    let mut flat = Vec::new();
    for s in subs {
        match s {
            Re::Alt(inner) => flat.extend(inner),
            s => flat.push(s),
        }
    }
    if flat.len() == 1 {
        return flat.remove(0);
    }
    // Common literal prefixes.
    let mut factored: Vec<Re> = Vec::new();
    let mut start = 0;
    let mut prefix: Vec<char> = Vec::new();
    for i in 0..=flat.len() {
        if i < flat.len() {
            let lead = leading_string(&flat[i]);
            let same = prefix.iter().zip(lead).take_while(|(a, b)| a == b).count();
            if same > 0 {
                prefix.truncate(same);
                continue;
            }
        }
        if i == start + 1 {
            factored.push(flat[start].clone());
        } else if i > start + 1 {
            let rest = flat[start..i].iter().cloned().map(|r| remove_leading(r, prefix.len())).collect();
            factored.push(Re::Concat(vec![Re::Lit(prefix.clone()), collapse_alt(rest)]));
        }
        start = i;
        prefix = flat.get(i).map(|r| leading_string(r).to_vec()).unwrap_or_default();
    }
    // Runs of single characters, then runs of empty alternatives.
    let mut out: Vec<Re> = Vec::new();
    let mut run = 0;
    for r in factored {
        let class = is_char_class(&r);
        match (class, run) {
            (true, n) if n >= 1 => {
                if let Some(last) = out.last_mut() {
                    *last = Re::Other;
                }
                run += 1;
            }
            _ if r == Re::Empty && out.last() == Some(&Re::Empty) => {}
            _ => {
                run = usize::from(class);
                out.push(r);
            }
        }
    }
    match out.len() {
        1 => out.remove(0),
        _ => Re::Alt(out),
    }
}

/// Loki's `RegexSimplifier.Simplify` for a label regex: literals,
/// alternations of them, `.*`/`.+`, and a literal within `.*`.
fn simplifiable(r: &Re) -> bool {
    match r {
        Re::Alt(v) => v.iter().all(simplifiable),
        Re::Concat(v) => simplifiable_concat(v, false),
        Re::Lit(_) | Re::Empty => true,
        Re::Star(s) | Re::Plus(s) => **s == Re::AnyNotNl,
        _ => false,
    }
}

fn simplifiable_concat(subs: &[Re], mut have_literal: bool) -> bool {
    let subs: Vec<&Re> = subs.iter().filter(|r| **r != Re::Empty).collect();
    if subs.len() > 3 {
        return false;
    }
    let mut literals = 0;
    let mut from_alternates = false;
    for sub in subs {
        match sub {
            Re::Lit(_) if literals == 0 => {
                literals += 1;
                have_literal = true;
            }
            Re::Alt(alts) if have_literal => {
                let ok = alts.iter().all(|a| match a {
                    Re::Empty | Re::Lit(_) => true,
                    Re::Concat(v) => simplifiable_concat(v, true),
                    Re::Star(s) => **s == Re::AnyNotNl,
                    _ => false,
                });
                if !ok {
                    return false;
                }
                from_alternates = true;
            }
            Re::Star(s) if **s == Re::AnyNotNl => {}
            _ => return false,
        }
    }
    from_alternates || have_literal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(q: &str) -> String {
        format_query(q).unwrap()
    }

    #[test]
    fn short_queries_print_as_lokis_string() {
        assert_eq!(f(r#"{job="loki",instance="localhost"}"#), r#"{job="loki", instance="localhost"}"#);
        assert_eq!(f("vector(1)+vector(1)"), "(vector(1.000000) + vector(1.000000))");
        assert_eq!(
            f(r#"sum(rate({app="a"} |= "x" or "y" != "z" [5m])) by (level)"#),
            r#"sum by (level)(rate({app="a"} |= "x" or "y" != "z"[5m]))"#
        );
        assert_eq!(
            f(r#"count_over_time({a="a"} != "x" | status >= 400 and took > 1m, size <= 1KiB [1h] offset 90m)"#),
            r#"count_over_time({a="a"} != "x" | ( ( status>=400 , took>1m0s ) , size<=1.0kB )[1h] offset 1h30m0s)"#
        );
        assert_eq!(
            f(r#"quantile_over_time(0.99, {a="b"} | json | unwrap duration_seconds(took) | __error__="" [5m]) by (x, y)"#),
            r#"quantile_over_time(0.99,{a="b"} | json | unwrap duration_seconds(took) | __error__=""[5m]) by (x,y)"#
        );
        assert_eq!(
            f(r#"topk(3, sum without (a) (rate({a="b"}[1m]))) > bool on (x) group_left (y, z) count_over_time({c="d"}[1m])"#),
            "  topk(3,sum without (a)(rate({a=\"b\"}[1m])))\n> bool on (x) group_left (y, z)\n  count_over_time({c=\"d\"}[1m])",
            "101 characters: split, the label lists now joined by \", \""
        );
        assert_eq!(f(r#"{a="b"} != "x" or "y" |~ "z" or "w""#), r#"{a="b"} != "x" != "y" |~ "z" or "w""#);
        assert_eq!(
            f(r#"rate({a="b"}[1m]) + on () group_left rate({a="b"}[1m])"#),
            r#"(rate({a="b"}[1m]) + on () group_left rate({a="b"}[1m]))"#
        );
        assert_eq!(f("2 * 3 + vector(1)"), "(6 + vector(1.000000))");
        assert_eq!(f("1e6 + 0.00001"), "1.00000000001e+06");
        assert_eq!(
            f(r#"{a="b"} | json x="y", z | logfmt --strict k | label_format n="{{.a}}", m=o"#),
            r#"{a="b"} | json x="y",z="z" | logfmt --strict k="k" | label_format n="{{.a}}",m=o"#
        );
        assert_eq!(
            f(r#"{a="b"} | regexp "(?P<x>\\d+)" | drop p, q="r" | keep x | line_format "{{.x}}""#),
            r#"{a="b"} | regexp "(?P<x>\\d+)" | drop p,q="r" | keep x | line_format "{{.x}}""#
        );
        assert_eq!(
            f(r#"label_replace(rate({a="b"} |= ip("10.0.0.0/8") | addr != ip("1.2.3.4") [1m]), "d", "$1", "s", "(.*)")"#),
            r#"label_replace(rate({a="b"} |= ip("10.0.0.0/8") | addr!=ip("1.2.3.4")[1m]),"d","$1","s","(.*)")"#
        );
    }

    #[test]
    fn label_regexes_loki_cannot_simplify_are_backquoted() {
        let lf = |re: &str| f(&format!(r#"{{a="b"}} | l=~"{re}""#));
        assert_eq!(lf("error|warn"), r#"{a="b"} | l=~"error|warn""#);
        assert_eq!(lf("warn|warning"), r#"{a="b"} | l=~"warn|warning""#);
        assert_eq!(lf(".*api.*"), r#"{a="b"} | l=~".*api.*""#);
        assert_eq!(lf("(?i)error"), r#"{a="b"} | l=~"(?i)error""#);
        assert_eq!(lf("5.."), r#"{a="b"} | l=~`5..`"#);
        assert_eq!(lf("a|b"), r#"{a="b"} | l=~`a|b`"#, "single characters become a class");
        assert_eq!(lf("bar|baz"), r#"{a="b"} | l=~`bar|baz`"#, "ba[rz] after factoring");
        assert_eq!(lf("[0-9]+"), r#"{a="b"} | l=~`[0-9]+`"#);
        assert_eq!(f(r#"{a="b"} | l!~"5..""#), r#"{a="b"} | l!~"5..""#, "only =~ is backquoted");
    }

    #[test]
    fn long_queries_are_split_as_loki_splits_them() {
        let q = r#"sum by (cluster) (quantile_over_time(0.99, {container="ingress-nginx", service="hosted-grafana"} | json | unwrap response_latency_seconds | __error__="" [1m]))"#;
        assert_eq!(
            f(q),
            r#"sum by (cluster)(
  quantile_over_time(
    0.99,
    {container="ingress-nginx", service="hosted-grafana"} | json
      | unwrap response_latency_seconds
      | __error__="" [1m]
  )
)"#
        );
        let q = r#"sum(rate({job="loki", namespace="loki-prod", instance="localhost", cluster="eu"} |= "error" [5m] offset 1h)) / sum(count_over_time({job="loki", namespace="loki-prod"}[5m]))"#;
        assert_eq!(
            f(q),
            r#"  sum(
    rate(
      {job="loki", namespace="loki-prod", instance="localhost", cluster="eu"} |= "error" [5m] offset 1h
    )
  )
/
  sum(count_over_time({job="loki", namespace="loki-prod"}[5m]))"#
        );
        let long = "x".repeat(60);
        let q = format!(r#"{{app="a"}} |= "{long}" != "{long}" | decolorize"#);
        assert_eq!(f(&q), format!("{{app=\"a\"}}\n  |= \"{long}\"\n  != \"{long}\"\n| decolorize"));
    }

    /// Random queries from a small grammar, half of them damaged by a
    /// dropped or doubled word (fixed seed): no input panics the parser or
    /// the printer, and whatever parses prints to a text that parses back
    /// to the same text.
    #[test]
    fn random_queries_never_panic_and_print_stably() {
        const STAGES: [&str; 18] = [
            r#"|= "x""#, r#"!~ "a|b""#, "| json", "| logfmt", "| logfmt --strict level", r#"| regexp `(?P<x>\w+)`"#,
            r#"| pattern "<_> <x>""#, r#"| level="x""#, "| status >= 500", "| took > 1s", "| size < 1KB", r#"| line_format "{{.app}}""#,
            "| label_format a=app", "| drop level", "| keep app", "| decolorize", r#"| addr = ip("10.0.0.0/8")"#, r#"| level=~"5..""#,
        ];
        let mut next = crate::test_rng(0x5eed_1234_abcd_0001);
        let (mut parsed, mut total) = (0, 0);
        for _ in 0..5_000 {
            let mut log = String::from(r#"{app="a"}"#);
            for _ in 0..next(4) {
                log.push(' ');
                log.push_str(STAGES[next(STAGES.len())]);
            }
            let range = match next(4) {
                0 => format!("rate({log} [5m])"),
                1 => format!("count_over_time({log} [1h] offset 5m)"),
                2 => format!("sum_over_time({log} | unwrap status [5m])"),
                _ => format!("quantile_over_time(0.9, {log} | unwrap took [5m]) by (app)"),
            };
            let vector = match next(4) {
                0 => format!("sum by (app) ({range})"),
                1 => format!("topk(3, {range})"),
                2 => format!("avg without (level) ({range})"),
                _ => range,
            };
            let q = match next(5) {
                0 => format!("{vector} + {vector}"),
                1 => format!("{vector} / on (app) {vector}"),
                2 => format!("{vector} > bool 1"),
                3 => log,
                _ => vector,
            };
            let q = if next(2) == 0 {
                let mut words: Vec<&str> = q.split(' ').collect();
                let at = next(words.len());
                if next(2) == 0 {
                    words.remove(at);
                } else {
                    words.insert(at, words[at]);
                }
                words.join(" ")
            } else {
                q
            };
            total += 1;
            if let Ok(once) = format_query(&q) {
                parsed += 1;
                if !once.contains('\n') {
                    assert_eq!(format_query(&once).ok().as_deref(), Some(once.as_str()), "{q}");
                }
            }
        }
        assert!(parsed > total / 4 && parsed < total, "the generator reaches valid and invalid queries ({parsed} of {total})");
    }

    #[test]
    fn formatting_is_idempotent_and_errors_are_parse_errors() {
        for q in [
            r#"sum by (a) (rate({a="b"} |~ "x\\d" | logfmt | b > 5 [5m] offset 10m)) * on (a) group_right count_over_time({c="d"}[1h])"#,
            r#"{a="b"} |= "x" or "y" | json | line_format "{{.a}}" | c=~"5.." or d="e""#,
        ] {
            let once = f(q);
            assert_eq!(f(&once), once, "{q}");
        }
        assert!(format_query(r#"{app="a""#).is_err());
    }
}
