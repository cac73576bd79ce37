//! clickflow's dataflow: the event model, admission rules and the timely/differential
//! graph that turns a clickstream into sessions, funnels, conversion, product stats and
//! traffic. No I/O: sources and sinks live in the `clickflow` binary.
//!
//! How the pieces compose, in the order data flows:
//!
//! 1. [`event::parse_event`] turns one message into an [`event::Event`] or a
//!    [`event::Rejection`] with a dead-letter reason.
//! 2. [`ingest::Ingest`], run by the source in input order, applies the watermark,
//!    lateness and dedupe, so that only accepted events enter the graph.
//! 3. The source feeds accepted events into a differential input at the current
//!    *epoch* (timely time is a batch number; event time travels as data) and sends the
//!    watermark at the end of each epoch.
//! 4. [`pipeline::clickstream`] wires the stateful operators: each is an
//!    [`operators::by_epoch::EpochLogic`] run once per completed epoch with the watermark,
//!    emitting `(row, epoch, ±1)` updates: a new version of a row, or the retraction of
//!    the version before. Rows carry `is_final`; state is dropped once a row is final.
//! 5. The sink consolidates the [`rows::Change`]s of each completed epoch into upserts and
//!    deletes.
//!
//! Because every logic sees whole epochs in order and the watermark only moves at epoch
//! ends, the final rows depend only on the input, not on batch sizes or worker count.

pub mod event;
pub mod ingest;
pub mod operators;
pub mod pipeline;
pub mod risk;
pub mod rows;
pub mod time;
