//! Sparse indexes of a segment, in Kafka's file formats (big-endian):
//! `.index` holds (relative offset u32, position u32) pairs, `.timeindex`
//! holds (timestamp i64, relative offset u32) pairs, both in ascending order.
//!
//! The active segment keeps its indexes in memory only; they are written when
//! the segment is sealed, and rebuilt by the recovery scan after a crash.
//! Sealed segments load them lazily on the first read that needs them.

/// Bytes per `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// One offset-index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// A segment's offset and time indexes.
#[derive(Clone, Debug, Default)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// The file position to start scanning from for `relative_offset`: the
    /// last entry at or before it, else the segment start.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        self.entry_for(relative_offset).position
    }

    /// The last entry at or before `relative_offset`, else the segment start
    /// (relative offset 0 at position 0). The batch at its position must have
    /// its relative offset as base: a reader checks that, because index files
    /// carry no checksum.
    pub fn entry_for(&self, relative_offset: u32) -> OffsetEntry {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        match after {
            0 => OffsetEntry {
                relative_offset: 0,
                position: 0,
            },
            n => self.offsets[n - 1],
        }
    }

    /// The bytes from the batch at `relative_offset` to the next entry's
    /// position, or to `end` (what is written of the segment) after the
    /// last entry, when a batch starts exactly there (an entry of its own,
    /// or the segment's start). Entries come every `index.interval.bytes`
    /// of log, so a batch at least that long is followed by an entry of the
    /// next batch's (or ends the segment), and this is its size; after a
    /// shorter one it is less than the interval and one batch more.
    pub fn extent_at(&self, relative_offset: u32, end: u64) -> Option<u64> {
        let at = self
            .offsets
            .partition_point(|entry| entry.relative_offset < relative_offset);
        let (start, next) = match self.offsets.get(at) {
            Some(entry) if entry.relative_offset == relative_offset => {
                (entry.position, self.offsets.get(at + 1))
            }
            next if relative_offset == 0 => (0, next),
            _ => return None,
        };
        let until = next.map_or(end, |next| u64::from(next.position));
        until
            .checked_sub(u64::from(start))
            .filter(|&extent| extent > 0)
    }

    /// The relative offset to start scanning from for the first record with
    /// a timestamp at or after `timestamp`.
    pub fn relative_offset_for_time(&self, timestamp: i64) -> u32 {
        let before = self
            .times
            .partition_point(|entry| entry.timestamp < timestamp);
        match before {
            0 => 0,
            n => self.times[n - 1].relative_offset,
        }
    }

    /// Drops every entry at or after `relative_offset` (log truncation).
    pub fn truncate_from(&mut self, relative_offset: u32) {
        self.offsets
            .retain(|entry| entry.relative_offset < relative_offset);
        self.times
            .retain(|entry| entry.relative_offset < relative_offset);
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offsets {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for entry in &self.times {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses index files. Returns `None` if either is malformed (wrong size,
    /// entries out of order, positions past the segment end), in which case
    /// the caller rebuilds the index by scanning the segment.
    pub fn decode(offsets: &[u8], times: &[u8], segment_bytes: u64) -> Option<SegmentIndex> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
            || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
        {
            return None;
        }
        let mut index = SegmentIndex::default();
        for chunk in offsets.chunks_exact(OFFSET_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if u64::from(entry.position) >= segment_bytes.max(1) {
                return None;
            }
            if let Some(last) = index.offsets.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return None;
                }
            }
            index.offsets.push(entry);
        }
        for chunk in times.chunks_exact(TIME_ENTRY_BYTES) {
            let mut stamp = [0u8; 8];
            stamp.copy_from_slice(&chunk[..8]);
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(stamp),
                relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            if let Some(last) = index.times.last() {
                if entry.timestamp < last.timestamp || entry.relative_offset < last.relative_offset
                {
                    return None;
                }
            }
            index.times.push(entry);
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        SegmentIndex {
            offsets: vec![
                OffsetEntry {
                    relative_offset: 10,
                    position: 4096,
                },
                OffsetEntry {
                    relative_offset: 20,
                    position: 8192,
                },
            ],
            times: vec![
                TimeEntry {
                    timestamp: 100,
                    relative_offset: 10,
                },
                TimeEntry {
                    timestamp: 200,
                    relative_offset: 20,
                },
            ],
        }
    }

    #[test]
    fn lookups_pick_the_entry_at_or_before() {
        let index = sample();
        assert_eq!(index.position_for(0), 0);
        assert_eq!(index.position_for(10), 4096);
        assert_eq!(index.position_for(15), 4096);
        assert_eq!(index.position_for(25), 8192);
        assert_eq!(index.relative_offset_for_time(50), 0);
        assert_eq!(index.relative_offset_for_time(150), 10);
        assert_eq!(index.relative_offset_for_time(250), 20);
    }

    #[test]
    fn extents_run_from_an_exact_entry_to_the_next() {
        let index = sample();
        let end = 10_000;
        // The segment's first batch starts at 0 without an entry.
        assert_eq!(index.extent_at(0, end), Some(4096));
        assert_eq!(index.extent_at(10, end), Some(4096));
        // Not at an entry: where the batch ends is not known.
        assert_eq!(index.extent_at(15, end), None);
        // After the last entry: to what is written.
        assert_eq!(index.extent_at(20, end), Some(end - 8192));
        assert_eq!(index.extent_at(20, 8192), None);
        assert_eq!(SegmentIndex::default().extent_at(0, 300), Some(300));
        assert_eq!(SegmentIndex::default().extent_at(3, 300), None);
    }

    #[test]
    fn round_trip_and_rejects_disorder() {
        let index = sample();
        let decoded =
            SegmentIndex::decode(&index.encode_offsets(), &index.encode_times(), 1 << 20).unwrap();
        assert_eq!(decoded.offsets, index.offsets);
        assert_eq!(decoded.times, index.times);
        let mut swapped = index.encode_offsets();
        swapped.rotate_left(OFFSET_ENTRY_BYTES);
        assert!(SegmentIndex::decode(&swapped, &[], 1 << 20).is_none());
        assert!(SegmentIndex::decode(&[0; 7], &[], 1 << 20).is_none());
        assert!(SegmentIndex::decode(&index.encode_offsets(), &[], 100).is_none());
    }
}
