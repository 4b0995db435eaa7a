//! AlterReplicaLogDirs (API key 34): move partitions of this broker to
//! another of its data directories.

use kafka_protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AlterReplicaLogDirs versions Sluice decodes: Kafka 4.2's (v0 went with
/// Kafka 4.0).
pub const ALTER_REPLICA_LOG_DIRS_VERSIONS: (i16, i16) = (1, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes an AlterReplicaLogDirs request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<AlterReplicaLogDirsRequest, DecodeError> {
    check_version(
        ApiKey::AlterReplicaLogDirs,
        version,
        ALTER_REPLICA_LOG_DIRS_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = AlterReplicaLogDirsRequest::default();
    req.dirs = r.array_v(flexible, |r| dir(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn dir(r: &mut Reader, flexible: bool) -> Result<AlterReplicaLogDir, DecodeError> {
    let mut dir = AlterReplicaLogDir::default();
    dir.path = r.string_v(flexible)?;
    dir.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    r.tagged_fields_v(flexible, &mut dir.unknown_tagged_fields)?;
    Ok(dir)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<AlterReplicaLogDirTopic, DecodeError> {
    let mut topic = AlterReplicaLogDirTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
