//! What the producer and the Kafka source share: client settings, a topic's partitions,
//! topic creation, and the embedded development broker.
//!
//! Owns every conversation with Kafka that is not producing or consuming records.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};

/// How long to wait for a broker to answer a metadata or admin request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long topic creation may take before falling back to automatic creation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Client settings every clickflow client uses.
pub fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("log_level", "3");
    c
}

/// The number of partitions of `topic`, or an error naming the broker and the topic.
pub fn partitions(brokers: &str, topic: &str) -> Result<Option<usize>> {
    let probe: BaseConsumer = config(brokers).create().context("cannot create a Kafka client")?;
    let metadata = probe
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| anyhow!("cannot reach Kafka at {brokers}: {e}"))?;
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
pub fn ensure_topic(brokers: &str, topic: &str, count: usize) -> Result<usize> {
    if let Some(n) = partitions(brokers, topic)? {
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> = config(brokers).create().context("cannot create a Kafka admin client")?;
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
            let producer: BaseProducer = config(brokers).create().context("cannot create a Kafka client")?;
            producer.client().fetch_metadata(Some(topic), REQUEST_TIMEOUT).map_err(|e| anyhow!("cannot create topic {topic} on {brokers}: {e}"))?;
        }
    }
    // Metadata can lag creation by a moment.
    for _ in 0..50 {
        if let Some(n) = partitions(brokers, topic)? {
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
