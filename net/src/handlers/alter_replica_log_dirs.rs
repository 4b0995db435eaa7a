//! AlterReplicaLogDirs: moves partitions of this broker to another of its
//! data directories. Each move starts on the partition's owner shard and
//! is answered at once, as Kafka does; DescribeLogDirs shows where each
//! partition is (`broker::move_log` has the mechanics).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, RequestHeader, TopicName,
};
use sluice_engine::ShardId;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 2);

/// One owner shard's share: positions in the answer, and the moves
/// `(topic, partition, data directory index)`.
type ShardMoves = (Vec<usize>, Vec<(String, i32, usize)>);

/// A directory as the file system names it, so that `/d/./x` and `/d/x`
/// are one directory; None if it does not exist.
fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AlterReplicaLogDirsRequest,
) -> Option<Pieces> {
    let online: Vec<Option<PathBuf>> = broker
        .config
        .log_dirs()
        .iter()
        .map(|dir| canonical(dir))
        .collect();
    let offline: Vec<PathBuf> = broker
        .config
        .offline_log_dirs
        .iter()
        .map(|dir| canonical(dir).unwrap_or_else(|| dir.clone()))
        .collect();
    let metadata = broker.metadata();
    let node = broker.config.node_id;
    // (topic, partition, code), in request order; moves go to owner shards.
    let mut answers: Vec<(String, i32, i16)> = Vec::new();
    let mut per_shard: Vec<ShardMoves> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let allowed = session.may_on_cluster(broker, Operation::Alter);
    for dir in &request.dirs {
        let requested = Path::new(dir.path.as_str());
        let wanted = canonical(requested);
        let target = wanted
            .as_ref()
            .and_then(|wanted| online.iter().position(|dir| dir.as_ref() == Some(wanted)));
        let dir_error = match target {
            Some(_) => code::NONE,
            None if offline
                .iter()
                .any(|dir| Some(dir) == wanted.as_ref() || dir == requested) =>
            {
                code::KAFKA_STORAGE_ERROR
            }
            None => code::LOG_DIR_NOT_FOUND,
        };
        for topic in &dir.topics {
            let name = topic.name.0.as_str();
            for &partition in &topic.partitions {
                let error = if !allowed {
                    code::CLUSTER_AUTHORIZATION_FAILED
                } else if dir_error != code::NONE {
                    dir_error
                } else {
                    match metadata.partition(name, partition) {
                        None => code::UNKNOWN_TOPIC_OR_PARTITION,
                        Some(state) if !state.replicas.contains(&node) => {
                            code::NOT_LEADER_OR_FOLLOWER
                        }
                        Some(_) => code::NONE,
                    }
                };
                if let (code::NONE, Some(target)) = (error, target) {
                    let shard = broker.owner(name, partition);
                    let (positions, moves) = &mut per_shard[shard.0 as usize];
                    positions.push(answers.len());
                    moves.push((name.to_string(), partition, target));
                }
                answers.push((name.to_string(), partition, error));
            }
        }
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (shard, (indexes, moves)) in per_shard.into_iter().enumerate() {
        if moves.is_empty() {
            continue;
        }
        positions.push(indexes);
        calls.push(
            broker
                .mesh
                .call(ShardId(shard as u16), ShardRequest::MoveLogs(moves)),
        );
    }
    for (indexes, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        let codes = match answer {
            Some(ShardResponse::Codes(codes)) => codes,
            _ => vec![code::KAFKA_STORAGE_ERROR; indexes.len()],
        };
        for (index, error) in indexes.into_iter().zip(codes) {
            answers[index].2 = error;
        }
    }
    let mut response = AlterReplicaLogDirsResponse::default();
    for (topic, partition, error) in answers {
        let mut result = AlterReplicaLogDirPartitionResult::default();
        result.partition_index = partition;
        result.error_code = error;
        match response.results.last_mut() {
            Some(last) if last.topic_name.0.as_str() == topic => last.partitions.push(result),
            _ => {
                let mut entry = AlterReplicaLogDirTopicResult::default();
                entry.topic_name = TopicName(str_bytes(&topic));
                entry.partitions = vec![result];
                response.results.push(entry);
            }
        }
    }
    Some(encode(&response, header.request_api_version))
}
