//! Timestamps as Loki prints and parses them, for any i64 nanoseconds
//! (including before 1970), without a calendar crate.

const NANOS: i64 = 1_000_000_000;

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day count since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parts(ns: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = ns.div_euclid(NANOS);
    let frac = ns.rem_euclid(NANOS);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, sod / 3600, sod % 3600 / 60, sod % 60, frac)
}

/// Go's `time.RFC3339` in UTC: `2006-01-02T15:04:05Z`.
pub fn format_rfc3339(ns: i64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// RFC3339 with Go's `RFC3339Nano` fraction, in UTC:
/// `2019-09-13T18:32:22.380001319Z`.
pub fn format_rfc3339_nano(ns: i64) -> String {
    with_fraction(ns, 'T', "Z")
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn format_go(ns: i64) -> String {
    with_fraction(ns, ' ', " +0000 UTC")
}

/// Date, `sep`, time with the fraction Go prints (trailing zeros dropped,
/// omitted when zero), then `zone`.
fn with_fraction(ns: i64, sep: char, zone: &str) -> String {
    let (y, mo, d, h, mi, s, frac) = parts(ns);
    let mut out = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        out.push('.');
        out.push_str(format!("{frac:09}").trim_end_matches('0'));
    }
    out.push_str(zone);
    out
}

/// Parses RFC3339 with optional fraction and a `Z` or `±hh:mm` offset, as
/// Go's `time.RFC3339Nano` layout does. Returns Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && rest.get(3..4) == Some(":") => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = (oh * 3600 + om * 60) * NANOS;
            if rest.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days.checked_mul(86_400)?.checked_add(h * 3600 + mi * 60 + sec)?;
    secs.checked_mul(NANOS)?.checked_add(frac)?.checked_sub(offset)
}

/// Go's zero `time.Time` (0001-01-01 00:00:00 UTC), which falls outside
/// i64 nanoseconds: what a failed `toDate` gives in a template.
pub const GO_ZERO_TIME: i64 = i64::MIN;

/// Seconds from Go's zero time to the Unix epoch.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

/// Unix seconds of a time (Go's `Time.Unix()`), the zero time included.
pub fn unix_seconds(ns: i64) -> i64 {
    if ns == GO_ZERO_TIME { GO_ZERO_UNIX_SECONDS } else { ns.div_euclid(NANOS) }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// One element of a Go time layout (`2006-01-02T15:04:05.000Z07:00`).
#[derive(Clone, Debug, PartialEq)]
enum Chunk {
    Lit(String),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    YearDay { zero: bool },
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm { upper: bool },
    Tz,
    /// A numeric zone; `z`: writes `Z` for UTC; `colons`/`seconds`/`hours_only` as in `-07:00:00`, `-07`.
    Zone { z: bool, colons: bool, seconds: bool, hours_only: bool },
    /// Fractional seconds: `digits` wide, trailing zeros trimmed for `.999`.
    Frac { sep: char, digits: usize, trim: bool },
}

/// Splits a layout as Go's `nextStdChunk` does; each element with its text.
fn layout_chunks(layout: &str) -> Vec<(Chunk, &str)> {
    let b = layout.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let at = |i: usize, p: &str| layout[i..].starts_with(p);
    while i < b.len() {
        let (chunk, len) = match b[i] {
            b'J' if at(i, "January") => (Chunk::LongMonth, 7),
            b'J' if at(i, "Jan") => (Chunk::Month, 3),
            b'M' if at(i, "Monday") => (Chunk::LongWeekDay, 6),
            b'M' if at(i, "Mon") => (Chunk::WeekDay, 3),
            b'M' if at(i, "MST") => (Chunk::Tz, 3),
            b'0' if at(i, "002") => (Chunk::YearDay { zero: true }, 3),
            b'0' if matches!(b.get(i + 1), Some(b'1'..=b'6')) => {
                let c = match b[i + 1] {
                    b'1' => Chunk::ZeroMonth,
                    b'2' => Chunk::ZeroDay,
                    b'3' => Chunk::ZeroHour12,
                    b'4' => Chunk::ZeroMinute,
                    b'5' => Chunk::ZeroSecond,
                    _ => Chunk::Year,
                };
                (c, 2)
            }
            b'1' if at(i, "15") => (Chunk::Hour, 2),
            b'1' => (Chunk::NumMonth, 1),
            b'2' if at(i, "2006") => (Chunk::LongYear, 4),
            b'2' => (Chunk::Day, 1),
            b'_' if at(i, "__2") => (Chunk::YearDay { zero: false }, 3),
            b'_' if at(i, "_2") && !at(i, "_2006") => (Chunk::UnderDay, 2),
            b'3' => (Chunk::Hour12, 1),
            b'4' => (Chunk::Minute, 1),
            b'5' => (Chunk::Second, 1),
            b'P' if at(i, "PM") => (Chunk::Pm { upper: true }, 2),
            b'p' if at(i, "pm") => (Chunk::Pm { upper: false }, 2),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let rest = &layout[i + 1..];
                let zone = |colons, seconds, hours_only| Chunk::Zone { z, colons, seconds, hours_only };
                if rest.starts_with("070000") {
                    (zone(false, true, false), 7)
                } else if rest.starts_with("07:00:00") {
                    (zone(true, true, false), 9)
                } else if rest.starts_with("0700") {
                    (zone(false, false, false), 5)
                } else if rest.starts_with("07:00") {
                    (zone(true, false, false), 6)
                } else if rest.starts_with("07") {
                    (zone(false, false, true), 3)
                } else {
                    (Chunk::Lit(String::new()), 0)
                }
            }
            c @ (b'.' | b',') if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let d = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == d {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    (Chunk::Lit(String::new()), 0)
                } else {
                    (Chunk::Frac { sep: c as char, digits: j - i - 1, trim: d == b'9' }, j - i)
                }
            }
            _ => (Chunk::Lit(String::new()), 0),
        };
        if len == 0 {
            let c = layout[i..].chars().next().unwrap_or(' ');
            lit.push(c);
            i += c.len_utf8();
            continue;
        }
        if !lit.is_empty() {
            out.push((Chunk::Lit(std::mem::take(&mut lit)), ""));
        }
        out.push((chunk, &layout[i..i + len]));
        i += len;
    }
    if !lit.is_empty() {
        out.push((Chunk::Lit(lit), ""));
    }
    out
}

