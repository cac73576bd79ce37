//! Admission of parsed messages, before they enter the dataflow: the watermark, lateness
//! and dedupe of CONTRACT §1–2, one message at a time in input order.
//!
//! Owns what the partitions of an input share within a process ([`InputState`]: the
//! watermark clock and the ids of recently accepted events) and each partition's
//! admission ([`Ingest`]). Between the processes of a cluster, each partition's [`Clock`]
//! travels through the dataflow (see `pipeline`), and so do the accepted events, for the
//! dedupe between processes (`operators::dedupe`, with the same [`SeenIds`]). It runs where the input is read (timely capabilities cannot
//! move backwards, so nothing late may enter the graph). It knows nothing of windows,
//! sessions or I/O; wall-clock times are passed in. A restarted processor hands back what
//! it committed ([`InputState::restore`], [`Ingest::resume`]) and admission carries on as
//! if it had never stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::event::{parse_event, Event, Reason, Rejection};
use crate::time::{format_rfc3339, Millis};

/// What became of one message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per message and consumed at once: boxing would cost an allocation each
pub enum Admission {
    /// Valid, on time and new: it is aggregated.
    Accepted(Event),
    /// Its `event_id` was accepted before: counted, otherwise dropped.
    Duplicate,
    /// Goes to `dead_letters` with this reason.
    Rejected(Rejection),
}

/// Running totals of what an `Ingest` decided, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub input: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub late: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.input += o.input;
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
        self.dead_letters += o.dead_letters;
        self.late += o.late;
    }
}

struct Partition {
    max_event_time: Option<Millis>,
    /// Wall-clock time of the last accepted event, or of registration before any.
    active_at: Millis,
}

/// The ids of accepted events within the dedupe horizon, with their event times, kept
/// compactly: a canonical lower-case UUID as 16 bytes, anything else as its text.
///
/// An id is remembered until W passes its `event_time + horizon` (CONTRACT §2). Whether
/// it still counts is decided against the W of the admission itself, so the answer does
/// not depend on when expired ids are swept out; sweeps only bound memory.
pub(crate) struct SeenIds {
    horizon: Millis,
    uuids: HashMap<u128, Millis>,
    others: HashMap<Box<str>, Millis>,
    /// W at the last sweep.
    swept_at: Millis,
}

impl SeenIds {
    pub(crate) fn new(horizon: Millis) -> Self {
        SeenIds { horizon, uuids: HashMap::new(), others: HashMap::new(), swept_at: Millis::MIN }
    }

    /// The event time held for `id`, `Millis::MIN` where none is (a new slot).
    fn slot(&mut self, id: &str) -> &mut Millis {
        match canonical_uuid(id) {
            Some(u) => self.uuids.entry(u).or_insert(Millis::MIN),
            None => {
                if !self.others.contains_key(id) {
                    self.others.insert(id.into(), Millis::MIN);
                }
                self.others.get_mut(id).expect("just made sure it is there")
            }
        }
    }

    /// Remembers `id` accepted at `time`; false if it was already remembered at `watermark`.
    pub(crate) fn insert(&mut self, id: &str, time: Millis, watermark: Millis) -> bool {
        let horizon = self.horizon;
        let held = self.slot(id);
        if *held != Millis::MIN && held.saturating_add(horizon) >= watermark {
            return false;
        }
        *held = time;
        true
    }

    /// Remembers `id` as accepted at `time` (the later time where it is already held).
    fn remember(&mut self, id: &str, time: Millis) {
        let held = self.slot(id);
        *held = (*held).max(time);
    }

    /// Forgets the ids W has passed, once W has moved an eighth of the horizon since the
    /// last sweep, so memory stays within about 9/8 of the horizon's traffic.
    pub(crate) fn sweep(&mut self, watermark: Millis) {
        if watermark <= self.swept_at.saturating_add((self.horizon / 8).max(1)) {
            return;
        }
        let horizon = self.horizon;
        let live = |t: &mut Millis| t.saturating_add(horizon) >= watermark;
        self.uuids.retain(|_, t| live(t));
        self.others.retain(|_, t| live(t));
        self.swept_at = watermark;
    }

