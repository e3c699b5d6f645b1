//! Durations and sizes as LogQL reads them in label filters and `unwrap`:
//! Go's `time.ParseDuration` and go-humanize's `ParseBytes`.

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
    fn humanize_bytes() {
        assert_eq!(parse_bytes("1MB").unwrap(), 1e6);
        assert_eq!(parse_bytes("3mb").unwrap(), 3e6);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024.0);
        assert_eq!(parse_bytes("42").unwrap(), 42.0);
        assert!(parse_bytes("oops").is_err());
    }
}
