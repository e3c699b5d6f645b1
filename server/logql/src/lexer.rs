//! Tokens of LogQL with their positions.

use super::parser::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    LBrace,
    RBrace,
    Comma,
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `|=`
    PipeExact,
    /// `|~`
    PipeMatch,
    /// `|`
    Pipe,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Ident(String),
    Str(String),
    /// Anything else that is a valid LogQL word or symbol but not handled
    /// here (numbers, durations, operators of metric queries).
    Other(String),
}

impl Tok {
    /// How Loki's parser names a token in "unexpected X" messages.
    pub fn describe(&self) -> String {
        match self {
            // Loki's grammar names its keywords by themselves in errors.
            Tok::Ident(w) if LOKI_KEYWORDS.contains(&w.as_str()) => w.clone(),
            Tok::Ident(_) => "IDENTIFIER".into(),
            Tok::Str(_) => "STRING".into(),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::Comma => ",".into(),
            Tok::Eq => "=".into(),
            Tok::Neq => "!=".into(),
            Tok::Re => "=~".into(),
            Tok::Nre => "!~".into(),
            Tok::PipeExact => "|=".into(),
            Tok::PipeMatch => "|~".into(),
            Tok::Pipe => "|".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            // Loki lexes `[5m]` as one RANGE token.
            Tok::LBracket => "RANGE".into(),
            Tok::RBracket => "]".into(),
            Tok::Other(s) if s.starts_with("--") => "FUNCTION_FLAG".into(),
            Tok::Other(s) if s.starts_with(|c: char| c.is_ascii_digit()) || (s.starts_with('.') && s.len() > 1) => {
                // Loki's lexer reads a number, or a number with a unit.
                let plain = s.starts_with("0x") || s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
                if plain {
                    "NUMBER".into()
                } else if s.ends_with('B') {
                    "BYTES".into()
                } else {
                    "DURATION".into()
                }
            }
            Tok::Other(s) => s.clone(),
        }
    }
}

/// Words that are tokens of their own in Loki's grammar (its lexer's
/// `tokens`), which its syntax errors name as written.
const LOKI_KEYWORDS: &[&str] = &[
    "by", "without", "bool", "label_replace", "offset", "on", "ignoring", "group_left", "group_right", "or", "and", "unless",
    "json", "regexp", "logfmt", "unpack", "pattern", "label_format", "line_format", "ip", "decolorize", "drop", "keep", "unwrap",
];

/// A token and where it starts (1-based line and column).
#[derive(Clone, Debug)]
pub struct Spanned {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

/// Splits `src` into tokens; `#` starts a comment to the end of the line.
pub fn lex(src: &str) -> Result<Vec<Spanned>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let advance = |n: usize, i: &mut usize, col: &mut usize| {
            *i += n;
            *col += n;
        };
        match c {
            '\n' => {
                i += 1;
                line += 1;
                col = 1;
                continue;
            }
            c if c.is_whitespace() => {
                advance(1, &mut i, &mut col);
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '`' => {
                let (s, used, newlines) = read_string(&chars[i..], tl, tc)?;
                out.push(Spanned { tok: Tok::Str(s), line: tl, col: tc });
                i += used;
                if newlines > 0 {
                    line += newlines;
                    col = 1 + chars[..i].iter().rev().take_while(|&&c| c != '\n').count();
                } else {
                    col += used;
                }
                continue;
            }
            _ => {}
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let tok = match two.as_str() {
            "!=" => Some(Tok::Neq),
            "=~" => Some(Tok::Re),
            "!~" => Some(Tok::Nre),
            "|=" => Some(Tok::PipeExact),
            "|~" => Some(Tok::PipeMatch),
            "==" | ">=" | "<=" | "|>" | "!>" => Some(Tok::Other(two.clone())),
            _ => None,
        };
        if let Some(tok) = tok {
            out.push(Spanned { tok, line: tl, col: tc });
            advance(2, &mut i, &mut col);
            continue;
        }
        let tok = match c {
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            ',' => Tok::Comma,
            '=' => Tok::Eq,
            '|' => Tok::Pipe,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                col += i - start;
                out.push(Spanned { tok: Tok::Ident(chars[start..i].iter().collect()), line: tl, col: tc });
                continue;
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                // Whether the token so far is digits and dots only.
                let mut mantissa = true;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    // A decimal exponent takes a sign (`1e-3`), as Go's scanner reads it.
                    if mantissa
                        && matches!(chars[i], 'e' | 'E')
                        && matches!(chars.get(i + 1), Some('+' | '-'))
                        && chars.get(i + 2).is_some_and(|c| c.is_ascii_digit())
                    {
                        mantissa = false;
                        i += 2;
                    }
                    mantissa &= chars[i].is_ascii_digit() || chars[i] == '.';
                    i += 1;
                }
                col += i - start;
                out.push(Spanned { tok: Tok::Other(chars[start..i].iter().collect()), line: tl, col: tc });
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic()) => {
                // A parser flag such as `--strict` or `--keep-empty`.
                let start = i;
                i += 2;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '-' || chars[i] == '_') {
                    i += 1;
                }
                col += i - start;
                out.push(Spanned { tok: Tok::Other(chars[start..i].iter().collect()), line: tl, col: tc });
                continue;
            }
            '+' | '-' | '*' | '/' | '%' | '^' | '>' | '<' | '!' | '@' => Tok::Other(c.to_string()),
            other => {
                return Err(ParseError::at(tl, tc, format!("syntax error: unexpected character: '{other}'")));
            }
        };
        out.push(Spanned { tok, line: tl, col: tc });
        advance(1, &mut i, &mut col);
    }
    Ok(out)
}

/// Reads a Go string literal (`"..."` with escapes, or a raw `` `...` ``).
/// Returns the value, the chars consumed and the newlines crossed.
fn read_string(chars: &[char], line: usize, col: usize) -> Result<(String, usize, usize), ParseError> {
    let quote = chars[0];
    let mut out = String::new();
    let mut i = 1;
    let mut newlines = 0;
    let unterminated = || ParseError::at(line, col, "literal not terminated".to_string());
    if quote == '`' {
        while i < chars.len() {
            match chars[i] {
                '`' => return Ok((out, i + 1, newlines)),
                c => {
                    if c == '\n' {
                        newlines += 1;
                    }
                    out.push(c);
                }
            }
            i += 1;
        }
        return Err(unterminated());
    }
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((out, i + 1, newlines)),
            '\n' => return Err(unterminated()),
            '\\' => {
                let bad = |what: &str| ParseError::at(line, col, format!("syntax error: invalid escape sequence in string: {what}"));
                let e = *chars.get(i + 1).ok_or_else(unterminated)?;
                i += 2;
                match e {
                    'a' => out.push('\u{07}'),
                    'b' => out.push('\u{08}'),
                    'f' => out.push('\u{0c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{0b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.get(i..i + n).ok_or_else(unterminated)?.iter().collect();
                        let v = u32::from_str_radix(&hex, 16).map_err(|_| bad(&hex))?;
                        out.push(char::from_u32(v).ok_or_else(|| bad(&hex))?);
                        i += n;
                    }
                    '0'..='7' => {
                        let oct: String = chars.get(i - 1..i + 2).ok_or_else(unterminated)?.iter().collect();
                        let v = u32::from_str_radix(&oct, 8).map_err(|_| bad(&oct))?;
                        out.push(char::from_u32(v).ok_or_else(|| bad(&oct))?);
                        i += 2;
                    }
                    other => return Err(bad(&other.to_string())),
                }
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Err(unterminated())
}
