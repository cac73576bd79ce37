//! Risk scoring of sessions (CONTRACT §7 `session_risk`): the model and its parts, pure
//! and unit-tested, with no I/O.
//!
//! - [`features`]: what a session's own events say (pace, breadth, repetition, amounts),
//!   and the vector the model sees;
//! - [`rules`]: the reasons vocabulary, each reason a rule over the features;
//! - [`forest`]: the Isolation Forest that scores how unusual a session's vector is.
//!
//! The scoring operator that combines them in the dataflow, and its model versions, come
//! next (issue 10).

pub mod features;
pub mod forest;
pub mod rules;
