//! Kafka's default partitioning: murmur2 of the key for keyed records (so
//! keys land where the Java client and librdkafka's `murmur2_random` put
//! them), and the uniform sticky partitioner (KIP-794) for unkeyed ones:
//! stay on one partition until `batch.size` bytes went to it, then move to
//! another at random, which keeps batches full without skewing load.

/// Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Per-topic state of the uniform sticky partitioner.
#[derive(Clone, Debug)]
pub struct Sticky {
    partition: i32,
    bytes: usize,
}

impl Default for Sticky {
    fn default() -> Sticky {
        Sticky {
            partition: -1,
            bytes: 0,
        }
    }
}

impl Sticky {
    /// The partition for the next unkeyed record of `size` bytes. `random`
    /// is called only when a new partition must be chosen.
    pub fn next(
        &mut self,
        partitions: i32,
        size: usize,
        batch_bytes: usize,
        random: impl FnOnce() -> u64,
    ) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if self.partition < 0 || self.partition >= partitions || self.bytes >= batch_bytes {
            let mut next = (random() % partitions as u64) as i32;
            // Moving on means moving to another partition, when there is one.
            if partitions > 1 && next == self.partition {
                next = (next + 1) % partitions;
            }
            self.partition = next;
            self.bytes = 0;
        }
        self.bytes += size;
        self.partition
    }
}

/// A small fast generator (xorshift64*) for partition choice; not for
/// anything that needs real randomness.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // The cases of Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn sticky_moves_after_a_batch_worth_of_bytes() {
        let mut sticky = Sticky::default();
        let mut random = XorShift::new(42);
        let first = sticky.next(10, 400, 1000, || random.next_u64());
        assert_eq!(sticky.next(10, 400, 1000, || random.next_u64()), first);
        assert_eq!(sticky.next(10, 400, 1000, || random.next_u64()), first);
        // 1200 bytes went to `first`: the next record moves elsewhere.
        assert_ne!(sticky.next(10, 400, 1000, || random.next_u64()), first);
        let mut single = Sticky::default();
        for _ in 0..10 {
            assert_eq!(single.next(1, 600, 1000, || random.next_u64()), 0);
        }
    }
}
