//! The log pipeline: line filters, parsers, label filters and formatters,
//! `| unwrap` — everything after a selector.

use super::*;

impl Parser {
    /// One alternative of a line filter: as written, and compiled (so
    /// errors carry the position).
    fn line_test(&mut self, op: LineFilterOp) -> PResult<(LineTestSpec, LineTest)> {
        let at = self.here();
        let spec = if self.peek_ident() == Some("ip") && self.peek_at(1) == Some(&Tok::LParen) {
            if !matches!(op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                return Err(ParseError::at(at.0, at.1, "ip: invalid operation: ip() only works with |= and !="));
            }
            self.pos += 2;
            let p = self.string()?;
            self.expect(Tok::RParen, ")")?;
            LineTestSpec::Ip(p)
        } else {
            if !matches!(self.peek(), Some(Tok::Str(_))) {
                return Err(self.unexpected("STRING or ip"));
            }
            let s = self.string()?;
            match op {
                LineFilterOp::Contains | LineFilterOp::NotContains => LineTestSpec::Text(s),
                LineFilterOp::Match | LineFilterOp::NotMatch => LineTestSpec::Regex(s),
                LineFilterOp::Pattern | LineFilterOp::NotPattern => LineTestSpec::Pattern(s),
            }
        };
        let test = spec.compile().map_err(|e| ParseError::at(at.0, at.1, e))?;
        Ok((spec, test))
    }

    fn line_filter_op(&self) -> Option<LineFilterOp> {
        match self.peek() {
            Some(Tok::PipeExact) => Some(LineFilterOp::Contains),
            Some(Tok::Neq) => Some(LineFilterOp::NotContains),
            Some(Tok::PipeMatch) => Some(LineFilterOp::Match),
            Some(Tok::Nre) => Some(LineFilterOp::NotMatch),
            Some(Tok::Other(s)) if s == "|>" => Some(LineFilterOp::Pattern),
            Some(Tok::Other(s)) if s == "!>" => Some(LineFilterOp::NotPattern),
            _ => None,
        }
    }

