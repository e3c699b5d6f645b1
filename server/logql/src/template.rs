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

use std::fmt::Write as _;

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
    Func(String),
    /// `( … )`, then fields of its value.
    Sub(Pipeline, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Time(i64),
    /// A JSON array (`fromJson`).
    List(Vec<Val>),
    /// A JSON object, keys sorted as Go ranges and prints maps.
    Map(Vec<(String, Val)>),
    /// The entry's labels: the template's data (Go's `map[string]string`).
    Labels,
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

/// The functions a template may call: Loki's (its own, the listed sprig
/// ones, the old capitalized names) and Go's template built-ins.
const FUNCS: &[&str] = &[
    "__line__", "__timestamp__", "lower", "upper", "title", "trim", "trimAll", "trimPrefix", "trimSuffix", "trunc",
    "replace", "substr", "contains", "hasPrefix", "hasSuffix", "indent", "nindent", "repeat", "default", "regexReplaceAll",
    "regexReplaceAllLiteral", "count", "urlencode", "urldecode", "b64enc", "b64dec", "len", "index", "slice", "eq", "ne", "lt",
    "le", "gt", "ge", "and", "or", "not", "int", "float64", "add", "sub", "mul", "div", "mod", "addf", "subf", "mulf", "divf",
    "max", "min", "maxf", "minf", "ceil", "floor", "round", "unixEpoch", "unixEpochMillis", "unixEpochNanos", "unixToTime",
    "alignLeft", "alignRight", "printf", "print", "println", "html", "js", "urlquery", "bytes", "duration",
    "duration_seconds", "date", "toDate", "toDateInZone", "now", "fromJson", "ToLower", "ToUpper", "Replace", "Trim",
    "TrimLeft", "TrimRight", "TrimPrefix", "TrimSuffix", "TrimSpace",
];

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let pieces = split(src)?;
        let mut p = Parser { pieces: &pieces, pos: 0, vars: Vec::new(), ranges: 0, depth: 0 };
        let (nodes, stop) = p.nodes()?;
        match stop {
            Stop::Eof => Ok(Template { nodes, source: src.to_string() }),
            Stop::End => Err(err("unexpected {{end}}")),
            Stop::Else(_) => Err(err("unexpected {{else}}")),
        }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let mut ex = Exec { d: data, vars: vec![("$".to_string(), Val::Labels)], out: String::new(), steps: 0, work: Default::default() };
        ex.nodes(&self.nodes, &Val::Labels)?;
        Ok(ex.out)
    }
}

/// A piece of the source: text, or the inside of an action.
enum Piece {
    Text(String),
    Action(String),
}

/// Splits the source into text and actions, applying `{{-` / `-}}`.
fn split(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let body_start = if trim_left { 1 } else { 0 };
        let close = find_close(after).ok_or_else(|| err("unclosed action"))?;
        let mut body = &after[body_start..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        out.push(Piece::Action(body.trim().to_string()));
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Piece::Text(text.to_string()));
    }
    Ok(out)
}

/// The `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// What ended a list of nodes.
enum Stop {
    End,
    /// `{{else …}}` with what follows `else`.
    Else(String),
    Eof,
}

/// Builds nodes from pieces, tracking the variables in scope (Go checks
/// them when parsing) and whether `break`/`continue` are inside a `range`.
struct Parser<'p> {
    pieces: &'p [Piece],
    pos: usize,
    vars: Vec<String>,
    ranges: usize,
    /// Blocks and parentheses open around what is being parsed.
    depth: usize,
}

/// How deep blocks and parentheses may nest: parsing and running recurse
/// over them, and a query's template must not exhaust the stack.
const MAX_TEMPLATE_DEPTH: usize = 200;

fn too_deep() -> TemplateError {
    err(format!("template nests more than {MAX_TEMPLATE_DEPTH} levels deep"))
}

