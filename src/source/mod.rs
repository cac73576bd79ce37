//! Sources: where messages come from. Each hands the processor raw messages with their
//! partition and position, and knows nothing of their meaning. [`file`] reads JSON Lines
//! (one partition); [`kafka`] reads the partitions of a topic assigned to one worker.

pub mod file;
pub mod kafka;

use std::time::Duration;

use anyhow::Result;
use dataflows::rows::Position;

/// Called for each message: partition index (into [`Source::partitions`]), bytes, where
/// the partition resumes after it, and the message's label for `dead_letters.source`,
/// made only when needed.
pub type Each<'a> = dyn FnMut(usize, &[u8], Position, &dyn Fn() -> String) + 'a;

pub trait Source {
    /// Names of the partitions read, e.g. `file:events.jsonl`, `kafka:clickstream/3`.
    fn partitions(&self) -> &[String];
    /// Hands over the messages available, waiting up to `timeout` for the first.
    /// Returns true once the input has ended (a bounded input, or `--until-idle`).
    fn poll(&mut self, timeout: Duration, each: &mut Each<'_>) -> Result<bool>;
    /// Messages not yet read, per partition, where the source can tell (Kafka lag).
    fn lag(&mut self) -> Vec<Option<i64>> {
        vec![None; self.partitions().len()]
    }
}
