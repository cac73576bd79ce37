//! What the producer and the Kafka source share: client settings (with the user's own,
//! kept out of every message), a topic's partitions, topic creation, and the embedded
//! development broker.
//!
//! Owns every conversation with Kafka that is not producing or consuming records.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};

/// How long to wait for a broker to answer a metadata or admin request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lag query may hold up the worker that reads the partition.
pub const LAG_TIMEOUT: Duration = Duration::from_secs(1);
/// How long topic creation may take before falling back to automatic creation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Where Kafka is and how to talk to it: the bootstrap servers and the user's own client
/// settings (`--kafka-config key=value`: TLS, SASL, ...). Their values may be secrets:
/// they are never logged, and [`KafkaSettings::error`] blanks them out of messages.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    extra: Vec<(String, String)>,
}

impl KafkaSettings {
    /// `pairs` as given on the command line, each `key=value`.
    pub fn new(brokers: &str, pairs: &[String]) -> Result<KafkaSettings> {
        let mut extra = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => extra.push((key.trim().to_owned(), value.to_owned())),
                _ => bail!("--kafka-config number {} is not key=value", i + 1),
            }
        }
        Ok(KafkaSettings { brokers: brokers.to_owned(), extra })
    }

    /// Client settings every clickflow client uses, then the user's.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("log_level", "3");
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// `what: e`, with the value of every user setting blanked out.
    pub fn error(&self, what: &str, e: KafkaError) -> anyhow::Error {
        let mut text = format!("{what}: {e}");
        for (_, value) in self.extra.iter().filter(|(_, v)| !v.is_empty()) {
            text = text.replace(value.as_str(), "***");
        }
        anyhow!(text)
    }
}

/// The number of partitions of `topic`, or an error naming the broker and the topic.
pub fn partitions(kafka: &KafkaSettings, topic: &str) -> Result<Option<usize>> {
    let brokers = &kafka.brokers;
    let probe: BaseConsumer = kafka.client().create().map_err(|e| kafka.error("cannot create a Kafka client", e))?;
    let metadata =
        probe.fetch_metadata(Some(topic), REQUEST_TIMEOUT).map_err(|e| kafka.error(&format!("cannot reach Kafka at {brokers}"), e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    match t.error() {
        None => Ok(Some(t.partitions().len())),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => Ok(None),
        Some(e) => bail!("Kafka at {brokers} cannot describe topic {topic}: {:?}", RDKafkaErrorCode::from(e)),
    }
}

/// Creates `topic` with `count` partitions unless it exists; returns its partition count.
/// Brokers without the CreateTopics API (the development broker) create it on first
/// use instead, with their default partition count.
pub fn ensure_topic(kafka: &KafkaSettings, topic: &str, count: usize) -> Result<usize> {
    let brokers = &kafka.brokers;
    if let Some(n) = partitions(kafka, topic)? {
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> =
        kafka.client().create().map_err(|e| kafka.error("cannot create a Kafka admin client", e))?;
    let new = NewTopic::new(topic, count as i32, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)).request_timeout(Some(ADMIN_TIMEOUT));
    match futures_executor::block_on(admin.create_topics([&new], &options)) {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => bail!("cannot create topic {topic} on {brokers}: {code:?}"),
                }
            }
            tracing::info!(topic, partitions = count, "created topic");
        }
        Err(e) => {
            tracing::info!(topic, error = %e, "the broker did not create the topic: relying on its automatic creation");
            let producer: BaseProducer = kafka.client().create().map_err(|e| kafka.error("cannot create a Kafka client", e))?;
            producer
                .client()
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(|e| kafka.error(&format!("cannot create topic {topic} on {brokers}"), e))?;
        }
    }
    // Metadata can lag creation by a moment.
    for _ in 0..50 {
        if let Some(n) = partitions(kafka, topic)? {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("topic {topic} was created on {brokers} but does not show in its metadata")
}

/// Runs librdkafka's mock cluster, a Kafka-protocol broker in memory: for development
/// and tests only (no persistence). Writes its address to `address_file` when given,
/// prints it, and serves until the process is stopped.
pub fn serve_development_broker(address_file: Option<&str>, topic: &str, partitions: usize) -> Result<()> {
    let cluster = MockCluster::new(1).map_err(|e| anyhow!("cannot start the development broker: {e}"))?;
    cluster.create_topic(topic, partitions as i32, 1).map_err(|e| anyhow!("cannot create topic {topic}: {e}"))?;
    let address = cluster.bootstrap_servers();
    if let Some(file) = address_file {
        std::fs::write(file, &address).with_context(|| format!("cannot write {file}"))?;
    }
    println!("{address}");
    tracing::info!(address, topic, partitions, "development broker (librdkafka mock cluster, in memory) is up");
    let stop = crate::signals::stop_flag()?;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