/// A time (UTC) written with a Go layout, as `Time.Format` writes it.
pub fn format_layout(ns: i64, layout: &str) -> String {
    let (y, mo, d, h, mi, sec, frac, days) = if ns == GO_ZERO_TIME {
        (1, 1, 1, 0, 0, 0, 0, -719_162)
    } else {
        let (y, mo, d, h, mi, s, f) = parts(ns);
        (y, mo, d, h, mi, s, f, ns.div_euclid(NANOS).div_euclid(86_400))
    };
    let weekday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    for (c, _) in layout_chunks(layout) {
        match c {
            Chunk::Lit(s) => out.push_str(&s),
            Chunk::LongMonth => out.push_str(MONTHS[mo as usize - 1]),
            Chunk::Month => out.push_str(&MONTHS[mo as usize - 1][..3]),
            Chunk::NumMonth => out.push_str(&mo.to_string()),
            Chunk::ZeroMonth => out.push_str(&format!("{mo:02}")),
            Chunk::LongWeekDay => out.push_str(DAYS[weekday]),
            Chunk::WeekDay => out.push_str(&DAYS[weekday][..3]),
            Chunk::Day => out.push_str(&d.to_string()),
            Chunk::UnderDay => out.push_str(&format!("{d:>2}")),
            Chunk::ZeroDay => out.push_str(&format!("{d:02}")),
            Chunk::YearDay { zero: true } => out.push_str(&format!("{yday:03}")),
            Chunk::YearDay { zero: false } => out.push_str(&format!("{yday:>3}")),
            Chunk::Hour => out.push_str(&format!("{h:02}")),
            Chunk::Hour12 => out.push_str(&(if h % 12 == 0 { 12 } else { h % 12 }).to_string()),
            Chunk::ZeroHour12 => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
            Chunk::Minute => out.push_str(&mi.to_string()),
            Chunk::ZeroMinute => out.push_str(&format!("{mi:02}")),
            Chunk::Second => out.push_str(&sec.to_string()),
            Chunk::ZeroSecond => out.push_str(&format!("{sec:02}")),
            Chunk::LongYear => out.push_str(&format!("{y:04}")),
            Chunk::Year => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Chunk::Pm { upper } => out.push_str(match (h >= 12, upper) {
                (true, true) => "PM",
                (false, true) => "AM",
                (true, false) => "pm",
                (false, false) => "am",
            }),
            Chunk::Tz => out.push_str("UTC"),
            Chunk::Zone { z: true, .. } => out.push('Z'),
            Chunk::Zone { colons, seconds, hours_only, .. } => out.push_str(match (hours_only, colons, seconds) {
                (true, _, _) => "+00",
                (_, true, true) => "+00:00:00",
                (_, true, false) => "+00:00",
                (_, false, true) => "+000000",
                _ => "+0000",
            }),
            Chunk::Frac { sep, digits, trim } => {
                let f = format!("{frac:09}");
                let f = &f[..digits.min(9)];
                let f = if trim { f.trim_end_matches('0') } else { f };
                if !f.is_empty() {
                    out.push(sep);
                    out.push_str(f);
                }
            }
        }
    }
    out
}

