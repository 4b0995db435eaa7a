//! Partition sizes on disk (`sluice topic describe --stats`): DescribeLogDirs,
//! which each broker answers for its own data directories only, so it is
//! asked of every broker that holds a replica of the topic.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::admin::{Admin, TopicMetadata};
use super::error::{ClientError, KafkaError};

/// One replica of a partition as its broker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSize {
    pub broker: i32,
    pub partition: i32,
    pub log_dir: String,
    /// Bytes of the replica's log segments.
    pub size_bytes: i64,
    /// How far the replica is behind its leader's log end (0 on the leader).
    pub offset_lag: i64,
    /// A copy being made by a move between directories (not yet the replica).
    pub future: bool,
}

impl Admin {
    /// Every replica of `topic`'s partitions with its size, asked of each
    /// broker that holds one. Sorted by partition, then broker.
    pub fn replica_sizes(
        &mut self,
        topic: &TopicMetadata,
    ) -> Result<Vec<ReplicaSize>, ClientError> {
        let brokers: BTreeSet<i32> = topic
            .partitions
            .iter()
            .flat_map(|partition| partition.replicas.iter().copied())
            .collect();
        let mut described = DescribableLogDirTopic::default();
        described.topic = TopicName(StrBytes::from_string(topic.name.clone()));
        described.partitions = topic
            .partitions
            .iter()
            .map(|partition| partition.partition)
            .collect();
        let mut request = DescribeLogDirsRequest::default();
        request.topics = Some(vec![described]);
        let mut sizes = Vec::new();
        for broker in brokers {
            let connection = self.connection_to(broker)?;
            let version = connection.version(ApiKey::DescribeLogDirs)?;
            let response = connection.send(&request, version)?;
            // v3 and later carry a top-level error, such as an
            // authorization failure.
            KafkaError::check(response.error_code, None)?;
            for dir in response.results {
                // A failed directory's partitions are not listed; its error
                // is not this topic's.
                if dir.error_code != 0 {
                    continue;
                }
                for listed in dir
                    .topics
                    .iter()
                    .filter(|listed| listed.name.0.as_str() == topic.name)
                {
                    sizes.extend(listed.partitions.iter().map(|partition| ReplicaSize {
                        broker,
                        partition: partition.partition_index,
                        log_dir: dir.log_dir.as_str().to_string(),
                        size_bytes: partition.partition_size,
                        offset_lag: partition.offset_lag,
                        future: partition.is_future_key,
                    }));
                }
            }
        }
        sizes.sort_by_key(|size| (size.partition, size.broker, size.future));
        Ok(sizes)
    }
}
