//! `product_similar` (CONTRACT §7), viewed together, as an [`EpochLogic`]: for each
//! product, the 10 products whose views share the most final sessions with its own
//! (at least 2), by `similarity = together / sqrt(n_p × n_q)`, refreshed as each day
//! closes (W passes its end, as for `product_pairs`) over the sessions final by then
//! (last event + gap ≤ the day's end). Every row of a product carries its count, so a
//! refresh rewrites the lists of every product viewed since the last one: once a day,
//! that is a few rows per product, where refreshing at each epoch (or hour) made a replay
//! of two days write half as many rows as it had events. Refreshing at fixed points of
//! event time also keeps the table a function of W, which is what a restart rebuilds.
//!
//! Final sessions never change, so counts only grow, by what changed: a session viewing
//! the set S adds one to `n_p` for each p in S and to `together(p, q)` for each pair in
//! S. Only the products whose list can then differ are ranked again: those of S (their
//! counts moved) and those listing one of S (that row's similarity fell, so another may
//! overtake it). For any other product every candidate's similarity stayed or fell
//! while its listed ones stayed, so its list stands. Similarities are compared exactly,
//! as fractions (for p, q beats q' when `together(p,q)² × n_q' > together(p,q')² × n_q`),
//! never as rounded floats. Runs on one worker (a session's products are on it
//! together). Owns nothing else.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::by_epoch::EpochLogic;
use super::cohorts::DAY;
use crate::event::Text;
use crate::rows::SimilarRow;
use crate::time::{window_start, Millis};

/// Rows kept per product.
pub const TOP: usize = 10;
/// Final sessions a pair needs to count at all.
pub const MIN_SESSIONS: i64 = 2;

/// Refreshes happen as each such span of event time (a UTC day) closes.
pub const REFRESH: Millis = DAY;

/// One final session: when it became final (its last event + the session gap) and the
/// products it viewed, sorted, each once.
pub type Viewed = (Millis, Vec<Text>);

/// Sessions viewing products together, keyed by nothing (one worker). Products are
/// numbered as they arrive, so that counting and ranking hash no strings.
#[derive(Default)]
pub struct Similar {
    /// Final sessions not counted yet, by when they became final.
    pending: BTreeMap<Millis, Vec<Vec<Text>>>,
    /// The end of the latest refresh.
    refreshed: Option<Millis>,
    /// Each product by its number, and the number of each product.
    names: Vec<Text>,
    numbers: HashMap<Text, u32>,
    /// Final sessions viewing each product.
    sessions: Vec<i64>,
    /// For each product, the final sessions viewing it with each other product.
    together: Vec<HashMap<u32, i64, Numbers>>,
    /// Each product's rows as last emitted, best first.
    listed: Vec<Vec<Listed>>,
    /// For each product, the products whose emitted list holds it.
    listed_by: Vec<HashSet<u32>>,
}

/// Hashes a product number with one multiplication: counting pairs is this operator's
/// hot loop, and its keys are small dense integers, not input.
type Numbers = BuildHasherDefault<NumberHasher>;

#[derive(Default)]
struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One row of a product's list: the other product and the counts of the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed {
    other: u32,
    together: i64,
    product_sessions: i64,
    other_sessions: i64,
}

impl Similar {
    fn number(&mut self, product: &Text) -> u32 {
        if let Some(n) = self.numbers.get(product) {
            return *n;
        }
        let n = self.names.len() as u32;
        self.names.push(product.clone());
        self.numbers.insert(product.clone(), n);
        self.sessions.push(0);
        self.together.push(HashMap::default());
        self.listed.push(Vec::new());
        self.listed_by.push(HashSet::new());
        n
    }

    /// `p`'s best rows from the counts.
    fn rank(&self, p: u32) -> Vec<Listed> {
        let n_p = self.sessions[p as usize];
        let mut best: Vec<Listed> = self.together[p as usize]
            .iter()
            .filter(|(_, t)| **t >= MIN_SESSIONS)
            .map(|(q, t)| Listed { other: *q, together: *t, product_sessions: n_p, other_sessions: self.sessions[*q as usize] })
            .collect();
        let order = |a: &Listed, b: &Listed| {
            better(a.together, a.other_sessions, b.together, b.other_sessions)
                .then_with(|| self.names[a.other as usize].cmp(&self.names[b.other as usize]))
        };
        if best.len() > TOP {
            best.select_nth_unstable_by(TOP, order);
            best.truncate(TOP);
        }
        best.sort_unstable_by(order);
        best
    }

    fn row(&self, p: u32, l: &Listed) -> SimilarRow {
        SimilarRow {
            product_id: self.names[p as usize].clone(),
            other_product_id: self.names[l.other as usize].clone(),
            sessions_together: l.together,
            product_sessions: l.product_sessions,
            other_sessions: l.other_sessions,
        }
    }