impl Parser<'_> {
    fn nodes(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.get(self.pos) {
            self.pos += 1;
            let a = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action(a) if a.starts_with("/*") => continue,
                Piece::Action(a) => a.as_str(),
            };
            let word = a.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
            let rest = a[word.len()..].trim();
            match word {
                "end" => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(rest.to_string()))),
                "if" | "with" | "range" => nodes.push(self.control(word, rest)?),
                "break" | "continue" if self.ranges == 0 => return Err(err(format!("{{{{{word}}}}} outside {{{{range}}}}"))),
                "break" => nodes.push(Node::Break),
                "continue" => nodes.push(Node::Continue),
                "define" | "template" | "block" => return Err(err(format!("{word} is not supported in LogQL templates"))),
                "" if a.is_empty() => return Err(err("missing value for command")),
                _ => nodes.push(Node::Action(self.action(a, false)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// `if`/`with`/`range` up to its `{{end}}` (which a nested `else if`
    /// consumes).
    fn control(&mut self, kind: &str, head: &str) -> Result<Node, TemplateError> {
        if self.depth >= MAX_TEMPLATE_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        let node = self.control_body(kind, head);
        self.depth -= 1;
        node
    }

    fn control_body(&mut self, kind: &str, head: &str) -> Result<Node, TemplateError> {
        let mark = self.vars.len();
        let range = kind == "range";
        let cond = self.action(head, range)?;
        self.ranges += usize::from(range);
        let body = self.nodes();
        self.ranges -= usize::from(range);
        let (body, stop) = body?;
        let otherwise = match stop {
            Stop::End => Vec::new(),
            Stop::Else(rest) if rest.is_empty() => match self.nodes()? {
                (otherwise, Stop::End) => otherwise,
                _ => return Err(err(format!("unexpected EOF in {kind}"))),
            },
            Stop::Else(rest) => {
                let word = rest.split_whitespace().next().unwrap_or("");
                if word != "if" && word != "with" {
                    return Err(err(format!("unexpected {rest:?} after else")));
                }
                vec![self.control(word, rest[word.len()..].trim())?]
            }
            Stop::Eof => return Err(err(format!("unexpected EOF in {kind}"))),
        };
        self.vars.truncate(mark);
        Ok(match kind {
            "range" => Node::Range { over: cond, body, otherwise },
            _ => Node::Cond { with: kind == "with", cond, body, otherwise },
        })
    }

    /// A pipeline, with a leading `$x :=` / `$x =` (or `$i, $e :=` in a range).
    fn action(&mut self, s: &str, range: bool) -> Result<Action, TemplateError> {
        let toks = lex_action(s)?;
        let is_var = |i: usize| toks.get(i).is_some_and(|t| t.text.starts_with('$') && !t.text.contains('.'));
        let is_bind = |i: usize| toks.get(i).is_some_and(|t| t.text == ":=" || t.text == "=");
        let (vars, at) = if is_var(0) && is_bind(1) {
            (vec![toks[0].text.clone()], 1)
        } else if range && is_var(0) && toks.get(1).is_some_and(|t| t.text == ",") && is_var(2) && is_bind(3) {
            (vec![toks[0].text.clone(), toks[2].text.clone()], 3)
        } else {
            (Vec::new(), 0)
        };
        let declare = vars.is_empty() || toks[at].text == ":=";
        if !declare {
            if let Some(v) = vars.iter().find(|v| !self.known(v)) {
                return Err(err(format!("undefined variable {v:?}")));
            }
        }
        let start = if vars.is_empty() { 0 } else { at + 1 };
        let mut pos = start;
        let pipe = self.pipe(&toks, &mut pos)?;
        if let Some(t) = toks.get(pos) {
            return Err(err(format!("unexpected {:?} in operand", t.text)));
        }
        if declare {
            self.vars.extend(vars.iter().cloned());
        }
        Ok(Action { vars, declare, pipe })
    }

    fn known(&self, var: &str) -> bool {
        var == "$" || self.vars.iter().any(|v| v == var)
    }

    fn pipe(&self, toks: &[Tok], pos: &mut usize) -> Result<Pipeline, TemplateError> {
        self.pipe_at(toks, pos, self.depth)
    }

    /// A pipeline `depth` levels of blocks and parentheses deep.
    fn pipe_at(&self, toks: &[Tok], pos: &mut usize, depth: usize) -> Result<Pipeline, TemplateError> {
        if depth >= MAX_TEMPLATE_DEPTH {
            return Err(too_deep());
        }
        let mut pipeline = Vec::new();
        let mut cmd: Command = Vec::new();
        while let Some(t) = toks.get(*pos) {
            match t.text.as_str() {
                ")" => break,
                "|" => {
                    *pos += 1;
                    if cmd.is_empty() {
                        return Err(err("missing command before |"));
                    }
                    pipeline.push(std::mem::take(&mut cmd));
                }
                "(" => {
                    *pos += 1;
                    let sub = self.pipe_at(toks, pos, depth + 1)?;
                    if toks.get(*pos).map(|t| t.text.as_str()) != Some(")") {
                        return Err(err("unclosed left paren"));
                    }
                    *pos += 1;
                    // `(…).a.b`: a field chain right after the parenthesis.
                    let chain = match toks.get(*pos) {
                        Some(next) if next.glued && next.text.starts_with('.') => {
                            *pos += 1;
                            fields(&next.text)?
                        }
                        _ => Vec::new(),
                    };
                    cmd.push(Arg::Sub(sub, chain));
                }
                text => {
                    *pos += 1;
                    cmd.push(self.operand(text)?);
                }
            }
        }
        if cmd.is_empty() {
            return Err(err("missing value for command"));
        }
        pipeline.push(cmd);
        Ok(pipeline)
    }

    fn operand(&self, t: &str) -> Result<Arg, TemplateError> {
        if t == "." {
            return Ok(Arg::Dot);
        }
        if t.starts_with('.') && !t[1..].starts_with(|c: char| c.is_ascii_digit()) {
            return Ok(Arg::Field(fields(t)?));
        }
        if let Some(v) = t.strip_prefix('$') {
            let (name, chain) = match v.find('.') {
                Some(i) => (&t[..i + 1], fields(&v[i..])?),
                None => (t, Vec::new()),
            };
            if !self.known(name) {
                return Err(err(format!("undefined variable {name:?}")));
            }
            return Ok(Arg::Var(name.to_string(), chain));
        }
        if t.starts_with('"') {
            return unquote(t).map(Arg::Str);
        }
        if let Some(raw) = t.strip_prefix('`') {
            return Ok(Arg::Str(raw.trim_end_matches('`').to_string()));
        }
        if let Some(inner) = t.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            let c = unquote(&format!("\"{inner}\""))?;
            let mut chars = c.chars();
            return match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Arg::Int(c as i64)),
                _ => Err(err(format!("malformed character constant: {t}"))),
            };
        }
        match t {
            "true" => return Ok(Arg::Bool(true)),
            "false" => return Ok(Arg::Bool(false)),
            "nil" => return Ok(Arg::Nil),
            _ => {}
        }
        if t.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Arg::Int(i));
            }
            if let Ok(f) = t.parse::<f64>() {
                return Ok(Arg::Float(f));
            }
            return Err(err(format!("bad number syntax: {t:?}")));
        }
        if FUNCS.contains(&t) {
            return Ok(Arg::Func(t.to_string()));
        }
        // `fn.a.b`: fields of a call without arguments.
        if let Some(i) = t.find('.').filter(|i| FUNCS.contains(&&t[..*i])) {
            return Ok(Arg::Sub(vec![vec![Arg::Func(t[..i].to_string())]], fields(&t[i..])?));
        }
        Err(err(format!("function {:?} not defined", t.split('.').next().unwrap_or(t))))
    }
}

/// `.a.b` → `["a", "b"]`.
fn fields(chain: &str) -> Result<Vec<String>, TemplateError> {
    let names: Vec<String> = chain[1..].split('.').map(str::to_string).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(err(format!("bad character in field chain {chain:?}")));
    }
    Ok(names)
}

/// A token of an action; `glued` when no space separates it from the one before.
struct Tok {
    text: String,
    glued: bool,
}

fn lex_action(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut glued = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            glued = false;
            continue;
        }
        let start = i;
        if matches!(c, '"' | '`' | '\'') {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c != '`' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(err("unterminated quoted string"));
            }
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&'=') {
            i += 2;
        } else if matches!(c, '(' | ')' | '|' | ',' | '=' | ':') {
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '(' | ')' | '|' | '"' | '`' | '\'' | ',' | '=' | ':') {
                i += 1;
            }
        }
        out.push(Tok { text: chars[start..i].iter().collect(), glued });
        glued = true;
    }
    Ok(out)
}

/// Go's double-quoted string literal.
fn unquote(t: &str) -> Result<String, TemplateError> {
    let inner = &t[1..t.len() - 1];
    let mut out = String::new();
    let mut it = inner.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{07}'),
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0c}'),
            Some('v') => out.push('\u{0b}'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some(k @ ('x' | 'u' | 'U')) => {
                let n = match k {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..n).filter_map(|_| it.next()).collect();
                let v = u32::from_str_radix(&hex, 16).map_err(|_| err(format!("invalid syntax in {t}")))?;
                out.push(char::from_u32(v).ok_or_else(|| err(format!("invalid syntax in {t}")))?);
            }
            _ => return Err(err(format!("invalid syntax in {t}"))),
        }
    }
    Ok(out)
}

/// How a list of nodes ended: normally, or at `break`/`continue`.
#[derive(PartialEq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

/// One execution: the entry, the variables in scope and the output.
struct Exec<'a, 'd> {
    d: &'a TemplateData<'d>,
    vars: Vec<(String, Val)>,
    out: String,
    steps: usize,
    /// Bytes of text the calls made so far (see [`MAX_WORK`]).
    work: std::cell::Cell<usize>,
}