/// Which of `names` (or of their first three letters) `rest` starts with,
/// ignoring case: its index and length.
fn name_at(rest: &str, names: &[&str], short: bool) -> Option<(usize, usize)> {
    names.iter().enumerate().find_map(|(i, n)| {
        let name = if short { &n[..3] } else { n };
        rest.get(..name.len()).filter(|p| p.eq_ignore_ascii_case(name)).map(|_| (i, name.len()))
    })
}

/// Parses `value` with a Go layout (as `time.Parse` in UTC; numeric zones
/// are applied, zone names read as UTC). Errors worded like Go's.
pub fn parse_layout(layout: &str, value: &str) -> Result<i64, LayoutError> {
    parse_layout_with(layout, value, |_| 0)
}

/// Parses `value` with a Go layout in the IANA time zone `zone`, as Go's
/// `time.ParseInLocation` (a numeric offset in the value wins). An unknown
/// zone is UTC, as Loki's `toDateInZone` does; `Local` is this machine's.
pub fn parse_layout_in_zone(layout: &str, value: &str, zone: &str) -> Result<i64, LayoutError> {
    use jiff::tz::TimeZone;
    let tz = match zone {
        "" | "UTC" => return parse_layout(layout, value),
        "Local" => TimeZone::system(),
        name => TimeZone::get(name).unwrap_or(TimeZone::UTC),
    };
    parse_layout_with(layout, value, |civil| {
        let local = jiff::Timestamp::from_second(civil).map(|t| TimeZone::UTC.to_datetime(t));
        local.and_then(|dt| tz.to_ambiguous_timestamp(dt).compatible()).map_or(0, |t| civil - t.as_second())
    })
}

/// Why a value does not parse with a Go layout, worded like Go's
/// `time.Parse`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("parsing time {value:?} as {layout:?}: cannot parse {rest:?} as {elem:?}")]
    CannotParse { value: String, layout: String, rest: String, elem: String },
    #[error("parsing time {value:?}: extra text: {rest:?}")]
    ExtraText { value: String, rest: String },
    #[error("parsing time {value:?}: out of range")]
    OutOfRange { value: String },
}

