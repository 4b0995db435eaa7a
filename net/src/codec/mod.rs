//! Bounds-checked decoders for the Kafka requests a Sluice broker receives.
//!
//! # Why this module exists
//!
//! Sluice uses the `kafka-protocol` crate's message structs so that handlers work with the
//! same types as the rest of the ecosystem, and it uses that crate's *encoders* for responses.
//! It must not use that crate's *decoders* on network input, though: their array decoders call
//! `Vec::with_capacity(n)` with `n` taken straight from the wire, so a 14-byte Metadata request
//! that claims 2^31 topics makes the allocator abort the whole process. Everything that decodes
//! untrusted bytes therefore goes through this module instead.
//!
//! The decoders here produce `kafka-protocol`'s request structs, but read them with a
//! [`Reader`] that checks every length, count and varint before acting on it:
//!
//! * an array's element count is compared with the bytes that remain *before* anything is
//!   allocated (each element takes at least one byte on the wire, so a larger count cannot be
//!   honest), and the up-front reservation is capped so that it never exceeds the remaining
//!   bytes of the frame either;
//! * negative lengths other than the `-1` null marker, over-long varints, strings longer than
//!   Kafka permits and invalid UTF-8 are rejected;
//! * tagged-field sections are limited to [`TAGGED_FIELDS_MAX`] entries in strictly ascending
//!   tag order, and unknown tags are kept in the struct's `unknown_tagged_fields` map;
//! * strings, byte fields and unknown tagged fields are zero-copy slices of the frame, so a
//!   Produce request's record sets stay views into the buffer they arrived in.
//!
//! Each decoder is cross-checked against `kafka-protocol`'s encoders and (on well-formed input)
//! decoders by the round-trip tests in `net/tests/codec_roundtrip.rs`.
//!
//! # Supported requests
//!
//! [`decode_request`] accepts the APIs and versions (inclusive) that [`SUPPORTED_APIS`] lists,
//! each API module exporting its range as a `const`; the ApiVersions handler advertises from the
//! same list, and `bin/tests/kafka_4_2.rs` checks it against Kafka 4.2's ranges. README's API
//! table says what each version does; no copy of the ranges is kept here, where it would go
//! stale.

use std::collections::BTreeMap;
use std::fmt;
use std::mem;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterClientQuotasRequest,
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, AlterReplicaLogDirsRequest,
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest, CreateAclsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteAclsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeAclsRequest, DescribeClientQuotasRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeQuorumRequest, DescribeTopicPartitionsRequest,
    DescribeTransactionsRequest, DescribeUserScramCredentialsRequest, ElectLeadersRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListConfigResourcesRequest, ListGroupsRequest, ListOffsetsRequest,
    ListPartitionReassignmentsRequest, ListTransactionsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest, SyncGroupRequest,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// Longest string Kafka allows: both the classic and the compact encodings are limited to
/// `i16::MAX` bytes by the protocol specification, whatever their length prefix could express.
pub const STRING_LEN_MAX: usize = i16::MAX as usize;

/// Most tagged fields accepted in one tagged-field section. Kafka's schemas define a handful
/// of tags per struct; the limit only exists so that a hostile section cannot make us build
/// a large map out of tiny empty fields.
pub const TAGGED_FIELDS_MAX: usize = 256;

/// An unsigned varint carrying a `u32` occupies at most five bytes (5 × 7 ≥ 32 bits).
const UNSIGNED_VARINT_BYTES_MAX: usize = 5;

/// An unsigned varlong carrying a `u64` occupies at most ten bytes (10 × 7 ≥ 64 bits).
const UNSIGNED_VARLONG_BYTES_MAX: usize = 10;

/// The last byte of a five-byte varint may only carry the top four bits of a `u32`.
const UNSIGNED_VARINT_LAST_BYTE_MAX: u8 = 0x0f;

/// The last byte of a ten-byte varlong may only carry the top bit of a `u64`.
const UNSIGNED_VARLONG_LAST_BYTE_MAX: u8 = 0x01;

