//! Query parameters as Loki reads them (`pkg/loghttp/params.go`): from the
//! URL, and for POST also from a form body.

use std::collections::HashMap;

use balsa_storage::Direction;

use super::error::ApiError;
use balsa_logql::units::parse_duration;
use balsa_logql::time::parse_rfc3339;

/// Default `limit` of log queries.
pub const DEFAULT_LIMIT: usize = 100;
/// Default look-back when `start` is not given.
pub const DEFAULT_SINCE_NS: i64 = 3600 * 1_000_000_000;

/// Parameters of one request; repeated keys keep every value.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    /// Reads `a=1&b=2` pairs from the URL query and an optional form body.
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let sources = query.map(str::as_bytes).into_iter().chain(form_body);
        for src in sources {
            for (k, v) in form_urlencoded::parse(src) {
                map.entry(k.into_owned()).or_default().push(v.into_owned());
            }
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `limit`: a positive integer, default 100.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n > 0 => Ok(n as usize),
                Ok(_) => Err(ApiError::bad_request("limit must be a positive value")),
                Err(e) => Err(ApiError::bad_request(format!("strconv.Atoi: parsing \"{v}\": {e}"))),
            },
        }
    }

    /// `direction`: `forward` or `backward` (any case), default backward.
    pub fn direction(&self) -> Result<Direction, ApiError> {
        match self.get("direction").map(str::to_ascii_uppercase).as_deref() {
            None | Some("") | Some("BACKWARD") => Ok(Direction::Backward),
            Some("FORWARD") => Ok(Direction::Forward),
            Some(_) => Err(ApiError::bad_request(format!("invalid direction '{}'", self.get("direction").unwrap_or("")))),
        }
    }

    /// `[start, end)` from `start`, `end` and `since` (Loki's
    /// `determineBounds`): end defaults to now, start to min(end, now) − since
    /// (default 1h).
    pub fn bounds(&self, now: i64) -> Result<(i64, i64), ApiError> {
        let since = match self.get("since") {
            None | Some("") => DEFAULT_SINCE_NS,
            Some(v) => {
                let bad = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("could not parse 'since' parameter: {e}"));
                let d = parse_duration(v).map_err(|e| bad(&e))?;
                i64::try_from(d.as_nanos()).map_err(|_| bad(&format!("'{v}' overflows int64")))?
            }
        };
        let end = match self.get("end") {
            None | Some("") => now,
            Some(v) => parse_timestamp(v).map_err(|e| ApiError::bad_request(format!("could not parse 'end' parameter: {e}")))?,
        };
        let start = match self.get("start") {
            None | Some("") => end.min(now).saturating_sub(since),
            Some(v) => {
                parse_timestamp(v).map_err(|e| ApiError::bad_request(format!("could not parse 'start' parameter: {e}")))?
            }
        };
        Ok((start, end))
    }
}

impl Params {
    /// `time` of an instant query, default now.
    pub fn time(&self, now: i64) -> Result<i64, ApiError> {
        match self.get("time") {
            None | Some("") => Ok(now),
            Some(v) => parse_timestamp(v).map_err(|e| ApiError::bad_request(format!("could not parse 'time' parameter: {e}"))),
        }
    }

