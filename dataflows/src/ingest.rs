//! Admission of parsed messages, before they enter the dataflow: the watermark, lateness
//! and dedupe of CONTRACT §1–2, one message at a time in input order.
//!
//! Owns the running watermark W and the set of recently accepted `event_id`s. It runs
//! where the input is read (timely capabilities cannot move backwards, so nothing late
//! may enter the graph). It knows nothing of windows, sessions or I/O.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::event::{parse_event, Event, Reason, Rejection};
use crate::time::Millis;

/// What became of one message.
#[derive(Debug)]
pub enum Admission {
    /// Valid, on time and new: it is aggregated.
    Accepted(Event),
    /// Its `event_id` was accepted before: counted, otherwise dropped.
    Duplicate,
    /// Goes to `dead_letters` with this reason.
    Rejected(Rejection),
}

/// Running totals of what `Ingest` decided, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub input: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub late: u64,
}

/// Watermark, lateness and dedupe for one input partition.
///
/// The partition watermark is the largest accepted `event_time` minus the delay; a
/// rejected message never moves it. An event with `event_time < W` is late. Among events
/// that are not late, a second one with an accepted `event_id` is a duplicate. An id is
/// remembered until W passes its event time: any later copy of that event is late.
pub struct Ingest {
    watermark_delay: Millis,
    max_event_time: Option<Millis>,
    seen: HashSet<Arc<str>>,
    expiry: BTreeMap<Millis, Vec<Arc<str>>>,
    counts: Counts,
}

impl Ingest {
    pub fn new(watermark_delay: Millis) -> Self {
        Ingest { watermark_delay, max_event_time: None, seen: HashSet::new(), expiry: BTreeMap::new(), counts: Counts::default() }
    }

    /// The watermark W: `Millis::MIN` before the first accepted event.
    pub fn watermark(&self) -> Millis {
        self.max_event_time.map_or(Millis::MIN, |t| t.saturating_sub(self.watermark_delay))
    }

    /// The largest accepted event time so far.
    pub fn max_event_time(&self) -> Option<Millis> {
        self.max_event_time
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Decides one message; `now` is the wall clock for the future-time rule.
    pub fn admit(&mut self, bytes: &[u8], now: Millis) -> Admission {
        self.counts.input += 1;
        let admission = match parse_event(bytes, now) {
            Err(rejection) => Admission::Rejected(rejection),
            Ok(event) => self.admit_event(event),
        };
        match &admission {
            Admission::Accepted(_) => self.counts.accepted += 1,
            Admission::Duplicate => self.counts.duplicates += 1,
            Admission::Rejected(r) => {
                self.counts.dead_letters += 1;
                if r.reason == Reason::Late {
                    self.counts.late += 1;
                }
            }
        }
        admission
    }

    fn admit_event(&mut self, event: Event) -> Admission {
        let watermark = self.watermark();
        if event.event_time < watermark {
            return Admission::Rejected(Rejection::new(
                Reason::Late,
                format!(
                    "event_time {} is before the watermark {}",
                    crate::time::format_rfc3339(event.event_time),
                    crate::time::format_rfc3339(watermark)
                ),
            ));
        }
        if self.seen.contains(event.event_id.as_str()) {
            return Admission::Duplicate;
        }
        let id: Arc<str> = Arc::from(event.event_id.as_str());
        self.seen.insert(id.clone());
        self.expiry.entry(event.event_time).or_default().push(id);
        if self.max_event_time.is_none_or(|m| event.event_time > m) {
            self.max_event_time = Some(event.event_time);
            self.forget_before(self.watermark());
        }
        Admission::Accepted(event)
    }

    fn forget_before(&mut self, watermark: Millis) {
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() >= watermark {
                break;
            }
            for id in entry.remove() {
                self.seen.remove(&id);
            }
        }
    }

    /// How many event ids are remembered for dedupe (for memory figures and tests).
    pub fn remembered_ids(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_rfc3339;

    const NOW: Millis = 1_800_000_000_000;
    const T0: Millis = 1_761_984_000_000;

    pub(crate) fn line(id: &str, t: Millis) -> Vec<u8> {
        format!(
            r#"{{"event_id":"{id}","event_time":"{}","event_type":"page_view","user_id":"u","page":"/","device":"desktop","country":"US","referrer":"direct","user_agent":"ua","ip":"10.0.0.1"}}"#,
            format_rfc3339(t)
        )
        .into_bytes()
    }

    fn is_accepted(a: &Admission) -> bool {
        matches!(a, Admission::Accepted(_))
    }

    #[test]
    fn late_event_is_dead_lettered_and_counted() {
        let mut ingest = Ingest::new(60_000);
        assert!(is_accepted(&ingest.admit(&line("a", T0 + 120_000), NOW)));
        assert_eq!(ingest.watermark(), T0 + 60_000);
        assert!(is_accepted(&ingest.admit(&line("b", T0 + 60_000), NOW)), "exactly at W is on time");
        match ingest.admit(&line("c", T0 + 59_999), NOW) {
            Admission::Rejected(r) => assert_eq!(r.reason, Reason::Late),
            other => panic!("expected late, got {other:?}"),
        }
        assert_eq!(ingest.counts(), Counts { input: 3, accepted: 2, duplicates: 0, dead_letters: 1, late: 1 });
    }

    #[test]
    fn duplicate_counts_once_first_wins() {
        let mut ingest = Ingest::new(60_000);
        assert!(is_accepted(&ingest.admit(&line("a", T0), NOW)));
        assert!(matches!(ingest.admit(&line("a", T0 + 1), NOW), Admission::Duplicate));
        assert_eq!(ingest.max_event_time(), Some(T0), "a duplicate does not move the watermark");
        assert_eq!(ingest.counts().duplicates, 1);
    }

    #[test]
    fn rejected_messages_do_not_move_the_watermark() {
        let mut ingest = Ingest::new(60_000);
        ingest.admit(&line("a", T0), NOW);
        let far_future = line("f", NOW + 3_600_000);
        assert!(matches!(ingest.admit(&far_future, NOW), Admission::Rejected(r) if r.reason == Reason::FutureEventTime));
        assert_eq!(ingest.watermark(), T0 - 60_000);
        assert!(is_accepted(&ingest.admit(&line("b", T0 - 30_000), NOW)));
    }

    #[test]
    fn forgets_ids_once_the_watermark_passes_them() {
        let mut ingest = Ingest::new(60_000);
        for i in 0..100 {
            ingest.admit(&line(&format!("e{i}"), T0 + i * 1000), NOW);
        }
        assert_eq!(ingest.remembered_ids(), 61);
        // A copy of a forgotten event is late, never accepted twice.
        assert!(matches!(ingest.admit(&line("e0", T0), NOW), Admission::Rejected(r) if r.reason == Reason::Late));
    }
}
