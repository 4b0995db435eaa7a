//! The recovery point of a partition: how far into its active segment the
//! log is known durable and already indexed, so that recovery after a crash
//! scans only what was written after it instead of the whole segment.
//!
//! Written after a group-commit fdatasync once enough bytes accumulated
//! since the last one (and on clean close), *after* the segment's index
//! files and the producer snapshot for the same offset, so a crash between
//! those writes leaves an older recovery point that is still true.

/// Bytes of durable log after which a new recovery point is written.
pub const RECOVERY_POINT_INTERVAL_BYTES: u64 = 64 * 1024 * 1024;

/// Payload length of the recovery point (six 8-byte fields).
pub const RECOVERY_POINT_BYTES: usize = 48;

/// File name inside the partition directory.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";

/// Where the durable, indexed prefix of the active segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub segment_base: i64,
    /// Bytes of the segment that are durable and whose index entries are in
    /// the segment's `.index` / `.timeindex` files.
    pub position: u64,
    /// The offset of the first batch at `position`.
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub bytes_since_index: u64,
}

impl RecoveryPoint {
    /// Big-endian fields in declaration order.
    pub fn encode(&self) -> [u8; RECOVERY_POINT_BYTES] {
        let mut out = [0u8; RECOVERY_POINT_BYTES];
        let fields: [u64; 6] = [
            self.segment_base as u64,
            self.position,
            self.next_offset as u64,
            self.max_timestamp as u64,
            self.offset_of_max_timestamp as u64,
            self.bytes_since_index,
        ];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_be_bytes());
        }
        out
    }

    /// Parses a payload; `None` if it has the wrong size or impossible values.
    pub fn decode(payload: &[u8]) -> Option<RecoveryPoint> {
        if payload.len() != RECOVERY_POINT_BYTES {
            return None;
        }
        let mut fields = [0u64; 6];
        for (field, chunk) in fields.iter_mut().zip(payload.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *field = u64::from_be_bytes(word);
        }
        let point = RecoveryPoint {
            segment_base: fields[0] as i64,
            position: fields[1],
            next_offset: fields[2] as i64,
            max_timestamp: fields[3] as i64,
            offset_of_max_timestamp: fields[4] as i64,
            bytes_since_index: fields[5],
        };
        let sane = point.segment_base >= 0
            && point.next_offset >= point.segment_base
            && point.position <= i32::MAX as u64
            && (point.position == 0) == (point.next_offset == point.segment_base);
        sane.then_some(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let point = RecoveryPoint {
            segment_base: 100,
            position: 4096,
            next_offset: 150,
            max_timestamp: 1_700_000_000_000,
            offset_of_max_timestamp: 149,
            bytes_since_index: 17,
        };
        assert_eq!(RecoveryPoint::decode(&point.encode()), Some(point));
        assert_eq!(RecoveryPoint::decode(&point.encode()[..40]), None);
        let inconsistent = RecoveryPoint {
            position: 0,
            ..point
        };
        assert_eq!(RecoveryPoint::decode(&inconsistent.encode()), None);
    }
}
