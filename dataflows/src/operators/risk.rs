//! `session_risk` (CONTRACT §7) as an [`EpochLogic`]: scores each session as it becomes
//! final with the model version of the UTC day it becomes final in, and keeps what the
//! next versions are trained on.
//!
//! Version D (see `risk::score`) is trained on the bottom-[`SAMPLE`] of the sessions
//! final before D, by [`sample_key`]. The logic runs on one worker; within an epoch it
//! takes the final sessions in the order they became final, so that when the first
//! session final during D arrives, the sample holds exactly the sessions final before D:
//! it trains version D then, emits it for `risk_models`, and scores with it until a
//! session final on a later day arrives. The sample keeps [`SAMPLE`] sessions' features.
//!
//! A restart feeds back (in the restore epoch) the stored versions a rebuilt or new
//! session may need, already checked by the restore (`Model::read`), and the sample of
//! the final sessions that the restored events do not rebuild (`Inputs::restore_risk`):
//! every version a committed session was scored with is stored, so a rebuilt or new
//! session is scored as without the restart. Owns nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::by_epoch::EpochLogic;
use super::cohorts::DAY;
use crate::event::Text;
use crate::risk::features::Features;
use crate::risk::score::{sample_key, Assessment, Model, SAMPLE};
use crate::rows::{ModelRow, RiskRow};
use crate::time::{window_start, Millis};

/// A final session, as the risk scoring takes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FinalSession {
    /// When it became final: its end plus the session gap.
    pub final_at: Millis,
    pub user_id: Text,
    pub session_start: Millis,
    pub session_end: Millis,
    pub features: Features,
}

/// What the risk scoring takes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Assess {
    /// A session that became final: scored, then a candidate for the sample.
    Final(FinalSession),
    /// Restored: a final session already scored, a candidate for the sample only.
    Sampled(FinalSession),
    /// Restored: a stored model version.
    Version(ModelRow),
}

/// What it emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Assessed {
    Risk(RiskRow),
    Version(ModelRow),
}

pub struct Risk {
    threshold: u8,
    sessions: Vec<(FinalSession, bool)>,
    /// The bottom-k: by (key, user, start), when final and the features.
    sample: BTreeMap<(u64, Text, Millis), Features>,
    /// The version in use and any later ones restored, by the day they are valid from.
    versions: BTreeMap<Millis, (Text, Model)>,
}

impl Risk {
    /// Stores in `session_risk` the sessions scoring at least `threshold`.
    pub fn new(threshold: u8) -> Risk {
        Risk { threshold, sessions: Vec::new(), sample: BTreeMap::new(), versions: BTreeMap::new() }
    }

    fn add_to_sample(&mut self, s: FinalSession) {
        self.sample.insert((sample_key(&s.user_id, s.session_start), s.user_id, s.session_start), s.features);
        if self.sample.len() > SAMPLE {
            self.sample.pop_last();
        }
    }

    /// The version valid on `day`: restored, in use, or trained now on the sample (the
    /// sessions final before `day`) and emitted.
    fn version(&mut self, day: Millis, out: &mut Vec<(Assessed, isize)>) -> &(Text, Model) {
        // Versions before `day` are never used again: sessions arrive in the order they
        // became final.
        self.versions = self.versions.split_off(&day);
        if !self.versions.contains_key(&day) {
            let model = Model::train(day, &self.sample.values().collect::<Vec<_>>());
            let row = ModelRow {
                model_version: Text::from(model.version()),
                valid_from: day,
                sessions: model.sessions as i64,
                model: serde_json::to_string(&model).expect("a model serialises"),
            };
            out.push((Assessed::Version(row.clone()), 1));
            self.versions.insert(day, (row.model_version, model));
        }
        &self.versions[&day]
    }
}

