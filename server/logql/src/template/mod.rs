//! Go `text/template` as LogQL's `line_format` and `label_format` use it:
//! text and `{{ }}` actions with trim markers; fields (`.name` = a label,
//! missing → empty; `.a.b` walks into a value); variables (`$x := …`,
//! `$x = …`, `$`); pipelines (`{{ .a | upper }}`); function calls;
//! parenthesised sub-expressions, also with fields (`(fromJson .x).y`);
//! string/char/number/bool literals; comments; `if`, `with` and `range`
//! with `else`, `else if`/`else with`, `break` and `continue`; and Loki's
//! function set (`__line__`, `__timestamp__`, string, math, time and regex
//! helpers, `printf`, `fromJson`) with Go's `index`, `slice` and `len`.
//!
//! Not supported: `define`/`template`/`block` (a LogQL template is one
//! template); they are parse errors naming the keyword.
//!
//! One module per step: [`lex`] cuts the source into
//! text and actions and an action into tokens; [`parse`] builds the tree
//! below, checking variables and resolving every function name to its
//! entry in [`funcs`]'s table (an unknown name is a parse error); [`exec`]
//! runs the tree over one entry; [`value`] is what a template computes
//! with (Go's dynamic values, as `%v` prints them).

mod exec;
mod funcs;
mod lex;
mod parse;
mod value;

use funcs::Func;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// The template as written (what `format_query` prints).
    source: String,
}

/// Why a template could not be parsed or executed (worded like Go's).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// What a template sees when it runs.
pub struct TemplateData<'a> {
    /// Current labels of the entry (stream labels + extracted labels).
    pub labels: &'a [(String, String)],
    /// The current log line (for `__line__`).
    pub line: &'a str,
    /// Entry timestamp, Unix nanoseconds (for `__timestamp__`).
    pub ts: i64,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    /// Prints its value, or, with variables, binds them and prints nothing.
    Action(Action),
    /// `if` / `with` (which runs its body with dot set to the value);
    /// `else if` / `else with` is a nested control in `otherwise`.
    Cond { with: bool, cond: Action, body: Vec<Node>, otherwise: Vec<Node> },
    Range { over: Action, body: Vec<Node>, otherwise: Vec<Node> },
    Break,
    Continue,
}

/// A pipeline with the variables it declares (`:=`) or assigns (`=`).
#[derive(Debug, Clone)]
struct Action {
    vars: Vec<String>,
    declare: bool,
    pipe: Pipeline,
}

type Pipeline = Vec<Command>;
type Command = Vec<Arg>;

#[derive(Debug, Clone)]
enum Arg {
    /// `.a.b`: fields of dot.
    Field(Vec<String>),
    Dot,
    /// `$x.a.b` (`$` is the labels the template started with).
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// A function, found in [`funcs`]' table when parsing.
    Func(Func),
    /// `( … )`, then fields of its value.
    Sub(Pipeline, Vec<String>),
}

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError(format!("template: line_format:1: {}", msg.into()))
}

/// How many `range` iterations one execution may take (a line is not a
/// place for unbounded loops; Go has no limit).
const MAX_RANGE_STEPS: usize = 100_000;

/// The longest text a template may make, in any value and in its output
/// (Loki has no bound; its lines are at most 256 KB by default). Functions
/// that multiply text check before they allocate, so nested `repeat`s or
/// `replace`s cannot exhaust memory.
const MAX_TEXT: usize = 4 << 20;

fn too_long(f: &str) -> TemplateError {
    err(format!("error calling {f}: result longer than {MAX_TEXT} bytes"))
}

/// `Ok(())` when `len` bytes are within [`MAX_TEXT`].
fn fits(f: &str, len: usize) -> Result<(), TemplateError> {
    if len > MAX_TEXT {
        Err(too_long(f))
    } else {
        Ok(())
    }
}


impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        Ok(Template { nodes: parse::nodes(src)?, source: src.to_string() })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        exec::render(&self.nodes, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)]) -> Result<String, TemplateError> {
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Template::parse(t)?.render(&TemplateData { labels: &labels, line: "the line", ts: 1_500_000_000 })
    }

    #[test]
    fn fields_pipelines_and_functions() {
        assert_eq!(render("L={{.level}}", &[("level", "error")]).unwrap(), "L=error");
        assert_eq!(render("V={{.missing}}", &[]).unwrap(), "V=");
        assert_eq!(render("{{.level | upper}}", &[("level", "error")]).unwrap(), "ERROR");
        assert_eq!(render("{{ __line__ | trimPrefix \"the \" }}", &[]).unwrap(), "line");
        assert_eq!(render(r#"{{ printf "\x1b[31m%s\x1b[0m" .msg }}"#, &[("msg", "hello")]).unwrap(), "\u{1b}[31mhello\u{1b}[0m");
        assert_eq!(render(r#"{{ printf "%05.1f|%-4s|%3d" 3.14159 "ab" 7 }}"#, &[]).unwrap(), "003.1|ab  |  7");
        assert_eq!(render("{{ default \"none\" .x }}", &[]).unwrap(), "none");
        assert_eq!(render("{{ regexReplaceAll \"(a+)\" .v \"<$1>\" }}", &[("v", "baaad")]).unwrap(), "b<aaa>d");
        assert_eq!(render("{{ add 1 2 | mul 3 }}", &[]).unwrap(), "9");
        assert_eq!(render("{{ divf 1 4 }}", &[]).unwrap(), "0.25");
    }

    #[test]
    fn control_flow_and_trim() {
        let t = "{{ if eq .level \"error\" }}E{{ else if eq .level \"warn\" }}W{{ else }}-{{ end }}";
        assert_eq!(render(t, &[("level", "error")]).unwrap(), "E");
        assert_eq!(render(t, &[("level", "warn")]).unwrap(), "W");
        assert_eq!(render(t, &[]).unwrap(), "-");
        assert_eq!(render("a  {{- .x -}}  b", &[("x", "X")]).unwrap(), "aXb");
        assert_eq!(render("{{/* note */}}ok", &[]).unwrap(), "ok");
    }

    #[test]
    fn errors_are_gos() {
        assert!(Template::parse("{{ nosuchfunc }}").unwrap_err().0.contains("function \"nosuchfunc\" not defined"));
        assert!(Template::parse("{{").unwrap_err().0.contains("unclosed action"));
        assert!(Template::parse("{{ if .x }}a").is_err());
        assert!(render("{{ div 1 0 }}", &[]).is_err());
        assert_eq!(render("{{ div -9223372036854775808 -1 }} {{ mod -9223372036854775808 -1 }}", &[]).unwrap(), "-9223372036854775808 0");
        assert!(Template::parse("{{ define \"x\" }}{{ end }}").unwrap_err().0.contains("define is not supported"));
        assert!(Template::parse("{{ $x }}").unwrap_err().0.contains("undefined variable \"$x\""));
        assert!(Template::parse("{{ $x = 1 }}").unwrap_err().0.contains("undefined variable \"$x\""));
        assert!(Template::parse("{{ if .a }}{{ $x := 1 }}{{ end }}{{ $x }}").is_err(), "a variable ends with its block");
        assert!(Template::parse("{{ break }}").unwrap_err().0.contains("{{break}} outside {{range}}"));
        assert!(Template::parse("{{ with .a }}x").unwrap_err().0.contains("unexpected EOF"));
        assert!(render("{{ range .a }}x{{ end }}", &[("a", "text")]).unwrap_err().0.contains("range can't iterate over text"));
        assert!(render("{{ .a.b }}", &[("a", "text")]).unwrap_err().0.contains("can't evaluate field b in type string"));
        assert!(render("{{ (fromJson .j).a.b }}", &[("j", "{}")]).unwrap_err().0.contains("nil pointer evaluating interface {}.b"));
        assert!(render("{{ index (fromJson .j) 5 }}", &[("j", "[1]")]).unwrap_err().0.contains("index out of range: 5"));
        assert!(render("{{ range 1000000 }}{{ end }}", &[]).unwrap_err().0.contains("iterations"), "bounded work per line");
        let deep_blocks = "{{ if 1 }}".repeat(5_000) + &"{{ end }}".repeat(5_000);
        assert!(Template::parse(&deep_blocks).unwrap_err().0.contains("nests more than 200 levels"));
        let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(Template::parse(&deep_parens).unwrap_err().0.contains("nests more than 200 levels"));
        let ok = "{{ if 1 }}".repeat(150) + "x" + &"{{ end }}".repeat(150);
        assert_eq!(render(&ok, &[]).unwrap(), "x");
        // Text that multiplies stops at 4 MiB instead of exhausting memory.
        let big = [("x", "0123456789")];
        for t in [
            "{{ repeat 4096 (repeat 4096 (repeat 4096 .x)) }}",
            "{{ replace \"\" (repeat 4096 .x) (repeat 4096 .x) }}",
            "{{ regexReplaceAll \"\" (repeat 4096 .x) (repeat 4096 .x) }}",
            "{{ indent 1024 (repeat 4096 \"\\n\\n\") | indent 1024 }}",
            "{{ range 100000 }}{{ repeat 4096 $.x }}{{ end }}",
            "{{ printf \"%999999d%999999d%999999d%999999d%999999d\" 1 2 3 4 5 }}",
        ] {
            assert!(render(t, &big).unwrap_err().0.contains("longer than 4194304 bytes"), "{t}");
        }
        // Text made and dropped counts too: a line's template does bounded work.
        let busy = "{{ range 100000 }}{{ if repeat 4000 (repeat 100 $.x) }}{{ end }}{{ end }}";
        assert!(render(busy, &big).unwrap_err().0.contains("more than 67108864 bytes of text"));
        let copies = "{{ $l := repeat 4096 (repeat 1000 \"x\") }}{{ range 100000 }}{{ if $l }}{{ end }}{{ end }}";
        assert!(render(copies, &big).unwrap_err().0.contains("more than 67108864 bytes of text"), "reading a value is work too");
        assert_eq!(render("{{ printf \"%99999999999999999999d|\" 1 }}", &[]).unwrap(), "%!(NOVERB)");
        assert_eq!(render("{{ repeat 3 .x | len }}", &big).unwrap(), "30");
    }

    #[test]
    fn json_values_ranges_and_variables() {
        // Loki's documented fromJson example.
        let q = [("queries", r#"[{"query":"sum(rate(a[1m]))","ms":12},{"query":"b","ms":1.5e6}]"#)];
        let t = "{{ range $q := fromJson .queries }} {{ $q.query }} {{ end }}";
        assert_eq!(render(t, &q).unwrap(), " sum(rate(a[1m]))  b ");
        assert_eq!(render("{{ range fromJson .queries }}{{ .ms }};{{ end }}", &q).unwrap(), "12;1.5e+06;");
        assert_eq!(render(r#"{{ fromJson "{\"foo\": 55, \"a\": [true, null]}" }}"#, &[]).unwrap(), "map[a:[true <nil>] foo:55]");
        assert_eq!(render("{{ fromJson .bad }}|{{ (fromJson .j).user.id }}", &[("bad", "{"), ("j", r#"{"user":{"id":7}}"#)]).unwrap(), "<no value>|7");
        let j = [("j", r#"{"b":2,"a":1,"c":3}"#)];
        assert_eq!(render("{{ range $k, $v := fromJson .j }}{{ $k }}={{ $v }} {{ end }}", &j).unwrap(), "a=1 b=2 c=3 ");
        let t = "{{ range $i, $e := fromJson .j }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if gt $e 3.0 }}{{ break }}{{ end }}{{ $e }},{{ end }}";
        assert_eq!(render(t, &[("j", "[1,2,3,4,5]")]).unwrap(), "1,3,");
        assert_eq!(render("{{ range fromJson .j }}x{{ else }}empty{{ end }}", &[("j", "[]")]).unwrap(), "empty");
        assert_eq!(render(r#"{{ $x := "a" }}{{ range 0 }}{{ else }}{{ $x := "b" }}{{ end }}{{ $x }}"#, &[]).unwrap(), "a", "else's variables end with it");
        // `and`/`or` stop at the deciding argument (Go 1.18+).
        let t = "{{ if and (gt (len (fromJson .j)) 0) (index (fromJson .j) 0) }}first{{ else }}none{{ end }}|{{ or 0 \"\" 3 (index (fromJson .j) 9) }}";
        assert_eq!(render(t, &[("j", "[]")]).unwrap(), "none|3");
        assert_eq!(render("{{ len (fromJson .j) }} {{ index (fromJson .j) 1 }} {{ slice (fromJson .j) 1 }} {{ slice .s 1 3 }} {{ index .s 0 }}", &[("j", "[5,6,7]"), ("s", "abcd")]).unwrap(), "3 6 [6 7] bc 97");
        // Dot is the labels (Go's map[string]string); `$` stays the labels inside blocks.
        assert_eq!(render("{{ . }}", &[("b", "2"), ("a", "1")]).unwrap(), "map[a:1 b:2]");
        assert_eq!(render("{{ range $k, $v := . }}{{ $k }}{{ $v }}{{ end }}", &[("b", "2"), ("a", "1")]).unwrap(), "a1b2");
        assert_eq!(render("{{ with .a }}[{{ . }} {{ $.b }}]{{ else }}none{{ end }}", &[("a", "x"), ("b", "y")]).unwrap(), "[x y]");
        assert_eq!(render("{{ with .a }}A{{ else with .b }}B{{ . }}{{ else }}none{{ end }}", &[("b", "y")]).unwrap(), "By");
        assert_eq!(render("{{ $x := .a }}{{ if .b }}{{ $x = .b }}{{ end }}{{ $x }}|{{ $n := 'A' }}{{ $n }}", &[("a", "1"), ("b", "2")]).unwrap(), "2|65");
        assert_eq!(render("{{ if $v := .a }}{{ $v }}{{ end }}", &[("a", "set")]).unwrap(), "set");
        assert_eq!(render("{{ range 3 }}{{ . }}{{ end }}|{{ __timestamp__.Unix }}|{{ (__timestamp__).UnixMilli }}", &[]).unwrap(), "012|1|1500");
    }

    /// Seeded random templates (whole actions, control blocks and stray
    /// fragments) over random label values (JSON pieces, numbers, dates):
    /// parsing and running never panic, and a run is repeatable.
    #[test]
    fn random_templates_never_panic() {
        const PARTS: [&str; 40] = [
            "{{ .j }}", "{{ . }}", "{{ $ }}", "{{ (fromJson .j).a }}", "{{ range $k, $v := fromJson .j }}", "{{ range fromJson .j }}",
            "{{ range 3 }}", "{{ with .n }}", "{{ if .n }}", "{{ else }}", "{{ else if .j }}", "{{ else with .d }}", "{{ end }}",
            "{{ break }}", "{{ continue }}", "{{ $x := .n }}", "{{ $x = .j }}", "{{ $x }}", "{{ $k }}", "{{ .a.b.c }}",
            "{{ index (fromJson .j) 0 }}", "{{ index (fromJson .j) \"a\" }}", "{{ slice .j 1 }}", "{{ len (fromJson .j) }}",
            "{{ printf \"%v|%s|%d\" (fromJson .j) . .n }}", "{{ toDateInZone \"2006-01-02\" \"Europe/Paris\" .d | unixEpoch }}",
            "{{ .n | int | add 1 | mulf 1.5 }}", "{{ __timestamp__.Unix }}", "{{ eq (fromJson .j) .n }}", "{{ '\\n' }}", "{{ ",
            " }}", "(", ")", "|", ".", "$", "text ", "{{- .n -}}", "{{/* c */}}",
        ];
        const VALUES: [&str; 14] = [
            "", "1", "-2.5", "1e400", "[1,\"a\",null]", "{\"a\":{\"b\":[true]}}", "{", "[[[]]]", "\"s\"", "2024-03-31",
            "9999999999999999999999", "日本", "{\"a\":1,\"a\":2}", "[1,2,3,4,5,6,7,8,9]",
        ];
        let mut next = crate::test_rng(0x7e3a_1a7e_0000_0001);
        let (mut parsed, mut ran) = (0, 0);
        for _ in 0..20_000 {
            let src: String = (0..1 + next(6)).map(|_| PARTS[next(PARTS.len())]).collect();
            let Ok(t) = Template::parse(&src) else { continue };
            parsed += 1;
            let labels: Vec<(String, String)> =
                ["j", "n", "d", "a"].iter().map(|k| (k.to_string(), VALUES[next(VALUES.len())].to_string())).collect();
            let data = TemplateData { labels: &labels, line: "l", ts: 1 };
            let out = t.render(&data);
            ran += usize::from(out.is_ok());
            assert_eq!(out, t.render(&data), "{src} over {labels:?}");
        }
        assert!(parsed > 2_000 && ran > 1_000, "the generator makes templates that run: {parsed} parsed, {ran} ran");
    }

    #[test]
    fn dates_in_time_zones() {
        let at = |zone: &str, v: &str| render(&format!(r#"{{{{ toDateInZone "2006-01-02 15:04" "{zone}" "{v}" | unixEpoch }}}}"#), &[]).unwrap();
        assert_eq!(at("Europe/Paris", "2024-07-01 12:00"), "1719828000", "summer time, UTC+2");
        assert_eq!(at("Europe/Paris", "2024-01-15 12:00"), "1705316400", "winter time, UTC+1");
        assert_eq!(at("America/New_York", "2024-01-15 12:00"), "1705338000", "UTC-5");
        assert_eq!(at("Nowhere/City", "2024-01-15 12:00"), "1705320000", "an unknown zone is UTC, as in Loki");
        assert_eq!(at("UTC", "2024-01-15 12:00"), "1705320000");
        let explicit = r#"{{ toDateInZone "2006-01-02 15:04 -0700" "Europe/Paris" "2024-01-15 12:00 +0000" | unixEpoch }}"#;
        assert_eq!(render(explicit, &[]).unwrap(), "1705320000", "an offset in the value wins");
        let zulu = r#"{{ toDateInZone "2006-01-02T15:04:05Z07:00" "Europe/Paris" "2024-01-15T12:00:00Z" | unixEpoch }}"#;
        assert_eq!(render(zulu, &[]).unwrap(), "1705320000", "Z is UTC");
    }
}