/// Why a request could not be decoded. Every variant describes malformed or unsupported input;
/// none of them is a bug in the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    Truncated {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count prefix was negative and not the `-1` null marker.
    NegativeLength(i64),
    /// A null string, byte field or array appeared where the schema requires a value.
    UnexpectedNull,
    /// A string was longer than [`STRING_LEN_MAX`].
    StringTooLong(usize),
    /// An array claimed more elements than there are bytes left, which no honest encoding can.
    CountExceedsRemaining {
        /// Element count claimed by the prefix.
        count: u64,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A string was not valid UTF-8.
    InvalidUtf8,
    /// A varint or varlong was longer than its type allows or overflowed it.
    VarintOverflow,
    /// A tagged-field section claimed more than [`TAGGED_FIELDS_MAX`] fields.
    TooManyTaggedFields(u64),
    /// Tagged fields were not in strictly ascending tag order (this includes duplicates).
    TaggedFieldOrder {
        /// The offending tag.
        tag: u32,
        /// The tag that preceded it.
        previous: u32,
    },
    /// A tag above `i32::MAX`, which Kafka (whose tags are Java ints) cannot have written.
    TagOutOfRange(u32),
    /// A known tag that is not defined for the request version being decoded.
    InvalidTag {
        /// The offending tag.
        tag: u32,
        /// The request version being decoded.
        version: i16,
    },
    /// Bytes were left over after the request (or a tagged field) was fully decoded.
    TrailingBytes(usize),
    /// The API key is unknown or not one Sluice decodes.
    UnsupportedApiKey(i16),
    /// The API is known but this version of it is not decoded.
    UnsupportedVersion {
        /// The request's API key.
        api_key: i16,
        /// The request's API version.
        version: i16,
    },
    /// The header's API key or version differs from what the caller framed the request as.
    HeaderMismatch {
        /// API key and version the caller expected.
        expected: (i16, i16),
        /// API key and version found in the header.
        found: (i16, i16),
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, remaining } => {
                write!(
                    f,
                    "truncated input: needed {needed} bytes, {remaining} left"
                )
            }
            Self::NegativeLength(len) => write!(f, "negative length prefix {len}"),
            Self::UnexpectedNull => f.write_str("null value in a non-nullable field"),
            Self::StringTooLong(len) => {
                write!(
                    f,
                    "string of {len} bytes exceeds the limit of {STRING_LEN_MAX}"
                )
            }
            Self::CountExceedsRemaining { count, remaining } => write!(
                f,
                "array claims {count} elements but only {remaining} bytes remain"
            ),
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::VarintOverflow => f.write_str("varint is too long for its type"),
            Self::TooManyTaggedFields(count) => write!(
                f,
                "{count} tagged fields exceed the limit of {TAGGED_FIELDS_MAX}"
            ),
            Self::TaggedFieldOrder { tag, previous } => {
                write!(
                    f,
                    "tagged field {tag} follows tag {previous}; tags must ascend"
                )
            }
            Self::TagOutOfRange(tag) => write!(f, "tag {tag} is out of range"),
            Self::InvalidTag { tag, version } => {
                write!(f, "tag {tag} is not valid for version {version}")
            }
            Self::TrailingBytes(len) => write!(f, "{len} unexpected trailing bytes"),
            Self::UnsupportedApiKey(key) => write!(f, "unsupported API key {key}"),
            Self::UnsupportedVersion { api_key, version } => {
                write!(f, "unsupported version {version} of API key {api_key}")
            }
            Self::HeaderMismatch { expected, found } => write!(
                f,
                "header names API {}/v{} but the request was framed as {}/v{}",
                found.0, found.1, expected.0, expected.1
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over one request frame that checks every read against the bytes that remain.
///
/// All reads either succeed completely or return an error; nothing panics on any input.
/// Strings and byte fields are returned as slices of the underlying [`Bytes`], so decoding
/// never copies payload data.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Number of bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Gives back the bytes not yet read.
    pub fn into_remaining(self) -> Bytes {
        self.buf
    }

    /// Succeeds only if every byte has been read, so that trailing garbage is never ignored.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            len => Err(DecodeError::TrailingBytes(len)),
        }
    }

    /// Splits off the next `len` bytes without copying them.
    fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.buf.len() {
            return Err(DecodeError::Truncated {
                needed: len,
                remaining: self.buf.len(),
            });
        }
        Ok(self.buf.split_to(len))
    }

    /// Reads a fixed-size big-endian field.
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let Some(head) = self.buf.first_chunk::<N>() else {
            return Err(DecodeError::Truncated {
                needed: N,
                remaining: self.buf.len(),
            });
        };
        let out = *head;
        self.buf.advance(N);
        Ok(out)
    }

    /// Reads an `INT8`.
    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        self.fixed().map(i8::from_be_bytes)
    }

    /// Reads an unsigned byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.fixed().map(u8::from_be_bytes)
    }

    /// Reads an `INT16`.
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        self.fixed().map(i16::from_be_bytes)
    }

    /// Reads a `UINT16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.fixed().map(u16::from_be_bytes)
    }

    /// Reads an `INT32`.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.fixed().map(i32::from_be_bytes)
    }

    /// Reads a `UINT32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.fixed().map(u32::from_be_bytes)
    }

    /// Reads an `INT64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.fixed().map(i64::from_be_bytes)
    }

    /// Reads a `FLOAT64`.
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        self.fixed().map(f64::from_be_bytes)
    }

    /// Reads a `BOOLEAN`; like Kafka, any non-zero byte means true.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }

    /// Reads a `UUID`.
    pub fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        self.fixed().map(Uuid::from_bytes)
    }

    /// Reads an `UNSIGNED_VARINT`, rejecting encodings that are too long or overflow a `u32`.
    pub fn unsigned_varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for index in 0..UNSIGNED_VARINT_BYTES_MAX {
            let byte = self.u8()?;
            if index == UNSIGNED_VARINT_BYTES_MAX - 1 && byte > UNSIGNED_VARINT_LAST_BYTE_MAX {
                return Err(DecodeError::VarintOverflow);
            }
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// Reads an unsigned varlong, rejecting encodings that are too long or overflow a `u64`.
    pub fn unsigned_varlong(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for index in 0..UNSIGNED_VARLONG_BYTES_MAX {
            let byte = self.u8()?;
            if index == UNSIGNED_VARLONG_BYTES_MAX - 1 && byte > UNSIGNED_VARLONG_LAST_BYTE_MAX {
                return Err(DecodeError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// Reads a zigzag-encoded `VARINT`.
    pub fn varint(&mut self) -> Result<i32, DecodeError> {
        let zigzag = self.unsigned_varint()?;
        // Zigzag maps 0, -1, 1, -2, ... to 0, 1, 2, 3, ...; both casts below are lossless
        // bit reinterpretations of values that fit.
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    /// Reads a zigzag-encoded `VARLONG`.
    pub fn varlong(&mut self) -> Result<i64, DecodeError> {
        let zigzag = self.unsigned_varlong()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    /// Takes `len` bytes and checks that they are a UTF-8 string Kafka would accept.
    fn utf8(&mut self, len: usize) -> Result<StrBytes, DecodeError> {
        if len > STRING_LEN_MAX {
            return Err(DecodeError::StringTooLong(len));
        }
        StrBytes::from_utf8(self.take(len)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads a `STRING` (INT16 length); null is an error.
    pub fn string(&mut self) -> Result<StrBytes, DecodeError> {
        self.nullable_string()?.ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a `NULLABLE_STRING` (INT16 length, `-1` for null).
    pub fn nullable_string(&mut self) -> Result<Option<StrBytes>, DecodeError> {
        match self.i16()? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::NegativeLength(len.into())),
            len => self.utf8(len.unsigned_abs().into()).map(Some),
        }
    }

    /// Reads a `COMPACT_STRING` (UNSIGNED_VARINT length + 1); null is an error.
    pub fn compact_string(&mut self) -> Result<StrBytes, DecodeError> {
        self.compact_nullable_string()?
            .ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a `COMPACT_NULLABLE_STRING` (UNSIGNED_VARINT length + 1, `0` for null).
    pub fn compact_nullable_string(&mut self) -> Result<Option<StrBytes>, DecodeError> {
        match self.compact_length()? {
            None => Ok(None),
            Some(len) => self.utf8(len).map(Some),
        }
    }

    /// Reads a `BYTES` field (INT32 length) as a slice of the frame; null is an error.
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        self.nullable_bytes()?.ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a `NULLABLE_BYTES` or `RECORDS` field (INT32 length, `-1` for null) as a slice.
    pub fn nullable_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match self.classic_length()? {
            None => Ok(None),
            Some(len) => self.take(len).map(Some),
        }
    }

    /// Reads a `COMPACT_BYTES` field as a slice of the frame; null is an error.
    pub fn compact_bytes(&mut self) -> Result<Bytes, DecodeError> {
        self.compact_nullable_bytes()?
            .ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a `COMPACT_NULLABLE_BYTES` or `COMPACT_RECORDS` field as a slice of the frame.
    pub fn compact_nullable_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match self.compact_length()? {
            None => Ok(None),
            Some(len) => self.take(len).map(Some),
        }
    }

    /// Reads an INT32 length or count where `-1` means null.
    fn classic_length(&mut self) -> Result<Option<usize>, DecodeError> {
        match self.i32()? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::NegativeLength(len.into())),
            len => Ok(Some(len.unsigned_abs() as usize)),
        }
    }

    /// Reads an UNSIGNED_VARINT length or count stored plus one, where `0` means null.
    fn compact_length(&mut self) -> Result<Option<usize>, DecodeError> {
        Ok(self
            .unsigned_varint()?
            .checked_sub(1)
            .map(|len| len as usize))
    }

    /// Reads an `ARRAY` (INT32 count) whose elements `element` decodes; null is an error.
    pub fn array<T>(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.nullable_array(element)?
            .ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a nullable `ARRAY` (INT32 count, `-1` for null).
    pub fn nullable_array<T>(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        match self.classic_length()? {
            None => Ok(None),
            Some(count) => self.elements(count, element).map(Some),
        }
    }

    /// Reads a `COMPACT_ARRAY` (UNSIGNED_VARINT count + 1); null is an error.
    pub fn compact_array<T>(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.compact_nullable_array(element)?
            .ok_or(DecodeError::UnexpectedNull)
    }

    /// Reads a nullable `COMPACT_ARRAY` (UNSIGNED_VARINT count + 1, `0` for null).
    pub fn compact_nullable_array<T>(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        match self.compact_length()? {
            None => Ok(None),
            Some(count) => self.elements(count, element).map(Some),
        }
    }

    /// Decodes `count` elements after checking that the count is plausible.
    fn elements<T>(
        &mut self,
        count: usize,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.elements_into(count, Vec::new(), element)
    }

    /// `elements`, pushed onto `out` (an empty vector, whose room is reused).
    fn elements_into<T>(
        &mut self,
        count: usize,
        mut out: Vec<T>,
        mut element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let remaining = self.buf.len();
        // Every element of every request array occupies at least one byte, so a count above
        // the remaining bytes can only come from a corrupt or hostile frame. Checking it here,
        // before allocating, is what keeps a tiny frame from requesting gigabytes.
        if count > remaining {
            return Err(DecodeError::CountExceedsRemaining {
                count: count as u64,
                remaining,
            });
        }
        out.reserve(reservation::<T>(count, remaining));
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(out)
    }

    /// Reads a tagged-field section, keeping every field in `unknown`.
    pub fn tagged_fields(&mut self, unknown: &mut BTreeMap<i32, Bytes>) -> Result<(), DecodeError> {
        self.tagged_fields_with(unknown, |_, _| Ok(false))
    }

    /// Reads a tagged-field section. `known` is offered each field's tag and a reader over
    /// exactly that field's bytes; it returns `Ok(true)` if it decoded the field (which must
    /// then consume all of those bytes) or `Ok(false)` to keep the field in `unknown`.
    pub fn tagged_fields_with(
        &mut self,
        unknown: &mut BTreeMap<i32, Bytes>,
        mut known: impl FnMut(u32, &mut Self) -> Result<bool, DecodeError>,
    ) -> Result<(), DecodeError> {
        let count = self.unsigned_varint()?;
        if count as usize > TAGGED_FIELDS_MAX {
            return Err(DecodeError::TooManyTaggedFields(count.into()));
        }
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            // Kafka's encoders write tags in ascending order (KIP-482). Insisting on it costs
            // nothing and rejects duplicates, which would otherwise silently replace each other.
            if let Some(previous) = previous.filter(|&previous| tag <= previous) {
                return Err(DecodeError::TaggedFieldOrder { tag, previous });
            }
            previous = Some(tag);
            let len = self.unsigned_varint()? as usize;
            let data = self.take(len)?;
            let mut field = Reader::new(data.clone());
            if known(tag, &mut field)? {
                field.finish()?;
            } else {
                // Kafka's tags are Java ints; anything above i32::MAX cannot be a real tag.
                let key = i32::try_from(tag).map_err(|_| DecodeError::TagOutOfRange(tag))?;
                unknown.insert(key, data);
            }
        }
        Ok(())
    }

    /// Reads a string in the encoding a request version uses: compact when `flexible`.
    pub fn string_v<T: From<StrBytes>>(&mut self, flexible: bool) -> Result<T, DecodeError> {
        let s = if flexible {
            self.compact_string()?
        } else {
            self.string()?
        };
        Ok(s.into())
    }

    /// Reads a nullable string in the encoding a request version uses.
    pub fn nullable_string_v<T: From<StrBytes>>(
        &mut self,
        flexible: bool,
    ) -> Result<Option<T>, DecodeError> {
        let s = if flexible {
            self.compact_nullable_string()?
        } else {
            self.nullable_string()?
        };
        Ok(s.map(Into::into))
    }

    /// Reads a byte field in the encoding a request version uses.
    pub fn bytes_v(&mut self, flexible: bool) -> Result<Bytes, DecodeError> {
        if flexible {
            self.compact_bytes()
        } else {
            self.bytes()
        }
    }

    /// Reads a nullable byte field in the encoding a request version uses.
    pub fn nullable_bytes_v(&mut self, flexible: bool) -> Result<Option<Bytes>, DecodeError> {
        if flexible {
            self.compact_nullable_bytes()
        } else {
            self.nullable_bytes()
        }
    }

    /// Reads an array in the encoding a request version uses.
    pub fn array_v<T>(
        &mut self,
        flexible: bool,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        if flexible {
            self.compact_array(element)
        } else {
            self.array(element)
        }
    }

    /// `array_v`, decoded into `out` (an empty vector, whose room is
    /// reused: see `crate::reuse`).
    pub fn array_v_into<T>(
        &mut self,
        flexible: bool,
        out: Vec<T>,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = if flexible {
            self.compact_length()?
        } else {
            self.classic_length()?
        };
        match count {
            None => Err(DecodeError::UnexpectedNull),
            Some(count) => self.elements_into(count, out, element),
        }
    }

    /// Reads a nullable array in the encoding a request version uses.
    pub fn nullable_array_v<T>(
        &mut self,
        flexible: bool,
        element: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        if flexible {
            self.compact_nullable_array(element)
        } else {
            self.nullable_array(element)
        }
    }

    /// Reads the tagged-field section that ends every struct of a flexible version; older
    /// versions have none, so this is a no-op for them.
    pub fn tagged_fields_v(
        &mut self,
        flexible: bool,
        unknown: &mut BTreeMap<i32, Bytes>,
    ) -> Result<(), DecodeError> {
        if flexible {
            self.tagged_fields(unknown)
        } else {
            Ok(())
        }
    }
}

/// How many elements of `T` to reserve for an array that claims `count` (already checked to be
/// at most `remaining`) elements.
///
/// An element can be much larger in memory than on the wire, so the reservation is also
/// limited to what the remaining bytes would occupy: a lying count then costs at most the
/// frame's size, while an honest one still grows the vector as its elements decode.
fn reservation<T>(count: usize, remaining: usize) -> usize {
    count.min(remaining / mem::size_of::<T>().max(1))
}

/// Rejects versions outside `range` so that every decoder only sees versions it was written
/// (and tested) for.
fn check_version(api_key: ApiKey, version: i16, range: (i16, i16)) -> Result<(), DecodeError> {
    if (range.0..=range.1).contains(&version) {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion {
            api_key: api_key as i16,
            version,
        })
    }
}

/// Decodes a request header from the front of `buf`, leaving `buf` at the start of the body.
///
/// `api_key` and `api_version` are what the caller peeked from the frame; they choose the header
/// version (v1 for non-flexible request versions, v2 with tagged fields for flexible ones, as
/// each request type's `HeaderVersion` says) and must match the header. The header version is
/// chosen even for request versions Sluice does not decode, so the caller can still answer
/// them with an UNSUPPORTED_VERSION error. On error `buf` is left untouched.
pub fn decode_request_header(
    buf: &mut Bytes,
    api_key: i16,
    api_version: i16,
) -> Result<RequestHeader, DecodeError> {
    let key = ApiKey::try_from(api_key).map_err(|()| DecodeError::UnsupportedApiKey(api_key))?;
    let header_version = key.request_header_version(api_version);
    let mut r = Reader::new(buf.clone());
    let mut header = RequestHeader::default();
    header.request_api_key = r.i16()?;
    header.request_api_version = r.i16()?;
    if (header.request_api_key, header.request_api_version) != (api_key, api_version) {
        return Err(DecodeError::HeaderMismatch {
            expected: (api_key, api_version),
            found: (header.request_api_key, header.request_api_version),
        });
    }
    header.correlation_id = r.i32()?;
    // Header v0 had no client id, but it only served ControlledShutdown v0, an API that
    // kafka-protocol no longer knows; v1 and v2 carry the client id as a classic nullable
    // string even when the body is flexible.
    if header_version >= 1 {
        header.client_id = r.nullable_string()?;
    }
    if header_version >= 2 {
        r.tagged_fields(&mut header.unknown_tagged_fields)?;
    }
    *buf = r.into_remaining();
    Ok(header)
}

/// A decoded request body, one variant per supported API.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Request {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    InitProducerId(InitProducerIdRequest),
    DescribeConfigs(DescribeConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    DescribeCluster(DescribeClusterRequest),
    DescribeQuorum(DescribeQuorumRequest),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    ElectLeaders(ElectLeadersRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    AlterReplicaLogDirs(AlterReplicaLogDirsRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    /// kafka-protocol's request stops at v1: v2's transaction versions
    /// come beside it.
    WriteTxnMarkers(write_txn_markers::WriteTxnMarkers),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    DescribeProducers(DescribeProducersRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    DescribeTopicPartitions(DescribeTopicPartitionsRequest),
    ListConfigResources(ListConfigResourcesRequest),
    ListTransactions(ListTransactionsRequest),
    DeleteRecords(DeleteRecordsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    SaslHandshake(SaslHandshakeRequest),
    SaslAuthenticate(SaslAuthenticateRequest),
    DescribeUserScramCredentials(DescribeUserScramCredentialsRequest),
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    DescribeAcls(DescribeAclsRequest),
    CreateAcls(CreateAclsRequest),
    DeleteAcls(DeleteAclsRequest),
    DescribeClientQuotas(DescribeClientQuotasRequest),
    AlterClientQuotas(AlterClientQuotasRequest),
}

/// Every API [`decode_request`] accepts, with its inclusive version range.
pub const SUPPORTED_APIS: &[(ApiKey, (i16, i16))] = &[
    (ApiKey::Produce, produce::PRODUCE_VERSIONS),
    (ApiKey::Fetch, fetch::FETCH_VERSIONS),
    (ApiKey::ListOffsets, list_offsets::LIST_OFFSETS_VERSIONS),
    (ApiKey::Metadata, metadata::METADATA_VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::OFFSET_COMMIT_VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::OFFSET_FETCH_VERSIONS),
    (
        ApiKey::FindCoordinator,
        find_coordinator::FIND_COORDINATOR_VERSIONS,
    ),
    (ApiKey::JoinGroup, join_group::JOIN_GROUP_VERSIONS),
    (ApiKey::Heartbeat, heartbeat::HEARTBEAT_VERSIONS),
    (ApiKey::LeaveGroup, leave_group::LEAVE_GROUP_VERSIONS),
    (ApiKey::SyncGroup, sync_group::SYNC_GROUP_VERSIONS),
    (
        ApiKey::DescribeGroups,
        describe_groups::DESCRIBE_GROUPS_VERSIONS,
    ),
    (ApiKey::ListGroups, list_groups::LIST_GROUPS_VERSIONS),
    (
        ApiKey::SaslHandshake,
        sasl_handshake::SASL_HANDSHAKE_VERSIONS,
    ),
    (ApiKey::ApiVersions, api_versions::API_VERSIONS_VERSIONS),
    (ApiKey::CreateTopics, create_topics::CREATE_TOPICS_VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::DELETE_TOPICS_VERSIONS),
    (
        ApiKey::DeleteRecords,
        delete_records::DELETE_RECORDS_VERSIONS,
    ),
    (
        ApiKey::InitProducerId,
        init_producer_id::INIT_PRODUCER_ID_VERSIONS,
    ),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::OFFSET_FOR_LEADER_EPOCH_VERSIONS,
    ),
    (
        ApiKey::AddPartitionsToTxn,
        add_partitions_to_txn::ADD_PARTITIONS_TO_TXN_VERSIONS,
    ),
    (
        ApiKey::AddOffsetsToTxn,
        add_offsets_to_txn::ADD_OFFSETS_TO_TXN_VERSIONS,
    ),
    (ApiKey::EndTxn, end_txn::END_TXN_VERSIONS),
    (
        ApiKey::WriteTxnMarkers,
        write_txn_markers::WRITE_TXN_MARKERS_VERSIONS,
    ),
    (
        ApiKey::TxnOffsetCommit,
        txn_offset_commit::TXN_OFFSET_COMMIT_VERSIONS,
    ),
    (
        ApiKey::DescribeConfigs,
        describe_configs::DESCRIBE_CONFIGS_VERSIONS,
    ),
    (
        ApiKey::DescribeLogDirs,
        describe_log_dirs::DESCRIBE_LOG_DIRS_VERSIONS,
    ),
    (
        ApiKey::SaslAuthenticate,
        sasl_authenticate::SASL_AUTHENTICATE_VERSIONS,
    ),
    (
        ApiKey::CreatePartitions,
        create_partitions::CREATE_PARTITIONS_VERSIONS,
    ),
    (ApiKey::DeleteGroups, delete_groups::DELETE_GROUPS_VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::INCREMENTAL_ALTER_CONFIGS_VERSIONS,
    ),
    (ApiKey::AlterConfigs, alter_configs::ALTER_CONFIGS_VERSIONS),
    (ApiKey::OffsetDelete, offset_delete::OFFSET_DELETE_VERSIONS),
    (
        ApiKey::DescribeCluster,
        describe_cluster::DESCRIBE_CLUSTER_VERSIONS,
    ),
    (
        ApiKey::DescribeQuorum,
        describe_quorum::DESCRIBE_QUORUM_VERSIONS,
    ),
    (
        ApiKey::AlterPartitionReassignments,
        alter_partition_reassignments::ALTER_PARTITION_REASSIGNMENTS_VERSIONS,
    ),
    (
        ApiKey::ListPartitionReassignments,
        list_partition_reassignments::LIST_PARTITION_REASSIGNMENTS_VERSIONS,
    ),
    (ApiKey::ElectLeaders, elect_leaders::ELECT_LEADERS_VERSIONS),
    (
        ApiKey::DescribeProducers,
        describe_producers::DESCRIBE_PRODUCERS_VERSIONS,
    ),
    (
        ApiKey::DescribeTransactions,
        describe_transactions::DESCRIBE_TRANSACTIONS_VERSIONS,
    ),
    (
        ApiKey::ListTransactions,
        list_transactions::LIST_TRANSACTIONS_VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupHeartbeat,
        consumer_group_heartbeat::CONSUMER_GROUP_HEARTBEAT_VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        consumer_group_describe::CONSUMER_GROUP_DESCRIBE_VERSIONS,
    ),
    // Last: the fuzz target `request_decode` picks an API by its index
    // here, so a new API goes at the end to keep the stored inputs' meaning.
    (
        ApiKey::DescribeTopicPartitions,
        describe_topic_partitions::DESCRIBE_TOPIC_PARTITIONS_VERSIONS,
    ),
    (
        ApiKey::ListConfigResources,
        list_config_resources::LIST_CONFIG_RESOURCES_VERSIONS,
    ),
    (
        ApiKey::AlterReplicaLogDirs,
        alter_replica_log_dirs::ALTER_REPLICA_LOG_DIRS_VERSIONS,
    ),
    (
        ApiKey::DescribeUserScramCredentials,
        describe_user_scram_credentials::DESCRIBE_USER_SCRAM_CREDENTIALS_VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        alter_user_scram_credentials::ALTER_USER_SCRAM_CREDENTIALS_VERSIONS,
    ),
    (ApiKey::DescribeAcls, describe_acls::DESCRIBE_ACLS_VERSIONS),
    (ApiKey::CreateAcls, create_acls::CREATE_ACLS_VERSIONS),
    (ApiKey::DeleteAcls, delete_acls::DELETE_ACLS_VERSIONS),
    (
        ApiKey::DescribeClientQuotas,
        describe_client_quotas::DESCRIBE_CLIENT_QUOTAS_VERSIONS,
    ),
    (
        ApiKey::AlterClientQuotas,
        alter_client_quotas::ALTER_CLIENT_QUOTAS_VERSIONS,
    ),
];

/// The inclusive version range [`decode_request`] accepts for `api_key`, if it decodes it.
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|&(_, range)| range)
}

impl Request {
    /// The API this request belongs to.
    pub fn api_key(&self) -> ApiKey {
        match self {
            Self::ApiVersions(_) => ApiKey::ApiVersions,
            Self::Metadata(_) => ApiKey::Metadata,
            Self::Produce(_) => ApiKey::Produce,
            Self::Fetch(_) => ApiKey::Fetch,
            Self::ListOffsets(_) => ApiKey::ListOffsets,
            Self::CreateTopics(_) => ApiKey::CreateTopics,
            Self::DeleteTopics(_) => ApiKey::DeleteTopics,
            Self::CreatePartitions(_) => ApiKey::CreatePartitions,
            Self::InitProducerId(_) => ApiKey::InitProducerId,
            Self::DescribeConfigs(_) => ApiKey::DescribeConfigs,
            Self::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
            Self::AlterConfigs(_) => ApiKey::AlterConfigs,
            Self::DescribeCluster(_) => ApiKey::DescribeCluster,
            Self::DescribeQuorum(_) => ApiKey::DescribeQuorum,
            Self::AlterPartitionReassignments(_) => ApiKey::AlterPartitionReassignments,
            Self::ListPartitionReassignments(_) => ApiKey::ListPartitionReassignments,
            Self::ElectLeaders(_) => ApiKey::ElectLeaders,
            Self::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
            Self::AlterReplicaLogDirs(_) => ApiKey::AlterReplicaLogDirs,
            Self::FindCoordinator(_) => ApiKey::FindCoordinator,
            Self::JoinGroup(_) => ApiKey::JoinGroup,
            Self::SyncGroup(_) => ApiKey::SyncGroup,
            Self::Heartbeat(_) => ApiKey::Heartbeat,
            Self::LeaveGroup(_) => ApiKey::LeaveGroup,
            Self::OffsetCommit(_) => ApiKey::OffsetCommit,
            Self::OffsetFetch(_) => ApiKey::OffsetFetch,
            Self::DescribeGroups(_) => ApiKey::DescribeGroups,
            Self::ListGroups(_) => ApiKey::ListGroups,
            Self::DeleteGroups(_) => ApiKey::DeleteGroups,
            Self::OffsetDelete(_) => ApiKey::OffsetDelete,
            Self::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            Self::ConsumerGroupDescribe(_) => ApiKey::ConsumerGroupDescribe,
            Self::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            Self::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
            Self::EndTxn(_) => ApiKey::EndTxn,
            Self::WriteTxnMarkers(_) => ApiKey::WriteTxnMarkers,
            Self::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
            Self::DescribeProducers(_) => ApiKey::DescribeProducers,
            Self::DescribeTransactions(_) => ApiKey::DescribeTransactions,
            Self::DescribeTopicPartitions(_) => ApiKey::DescribeTopicPartitions,
            Self::ListConfigResources(_) => ApiKey::ListConfigResources,
            Self::ListTransactions(_) => ApiKey::ListTransactions,
            Self::DeleteRecords(_) => ApiKey::DeleteRecords,
            Self::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
            Self::SaslHandshake(_) => ApiKey::SaslHandshake,
            Self::SaslAuthenticate(_) => ApiKey::SaslAuthenticate,
            Self::DescribeUserScramCredentials(_) => ApiKey::DescribeUserScramCredentials,
            Self::AlterUserScramCredentials(_) => ApiKey::AlterUserScramCredentials,
            Self::DescribeAcls(_) => ApiKey::DescribeAcls,
            Self::CreateAcls(_) => ApiKey::CreateAcls,
            Self::DeleteAcls(_) => ApiKey::DeleteAcls,
            Self::DescribeClientQuotas(_) => ApiKey::DescribeClientQuotas,
            Self::AlterClientQuotas(_) => ApiKey::AlterClientQuotas,
        }
    }
}

/// Decodes a request body (everything after the header) of the given API and version.
///
/// The whole of `body` must be consumed: trailing bytes are an error, because they mean the
/// client and Sluice disagree about the schema. Unknown APIs and versions outside
/// [`SUPPORTED_APIS`] are rejected before any byte is read.
pub fn decode_request(api_key: i16, api_version: i16, body: Bytes) -> Result<Request, DecodeError> {
    let key = ApiKey::try_from(api_key).map_err(|()| DecodeError::UnsupportedApiKey(api_key))?;
    let r = &mut Reader::new(body);
    let v = api_version;
    let request = match key {
        ApiKey::ApiVersions => Request::ApiVersions(api_versions::decode(r, v)?),
        ApiKey::Metadata => Request::Metadata(metadata::decode(r, v)?),
        ApiKey::Produce => Request::Produce(produce::decode(r, v)?),
        ApiKey::Fetch => Request::Fetch(fetch::decode(r, v)?),
        ApiKey::ListOffsets => Request::ListOffsets(list_offsets::decode(r, v)?),
        ApiKey::CreateTopics => Request::CreateTopics(create_topics::decode(r, v)?),
        ApiKey::DeleteTopics => Request::DeleteTopics(delete_topics::decode(r, v)?),
        ApiKey::CreatePartitions => Request::CreatePartitions(create_partitions::decode(r, v)?),
        ApiKey::InitProducerId => Request::InitProducerId(init_producer_id::decode(r, v)?),
        ApiKey::DescribeConfigs => Request::DescribeConfigs(describe_configs::decode(r, v)?),
        ApiKey::IncrementalAlterConfigs => {
            Request::IncrementalAlterConfigs(incremental_alter_configs::decode(r, v)?)
        }
        ApiKey::AlterConfigs => Request::AlterConfigs(alter_configs::decode(r, v)?),
        ApiKey::DescribeCluster => Request::DescribeCluster(describe_cluster::decode(r, v)?),
        ApiKey::DescribeQuorum => Request::DescribeQuorum(describe_quorum::decode(r, v)?),
        ApiKey::AlterPartitionReassignments => {
            Request::AlterPartitionReassignments(alter_partition_reassignments::decode(r, v)?)
        }
        ApiKey::ListPartitionReassignments => {
            Request::ListPartitionReassignments(list_partition_reassignments::decode(r, v)?)
        }
        ApiKey::ElectLeaders => Request::ElectLeaders(elect_leaders::decode(r, v)?),
        ApiKey::DescribeLogDirs => Request::DescribeLogDirs(describe_log_dirs::decode(r, v)?),
        ApiKey::AlterReplicaLogDirs => {
            Request::AlterReplicaLogDirs(alter_replica_log_dirs::decode(r, v)?)
        }
        ApiKey::FindCoordinator => Request::FindCoordinator(find_coordinator::decode(r, v)?),
        ApiKey::JoinGroup => Request::JoinGroup(join_group::decode(r, v)?),
        ApiKey::SyncGroup => Request::SyncGroup(sync_group::decode(r, v)?),
        ApiKey::Heartbeat => Request::Heartbeat(heartbeat::decode(r, v)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(leave_group::decode(r, v)?),
        ApiKey::OffsetCommit => Request::OffsetCommit(offset_commit::decode(r, v)?),
        ApiKey::OffsetFetch => Request::OffsetFetch(offset_fetch::decode(r, v)?),
        ApiKey::DescribeGroups => Request::DescribeGroups(describe_groups::decode(r, v)?),
        ApiKey::ListGroups => Request::ListGroups(list_groups::decode(r, v)?),
        ApiKey::DeleteGroups => Request::DeleteGroups(delete_groups::decode(r, v)?),
        ApiKey::OffsetDelete => Request::OffsetDelete(offset_delete::decode(r, v)?),
        ApiKey::ConsumerGroupHeartbeat => {
            Request::ConsumerGroupHeartbeat(consumer_group_heartbeat::decode(r, v)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            Request::ConsumerGroupDescribe(consumer_group_describe::decode(r, v)?)
        }
        ApiKey::AddPartitionsToTxn => {
            Request::AddPartitionsToTxn(add_partitions_to_txn::decode(r, v)?)
        }
        ApiKey::AddOffsetsToTxn => Request::AddOffsetsToTxn(add_offsets_to_txn::decode(r, v)?),
        ApiKey::EndTxn => Request::EndTxn(end_txn::decode(r, v)?),
        ApiKey::WriteTxnMarkers => Request::WriteTxnMarkers(write_txn_markers::decode(r, v)?),
        ApiKey::TxnOffsetCommit => Request::TxnOffsetCommit(txn_offset_commit::decode(r, v)?),
        ApiKey::DescribeProducers => Request::DescribeProducers(describe_producers::decode(r, v)?),
        ApiKey::DescribeTransactions => {
            Request::DescribeTransactions(describe_transactions::decode(r, v)?)
        }
        ApiKey::DescribeTopicPartitions => {
            Request::DescribeTopicPartitions(describe_topic_partitions::decode(r, v)?)
        }
        ApiKey::ListConfigResources => {
            Request::ListConfigResources(list_config_resources::decode(r, v)?)
        }
        ApiKey::ListTransactions => Request::ListTransactions(list_transactions::decode(r, v)?),
        ApiKey::DeleteRecords => Request::DeleteRecords(delete_records::decode(r, v)?),
        ApiKey::OffsetForLeaderEpoch => {
            Request::OffsetForLeaderEpoch(offset_for_leader_epoch::decode(r, v)?)
        }
        ApiKey::SaslHandshake => Request::SaslHandshake(sasl_handshake::decode(r, v)?),
        ApiKey::SaslAuthenticate => Request::SaslAuthenticate(sasl_authenticate::decode(r, v)?),
        ApiKey::DescribeUserScramCredentials => {
            Request::DescribeUserScramCredentials(describe_user_scram_credentials::decode(r, v)?)
        }
        ApiKey::AlterUserScramCredentials => {
            Request::AlterUserScramCredentials(alter_user_scram_credentials::decode(r, v)?)
        }
        ApiKey::DescribeAcls => Request::DescribeAcls(describe_acls::decode(r, v)?),
        ApiKey::CreateAcls => Request::CreateAcls(create_acls::decode(r, v)?),
        ApiKey::DeleteAcls => Request::DeleteAcls(delete_acls::decode(r, v)?),
        ApiKey::DescribeClientQuotas => {
            Request::DescribeClientQuotas(describe_client_quotas::decode(r, v)?)
        }
        ApiKey::AlterClientQuotas => Request::AlterClientQuotas(alter_client_quotas::decode(r, v)?),
        _ => return Err(DecodeError::UnsupportedApiKey(api_key)),
    };
    mem::take(r).finish()?;
    Ok(request)
}

/// Test support for the versions that name topics by id where an older
/// version of the same message names them (OffsetCommit and OffsetFetch
/// v10 against v9): the kafka-protocol crate writes only the older one, and
/// a 15-byte name's compact string is exactly an id's 16 bytes.
#[cfg(test)]
pub(crate) mod by_id {
    /// A topic name whose compact string takes exactly an id's 16 bytes.
    pub(crate) const NAME_OF_ID_LENGTH: &str = "fifteen-letters";

    /// `bytes` with the first compact string of [`NAME_OF_ID_LENGTH`]
    /// replaced by `id`.
    pub(crate) fn name_to_id(bytes: &[u8], id: &uuid::Uuid) -> Vec<u8> {
        let mut name = vec![NAME_OF_ID_LENGTH.len() as u8 + 1];
        name.extend_from_slice(NAME_OF_ID_LENGTH.as_bytes());
        let at = bytes
            .windows(name.len())
            .position(|window| window == name.as_slice())
            .expect("the name is in the bytes");
        let mut out = bytes.to_vec();
        out[at..at + name.len()].copy_from_slice(id.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(bytes))
    }

    fn truncated(needed: usize, remaining: usize) -> DecodeError {
        DecodeError::Truncated { needed, remaining }
    }

    #[test]
    fn fixed_width_integers_are_big_endian() {
        let mut r = reader(&[
            0xfe, 0x01, 0x02, 0xff, 0xfe, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xfd, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x00, 0x07,
        ]);
        assert_eq!(r.i8(), Ok(-2));
        assert_eq!(r.i16(), Ok(0x0102));
        assert_eq!(r.u16(), Ok(0xfffe));
        assert_eq!(r.u32(), Ok(0x0000_0100));
        assert_eq!(r.i32(), Ok(-3));
        assert_eq!(r.i64(), Ok(42));
        assert_eq!(r.f64(), Ok(1.0));
        assert_eq!(r.bool(), Ok(false));
        // Like Kafka, any non-zero byte is true.
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u8(), Err(truncated(1, 0)));
    }

    #[test]
    fn short_fixed_width_reads_fail_without_consuming() {
        let mut r = reader(&[1, 2, 3]);
        assert_eq!(r.i32(), Err(truncated(4, 3)));
        assert_eq!(r.i64(), Err(truncated(8, 3)));
        assert_eq!(r.uuid(), Err(truncated(16, 3)));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.i16(), Ok(0x0102));
    }

    #[test]
    fn uuid_reads_sixteen_bytes() {
        let mut r = reader(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(
            r.uuid(),
            Ok(Uuid::from_bytes([
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
            ]))
        );
    }

    #[test]
    fn unsigned_varints_decode_and_reject_overflow() {
        assert_eq!(reader(&[0]).unsigned_varint(), Ok(0));
        assert_eq!(reader(&[0x7f]).unsigned_varint(), Ok(127));
        assert_eq!(reader(&[0x80, 0x01]).unsigned_varint(), Ok(128));
        assert_eq!(reader(&[0xac, 0x02]).unsigned_varint(), Ok(300));
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unsigned_varint(),
            Ok(u32::MAX)
        );
        // A fifth byte carrying more than four bits, or asking for a sixth byte, overflows.
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff, 0x1f]).unsigned_varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(
            reader(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]).unsigned_varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(
            reader(&[0x80, 0x80]).unsigned_varint(),
            Err(truncated(1, 0))
        );
        assert_eq!(reader(&[]).unsigned_varint(), Err(truncated(1, 0)));
    }

    #[test]
    fn zigzag_varints_and_varlongs_decode() {
        let cases: &[(&'static [u8], i32)] = &[
            (&[0], 0),
            (&[1], -1),
            (&[2], 1),
            (&[3], -2),
            (&[0xd8, 0x04], 300),
            (&[0xfe, 0xff, 0xff, 0xff, 0x0f], i32::MAX),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f], i32::MIN),
        ];
        for &(bytes, value) in cases {
            assert_eq!(reader(bytes).varint(), Ok(value), "{bytes:02x?}");
        }
        let max: &[u8] = &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(reader(max).varlong(), Ok(i64::MAX));
        let min: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(reader(min).varlong(), Ok(i64::MIN));
        assert_eq!(reader(&[3]).varlong(), Ok(-2));
        let overflow: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(reader(overflow).varlong(), Err(DecodeError::VarintOverflow));
        assert_eq!(
            reader(&[0xff; 11]).unsigned_varlong(),
            Err(DecodeError::VarintOverflow)
        );
    }

    #[test]
    fn classic_strings() {
        assert_eq!(reader(&[0, 2, b'h', b'i']).string().as_deref(), Ok("hi"));
        assert_eq!(reader(&[0, 0]).string().as_deref(), Ok(""));
        assert_eq!(reader(&[0xff, 0xff]).nullable_string(), Ok(None));
        assert_eq!(
            reader(&[0xff, 0xff]).string(),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[0xff, 0xfe]).nullable_string(),
            Err(DecodeError::NegativeLength(-2))
        );
        assert_eq!(
            reader(&[0x80, 0x00]).string(),
            Err(DecodeError::NegativeLength(-32768))
        );
        assert_eq!(reader(&[0, 3, b'h', b'i']).string(), Err(truncated(3, 2)));
        assert_eq!(
            reader(&[0, 2, 0xc3, 0x28]).string(),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(reader(&[0]).string(), Err(truncated(2, 1)));
    }

    #[test]
    fn compact_strings() {
        assert_eq!(
            reader(&[3, b'h', b'i']).compact_string().as_deref(),
            Ok("hi")
        );
        assert_eq!(reader(&[1]).compact_string().as_deref(), Ok(""));
        assert_eq!(reader(&[0]).compact_nullable_string(), Ok(None));
        assert_eq!(
            reader(&[0]).compact_string(),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[4, b'h', b'i']).compact_string(),
            Err(truncated(3, 2))
        );
        assert_eq!(
            reader(&[2, 0xff]).compact_string(),
            Err(DecodeError::InvalidUtf8)
        );
        // Kafka caps compact strings at i16::MAX bytes too; the cap applies before reading.
        assert_eq!(
            reader(&[0x81, 0x80, 0x02]).compact_string(),
            Err(DecodeError::StringTooLong(32768))
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff, 0x0f]).compact_string(),
            Err(DecodeError::StringTooLong(u32::MAX as usize - 1))
        );
    }

    #[test]
    fn strings_and_bytes_are_slices_of_the_input() {
        let input = Bytes::from(vec![0, 3, b'a', b'b', b'c', 0, 0, 0, 2, 7, 8]);
        let range = input.as_ptr_range();
        let mut r = Reader::new(input.clone());
        let s = r.string().expect("string");
        assert!(range.contains(&s.as_ptr()));
        let b = r.bytes().expect("bytes");
        assert_eq!(&b[..], &[7, 8]);
        assert!(range.contains(&b.as_ptr()));
    }

    #[test]
    fn byte_fields() {
        assert_eq!(
            reader(&[0, 0, 0, 1, 9]).bytes(),
            Ok(Bytes::from_static(&[9]))
        );
        assert_eq!(reader(&[0xff, 0xff, 0xff, 0xff]).nullable_bytes(), Ok(None));
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff]).bytes(),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xf0]).nullable_bytes(),
            Err(DecodeError::NegativeLength(-16))
        );
        assert_eq!(
            reader(&[0x7f, 0xff, 0xff, 0xff]).bytes(),
            Err(truncated(i32::MAX as usize, 0))
        );
        assert_eq!(
            reader(&[2, 9]).compact_bytes(),
            Ok(Bytes::from_static(&[9]))
        );
        assert_eq!(reader(&[0]).compact_nullable_bytes(), Ok(None));
        assert_eq!(
            reader(&[0]).compact_bytes(),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff, 0x0f]).compact_bytes(),
            Err(truncated(u32::MAX as usize - 1, 0))
        );
    }

    #[test]
    fn arrays_check_counts_before_allocating() {
        let mut r = reader(&[0, 0, 0, 2, 0, 1, 0, 2]);
        assert_eq!(r.array(Reader::i16), Ok(vec![1, 2]));
        assert_eq!(reader(&[0, 0, 0, 0]).array(Reader::i16), Ok(vec![]));
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff]).nullable_array(Reader::i16),
            Ok(None)
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff]).array(Reader::i16),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xfe]).array(Reader::i16),
            Err(DecodeError::NegativeLength(-2))
        );
        assert_eq!(
            reader(&[0x7f, 0xff, 0xff, 0xff, 0, 1]).array(Reader::i16),
            Err(DecodeError::CountExceedsRemaining {
                count: i32::MAX as u64,
                remaining: 2
            })
        );
        // Three elements fit the remaining-bytes check but not the data: truncation.
        assert_eq!(
            reader(&[0, 0, 0, 3, 0, 1, 0]).array(Reader::i16),
            Err(truncated(2, 1))
        );
    }

    #[test]
    fn compact_arrays_check_counts_before_allocating() {
        assert_eq!(reader(&[3, 1, 2]).compact_array(Reader::i8), Ok(vec![1, 2]));
        assert_eq!(reader(&[1]).compact_array(Reader::i8), Ok(vec![]));
        assert_eq!(reader(&[0]).compact_nullable_array(Reader::i8), Ok(None));
        assert_eq!(
            reader(&[0]).compact_array(Reader::i8),
            Err(DecodeError::UnexpectedNull)
        );
        assert_eq!(
            reader(&[0xff, 0xff, 0xff, 0xff, 0x0f]).compact_array(Reader::i8),
            Err(DecodeError::CountExceedsRemaining {
                count: u64::from(u32::MAX - 1),
                remaining: 0
            })
        );
    }

    #[test]
    fn array_reservation_is_bounded_by_remaining_bytes() {
        // 200 one-byte elements that each decode into a 64-byte value: only as many are
        // reserved as 200 bytes of memory hold; the rest are allocated as they decode.
        assert_eq!(reservation::<[u8; 64]>(200, 200), 3);
        assert_eq!(reservation::<u8>(200, 200), 200);
        assert_eq!(reservation::<u8>(10, 200), 10);
        assert_eq!(reservation::<()>(5, 10), 5);
        let mut input = vec![0, 0, 0, 200];
        input.resize(204, 7);
        let values = Reader::new(Bytes::from(input))
            .array(|r| Ok([r.u8()?; 64]))
            .expect("decodes");
        assert_eq!(values.len(), 200);
    }

    #[test]
    fn tagged_fields_keep_unknown_and_decode_known() {
        let mut unknown = BTreeMap::new();
        let mut r = reader(&[3, 0, 2, 2, b'x', 4, 1, 0xaa, 7, 0]);
        let mut known = None;
        r.tagged_fields_with(&mut unknown, |tag, field| match tag {
            0 => {
                known = field.compact_nullable_string()?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .expect("decodes");
        assert_eq!(known.as_deref(), Some("x"));
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown.get(&4), Some(&Bytes::from_static(&[0xaa])));
        assert_eq!(unknown.get(&7), Some(&Bytes::new()));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn tagged_fields_reject_malformed_sections() {
        let mut unknown = BTreeMap::new();
        assert_eq!(
            reader(&[2, 4, 0, 4, 0]).tagged_fields(&mut unknown),
            Err(DecodeError::TaggedFieldOrder {
                tag: 4,
                previous: 4
            })
        );
        assert_eq!(
            reader(&[2, 4, 0, 3, 0]).tagged_fields(&mut unknown),
            Err(DecodeError::TaggedFieldOrder {
                tag: 3,
                previous: 4
            })
        );
        assert_eq!(
            reader(&[0x81, 0x02]).tagged_fields(&mut unknown),
            Err(DecodeError::TooManyTaggedFields(257))
        );
        assert_eq!(
            reader(&[1, 4, 5, 0]).tagged_fields(&mut unknown),
            Err(truncated(5, 1))
        );
        // A known field that does not use all of its declared bytes.
        let result = reader(&[1, 0, 2, 7, 7]).tagged_fields_with(&mut unknown, |_, field| {
            field.u8()?;
            Ok(true)
        });
        assert_eq!(result, Err(DecodeError::TrailingBytes(1)));
        // The limit itself is accepted.
        let mut section = vec![0x80, 0x02];
        for tag in 0..TAGGED_FIELDS_MAX {
            section.extend_from_slice(&[0x80 | (tag as u8 & 0x7f), (tag >> 7) as u8, 0]);
        }
        let mut r = Reader::new(Bytes::from(section));
        assert_eq!(r.tagged_fields(&mut unknown), Ok(()));
        assert_eq!(unknown.len(), TAGGED_FIELDS_MAX);
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = reader(&[1, 2, 3]);
        r.u8().expect("byte");
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(2)));
    }

    #[test]
    fn headers_follow_the_request_header_version() {
        // Metadata v1: header v1, no tagged fields.
        let mut frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 9, 0, 1, b'c', 0xee]);
        let header = decode_request_header(&mut frame, 3, 1).expect("header");
        assert_eq!(header.correlation_id, 9);
        assert_eq!(header.client_id.as_deref(), Some("c"));
        assert_eq!(&frame[..], &[0xee]);
        // Metadata v9: header v2, a null client id and one tagged field.
        let mut frame =
            Bytes::from_static(&[0, 3, 0, 9, 0, 0, 0, 9, 0xff, 0xff, 1, 3, 1, 0x55, 0xee]);
        let header = decode_request_header(&mut frame, 3, 9).expect("header");
        assert_eq!(header.client_id, None);
        assert_eq!(
            header.unknown_tagged_fields.get(&3),
            Some(&Bytes::from_static(&[0x55]))
        );
        assert_eq!(&frame[..], &[0xee]);
        // The header must agree with how the caller framed the request.
        let mut frame = Bytes::from_static(&[0, 3, 0, 9, 0, 0, 0, 9, 0xff, 0xff, 0]);
        assert_eq!(
            decode_request_header(&mut frame, 3, 8),
            Err(DecodeError::HeaderMismatch {
                expected: (3, 8),
                found: (3, 9)
            })
        );
        assert_eq!(frame.len(), 11);
    }

    #[test]
    fn supported_table_matches_decoders() {
        for &(key, (min, max)) in SUPPORTED_APIS {
            assert!(min <= max);
            assert_eq!(supported_versions(key), Some((min, max)));
            // Every listed API dispatches to a decoder (an empty body fails for another reason).
            for version in min..=max {
                let result = decode_request(key as i16, version, Bytes::new());
                assert!(
                    !matches!(
                        result,
                        Err(DecodeError::UnsupportedApiKey(_)
                            | DecodeError::UnsupportedVersion { .. })
                    ),
                    "{key:?} v{version}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn errors_display_as_sentences() {
        let text = DecodeError::CountExceedsRemaining {
            count: 5,
            remaining: 2,
        }
        .to_string();
        assert_eq!(text, "array claims 5 elements but only 2 bytes remain");
        assert!(DecodeError::TrailingBytes(3).to_string().contains('3'));
    }
}
