//! Running a parsed template over one entry: nodes, pipelines, variables,
//! and the limits that keep one line's template from running away
//! ([`MAX_RANGE_STEPS`], [`MAX_WORK`], and [`MAX_TEXT`] per value).

use super::value::{go_fmt, go_type, label, sorted_labels, to_string, truthy, weight, Val, NIL};
use super::{err, fits, Action, Arg, Command, Node, Pipeline, TemplateData, TemplateError, MAX_RANGE_STEPS};

/// What `nodes` print for one entry (dot and `$` are its labels).
pub(super) fn render(nodes: &[Node], data: &TemplateData<'_>) -> Result<String, TemplateError> {
    let mut ex = Exec { d: data, vars: vec![("$".to_string(), Val::Labels)], out: String::new(), steps: 0, work: Default::default() };
    ex.nodes(nodes, &Val::Labels)?;
    Ok(ex.out)
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
            Arg::Func(f) if f.name == "and" || f.name == "or" => {
                let mut last = Val::Nil;
                for a in &cmd[1..] {
                    last = self.resolve(self.arg(a, dot)?);
                    if truthy(&last) == (f.name == "or") {
                        return Ok(last);
                    }
                }
                Ok(piped.map(|v| self.resolve(v)).unwrap_or(last))
            }
            Arg::Func(f) => {
                let mut args = cmd[1..].iter().map(|a| self.arg(a, dot).map(|v| self.resolve(v))).collect::<Result<Vec<_>, _>>()?;
                args.extend(piped.map(|v| self.resolve(v)));
                let out = f.call(&args, self.d)?;
                self.spend(f.name, &out)?;
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
                let out = f.call(&[], self.d)?;
                self.spend(f.name, &out)?;
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