/// Bytes of text one execution's calls may make in all, kept or not: a
/// `range` over `repeat`s would otherwise cost minutes per line.
const MAX_WORK: usize = 64 << 20;

impl Exec<'_, '_> {
    fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<Flow, TemplateError> {
        for n in nodes {
            let flow = match n {
                Node::Text(t) => {
                    fits("template", self.out.len() + t.len())?;
                    self.out.push_str(t);
                    Flow::Normal
                }
                Node::Action(a) => {
                    let v = self.pipeline(&a.pipe, dot)?;
                    if a.vars.is_empty() {
                        let text = to_string(&self.resolve(v));
                        fits("template", self.out.len() + text.len())?;
                        self.out.push_str(&text);
                    } else {
                        self.bind(a, 0, v);
                    }
                    Flow::Normal
                }
                Node::Cond { with, cond, body, otherwise } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&cond.pipe, dot)?;
                    if !cond.vars.is_empty() {
                        self.bind(cond, 0, v.clone());
                    }
                    let flow = match (truthy(&v), with) {
                        (true, true) => self.nodes(body, &v)?,
                        (true, false) => self.nodes(body, dot)?,
                        (false, _) => self.nodes(otherwise, dot)?,
                    };
                    self.vars.truncate(mark);
                    flow
                }
                Node::Range { over, body, otherwise } => self.range(over, body, otherwise, dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, over: &Action, body: &[Node], otherwise: &[Node], dot: &Val) -> Result<Flow, TemplateError> {
        let v = self.pipeline(&over.pipe, dot)?;
        let items: Vec<(Val, Val)> = match v {
            Val::List(l) => l.into_iter().enumerate().map(|(i, e)| (Val::Int(i as i64), e)).collect(),
            Val::Map(m) => m.into_iter().map(|(k, e)| (Val::Str(k), e)).collect(),
            Val::Labels => sorted_labels(self.d).into_iter().map(|(k, e)| (Val::Str(k.clone()), Val::Str(e.clone()))).collect(),
            Val::Int(n) if over.vars.len() < 2 => (0..n.clamp(0, MAX_RANGE_STEPS as i64 + 1)).map(|i| (Val::Int(i), Val::Int(i))).collect(),
            Val::Nil => Vec::new(),
            other => return Err(err(format!("range can't iterate over {}", go_fmt(&other)))),
        };
        let mark = self.vars.len();
        if items.is_empty() {
            let flow = self.nodes(otherwise, dot);
            self.vars.truncate(mark);
            return flow;
        }
        for (key, elem) in items {
            self.steps += 1;
            if self.steps > MAX_RANGE_STEPS {
                return Err(err(format!("range: more than {MAX_RANGE_STEPS} iterations")));
            }
            match over.vars.len() {
                0 => {}
                1 => self.bind(over, 0, elem.clone()),
                _ => {
                    self.bind(over, 0, key);
                    self.bind(over, 1, elem.clone());
                }
            }
            let flow = self.nodes(body, &elem)?;
            self.vars.truncate(mark);
            if flow == Flow::Break {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// Counts a value made or copied against [`MAX_WORK`].
    fn spend(&self, f: &str, out: &Val) -> Result<(), TemplateError> {
        let work = self.work.get().saturating_add(weight(out, self.d));
        self.work.set(work);
        if work > MAX_WORK {
            return Err(err(format!("error calling {f}: the template made more than {MAX_WORK} bytes of text")));
        }
        Ok(())
    }

    /// Declares or assigns the `i`th variable of an action.
    fn bind(&mut self, a: &Action, i: usize, v: Val) {
        let name = &a.vars[i];
        if a.declare {
            self.vars.push((name.clone(), v));
        } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    fn pipeline(&self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in p {
            piped = Some(self.command(cmd, piped.take(), dot)?);
        }
        Ok(piped.unwrap_or(Val::Nil))
    }

    fn command(&self, cmd: &Command, piped: Option<Val>, dot: &Val) -> Result<Val, TemplateError> {
        match &cmd[0] {
            // As Go (1.18+): `and`/`or` stop at the argument that decides.
            Arg::Func(f) if f == "and" || f == "or" => {
                let mut last = Val::Nil;
                for a in &cmd[1..] {
                    last = self.resolve(self.arg(a, dot)?);
                    if truthy(&last) == (f == "or") {
                        return Ok(last);
                    }
                }
                Ok(piped.map(|v| self.resolve(v)).unwrap_or(last))
            }
            Arg::Func(f) => {
                let mut args = cmd[1..].iter().map(|a| self.arg(a, dot).map(|v| self.resolve(v))).collect::<Result<Vec<_>, _>>()?;
                args.extend(piped.map(|v| self.resolve(v)));
                let out = call(f, args, self.d)?;
                self.spend(f, &out)?;
                Ok(out)
            }
            _ if cmd.len() > 1 || piped.is_some() => Err(err(format!("can't give argument to non-function {:?}", cmd[0]))),
            a => self.arg(a, dot),
        }
    }

    fn arg(&self, a: &Arg, dot: &Val) -> Result<Val, TemplateError> {
        let v = self.arg_unpaid(a, dot)?;
        // Reading a value copies it: that counts as work too.
        if matches!(a, Arg::Field(_) | Arg::Dot | Arg::Var(..) | Arg::Sub(..)) {
            self.spend("template", &v)?;
        }
        Ok(v)
    }

    fn arg_unpaid(&self, a: &Arg, dot: &Val) -> Result<Val, TemplateError> {
        Ok(match a {
            Arg::Field(chain) => self.walk(dot, chain)?,
            Arg::Dot => dot.clone(),
            Arg::Var(name, chain) => {
                let v = self.vars.iter().rev().find(|(n, _)| n == name).map_or(&NIL, |(_, v)| v);
                self.walk(v, chain)?
            }
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Int(i) => Val::Int(*i),
            Arg::Float(f) => Val::Float(*f),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Nil => Val::Nil,
            Arg::Func(f) => {
                let out = call(f, Vec::new(), self.d)?;
                self.spend(f, &out)?;
                out
            }
            Arg::Sub(p, chain) => self.walk(&self.pipeline(p, dot)?, chain)?,
        })
    }

    /// Follows `.a.b` from `v`: labels and JSON objects by key, and the
    /// time methods Go would call (`.Unix`, `.UnixMilli`, `.UnixNano`).
    fn walk(&self, v: &Val, chain: &[String]) -> Result<Val, TemplateError> {
        let mut cur = v;
        for (i, name) in chain.iter().enumerate() {
            let next = match (cur, name.as_str()) {
                (Val::Map(m), _) => {
                    cur = m.iter().find(|(k, _)| k == name).map_or(&NIL, |(_, e)| e);
                    continue;
                }
                (Val::Labels, _) => Val::Str(label(self.d, name).unwrap_or_default().to_string()),
                (Val::Time(ns), "Unix") => Val::Int(crate::time::unix_seconds(*ns)),
                (Val::Time(ns), "UnixMilli") => Val::Int(ns.div_euclid(1_000_000)),
                (Val::Time(ns), "UnixNano") => Val::Int(*ns),
                (Val::Nil, _) => return Err(err(format!("nil pointer evaluating interface {{}}.{name}"))),
                (other, _) => return Err(err(format!("can't evaluate field {name} in type {}", go_type(other)))),
            };
            return self.walk(&next, &chain[i + 1..]);
        }
        Ok(cur.clone())
    }

    /// The labels as a value functions and printing take (a Go map).
    fn resolve(&self, v: Val) -> Val {
        match v {
            Val::Labels => Val::Map(sorted_labels(self.d).into_iter().map(|(k, v)| (k.clone(), Val::Str(v.clone()))).collect()),
            other => other,
        }
    }
}

fn label<'a>(d: &'a TemplateData<'_>, name: &str) -> Option<&'a str> {
    d.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The labels by name, as Go ranges over and prints a map.
fn sorted_labels<'a>(d: &'a TemplateData<'_>) -> Vec<&'a (String, String)> {
    let mut l: Vec<_> = d.labels.iter().collect();
    l.sort();
    l
}

/// A JSON document as Go's `encoding/json` decodes it into `interface{}`.
fn from_json(v: serde_json::Value) -> Val {
    match v {
        serde_json::Value::Null => Val::Nil,
        serde_json::Value::Bool(b) => Val::Bool(b),
        serde_json::Value::Number(n) => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Val::Str(s),
        serde_json::Value::Array(a) => Val::List(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let mut m: Vec<(String, Val)> = o.into_iter().map(|(k, v)| (k, from_json(v))).collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            Val::Map(m)
        }
    }
}

static NIL: Val = Val::Nil;

/// Roughly the bytes of a value (what copying it costs).
fn weight(v: &Val, d: &TemplateData<'_>) -> usize {
    match v {
        Val::Str(t) => t.len(),
        Val::List(l) => l.iter().map(|e| weight(e, d) + 8).sum(),
        Val::Map(m) => m.iter().map(|(k, e)| k.len() + weight(e, d)).sum(),
        Val::Labels => d.labels.iter().map(|(k, v)| k.len() + v.len()).sum(),
        _ => 8,
    }
}

/// Go's name of a value's type (in error messages).
fn go_type(v: &Val) -> &'static str {
    match v {
        Val::Str(_) => "string",
        Val::Int(_) => "int",
        Val::Float(_) => "float64",
        Val::Bool(_) => "bool",
        Val::Nil => "<nil>",
        Val::Time(_) => "time.Time",
        Val::List(_) => "[]interface {}",
        Val::Map(_) => "map[string]interface {}",
        Val::Labels => "map[string]string",
    }
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Str(s) => !s.is_empty(),
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0,
        Val::Bool(b) => *b,
        Val::Nil => false,
        Val::Time(_) => true,
        Val::List(l) => !l.is_empty(),
        Val::Map(m) => !m.is_empty(),
        Val::Labels => true,
    }
}

/// A value as an action prints it (`<no value>` for nothing).
fn to_string(v: &Val) -> String {
    match v {
        Val::Nil => "<no value>".into(),
        other => go_fmt(other),
    }
}

/// A value as Go's `%v` prints it (maps as `map[k:v]`, slices as `[a b]`).
fn go_fmt(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => super::units::go_float(*f),
        Val::Bool(b) => b.to_string(),
        Val::Nil => "<nil>".into(),
        Val::Time(ns) => crate::time::format_go(*ns),
        Val::List(l) => format!("[{}]", l.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Val::Map(m) => format!("map[{}]", m.iter().map(|(k, v)| format!("{k}:{}", go_fmt(v))).collect::<Vec<_>>().join(" ")),
        // Exec::resolve turns the labels into a map before printing.
        Val::Labels => "map[]".into(),
    }
}

fn as_f64(v: &Val) -> Result<f64, TemplateError> {
    match v {
        Val::Int(i) => Ok(*i as f64),
        Val::Float(f) => Ok(*f),
        Val::Str(s) => Ok(s.trim().parse().unwrap_or(0.0)),
        Val::Bool(b) => Ok(f64::from(u8::from(*b))),
        Val::Nil => Ok(0.0),
        Val::Time(ns) => Ok(*ns as f64),
        other => Err(err(format!("can't use {} as a number", go_type(other)))),
    }
}

fn as_i64(v: &Val) -> Result<i64, TemplateError> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Float(f) => Ok(*f as i64),
        Val::Str(s) => Ok(s.trim().parse::<i64>().or_else(|_| s.trim().parse::<f64>().map(|f| f as i64)).unwrap_or(0)),
        Val::Bool(b) => Ok(i64::from(*b)),
        Val::Nil => Ok(0),
        Val::Time(ns) => Ok(*ns),
        other => Err(err(format!("can't use {} as a number", go_type(other)))),
    }
}

fn s(v: &Val) -> String {
    to_string(v)
}

fn want(f: &str, args: &[Val], n: usize) -> Result<(), TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(err(format!("error calling {f}: wrong number of args for {f}: want {n} got {}", args.len())))
    }
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => as_f64(a).ok()?.partial_cmp(&as_f64(b).ok()?),
    }
}

