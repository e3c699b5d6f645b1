//! Every number, duration and size Balsa reads or prints the way Loki does,
//! in one place:
//!
//! | reads | what Loki uses it for | here |
//! |---|---|---|
//! | Go's `time.ParseDuration` | `duration` label filters, `toDuration` | [`parse_go_duration`] |
//! | Prometheus' `model.ParseDuration` | `label_replace`'s and `offset`'s durations | [`parse_prometheus_duration`] |
//! | Prometheus' form, else Go's (else bare seconds) | LogQL ranges, configuration, query parameters | [`parse_duration`] |
//! | go-humanize's `ParseBytes` (1000 or 1024) | `bytes` label filters | [`parse_bytes`] |
//! | dskit's `flagext.ByteSize` (1024) | sizes in configuration | [`parse_base2_bytes`] |
//!
//! | prints | as | here |
//! |---|---|---|
//! | Prometheus' `model.Duration` | `30d1h`, `1w`, `1m30s500ms` | [`prometheus_duration`] |
//! | Go's `time.Duration` | `1h0m0s`, `1.5s` | [`go_duration`] |
//! | go-humanize's `Bytes` | `1.0 kB`, `20 MB` | [`humanize_bytes`] |
//! | Go's `%v` of a float64 | `1e+06`, `0.5` | [`go_float`] |

use std::time::Duration;

/// Why a duration or size does not parse; each worded as the program whose
/// syntax it follows words it (Go, Prometheus, go-humanize, dskit).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("time: invalid duration \"{0}\"")]
    GoInvalid(String),
    #[error("time: missing unit in duration \"{0}\"")]
    GoMissingUnit(String),
    #[error("time: unknown unit \"{unit}\" in duration \"{input}\"")]
    GoUnknownUnit { unit: String, input: String },
    #[error("empty duration string")]
    PrometheusEmpty,
    #[error("not a valid duration string: {0:?}")]
    PrometheusInvalid(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    PrometheusUnknownUnit { unit: String, input: String },
    #[error("duration out of range")]
    DurationOutOfRange,
    #[error("empty duration")]
    EmptyDuration,
    #[error("'{0}' is not a duration (e.g. 30m, 168h, 7d, 1.5s)")]
    NotADuration(String),
    #[error("'{input}': {reason}")]
    BadSeconds { input: String, reason: String },
    #[error("'{0}' is not a size (e.g. 256KB, 100MB)")]
    NotASize(String),
    #[error("'{input}' has an unknown unit '{unit}' (use B, KB, MB, GB, TB)")]
    UnknownSizeUnit { input: String, unit: String },
    #[error("'{0}' is too large")]
    SizeTooLarge(String),
    #[error("strconv.ParseFloat: parsing {0:?}: invalid syntax")]
    GoFloatSyntax(String),
    #[error("unhandled size name: {0}")]
    UnhandledSizeName(String),
    #[error("too large: {0}")]
    BytesTooLarge(String),
}

/// Go's `time.ParseDuration`, in seconds: `1.5s`, `90m`, `2h45m`, `-1s`,
/// `300ms`, `1us`; errors worded like Go's.
pub fn parse_go_duration(s: &str) -> Result<f64, UnitError> {
    let orig = s;
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(UnitError::GoInvalid(orig.into()));
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n == 0 {
            return Err(UnitError::GoInvalid(orig.into()));
        }
        let value: f64 = rest[..n].parse().map_err(|_| UnitError::GoInvalid(orig.into()))?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let mult = match unit {
            "" => return Err(UnitError::GoMissingUnit(orig.into())),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(UnitError::GoUnknownUnit { unit: other.into(), input: orig.into() }),
        };
        total += value * mult;
    }
    Ok(if neg { -total } else { total })
}