    /// Replaces `p`'s emitted rows with `rows`, by difference.
    fn relist(&mut self, p: u32, rows: Vec<Listed>, out: &mut Vec<(SimilarRow, isize)>) {
        let old = std::mem::take(&mut self.listed[p as usize]);
        for l in &old {
            if !rows.contains(l) {
                out.push((self.row(p, l), -1));
                self.listed_by[l.other as usize].remove(&p);
            }
        }
        for l in &rows {
            if !old.contains(l) {
                out.push((self.row(p, l), 1));
                self.listed_by[l.other as usize].insert(p);
            }
        }
        self.listed[p as usize] = rows;
    }
}

/// Orders `(together, n_q)` candidates of one product by similarity, best first:
/// `t1 / sqrt(n1)` against `t2 / sqrt(n2)`, squared and cross-multiplied.
fn better(t1: i64, n1: i64, t2: i64, n2: i64) -> Ordering {
    let (t1, n1, t2, n2) = (t1 as i128, n1 as i128, t2 as i128, n2 as i128);
    (t2 * t2 * n1).cmp(&(t1 * t1 * n2))
}

impl EpochLogic for Similar {
    type In = Viewed;
    type Out = SimilarRow;

    fn absorb(&mut self, (final_at, viewed): Viewed, diff: isize) {
        debug_assert!(diff > 0, "final sessions are only ever inserted");
        let pending = self.pending.entry(final_at).or_default();
        for _ in 0..diff {
            pending.push(viewed.clone());
        }
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(SimilarRow, isize)>) {
        // The end of the latest closed day; once the input has ended, everything.
        let until = match watermark {
            Millis::MAX => Millis::MAX,
            Millis::MIN => return,
            w => window_start(w, REFRESH),
        };
        if self.refreshed.is_some_and(|r| r >= until) && until != Millis::MAX {
            return;
        }
        self.refreshed = Some(until);
        let mut counted = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > until {
                break;
            }
            counted.extend(entry.remove());
        }
        if counted.is_empty() {
            return;
        }
        let mut ranked = Vec::new();
        for viewed in counted {
            let products: Vec<u32> = viewed.iter().map(|p| self.number(p)).collect();
            for &p in &products {
                self.sessions[p as usize] += 1;
                let others = &mut self.together[p as usize];
                for &q in products.iter().filter(|q| **q != p) {
                    *others.entry(q).or_default() += 1;
                }
            }
            ranked.extend(products);
        }
        ranked.sort_unstable();
        ranked.dedup();
        let moved = ranked.len();
        for i in 0..moved {
            ranked.extend(self.listed_by[ranked[i] as usize].iter().copied());
        }
        ranked.sort_unstable();
        ranked.dedup();
        for p in ranked {
            let rows = self.rank(p);
            self.relist(p, rows, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Similar {
        fn listed_of(&self, p: &str) -> Vec<SimilarRow> {
            let n = self.numbers[p];
            self.listed[n as usize].iter().map(|l| self.row(n, l)).collect()
        }
    }

    fn close(similar: &mut Similar, sessions: &[&[&str]]) -> Vec<(SimilarRow, isize)> {
        for viewed in sessions {
            similar.absorb((0, viewed.iter().map(Text::new).collect()), 1);
        }
        let mut out = Vec::new();
        similar.close_epoch(Millis::MAX, &mut out);
        out
    }

    fn keys(out: &[(SimilarRow, isize)], sign: isize) -> Vec<(String, String, i64, i64, i64)> {
        let mut keys: Vec<_> = out
            .iter()
            .filter(|(_, d)| *d == sign)
            .map(|(r, _)| {
                (r.product_id.to_string(), r.other_product_id.to_string(), r.sessions_together, r.product_sessions, r.other_sessions)
            })
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn pairs_in_two_sessions_or_more_both_ways_with_their_counts() {
        let mut similar = Similar::default();
        let out = close(&mut similar, &[&["a", "b"], &["a", "b", "c"], &["a"], &["c"]]);
        assert_eq!(
            keys(&out, 1),
            [("a".into(), "b".into(), 2, 3, 2), ("b".into(), "a".into(), 2, 2, 3)],
            "a-c and b-c share one session only"
        );
        assert!(keys(&out, -1).is_empty());
    }

    #[test]
    fn ranks_by_similarity_compared_exactly_then_by_id() {
        let mut similar = Similar::default();
        // p with q1: together 2, n_q1 = 2 (similarity ∝ 2/√2 = √2); with q2: together 3,
        // n_q2 = 9 (∝ 3/3 = 1); with q3: together 2, n_q3 = 2, tied with q1 and after it.
        let mut sessions: Vec<Vec<&str>> = vec![vec!["p", "q1"], vec!["p", "q1"], vec!["p", "q3"], vec!["p", "q3"]];
        sessions.extend(std::iter::repeat_n(vec!["p", "q2"], 3));
        sessions.extend(std::iter::repeat_n(vec!["q2"], 6));
        let sessions: Vec<&[&str]> = sessions.iter().map(|s| s.as_slice()).collect();
        close(&mut similar, &sessions);
        let order: Vec<String> = similar.listed_of("p").iter().map(|r| r.other_product_id.to_string()).collect();
        assert_eq!(order, ["q1", "q3", "q2"]);
        // Equal similarities that floats may round apart: 2/√8 = 3/√18 (n_p common).
        assert_eq!(better(2, 8, 3, 18), Ordering::Equal);
    }

    #[test]
    fn a_product_listed_elsewhere_whose_count_grows_is_ranked_again() {
        let mut similar = Similar::default();
        // p lists q (similarity 2/√(2·2) = 1): q then gets 6 sessions of its own.
        close(&mut similar, &[&["p", "q"], &["p", "q"], &["p", "r"], &["p", "r"], &["r"], &["r"]]);
        assert_eq!(similar.listed_of("p")[0].other_product_id, "q");
        let out = close(&mut similar, &[&["q"], &["q"], &["q"], &["q"], &["q"], &["q"]]);
        // p's row for q changes (n_q 2 → 8) and falls behind r (2/√4 > 2/√8).
        assert!(keys(&out, -1).contains(&("p".into(), "q".into(), 2, 4, 2)), "{out:?}");
        assert!(keys(&out, 1).contains(&("p".into(), "q".into(), 2, 4, 8)), "{out:?}");
        let order: Vec<String> = similar.listed_of("p").iter().map(|r| r.other_product_id.to_string()).collect();
        assert_eq!(order, ["r", "q"]);
    }

    #[test]
    fn the_top_ten_change_by_retraction_and_insertion() {
        let mut similar = Similar::default();
        // p viewed twice with each of eleven others of equal counts: ten are kept, by name.
        let names: Vec<String> = (0..11).map(|i| format!("q{i:02}")).collect();
        let mut sessions: Vec<Vec<&str>> = Vec::new();
        for q in &names {
            sessions.extend([vec!["p", q.as_str()], vec!["p", q.as_str()]]);
        }
        let slices: Vec<&[&str]> = sessions.iter().map(|s| s.as_slice()).collect();
        let out = close(&mut similar, &slices);
        let p_rows: Vec<String> = out.iter().filter(|(r, _)| r.product_id == "p").map(|(r, _)| r.other_product_id.to_string()).collect();
        assert_eq!(p_rows.len(), TOP);
        assert!(!p_rows.contains(&"q10".to_owned()), "ties broken by other_product_id: q10 is eleventh");
        // A third session with q10 puts it first and pushes q09 out (p's other rows are
        // rewritten too: each carries n_p, which moved).
        let out = close(&mut similar, &[&["p", "q10"]]);
        let of_p = |sign| keys(&out, sign).into_iter().filter(|k| k.0 == "p").map(|k| k.1).collect::<Vec<String>>();
        let (inserted, retracted) = (of_p(1), of_p(-1));
        assert!(inserted.contains(&"q10".to_owned()) && !inserted.contains(&"q09".to_owned()), "{inserted:?}");
        assert!(retracted.contains(&"q09".to_owned()), "{retracted:?}");
        assert!(!similar.listed_by[similar.numbers["q09"] as usize].contains(&similar.numbers["p"]), "q09 no longer listed by p");
    }

    #[test]
    fn sessions_count_once_the_day_they_became_final_in_has_closed() {
        const H: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z
        let mut similar = Similar::default();
        let ab = || vec![Text::new("a"), Text::new("b")];
        // Final at 00:10 and at 23:50 of the first day, and at 00:10 of the next.
        for final_at in [H + 600_000, H + REFRESH - 600_000, H + REFRESH + 600_000] {
            similar.absorb((final_at, ab()), 1);
        }
        let mut out = Vec::new();
        similar.close_epoch(H + REFRESH - 1, &mut out);
        assert!(out.is_empty(), "the first day is still open: {out:?}");
        similar.close_epoch(H + REFRESH + 900_000, &mut out);
        assert_eq!(keys(&out, 1), [("a".into(), "b".into(), 2, 2, 2), ("b".into(), "a".into(), 2, 2, 2)], "two sessions by midnight");
        out.clear();
        similar.close_epoch(H + 2 * REFRESH - 1, &mut out);
        assert!(out.is_empty(), "the third session waits for the second midnight: {out:?}");
        similar.close_epoch(H + 2 * REFRESH, &mut out);
        assert_eq!(keys(&out, 1), [("a".into(), "b".into(), 3, 3, 3), ("b".into(), "a".into(), 3, 3, 3)]);
    }
}
