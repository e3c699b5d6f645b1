//! The template's source as pieces (text, and the inside of each `{{ }}`
//! with trim markers applied) and an action's words as tokens.

use super::{err, TemplateError};

/// A piece of the source: text, or the inside of an action.
pub(super) enum Piece {
    Text(String),
    Action(String),
}

/// Splits the source into text and actions, applying `{{-` / `-}}`.
pub(super) fn split(src: &str) -> Result<Vec<Piece>, TemplateError> {
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

/// `.a.b` → `["a", "b"]`.
pub(super) fn fields(chain: &str) -> Result<Vec<String>, TemplateError> {
    let names: Vec<String> = chain[1..].split('.').map(str::to_string).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(err(format!("bad character in field chain {chain:?}")));
    }
    Ok(names)
}

/// A token of an action; `glued` when no space separates it from the one before.
pub(super) struct Tok {
    pub(super) text: String,
    pub(super) glued: bool,
}

pub(super) fn lex_action(s: &str) -> Result<Vec<Tok>, TemplateError> {
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
pub(super) fn unquote(t: &str) -> Result<String, TemplateError> {
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

