//! Risk scoring of sessions (CONTRACT §7 `session_risk`): the model and its parts, pure
//! and unit-tested, with no I/O.
//!
//! - [`features`]: what a session's own events say (pace, breadth, repetition, amounts),
//!   and the vector the model sees;
//! - [`rules`]: the reasons vocabulary, each reason a rule over the features;
//! - [`forest`]: the Isolation Forest that scores how unusual a session's vector is;
//! - [`score`]: a model version (the forest trained on a sample of earlier sessions) and
//!   the assessment that combines the rules and the forest into a score with reasons.
//!
//! The operator that scores final sessions in the dataflow and keeps the versions is
//! `operators::risk`; `clickflow serve` scores with the same [`score::Model::assess`].

pub mod features;
pub mod forest;
pub mod rules;
pub mod score;
