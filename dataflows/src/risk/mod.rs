//! Risk scoring of sessions (CONTRACT §7 `session_risk`): the model and its parts, pure
//! and unit-tested, with no I/O.
//!
//! - [`forest`]: the Isolation Forest that scores how unusual a session's features are.
//!
//! Session features, the reason rules and the scoring operator that combines them in the
//! dataflow come next (issue 10).

pub mod forest;
