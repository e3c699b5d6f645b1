//! The functions a template may call — Loki's own, the sprig ones Loki
//! lists, the old capitalized `strings` names, and Go's template
//! built-ins — as one table from name to implementation. The parser looks
//! a name up once ([`Func::lookup`]); running a template calls through
//! the entry it found.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::value::{as_f64, as_i64, compare, go_fmt, go_type, to_string, truthy, Val};
use super::{err, fits, too_long, TemplateData, TemplateError, MAX_TEXT};

/// What every template function is: its name as called (one
/// implementation may serve several names), its arguments (the piped value
/// last), and the entry.
type Impl = fn(&str, &[Val], &TemplateData<'_>) -> Result<Val, TemplateError>;

/// A function a template calls, as the parser found it in [`FUNCS`].
#[derive(Clone, Copy)]
pub(super) struct Func {
    pub(super) name: &'static str,
    run: Impl,
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Func {
    /// The function called `name`, if templates have one.
    pub(super) fn lookup(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|&(name, run)| Func { name, run })
    }

    /// Calls the function; a text result past [`MAX_TEXT`] is an error.
    pub(super) fn call(self, args: &[Val], d: &TemplateData<'_>) -> Result<Val, TemplateError> {
        let out = (self.run)(self.name, args, d)?;
        if let Val::Str(text) = &out {
            fits(self.name, text.len())?;
        }
        Ok(out)
    }
}

/// Every function by name.
const FUNCS: &[(&str, Impl)] = &[
    ("__line__", line), ("__timestamp__", timestamp), ("lower", lower), ("upper", upper), ("title", title), ("trim", trim), ("TrimSpace", trim),
    ("ToLower", lower), ("ToUpper", upper), ("trimAll", trim_cutset), ("Trim", trim_cutset), ("TrimLeft", trim_cutset),
    ("TrimRight", trim_cutset), ("TrimPrefix", strings_trim_affix), ("TrimSuffix", strings_trim_affix), ("Replace", strings_replace),
    ("trunc", trunc), ("trimPrefix", trim_prefix), ("trimSuffix", trim_suffix), ("replace", replace), ("substr", substr), ("contains", contains),
    ("hasPrefix", has_prefix), ("hasSuffix", has_suffix), ("indent", indent), ("nindent", indent), ("repeat", repeat), ("default", default),
    ("regexReplaceAll", regex_replace), ("regexReplaceAllLiteral", regex_replace), ("count", count), ("urlencode", urlencode),
    ("urldecode", urldecode), ("b64enc", b64enc), ("b64dec", b64dec), ("html", html), ("urlquery", urlquery), ("js", js), ("bytes", bytes),
    ("duration", duration), ("duration_seconds", duration), ("now", now), ("toDate", to_date), ("toDateInZone", to_date_in_zone), ("date", date),
    ("fromJson", parse_json), ("len", len_), ("index", index), ("slice", slice), ("eq", eq), ("ne", ordered), ("lt", ordered), ("le", ordered),
    ("gt", ordered), ("ge", ordered), ("and", and_), ("or", or_), ("not", not_), ("int", int_), ("float64", float64), ("add", int_math),
    ("sub", int_math), ("mul", int_math), ("div", int_math), ("mod", int_math), ("max", int_math), ("min", int_math), ("addf", decimal_math),
    ("subf", decimal_math), ("mulf", decimal_math), ("divf", decimal_math), ("maxf", float_extreme), ("minf", float_extreme), ("ceil", ceil_floor),
    ("floor", ceil_floor), ("round", round), ("unixEpoch", unix_epoch), ("unixEpochMillis", unix_epoch), ("unixEpochNanos", unix_epoch),
    ("unixToTime", unix_to_time), ("alignLeft", align), ("alignRight", align), ("print", print), ("println", print), ("printf", printf),
];

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

/// Bytes of the arguments as text: what a concatenating function would copy.
fn text_len(args: &[Val]) -> usize {
    args.iter().map(|v| if let Val::Str(t) = v { t.len() } else { 32 }).sum()
}

/// The length of `v` with each `old` replaced by `new` (at most `n` of them).
fn replaced_len(v: &str, old: &str, new: &str, n: usize) -> usize {
    let hits = if old.is_empty() { v.chars().count() + 1 } else { v.matches(old).count() }.min(n);
    (v.len() + hits * new.len()).saturating_sub(hits * old.len())
}

fn line(_f: &str, _a: &[Val], d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    Ok(Val::Str(d.line.to_string()))
}

fn timestamp(_f: &str, _a: &[Val], d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    Ok(Val::Time(d.ts))
}

fn lower(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Str(s(&a[0]).to_lowercase()))
}

