//! Gathers the dataflow's changes on worker 0 into one [`Batch`] per write: the net
//! upserts and deletes of every epoch completed since the last write, in epoch order.
//!
//! Owns consolidation (a retraction and a new version of a key become one upsert), the
//! record of which epochs are complete, and the watermark they reached. It does no I/O:
//! the writer takes the batch. What the restore epoch emits is already in the database
//! and is dropped here, but for the count of open sessions.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use dataflows::event::Event;
use dataflows::pipeline::RESTORE_EPOCH;
use dataflows::rows::{
    Change, CohortRow, ConversionRow, DeadLetter, FunnelRow, ModelRow, PairRow, ProductRow, RfmRow, RiskRow, SessionRow, SimilarRow,
    SourceProgress, TrafficRow,
};
use dataflows::time::Millis;
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::tables::SinkRow;

/// What a batch does to one key.
pub struct Latest<R> {
    /// The key's latest version, or `None` where it was retracted.
    pub row: Option<R>,
    /// Whether the database held the key before the batch: its first update in the
    /// batch retracted a version (written earlier, or fed back by a restore). A key
    /// that was not held is inserted, or, if retracted again, never written.
    pub stored: bool,
}

/// What a batch does to each key it touches.
pub struct Upserts<R: SinkRow> {
    pub rows: HashMap<R::Key, Latest<R>>,
}

impl<R: SinkRow> Default for Upserts<R> {
    fn default() -> Self {
        Upserts { rows: HashMap::new() }
    }
}

impl<R: SinkRow> Upserts<R> {
    fn apply(&mut self, row: R, diff: isize) {
        let latest = self.rows.entry(row.key()).or_insert(Latest { row: None, stored: diff < 0 });
        latest.row = (diff > 0).then_some(row);
    }
}

/// Everything one transaction writes.
#[derive(Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub dead_letters: Vec<DeadLetter>,
    pub sessions: Upserts<SessionRow>,
    pub traffic: Upserts<TrafficRow>,
    pub products: Upserts<ProductRow>,
    pub funnel: Upserts<FunnelRow>,
    pub conversion: Upserts<ConversionRow>,
    pub cohorts: Upserts<CohortRow>,
    pub rfm: Upserts<RfmRow>,
    pub pairs: Upserts<PairRow>,
    pub similar: Upserts<SimilarRow>,
    pub risk: Upserts<RiskRow>,
    pub models: Upserts<ModelRow>,
    /// The latest progress of each source: where it resumes after this batch.
    pub progress: BTreeMap<String, SourceProgress>,
    /// The watermark the operators reached at the batch's last epoch.
    pub watermark: Option<Millis>,
    /// Change in the number of open (non-final) sessions.
    pub open_sessions_delta: i64,
}

impl Batch {
    /// Rows to write, all tables together.
    pub fn rows(&self) -> usize {
        self.events.len()
            + self.dead_letters.len()
            + self.sessions.rows.len()
            + self.traffic.rows.len()
            + self.products.rows.len()
            + self.funnel.rows.len()
            + self.conversion.rows.len()
            + self.cohorts.rows.len()
            + self.rfm.rows.len()
            + self.pairs.rows.len()
            + self.similar.rows.len()
            + self.risk.rows.len()
            + self.models.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.dead_letters.is_empty()
            && self.sessions.rows.is_empty()
            && self.traffic.rows.is_empty()
            && self.products.rows.is_empty()
            && self.funnel.rows.is_empty()
            && self.conversion.rows.is_empty()
            && self.cohorts.rows.is_empty()
            && self.rfm.rows.is_empty()
            && self.pairs.rows.is_empty()
            && self.similar.rows.is_empty()
            && self.risk.rows.is_empty()
            && self.models.rows.is_empty()
            && self.progress.is_empty()
    }

