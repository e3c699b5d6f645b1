//! Pieces into the tree of nodes: blocks with their `else`/`end`,
//! variables checked where they are used (as Go does when parsing), and
//! function names resolved to their entry in the function table.

use super::lex::{fields, lex_action, split, unquote, Piece, Tok};
use super::{err, Action, Arg, Command, Func, Node, Pipeline, TemplateError};

/// The nodes of a whole template.
pub(super) fn nodes(src: &str) -> Result<Vec<Node>, TemplateError> {
    let pieces = split(src)?;
    let mut p = Parser { pieces: &pieces, pos: 0, vars: Vec::new(), ranges: 0, depth: 0 };
    match p.nodes()? {
        (nodes, Stop::Eof) => Ok(nodes),
        (_, Stop::End) => Err(err("unexpected {{end}}")),
        (_, Stop::Else(_)) => Err(err("unexpected {{else}}")),
    }
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
        if let Some(f) = Func::lookup(t) {
            return Ok(Arg::Func(f));
        }
        // `fn.a.b`: fields of a call without arguments.
        if let Some((f, i)) = t.find('.').and_then(|i| Some((Func::lookup(&t[..i])?, i))) {
            return Ok(Arg::Sub(vec![vec![Arg::Func(f)]], fields(&t[i..])?));
        }
        Err(err(format!("function {:?} not defined", t.split('.').next().unwrap_or(t))))
    }
}
