//! Tumbling event-time windows with groups, as an [`EpochLogic`]: one [`WindowAggregate`]
//! per `(window_start, group)`, reported in update mode and made final by the watermark.
//!
//! Owns the state of open windows only: a window's state is dropped in the epoch its row
//! becomes final (`W ≥ window_end` and the aggregate says it is complete).

use std::collections::{BTreeMap, BTreeSet};

use crate::operators::by_epoch::EpochLogic;
use crate::time::Millis;

/// An aggregate over the updates of one window and group.
pub trait WindowAggregate: Default + 'static {
    type In;
    type Group: Ord + Clone + 'static;
    type Row: Clone + PartialEq + 'static;
    /// Adds one update (`diff` may be negative where the input has retractions).
    fn add(&mut self, input: Self::In, diff: isize);
    /// The row for this state, or `None` when the group has nothing to report.
    fn row(&self, window: (Millis, Millis), group: &Self::Group, is_final: bool) -> Option<Self::Row>;
    /// Whether nothing outside the watermark holds the row open (funnels wait for sessions).
    fn complete(&self) -> bool {
        true
    }
}

struct Slot<A: WindowAggregate> {
    aggregate: A,
    emitted: Option<A::Row>,
}

/// Runs a [`WindowAggregate`] over tumbling windows of `length` milliseconds.
pub struct Windowed<A: WindowAggregate> {
    length: Millis,
    windows: BTreeMap<Millis, BTreeMap<A::Group, Slot<A>>>,
    touched: BTreeSet<(Millis, A::Group)>,
}

impl<A: WindowAggregate> Windowed<A> {
    pub fn new(length: Millis) -> Self {
        Windowed { length, windows: BTreeMap::new(), touched: BTreeSet::new() }
    }

    /// Open (window, group) states held, for tests and progress figures.
    pub fn open_groups(&self) -> usize {
        self.windows.values().map(BTreeMap::len).sum()
    }
}

impl<A: WindowAggregate> EpochLogic for Windowed<A> {
    /// `(window_start, group, input)`.
    type In = (Millis, A::Group, A::In);
    type Out = A::Row;

    fn absorb(&mut self, (start, group, input): Self::In, diff: isize) {
        let slot =
            self.windows.entry(start).or_default().entry(group.clone()).or_insert_with(|| Slot { aggregate: A::default(), emitted: None });
        slot.aggregate.add(input, diff);
        self.touched.insert((start, group));
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(A::Row, isize)>) {
        let mut due = std::mem::take(&mut self.touched);
        let closed_before = watermark.saturating_sub(self.length);
        for (start, groups) in self.windows.range(..=closed_before) {
            due.extend(groups.keys().map(|g| (*start, g.clone())));
        }
        for (start, group) in due {
            let end = start + self.length;
            let Some(groups) = self.windows.get_mut(&start) else { continue };
            let Some(slot) = groups.get_mut(&group) else { continue };
            let is_final = end <= watermark && slot.aggregate.complete();
            let row = slot.aggregate.row((start, end), &group, is_final);
            if row != slot.emitted {
                out.extend(slot.emitted.take().map(|old| (old, -1)));
                out.extend(row.clone().map(|new| (new, 1)));
                slot.emitted = row;
            }
            if is_final {
                groups.remove(&group);
                if groups.is_empty() {
                    self.windows.remove(&start);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::operators::aggregates::{Hit, Traffic};

    fn hit(user: &str) -> Hit {
        Hit { event_type: EventType::PageView, user_id: user.into(), revenue_cents: 0 }
    }

    #[test]
    fn final_exactly_when_the_watermark_reaches_window_end_then_released() {
        let mut w = Windowed::<Traffic>::new(60_000);
        let mut out = Vec::new();
        w.absorb((0, (), hit("a")), 1);
        w.absorb((0, (), hit("a")), 1);
        w.absorb((0, (), hit("b")), 1);
        w.close_epoch(59_999, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.active_users, out[0].0.counts[0], out[0].0.is_final), (2, 3, false));
        out.clear();
        w.close_epoch(60_000, &mut out);
        assert_eq!(out.iter().map(|(r, d)| (r.is_final, *d)).collect::<Vec<_>>(), vec![(false, -1), (true, 1)]);
        assert_eq!(w.open_groups(), 0);
        out.clear();
        w.close_epoch(120_000, &mut out);
        assert!(out.is_empty(), "a final row is never touched again");
    }

    #[test]
    fn an_event_at_window_end_lands_in_the_next_window() {
        let mut w = Windowed::<Traffic>::new(60_000);
        let mut out = Vec::new();
        let t = 60_000;
        w.absorb((crate::time::window_start(t, 60_000), (), hit("a")), 1);
        w.close_epoch(0, &mut out);
        assert_eq!((out[0].0.window_start, out[0].0.window_end), (60_000, 120_000));
    }

    #[test]
    fn unchanged_rows_are_not_re_emitted() {
        let mut w = Windowed::<Traffic>::new(60_000);
        let mut out = Vec::new();
        w.absorb((0, (), hit("a")), 1);
        w.close_epoch(0, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        // The window is touched by updates that cancel out: its row is what was emitted.
        w.absorb((0, (), hit("b")), 1);
        w.absorb((0, (), hit("b")), -1);
        w.close_epoch(10, &mut out);
        assert!(out.is_empty(), "an unchanged row is not retracted and emitted again: {out:?}");
    }
}
