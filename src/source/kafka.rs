//! The Kafka source: one consumer per timely worker, reading the topic's partitions
//! `p` with `p % workers == worker`, each from the offset committed in PostgreSQL with
//! the results (or the earliest), without committing offsets to Kafka
//! (`enable.auto.commit=false`).
//!
//! Owns consuming and lag.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use dataflows::rows::Position;

use super::{Each, Source};
use crate::kafka::{KafkaSettings, LAG_TIMEOUT};

/// Messages handed over per poll at most.
const BATCH: usize = 4096;

pub struct KafkaSource {
    consumer: BaseConsumer,
    topic: String,
    /// Assigned partition numbers, and their names.
    numbers: Vec<i32>,
    names: Vec<String>,
    /// Next offset to read, per assigned partition.
    next: Vec<i64>,
    until_idle: Option<Duration>,
    /// Time spent waiting in `poll` since the last message (not time spent elsewhere,
    /// such as waiting for the sink: that is no sign of a drained topic).
    waited: Duration,
}

impl KafkaSource {
    /// The source of `worker` (of `workers`) over a topic of `count` partitions, each
    /// read from the offset `start` gives for its name (else the earliest); `None` when
    /// no partition falls to this worker.
    pub fn assign(
        kafka: &KafkaSettings,
        topic: &str,
        count: usize,
        (worker, workers): (usize, usize),
        start: &dyn Fn(&str) -> Option<i64>,
        until_idle: Option<Duration>,
    ) -> Result<Option<KafkaSource>> {
        let numbers: Vec<i32> = (0..count).filter(|p| p % workers == worker).map(|p| p as i32).collect();
        if numbers.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = numbers.iter().map(|p| name(topic, *p)).collect();
        let consumer: BaseConsumer = kafka
            .client()
            .set("group.id", "clickflow")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| kafka.error("cannot create a Kafka consumer", e))?;
        let mut assignment = TopicPartitionList::new();
        let next: Vec<i64> = names.iter().map(|n| start(n).unwrap_or(0)).collect();
        for (p, offset) in numbers.iter().zip(&next) {
            let offset = if *offset > 0 { Offset::Offset(*offset) } else { Offset::Beginning };
            assignment.add_partition_offset(topic, *p, offset).context("cannot assign a partition")?;
        }
        consumer.assign(&assignment).with_context(|| format!("cannot assign partitions of {topic}"))?;
        Ok(Some(KafkaSource { names, next, numbers, consumer, topic: topic.to_owned(), until_idle, waited: Duration::ZERO }))
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> &[String] {
        &self.names
    }

    fn poll(&mut self, timeout: Duration, each: &mut Each<'_>) -> Result<bool> {
        let mut wait = timeout;
        let started = Instant::now();
        for _ in 0..BATCH {
            let Some(result) = self.consumer.poll(wait) else {
                if wait > Duration::ZERO {
                    self.waited += started.elapsed();
                }
                break;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(m) => m,
                Err(e) => {
                    // librdkafka retries by itself; report and go on.
                    tracing::warn!(error = %e, topic = self.topic, "Kafka consumer error");
                    continue;
                }
            };
            let Some(index) = self.numbers.iter().position(|p| *p == message.partition()) else { continue };
            if self.next[index] > 0 && message.offset() > self.next[index] {
                // The broker dropped messages before they were read (retention, or the
                // development broker's 5 MiB per partition): they cannot be accounted for.
                tracing::error!(
                    partition = self.names[index],
                    lost = message.offset() - self.next[index],
                    "messages were lost before they were read"
                );
            }
            self.next[index] = message.offset() + 1;
            self.waited = Duration::ZERO;
            let (name, offset) = (&self.names[index], message.offset());
            let next = Position { offset: offset + 1, line: 0 };
            each(index, message.payload().unwrap_or_default(), next, &|| format!("{name}@{offset}"));
        }
        Ok(self.until_idle.is_some_and(|idle| self.waited >= idle))
    }

    fn lag(&mut self) -> Vec<Option<i64>> {
        (0..self.numbers.len())
            .map(|i| {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, self.numbers[i], LAG_TIMEOUT).ok()?;
                // Before a partition's first message, its position is its low watermark.
                Some((high - self.next[i].max(low)).max(0))
            })
            .collect()
    }
}

/// The partition name of partition `p` of `topic`: `kafka:<topic>/<p>`.
pub fn name(topic: &str, p: i32) -> String {
    format!("kafka:{topic}/{p}")
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Unassigning first avoids a hang seen in rd_kafka_destroy.
        let _ = self.consumer.unassign();
    }
}
