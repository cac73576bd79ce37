//! Timely operators and the logics they run.
//!
//! - [`by_epoch`]: the one stateful operator, driving an [`by_epoch::EpochLogic`] per
//!   completed epoch with the watermark;
//! - [`sessions`]: session windows per user;
//! - [`windows`]: tumbling windows per group, for any [`windows::WindowAggregate`];
//! - [`aggregates`]: traffic, product stats, funnel and conversion;
//! - [`cohorts`]: each user's cohort, and cohort retention;
//! - [`sales`]: purchases held until their day closes, for the daily analytics;
//! - [`rfm`]: recency, frequency and monetary scores and segments;
//! - [`pairs`]: products bought together;
//! - [`similar`]: products viewed together in final sessions;
//! - [`risk`]: final sessions scored by the day's model version;
//! - [`dedupe`]: the dedupe between the processes of a cluster.

pub mod aggregates;
pub mod by_epoch;
pub mod cohorts;
pub mod dedupe;
pub mod pairs;
pub mod rfm;
pub mod risk;
pub mod sales;
pub mod sessions;
pub mod similar;
pub mod windows;
