//! How a session's risk is assessed ([`Model::assess`]), and what a model version is
//! trained on: the rules' reasons and points, and the Isolation Forest's score as points,
//! combined into one score (0–100) with its reasons, most important first.
//!
//! A [`Model`] is valid from the start of a UTC day D and is trained on a bottom-k
//! sample of the sessions final before D: the [`SAMPLE`] sessions whose [`sample_key`]
//! is smallest. That sample depends only on which sessions are final before D, never on
//! workers, epochs or restarts; with fewer than [`MIN_SAMPLE`] sessions there is no
//! forest, and the rules score alone. Pure: the operator that keeps the sample and the
//! versions is `operators::risk`.

use serde::{Deserialize, Serialize};

use super::features::{Features, VECTOR};
use super::forest::{Forest, Growth};
use super::rules::{self, Reason};
use crate::time::{format_rfc3339, Millis};

/// The sessions a model version is trained on, at most.
pub const SAMPLE: usize = 1024;
/// Fewer sessions than this before a day: no forest that day, the rules alone.
pub const MIN_SAMPLE: usize = 256;
/// The model's points (its score × 100) above which it gives `unusual_behaviour` when
/// they set the score (no rule's points are as high): an Isolation Forest scores an
/// ordinary point around 0.5 or under. So every session scoring over 50 has a reason.
pub const UNUSUAL_ABOVE: u8 = 50;
/// The model's points from which it gives `unusual_behaviour` beside a rule's reasons:
/// a point scoring 0.6 or more stands out.
pub const STANDS_OUT: u8 = 60;

/// The key that ranks a session for the bottom-k sample: a hash of `(user_id,
/// session_start)` of our own (FNV-1a, then a finaliser), so that it is the same in
/// every build, process and restart.
pub fn sample_key(user_id: &str, session_start: Millis) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.bytes().chain(session_start.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// One model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The start of the UTC day from which it scores the sessions becoming final.
    pub valid_from: Millis,
    /// The sessions it was trained on.
    pub sessions: usize,
    /// The names of the features its forest splits on, in order ([`VECTOR`] when
    /// trained): a version stored by a build with other features is refused.
    pub features: Vec<String>,
    /// `None` when fewer than [`MIN_SAMPLE`] sessions were final before `valid_from`.
    pub forest: Option<Forest>,
}

/// A session's risk.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// 0–100: the larger of the strongest rule's points and the model's.
    pub score: u8,
    /// Most important first; the model's `unusual_behaviour` last.
    pub reasons: Vec<Reason>,
    /// The forest's own score, when the version has a forest.
    pub model_score: Option<f64>,
}

impl Model {
    /// The version valid from `valid_from`, trained on the features of the sample.
    pub fn train(valid_from: Millis, sample: &[&Features]) -> Model {
        let forest = (sample.len() >= MIN_SAMPLE).then(|| {
            let vectors: Vec<Vec<f64>> = sample.iter().map(|f| f.vector()).collect();
            Forest::train(&vectors, Growth { seed: valid_from as u64, ..Growth::default() })
        });
        Model { valid_from, sessions: sample.len(), features: VECTOR.map(String::from).to_vec(), forest }
    }

    /// A stored version (`risk_models.model`), checked: it has this build's features
    /// and a forest that can score them.
    pub fn read(json: &str) -> Result<Model, String> {
        let model: Model = serde_json::from_str(json).map_err(|e| format!("it does not read as a model: {e}"))?;
        if model.features != VECTOR {
            return Err(format!("its features are {:?}, this build's {VECTOR:?}", model.features));
        }
        model.forest.as_ref().map_or(Ok(()), |f| f.check(VECTOR.len()))?;
        Ok(model)
    }

    /// Its name in `session_risk.model_version` and `risk_models`: `forest-` or `rules-`
    /// (no forest), then the day it is valid from.
    pub fn version(&self) -> String {
        let kind = if self.forest.is_some() { "forest" } else { "rules" };
        format!("{kind}-{}", &format_rfc3339(self.valid_from)[..10])
    }