    fn len(&self) -> usize {
        self.uuids.len() + self.others.len()
    }
}

/// The 128 bits of a UUID written as 36 lower-case hex digits and hyphens, else `None`
/// (so that two different strings never share a key).
fn canonical_uuid(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        let digit = match (i, c) {
            (8 | 13 | 18 | 23, b'-') => continue,
            (8 | 13 | 18 | 23, _) => return None,
            (_, b'0'..=b'9') => c - b'0',
            (_, b'a'..=b'f') => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(digit);
    }
    Some(v)
}

/// What one process tells the others of a partition it reads, at the end of each epoch:
/// enough for their W (CONTRACT §2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Clock {
    pub partition: String,
    /// The largest event time accepted from the partition.
    pub max_event_time: Option<Millis>,
    /// Wall-clock time of its last accepted event (or of its registration before any),
    /// on the reading process's clock: the processes' clocks are assumed synchronised to
    /// well within `--idle-timeout`.
    pub active_at: Millis,
}

/// What the processes of a cluster tell each other through the dataflow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Notice {
    /// How a partition read by the sender stands, at the end of one of its epochs.
    Clock(Clock),
    /// The sender was asked to stop (SIGTERM, Ctrl-C): every process stops reading, so
    /// that no partition is left unread while the others' watermark moves on.
    Stop,
}

struct State {
    delay: Millis,
    idle_timeout: Millis,
    partitions: HashMap<String, Partition>,
    current: Millis,
    seen: SeenIds,
    /// A [`Notice::Stop`] arrived.
    stopping: bool,
}

impl State {
    fn watermark(&mut self, now: Millis) -> Millis {
        let idle_before = now.saturating_sub(self.idle_timeout);
        let delay = self.delay;
        let active = self.partitions.values().filter(|p| p.active_at >= idle_before);
        let computed = active.map(|p| p.max_event_time.map_or(Millis::MIN, |t| t.saturating_sub(delay))).min();
        if let Some(w) = computed {
            self.current = self.current.max(w);
        }
        self.seen.sweep(self.current);
        self.current
    }
}

/// What the partitions of one input share within a process: the watermark W
/// (CONTRACT §2) and the ids of events accepted within the dedupe horizon. Cloning
/// shares it.
///
/// W is the minimum, over the partitions that accepted an event within `idle_timeout`,
/// of the partition's largest accepted event time minus the delay. A partition
/// registered but without data yet holds W back until it has data or `idle_timeout`
/// passes, so that a lagging partition is not made late by a fast one at start. W never
/// goes backwards.
#[derive(Clone)]
pub struct InputState {
    state: Arc<Mutex<State>>,
}

impl InputState {
    /// `delay` is `--watermark-delay`, `idle_timeout` `--idle-timeout`, `horizon`
    /// `--dedupe-horizon`.
    pub fn new(delay: Millis, idle_timeout: Millis, horizon: Millis) -> Self {
        let state =
            State { delay, idle_timeout, partitions: HashMap::new(), current: Millis::MIN, seen: SeenIds::new(horizon), stopping: false };
        InputState { state: Arc::new(Mutex::new(state)) }
    }

    /// Restores what a previous run committed: its watermark, the largest event time
    /// each partition had accepted, and the ids (with event times) of the events it
    /// accepted within the horizon of that watermark. Register the partitions first.
    pub fn restore(
        &self,
        watermark: Millis,
        partitions: impl IntoIterator<Item = (String, Millis)>,
        ids: impl IntoIterator<Item = (String, Millis)>,
    ) {
        let mut state = self.lock();
        state.current = state.current.max(watermark);
        for (name, max_event_time) in partitions {
            if let Some(p) = state.partitions.get_mut(&name) {
                p.max_event_time = Some(max_event_time);
            }
        }
        for (id, time) in ids {
            state.seen.remember(&id, time);
        }
    }

    /// Ids held for dedupe now, for progress figures and tests of the horizon.
    pub fn remembered_ids(&self) -> usize {
        self.lock().seen.len()
    }

