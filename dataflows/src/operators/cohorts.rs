//! `cohort_retention` (CONTRACT §7) in two [`EpochLogic`]s: [`Cohorts`], keyed by user,
//! decides each user's cohort (the UTC day of their first accepted event) and which days
//! they were active on; [`Retention`], keyed by cohort, counts each cohort's users and its
//! active users and revenue per day.
//!
//! A user's cohort can only move while their first day is open (`W` < its end): an
//! earlier event must be on time, so on an open day, and every later day is open too.
//! So [`Cohorts`] keeps, per user, the cohort for good (one number) and the activity of
//! open days only, and re-emits the user's records when either changes; a closed day's
//! records are final and released. [`Retention`] keeps each cohort's size for good and
//! the open days' figures; a row is final once its day is closed. Owns nothing else.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::by_epoch::EpochLogic;
use crate::event::Text;
use crate::rows::CohortRow;
use crate::time::Millis;

/// A UTC calendar day, in milliseconds.
pub const DAY: Millis = 86_400_000;

/// What [`Cohorts`] takes of a user, as `(user_id, Seen)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Seen {
    /// An accepted event on the day starting at `day`, with its revenue.
    Active { day: Millis, revenue_cents: i64 },
    /// The user's first accepted event was on this day (fed back by a restart for users
    /// first seen before the events it restores).
    First { day: Millis },
}

/// What [`Retention`] takes, from [`Cohorts`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Member {
    /// The user belongs to `cohort`.
    Of { cohort: Millis, user: Text },
    /// The user of `cohort` was active on `day`, with this revenue that day.
    Active { cohort: Millis, day: Millis, user: Text, revenue_cents: i64 },
}

impl Member {
    pub fn cohort(&self) -> Millis {
        match self {
            Member::Of { cohort, .. } | Member::Active { cohort, .. } => *cohort,
        }
    }
}

#[derive(Default)]
struct User {
    cohort: Option<Millis>,
    /// Open days: events and revenue.
    days: BTreeMap<Millis, (i64, i64)>,
    /// What was emitted for this user: the cohort, and each open day's revenue.
    emitted: Option<(Millis, BTreeMap<Millis, i64>)>,
}

/// Each user's cohort and active days, keyed by user.
#[derive(Default)]
pub struct Cohorts {
    users: HashMap<Text, User>,
    touched: BTreeSet<Text>,
    /// The users active on each open day, to release the day once it closes.
    open_days: BTreeMap<Millis, BTreeSet<Text>>,
}

impl EpochLogic for Cohorts {
    type In = (Text, Seen);
    type Out = Member;

