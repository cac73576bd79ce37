//! `clickflow evaluate`: how well `session_risk` tells the simulator's bots from its
//! shoppers. Reads the labels file `produce --labels` wrote and, from PostgreSQL, the
//! final sessions and the flagged ones; writes nothing. The processor never reads the
//! labels: this is the only place they meet the results.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::{bail, Context, Result};
use dataflows::time::{parse_rfc3339, Millis};
use postgres::{Client, NoTls};
use serde::Serialize;

use crate::sink::postgres::redact;

/// A label's kind for sessions no label names.
const HUMAN: &str = "human";

/// Sessions and flagged sessions, by truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub sessions: u64,
    pub flagged: u64,
}

/// The quality of the flags against the labels.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Per bot kind.
    pub kinds: BTreeMap<String, Tally>,
    pub humans: Tally,
    /// Labels naming no final session (their first event was late or malformed).
    pub labels_without_session: u64,
}

impl Quality {
    /// Tallies `sessions` (`(user_id, session_start)` and whether it is flagged) against
    /// `labels` (`(user_id, session_start)` to kind).
    pub fn of(labels: &HashMap<(String, Millis), String>, sessions: impl IntoIterator<Item = ((String, Millis), bool)>) -> Quality {
        let mut q = Quality::default();
        let mut matched = 0;
        for (key, flagged) in sessions {
            let tally = match labels.get(&key) {
                Some(kind) => {
                    matched += 1;
                    q.kinds.entry(kind.clone()).or_default()
                }
                None => &mut q.humans,
            };
            tally.sessions += 1;
            tally.flagged += u64::from(flagged);
        }
        q.labels_without_session = labels.len() as u64 - matched;
        q
    }

    /// Flagged bot sessions over all flagged sessions; `None` when none is flagged.
    pub fn precision(&self) -> Option<f64> {
        let bots: u64 = self.kinds.values().map(|t| t.flagged).sum();
        ratio(bots, bots + self.humans.flagged)
    }

    /// Flagged human sessions over human sessions.
    pub fn false_positive_rate(&self) -> Option<f64> {
        ratio(self.humans.flagged, self.humans.sessions)
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn percent(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.2} %", 100.0 * r))
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<14} {:>9} {:>9} {:>9}", "truth", "sessions", "flagged", "rate")?;
        for (kind, t) in &self.kinds {
            writeln!(f, "{kind:<14} {:>9} {:>9} {:>9}  recall", t.sessions, t.flagged, percent(ratio(t.flagged, t.sessions)))?;
        }
        let h = self.humans;
        writeln!(f, "{HUMAN:<14} {:>9} {:>9} {:>9}  false-positive rate", h.sessions, h.flagged, percent(self.false_positive_rate()))?;
        writeln!(f, "precision: {}", percent(self.precision()))?;
        write!(f, "labels without a session: {}", self.labels_without_session)
    }
}

/// The labels file: `user_id,session_start,kind` after a header.
pub fn read_labels(path: &str) -> Result<HashMap<(String, Millis), String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read labels file {path}"))?;
    let mut labels = HashMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [user, start, kind] = fields[..] else { bail!("{path}:{}: expected user_id,session_start,kind", n + 1) };
        let start = parse_rfc3339(start).map_err(|e| anyhow::anyhow!("{path}:{}: session_start: {e:?}", n + 1))?;
        labels.insert((user.to_owned(), start), kind.to_owned());
    }
    Ok(labels)
}

/// Evaluates the final sessions in the database at `url` against the labels at `path`.
pub fn run(url: &str, path: &str) -> Result<Quality> {
    let labels = read_labels(path)?;
    let mut client = Client::connect(url, NoTls).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    let rows = client
        .query(
            "SELECT s.user_id, (extract(epoch FROM s.session_start) * 1000)::bigint, r.user_id IS NOT NULL
             FROM sessions s LEFT JOIN session_risk r USING (user_id, session_start) WHERE s.is_final",
            &[],
        )
        .context("cannot read the sessions and session_risk")?;
    Ok(Quality::of(&labels, rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_per_kind_false_positives_precision_and_lost_labels() {
        let labels: HashMap<(String, Millis), String> =
            [(("b1", 10), "scraper"), (("b2", 20), "scraper"), (("b3", 30), "card_tester"), (("b4", 40), "scraper")]
                .into_iter()
                .map(|((u, t), k)| ((u.to_owned(), t), k.to_owned()))
                .collect();
        let sessions =
            [(("b1", 10), true), (("b2", 20), false), (("b3", 30), true), (("h1", 10), false), (("h2", 5), true), (("b1", 99), false)];
        let q = Quality::of(&labels, sessions.into_iter().map(|((u, t), f)| ((u.to_owned(), t), f)));
        assert_eq!(q.kinds["scraper"], Tally { sessions: 2, flagged: 1 });
        assert_eq!(q.kinds["card_tester"], Tally { sessions: 1, flagged: 1 });
        assert_eq!(q.humans, Tally { sessions: 3, flagged: 1 }, "a bot's other session is not labelled: a human's");
        assert_eq!(q.labels_without_session, 1);
        assert_eq!(q.precision(), Some(2.0 / 3.0));
        assert_eq!(q.false_positive_rate(), Some(1.0 / 3.0));
        let shown = q.to_string();
        assert!(shown.contains("scraper") && shown.contains("50.00 %") && shown.contains("66.67 %"), "{shown}");
    }

    #[test]
    fn a_bad_labels_line_is_named() {
        let path = std::env::temp_dir().join(format!("labels-{}.csv", std::process::id()));
        std::fs::write(&path, "user_id,session_start,kind\nu1,2026-11-01T00:00:00Z\n").unwrap();
        let e = read_labels(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.ends_with(":2: expected user_id,session_start,kind"), "{e}");
    }
}