/// Calls function `f`; a text result past [`MAX_TEXT`] is an error.
fn call(f: &str, args: Vec<Val>, d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    let out = call_unchecked(f, args, d)?;
    if let Val::Str(text) = &out {
        fits(f, text.len())?;
    }
    Ok(out)
}

/// Bytes of the arguments as text: what a concatenating function would copy.
fn text_len(args: &[Val]) -> usize {
    args.iter().map(|v| if let Val::Str(t) = v { t.len() } else { 32 }).sum()
}

/// The length of `v` with each `old` replaced by `new` (at most `n` of them).
fn replaced_len(v: &str, old: &str, new: &str, n: usize) -> usize {
    let hits = if old.is_empty() { v.chars().count() + 1 } else { v.matches(old).count() }.min(n);
    (v.len() + hits * new.len()).saturating_sub(hits * old.len())
}

fn call_unchecked(f: &str, args: Vec<Val>, d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    use std::cmp::Ordering;
    let a = &args;
    let ok = |v: Val| Ok(v);
    match f {
        "__line__" => ok(Val::Str(d.line.to_string())),
        "__timestamp__" => ok(Val::Time(d.ts)),
        "lower" => {
            want(f, a, 1)?;
            ok(Val::Str(s(&a[0]).to_lowercase()))
        }
        "upper" => {
            want(f, a, 1)?;
            ok(Val::Str(s(&a[0]).to_uppercase()))
        }
        "title" => {
            want(f, a, 1)?;
            let mut out = String::new();
            let mut start = true;
            for c in s(&a[0]).chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            ok(Val::Str(out))
        }
        "trim" | "TrimSpace" => {
            want(f, a, 1)?;
            ok(Val::Str(s(&a[0]).trim().to_string()))
        }
        "ToLower" | "ToUpper" => {
            want(f, a, 1)?;
            ok(Val::Str(if f == "ToLower" { s(&a[0]).to_lowercase() } else { s(&a[0]).to_uppercase() }))
        }
        // sprig's `trimAll cutset s`; Go's `Trim s cutset` (and Left/Right).
        "trimAll" | "Trim" | "TrimLeft" | "TrimRight" => {
            want(f, a, 2)?;
            let (v, cut) = if f == "trimAll" { (s(&a[1]), s(&a[0])) } else { (s(&a[0]), s(&a[1])) };
            let cut: Vec<char> = cut.chars().collect();
            let r = match f {
                "TrimLeft" => v.trim_start_matches(|c| cut.contains(&c)),
                "TrimRight" => v.trim_end_matches(|c| cut.contains(&c)),
                _ => v.trim_matches(|c| cut.contains(&c)),
            };
            ok(Val::Str(r.to_string()))
        }
        "TrimPrefix" | "TrimSuffix" => {
            want(f, a, 2)?;
            let (v, x) = (s(&a[0]), s(&a[1]));
            let r = if f == "TrimPrefix" { v.strip_prefix(x.as_str()) } else { v.strip_suffix(x.as_str()) };
            ok(Val::Str(r.unwrap_or(&v).to_string()))
        }
        "Replace" => {
            want(f, a, 4)?;
            let (v, old, new, n) = (s(&a[0]), s(&a[1]), s(&a[2]), as_i64(&a[3])?);
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            fits(f, replaced_len(&v, &old, &new, n))?;
            ok(Val::Str(v.replacen(&old, &new, n)))
        }
        "trunc" => {
            // Loki's: characters, a negative count from the end.
            want(f, a, 2)?;
            let (c, v) = (as_i64(&a[0])?, s(&a[1]));
            let chars: Vec<char> = v.chars().collect();
            let n = chars.len() as i64;
            ok(Val::Str(if c < 0 && n + c > 0 {
                chars[(n + c) as usize..].iter().collect()
            } else if c >= 0 && n > c {
                chars[..c as usize].iter().collect()
            } else {
                v
            }))
        }
        "trimPrefix" => {
            want(f, a, 2)?;
            let v = s(&a[1]);
            ok(Val::Str(v.strip_prefix(s(&a[0]).as_str()).unwrap_or(&v).to_string()))
        }
        "trimSuffix" => {
            want(f, a, 2)?;
            let v = s(&a[1]);
            ok(Val::Str(v.strip_suffix(s(&a[0]).as_str()).unwrap_or(&v).to_string()))
        }
        "replace" => {
            want(f, a, 3)?;
            let (v, old, new) = (s(&a[2]), s(&a[0]), s(&a[1]));
            fits(f, replaced_len(&v, &old, &new, usize::MAX))?;
            ok(Val::Str(v.replace(&old, &new)))
        }
        "substr" => {
            // Loki's: characters; a negative start reads from the beginning,
            // a negative end to the end (both negative: nothing).
            want(f, a, 3)?;
            let chars: Vec<char> = s(&a[2]).chars().collect();
            let l = chars.len() as i64;
            let (start, end) = (as_i64(&a[0])?.min(l), as_i64(&a[1])?.min(l));
            let slice = |from: i64, to: i64| -> String { chars[from as usize..to as usize].iter().collect() };
            ok(Val::Str(match (start < 0, end < 0) {
                (true, true) => String::new(),
                (true, false) => slice(0, end),
                (false, true) => slice(start, l),
                (false, false) if start > end => String::new(),
                (false, false) => slice(start, end),
            }))
        }
        "contains" => {
            want(f, a, 2)?;
            ok(Val::Bool(s(&a[1]).contains(&s(&a[0]))))
        }
        "hasPrefix" => {
            want(f, a, 2)?;
            ok(Val::Bool(s(&a[1]).starts_with(&s(&a[0]))))
        }
        "hasSuffix" => {
            want(f, a, 2)?;
            ok(Val::Bool(s(&a[1]).ends_with(&s(&a[0]))))
        }
        "indent" | "nindent" => {
            want(f, a, 2)?;
            let pad = " ".repeat(as_i64(&a[0])?.clamp(0, 1024) as usize);
            let text = s(&a[1]);
            fits(f, text.len() + (text.lines().count() + 1) * (pad.len() + 1))?;
            let body = text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n");
            ok(Val::Str(if f == "nindent" { format!("\n{body}") } else { body }))
        }
        "repeat" => {
            want(f, a, 2)?;
            let (text, n) = (s(&a[1]), as_i64(&a[0])?.clamp(0, 4096) as usize);
            fits(f, text.len().saturating_mul(n))?;
            ok(Val::Str(text.repeat(n)))
        }
        "default" => {
            want(f, a, 2)?;
            ok(if truthy(&a[1]) { a[1].clone() } else { a[0].clone() })
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            want(f, a, 3)?;
            let re = regex::Regex::new(&s(&a[0])).map_err(|e| err(format!("error calling {f}: {e}")))?;
            let (src, repl) = (s(&a[1]), s(&a[2]));
            // As `Regex::replace_all`, stopping once the text is too long.
            let (mut out, mut last) = (String::new(), 0);
            for caps in re.captures_iter(&src) {
                let Some(m) = caps.get(0) else { continue };
                out.push_str(&src[last..m.start()]);
                if f == "regexReplaceAll" {
                    caps.expand(&repl, &mut out);
                } else {
                    out.push_str(&repl);
                }
                last = m.end();
                fits(f, out.len())?;
            }
            out.push_str(&src[last..]);
            ok(Val::Str(out))
        }
        "count" => {
            want(f, a, 2)?;
            let re = regex::Regex::new(&s(&a[0])).map_err(|e| err(format!("error calling {f}: {e}")))?;
            ok(Val::Int(re.find_iter(&s(&a[1])).count() as i64))
        }
        "urlencode" => {
            want(f, a, 1)?;
            ok(Val::Str(go_query_escape(&s(&a[0]))))
        }
        "urldecode" => {
            want(f, a, 1)?;
            ok(Val::Str(go_query_unescape(&s(&a[0])).map_err(|e| err(format!("error calling urldecode: {e}")))?))
        }
        "b64enc" => {
            use base64::Engine as _;
            want(f, a, 1)?;
            ok(Val::Str(base64::engine::general_purpose::STANDARD.encode(s(&a[0]))))
        }
        "b64dec" => {
            // Loki pads a short input, and answers a decoding error as the text.
            use base64::Engine as _;
            want(f, a, 1)?;
            let mut v = s(&a[0]);
            if !matches!(v.len() % 4, 0 | 1) {
                v.push_str(&"=".repeat(4 - v.len() % 4));
            }
            ok(Val::Str(match base64::engine::general_purpose::STANDARD.decode(&v) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => go_base64_error(&e),
            }))
        }
        "html" => {
            fits(f, text_len(a))?;
            ok(Val::Str(go_html_escape(&a.iter().map(s).collect::<String>())))
        }
        "urlquery" => ok(Val::Str(go_query_escape(&a.iter().map(s).collect::<String>()))),
        "js" => {
            fits(f, text_len(a))?;
            ok(Val::Str(go_js_escape(&a.iter().map(s).collect::<String>())))
        }
        "bytes" => {
            want(f, a, 1)?;
            ok(Val::Float(super::units::parse_bytes(&s(&a[0])).map_err(|e| err(format!("error calling bytes: {e}")))?))
        }
        "duration" | "duration_seconds" => {
            want(f, a, 1)?;
            ok(Val::Float(super::units::parse_go_duration(&s(&a[0])).map_err(|e| err(format!("error calling {f}: {e}")))?))
        }
        "now" => {
            want(f, a, 0)?;
            ok(Val::Time(crate::time::now_ns()))
        }
        // sprig ignores a parse failure: the zero time.
        "toDate" => {
            want(f, a, 2)?;
            ok(Val::Time(crate::time::parse_layout(&s(&a[0]), &s(&a[1])).unwrap_or(crate::time::GO_ZERO_TIME)))
        }
        "toDateInZone" => {
            want(f, a, 3)?;
            ok(Val::Time(crate::time::parse_layout_in_zone(&s(&a[0]), &s(&a[2]), &s(&a[1])).unwrap_or(crate::time::GO_ZERO_TIME)))
        }
        "date" => {
            want(f, a, 2)?;
            let t = match &a[1] {
                Val::Time(ns) => *ns,
                Val::Int(secs) => secs.saturating_mul(1_000_000_000),
                _ => crate::time::now_ns(),
            };
            ok(Val::Str(crate::time::format_layout(t, &s(&a[0]))))
        }
        // sprig's: what cannot be decoded is nil.
        "fromJson" => {
            want(f, a, 1)?;
            ok(serde_json::from_str(&s(&a[0])).map_or(Val::Nil, from_json))
        }
        "len" => {
            want(f, a, 1)?;
            ok(Val::Int(match &a[0] {
                Val::List(l) => l.len(),
                Val::Map(m) => m.len(),
                other => s(other).len(),
            } as i64))
        }
        "index" => {
            let Some((item, keys)) = a.split_first() else {
                return Err(err("error calling index: wrong number of args for index: want at least 1 got 0"));
            };
            let mut v = item.clone();
            for k in keys {
                v = match v {
                    Val::Map(m) => m.into_iter().find(|(name, _)| *name == s(k)).map_or(Val::Nil, |(_, e)| e),
                    Val::List(l) => {
                        let i = as_i64(k)?;
                        usize::try_from(i).ok().and_then(|i| l.into_iter().nth(i)).ok_or_else(|| err(format!("error calling index: index out of range: {i}")))?
                    }
                    Val::Str(t) => {
                        let i = as_i64(k)?;
                        Val::Int(i64::from(*usize::try_from(i).ok().and_then(|i| t.as_bytes().get(i)).ok_or_else(|| err(format!("error calling index: index out of range: {i}")))?))
                    }
                    Val::Nil => return Err(err("error calling index: index of untyped nil")),
                    other => return Err(err(format!("error calling index: can't index item of type {}", go_type(&other)))),
                };
            }
            ok(v)
        }
        "slice" => {
            let Some((item, bounds)) = a.split_first() else {
                return Err(err("error calling slice: wrong number of args for slice: want at least 1 got 0"));
            };
            let len = match item {
                Val::List(l) => l.len(),
                Val::Str(t) => t.len(),
                other => return Err(err(format!("error calling slice: can't slice item of type {}", go_type(other)))),
            };
            if bounds.len() > 2 {
                return Err(err(format!("error calling slice: too many slice indexes: {}", bounds.len())));
            }
            let at = |i: usize, default: usize| -> Result<usize, TemplateError> {
                match bounds.get(i) {
                    None => Ok(default),
                    Some(b) => {
                        let n = as_i64(b)?;
                        usize::try_from(n).ok().filter(|n| *n <= len).ok_or_else(|| err(format!("error calling slice: index out of range: {n}")))
                    }
                }
            };
            let (from, to) = (at(0, 0)?, at(1, len)?);
            if from > to {
                return Err(err(format!("error calling slice: invalid slice index: {from} > {to}")));
            }
            ok(match item {
                Val::List(l) => Val::List(l[from..to].to_vec()),
                Val::Str(t) => Val::Str(String::from_utf8_lossy(&t.as_bytes()[from..to]).into_owned()),
                _ => Val::Nil,
            })
        }
        "eq" => {
            if a.len() < 2 {
                return Err(err("error calling eq: missing argument for comparison"));
            }
            ok(Val::Bool(a[1..].iter().any(|b| compare(&a[0], b) == Some(Ordering::Equal))))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(f, a, 2)?;
            let o = compare(&a[0], &a[1]);
            ok(Val::Bool(match f {
                "ne" => o != Some(Ordering::Equal),
                "lt" => o == Some(Ordering::Less),
                "le" => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                "gt" => o == Some(Ordering::Greater),
                _ => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
            }))
        }
        "and" => ok(a.iter().find(|v| !truthy(v)).or(a.last()).cloned().unwrap_or(Val::Nil)),
        "or" => ok(a.iter().find(|v| truthy(v)).or(a.last()).cloned().unwrap_or(Val::Nil)),
        "not" => {
            want(f, a, 1)?;
            ok(Val::Bool(!truthy(&a[0])))
        }
        "int" => {
            want(f, a, 1)?;
            ok(Val::Int(as_i64(&a[0])?))
        }
        "float64" => {
            want(f, a, 1)?;
            ok(Val::Float(as_f64(&a[0])?))
        }
        "add" | "sub" | "mul" | "div" | "mod" | "max" | "min" => {
            if a.len() < 2 && matches!(f, "add" | "mul" | "max" | "min") {
                return ok(a.first().cloned().unwrap_or(Val::Int(0)));
            }
            want(f, a, if matches!(f, "sub" | "div" | "mod") { 2 } else { a.len() })?;
            let mut acc = as_i64(&a[0])?;
            for b in &a[1..] {
                let b = as_i64(b)?;
                acc = match f {
                    "add" => acc.wrapping_add(b),
                    "sub" => acc.wrapping_sub(b),
                    "mul" => acc.wrapping_mul(b),
                    "div" | "mod" if b == 0 => return Err(err(format!("error calling {f}: integer divide by zero"))),
                    // Go wraps `MinInt64 / -1` instead of failing.
                    "div" => acc.wrapping_div(b),
                    "mod" => acc.wrapping_rem(b),
                    "max" => acc.max(b),
                    _ => acc.min(b),
                };
            }
            ok(Val::Int(acc))
        }
        // sprig computes these in decimal (shopspring/decimal), not in floats.
        "addf" | "subf" | "mulf" | "divf" => {
            if a.is_empty() {
                return ok(Val::Float(0.0));
            }
            let (first, rest) = if f == "addf" { (0.0, &a[..]) } else { (as_f64(&a[0])?, &a[1..]) };
            // In decimal while it fits i128, else (values ~1e38 apart) in floats.
            let (mut acc, mut float) = (Dec::from_f64(first), first);
            for b in rest {
                let b = as_f64(b)?;
                if f == "divf" && b == 0.0 {
                    return Err(err("error calling divf: decimal division by 0"));
                }
                float = match f {
                    "addf" => float + b,
                    "subf" => float - b,
                    "mulf" => float * b,
                    _ => float / b,
                };
                acc = match (acc, Dec::from_f64(b)) {
                    (Some(x), Some(y)) => match f {
                        "addf" => x.add(y),
                        "subf" => x.add(y.neg()),
                        "mulf" => x.mul(y),
                        _ => x.div(y),
                    },
                    _ => None,
                };
            }
            ok(Val::Float(acc.map_or(float, Dec::to_f64)))
        }
        "maxf" | "minf" => {
            if a.is_empty() {
                return ok(Val::Float(0.0));
            }
            let mut acc = as_f64(&a[0])?;
            for b in &a[1..] {
                let b = as_f64(b)?;
                acc = if f == "maxf" { acc.max(b) } else { acc.min(b) };
            }
            ok(Val::Float(acc))
        }
        "ceil" | "floor" => {
            want(f, a, 1)?;
            let v = as_f64(&a[0])?;
            ok(Val::Float(if f == "ceil" { v.ceil() } else { v.floor() }))
        }
        "round" => {
            // sprig: round(x, places[, threshold]): up from the threshold (.5).
            if a.len() < 2 || a.len() > 3 {
                return Err(err(format!("error calling round: wrong number of args for round: want 2 got {}", a.len())));
            }
            let (v, places) = (as_f64(&a[0])?, as_i64(&a[1])? as f64);
            let threshold = a.get(2).map(as_f64).transpose()?.unwrap_or(0.5);
            let pow = 10f64.powf(places);
            let digit = pow * v;
            let frac = digit.fract();
            ok(Val::Float(if frac >= threshold { digit.ceil() } else { digit.floor() } / pow))
        }
        "unixEpoch" | "unixEpochMillis" | "unixEpochNanos" => {
            want(f, a, 1)?;
            let ns = as_i64(&a[0])?;
            let secs = crate::time::unix_seconds(ns);
            ok(match f {
                // sprig answers a string.
                "unixEpoch" => Val::Str(secs.to_string()),
                "unixEpochMillis" if ns == crate::time::GO_ZERO_TIME => Val::Int(secs * 1000),
                "unixEpochMillis" => Val::Int(ns.div_euclid(1_000_000)),
                _ => Val::Int(ns),
            })
        }
        "unixToTime" => {
            want(f, a, 1)?;
            let v = s(&a[0]);
            let n: i64 = v.trim().parse().map_err(|_| err(format!("error calling unixToTime: invalid {v:?}")))?;
            let ns = match v.trim().len() {
                0..=10 => n.saturating_mul(1_000_000_000),
                11..=13 => n.saturating_mul(1_000_000),
                14..=16 => n.saturating_mul(1_000),
                _ => n,
            };
            ok(Val::Time(ns))
        }
        "alignLeft" | "alignRight" => {
            want(f, a, 2)?;
            let count = as_i64(&a[0])?;
            if count < 0 {
                return ok(Val::Str(s(&a[1])));
            }
            let n = count.min(4096) as usize;
            let v: Vec<char> = s(&a[1]).chars().collect();
            let out: String = if v.len() >= n {
                // Too long: alignLeft keeps the first characters, alignRight the last.
                if f == "alignLeft" { v[..n].iter().collect() } else { v[v.len() - n..].iter().collect() }
            } else if f == "alignLeft" {
                v.iter().collect::<String>() + &" ".repeat(n - v.len())
            } else {
                " ".repeat(n - v.len()) + &v.iter().collect::<String>()
            };
            ok(Val::Str(out))
        }
        "print" | "println" => {
            fits(f, text_len(a) + a.len())?;
            let sep = if f == "print" { "" } else { " " };
            let end = if f == "print" { "" } else { "\n" };
            ok(Val::Str(a.iter().map(s).collect::<Vec<_>>().join(sep) + end))
        }
        "printf" => {
            if a.is_empty() {
                return Err(err("error calling printf: missing format"));
            }
            fits(f, text_len(a))?;
            ok(Val::Str(printf(&s(&a[0]), &a[1..]).ok_or_else(|| too_long(f))?))
        }
        other => Err(err(format!("function {other:?} not defined"))),
    }
}

