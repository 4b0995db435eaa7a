//! DescribeLogDirs: each data directory, its size and free space, and the
//! partitions it holds with their sizes; a partition being moved is also
//! listed under its target directory as a future replica (`is_future_key`),
//! as Kafka lists one.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};
use sluice_engine::ShardId;

use super::{encode, str_bytes};
use crate::broker::{futures_lite_join_all, Broker, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::log_dirs::disk_space;

pub const VERSIONS: (i16, i16) = (1, 4);

/// One data directory's partitions, by topic: (partition, bytes, lag,
/// whether it is the copy a move is making).
type TopicSizes = BTreeMap<String, Vec<(i32, u64, i64, bool)>>;

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: DescribeLogDirsRequest,
) -> Option<Vec<Bytes>> {
    let calls = (0..broker.shards()).map(|shard| {
        broker
            .mesh
            .call(ShardId(shard as u16), ShardRequest::LogSizes)
    });
    let dirs = broker.config.log_dirs();
    let mut sizes: Vec<TopicSizes> = vec![BTreeMap::new(); dirs.len()];
    for answer in futures_lite_join_all(calls.collect()).await {
        if let Some(ShardResponse::LogSizes(entries)) = answer {
            for entry in entries {
                if let Some(dir_sizes) = sizes.get_mut(entry.dir) {
                    dir_sizes.entry(entry.topic).or_default().push((
                        entry.partition,
                        entry.bytes,
                        entry.lag,
                        entry.future,
                    ));
                }
            }
        }
    }
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|entry| entry.topic.0.as_str() == topic && entry.partitions.contains(&partition)),
    };
    let mut results = Vec::with_capacity(dirs.len());
    for (dir, dir_sizes) in dirs.iter().zip(sizes) {
        let mut result = DescribeLogDirsResult::default();
        result.error_code = code::NONE;
        result.log_dir = str_bytes(&dir.display().to_string());
        let (total, usable) = disk_space(dir);
        if header.request_api_version >= 4 {
            result.total_bytes = total;
            result.usable_bytes = usable;
        }
        for (topic, mut partitions) in dir_sizes {
            partitions.sort();
            let mut entry = DescribeLogDirsTopic::default();
            entry.name = TopicName(str_bytes(&topic));
            for (partition, size, lag, future) in partitions {
                if !wanted(&topic, partition) {
                    continue;
                }
                let mut described = DescribeLogDirsPartition::default();
                described.partition_index = partition;
                described.partition_size = size as i64;
                described.offset_lag = lag.max(0);
                described.is_future_key = future;
                entry.partitions.push(described);
            }
            if !entry.partitions.is_empty() {
                result.topics.push(entry);
            }
        }
        results.push(result);
    }
    // Left out at start (missing): offline, as Kafka reports a failed
    // directory.
    for dir in &broker.config.offline_log_dirs {
        let mut result = DescribeLogDirsResult::default();
        result.error_code = code::KAFKA_STORAGE_ERROR;
        result.log_dir = str_bytes(&dir.display().to_string());
        result.total_bytes = -1;
        result.usable_bytes = -1;
        results.push(result);
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = results;
    Some(encode(&response, header.request_api_version))
}
