//! Sending the producer's lines to Kafka: idempotent, lz4-compressed, keyed by
//! `user_id`; delivery failures are counted and reported, never silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{Sent, Sink};
use crate::kafka::KafkaSettings;

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone, Default)]
struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "Kafka did not accept a message");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<Counting>,
    deliveries: Arc<Deliveries>,
    topic: String,
    sent: u64,
}

impl KafkaSink {
    /// Connects, creating the topic with `partitions` if it does not exist.
    pub fn connect(kafka: &KafkaSettings, topic: &str, partitions: usize) -> Result<KafkaSink> {
        let n = crate::kafka::ensure_topic(kafka, topic, partitions)?;
        tracing::info!(brokers = kafka.brokers, topic, partitions = n, "producing to Kafka");
        let context = Counting::default();
        let deliveries = context.0.clone();
        let producer = kafka
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "10")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .create_with_context(context)
            .map_err(|e| kafka.error("cannot create a Kafka producer", e))?;
        Ok(KafkaSink { producer, deliveries, topic: topic.to_owned(), sent: 0 })
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, key: &str, line: &str) -> Result<()> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(line);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for deliveries instead of dropping.
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => bail!("cannot send to Kafka topic {}: {e}", self.topic),
            }
        }
        self.sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn status(&self) -> String {
        format!(
            "{} sent, {} delivered, {} failed, {} in flight",
            self.sent,
            self.deliveries.delivered.load(Ordering::Relaxed),
            self.deliveries.failed.load(Ordering::Relaxed),
            self.producer.in_flight_count()
        )
    }

    fn finish(&mut self) -> Result<Sent> {
        self.producer.flush(Duration::from_secs(60)).map_err(|e| anyhow!("cannot flush to Kafka: {e} ({})", self.status()))?;
        Ok(Sent { lines: self.sent, failed: self.deliveries.failed.load(Ordering::Relaxed) })
    }
}
