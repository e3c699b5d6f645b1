//! Log patterns for `/loki/api/v1/patterns`: lines are clustered with the
//! Drain algorithm (He et al., 2017), as Loki's pattern ingester does, and
//! each cluster is shown as a template whose varying tokens read `<_>`.
//!
//! A line is split into tokens at spaces, and after each `=` (so that
//! `status=200` keeps its key). Lines with the same number of tokens and
//! the same first token are candidates for one cluster; a line joins the
//! most similar candidate when at least [`SIMILARITY`] of the positions
//! hold the same token, and the positions that differ become `<_>`.
//! Tokens with a digit are variables from the start: numbers, ids and
//! timestamps seldom repeat. Patterns are mined per stream; equal templates
//! of different streams are counted together.

use std::collections::{BTreeMap, HashMap};

/// What a template shows for a varying token.
pub const PLACEHOLDER: &str = "<_>";

/// Share of equal positions (Loki's default) for a line to join a cluster.
pub const SIMILARITY: f64 = 0.3;

/// Clusters kept per stream; further lines that fit none are not counted.
pub const MAX_CLUSTERS: usize = 300;

/// Candidates compared per group; the oldest are searched first.
const MAX_CANDIDATES: usize = 100;

/// One token of a line, and whether a space came before it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    text: String,
    spaced: bool,
}

fn tokens(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (i, word) in line.split(' ').filter(|w| !w.is_empty()).enumerate() {
        let mut spaced = i > 0;
        let mut rest = word;
        while let Some(eq) = rest.find('=') {
            let (key, value) = rest.split_at(eq + 1);
            out.push(Token { text: key.to_string(), spaced });
            spaced = false;
            rest = value;
        }
        if !rest.is_empty() {
            let text = if rest.bytes().any(|b| b.is_ascii_digit()) { PLACEHOLDER.to_string() } else { rest.to_string() };
            out.push(Token { text, spaced });
        }
    }
    out
}

/// A cluster: its template, and how many lines fell in each time bucket.
#[derive(Debug)]
struct Cluster {
    template: Vec<Token>,
    counts: BTreeMap<i64, u64>,
}

impl Cluster {
    /// Share of positions where `line` and the template agree (placeholders
    /// do not count as agreeing), and how many placeholders the template has.
    fn similarity(&self, line: &[Token]) -> (f64, usize) {
        let mut same = 0;
        let mut params = 0;
        for (t, l) in self.template.iter().zip(line) {
            if t.text == PLACEHOLDER {
                params += 1;
            } else if t.text == l.text {
                same += 1;
            }
        }
        (same as f64 / self.template.len().max(1) as f64, params)
    }

    fn absorb(&mut self, line: &[Token]) {
        for (t, l) in self.template.iter_mut().zip(line) {
            if t.text != l.text {
                t.text = PLACEHOLDER.to_string();
            }
        }
    }

    /// The template as text; a run of placeholders not separated by a
    /// space reads as one.
    fn text(&self) -> String {
        let mut out = String::new();
        let mut last_placeholder = false;
        for t in &self.template {
            let placeholder = t.text == PLACEHOLDER;
            if placeholder && last_placeholder && !t.spaced {
                continue;
            }
            if t.spaced {
                out.push(' ');
            }
            out.push_str(&t.text);
            last_placeholder = placeholder;
        }
        out
    }
}

/// The Drain miner of one stream.
#[derive(Debug, Default)]
pub struct Miner {
    /// Clusters by (token count, first token).
    groups: HashMap<(usize, String), Vec<usize>>,
    clusters: Vec<Cluster>,
}

impl Miner {
    /// Adds a line that fell in time bucket `bucket`.
    pub fn add(&mut self, line: &str, bucket: i64) {
        let toks = tokens(line);
        let Some(first) = toks.first() else { return };
        let key = (toks.len(), first.text.clone());
        let candidates = self.groups.entry(key).or_default();
        let mut best: Option<(usize, f64, usize)> = None;
        for &c in candidates.iter().take(MAX_CANDIDATES) {
            let (sim, params) = self.clusters[c].similarity(&toks);
            if best.is_none_or(|(_, s, p)| sim > s || (sim == s && params > p)) {
                best = Some((c, sim, params));
            }
        }
        let c = match best {
            Some((c, sim, _)) if sim >= SIMILARITY => {
                self.clusters[c].absorb(&toks);
                c
            }
            _ if self.clusters.len() >= MAX_CLUSTERS => return,
            _ => {
                self.clusters.push(Cluster { template: toks, counts: BTreeMap::new() });
                candidates.push(self.clusters.len() - 1);
                self.clusters.len() - 1
            }
        };
        *self.clusters[c].counts.entry(bucket).or_default() += 1;
    }

    /// Every template and its counts per bucket; clusters that ended up
    /// with the same template are merged.
    pub fn patterns(self) -> BTreeMap<String, BTreeMap<i64, u64>> {
        let mut out: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        for c in self.clusters {
            let merged = out.entry(c.text()).or_default();
            for (bucket, n) in c.counts {
                *merged.entry(bucket).or_default() += n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(lines: &[&str]) -> Vec<(String, u64)> {
        let mut m = Miner::default();
        for l in lines {
            m.add(l, 0);
        }
        let mut v: Vec<(String, u64)> = m.patterns().into_iter().map(|(p, c)| (p, c.values().sum())).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    #[test]
    fn varying_words_become_placeholders_and_keys_stay() {
        let got = mine(&[
            "user alice logged in from web",
            "user bob logged in from web",
            "user carol logged in from mobile",
            "level=info status=200 path=/api/items msg=done",
            "level=info status=404 path=/api/cart msg=done",
        ]);
        assert_eq!(
            got,
            vec![
                ("user <_> logged in from <_>".to_string(), 3),
                ("level=info status=<_> path=<_> msg=done".to_string(), 2),
            ]
        );
    }

    #[test]
    fn dissimilar_lines_of_the_same_shape_stay_apart() {
        let got = mine(&["connection reset by peer", "connection pool is full", "connection reset by peer"]);
        assert_eq!(got, vec![("connection reset by peer".to_string(), 2), ("connection pool is full".to_string(), 1)]);
    }

    #[test]
    fn counts_go_to_their_buckets_and_clusters_are_bounded() {
        let mut m = Miner::default();
        m.add("GET /a 200", 10);
        m.add("GET /b 500", 20);
        m.add("GET /b 500", 20);
        let p = m.patterns();
        assert_eq!(p.len(), 1);
        let counts = p.values().next().unwrap();
        assert_eq!(counts.get(&10), Some(&1));
        assert_eq!(counts.get(&20), Some(&2));
        let mut m = Miner::default();
        for i in 0..MAX_CLUSTERS + 50 {
            m.add(&format!("w{} x", char::from(b'a' + (i % 26) as u8).to_string().repeat(i / 26 + 1)), 0);
        }
        assert!(m.patterns().len() <= MAX_CLUSTERS);
    }

    #[test]
    fn empty_lines_are_ignored() {
        assert!(mine(&["", "   "]).is_empty());
    }
}