/// A decimal `m × 10^e`, for sprig's float arithmetic (shopspring/decimal:
/// floats read as their shortest decimal, sums and products exact,
/// quotients rounded to 16 places, half away from zero). `None` when i128
/// would overflow (the caller then answers the float result).
#[derive(Clone, Copy, Debug)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    fn from_f64(v: f64) -> Option<Dec> {
        if !v.is_finite() {
            return None;
        }
        let sci = format!("{v:e}");
        let (mant, exp) = sci.split_once('e')?;
        let exp: i32 = exp.parse().ok()?;
        let frac_digits = mant.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
        let m: i128 = mant.replace('.', "").parse().ok()?;
        Some(Dec { m, e: exp - frac_digits })
    }

    fn scaled(self, e: i32) -> Option<i128> {
        self.m.checked_mul(10i128.checked_pow(u32::try_from(self.e - e).ok()?)?)
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let e = self.e.min(o.e);
        Some(Dec { m: self.scaled(e)?.checked_add(o.scaled(e)?)?, e })
    }

    fn neg(self) -> Dec {
        Dec { m: -self.m, e: self.e }
    }

    fn mul(self, o: Dec) -> Option<Dec> {
        Some(Dec { m: self.m.checked_mul(o.m)?, e: self.e.checked_add(o.e)? })
    }

    fn div(self, o: Dec) -> Option<Dec> {
        const PLACES: i32 = 16;
        // (m1·10^e1) / (m2·10^e2) at 10^-16: m1·10^(e1-e2+16) / m2.
        let k = self.e - o.e + PLACES;
        let (num, den) = if k >= 0 {
            (self.m.checked_mul(10i128.checked_pow(k as u32)?)?, o.m)
        } else {
            (self.m, o.m.checked_mul(10i128.checked_pow((-k) as u32)?)?)
        };
        let (q, r) = (num / den, num % den);
        let up = r.checked_mul(2)?.abs() >= den.abs();
        let q = if up { q + if (num < 0) != (den < 0) { -1 } else { 1 } } else { q };
        Some(Dec { m: q, e: -PLACES })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` stay, a space is
/// `+`, every other byte `%XX`.
fn go_query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; a bad escape is
/// an error naming it (`invalid URL escape "%zz"`).
fn go_query_unescape(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = hex.filter(|_| b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) else {
                    let bad = String::from_utf8_lossy(&b[i..b.len().min(i + 3)]).into_owned();
                    return Err(format!("invalid URL escape {}", crate::labels::go_quote(&bad)));
                };
                out.push(byte);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `html/template.HTMLEscapeString`.
fn go_html_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `text/template.JSEscapeString`.
fn go_js_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's words for a bad base64 input.
fn go_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        _ => "illegal base64 data at input byte 0".into(),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: %s %v %d %f %e %g %q %x
/// %X %c %t %%, with flags `-`, `0`, `+`, width and precision.
/// `None` when the text would pass [`MAX_TEXT`]. Widths and precisions
/// past 10^6 print Go's `%!(BADWIDTH)` / `%!(BADPREC)`.
fn printf(fmt: &str, args: &[Val]) -> Option<String> {
    const TOO_LARGE: usize = 1_000_000;
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next_arg = args.iter();
    while let Some(c) = it.next() {
        if out.len() > MAX_TEXT {
            return None;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = it.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(usize::MAX));
        }
        let w: usize = width.parse().unwrap_or(if width.is_empty() { 0 } else { usize::MAX });
        if w > TOO_LARGE || prec.is_some_and(|p| p > TOO_LARGE) {
            // Go stops reading such a number, and the format with it.
            out.push_str("%!(NOVERB)");
            break;
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next_arg.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let body = match verb {
            's' | 'v' => {
                let v = go_fmt(arg);
                match prec {
                    Some(p) if verb == 's' => v.chars().take(p).collect(),
                    _ => v,
                }
            }
            'd' => {
                let n = as_i64(arg).unwrap_or(0);
                if plus && n >= 0 {
                    format!("+{n}")
                } else {
                    n.to_string()
                }
            }
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), as_f64(arg).unwrap_or(0.0)),
            'e' => format!("{:.*e}", prec.unwrap_or(6), as_f64(arg).unwrap_or(0.0)),
            'g' => super::units::go_float(as_f64(arg).unwrap_or(0.0)),
            'q' => crate::labels::go_quote(&s(arg)),
            'x' | 'X' => {
                let v = match arg {
                    Val::Int(i) => format!("{i:x}"),
                    other => s(other).bytes().map(|b| format!("{b:02x}")).collect(),
                };
                if verb == 'X' {
                    v.to_uppercase()
                } else {
                    v
                }
            }
            'c' => char::from_u32(as_i64(arg).unwrap_or(0) as u32).map(String::from).unwrap_or_default(),
            't' => truthy(arg).to_string(),
            other => format!("%!{other}({})", s(arg)),
        };
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if left {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - len));
        } else if zero && !matches!(verb, 's' | 'q' | 'v') {
            out.push_str(&"0".repeat(w - len));
            out.push_str(&body);
        } else {
            out.push_str(&" ".repeat(w - len));
            out.push_str(&body);
        }
    }
    (out.len() <= MAX_TEXT).then_some(out)
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

#[cfg(test)]
mod loki_functions {
    use super::*;

    fn run(t: &str, labels: &[(&str, &str)]) -> String {
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Template::parse(t).and_then(|t| t.render(&TemplateData { labels: &labels, line: "", ts: 1_656_300_000_000_000_000 })).unwrap()
    }

    #[test]
    fn strings_times_sizes_and_decimal_math_as_loki() {
        let w = [("s", "Hello, 世界")];
        assert_eq!(run("{{ trunc -1 .s }}|{{ trunc 1 .s }}|{{ trunc -20 .s }}", &w), "界|H|Hello, 世界");
        assert_eq!(run("{{ substr -10 8 .s }}|{{ substr 3 -1 .s }}|{{ substr -1 -1 .s }}", &w), "Hello, 世|lo, 世界|");
        assert_eq!(run("[{{ alignRight 2 .s }}][{{ alignLeft -1 .s }}]", &w), "[世界][Hello, 世界]");
        assert_eq!(run(r#"{{ Replace .s "l" "L" 1 }} {{ .s | ToUpper }} {{ TrimPrefix .s "Hello" }}"#, &w), "HeLlo, 世界 HELLO, 世界 , 世界");
        assert_eq!(run(r#"{{ __timestamp__ | date "2006-01-02T15:04" }}"#, &[]), "2022-06-27T03:20");
        assert_eq!(run(r#"{{ sub (unixEpoch (toDate "2006-01-02" "2021-11-02")) (unixEpoch (toDate "2006-01-02" "2021-11-01")) }}"#, &[]), "86400");
        assert_eq!(run(r#"{{ unixEpoch (toDate "2006-01-02" "not a date") }}"#, &[]), "-62135596800");
        assert_eq!(run("{{ .b | bytes }} {{ .d | duration }}", &[("b", "3MB"), ("d", "3ms")]), "3e+06 0.003");
        assert_eq!(run("{{ .v | b64enc }} {{ .e | b64dec }}", &[("v", "i'm a string"), ("e", "Zm9vYmE")]), "aSdtIGEgc3RyaW5n fooba");
        // In floats this is -0.13888888888888887; sprig computes in decimal.
        let m = [("foo", "0.1"), ("bar", "0.7"), ("baz", "3"), ("bazz", "1")];
        assert_eq!(run("{{ addf .foo 1.5 | subf .bar 1.5 | mulf .baz | divf .bazz }}", &m), "-0.1388888888888889");
        assert_eq!(run("{{ round 3.14159 3 .2 }} {{ round 3.14129 3 }}", &[]), "3.142 3.141");
        assert_eq!(run("{{ mulf 1000 1000 }} {{ 123456.5 }}", &[]), "1e+06 123456.5");
        assert_eq!(run("{{ addf 1e30 1e-10 }} {{ divf 1 3 }}", &[]), "1e+30 0.3333333333333333", "past i128, in floats");
        let u = [("u", "a b&c=~*/é"), ("e", "a+b%26c%3D%7E%2A%2F%C3%A9")];
        assert_eq!(run("{{ .u | urlencode }} {{ urlquery .u }} {{ .e | urldecode }}", &u), "a+b%26c%3D~%2A%2F%C3%A9 a+b%26c%3D~%2A%2F%C3%A9 a b&c=~*/é");
        let t = Template::parse("{{ .bad | urldecode }}").unwrap();
        let labels = vec![("bad".to_string(), "50%zz".to_string())];
        assert_eq!(t.render(&TemplateData { labels: &labels, line: "", ts: 0 }).unwrap_err().0, "template: line_format:1: error calling urldecode: invalid URL escape \"%zz\"");
        assert!(Template::parse("{{ abs 1 }}").is_err(), "only Loki's functions");
    }
}
