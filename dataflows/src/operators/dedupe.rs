//! `Dedupe`: the dedupe of CONTRACT §1–2 between the processes of a cluster, as an
//! [`EpochLogic`] keyed by `event_id`.
//!
//! Within a process, admission (`ingest`) drops a copy of an event it accepted before,
//! from any partition that process reads. A copy read by another process is only seen
//! here: every event a process accepts is routed to the worker that owns its id, which
//! keeps the ids it let through until W passes their `event_time` + the horizon. Of the
//! copies of one id, the one in the earliest epoch wins; within an epoch, the one with
//! the smallest (source partition, message number), so the winner depends on the input
//! and the epochs, never on which worker delivered first. Owns nothing else: no
//! watermark, no rows.

use serde::{Deserialize, Serialize};

use super::by_epoch::EpochLogic;
use crate::event::{Event, Text};
use crate::ingest::SeenIds;
use crate::time::Millis;

/// An event accepted by its process's admission, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// The source partition that delivered it.
    pub source: Text,
    /// Its message number within that partition (its running input count).
    pub number: u64,
    pub event: Event,
}

/// What became of a candidate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // made once per event and consumed at once, as `ingest::Admission`
pub enum Verdict {
    /// The first copy: it is aggregated.
    Accepted(Event),
    /// A later copy of an event accepted from this source partition's process or
    /// another: counted as a duplicate of that source.
    Duplicate(Text),
}

/// The ids let through, and the candidates of the epoch being closed.
pub struct Dedupe {
    seen: SeenIds,
    epoch: Vec<Candidate>,
}

impl Dedupe {
    /// Remembers ids for `horizon` (`--dedupe-horizon`) past their event time.
    pub fn new(horizon: Millis) -> Self {
        Dedupe { seen: SeenIds::new(horizon), epoch: Vec::new() }
    }
}

impl EpochLogic for Dedupe {
    type In = Candidate;
    type Out = Verdict;

    fn absorb(&mut self, candidate: Candidate, diff: isize) {
        debug_assert_eq!(diff, 1, "candidates are only ever inserted");
        self.epoch.push(candidate);
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(Verdict, isize)>) {
        self.epoch.sort_unstable_by(|a, b| (&a.event.event_id, &a.source, a.number).cmp(&(&b.event.event_id, &b.source, b.number)));
        for c in self.epoch.drain(..) {
            let verdict = if self.seen.insert(&c.event.event_id, c.event.event_time, watermark) {
                Verdict::Accepted(c.event)
            } else {
                Verdict::Duplicate(c.source)
            };
            out.push((verdict, 1));
        }
        self.seen.sweep(watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use crate::ingest::tests::line;

    const NOW: Millis = 1_800_000_000_000;
    const T0: Millis = 1_761_984_000_000;
    const HOUR: Millis = 3_600_000;

    fn candidate(source: &str, number: u64, id: &str, time: Millis) -> Candidate {
        Candidate { source: source.into(), number, event: parse_event(&line(id, time), NOW).expect("valid") }
    }

    fn close(d: &mut Dedupe, watermark: Millis, candidates: Vec<Candidate>) -> Vec<String> {
        for c in candidates {
            d.absorb(c, 1);
        }
        let mut out = Vec::new();
        d.close_epoch(watermark, &mut out);
        let mut said: Vec<String> = out
            .into_iter()
            .map(|(v, _)| match v {
                Verdict::Accepted(e) => format!("accepted {} from {}", e.event_id, e.page),
                Verdict::Duplicate(s) => format!("duplicate from {s}"),
            })
            .collect();
        said.sort();
        said
    }

    #[test]
    fn within_an_epoch_the_smallest_source_and_number_wins_whatever_the_arrival_order() {
        let mut d = Dedupe::new(HOUR);
        let mut b = candidate("p1", 7, "x", T0);
        b.event.page = "/from-p1".into();
        let mut a = candidate("p0", 9, "x", T0);
        a.event.page = "/from-p0".into();
        let said = close(&mut d, T0, vec![b, a, candidate("p1", 8, "y", T0)]);
        assert_eq!(said, ["accepted x from /from-p0", "accepted y from /", "duplicate from p1"]);
    }

    #[test]
    fn an_earlier_epoch_wins_until_the_watermark_passes_the_horizon() {
        let mut d = Dedupe::new(HOUR);
        assert_eq!(close(&mut d, T0, vec![candidate("p1", 1, "x", T0)]), ["accepted x from /"]);
        assert_eq!(close(&mut d, T0 + HOUR, vec![candidate("p0", 1, "x", T0)]), ["duplicate from p0"], "W = time + horizon: remembered");
        assert_eq!(close(&mut d, T0 + HOUR + 1, vec![candidate("p0", 2, "x", T0 + HOUR + 1)]), ["accepted x from /"], "forgotten");
    }
}
