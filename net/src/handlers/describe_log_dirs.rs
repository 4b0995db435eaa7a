//! DescribeLogDirs: the data directory with every partition's size.

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

pub const VERSIONS: (i16, i16) = (1, 4);

/// Total and free bytes of the file system holding `path`.
fn disk_space(path: &std::path::Path) -> (i64, i64) {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return (-1, -1);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string; stat is a plain struct statvfs fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return (-1, -1);
    }
    let block = stat.f_frsize as i64;
    (stat.f_blocks as i64 * block, stat.f_bavail as i64 * block)
}

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
    let mut sizes: BTreeMap<String, Vec<(i32, u64, i64)>> = BTreeMap::new();
    for answer in futures_lite_join_all(calls.collect()).await {
        if let Some(ShardResponse::LogSizes(entries)) = answer {
            for (topic, partition, size, lag) in entries {
                sizes.entry(topic).or_default().push((partition, size, lag));
            }
        }
    }
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|entry| entry.topic.0.as_str() == topic && entry.partitions.contains(&partition)),
    };
    let mut result = DescribeLogDirsResult::default();
    result.error_code = code::NONE;
    result.log_dir = str_bytes(&broker.config.data_dir.display().to_string());
    let (total, usable) = disk_space(&broker.config.data_dir);
    if header.request_api_version >= 4 {
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    for (topic, mut partitions) in sizes {
        partitions.sort();
        let mut entry = DescribeLogDirsTopic::default();
        entry.name = TopicName(str_bytes(&topic));
        for (partition, size, lag) in partitions {
            if !wanted(&topic, partition) {
                continue;
            }
            let mut described = DescribeLogDirsPartition::default();
            described.partition_index = partition;
            described.partition_size = size as i64;
            described.offset_lag = lag.max(0);
            entry.partitions.push(described);
        }
        if !entry.partitions.is_empty() {
            result.topics.push(entry);
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    Some(encode(&response, header.request_api_version))
}
