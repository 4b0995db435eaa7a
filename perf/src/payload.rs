//! Message payloads and keys.
//!
//! Every value starts with the 8-byte little-endian intended send time
//! (see [`crate::clock`]); the consumer reads it back to measure end-to-end
//! latency. The rest is one shared filler buffer per run, passed to the
//! producer as a second slice so nothing is copied per message except into
//! the batch itself.

use sluice_net::glommio_client::partitioner::XorShift;

use crate::workload::{KeyDistribution, PayloadKind};

/// Bytes of the timestamp at the start of every payload.
pub const TIMESTAMP_BYTES: usize = 8;

/// Words for the compressible filler: English-like text compresses about
/// three to four times with every Kafka codec.
const WORDS: &[&str] = &[
    "stream",
    "broker",
    "partition",
    "offset",
    "record",
    "batch",
    "leader",
    "replica",
    "commit",
    "segment",
    "index",
    "consumer",
    "producer",
    "topic",
    "latency",
    "throughput",
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
];

/// The bytes after the timestamp, `message_size - 8` of them.
pub fn filler(kind: PayloadKind, message_size: usize, seed: u64) -> Vec<u8> {
    let len = message_size.saturating_sub(TIMESTAMP_BYTES);
    let mut random = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    match kind {
        PayloadKind::Random => {
            while out.len() < len {
                out.extend_from_slice(&random.next_u64().to_le_bytes());
            }
        }
        PayloadKind::Compressible => {
            while out.len() < len {
                let word = WORDS[(random.next_u64() % WORDS.len() as u64) as usize];
                out.extend_from_slice(word.as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// The timestamp prefix of a payload.
pub fn timestamp_prefix(nanos: u64) -> [u8; TIMESTAMP_BYTES] {
    nanos.to_le_bytes()
}

/// Reads the timestamp back; `None` for a value too short to hold one.
pub fn read_timestamp(value: &[u8]) -> Option<u64> {
    value
        .first_chunk::<TIMESTAMP_BYTES>()
        .map(|bytes| u64::from_le_bytes(*bytes))
}

/// Chooses keys by the workload's distribution.
pub struct KeyChooser {
    distribution: KeyDistribution,
    keys: Vec<Vec<u8>>,
    /// Zipf cumulative weights, for a binary search per key.
    cumulative: Vec<f64>,
    next: usize,
    random: XorShift,
}

impl KeyChooser {
    pub fn new(distribution: KeyDistribution, count: u32, seed: u64) -> KeyChooser {
        let keys = match distribution {
            KeyDistribution::None => Vec::new(),
            _ => (0..count)
                .map(|index| format!("key-{index:08}").into_bytes())
                .collect(),
        };
        let cumulative = if distribution == KeyDistribution::Zipf {
            let mut total = 0.0;
            (1..=count)
                .map(|rank| {
                    total += 1.0 / f64::from(rank);
                    total
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut random = XorShift::new(seed);
        let next = if keys.is_empty() {
            0
        } else {
            (random.next_u64() % keys.len() as u64) as usize
        };
        KeyChooser {
            distribution,
            keys,
            cumulative,
            next,
            random,
        }
    }

    /// The next key, or `None` for unkeyed workloads.
    pub fn next_key(&mut self) -> Option<&[u8]> {
        if self.keys.is_empty() {
            return None;
        }
        let index = match self.distribution {
            KeyDistribution::None => return None,
            KeyDistribution::RoundRobin => {
                let index = self.next;
                self.next = (self.next + 1) % self.keys.len();
                index
            }
            KeyDistribution::Random => (self.random.next_u64() % self.keys.len() as u64) as usize,
            KeyDistribution::Zipf => {
                let total = self.cumulative.last().copied().unwrap_or(1.0);
                let target = (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                self.cumulative
                    .partition_point(|weight| *weight < target)
                    .min(self.keys.len() - 1)
            }
        };
        Some(&self.keys[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_requested_size_and_character() {
        for size in [8, 9, 100, 1024, 4097] {
            assert_eq!(
                filler(PayloadKind::Random, size, 1).len(),
                size - TIMESTAMP_BYTES
            );
            assert_eq!(
                filler(PayloadKind::Compressible, size, 1).len(),
                size - TIMESTAMP_BYTES
            );
        }
        let text = filler(PayloadKind::Compressible, 1024, 1);
        assert!(text
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || *byte == b' '));
    }

    #[test]
    fn timestamps_round_trip() {
        let value = [timestamp_prefix(123_456_789).as_slice(), b"rest"].concat();
        assert_eq!(read_timestamp(&value), Some(123_456_789));
        assert_eq!(read_timestamp(b"short"), None);
    }

    #[test]
    fn key_distributions_behave() {
        let mut none = KeyChooser::new(KeyDistribution::None, 10, 1);
        assert!(none.next_key().is_none());
        let mut round_robin = KeyChooser::new(KeyDistribution::RoundRobin, 3, 1);
        let first: Vec<Vec<u8>> = (0..6)
            .map(|_| round_robin.next_key().unwrap_or_default().to_vec())
            .collect();
        assert_eq!(first[0], first[3]);
        assert_ne!(first[0], first[1]);
        let mut zipf = KeyChooser::new(KeyDistribution::Zipf, 1000, 7);
        let hot = (0..10_000)
            .filter(|_| zipf.next_key() == Some(b"key-00000000".as_slice()))
            .count();
        // Rank 1 of 1000 under Zipf(1) has weight 1 / H(1000) ~ 13%.
        assert!((1_000..1_700).contains(&hot), "{hot}");
    }
}