    /// Declares a partition of the input, at wall-clock time `now`. Declare every
    /// partition before any is read, so that none is left out of W at the start.
    pub fn register(&self, partition: &str, now: Millis) {
        let mut state = self.lock();
        state.partitions.entry(partition.to_owned()).or_insert(Partition { max_event_time: None, active_at: now });
    }

    /// W at wall-clock time `now`.
    pub fn watermark(&self, now: Millis) -> Millis {
        self.lock().watermark(now)
    }

    /// What the other processes need of `partition` for their W.
    pub fn clock(&self, partition: &str) -> Option<Clock> {
        let state = self.lock();
        let p = state.partitions.get(partition)?;
        Some(Clock { partition: partition.to_owned(), max_event_time: p.max_event_time, active_at: p.active_at })
    }

    /// Takes in another process's notice. A partition's reports only ever add to what is
    /// known (a later event time, a later activity), so one that arrives late or twice
    /// changes nothing; until one arrives, the partition holds W where it is, for
    /// `idle_timeout` after reading started.
    pub fn observe(&self, notice: &Notice) {
        let mut state = self.lock();
        match notice {
            Notice::Clock(clock) => {
                let p = state
                    .partitions
                    .entry(clock.partition.clone())
                    .or_insert(Partition { max_event_time: None, active_at: clock.active_at });
                p.max_event_time = p.max_event_time.max(clock.max_event_time);
                p.active_at = p.active_at.max(clock.active_at);
            }
            Notice::Stop => state.stopping = true,
        }
    }

    /// Whether another process was asked to stop (see [`Notice::Stop`]).
    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Marks every partition active at `now`, when reading starts: the time spent
    /// restoring, or waiting for the other processes of a cluster, does not count
    /// towards `idle_timeout`.
    pub fn start_reading(&self, now: Millis) {
        for p in self.lock().partitions.values_mut() {
            p.active_at = p.active_at.max(now);
        }
    }

