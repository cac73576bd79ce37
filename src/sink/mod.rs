//! The PostgreSQL sink: [`batch`] gathers the dataflow's changes per completed epoch,
//! [`tables`] encodes rows as COPY lines, [`postgres`] writes each batch in one
//! transaction with the sources' positions; [`checkpoint`] reads back what a restart
//! needs. Nothing here computes figures; it only persists what the dataflow says.

pub mod batch;
pub mod checkpoint;
pub mod postgres;
pub mod tables;
pub mod writer;