/// Prometheus' `model.ParseDuration` (what Loki reads ranges with), in
/// nanoseconds: whole numbers with units from `y` down to `ms`, largest
/// first (`1h30m`, `90d`); `1.5m` and a bare `30` are not durations.
pub fn parse_prometheus_duration(s: &str) -> Result<i64, UnitError> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    match s {
        "0" => return Ok(0),
        "" => return Err(UnitError::PrometheusEmpty),
        _ => {}
    }
    let invalid = || UnitError::PrometheusInvalid(s.into());
    let mut rest = s;
    let mut ms: u64 = 0;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let v: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(UnitError::PrometheusUnknownUnit { unit: unit.into(), input: s.into() });
        };
        if last_unit.is_some_and(|l| pos <= l) {
            return Err(invalid());
        }
        last_unit = Some(pos);
        let add = v.checked_mul(UNITS[pos].1).ok_or(UnitError::DurationOutOfRange)?;
        ms = ms.checked_add(add).filter(|m| *m <= i64::MAX as u64 / 1_000_000).ok_or(UnitError::DurationOutOfRange)?;
    }
    Ok(ms as i64 * 1_000_000)
}

/// A duration as Loki reads LogQL ranges (`[5m]`, `[1h30m]`, `[1.5s]`):
/// Prometheus' form first (`7d`, `2w`), else Go's (`1.5h`, `300us`); a bare
/// number is seconds, as configuration files, flags and query parameters
/// allow. Never negative.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    let secs = if let Ok(secs) = t.parse::<f64>() {
        secs
    } else if let Ok(ns) = parse_prometheus_duration(t) {
        return Ok(Duration::from_nanos(ns as u64));
    } else {
        parse_go_duration(t).map_err(|_| UnitError::NotADuration(s.into()))?
    };
    Duration::try_from_secs_f64(secs).map_err(|e| UnitError::BadSeconds { input: s.into(), reason: e.to_string() })
}

/// A duration as Prometheus (and Loki's configuration) prints one: the
/// largest units first, `y` and `w` only when they divide it exactly, down
/// to milliseconds (`721h` is `30d1h`, zero is `0s`).
pub fn prometheus_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    const DAY: u128 = 24 * 3_600_000;
    let mut out = String::new();
    for (unit, size, exact) in
        [("y", 365 * DAY, true), ("w", 7 * DAY, true), ("d", DAY, false), ("h", 3_600_000, false), ("m", 60_000, false), ("s", 1000, false), ("ms", 1, false)]
    {
        if exact && !ms.is_multiple_of(size) {
            continue;
        }
        let n = ms / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms -= n * size;
        }
    }
    out
}

/// A size as dskit's `flagext.ByteSize` reads configuration: a whole number
/// with an optional base-2 unit, case-insensitive (`256KB` = 262144,
/// `100MB`, `1GiB`).
pub fn parse_base2_bytes(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| UnitError::NotASize(s.into()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(UnitError::UnknownSizeUnit { input: s.into(), unit: unit.into() }),
    };
    n.checked_mul(mult).ok_or_else(|| UnitError::SizeTooLarge(s.into()))
}

