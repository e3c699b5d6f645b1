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

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`
/// (fraction without trailing zeros, omitted when zero).
pub fn format_go(ns: i64) -> String {
    let (y, mo, d, h, mi, s, frac) = parts(ns);
    let mut out = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
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
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
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
    fn parses_rfc3339_nano_with_offsets() {
        assert_eq!(parse_rfc3339("2019-10-11T18:23:58Z"), Some(1_570_818_238_000_000_000));
        assert_eq!(parse_rfc3339("2019-10-11T20:23:58.25+02:00"), Some(1_570_818_238_250_000_000));
        assert_eq!(parse_rfc3339("2019-10-11 18:23:58Z"), None);
        assert_eq!(parse_rfc3339("2019-13-11T18:23:58Z"), None);
        for ns in [0i64, -5_000_000_123, 1_700_000_000_123_456_789] {
            let s = format_rfc3339(ns);
            assert_eq!(parse_rfc3339(&s), Some(ns.div_euclid(NANOS) * NANOS));
        }
    }
}
