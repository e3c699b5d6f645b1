//! `ip("...")` in line and label filters: a single address, a CIDR block or
//! an inclusive range, IPv4 or IPv6.

use std::net::IpAddr;
use crate::CompileError;

/// A compiled `ip("...")` pattern.
#[derive(Clone, Debug)]
pub struct IpMatcher {
    lo: IpAddr,
    hi: IpAddr,
}

fn to_u128(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

impl IpMatcher {
    /// Parses `10.0.0.1`, `10.0.0.0/8` or `10.0.0.1-10.0.0.9`.
    pub fn new(pattern: &str) -> Result<Self, CompileError> {
        let bad = || CompileError::IpPattern(pattern.into());
        let p = pattern.trim();
        if let Some((a, b)) = p.split_once('-') {
            let lo: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let hi: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if lo.is_ipv4() != hi.is_ipv4() || to_u128(lo).1 > to_u128(hi).1 {
                return Err(bad());
            }
            return Ok(Self { lo, hi });
        }
        if let Some((a, bits)) = p.split_once('/') {
            let base: IpAddr = a.parse().map_err(|_| bad())?;
            let bits: u32 = bits.parse().map_err(|_| bad())?;
            let width = if base.is_ipv4() { 32 } else { 128 };
            if bits > width {
                return Err(bad());
            }
            let (_, v) = to_u128(base);
            let host = if bits == width { 0 } else { (u128::MAX >> (128 - width + bits)) & (u128::MAX >> (128 - width)) };
            let lo = v & !host;
            let hi = lo | host;
            let mk = |n: u128| -> IpAddr {
                if base.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::from(n))
                }
            };
            return Ok(Self { lo: mk(lo), hi: mk(hi) });
        }
        let ip: IpAddr = p.parse().map_err(|_| bad())?;
        Ok(Self { lo: ip, hi: ip })
    }

    /// Whether `ip` is in the pattern.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, n) = to_u128(ip);
        v6 == self.lo.is_ipv6() && to_u128(self.lo).1 <= n && n <= to_u128(self.hi).1
    }

    /// Whether a label value is an address in the pattern.
    pub fn value_matches(&self, value: &str) -> bool {
        value.trim().parse::<IpAddr>().map(|ip| self.contains(ip)).unwrap_or(false)
    }

    /// Whether any address written in `line` is in the pattern.
    pub fn line_contains(&self, line: &str) -> bool {
        let b = line.as_bytes();
        let is_ip_char = |c: u8| c.is_ascii_hexdigit() || c == b'.' || c == b':';
        let mut i = 0;
        while i < b.len() {
            if !is_ip_char(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && is_ip_char(b[i]) {
                i += 1;
            }
            let raw = &line[start..i];
            // An IPv4 address may carry a port: 10.0.0.7:80.
            let no_port = if raw.contains('.') { raw.split(':').next().unwrap_or(raw) } else { raw };
            for token in [raw, raw.trim_matches(|c| c == ':' || c == '.'), no_port] {
                if token.contains('.') || token.contains(':') {
                    if let Ok(ip) = token.parse::<IpAddr>() {
                        if self.contains(ip) {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_cidr_and_range() {
        let m = IpMatcher::new("192.168.1.0/24").unwrap();
        assert!(m.line_contains("from 192.168.1.77 port 22"));
        assert!(!m.line_contains("from 192.168.2.77"));
        assert!(m.value_matches("192.168.1.1"));
        let r = IpMatcher::new("10.0.0.1-10.0.0.5").unwrap();
        assert!(r.value_matches("10.0.0.5") && !r.value_matches("10.0.0.6"));
        assert!(IpMatcher::new("::1").unwrap().line_contains("addr=::1 ok"));
        assert!(IpMatcher::new("300.1.1.1").unwrap_err().to_string().contains("invalid pattern"));
        assert!(IpMatcher::new("10.0.0.0/33").is_err());
        assert!(IpMatcher::new("0.0.0.0/0").unwrap().value_matches("8.8.8.8"));
    }
}
