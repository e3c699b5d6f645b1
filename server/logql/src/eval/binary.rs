//! Binary operations (`+`, comparisons, `and`/`or`/`unless`, `on`/`ignoring`,
//! `group_left`/`group_right`) between scalars and vectors, step by step.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{EvalError, Series};
use crate::ast::*;
use crate::labels::LabelSet;

/// `a op b` for two samples, as Loki's `MergeBinOp`: division and modulo
/// by zero are NaN; a comparison gives 1 or 0 with `bool`, else `a` when it
/// holds and nothing when it does not.
fn scalar_op(op: BinOp, a: f64, b: f64, return_bool: bool) -> Option<f64> {
    Some(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div if b == 0.0 => f64::NAN,
        BinOp::Div => a / b,
        BinOp::Mod if b == 0.0 => f64::NAN,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        BinOp::Cmp(c) => {
            let t = c.apply(a, b);
            if return_bool {
                f64::from(u8::from(t))
            } else if t {
                a
            } else {
                return None;
            }
        }
        BinOp::Or | BinOp::And | BinOp::Unless => return None,
    })
}

/// Two literals reduced to one, as Loki's parser does: comparisons give 1
/// or 0 (never filter).
pub fn fold(op: BinOp, a: f64, b: f64) -> f64 {
    scalar_op(op, a, b, true).unwrap_or(f64::NAN)
}

