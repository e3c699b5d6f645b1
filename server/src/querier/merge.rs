//! Putting a log query's per-stream results together: streams with equal
//! labels joined, Loki's `limit` across streams and its `interval`
//! spacing. The querier applies them to one query, the frontend to the
//! pieces of a split one.

use balsa_storage::Direction;

use super::StreamResult;

/// Joins results with equal labels (the same labels can come out of the
/// pipeline of several streams), keeping each one's entries in order.
pub(crate) fn merge_same_labels(found: Vec<StreamResult>, direction: Direction) -> Vec<StreamResult> {
    let mut out: Vec<StreamResult> = Vec::new();
    for r in found {
        match out.iter_mut().find(|o| o.labels == r.labels) {
            Some(o) => {
                o.entries.extend(r.entries);
                match direction {
                    Direction::Forward => o.entries.sort_by_key(|e| e.ts),
                    Direction::Backward => o.entries.sort_by_key(|e| std::cmp::Reverse(e.ts)),
                }
            }
            None => out.push(r),
        }
    }
    out
}

/// Loki's `interval`: walking the entries of all streams in `direction` as
/// one sequence (equal times in label order), keeps an entry only when it
/// is at least `interval` after (forward) or before (backward) the last one
/// kept, the first always. `last` carries the walk over consecutive pieces
/// of one query.
pub(crate) fn keep_spaced(streams: Vec<StreamResult>, direction: Direction, interval: i64, last: &mut Option<i64>) -> Vec<StreamResult> {
    let mut by_labels: Vec<usize> = (0..streams.len()).collect();
    by_labels.sort_by(|a, b| streams[*a].labels.cmp(&streams[*b].labels));
    let mut rank = vec![0; streams.len()];
    for (r, s) in by_labels.into_iter().enumerate() {
        rank[s] = r;
    }
    let mut order: Vec<(i64, usize, usize)> =
        streams.iter().enumerate().flat_map(|(s, r)| r.entries.iter().enumerate().map(move |(e, x)| (x.ts, s, e))).collect();
    order.sort_by_key(|&(ts, s, e)| (if direction == Direction::Forward { ts } else { -ts }, rank[s], e));
    let mut keep: Vec<Vec<bool>> = streams.iter().map(|r| vec![false; r.entries.len()]).collect();
    for (ts, s, e) in order {
        let spaced = match (*last, direction) {
            (None, _) => true,
            (Some(l), Direction::Forward) => ts >= l.saturating_add(interval),
            (Some(l), Direction::Backward) => ts <= l.saturating_sub(interval),
        };
        if spaced {
            keep[s][e] = true;
            *last = Some(ts);
        }
    }
    streams
        .into_iter()
        .zip(keep)
        .filter_map(|(mut r, k)| {
            let mut flags = k.into_iter();
            r.entries.retain(|_| flags.next().unwrap_or(false));
            (!r.entries.is_empty()).then_some(r)
        })
        .collect()
}

/// Keeps the `limit` entries that come first in `direction` across all
/// streams (each stream's entries already in that order).
pub(crate) fn keep_first(streams: Vec<StreamResult>, limit: usize, direction: Direction) -> Vec<StreamResult> {
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    if total <= limit {
        return streams;
    }
    let mut ts: Vec<i64> = streams.iter().flat_map(|s| s.entries.iter().map(|e| e.ts)).collect();
    let cut_at = limit.saturating_sub(1);
    let boundary = match direction {
        Direction::Forward => *ts.select_nth_unstable(cut_at).1,
        Direction::Backward => *ts.select_nth_unstable_by(cut_at, |a, b| b.cmp(a)).1,
    };
    let before = |t: i64| match direction {
        Direction::Forward => t < boundary,
        Direction::Backward => t > boundary,
    };
    // Everything strictly before the boundary is in; entries at the boundary
    // fill the remaining places, in stream order, so exactly `limit` remain.
    let mut room = limit - streams.iter().flat_map(|s| s.entries.iter()).filter(|e| before(e.ts)).count();
    streams
        .into_iter()
        .filter_map(|mut s| {
            s.entries.retain(|e| {
                if before(e.ts) {
                    true
                } else if e.ts == boundary && room > 0 {
                    room -= 1;
                    true
                } else {
                    false
                }
            });
            (!s.entries.is_empty()).then_some(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_logql::labels::LabelSet;
    use balsa_storage::Entry;

    fn sr(name: &str, ts: &[i64]) -> StreamResult {
        StreamResult {
            labels: LabelSet::parse(&format!("{{s=\"{name}\"}}")).unwrap(),
            entries: ts.iter().map(|&t| Entry::new(t, "l").into()).collect(),
        }
    }

    #[test]
    fn limit_applies_across_streams_in_direction() {
        let got = keep_first(vec![sr("a", &[9, 5, 1]), sr("b", &[8, 7, 2])], 3, Direction::Backward);
        let ts: Vec<Vec<i64>> = got.iter().map(|s| s.entries.iter().map(|e| e.ts).collect()).collect();
        assert_eq!(ts, vec![vec![9], vec![8, 7]]);
        let got = keep_first(vec![sr("a", &[1, 5, 9]), sr("b", &[2, 7, 8])], 3, Direction::Forward);
        let ts: Vec<Vec<i64>> = got.iter().map(|s| s.entries.iter().map(|e| e.ts).collect()).collect();
        assert_eq!(ts, vec![vec![1, 5], vec![2]]);
    }

    #[test]
    fn interval_spaces_entries_across_streams_and_pieces() {
        let spaced = |streams: Vec<StreamResult>, dir, last: &mut Option<i64>| -> Vec<(String, Vec<i64>)> {
            keep_spaced(streams, dir, 10, last).iter().map(|s| (s.labels.to_string(), s.entries.iter().map(|e| e.ts).collect())).collect()
        };
        let (a, b) = (r#"{s="a"}"#.to_string(), r#"{s="b"}"#.to_string());
        let mut last = None;
        let got = spaced(vec![sr("a", &[0, 4, 12, 25]), sr("b", &[3, 10, 21, 22])], Direction::Forward, &mut last);
        assert_eq!(got, [(a.clone(), vec![0]), (b.clone(), vec![10, 21])]);
        // The walk goes on into the next piece; of equal times, the stream first in label order.
        let got = spaced(vec![sr("b", &[30, 35, 36]), sr("a", &[35])], Direction::Forward, &mut last);
        assert_eq!(got, [(a.clone(), vec![35])]);
        let mut last = None;
        let got = spaced(vec![sr("a", &[30, 19, 5]), sr("b", &[29, 20, 9])], Direction::Backward, &mut last);
        assert_eq!(got, [(a, vec![30]), (b, vec![20, 9])]);
    }

    #[test]
    fn ties_at_the_boundary_keep_exactly_limit() {
        let got = keep_first(vec![sr("a", &[1, 3]), sr("b", &[3, 4])], 2, Direction::Forward);
        assert_eq!(got.iter().map(|s| s.entries.len()).sum::<usize>(), 2);
    }
}