/// The `session_risk` row of a session `(start, end)` of `user_id` with assessment `a`
/// by `version`, final at `final_at`.
pub fn flagged(user_id: &Text, (start, end): (Millis, Millis), a: &Assessment, version: &Text, final_at: Millis) -> RiskRow {
    RiskRow {
        user_id: user_id.clone(),
        session_start: start,
        session_end: end,
        score: a.score,
        reasons: a.reasons.iter().map(|r| Text::new_static(r.as_str())).collect(),
        model_version: version.clone(),
        scored_at: final_at,
    }
}

impl EpochLogic for Risk {
    type In = Assess;
    type Out = Assessed;

    fn absorb(&mut self, record: Assess, diff: isize) {
        debug_assert!(diff > 0, "final sessions and versions are only ever inserted");
        match record {
            Assess::Final(s) => self.sessions.push((s, true)),
            Assess::Sampled(s) => self.sessions.push((s, false)),
            Assess::Version(row) => {
                let model = Model::read(&row.model).expect("a restored version was read when restored");
                self.versions.insert(row.valid_from, (row.model_version, model));
            }
        }
    }

    fn close_epoch(&mut self, _watermark: Millis, out: &mut Vec<(Assessed, isize)>) {
        let mut sessions = std::mem::take(&mut self.sessions);
        sessions.sort_by_cached_key(|(s, _)| (s.final_at, sample_key(&s.user_id, s.session_start), s.user_id.clone(), s.session_start));
        for (s, scored) in sessions {
            if scored {
                let threshold = self.threshold;
                let (version, model) = self.version(window_start(s.final_at, DAY), out);
                let a = model.assess(&s.features);
                if a.score >= threshold {
                    out.push((Assessed::Risk(flagged(&s.user_id, (s.session_start, s.session_end), &a, version, s.final_at)), 1));
                }
            }
            self.add_to_sample(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::score::MIN_SAMPLE;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    const GAP: Millis = 30 * 60_000;

    /// Session `i` of a shopper, final at `final_at`.
    fn shopper(i: i64, final_at: Millis) -> FinalSession {
        FinalSession {
            final_at,
            user_id: Text::from(format!("u{i}")),
            session_start: final_at - GAP - 600_000,
            session_end: final_at - GAP,
            features: Features {
                events: 6 + i % 7,
                duration_ms: 600_000 + 17_000 * (i % 13),
                median_gap_ms: 50_000 + 3_000 * (i % 11),
                product_views: 3 + i % 4,
                products_viewed: 2 + i % 4,
                page_views: 1 + i % 3,
                ..Features::default()
            },
        }
    }

    fn stuffer(final_at: Millis) -> FinalSession {
        let mut s = shopper(0, final_at);
        s.user_id = Text::from("stuffer");
        s.features = Features { events: 14, cart_adds: 13, products_carted: 13, largest_cart_add: 1, ..Features::default() };
        s
    }

    fn close(risk: &mut Risk, records: Vec<Assess>) -> Vec<(Assessed, isize)> {
        for r in records {
            risk.absorb(r, 1);
        }
        let mut out = Vec::new();
        risk.close_epoch(Millis::MAX, &mut out);
        out
    }

    fn versions(out: &[(Assessed, isize)]) -> Vec<(String, i64)> {
        out.iter()
            .filter_map(|(a, _)| if let Assessed::Version(m) = a { Some((m.model_version.to_string(), m.sessions)) } else { None })
            .collect()
    }

    fn flagged(out: &[(Assessed, isize)]) -> Vec<(String, u8, Vec<String>, String)> {
        out.iter()
            .filter_map(|(a, _)| match a {
                Assessed::Risk(r) => {
                    Some((r.user_id.to_string(), r.score, r.reasons.iter().map(|t| t.to_string()).collect(), r.model_version.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_day_s_version_learns_from_the_sessions_final_before_it() {
        let mut risk = Risk::new(70);
        // Day 0: too few sessions before it, the rules alone; the stuffer is flagged.
        let day0: Vec<Assess> =
            (0..400).map(|i| Assess::Final(shopper(i, D0 + 1000 * i))).chain([Assess::Final(stuffer(D0 + 5))]).collect();
        let out = close(&mut risk, day0);
        assert_eq!(versions(&out), [("rules-2026-11-01".to_string(), 0)]);
        assert_eq!(flagged(&out), [("stuffer".to_string(), 80, vec!["cart_stuffing".to_string()], "rules-2026-11-01".to_string())]);
        // Day 1, in two epochs: one version, trained on the 401 sessions of day 0.
        let out = close(&mut risk, vec![Assess::Final(shopper(1000, D0 + DAY + 10))]);
        assert_eq!(versions(&out), [("forest-2026-11-02".to_string(), 401)]);
        let out = close(&mut risk, vec![Assess::Final(stuffer(D0 + DAY + 20))]);
        assert!(versions(&out).is_empty(), "the day's version is trained once");
        let f = flagged(&out);
        assert_eq!((f[0].0.as_str(), f[0].2[0].as_str(), f[0].3.as_str()), ("stuffer", "cart_stuffing", "forest-2026-11-02"));
    }

    #[test]
    fn in_an_epoch_spanning_midnight_sessions_of_the_next_day_do_not_train_this_day_s_version() {
        let sessions: Vec<FinalSession> = (0..2 * MIN_SAMPLE as i64).map(|i| shopper(i, D0 - DAY + 100 * i)).collect();
        let late: Vec<FinalSession> = (0..MIN_SAMPLE as i64).map(|i| shopper(5000 + i, D0 + DAY + i)).collect();
        // One epoch, given in any order, against the days one by one.
        let mut at_once = Risk::new(0);
        let mut all: Vec<Assess> = late.iter().chain(&sessions).cloned().map(Assess::Final).collect();
        all.push(Assess::Final(shopper(9999, D0 + 7)));
        let out = close(&mut at_once, all);
        let mut day_by_day = Risk::new(0);
        let mut expected = close(&mut day_by_day, sessions.into_iter().map(Assess::Final).collect());
        expected.extend(close(&mut day_by_day, vec![Assess::Final(shopper(9999, D0 + 7))]));
        expected.extend(close(&mut day_by_day, late.into_iter().map(Assess::Final).collect()));
        assert_eq!(versions(&out), [("rules-2026-10-31".into(), 0), ("forest-2026-11-01".into(), 512), ("forest-2026-11-02".into(), 513)]);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_restart_fed_the_stored_version_and_the_sample_scores_as_without_it() {
        let before: Vec<FinalSession> = (0..SAMPLE as i64 + 300).map(|i| shopper(i, D0 - DAY + 50 * i)).collect();
        let today: Vec<FinalSession> = (0..50).map(|i| shopper(3000 + i, D0 + 1000 * i)).chain([stuffer(D0 + 60_000)]).collect();
        let mut whole = Risk::new(0);
        close(&mut whole, before.iter().cloned().map(Assess::Final).collect());
        let first = close(&mut whole, today[..20].iter().cloned().map(Assess::Final).collect());
        let expected = close(&mut whole, today[20..].iter().cloned().map(Assess::Final).collect());
        // The restart: the version stored with the first 20, and every final session as
        // sampled (the restore does not know which were in the sample).
        let stored: Vec<ModelRow> =
            first.into_iter().filter_map(|(a, _)| if let Assessed::Version(m) = a { Some(m) } else { None }).collect();
        assert_eq!(stored.len(), 1);
        let mut restarted = Risk::new(0);
        let restore: Vec<Assess> =
            before.iter().chain(&today[..20]).cloned().map(Assess::Sampled).chain(stored.into_iter().map(Assess::Version)).collect();
        assert!(close(&mut restarted, restore).is_empty(), "restored sessions are not scored again");
        assert_eq!(close(&mut restarted, today[20..].iter().cloned().map(Assess::Final).collect()), expected);
    }
}