/// go-humanize's `ParseBytes`: `42`, `42B`, `1kB`/`1KB` (1000), `1KiB`
/// (1024), `3mb`, `1.5 GB`; case-insensitive.
pub fn parse_bytes(s: &str) -> Result<f64, UnitError> {
    let t = s.trim();
    let n = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(t.len());
    let digits = t[..n].replace(',', "");
    let num: f64 = digits.parse().map_err(|_| UnitError::GoFloatSyntax(digits.clone()))?;
    let unit = t[n..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        other => return Err(UnitError::UnhandledSizeName(other.into())),
    };
    // Go's humanize.ParseBytes answers whole bytes (a uint64).
    let bytes = num * mult;
    if bytes >= u64::MAX as f64 {
        return Err(UnitError::BytesTooLarge(s.into()));
    }
    Ok(bytes.trunc())
}

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and
/// from 1e6 on (`1e+06`, `1.5e-07`, `123456`).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return v.to_string();
    }
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1.5s`, `300ms`, `2µs`, `0s`.
pub fn go_duration(ns: i64) -> String {
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u == 0 {
        return "0s".into();
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", decimal(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", decimal(u, 1_000_000))
    } else {
        let secs = u / 1_000_000_000;
        let frac = u % 1_000_000_000;
        let s = decimal(secs % 60 * 1_000_000_000 + frac, 1_000_000_000);
        let (m, h) = (secs / 60 % 60, secs / 3600);
        match (h, secs / 60) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m{s}s"),
            _ => format!("{h}h{m}m{s}s"),
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `v / unit` with the fraction's trailing zeros (and a bare point) removed.
fn decimal(v: u64, unit: u64) -> String {
    let (whole, frac) = (v / unit, v % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// go-humanize's `Bytes`: powers of 1000, one decimal below 10 (`1.0 kB`, `20 MB`, `9 B`).
pub fn humanize_bytes(b: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if b < 10 {
        return format!("{b} B");
    }
    let e = ((b as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(SIZES.len() - 1);
    let val = (b as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SIZES[e])
    } else {
        format!("{val:.0} {}", SIZES[e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1.5);
        assert_eq!(parse_go_duration("2h45m").unwrap(), 9900.0);
        assert_eq!(parse_go_duration("300ms").unwrap(), 0.3);
        assert_eq!(parse_go_duration("1x").unwrap_err().to_string(), "time: unknown unit \"x\" in duration \"1x\"");
        assert_eq!(parse_go_duration("5").unwrap_err().to_string(), "time: missing unit in duration \"5\"");
    }

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prometheus_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_prometheus_duration("90d").unwrap(), 90 * 86_400_000_000_000);
        assert_eq!(parse_prometheus_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_prometheus_duration("5minutes").unwrap_err().to_string(), r#"unknown unit "minutes" in duration "5minutes""#);
        assert_eq!(parse_prometheus_duration("1.5m").unwrap_err().to_string(), r#"unknown unit "." in duration "1.5m""#);
        assert_eq!(parse_prometheus_duration("30").unwrap_err().to_string(), r#"not a valid duration string: "30""#);
        assert_eq!(parse_prometheus_duration("1m1h").unwrap_err().to_string(), r#"not a valid duration string: "1m1h""#);
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_bytes("1MB").unwrap(), 1e6);
        assert_eq!(parse_bytes("3mb").unwrap(), 3e6);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024.0);
        assert_eq!(parse_bytes("42").unwrap(), 42.0);
        assert!(parse_bytes("oops").is_err());
    }

    #[test]
    fn go_numbers_and_durations() {
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(2_000), "2µs");
        assert_eq!(humanize_bytes(1024), "1.0 kB");
        assert_eq!(humanize_bytes(20_000_000), "20 MB");
        assert_eq!(humanize_bytes(9), "9 B");
    }

    #[test]
    fn durations_as_ranges_and_configuration_read_them() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300us").unwrap(), Duration::from_micros(300));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").unwrap_err().to_string().contains("is not a duration"));
        assert!(parse_duration("-1s").is_err(), "negative");
        assert!(parse_duration("10000000000000000000s10000000000000000000s").is_err(), "a sum past Duration::MAX");
    }

    #[test]
    fn prometheus_prints_weeks_and_years_only_when_exact() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(prometheus_duration(h(721)), "30d1h");
        assert_eq!(prometheus_duration(h(24 * 7)), "1w");
        assert_eq!(prometheus_duration(h(24 * 365)), "1y");
        assert_eq!(prometheus_duration(Duration::from_millis(90_500)), "1m30s500ms");
        assert_eq!(prometheus_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn configuration_sizes_are_base_2() {
        assert_eq!(parse_base2_bytes("256KB").unwrap(), 262_144);
        assert_eq!(parse_base2_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_base2_bytes("42").unwrap(), 42);
        assert!(parse_base2_bytes("5 parsecs").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_base2_bytes("99999999999999TB").unwrap_err().to_string().contains("too large"));
    }
}