fn upper(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Str(s(&a[0]).to_uppercase()))
}

fn title(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
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
    Ok(Val::Str(out))
}

fn trim(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Str(s(&a[0]).trim().to_string()))
}

/// sprig's `trimAll cutset s`; Go's `Trim s cutset` (and Left/Right).
fn trim_cutset(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let (v, cut) = if f == "trimAll" { (s(&a[1]), s(&a[0])) } else { (s(&a[0]), s(&a[1])) };
    let cut: Vec<char> = cut.chars().collect();
    let r = match f {
        "TrimLeft" => v.trim_start_matches(|c| cut.contains(&c)),
        "TrimRight" => v.trim_end_matches(|c| cut.contains(&c)),
        _ => v.trim_matches(|c| cut.contains(&c)),
    };
    Ok(Val::Str(r.to_string()))
}

fn strings_trim_affix(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let (v, x) = (s(&a[0]), s(&a[1]));
    let r = if f == "TrimPrefix" { v.strip_prefix(x.as_str()) } else { v.strip_suffix(x.as_str()) };
    Ok(Val::Str(r.unwrap_or(&v).to_string()))
}

fn strings_replace(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 4)?;
    let (v, old, new, n) = (s(&a[0]), s(&a[1]), s(&a[2]), as_i64(&a[3])?);
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    fits(f, replaced_len(&v, &old, &new, n))?;
    Ok(Val::Str(v.replacen(&old, &new, n)))
}

fn trunc(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    // Loki's: characters, a negative count from the end.
    want(f, a, 2)?;
    let (c, v) = (as_i64(&a[0])?, s(&a[1]));
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len() as i64;
    Ok(Val::Str(if c < 0 && n + c > 0 {
        chars[(n + c) as usize..].iter().collect()
    } else if c >= 0 && n > c {
        chars[..c as usize].iter().collect()
    } else {
        v
    }))
}

fn trim_prefix(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let v = s(&a[1]);
    Ok(Val::Str(v.strip_prefix(s(&a[0]).as_str()).unwrap_or(&v).to_string()))
}

fn trim_suffix(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let v = s(&a[1]);
    Ok(Val::Str(v.strip_suffix(s(&a[0]).as_str()).unwrap_or(&v).to_string()))
}

fn replace(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 3)?;
    let (v, old, new) = (s(&a[2]), s(&a[0]), s(&a[1]));
    fits(f, replaced_len(&v, &old, &new, usize::MAX))?;
    Ok(Val::Str(v.replace(&old, &new)))
}

fn substr(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    // Loki's: characters; a negative start reads from the beginning,
    // a negative end to the end (both negative: nothing).
    want(f, a, 3)?;
    let chars: Vec<char> = s(&a[2]).chars().collect();
    let l = chars.len() as i64;
    let (start, end) = (as_i64(&a[0])?.min(l), as_i64(&a[1])?.min(l));
    let slice = |from: i64, to: i64| -> String { chars[from as usize..to as usize].iter().collect() };
    Ok(Val::Str(match (start < 0, end < 0) {
        (true, true) => String::new(),
        (true, false) => slice(0, end),
        (false, true) => slice(start, l),
        (false, false) if start > end => String::new(),
        (false, false) => slice(start, end),
    }))
}

fn contains(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    Ok(Val::Bool(s(&a[1]).contains(&s(&a[0]))))
}

fn has_prefix(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    Ok(Val::Bool(s(&a[1]).starts_with(&s(&a[0]))))
}

fn has_suffix(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    Ok(Val::Bool(s(&a[1]).ends_with(&s(&a[0]))))
}

fn indent(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let pad = " ".repeat(as_i64(&a[0])?.clamp(0, 1024) as usize);
    let text = s(&a[1]);
    fits(f, text.len() + (text.lines().count() + 1) * (pad.len() + 1))?;
    let body = text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n");
    Ok(Val::Str(if f == "nindent" { format!("\n{body}") } else { body }))
}