    /// The risk of a session with these features.
    pub fn assess(&self, features: &Features) -> Assessment {
        let mut reasons = rules::reasons(features);
        let model_score = self.forest.as_ref().map(|f| f.score(&features.vector()));
        let model_points = model_score.map_or(0, |s| (s * 100.0).round().clamp(0.0, 100.0) as u8);
        let rule_points = reasons.iter().map(|r| r.points()).max().unwrap_or(0);
        if model_points >= STANDS_OUT || (model_points > UNUSUAL_ABOVE && model_points > rule_points) {
            reasons.push(Reason::UnusualBehaviour);
        }
        Assessment { score: rule_points.max(model_points), reasons, model_score }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    /// A shopper's session: a few views at a reading pace, one purchase.
    fn shopper(i: i64) -> Features {
        Features {
            events: 8 + i % 5,
            duration_ms: 600_000 + 30_000 * (i % 7),
            median_gap_ms: 60_000 + 5_000 * (i % 9),
            page_views: 2,
            product_views: 4 + i % 3,
            products_viewed: 3 + i % 3,
            cart_adds: i % 2,
            products_carted: i % 2,
            largest_cart_add: i % 2,
            checkouts: i % 2,
            purchases: i % 2,
            products_purchased: i % 2,
            revenue_cents: (i % 2) * (3_000 + 100 * (i % 11)),
            ..Features::default()
        }
    }

    #[test]
    fn the_sample_key_is_fixed_and_spreads_sessions() {
        assert_eq!(sample_key("u1", D0), sample_key("u1", D0));
        assert_ne!(sample_key("u1", D0), sample_key("u1", D0 + 1));
        assert_ne!(sample_key("u1", D0), sample_key("u2", D0));
        // A value written down: a change of the hash would change every stored sample.
        assert_eq!(format!("{:#x}", sample_key("u1", D0)), "0x3b6bf0db3d59960");
        let below_half = (0..1000).filter(|i| sample_key(&format!("u{i}"), D0) < u64::MAX / 2).count();
        assert!((400..600).contains(&below_half), "{below_half} of 1000 keys below the middle");
    }

    #[test]
    fn without_enough_sessions_the_rules_score_alone() {
        let few: Vec<Features> = (0..MIN_SAMPLE as i64 - 1).map(shopper).collect();
        let model = Model::train(D0, &few.iter().collect::<Vec<_>>());
        assert_eq!((model.forest.is_some(), model.version()), (false, "rules-2026-11-01".to_string()));
        let stuffer = Features { events: 14, cart_adds: 13, ..Features::default() };
        let a = model.assess(&stuffer);
        assert_eq!((a.score, a.reasons, a.model_score), (80, vec![Reason::CartStuffing], None));
        assert_eq!(model.assess(&shopper(1)).score, 0);
    }

    #[test]
    fn the_forest_scores_what_is_unlike_the_sample_and_says_so() {
        let sample: Vec<Features> = (0..2 * MIN_SAMPLE as i64).map(shopper).collect();
        let model = Model::train(D0, &sample.iter().collect::<Vec<_>>());
        assert_eq!(model.version(), "forest-2026-11-01");
        assert_eq!(model, Model::train(D0, &sample.iter().collect::<Vec<_>>()), "the same sample gives the same model");
        let ordinary = model.assess(&shopper(3));
        assert!(ordinary.score < STANDS_OUT, "{ordinary:?}");
        assert_eq!(ordinary.reasons.is_empty(), ordinary.score <= UNUSUAL_ABOVE, "{ordinary:?}");
        // Nothing a rule names, but unlike every shopper: events, pace, views and amounts.
        let odd = Features {
            events: 60,
            duration_ms: 6 * 3_600_000,
            median_gap_ms: 360_000,
            product_views: 2,
            products_viewed: 1,
            cart_adds: 4,
            cart_removes: 4,
            products_carted: 1,
            largest_cart_add: 4,
            checkouts: 2,
            purchases: 2,
            products_purchased: 2,
            revenue_cents: 2 * 900_000,
            ..Features::default()
        };
        let a = model.assess(&odd);
        assert!(a.score >= STANDS_OUT && a.score >= ordinary.score + 10, "{a:?} against {ordinary:?}");
        assert_eq!(a.reasons, vec![Reason::UnusualBehaviour]);
        // A rule and the model: the rule comes first, the score is the larger.
        let stuffer = Features { events: 14, cart_adds: 13, products_carted: 13, largest_cart_add: 1, ..Features::default() };
        let a = model.assess(&stuffer);
        assert_eq!(a.reasons.first(), Some(&Reason::CartStuffing));
        assert!(a.score >= 80);
    }

    #[test]
    fn a_stored_version_reads_back_as_it_was_or_not_at_all() {
        let sample: Vec<Features> = (0..300).map(shopper).collect();
        let model = Model::train(D0, &sample.iter().collect::<Vec<_>>());
        let json = serde_json::to_string(&model).unwrap();
        assert_eq!(Model::read(&json), Ok(model.clone()), "every float as it was");
        let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(stored["forest"]["trees"][0][0]["Split"].is_object(), "the first tree splits at its root");
        let refused = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut v = stored.clone();
            change(&mut v);
            Model::read(&v.to_string()).unwrap_err()
        };
        let features = refused(&|v| v["features"].as_array_mut().unwrap().truncate(11));
        assert!(features.contains("its features are"), "{features}");
        let feature = refused(&|v| v["forest"]["trees"][0][0]["Split"]["feature"] = 12.into());
        assert!(feature.contains("splits on feature 12, of 12"), "{feature}");
        let cycle = refused(&|v| v["forest"]["trees"][0][0]["Split"]["below"] = 0.into());
        assert!(cycle.contains("child out of place"), "{cycle}");
        let empty = refused(&|v| v["forest"]["trees"][1] = serde_json::json!([]));
        assert!(empty.contains("tree 1 has no node"), "{empty}");
        assert!(Model::read("{}").unwrap_err().contains("does not read"));
    }
}