    /// The dedupe horizon.
    pub fn dedupe_horizon(&self) -> Millis {
        self.lock().seen.horizon
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single step, so a panic elsewhere cannot leave it half done.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Admission for one input partition, against its input's [`InputState`].
///
/// An event with `event_time < W` is late. Among events that are not late, one whose
/// `event_id` was accepted before, from any partition, and is still within the dedupe
/// horizon is a duplicate: the first accepted copy wins.
pub struct Ingest {
    input: InputState,
    partition: String,
    max_event_time: Option<Millis>,
    counts: Counts,
}

impl Ingest {
    /// Admission for `partition` of the input whose shared state is `input`.
    pub fn new(input: InputState, partition: &str, now: Millis) -> Self {
        input.register(partition, now);
        Ingest { input, partition: partition.to_owned(), max_event_time: None, counts: Counts::default() }
    }

    /// Admission for an input of one partition that never idles (a file, stdin).
    pub fn single(watermark_delay: Millis, dedupe_horizon: Millis) -> Self {
        Ingest::new(InputState::new(watermark_delay, Millis::MAX, dedupe_horizon), "", 0)
    }

    /// Carries on from what a previous run committed for this partition: its running
    /// totals and the largest event time it accepted (restore the input's share with
    /// [`InputState::restore`]).
    pub fn resume(&mut self, counts: Counts, max_event_time: Option<Millis>) {
        self.counts = counts;
        self.max_event_time = max_event_time;
    }

    /// The input's watermark W at wall-clock time `now`.
    pub fn watermark(&self, now: Millis) -> Millis {
        self.input.watermark(now)
    }

    /// The partition this admits for.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The largest event time accepted from this partition.
    pub fn max_event_time(&self) -> Option<Millis> {
        self.max_event_time
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Decides one message; `now` is the wall clock for the future-time and idle rules.
    pub fn admit(&mut self, bytes: &[u8], now: Millis) -> Admission {
        self.counts.input += 1;
        let admission = match parse_event(bytes, now) {
            Err(rejection) => Admission::Rejected(rejection),
            Ok(event) => self.admit_event(event, now),
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

    fn admit_event(&mut self, event: Event, now: Millis) -> Admission {
        let mut state = self.input.lock();
        let watermark = state.watermark(now);
        if event.event_time < watermark {
            return Admission::Rejected(Rejection::new(
                Reason::Late,
                format!("event_time {} is before the watermark {}", format_rfc3339(event.event_time), format_rfc3339(watermark)),
            ));
        }
        if !state.seen.insert(&event.event_id, event.event_time, watermark) {
            return Admission::Duplicate;
        }
        let p = state.partitions.entry(self.partition.clone()).or_insert(Partition { max_event_time: None, active_at: now });
        p.max_event_time = Some(p.max_event_time.map_or(event.event_time, |m| m.max(event.event_time)));
        p.active_at = now;
        // W takes the event in now, while its partition is active: a partition that then
        // falls idle (a stalled reader, a slow database) must not leave it behind.
        state.watermark(now);
        drop(state);
        if self.max_event_time.is_none_or(|m| event.event_time > m) {
            self.max_event_time = Some(event.event_time);
        }
        Admission::Accepted(event)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;
    const T0: Millis = 1_761_984_000_000;
    const DAY: Millis = 86_400_000;

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
        let mut ingest = Ingest::single(60_000, DAY);
        assert!(is_accepted(&ingest.admit(&line("a", T0 + 120_000), NOW)));
        assert_eq!(ingest.watermark(NOW), T0 + 60_000);
        assert!(is_accepted(&ingest.admit(&line("b", T0 + 60_000), NOW)), "exactly at W is on time");
        match ingest.admit(&line("c", T0 + 59_999), NOW) {
            Admission::Rejected(r) => assert_eq!(r.reason, Reason::Late),
            other => panic!("expected late, got {other:?}"),
        }
        assert_eq!(ingest.counts(), Counts { input: 3, accepted: 2, duplicates: 0, dead_letters: 1, late: 1 });
    }

    #[test]
    fn duplicate_counts_once_first_wins() {
        let mut ingest = Ingest::single(60_000, DAY);
        assert!(is_accepted(&ingest.admit(&line("a", T0), NOW)));
        assert!(matches!(ingest.admit(&line("a", T0 + 1), NOW), Admission::Duplicate));
        assert_eq!(ingest.watermark(NOW), T0 - 60_000);
        assert_eq!(ingest.max_event_time(), Some(T0), "a duplicate does not move the watermark");
        assert_eq!(ingest.counts().duplicates, 1);
    }

    #[test]
    fn rejected_messages_do_not_move_the_watermark() {
        let mut ingest = Ingest::single(60_000, DAY);
        ingest.admit(&line("a", T0), NOW);
        let far_future = line("f", NOW + 3_600_000);
        assert!(matches!(ingest.admit(&far_future, NOW), Admission::Rejected(r) if r.reason == Reason::FutureEventTime));
        assert_eq!(ingest.watermark(NOW), T0 - 60_000);
        assert!(is_accepted(&ingest.admit(&line("b", T0 - 30_000), NOW)));
    }

    #[test]
    fn a_reused_id_is_a_duplicate_however_much_later() {
        let mut ingest = Ingest::single(60_000, DAY);
        assert!(is_accepted(&ingest.admit(&line("a", T0), NOW)));
        assert!(is_accepted(&ingest.admit(&line("b", T0 + 3_600_000), NOW)));
        assert!(matches!(ingest.admit(&line("a", T0 + 3_600_000), NOW), Admission::Duplicate));
        // An exact copy that arrives after W passed it is late (lateness is checked first).
        assert!(matches!(ingest.admit(&line("a", T0), NOW), Admission::Rejected(r) if r.reason == Reason::Late));
    }

    #[test]
    fn uuids_are_kept_compactly_without_confusing_spellings() {
        let lower = "3fe7cde8-72c7-4bc9-bb4c-36fa3bb07c26";
        assert!(canonical_uuid(lower).is_some());
        assert_eq!(canonical_uuid(&lower.to_uppercase()), None, "upper case is another string, kept as text");
        assert_eq!(canonical_uuid("3fe7cde8x72c7-4bc9-bb4c-36fa3bb07c26"), None);
        let mut seen = SeenIds::new(DAY);
        assert!(seen.insert(lower, T0, T0));
        assert!(seen.insert(&lower.to_uppercase(), T0, T0));
        assert!(!seen.insert(lower, T0, T0));
        assert!(!seen.insert(&lower.to_uppercase(), T0, T0));
    }

    #[test]
    fn watermark_is_the_minimum_over_active_partitions() {
        let clock = InputState::new(60_000, 30_000, DAY);
        let mut fast = Ingest::new(clock.clone(), "p0", NOW);
        let mut slow = Ingest::new(clock.clone(), "p1", NOW);
        assert!(is_accepted(&fast.admit(&line("a", T0 + 600_000), NOW)));
        assert_eq!(clock.watermark(NOW), Millis::MIN, "p1 has no data yet: it holds W back");
        assert!(is_accepted(&slow.admit(&line("b", T0), NOW + 1000)), "the lagging partition is not late");
        assert_eq!(clock.watermark(NOW + 1000), T0 - 60_000);
        // p1 falls silent: after the idle timeout it no longer holds W back.
        assert!(is_accepted(&fast.admit(&line("c", T0 + 601_000), NOW + 20_000)));
        assert_eq!(clock.watermark(NOW + 31_000), T0 - 60_000);
        assert_eq!(clock.watermark(NOW + 31_001), T0 + 541_000);
        // W never goes backwards, even when p1 wakes up with old data (which is late).
        assert!(matches!(slow.admit(&line("d", T0 + 1000), NOW + 40_000), Admission::Rejected(r) if r.reason == Reason::Late));
        assert_eq!(clock.watermark(NOW + 40_000), T0 + 541_000);
        // Dedupe spans partitions: the first accepted copy wins.
        assert!(matches!(slow.admit(&line("c", T0 + 601_000), NOW + 40_000), Admission::Duplicate));
    }

    #[test]
    fn another_process_partition_counts_once_its_clock_arrives() {
        // This process reads p0; p1 is read by another process, registered but unheard of.
        let clock = InputState::new(60_000, 30_000, DAY);
        clock.register("p1", NOW);
        let mut local = Ingest::new(clock.clone(), "p0", NOW);
        assert!(is_accepted(&local.admit(&line("a", T0 + 600_000), NOW)));
        assert_eq!(clock.watermark(NOW), Millis::MIN, "p1 holds W until its clock arrives");
        clock.observe(&Notice::Clock(Clock { partition: "p1".into(), max_event_time: Some(T0 + 120_000), active_at: NOW + 500 }));
        assert_eq!(clock.watermark(NOW + 1000), T0 + 60_000);
        // A stale or repeated report changes nothing.
        clock.observe(&Notice::Clock(Clock { partition: "p1".into(), max_event_time: Some(T0), active_at: NOW }));
        assert_eq!(clock.watermark(NOW + 1000), T0 + 60_000);
        assert_eq!(clock.clock("p1").unwrap().max_event_time, Some(T0 + 120_000));
        // Silent past the idle timeout (by its own reader's clock), p1 stops holding W.
        assert!(is_accepted(&local.admit(&line("b", T0 + 600_000), NOW + 30_000)));
        assert_eq!(clock.watermark(NOW + 30_500), T0 + 60_000);
        assert_eq!(clock.watermark(NOW + 30_501), T0 + 540_000);
        assert!(!clock.stopping());
        clock.observe(&Notice::Stop);
        assert!(clock.stopping());
    }

    #[test]
    fn the_idle_timeout_counts_from_when_reading_starts() {
        let clock = InputState::new(60_000, 30_000, DAY);
        clock.register("p1", NOW);
        let mut p0 = Ingest::new(clock.clone(), "p0", NOW);
        // Reading starts a minute after registration (a long restore, a slow peer).
        clock.start_reading(NOW + 60_000);
        assert!(is_accepted(&p0.admit(&line("a", T0 + 600_000), NOW + 60_001)));
        assert_eq!(clock.watermark(NOW + 60_001), Millis::MIN, "p1 has not delivered yet: it holds W");
        assert_eq!(clock.watermark(NOW + 90_001), T0 + 540_000, "until idle for --idle-timeout since reading started");
    }

    #[test]
    fn ids_are_forgotten_once_the_watermark_passes_the_horizon() {
        let hour = 3_600_000;
        let mut ingest = Ingest::new(InputState::new(60_000, Millis::MAX, hour), "", NOW);
        assert!(is_accepted(&ingest.admit(&line("a", T0), NOW)));
        // W = T0 + hour exactly: `a` (T0 + horizon = W) is still remembered.
        assert!(is_accepted(&ingest.admit(&line("b", T0 + hour + 60_000), NOW)));
        assert!(matches!(ingest.admit(&line("a", T0 + hour + 60_000), NOW), Admission::Duplicate));
        // One millisecond more and W has passed it: a reused id is a new event.
        assert!(is_accepted(&ingest.admit(&line("c", T0 + hour + 60_001), NOW)));
        assert!(is_accepted(&ingest.admit(&line("a", T0 + hour + 60_001), NOW)), "reused after the horizon");
        assert!(matches!(ingest.admit(&line("a", T0 + hour + 60_001), NOW), Admission::Duplicate), "the new copy is remembered");
    }

    #[test]
    fn dedupe_state_stays_bounded_by_the_horizon() {
        let (hour, step) = (3_600_000, 1_000);
        let input = InputState::new(60_000, Millis::MAX, hour);
        let mut ingest = Ingest::new(input.clone(), "", NOW);
        let mut most = 0;
        // Ten hours of one event a second; the horizon holds 3,600 of them.
        for i in 0..36_000 {
            assert!(is_accepted(&ingest.admit(&line(&format!("e{i}"), T0 + i * step), NOW)));
            most = most.max(input.remembered_ids());
        }
        assert!(most <= 3_600 * 9 / 8 + 100, "{most} ids held at most");
        assert!(most >= 3_600, "ids within the horizon are all kept: {most}");
    }

    #[test]
    fn a_resumed_partition_admits_as_if_it_never_stopped() {
        let mut first = Ingest::single(60_000, DAY);
        assert!(is_accepted(&first.admit(&line("a", T0 + 120_000), NOW)));
        let input = InputState::new(60_000, Millis::MAX, DAY);
        input.register("", NOW);
        input.restore(first.watermark(NOW), [(String::new(), T0 + 120_000)], [("a".to_owned(), T0 + 120_000)]);
        let mut second = Ingest::new(input, "", NOW);
        second.resume(first.counts(), first.max_event_time());
        assert_eq!(second.watermark(NOW), T0 + 60_000);
        assert!(matches!(second.admit(&line("a", T0 + 120_000), NOW), Admission::Duplicate));
        assert!(matches!(second.admit(&line("z", T0 + 59_999), NOW), Admission::Rejected(r) if r.reason == Reason::Late));
        assert!(is_accepted(&second.admit(&line("b", T0 + 180_000), NOW)));
        assert_eq!(second.watermark(NOW), T0 + 120_000, "the restored partition keeps moving W");
        assert_eq!(second.counts(), Counts { input: 4, accepted: 2, duplicates: 1, dead_letters: 1, late: 1 });
    }

    #[test]
    fn a_stall_after_an_event_does_not_hold_the_watermark_back() {
        // One partition with an idle timeout (a one-partition topic): W moves with every
        // accepted event, whatever the wall clock does between them.
        let mut ingest = Ingest::new(InputState::new(60_000, 30_000, DAY), "p", NOW);
        assert!(is_accepted(&ingest.admit(&line("a", T0), NOW)));
        assert!(is_accepted(&ingest.admit(&line("b", T0 + 120_000), NOW + 1)));
        // Sixty seconds of nothing: the partition is idle when the next message comes.
        let late = ingest.admit(&line("c", T0 + 59_999), NOW + 60_000);
        assert!(matches!(late, Admission::Rejected(r) if r.reason == Reason::Late), "W is T0 + 60 s, as without the stall");
    }
}
