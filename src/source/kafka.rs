//! The Kafka source: one consumer per timely worker, reading the topic's partitions
//! `p` with `p % workers == worker`, from the earliest offset, without committing
//! offsets to Kafka (`enable.auto.commit=false`).
//!
//! Owns consuming and lag. Offsets will be stored in PostgreSQL with the results.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Each, Source};
use crate::kafka::{config, REQUEST_TIMEOUT};

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
    /// The source of `worker` (of `workers`) over a topic of `count` partitions; `None`
    /// when no partition falls to this worker.
    pub fn assign(brokers: &str, topic: &str, count: usize, worker: usize, workers: usize, until_idle: Option<Duration>) -> Result<Option<KafkaSource>> {
        let numbers: Vec<i32> = (0..count).filter(|p| p % workers == worker).map(|p| p as i32).collect();
        if numbers.is_empty() {
            return Ok(None);
        }
        let consumer: BaseConsumer = config(brokers)
            .set("group.id", "clickflow")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .context("cannot create a Kafka consumer")?;
        let mut assignment = TopicPartitionList::new();
        for p in &numbers {
            assignment.add_partition_offset(topic, *p, Offset::Beginning).context("cannot assign a partition")?;
        }
        consumer.assign(&assignment).with_context(|| format!("cannot assign partitions of {topic}"))?;
        Ok(Some(KafkaSource {
            names: numbers.iter().map(|p| format!("kafka:{topic}/{p}")).collect(),
            next: vec![0; numbers.len()],
            numbers,
            consumer,
            topic: topic.to_owned(),
            until_idle,
            waited: Duration::ZERO,
        }))
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
                tracing::error!(partition = self.names[index], lost = message.offset() - self.next[index], "messages were lost before they were read");
            }
            self.next[index] = message.offset() + 1;
            self.waited = Duration::ZERO;
            let (name, offset) = (&self.names[index], message.offset());
            each(index, message.payload().unwrap_or_default(), &|| format!("{name}@{offset}"));
        }
        Ok(self.until_idle.is_some_and(|idle| self.waited >= idle))
    }

    fn lag(&mut self) -> Vec<Option<i64>> {
        (0..self.numbers.len())
            .map(|i| {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, self.numbers[i], REQUEST_TIMEOUT).ok()?;
                // Before a partition's first message, its position is its low watermark.
                Some((high - self.next[i].max(low)).max(0))
            })
            .collect()
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Unassigning first avoids a hang seen in rd_kafka_destroy.
        let _ = self.consumer.unassign();
    }
}
