//! Label sets of streams: parsing, Loki's normal form and printing.

use serde::{Deserialize, Serialize};



/// A stream's labels sorted by name. Names may repeat until validation
/// rejects the stream (`duplicate_label_names`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// Sorts by name (stably) and drops labels with empty values, as Loki does.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs)
    }

    /// Sorts by name, keeping empty values: labels produced by a query
    /// pipeline (an extracted empty value is a label, as in Loki).
    pub fn from_pairs_keep_empty(mut pairs: Vec<(String, String)>) -> Self {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs)
    }

    /// Parses the Prometheus text form clients send: `{a="b", c="d"}`.
    pub fn parse(s: &str) -> Result<Self, crate::ParseError> {
        Ok(Self::from_pairs(crate::parse_labels(s)?))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `service_name` when absent, from the first label of `discover`
    /// present, else `unknown_service` (Loki's `discover_service_name`).
    /// An empty `discover` list turns the feature off.
    pub fn discover_service_name(&mut self, discover: &[String]) {
        if discover.is_empty() || self.get("service_name").is_some() {
            return;
        }
        let value = discover
            .iter()
            .find_map(|n| self.get(n))
            .unwrap_or("unknown_service")
            .to_string();
        self.0.push(("service_name".into(), value));
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// As a JSON object, the form of Loki's responses.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
    }
}

impl std::fmt::Display for LabelSet {
    /// Prometheus' form: `{a="b", c="d"}` with Go-quoted values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={}", go_quote(v))?;
        }
        f.write_str("}")
    }
}

/// Quotes like Go's `strconv.Quote` for the characters that matter here.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_form_round_trips() {
        let l = LabelSet::parse(r#"{job="api", env="a\"b", empty=""}"#).unwrap();
        assert_eq!(l.to_string(), r#"{env="a\"b", job="api"}"#);
        assert_eq!(LabelSet::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn service_name_is_discovered_like_loki() {
        let list: Vec<String> = ["service", "app", "job"].iter().map(|s| s.to_string()).collect();
        let mut l = LabelSet::parse(r#"{job="api", app="shop"}"#).unwrap();
        l.discover_service_name(&list);
        assert_eq!(l.get("service_name"), Some("shop"));
        let mut l = LabelSet::parse(r#"{x="1"}"#).unwrap();
        l.discover_service_name(&list);
        assert_eq!(l.to_string(), r#"{service_name="unknown_service", x="1"}"#);
    }
}