/// Vector ⊕ scalar (or scalar ⊕ vector when `scalar_left`). A filtering
/// comparison keeps the vector's sample.
pub(super) fn vector_scalar(b: &BinaryExpr, vs: Vec<Series>, sc: &[f64], scalar_left: bool) -> Vec<Series> {
    vs.into_iter()
        .map(|s| Series {
            labels: s.labels,
            points: s
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let v = (*p)?;
                    let (x, y) = if scalar_left { (sc[i], v) } else { (v, sc[i]) };
                    let r = scalar_op(b.op, x, y, b.return_bool)?;
                    Some(if matches!(b.op, BinOp::Cmp(_)) && !b.return_bool { v } else { r })
                })
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

/// The labels two series are matched on (`on(…)` keeps, `ignoring(…)` drops).
fn signature(labels: &LabelSet, m: &VectorMatching) -> LabelSet {
    LabelSet::from_pairs_keep_empty(
        labels
            .iter()
            .filter(|(k, _)| m.labels.iter().any(|l| l == k) == m.on)
            .cloned()
            .collect(),
    )
}

pub(super) fn vector_vector(b: &BinaryExpr, lv: Vec<Series>, rv: Vec<Series>, n: usize) -> Result<Vec<Series>, EvalError> {
    let m = &b.matching;
    match b.op {
        BinOp::And | BinOp::Unless => {
            let keep_matched = b.op == BinOp::And;
            let right: Vec<(LabelSet, &Series)> = rv.iter().map(|s| (signature(&s.labels, m), s)).collect();
            return Ok(lv
                .into_iter()
                .map(|s| {
                    let sig = signature(&s.labels, m);
                    let points = (0..n)
                        .map(|i| {
                            let matched = right.iter().any(|(rs, r)| *rs == sig && r.points[i].is_some());
                            if matched == keep_matched {
                                s.points[i]
                            } else {
                                None
                            }
                        })
                        .collect();
                    Series { labels: s.labels, points }
                })
                .filter(|s| s.points.iter().any(Option::is_some))
                .collect());
        }
        BinOp::Or => {
            let left_sigs: Vec<(LabelSet, Vec<bool>)> =
                lv.iter().map(|s| (signature(&s.labels, m), s.points.iter().map(Option::is_some).collect())).collect();
            let mut out = lv.clone();
            for s in rv {
                let sig = signature(&s.labels, m);
                let points: Vec<Option<f64>> = (0..n)
                    .map(|i| if left_sigs.iter().any(|(ls, p)| *ls == sig && p[i]) { None } else { s.points[i] })
                    .collect();
                // A right series with the labels of a left one fills its gaps.
                match out.iter_mut().find(|o| o.labels == s.labels) {
                    Some(o) => {
                        for (slot, p) in o.points.iter_mut().zip(points) {
                            if slot.is_none() {
                                *slot = p;
                            }
                        }
                    }
                    None => out.push(Series { labels: s.labels, points }),
                }
            }
            return Ok(out.into_iter().filter(|s| s.points.iter().any(Option::is_some)).collect());
        }
        _ => {}
    }
    // Arithmetic and comparison, matched at every step as Loki does: the
    // "one" side (the right, or the left with group_right) must not hold
    // two series with the same signature; one-to-one matching must not pair
    // a signature twice; group_* must not produce the same labels twice.
    let group_right = matches!(&m.group, Some((GroupSide::Right, _)));
    let (many, one) = if group_right { (&rv, &lv) } else { (&lv, &rv) };
    let one_sigs: Vec<LabelSet> = one.iter().map(|s| signature(&s.labels, m)).collect();
    let many_sigs: Vec<LabelSet> = many.iter().map(|s| signature(&s.labels, m)).collect();
    // Result series by (many, one) pair: labels are built once per pair,
    // not once per step.
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    let mut results: Vec<(LabelSet, Vec<Option<f64>>)> = Vec::new();
    let mut by_labels: HashMap<LabelSet, usize> = HashMap::new();
    let mut by_sig: HashMap<&LabelSet, usize> = HashMap::new();
    let mut matched: HashMap<&LabelSet, HashSet<usize>> = HashMap::new();
    for i in 0..n {
        by_sig.clear();
        for (oi, sig) in one_sigs.iter().enumerate().filter(|(oi, _)| one[*oi].points[i].is_some()) {
            if by_sig.insert(sig, oi).is_some() {
                let side = if group_right { "left" } else { "right" };
                return Err(EvalError(format!(
                    "found duplicate series on the {side} hand-side;many-to-many matching not allowed: matching labels must be unique on one side"
                )));
            }
        }
        matched.clear();
        for (si, (s, sig)) in many.iter().zip(&many_sigs).enumerate() {
            let Some(a) = s.points[i] else { continue };
            let Some(&oi) = by_sig.get(sig) else { continue };
            let Some(c) = one[oi].points[i] else { continue };
            let r = *pairs.entry((si, oi)).or_insert_with(|| {
                let labels = result_labels(&s.labels, &one[oi].labels, m);
                // Pairs that produce the same labels share one result series.
                *by_labels.entry(labels.clone()).or_insert_with(|| {
                    results.push((labels, vec![None; n]));
                    results.len() - 1
                })
            });
            let seen = matched.entry(sig).or_default();
            if m.group.is_none() {
                if !seen.is_empty() {
                    return Err(EvalError(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                seen.insert(r);
            } else if !seen.insert(r) {
                return Err(EvalError("multiple matches for labels: grouping labels must ensure unique matches".into()));
            }
            let (x, y) = if group_right { (c, a) } else { (a, c) };
            if let Some(v) = scalar_op(b.op, x, y, b.return_bool) {
                results[r].1[i] = Some(v);
            }
        }
    }
    let out: BTreeMap<LabelSet, Vec<Option<f64>>> = results.into_iter().collect();
    Ok(out
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect())
}

/// Prometheus' result labels of a matched pair.
fn result_labels(many: &LabelSet, one: &LabelSet, m: &VectorMatching) -> LabelSet {
    match &m.group {
        None => {
            if m.on {
                signature(many, m)
            } else {
                LabelSet::from_pairs_keep_empty(many.iter().filter(|(k, _)| !m.labels.iter().any(|l| l == k)).cloned().collect())
            }
        }
        Some((_, include)) => {
            let mut pairs: Vec<(String, String)> = many.iter().filter(|(k, _)| !include.contains(k)).cloned().collect();
            for name in include {
                if let Some(v) = one.get(name) {
                    pairs.push((name.clone(), v.to_string()));
                }
            }
            LabelSet::from_pairs_keep_empty(pairs)
        }
    }
}
