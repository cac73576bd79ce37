//! `by_epoch`: drive a keyed, stateful [`EpochLogic`] one completed epoch at a time,
//! with the event-time watermark as of the end of that epoch.
//!
//! Timely time here is the input epoch (a batch number); event time travels as data.
//! The operator holds the updates of each epoch until both its inputs' frontiers have
//! passed it, then hands them to the logic in epoch order, raises the watermark, and
//! emits what the logic says changed, at that epoch. Within an epoch the order of updates
//! is arbitrary, so logics must not depend on it; across epochs it is exact. This is what
//! makes results independent of the number of workers.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::ExchangeData;

use crate::time::Millis;

/// The watermark stream: `(epoch, W)`, one record per epoch from each worker whose input
/// is open, broadcast so that every worker sees every value. The epoch's watermark is the
/// smallest of its records: each worker admitted that epoch's events against a W at least
/// as large as the one it reported for the epoch before, so no admitted event can land in
/// a window or session closed by the reports of earlier epochs.
pub type Watermarks<'scope> = Stream<'scope, u64, Vec<(u64, Millis)>>;

/// State that absorbs one epoch of updates, then reports how its output changed.
pub trait EpochLogic: 'static {
    type In;
    type Out;
    /// Takes one update of the epoch being closed.
    fn absorb(&mut self, record: Self::In, diff: isize);
    /// Called once per epoch after its updates, with the watermark at its end (never
    /// smaller than at the previous call). Pushes `(row, +1)` for each new version of a
    /// row and `(row, −1)` for each version it replaces, at most one of each per key,
    /// and releases state that can no longer change.
    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(Self::Out, isize)>);
}

/// Extension trait: run an [`EpochLogic`] over a collection, partitioned by `key`.
///
/// ```
/// use differential_dataflow::input::Input;
/// use dataflows::operators::by_epoch::{ByEpoch, EpochLogic};
/// use timely::dataflow::operators::vec::ToStream;
///
/// /// Counts records per epoch and reports the running total, marking it final once W
/// /// reaches 100.
/// #[derive(Default)]
/// struct Total { total: isize, emitted: Option<(isize, bool)> }
/// impl EpochLogic for Total {
///     type In = u32;
///     type Out = (isize, bool);
///     fn absorb(&mut self, _: u32, diff: isize) { self.total += diff; }
///     fn close_epoch(&mut self, w: i64, out: &mut Vec<((isize, bool), isize)>) {
///         let row = (self.total, w >= 100);
///         if self.emitted != Some(row) {
///             out.extend(self.emitted.replace(row).map(|old| (old, -1)));
///             out.push((row, 1));
///         }
///     }
/// }
///
/// timely::example(|scope| {
///     let (_, numbers) = scope.new_collection_from(vec![1u32, 2, 3]);
///     let watermarks = vec![(0u64, 100i64)].to_stream(scope);
///     numbers
///         .by_epoch(watermarks, |_| 0, "Total", Total::default())
///         .inspect(|x| assert_eq!(x, &((3, true), 0, 1)));
/// });
/// ```
pub trait ByEpoch<'scope, D> {
    fn by_epoch<L, K>(self, watermarks: Watermarks<'scope>, key: K, name: &str, logic: L) -> VecCollection<'scope, u64, L::Out>
    where
        L: EpochLogic<In = D>,
        L::Out: ExchangeData + Clone,
        K: Fn(&D) -> u64 + 'static;
}

/// One epoch's worth of input, waiting for the frontiers to pass it.
struct Pending<D> {
    capability: Capability<u64>,
    updates: Vec<(D, isize)>,
    watermark: Option<Millis>,
}

impl<'scope, D: ExchangeData + Clone> ByEpoch<'scope, D> for VecCollection<'scope, u64, D> {
    fn by_epoch<L, K>(self, watermarks: Watermarks<'scope>, key: K, name: &str, mut logic: L) -> VecCollection<'scope, u64, L::Out>
    where
        L: EpochLogic<In = D>,
        L::Out: ExchangeData + Clone,
        K: Fn(&D) -> u64 + 'static,
    {
        let exchange = Exchange::new(move |update: &(D, u64, isize)| key(&update.0));
        let stream: Stream<'scope, u64, Vec<(L::Out, u64, isize)>> =
            self.inner.binary_frontier(watermarks, exchange, Pipeline, name, move |_, _| {
                let mut pending: BTreeMap<u64, Pending<D>> = BTreeMap::new();
                let mut watermark = Millis::MIN;
                let mut changes = Vec::new();
                move |(updates, updates_frontier), (marks, marks_frontier), output| {
                    updates.for_each_stamp(|cap, batches| {
                        for batch in batches {
                            for (data, time, diff) in batch.drain(..) {
                                pending
                                    .entry(time)
                                    .or_insert_with(|| Pending { capability: cap.delayed(&time, 0), updates: Vec::new(), watermark: None })
                                    .updates
                                    .push((data, diff));
                            }
                        }
                    });
                    marks.for_each_stamp(|cap, batches| {
                        for batch in batches {
                            for (time, mark) in batch.drain(..) {
                                let entry = pending.entry(time).or_insert_with(|| Pending {
                                    capability: cap.delayed(&time, 0),
                                    updates: Vec::new(),
                                    watermark: None,
                                });
                                entry.watermark = Some(entry.watermark.map_or(mark, |w| w.min(mark)));
                            }
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if updates_frontier.less_equal(&time) || marks_frontier.less_equal(&time) {
                            break;
                        }
                        let epoch = entry.remove();
                        for (data, diff) in epoch.updates {
                            logic.absorb(data, diff);
                        }
                        watermark = watermark.max(epoch.watermark.unwrap_or(Millis::MIN));
                        logic.close_epoch(watermark, &mut changes);
                        if !changes.is_empty() {
                            let mut session = output.session(&epoch.capability);
                            for (row, diff) in changes.drain(..) {
                                session.give((row, time, diff));
                            }
                        }
                    }
                }
            });
        stream.as_collection()
    }
}
