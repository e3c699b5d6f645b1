//! The values a template computes with: Go's dynamic values as
//! `text/template` sees them (strings, numbers, times, JSON lists and
//! maps, the entry's labels), how they print, compare and convert.

use super::TemplateData;
use super::{err, TemplateError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
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

pub(super) fn label<'a>(d: &'a TemplateData<'_>, name: &str) -> Option<&'a str> {
    d.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The labels by name, as Go ranges over and prints a map.
pub(super) fn sorted_labels<'a>(d: &'a TemplateData<'_>) -> Vec<&'a (String, String)> {
    let mut l: Vec<_> = d.labels.iter().collect();
    l.sort();
    l
}

impl Val {
    /// A JSON document as Go's `encoding/json` decodes it into `interface{}`.
    pub(super) fn from_json(v: serde_json::Value) -> Val {
        match v {
            serde_json::Value::Null => Val::Nil,
            serde_json::Value::Bool(b) => Val::Bool(b),
            serde_json::Value::Number(n) => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Val::Str(s),
            serde_json::Value::Array(a) => Val::List(a.into_iter().map(Val::from_json).collect()),
            serde_json::Value::Object(o) => {
                let mut m: Vec<(String, Val)> = o.into_iter().map(|(k, v)| (k, Val::from_json(v))).collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                Val::Map(m)
            }
        }
    }
}

pub(super) static NIL: Val = Val::Nil;

/// Roughly the bytes of a value (what copying it costs).
pub(super) fn weight(v: &Val, d: &TemplateData<'_>) -> usize {
    match v {
        Val::Str(t) => t.len(),
        Val::List(l) => l.iter().map(|e| weight(e, d) + 8).sum(),
        Val::Map(m) => m.iter().map(|(k, e)| k.len() + weight(e, d)).sum(),
        Val::Labels => d.labels.iter().map(|(k, v)| k.len() + v.len()).sum(),
        _ => 8,
    }
}

/// Go's name of a value's type (in error messages).
pub(super) fn go_type(v: &Val) -> &'static str {
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

pub(super) fn truthy(v: &Val) -> bool {
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
pub(super) fn to_string(v: &Val) -> String {
    match v {
        Val::Nil => "<no value>".into(),
        other => go_fmt(other),
    }
}

/// A value as Go's `%v` prints it (maps as `map[k:v]`, slices as `[a b]`).
pub(super) fn go_fmt(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => crate::units::go_float(*f),
        Val::Bool(b) => b.to_string(),
        Val::Nil => "<nil>".into(),
        Val::Time(ns) => crate::time::format_go(*ns),
        Val::List(l) => format!("[{}]", l.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Val::Map(m) => format!("map[{}]", m.iter().map(|(k, v)| format!("{k}:{}", go_fmt(v))).collect::<Vec<_>>().join(" ")),
        // Exec::resolve turns the labels into a map before printing.
        Val::Labels => "map[]".into(),
    }
}

pub(super) fn as_f64(v: &Val) -> Result<f64, TemplateError> {
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

pub(super) fn as_i64(v: &Val) -> Result<i64, TemplateError> {
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

pub(super) fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => as_f64(a).ok()?.partial_cmp(&as_f64(b).ok()?),
    }
}
