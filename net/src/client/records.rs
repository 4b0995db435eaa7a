//! Record removal (`sluice topic trim`): DeleteRecords, which moves
//! partitions' log start offsets forward. Like ListOffsets it must reach each
//! partition's leader, so the partitions are grouped by leader and each
//! leader gets one request.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::admin::{Admin, TopicMetadata};
use super::error::{ClientError, KafkaError};

/// The `offset` DeleteRecords reads as "the partition's high watermark":
/// everything committed so far goes.
pub const DELETE_BEFORE_HIGH_WATERMARK: i64 = -1;

/// Kafka's LEADER_NOT_AVAILABLE error code, for partitions without a leader.
const LEADER_NOT_AVAILABLE: i16 = 5;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION error code, for partitions the topic
/// does not have.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A partition's log start after DeleteRecords (its "low watermark"), or
/// the broker's refusal for that partition.
#[derive(Clone, Debug)]
pub struct LowWatermark {
    pub partition: i32,
    pub low_watermark: Result<i64, KafkaError>,
}

impl Admin {
    /// Removes the records of `topic` before the given offsets, one
    /// `(partition, offset)` per partition ([`DELETE_BEFORE_HIGH_WATERMARK`]
    /// for everything committed), asking each partition's leader. The
    /// answers come back sorted by partition; a partition that is refused
    /// or that the topic lacks carries its error instead of a low watermark.
    pub fn delete_records(
        &mut self,
        topic: &TopicMetadata,
        before: &[(i32, i64)],
    ) -> Result<Vec<LowWatermark>, ClientError> {
        let timeout_ms = self.options().operation_timeout_ms;
        let mut results = Vec::with_capacity(before.len());
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for &(partition, offset) in before {
            let known = topic
                .partitions
                .iter()
                .find(|known| known.partition == partition);
            match known.map(|known| known.leader) {
                Some(Some(leader)) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((partition, offset)),
                Some(None) => results.push(LowWatermark {
                    partition,
                    low_watermark: Err(KafkaError::new(LEADER_NOT_AVAILABLE, None)),
                }),
                None => results.push(LowWatermark {
                    partition,
                    low_watermark: Err(KafkaError::new(
                        UNKNOWN_TOPIC_OR_PARTITION,
                        Some(format!(
                            "Topic '{}' has no partition {partition} (it has {}).",
                            topic.name,
                            topic.partitions.len()
                        )),
                    )),
                }),
            }
        }
        for (leader, asked) in by_leader {
            let connection = self.connection_to(leader)?;
            let version = connection.version(ApiKey::DeleteRecords)?;
            let mut deleted = DeleteRecordsTopic::default();
            deleted.name = TopicName(StrBytes::from_string(topic.name.clone()));
            deleted.partitions = asked
                .iter()
                .map(|&(partition, offset)| {
                    let mut entry = DeleteRecordsPartition::default();
                    entry.partition_index = partition;
                    entry.offset = offset;
                    entry
                })
                .collect();
            let mut request = DeleteRecordsRequest::default();
            request.topics = vec![deleted];
            request.timeout_ms = timeout_ms;
            let response = connection.send(&request, version)?;
            let answered: Vec<_> = response
                .topics
                .into_iter()
                .filter(|answer| answer.name.0.as_str() == topic.name)
                .flat_map(|answer| answer.partitions)
                .collect();
            for (partition, _) in asked {
                let answer = answered
                    .iter()
                    .find(|answer| answer.partition_index == partition)
                    .ok_or_else(|| ClientError::Protocol {
                        address: connection.address().to_string(),
                        api: ApiKey::DeleteRecords,
                        message: format!("no result for partition {}-{partition}", topic.name),
                    })?;
                let low_watermark =
                    KafkaError::check(answer.error_code, None).map(|()| answer.low_watermark);
                results.push(LowWatermark {
                    partition,
                    low_watermark,
                });
            }
        }
        results.sort_by_key(|result| result.partition);
        Ok(results)
    }
}