fn repeat(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let (text, n) = (s(&a[1]), as_i64(&a[0])?.clamp(0, 4096) as usize);
    fits(f, text.len().saturating_mul(n))?;
    Ok(Val::Str(text.repeat(n)))
}

fn default(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    Ok(if truthy(&a[1]) { a[1].clone() } else { a[0].clone() })
}

fn regex_replace(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
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
    Ok(Val::Str(out))
}

fn count(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let re = regex::Regex::new(&s(&a[0])).map_err(|e| err(format!("error calling {f}: {e}")))?;
    Ok(Val::Int(re.find_iter(&s(&a[1])).count() as i64))
}

fn urlencode(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Str(go_query_escape(&s(&a[0]))))
}

fn urldecode(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Str(go_query_unescape(&s(&a[0])).map_err(|e| err(format!("error calling urldecode: {e}")))?))
}

fn b64enc(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    use base64::Engine as _;
    want(f, a, 1)?;
    Ok(Val::Str(base64::engine::general_purpose::STANDARD.encode(s(&a[0]))))
}

fn b64dec(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    // Loki pads a short input, and answers a decoding error as the text.
    use base64::Engine as _;
    want(f, a, 1)?;
    let mut v = s(&a[0]);
    if !matches!(v.len() % 4, 0 | 1) {
        v.push_str(&"=".repeat(4 - v.len() % 4));
    }
    Ok(Val::Str(match base64::engine::general_purpose::STANDARD.decode(&v) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => go_base64_error(&e),
    }))
}

fn html(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    fits(f, text_len(a))?;
    Ok(Val::Str(go_html_escape(&a.iter().map(s).collect::<String>())))
}

fn urlquery(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    Ok(Val::Str(go_query_escape(&a.iter().map(s).collect::<String>())))
}

fn js(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    fits(f, text_len(a))?;
    Ok(Val::Str(go_js_escape(&a.iter().map(s).collect::<String>())))
}

fn bytes(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Float(crate::units::parse_bytes(&s(&a[0])).map_err(|e| err(format!("error calling bytes: {e}")))?))
}

fn duration(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Float(crate::units::parse_go_duration(&s(&a[0])).map_err(|e| err(format!("error calling {f}: {e}")))?))
}

fn now(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 0)?;
    Ok(Val::Time(crate::time::now_ns()))
}

/// sprig ignores a parse failure: the zero time.
fn to_date(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    Ok(Val::Time(crate::time::parse_layout(&s(&a[0]), &s(&a[1])).unwrap_or(crate::time::GO_ZERO_TIME)))
}

fn to_date_in_zone(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 3)?;
    Ok(Val::Time(crate::time::parse_layout_in_zone(&s(&a[0]), &s(&a[2]), &s(&a[1])).unwrap_or(crate::time::GO_ZERO_TIME)))
}

fn date(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let t = match &a[1] {
        Val::Time(ns) => *ns,
        Val::Int(secs) => secs.saturating_mul(1_000_000_000),
        _ => crate::time::now_ns(),
    };
    Ok(Val::Str(crate::time::format_layout(t, &s(&a[0]))))
}

/// sprig's: what cannot be decoded is nil.
fn parse_json(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(serde_json::from_str(&s(&a[0])).map_or(Val::Nil, Val::from_json))
}

fn len_(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Int(match &a[0] {
        Val::List(l) => l.len(),
        Val::Map(m) => m.len(),
        other => s(other).len(),
    } as i64))
}

fn index(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
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
    Ok(v)
}

fn slice(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
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
    Ok(match item {
        Val::List(l) => Val::List(l[from..to].to_vec()),
        Val::Str(t) => Val::Str(String::from_utf8_lossy(&t.as_bytes()[from..to]).into_owned()),
        _ => Val::Nil,
    })
}

fn eq(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    if a.len() < 2 {
        return Err(err("error calling eq: missing argument for comparison"));
    }
    Ok(Val::Bool(a[1..].iter().any(|b| compare(&a[0], b) == Some(Ordering::Equal))))
}

fn ordered(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let o = compare(&a[0], &a[1]);
    Ok(Val::Bool(match f {
        "ne" => o != Some(Ordering::Equal),
        "lt" => o == Some(Ordering::Less),
        "le" => matches!(o, Some(Ordering::Less | Ordering::Equal)),
        "gt" => o == Some(Ordering::Greater),
        _ => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
    }))
}