    /// Stages after a selector, until something that is not a stage.
    /// Returns the stages and, if met, an `unwrap`.
    pub(super) fn pipeline(&mut self, allow_unwrap: bool) -> PResult<(Vec<Stage>, Option<Unwrap>)> {
        let mut stages = Vec::new();
        loop {
            if let Some(op) = self.line_filter_op() {
                self.pos += 1;
                let mut alternatives = vec![self.line_test(op)?];
                while self.peek_ident() == Some("or")
                    && (matches!(self.peek_at(1), Some(Tok::Str(_)))
                        || (matches!(self.peek_at(1), Some(Tok::Ident(s)) if s == "ip")))
                {
                    self.pos += 1;
                    alternatives.push(self.line_test(op)?);
                }
                let (alternatives, tests) = alternatives.into_iter().unzip();
                stages.push(Stage::LineFilter(LineFilter::new(LineFilterSpec { op, alternatives }, tests)));
                continue;
            }
            if self.peek() != Some(&Tok::Pipe) {
                return Ok((stages, None));
            }
            self.pos += 1;
            let at = self.here();
            let werr = |e: CompileError| ParseError::at(at.0, at.1, e);
            match self.peek_ident() {
                Some("json") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let exprs = self.extraction_list()?;
                    if exprs.is_empty() {
                        stages.push(Stage::Json(None));
                    } else {
                        stages.push(Stage::Json(Some(JsonExpressions::new(&exprs).map_err(werr)?)));
                    }
                }
                Some("logfmt") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let (mut strict, mut keep_empty) = (false, false);
                    while let Some(flag) = self.peek_other() {
                        match flag {
                            "--strict" => strict = true,
                            "--keep-empty" => keep_empty = true,
                            _ => break,
                        }
                        self.pos += 1;
                    }
                    let list = self.extraction_list()?;
                    let exprs = if list.is_empty() { None } else { Some(LogfmtExpressions::new(&list).map_err(werr)?) };
                    stages.push(Stage::Logfmt { strict, keep_empty, exprs });
                }
                Some("regexp") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let s = self.string()?;
                    stages.push(Stage::Regexp(RegexpParser::new(&s).map_err(werr)?));
                }
                Some("pattern") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let s = self.string()?;
                    stages.push(Stage::Pattern(PatternParser::new(&s).map_err(werr)?));
                }
                Some("unpack") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    stages.push(Stage::Unpack);
                }
                Some("decolorize") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    stages.push(Stage::Decolorize);
                }
                Some("line_format") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let s = self.string()?;
                    stages.push(Stage::LineFormat(Template::parse(&s).map_err(|e| ParseError::at(at.0, at.1, e))?));
                }
                Some("label_format") if !self.is_label_filter_start() => {
                    self.pos += 1;
                    let mut fmts = Vec::new();
                    loop {
                        let dst = self.ident()?;
                        self.expect(Tok::Eq, "=")?;
                        match self.peek().cloned() {
                            Some(Tok::Str(s)) => {
                                self.pos += 1;
                                fmts.push(LabelFmt::Template(dst, Template::parse(&s).map_err(|e| ParseError::at(at.0, at.1, e))?));
                            }
                            Some(Tok::Ident(src)) => {
                                self.pos += 1;
                                fmts.push(LabelFmt::Rename(dst, src));
                            }
                            _ => return Err(self.unexpected("STRING or IDENTIFIER")),
                        }
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    stages.push(Stage::LabelFormat(fmts));
                }
                Some(kw @ ("drop" | "keep")) if !self.is_label_filter_start() => {
                    let drop = kw == "drop";
                    self.pos += 1;
                    let mut sel = Vec::new();
                    loop {
                        let name = self.ident()?;
                        let op = match self.peek() {
                            Some(Tok::Eq) => Some(MatchOp::Eq),
                            Some(Tok::Neq) => Some(MatchOp::Neq),
                            Some(Tok::Re) => Some(MatchOp::Re),
                            Some(Tok::Nre) => Some(MatchOp::Nre),
                            _ => None,
                        };
                        match op {
                            Some(op) => {
                                self.pos += 1;
                                let v = self.string()?;
                                sel.push(LabelSelect::Matching(
                                    Matcher::new(name, op, v).map_err(ParseError::whole)?,
                                ));
                            }
                            None => sel.push(LabelSelect::Name(name)),
                        }
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                    stages.push(if drop { Stage::Drop(sel) } else { Stage::Keep(sel) });
                }
                Some("unwrap") if !self.is_label_filter_start() => {
                    if !allow_unwrap {
                        return Err(ParseError::at(at.0, at.1, "syntax error: unexpected unwrap: only a metric query's range may unwrap"));
                    }
                    self.pos += 1;
                    let (label, conv) = match (self.peek_ident(), self.peek_at(1)) {
                        (Some(f @ ("bytes" | "duration" | "duration_seconds")), Some(Tok::LParen)) => {
                            let conv = match f {
                                "bytes" => UnwrapConv::Bytes,
                                "duration" => UnwrapConv::Duration,
                                _ => UnwrapConv::DurationSeconds,
                            };
                            self.pos += 2;
                            let l = self.ident()?;
                            self.expect(Tok::RParen, ")")?;
                            (l, conv)
                        }
                        _ => (self.ident()?, UnwrapConv::Float),
                    };
                    let mut post_filters = Vec::new();
                    while self.peek() == Some(&Tok::Pipe) {
                        self.pos += 1;
                        if !self.is_label_filter_start() {
                            return Err(self.unexpected("a label filter after unwrap"));
                        }
                        post_filters.push(self.label_filter_or()?);
                    }
                    return Ok((stages, Some(Unwrap { label, conv, post_filters })));
                }
                _ => {
                    if !self.is_label_filter_start() {
                        return Err(self.unexpected("IDENTIFIER"));
                    }
                    stages.push(Stage::LabelFilter(self.label_filter_or()?));
                }
            }
        }
    }

    /// Whether the tokens ahead start a label filter: `name op` or `(`.
    fn is_label_filter_start(&self) -> bool {
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::LParen), _) => true,
            (Some(Tok::Ident(_)), Some(Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre)) => true,
            (Some(Tok::Ident(_)), Some(Tok::Other(o))) => matches!(o.as_str(), "==" | ">" | ">=" | "<" | "<="),
            _ => false,
        }
    }

    /// `a, b="path"` after json/logfmt.
    fn extraction_list(&mut self) -> PResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        while let Some(Tok::Ident(name)) = self.peek().cloned() {
            self.pos += 1;
            if self.eat(&Tok::Eq) {
                let path = self.string()?;
                out.push((name, path));
            } else {
                out.push((name.clone(), name));
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    fn label_filter_or(&mut self) -> PResult<LabelFilter> {
        self.nested(|p| {
            let mut left = p.label_filter_and()?;
            while p.peek_ident() == Some("or") && p.next_is_label_filter(1) {
                p.pos += 1;
                let right = p.label_filter_and()?;
                left = LabelFilter::Or(Box::new(left), Box::new(right));
                if left.height() > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            Ok(left)
        })
    }

    fn next_is_label_filter(&self, skip: usize) -> bool {
        match (self.peek_at(skip), self.peek_at(skip + 1)) {
            (Some(Tok::LParen), _) => true,
            (Some(Tok::Ident(_)), Some(Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre)) => true,
            (Some(Tok::Ident(_)), Some(Tok::Other(o))) => matches!(o.as_str(), "==" | ">" | ">=" | "<" | "<="),
            _ => false,
        }
    }

    fn label_filter_and(&mut self) -> PResult<LabelFilter> {
        let mut left = self.label_filter_atom()?;
        loop {
            let joined = match self.peek() {
                Some(Tok::Ident(s)) if s == "and" && self.next_is_label_filter(1) => Some(1),
                Some(Tok::Comma) if self.next_is_label_filter(1) => Some(1),
                // `a="x" b="y"`: a space also means and.
                Some(Tok::Ident(s)) if s != "or" && self.next_is_label_filter(0) => Some(0),
                _ => None,
            };
            let Some(skip) = joined else { return Ok(left) };
            self.pos += skip;
            let right = self.label_filter_atom()?;
            left = LabelFilter::And(Box::new(left), Box::new(right));
            if left.height() > MAX_DEPTH {
                return Err(too_deep());
            }
        }
    }

    fn label_filter_atom(&mut self) -> PResult<LabelFilter> {
        if self.eat(&Tok::LParen) {
            let f = self.label_filter_or()?;
            self.expect(Tok::RParen, ")")?;
            return Ok(f);
        }
        let name = self.ident()?;
        let at = self.here();
        let op_tok = self.peek().cloned();
        self.pos += 1;
        let str_op = match &op_tok {
            Some(Tok::Eq) => Some(MatchOp::Eq),
            Some(Tok::Neq) => Some(MatchOp::Neq),
            Some(Tok::Re) => Some(MatchOp::Re),
            Some(Tok::Nre) => Some(MatchOp::Nre),
            _ => None,
        };
        let cmp = match &op_tok {
            Some(Tok::Eq) => Some(CmpOp::Eq),
            Some(Tok::Neq) => Some(CmpOp::Ne),
            Some(Tok::Other(o)) => match o.as_str() {
                "==" => Some(CmpOp::Eq),
                ">" => Some(CmpOp::Gt),
                ">=" => Some(CmpOp::Ge),
                "<" => Some(CmpOp::Lt),
                "<=" => Some(CmpOp::Le),
                _ => None,
            },
            _ => None,
        };
        match self.peek().cloned() {
            Some(Tok::Str(v)) => {
                let op = match str_op {
                    Some(op) => op,
                    None => {
                        return Err(ParseError::at(
                            at.0,
                            at.1,
                            "syntax error: unexpected STRING, a string label filter takes =, !=, =~ or !~",
                        ))
                    }
                };
                self.pos += 1;
                let m = Matcher::new(name, op, v).map_err(ParseError::whole)?;
                Ok(LabelFilter::Str(m))
            }
            Some(Tok::Ident(f)) if f == "ip" => {
                let negate = match (&op_tok, str_op) {
                    (Some(Tok::Eq), _) => false,
                    (Some(Tok::Neq), _) => true,
                    _ => return Err(self.err_here("syntax error: unexpected ip".into())),
                };
                self.pos += 1;
                self.expect(Tok::LParen, "(")?;
                let p = self.string()?;
                self.expect(Tok::RParen, ")")?;
                let matcher = IpMatcher::new(&p).map_err(|e| ParseError::at(at.0, at.1, e))?;
                Ok(LabelFilter::Ip { name, negate, pattern: p, matcher })
            }
            Some(Tok::Other(w)) => {
                let op = cmp.ok_or_else(|| self.unexpected("a comparison"))?;
                self.pos += 1;
                // A sign: `-1`, `+1` and `-5s` (no sign on sizes), as Loki reads them.
                let sign = match w.as_str() {
                    "-" => -1.0,
                    "+" => 1.0,
                    _ => 0.0,
                };
                let w = if sign != 0.0 {
                    match self.peek_other().map(str::to_string) {
                        Some(next) if next.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                            self.pos += 1;
                            next
                        }
                        _ => return Err(self.unexpected("NUMBER")),
                    }
                } else {
                    w
                };
                let (value, kind) = parse_filter_literal(&w).map_err(|e| {
                    // Loki's number literals fail without a position.
                    if e.starts_with("unable to parse literal") { ParseError::whole(e) } else { ParseError::at(at.0, at.1, e) }
                })?;
                let value = match (sign, kind) {
                    (0.0, _) => value,
                    (_, NumKind::Number) | (-1.0, NumKind::Duration) => sign * value,
                    _ => return Err(ParseError::at(at.0, at.1, format!("syntax error: unexpected {}", Tok::Other(w).describe()))),
                };
                Ok(LabelFilter::Num { name, op, value, kind })
            }
            _ => Err(self.unexpected("STRING or NUMBER")),
        }
    }
}

/// The literal of a numeric label filter: a number, a duration (`1.5s`,
/// `90m`, `1d`) compared in seconds, or a size (`1MB`, `3KiB`; the `B` is
/// upper-case) in bytes.
fn parse_filter_literal(w: &str) -> Result<(f64, NumKind), String> {
    if let Some(v) = parse_number(w) {
        return Ok((v, NumKind::Number));
    }
    if let Some(r) = literal(w) {
        return r.map(|v| (v, NumKind::Number));
    }
    let unit_at = w.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(w.len());
    let unit = &w[unit_at..];
    const BYTE_UNITS: [&str; 14] =
        ["B", "kB", "KB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB", "PB", "PiB", "EB", "EiB"];
    if BYTE_UNITS.contains(&unit) {
        return crate::units::parse_bytes(w).map(|b| (b, NumKind::Bytes)).map_err(|e| e.to_string());
    }
    match parse_duration(w) {
        Ok(d) if unit_at > 0 => Ok((d.as_secs_f64(), NumKind::Duration)),
        _ => Err(format!("syntax error: unexpected {w}")),
    }
}
