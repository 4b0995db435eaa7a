//! The four Kafka record-batch codecs, as Kafka's own clients write them:
//! gzip, snappy with xerial framing (what the Java client writes; raw
//! snappy is read too, as librdkafka may write it), LZ4 frames with 64 KiB
//! independent blocks and no checksums (Kafka's `KafkaLZ4BlockOutputStream`),
//! and zstd. Decompression is bounded: a batch that inflates past a limit
//! is refused rather than allowed to exhaust memory.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};

use super::error::ClientError;

/// Compression codec of a record batch (the low three attribute bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The xerial snappy stream header: magic, then version 1 and compatible
/// version 1 as big-endian int32s.
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The magic alone, which is what identifies the framing when reading.
const SNAPPY_XERIAL_MAGIC_BYTES: usize = 8;
/// Uncompressed bytes per xerial block (snappy-java's default).
const SNAPPY_XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// zstd's default level, which Kafka's clients use.
const ZSTD_LEVEL: i32 = 3;
/// LZ4's fast mode (librdkafka's default); higher levels switch to LZ4 HC.
const LZ4_LEVEL: u32 = 0;

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's value in the batch attributes.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec a batch's attributes name; `None` for an unknown codec.
    pub fn from_attribute(value: i16) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.attribute() == value)
    }

    /// Kafka's `compression.type` name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses Kafka's `compression.type` name.
    pub fn from_name(name: &str) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name() == name)
    }
}

fn failed(codec: Compression, what: &str, error: impl std::fmt::Display) -> ClientError {
    ClientError::Records(format!("{} {what} failed: {error}", codec.name()))
}

/// Appends `input` compressed with `codec` to `out`.
pub fn compress(codec: Compression, input: &[u8], out: &mut BytesMut) -> Result<(), ClientError> {
    match codec {
        Compression::None => out.put_slice(input),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
            encoder
                .write_all(input)
                .map_err(|error| failed(codec, "compression", error))?;
            encoder
                .finish()
                .map_err(|error| failed(codec, "compression", error))?;
        }
        Compression::Snappy => {
            out.put_slice(SNAPPY_XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(SNAPPY_XERIAL_BLOCK_BYTES) {
                let length_at = out.len();
                out.put_u32(0);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(block.len()), 0);
                let written = encoder
                    .compress(block, &mut out[start..])
                    .map_err(|error| failed(codec, "compression", error))?;
                out.truncate(start + written);
                // A block is at most 32 KiB before compression, so its
                // compressed length fits a u32 comfortably.
                out[length_at..start].copy_from_slice(&(written as u32).to_be_bytes());
            }
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(LZ4_LEVEL)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out.writer())
                .map_err(|error| failed(codec, "compression", error))?;
            encoder
                .write_all(input)
                .map_err(|error| failed(codec, "compression", error))?;
            let (_, finished) = encoder.finish();
            finished.map_err(|error| failed(codec, "compression", error))?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out.writer(), ZSTD_LEVEL)
                .map_err(|error| failed(codec, "compression", error))?;
            encoder
                .write_all(input)
                .map_err(|error| failed(codec, "compression", error))?;
            encoder
                .finish()
                .map_err(|error| failed(codec, "compression", error))?;
        }
    }
    Ok(())
}

/// Reads all of `reader`, refusing more than `limit` bytes.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit: usize,
    hint: usize,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::with_capacity(hint.min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| failed(codec, "decompression", error))?;
    if out.len() > limit {
        return Err(ClientError::Records(format!(
            "{} batch inflates beyond {limit} bytes",
            codec.name()
        )));
    }
    Ok(out)
}

/// Decompresses `input`, refusing output longer than `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, ClientError> {
    // Compressed record data typically inflates a few times.
    let hint = input.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(ClientError::Records(format!(
                    "records exceed {limit} bytes"
                )));
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(input), limit, hint),
        Compression::Snappy => decompress_snappy(input, limit),
        Compression::Lz4 => {
            let decoder =
                lz4::Decoder::new(input).map_err(|error| failed(codec, "decompression", error))?;
            read_bounded(codec, decoder, limit, hint)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(input)
                .map_err(|error| failed(codec, "decompression", error))?;
            read_bounded(codec, decoder, limit, hint)
        }
    }
}

fn decompress_snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, ClientError> {
    let codec = Compression::Snappy;
    let mut decoder = snap::raw::Decoder::new();
    let mut raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), ClientError> {
        let len = snap::raw::decompress_len(block)
            .map_err(|error| failed(codec, "decompression", error))?;
        if out.len().saturating_add(len) > limit {
            return Err(ClientError::Records(format!(
                "snappy batch inflates beyond {limit} bytes"
            )));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(|error| failed(codec, "decompression", error))?;
        out.truncate(start + written);
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(&SNAPPY_XERIAL_HEADER[..SNAPPY_XERIAL_MAGIC_BYTES]) {
        raw_block(input, &mut out)?;
        return Ok(out);
    }
    let Some(mut rest) = input.get(SNAPPY_XERIAL_HEADER.len()..) else {
        return Err(ClientError::Records(
            "snappy stream header cut short".into(),
        ));
    };
    while !rest.is_empty() {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            return Err(ClientError::Records("snappy block length cut short".into()));
        };
        let length = u32::from_be_bytes(*length) as usize;
        let Some(block) = after.get(..length) else {
            return Err(ClientError::Records("snappy block cut short".into()));
        };
        raw_block(block, &mut out)?;
        rest = &after[length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial: repeated text with a counter, longer
        // than one snappy block and one LZ4 block.
        (0..5000)
            .flat_map(|index| format!("record number {index}; ").into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let input = sample();
        for codec in Compression::ALL {
            let mut compressed = BytesMut::new();
            compress(codec, &input, &mut compressed).expect("compresses");
            if codec != Compression::None {
                assert!(compressed.len() < input.len() / 2, "{codec:?} compresses");
            }
            let output = decompress(codec, &compressed, input.len()).expect("decompresses");
            assert_eq!(output, input, "{codec:?}");
        }
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let input = vec![0u8; 1 << 20];
        for codec in Compression::ALL {
            let mut compressed = BytesMut::new();
            compress(codec, &input, &mut compressed).expect("compresses");
            assert!(decompress(codec, &compressed, 1000).is_err(), "{codec:?}");
        }
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let input = sample();
        let raw = snap::raw::Encoder::new()
            .compress_vec(&input)
            .expect("compresses");
        assert_eq!(
            decompress(Compression::Snappy, &raw, input.len()).expect("reads"),
            input
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0x82u8, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 1, 2, 3];
        for codec in Compression::ALL {
            let _ = decompress(codec, &garbage, 1 << 20);
        }
        assert!(decompress(Compression::Snappy, &garbage, 1 << 20).is_err());
    }
}