/// Parses with a layout; `zone_offset` gives the offset east of UTC, in
/// seconds, for a wall-clock time (as Unix seconds read in UTC) when the
/// value carries no numeric offset.
fn parse_layout_with(layout: &str, value: &str, zone_offset: impl Fn(i64) -> i64) -> Result<i64, LayoutError> {
    let fail = |rest: &str, elem: &str| LayoutError::CannotParse { value: value.into(), layout: layout.into(), rest: rest.into(), elem: elem.into() };
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut frac) = (1i64, 1u32, 1u32, 0i64, 0i64, 0i64, 0i64);
    let mut offset: Option<i64> = None;
    let mut pm: Option<bool> = None;
    let mut rest = value;
    let num = |rest: &mut &str, min: usize, max: usize| -> Option<i64> {
        let n = rest.bytes().take(max).take_while(u8::is_ascii_digit).count();
        if n < min {
            return None;
        }
        let v = rest[..n].parse().ok()?;
        *rest = &rest[n..];
        Some(v)
    };
    for (c, text) in layout_chunks(layout) {
        let before = rest;
        let ok = match &c {
            Chunk::Lit(l) => match rest.strip_prefix(l.as_str()) {
                Some(r) => {
                    rest = r;
                    true
                }
                None => false,
            },
            Chunk::LongMonth | Chunk::Month => match name_at(rest, &MONTHS, c == Chunk::Month) {
                Some((i, len)) => {
                    rest = &rest[len..];
                    mo = i as u32 + 1;
                    true
                }
                None => false,
            },
            Chunk::LongWeekDay | Chunk::WeekDay => match name_at(rest, &DAYS, c == Chunk::WeekDay) {
                Some((_, len)) => {
                    rest = &rest[len..];
                    true
                }
                None => false,
            },
            Chunk::NumMonth | Chunk::ZeroMonth => num(&mut rest, if c == Chunk::ZeroMonth { 2 } else { 1 }, 2)
                .filter(|v| (1..=12).contains(v))
                .map(|v| mo = v as u32)
                .is_some(),
            Chunk::Day | Chunk::UnderDay | Chunk::ZeroDay => {
                if c == Chunk::UnderDay {
                    rest = rest.strip_prefix(' ').unwrap_or(rest);
                }
                num(&mut rest, if c == Chunk::ZeroDay { 2 } else { 1 }, 2).filter(|v| (1..=31).contains(v)).map(|v| d = v as u32).is_some()
            }
            Chunk::YearDay { .. } => {
                rest = rest.trim_start_matches(' ');
                num(&mut rest, 1, 3).is_some()
            }
            Chunk::Hour => num(&mut rest, 1, 2).filter(|v| *v < 24).map(|v| h = v).is_some(),
            Chunk::Hour12 | Chunk::ZeroHour12 => num(&mut rest, 1, 2).filter(|v| (1..=12).contains(v)).map(|v| h = v % 12).is_some(),
            Chunk::Minute | Chunk::ZeroMinute => num(&mut rest, 1, 2).filter(|v| *v < 60).map(|v| mi = v).is_some(),
            Chunk::Second | Chunk::ZeroSecond => {
                let ok = num(&mut rest, 1, 2).filter(|v| *v < 60).map(|v| sec = v).is_some();
                // Go reads a fraction after seconds even when the layout has none.
                if ok && rest.starts_with(['.', ',']) && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                    let n = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
                    let digits = &rest[1..1 + n];
                    frac = format!("{:0<9}", &digits[..n.min(9)]).parse().unwrap_or(0);
                    rest = &rest[1 + n..];
                }
                ok
            }
            Chunk::LongYear => num(&mut rest, 4, 4).map(|v| y = v).is_some(),
            Chunk::Year => num(&mut rest, 2, 2).map(|v| y = if v >= 69 { 1900 + v } else { 2000 + v }).is_some(),
            Chunk::Pm { .. } => match rest.get(..2).map(|p| p.to_ascii_uppercase()) {
                Some(p) if p == "PM" || p == "AM" => {
                    pm = Some(p == "PM");
                    rest = &rest[2..];
                    true
                }
                _ => false,
            },
            Chunk::Tz => {
                let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                if n >= 3 {
                    // A zone name is read as UTC (Go: UTC, or a zero-offset
                    // zone of that name when the location does not know it).
                    offset = Some(0);
                    rest = &rest[n..];
                    true
                } else {
                    false
                }
            }
            Chunk::Zone { z, colons, seconds, hours_only } => {
                if *z && rest.starts_with('Z') {
                    offset = Some(0);
                    rest = &rest[1..];
                    true
                } else {
                    let sign = match rest.as_bytes().first() {
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => 0,
                    };
                    let mut r = rest.get(1..).unwrap_or("");
                    let mut part = |first: bool| -> Option<i64> {
                        if !first && *colons {
                            r = r.strip_prefix(':')?;
                        }
                        let v = r.get(..2)?.parse::<i64>().ok()?;
                        r = &r[2..];
                        Some(v)
                    };
                    let hh = part(true);
                    let mm = if *hours_only { Some(0) } else { part(false) };
                    let ss = if *seconds { part(false) } else { Some(0) };
                    match (sign, hh, mm, ss) {
                        (s, Some(hh), Some(mm), Some(ss)) if s != 0 => {
                            offset = Some(s * (hh * 3600 + mm * 60 + ss));
                            rest = r;
                            true
                        }
                        _ => false,
                    }
                }
            }
            Chunk::Frac { digits, .. } => {
                let body = rest.get(1..).unwrap_or("");
                let n = body.bytes().take_while(u8::is_ascii_digit).count();
                if rest.starts_with(['.', ',']) && (n == *digits || (n > 0 && matches!(c, Chunk::Frac { trim: true, .. }))) {
                    frac = format!("{:0<9}", &body[..n.min(9)]).parse().unwrap_or(0);
                    rest = &body[n..];
                    true
                } else {
                    matches!(c, Chunk::Frac { trim: true, .. })
                }
            }
        };
        if !ok {
            let shown = match &c {
                Chunk::Lit(l) => l.as_str(),
                _ => text,
            };
            return Err(fail(before, shown));
        }
    }
    if !rest.is_empty() {
        return Err(LayoutError::ExtraText { value: value.into(), rest: rest.into() });
    }
    if pm == Some(true) {
        h += 12;
    }
    let days = days_from_civil(y, mo, d);
    let wall = days * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = wall - offset.unwrap_or_else(|| zone_offset(wall));
    secs.checked_mul(NANOS).and_then(|s| s.checked_add(frac)).ok_or_else(|| LayoutError::OutOfRange { value: value.into() })
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_rfc3339(1_570_818_238_000_000_000), "2019-10-11T18:23:58Z");
        assert_eq!(format_go(1_570_818_238_000_000_001), "2019-10-11 18:23:58.000000001 +0000 UTC");
        assert_eq!(format_go(1_570_818_238_500_000_000), "2019-10-11 18:23:58.5 +0000 UTC");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MIN).len(), 20, "no panic at the extremes");
    }

    #[test]
    fn go_layouts_format_and_parse() {
        let t = 1_570_818_238_123_400_000; // 2019-10-11 18:23:58.1234 UTC, a Friday
        assert_eq!(format_layout(t, "2006-01-02T15:04:05.000Z07:00"), "2019-10-11T18:23:58.123Z");
        assert_eq!(format_layout(t, "Mon Jan _2 3:04:05.999999 PM MST 2006"), "Fri Oct 11 6:23:58.1234 PM UTC 2019");
        assert_eq!(format_layout(t, "02/01/06 15h04 -0700 002"), "11/10/19 18h23 +0000 284");
        assert_eq!(format_layout(GO_ZERO_TIME, "2006-01-02 15:04:05 Monday"), "0001-01-01 00:00:00 Monday");
        assert_eq!(parse_layout("2006-01-02", "2021-11-02"), Ok(1_635_811_200_000_000_000));
        assert_eq!(parse_layout("2006-01-02T15:04:05.999999999Z07:00", "2023-03-10T01:32:40.340485723Z"), Ok(1_678_411_960_340_485_723));
        assert_eq!(parse_layout("02 Jan 06 15:04 -0700", "11 Oct 19 20:23 +0200"), Ok(1_570_818_180_000_000_000));
        assert_eq!(
            parse_layout("2006-01-02", "2021-1-02").unwrap_err().to_string(),
            r#"parsing time "2021-1-02" as "2006-01-02": cannot parse "1-02" as "01""#
        );
        assert_eq!(unix_seconds(GO_ZERO_TIME), -62_135_596_800);
    }

    #[test]
    fn parses_rfc3339_nano_with_offsets() {
        assert_eq!(parse_rfc3339("2019-10-11T18:23:58Z"), Some(1_570_818_238_000_000_000));
        assert_eq!(parse_rfc3339("2019-10-11T20:23:58.25+02:00"), Some(1_570_818_238_250_000_000));
        assert_eq!(parse_rfc3339("2019-10-11 18:23:58Z"), None);
        assert_eq!(parse_rfc3339("2019-13-11T18:23:58Z"), None);
        assert_eq!(parse_rfc3339("2019-10-11T18:23:58+0é00"), None, "a multi-byte character in the offset");
        for ns in [0i64, -5_000_000_123, 1_700_000_000_123_456_789] {
            let s = format_rfc3339(ns);
            assert_eq!(parse_rfc3339(&s), Some(ns.div_euclid(NANOS) * NANOS));
            assert_eq!(parse_rfc3339(&format_rfc3339_nano(ns)), Some(ns), "RFC3339Nano keeps every digit");
        }
        assert_eq!(format_rfc3339_nano(1_568_399_542_380_001_319), "2019-09-13T18:32:22.380001319Z");
        assert_eq!(format_rfc3339_nano(1_568_399_542_500_000_000), "2019-09-13T18:32:22.5Z");
        assert_eq!(format_go(1_568_399_542_000_000_000), "2019-09-13 18:32:22 +0000 UTC");
    }
}