    fn absorb(&mut self, (user_id, seen): (Text, Seen), diff: isize) {
        let user = self.users.entry(user_id.clone()).or_default();
        match seen {
            Seen::Active { day, revenue_cents } => {
                let d = user.days.entry(day).or_default();
                d.0 += diff as i64;
                d.1 += revenue_cents * diff as i64;
                if d.0 == 0 {
                    user.days.remove(&day);
                }
                self.open_days.entry(day).or_default().insert(user_id.clone());
            }
            Seen::First { day } => user.cohort = Some(user.cohort.map_or(day, |c| c.min(day))),
        }
        self.touched.insert(user_id);
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(Member, isize)>) {
        for user_id in std::mem::take(&mut self.touched) {
            let Some(user) = self.users.get_mut(&user_id) else { continue };
            if let Some(first) = user.days.keys().next() {
                user.cohort = Some(user.cohort.map_or(*first, |c| c.min(*first)));
            }
            let Some(cohort) = user.cohort else { continue };
            let now: BTreeMap<Millis, i64> = user.days.iter().map(|(day, (_, revenue))| (*day, *revenue)).collect();
            let before = user.emitted.take();
            match &before {
                Some((old, _)) if *old == cohort => {}
                _ => {
                    if let Some((old, _)) = &before {
                        out.push((Member::Of { cohort: *old, user: user_id.clone() }, -1));
                    }
                    out.push((Member::Of { cohort, user: user_id.clone() }, 1));
                }
            }
            let (old_cohort, old_days) = before.unwrap_or((cohort, BTreeMap::new()));
            for (day, revenue) in &old_days {
                if old_cohort != cohort || now.get(day) != Some(revenue) {
                    out.push((Member::Active { cohort: old_cohort, day: *day, user: user_id.clone(), revenue_cents: *revenue }, -1));
                }
            }
            for (day, revenue) in &now {
                if old_cohort != cohort || old_days.get(day) != Some(revenue) {
                    out.push((Member::Active { cohort, day: *day, user: user_id.clone(), revenue_cents: *revenue }, 1));
                }
            }
            user.emitted = Some((cohort, now));
        }
        // Closed days can no longer change: their records stay as emitted, and only the
        // cohort is kept.
        while let Some(entry) = self.open_days.first_entry() {
            let day = *entry.key();
            if day.saturating_add(DAY) > watermark {
                break;
            }
            for user_id in entry.remove() {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.days.remove(&day);
                    if let Some((_, days)) = &mut user.emitted {
                        days.remove(&day);
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct Cohort {
    users: i64,
    /// Open days: active users and revenue.
    days: BTreeMap<Millis, (i64, i64)>,
    emitted: BTreeMap<Millis, CohortRow>,
}

/// `cohort_retention` rows, keyed by cohort.
#[derive(Default)]
pub struct Retention {
    cohorts: BTreeMap<Millis, Cohort>,
    touched: BTreeSet<Millis>,
}

impl EpochLogic for Retention {
    type In = Member;
    type Out = CohortRow;

    fn absorb(&mut self, member: Member, diff: isize) {
        let cohort = self.cohorts.entry(member.cohort()).or_default();
        match member {
            Member::Of { .. } => cohort.users += diff as i64,
            Member::Active { day, revenue_cents, .. } => {
                let d = cohort.days.entry(day).or_default();
                d.0 += diff as i64;
                d.1 += revenue_cents * diff as i64;
                if d.0 == 0 {
                    cohort.days.remove(&day);
                }
            }
        }
        self.touched.insert(member.cohort());
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(CohortRow, isize)>) {
        let mut due = std::mem::take(&mut self.touched);
        // Cohorts with a day the watermark has just closed.
        due.extend(
            self.cohorts.iter().filter(|(_, c)| c.days.keys().next().is_some_and(|d| d.saturating_add(DAY) <= watermark)).map(|(k, _)| *k),
        );
        for start in due {
            let Some(cohort) = self.cohorts.get_mut(&start) else { continue };
            let days: BTreeSet<Millis> = cohort.days.keys().chain(cohort.emitted.keys()).copied().collect();
            for day in days {
                let row = cohort.days.get(&day).map(|(active, revenue)| CohortRow {
                    cohort_date: start,
                    day_offset: (day - start) / DAY,
                    cohort_users: cohort.users,
                    active_users: *active,
                    revenue_cents: *revenue,
                    is_final: day.saturating_add(DAY) <= watermark,
                });
                if row.as_ref() != cohort.emitted.get(&day) {
                    out.extend(cohort.emitted.remove(&day).map(|old| (old, -1)));
                    if let Some(row) = row {
                        out.push((row.clone(), 1));
                        cohort.emitted.insert(day, row);
                    }
                }
                if day.saturating_add(DAY) <= watermark {
                    cohort.days.remove(&day);
                    cohort.emitted.remove(&day);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn active(user: &str, day: i64, revenue_cents: i64) -> (Text, Seen) {
        (user.into(), Seen::Active { day: D0 + day * DAY, revenue_cents })
    }

    /// Runs both logics on epochs of `(updates, W)`; returns the rows alive at the end.
    fn run(epochs: Vec<(Vec<(Text, Seen)>, Millis)>) -> BTreeMap<(Millis, i64), CohortRow> {
        let (mut cohorts, mut retention) = (Cohorts::default(), Retention::default());
        let mut rows: BTreeMap<CohortRow, isize> = BTreeMap::new();
        for (updates, w) in epochs {
            for u in updates {
                cohorts.absorb(u, 1);
            }
            let mut members = Vec::new();
            cohorts.close_epoch(w, &mut members);
            for (m, d) in members {
                retention.absorb(m, d);
            }
            let mut out = Vec::new();
            retention.close_epoch(w, &mut out);
            for (row, d) in out {
                *rows.entry(row).or_default() += d;
            }
        }
        assert!(rows.values().all(|d| *d == 0 || *d == 1), "{rows:?}");
        rows.into_iter().filter(|(_, d)| *d == 1).map(|(r, _)| ((r.cohort_date, r.day_offset), r)).collect()
    }

    #[test]
    fn cohorts_count_users_by_first_day_and_final_rows_close_with_the_day() {
        let rows = run(vec![
            (vec![active("a", 0, 0), active("b", 0, 500), active("a", 2, 1000)], D0 + DAY),
            (vec![active("c", 2, 0), active("b", 3, 0)], Millis::MAX),
        ]);
        let figures: Vec<(i64, i64, i64, i64, i64, bool)> = rows
            .values()
            .map(|r| ((r.cohort_date - D0) / DAY, r.day_offset, r.cohort_users, r.active_users, r.revenue_cents, r.is_final))
            .collect();
        assert_eq!(figures, [(0, 0, 2, 2, 500, true), (0, 2, 2, 1, 1000, true), (0, 3, 2, 1, 0, true), (2, 0, 1, 1, 0, true)]);
    }

    #[test]
    fn an_earlier_event_on_an_open_day_moves_the_user_to_an_earlier_cohort() {
        let rows = run(vec![(vec![active("a", 1, 0), active("a", 2, 0)], D0), (vec![active("a", 0, 700)], D0 + 3 * DAY)]);
        let keys: Vec<(i64, i64, i64)> = rows.values().map(|r| ((r.cohort_date - D0) / DAY, r.day_offset, r.cohort_users)).collect();
        assert_eq!(keys, [(0, 0, 1), (0, 1, 1), (0, 2, 1)], "nothing is left of cohort day 1");
        assert!(rows.values().all(|r| r.is_final));
    }

    #[test]
    fn a_user_first_seen_before_a_restart_keeps_their_cohort() {
        let rows = run(vec![(vec![("a".into(), Seen::First { day: D0 }), active("a", 5, 0)], Millis::MAX)]);
        let keys: Vec<(i64, i64, i64)> = rows.values().map(|r| ((r.cohort_date - D0) / DAY, r.day_offset, r.cohort_users)).collect();
        assert_eq!(keys, [(0, 5, 1)]);
    }
}