    /// `step` of a range query in ns: float seconds or a duration; default
    /// max(floor((end − start) / 250 s), 1 s). At most 11,000 points.
    pub fn step(&self, start: i64, end: i64) -> Result<i64, ApiError> {
        // Saturating: with no max_query_length, the span may pass i64.
        let span = end.saturating_sub(start);
        let step = match self.get("step") {
            None | Some("") => (span / 250 / 1_000_000_000).max(1).saturating_mul(1_000_000_000),
            Some(v) => seconds_or_duration(v)?,
        };
        if step <= 0 {
            return Err(ApiError::bad_request(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if span / step > 11_000 {
            return Err(ApiError::bad_request(
                "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter",
            ));
        }
        Ok(step)
    }

    /// `interval` of a log range query in ns (float seconds or a
    /// duration): entries at least this far apart; 0 (default) keeps all.
    pub fn interval(&self) -> Result<i64, ApiError> {
        let interval = match self.get("interval") {
            None | Some("") => 0,
            Some(v) => seconds_or_duration(v)?,
        };
        if interval < 0 {
            return Err(ApiError::bad_request("interval must be >= 0"));
        }
        Ok(interval)
    }
}

/// Loki's `parseSecondsOrDuration`: float seconds or a duration, in ns.
fn seconds_or_duration(v: &str) -> Result<i64, ApiError> {
    match v.parse::<f64>() {
        Ok(f) if (f * 1e9).abs() >= i64::MAX as f64 => {
            Err(ApiError::bad_request(format!("cannot parse \"{v}\" to a valid duration. It overflows int64")))
        }
        Ok(f) => Ok((f * 1e9).round() as i64),
        Err(_) => match parse_duration(v).map(|d| i64::try_from(d.as_nanos())) {
            Ok(Ok(ns)) => Ok(ns),
            Ok(Err(_)) => Err(ApiError::bad_request(format!("cannot parse \"{v}\" to a valid duration. It overflows int64"))),
            Err(_) => Err(ApiError::bad_request(format!("cannot parse \"{v}\" to a valid duration"))),
        },
    }
}

/// A time that is neither a number nor RFC3339, worded as Loki's Go
/// answers it.
#[derive(Debug, thiserror::Error)]
#[error("strconv.ParseInt: parsing \"{value}\": {source}")]
pub struct TimestampError {
    pub value: String,
    pub source: std::num::ParseIntError,
}

/// Loki's `parseTimestamp`: with a dot, float seconds (fraction rounded to
/// ms); an integer of at most 10 digits, seconds; a longer one, nanoseconds;
/// otherwise RFC3339Nano.
pub fn parse_timestamp(v: &str) -> Result<i64, TimestampError> {
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            if f.is_finite() {
                let secs = f.trunc();
                let ms = ((f - secs) * 1000.0).round();
                return Ok((secs as i64).saturating_mul(1_000_000_000).saturating_add(ms as i64 * 1_000_000));
            }
        }
    }
    match v.parse::<i64>() {
        Ok(n) if v.len() <= 10 => Ok(n.saturating_mul(1_000_000_000)),
        Ok(n) => Ok(n),
        Err(source) => parse_rfc3339(v).ok_or_else(|| TimestampError { value: v.into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_past_i64_are_errors_not_wrapped() {
        let p = Params::parse(Some("step=18446744074s&interval=300000000h&since=300000000h"), None);
        for err in [format!("{:?}", p.step(0, 1).unwrap_err()), format!("{:?}", p.interval().unwrap_err())] {
            assert!(err.contains("overflows int64"), "{err}");
        }
        assert!(format!("{:?}", p.bounds(0).unwrap_err()).contains("overflows int64"));
    }

    #[test]
    fn a_span_past_i64_is_too_many_points() {
        let p = Params::parse(Some("step=1"), None);
        let err = p.step(i64::MIN + 1, i64::MAX).unwrap_err();
        assert!(format!("{err:?}").contains("exceeded maximum resolution"), "{err:?}");
    }

    #[test]
    fn timestamps_in_every_loki_format() {
        assert_eq!(parse_timestamp("1570818238").unwrap(), 1_570_818_238_000_000_000);
        assert_eq!(parse_timestamp("1570818238000000001").unwrap(), 1_570_818_238_000_000_001);
        assert_eq!(parse_timestamp("1570818238.5").unwrap(), 1_570_818_238_500_000_000);
        assert_eq!(parse_timestamp("2019-10-11T18:23:58.5Z").unwrap(), 1_570_818_238_500_000_000);
        assert!(parse_timestamp("yesterday").unwrap_err().to_string().contains("invalid digit"));
    }

    #[test]
    fn bounds_limit_direction() {
        let now = 10_000 * 1_000_000_000;
        let p = Params::parse(Some("since=10m&limit=5&direction=FORWARD"), None);
        assert_eq!(p.bounds(now).unwrap(), (now - 600 * 1_000_000_000, now));
        assert_eq!(p.limit().unwrap(), 5);
        assert_eq!(p.direction().unwrap(), Direction::Forward);
        let p = Params::parse(Some("limit=0&direction=up&match[]=a&match[]=b"), Some(b"end=5"));
        assert_eq!(p.limit().unwrap_err().body, "limit must be a positive value");
        assert_eq!(p.direction().unwrap_err().body, "invalid direction 'up'");
        assert_eq!(p.all("match[]").len(), 2);
        assert_eq!(p.bounds(now).unwrap(), (5 * 1_000_000_000 - DEFAULT_SINCE_NS, 5 * 1_000_000_000));
    }
}