    /// Applies one complete epoch: retractions before insertions, so that a key's new
    /// version wins over the retraction of its old one. Of the restore epoch, whose rows
    /// the database already holds, only the progress, open sessions and model versions
    /// count: a version is stored with the first session it scores, so one trained in
    /// the restore epoch is one the database does not hold yet (on a database written
    /// before risk scoring existed).
    pub(crate) fn apply_epoch(&mut self, epoch: u64, mut updates: Vec<(Change, isize)>) {
        updates.sort_by_key(|(_, diff)| *diff > 0);
        for (change, diff) in updates {
            if epoch == RESTORE_EPOCH && !matches!(change, Change::Progress(_) | Change::Session(_) | Change::RiskModel(_)) {
                continue;
            }
            match change {
                Change::Event(e) => self.events.push(e),
                Change::DeadLetter(d) => self.dead_letters.push(d),
                Change::Progress(p) => {
                    self.progress.insert(p.source.clone(), p);
                }
                Change::Duplicate(_) => {} // already moved into the source's progress
                Change::Session(s) => {
                    if !s.is_final {
                        self.open_sessions_delta += diff as i64;
                    }
                    if epoch != RESTORE_EPOCH {
                        self.sessions.apply(s, diff)
                    }
                }
                Change::Traffic(r) => self.traffic.apply(r, diff),
                Change::Product(r) => self.products.apply(r, diff),
                Change::Funnel(r) => self.funnel.apply(r, diff),
                Change::Conversion(r) => self.conversion.apply(r, diff),
                Change::Cohort(r) => self.cohorts.apply(r, diff),
                Change::Rfm(r) => self.rfm.apply(r, diff),
                Change::Pair(r) => self.pairs.apply(r, diff),
                Change::Similar(r) => self.similar.apply(r, diff),
                Change::Risk(r) => self.risk.apply(r, diff),
                Change::RiskModel(m) => self.models.apply(m, diff),
            }
        }
    }
}

/// What the collector shares with the writer on the same worker.
#[derive(Default)]
pub struct Collected {
    /// Epochs completed and not yet written.
    pub batch: Batch,
    /// Every epoch before this one is complete; `None` once the dataflow is done.
    pub frontier: Option<u64>,
}

impl Collected {
    /// Whether every epoch before `epoch` has been collected.
    pub fn passed(&self, epoch: u64) -> bool {
        self.frontier.is_none_or(|f| f >= epoch)
    }
}

/// Routes every change to worker 0 and gathers complete epochs into `shared`.
///
/// An epoch's watermark is the smallest reported by its sources' progress records, and
/// the watermark reached is the largest of those so far: exactly what the operators
/// used (`by_epoch`), since every reading worker reports the same W in both.
///
/// In a cluster, the duplicates found between processes (`Change::Duplicate`) are moved
/// from their source's accepted to its duplicates in every progress record from the
/// epoch they were found in on: a source's admission counted them as accepted.
pub fn collect(changes: VecCollection<'_, u64, Change>, shared: Rc<RefCell<Collected>>) {
    shared.borrow_mut().frontier = Some(0);
    let mut pending: BTreeMap<u64, Vec<(Change, isize)>> = BTreeMap::new();
    let mut reached: Option<Millis> = None;
    let mut found: HashMap<String, u64> = HashMap::new();
    changes.inner.sink(Exchange::new(|_: &(Change, u64, isize)| 0), "Collect", move |(input, frontier)| {
        input.for_each_stamp(|_, batches| {
            for batch in batches {
                for (change, time, diff) in batch.drain(..) {
                    pending.entry(time).or_default().push((change, diff));
                }
            }
        });
        let mut shared = shared.borrow_mut();
        while let Some(entry) = pending.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let epoch = *entry.key();
            let mut updates = entry.remove();
            move_found_duplicates(&mut updates, &mut found);
            let marks = updates.iter().filter_map(|(c, _)| if let Change::Progress(p) = c { Some(p.watermark) } else { None });
            if let Some(w) = marks.min() {
                reached = Some(reached.map_or(w, |r| r.max(w)));
                shared.batch.watermark = reached;
            }
            shared.batch.apply_epoch(epoch, updates);
        }
        shared.frontier = frontier.frontier().first().copied();
    });
}

/// Adds the duplicates found in one epoch to `found` (per source, since the attempt
/// started) and moves them from accepted to duplicates in the epoch's progress records.
fn move_found_duplicates(updates: &mut [(Change, isize)], found: &mut HashMap<String, u64>) {
    for (change, diff) in updates.iter() {
        if let Change::Duplicate(source) = change {
            *found.entry(source.to_string()).or_default() += *diff as u64;
        }
    }
    if found.is_empty() {
        return;
    }
    for (change, _) in updates.iter_mut() {
        if let Change::Progress(p) = change {
            if let Some(&n) = found.get(&p.source) {
                p.counts.accepted -= n;
                p.counts.duplicates += n;
            }
        }
    }
}
