//! DescribeLogDirs: each data directory, its size and free space, and the
//! partitions it holds with their sizes; a partition being moved is also
//! listed under its target directory as a future replica (`is_future_key`),
//! as Kafka lists one.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};
use sluice_engine::ShardId;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::log_dirs::disk_space;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 4);

/// One data directory's partitions, by topic: (partition, bytes, lag,
/// whether it is the copy a move is making).
type TopicSizes = BTreeMap<String, Vec<(i32, u64, i64, bool)>>;

/// A data directory's partitions and whether any of them fails its writes.
#[derive(Clone, Default)]
struct DirState {
    sizes: TopicSizes,
    failing: bool,
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeLogDirsRequest,
) -> Option<Pieces> {
    if !session.may_on_cluster(broker, Operation::Describe) {
        // Kafka answers an unauthorized request with no directories (and,
        // from v3, the error).
        let mut response = DescribeLogDirsResponse::default();
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        return Some(encode(&response, header.request_api_version));
    }
    let calls = (0..broker.shards()).map(|shard| {
        broker
            .mesh
            .call(ShardId(shard as u16), ShardRequest::LogSizes)
    });
    let dirs = broker.config.log_dirs();
    let mut states: Vec<DirState> = vec![DirState::default(); dirs.len()];
    for answer in futures_lite_join_all(calls.collect()).await {
        if let Some(ShardResponse::LogSizes(entries)) = answer {
            for entry in entries {
                if let Some(state) = states.get_mut(entry.dir) {
                    state.failing |= entry.failing;
                    state.sizes.entry(entry.topic).or_default().push((
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
    for (dir, state) in dirs.iter().zip(states) {
        let mut result = DescribeLogDirsResult::default();
        // A directory whose writes fail is reported as Kafka reports an
        // offline one; its partitions are still listed, as it holds them
        // and takes writes again once they succeed (a full disk freed).
        result.error_code = if state.failing {
            code::KAFKA_STORAGE_ERROR
        } else {
            code::NONE
        };
        result.log_dir = str_bytes(&dir.display().to_string());
        let (total, usable) = disk_space(dir);
        if header.request_api_version >= 4 {
            result.total_bytes = total;
            result.usable_bytes = usable;
        }
        for (topic, mut partitions) in state.sizes {
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