fn and_(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    Ok(a.iter().find(|v| !truthy(v)).or(a.last()).cloned().unwrap_or(Val::Nil))
}

fn or_(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    Ok(a.iter().find(|v| truthy(v)).or(a.last()).cloned().unwrap_or(Val::Nil))
}

fn not_(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Bool(!truthy(&a[0])))
}

fn int_(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Int(as_i64(&a[0])?))
}

fn float64(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    Ok(Val::Float(as_f64(&a[0])?))
}

fn int_math(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    if a.len() < 2 && matches!(f, "add" | "mul" | "max" | "min") {
        return Ok(a.first().cloned().unwrap_or(Val::Int(0)));
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
    Ok(Val::Int(acc))
}

/// sprig computes these in decimal (shopspring/decimal), not in floats.
fn decimal_math(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    if a.is_empty() {
        return Ok(Val::Float(0.0));
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
    Ok(Val::Float(acc.map_or(float, Dec::to_f64)))
}

fn float_extreme(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    if a.is_empty() {
        return Ok(Val::Float(0.0));
    }
    let mut acc = as_f64(&a[0])?;
    for b in &a[1..] {
        let b = as_f64(b)?;
        acc = if f == "maxf" { acc.max(b) } else { acc.min(b) };
    }
    Ok(Val::Float(acc))
}

fn ceil_floor(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    let v = as_f64(&a[0])?;
    Ok(Val::Float(if f == "ceil" { v.ceil() } else { v.floor() }))
}

fn round(_f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    // sprig: round(x, places[, threshold]): up from the threshold (.5).
    if a.len() < 2 || a.len() > 3 {
        return Err(err(format!("error calling round: wrong number of args for round: want 2 got {}", a.len())));
    }
    let (v, places) = (as_f64(&a[0])?, as_i64(&a[1])? as f64);
    let threshold = a.get(2).map(as_f64).transpose()?.unwrap_or(0.5);
    let pow = 10f64.powf(places);
    let digit = pow * v;
    let frac = digit.fract();
    Ok(Val::Float(if frac >= threshold { digit.ceil() } else { digit.floor() } / pow))
}

fn unix_epoch(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    let ns = as_i64(&a[0])?;
    let secs = crate::time::unix_seconds(ns);
    Ok(match f {
        // sprig answers a string.
        "unixEpoch" => Val::Str(secs.to_string()),
        "unixEpochMillis" if ns == crate::time::GO_ZERO_TIME => Val::Int(secs * 1000),
        "unixEpochMillis" => Val::Int(ns.div_euclid(1_000_000)),
        _ => Val::Int(ns),
    })
}

fn unix_to_time(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 1)?;
    let v = s(&a[0]);
    let n: i64 = v.trim().parse().map_err(|_| err(format!("error calling unixToTime: invalid {v:?}")))?;
    let ns = match v.trim().len() {
        0..=10 => n.saturating_mul(1_000_000_000),
        11..=13 => n.saturating_mul(1_000_000),
        14..=16 => n.saturating_mul(1_000),
        _ => n,
    };
    Ok(Val::Time(ns))
}

fn align(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    want(f, a, 2)?;
    let count = as_i64(&a[0])?;
    if count < 0 {
        return Ok(Val::Str(s(&a[1])));
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
    Ok(Val::Str(out))
}

fn print(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    fits(f, text_len(a) + a.len())?;
    let sep = if f == "print" { "" } else { " " };
    let end = if f == "print" { "" } else { "\n" };
    Ok(Val::Str(a.iter().map(s).collect::<Vec<_>>().join(sep) + end))
}

fn printf(f: &str, a: &[Val], _d: &TemplateData<'_>) -> Result<Val, TemplateError> {
    if a.is_empty() {
        return Err(err("error calling printf: missing format"));
    }
    fits(f, text_len(a))?;
    Ok(Val::Str(go_sprintf(&s(&a[0]), &a[1..]).ok_or_else(|| too_long(f))?))
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
fn go_sprintf(fmt: &str, args: &[Val]) -> Option<String> {
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
            'g' => crate::units::go_float(as_f64(arg).unwrap_or(0.0)),
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
mod loki_functions {
    use super::super::Template;
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
