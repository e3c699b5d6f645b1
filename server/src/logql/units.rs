//! Numbers, durations and sizes as LogQL reads and prints them: Go's
//! `time.ParseDuration` and `Duration.String()`, Prometheus' durations,
//! go-humanize's `ParseBytes` and `Bytes`, and Go's `%v` of a float.

/// Go's `time.ParseDuration`, in seconds: `1.5s`, `90m`, `2h45m`, `-1s`,
/// `300ms`, `1us`; errors worded like Go's.
pub fn parse_go_duration(s: &str) -> Result<f64, String> {
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
        return Err(format!("time: invalid duration \"{orig}\""));
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n == 0 {
            return Err(format!("time: invalid duration \"{orig}\""));
        }
        let value: f64 = rest[..n].parse().map_err(|_| format!("time: invalid duration \"{orig}\""))?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let mult = match unit {
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("time: unknown unit \"{other}\" in duration \"{orig}\"")),
        };
        total += value * mult;
    }
    Ok(if neg { -total } else { total })
}

/// Prometheus' `model.ParseDuration` (what Loki reads ranges with), in
/// nanoseconds: whole numbers with units from `y` down to `ms`, largest
/// first (`1h30m`, `90d`); `1.5m` and a bare `30` are not durations.
pub fn parse_prometheus_duration(s: &str) -> Result<i64, String> {
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
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {s:?}");
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
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if last_unit.is_some_and(|l| pos <= l) {
            return Err(invalid());
        }
        last_unit = Some(pos);
        let add = v.checked_mul(UNITS[pos].1).ok_or("duration out of range")?;
        ms = ms.checked_add(add).filter(|m| *m <= i64::MAX as u64 / 1_000_000).ok_or("duration out of range")?;
    }
    Ok(ms as i64 * 1_000_000)
}

/// go-humanize's `ParseBytes`: `42`, `42B`, `1kB`/`1KB` (1000), `1KiB`
/// (1024), `3mb`, `1.5 GB`; case-insensitive.
pub fn parse_bytes(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let n = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(t.len());
    let digits = t[..n].replace(',', "");
    let num: f64 = digits.parse().map_err(|_| format!("strconv.ParseFloat: parsing \"{digits}\": invalid syntax"))?;
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
        other => return Err(format!("unhandled size name: {other}")),
    };
    // Go's humanize.ParseBytes answers whole bytes (a uint64).
    let bytes = num * mult;
    if bytes >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
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
        assert_eq!(parse_go_duration("1x").unwrap_err(), "time: unknown unit \"x\" in duration \"1x\"");
        assert_eq!(parse_go_duration("5").unwrap_err(), "time: missing unit in duration \"5\"");
    }

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prometheus_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_prometheus_duration("90d").unwrap(), 90 * 86_400_000_000_000);
        assert_eq!(parse_prometheus_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_prometheus_duration("5minutes").unwrap_err(), r#"unknown unit "minutes" in duration "5minutes""#);
        assert_eq!(parse_prometheus_duration("1.5m").unwrap_err(), r#"unknown unit "." in duration "1.5m""#);
        assert_eq!(parse_prometheus_duration("30").unwrap_err(), r#"not a valid duration string: "30""#);
        assert_eq!(parse_prometheus_duration("1m1h").unwrap_err(), r#"not a valid duration string: "1m1h""#);
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
}
