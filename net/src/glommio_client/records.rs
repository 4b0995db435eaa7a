//! Kafka v2 record batches on the client side: a builder that writes keyed
//! records straight into the buffer that will be sent (the 61-byte header
//! is reserved up front and filled in at the end, so an uncompressed batch
//! is never copied), and a reader that walks fetched batches and their
//! records without trusting any length in them.
//!
//! Record layout (all varints zigzag): length, attributes (i8), timestamp
//! delta (varlong), offset delta, key length (-1 = null), key, value length,
//! value, header count. The header layout is `sluice_engine::batch`'s.

use bytes::{BufMut, Bytes, BytesMut};
use sluice_engine::batch::{
    self, attributes, BatchHeader, ATTRIBUTES_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT,
    BATCH_HEADER_BYTES, CRC_AT, LAST_OFFSET_DELTA_AT, LEADER_EPOCH_AT, LENGTH_AT, LOG_OVERHEAD,
    MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORD_COUNT_AT,
};

use super::compression::{self, Compression};
use super::constants::DECOMPRESSED_BATCH_BYTES_MAX;
use super::error::ClientError;

/// "No leader epoch" as producers write it; the broker stamps its own.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// The idempotent producer identity stamped into a batch; `NONE` for a
/// plain producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

impl ProducerIdentity {
    pub const NONE: ProducerIdentity = ProducerIdentity {
        producer_id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

fn varint_len(value: i32) -> usize {
    varlong_len(i64::from(value))
}

fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    // Seven payload bits per byte; zero still takes one byte.
    (64 - (zigzag | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varlong(buffer: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buffer.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buffer.put_u8(zigzag as u8);
}

fn put_varint(buffer: &mut BytesMut, value: i32) {
    put_varlong(buffer, i64::from(value));
}

/// Builds one record batch, record by record.
pub struct BatchBuilder {
    /// The reserved header followed by the (uncompressed) records.
    buffer: BytesMut,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    compression: Compression,
}

impl BatchBuilder {
    /// An empty batch whose buffer holds `capacity` bytes before growing.
    pub fn new(capacity: usize, compression: Compression) -> BatchBuilder {
        BatchBuilder::with_buffer(BytesMut::new(), capacity, compression)
    }

    /// An empty batch written into `buffer` (a recycled one; its contents
    /// are discarded), grown to hold `capacity` bytes.
    pub fn with_buffer(
        mut buffer: BytesMut,
        capacity: usize,
        compression: Compression,
    ) -> BatchBuilder {
        buffer.clear();
        buffer.reserve(capacity.max(BATCH_HEADER_BYTES));
        buffer.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            buffer,
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            compression,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Uncompressed size so far, header included.
    pub fn size(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes a record with these sizes would add (for `batch.size` checks
    /// before appending).
    pub fn record_size(&self, key_len: Option<usize>, value_len: usize) -> usize {
        let body = self.body_len(0, key_len, value_len);
        varint_len(body as i32) + body
    }

    fn body_len(&self, timestamp_delta: i64, key_len: Option<usize>, value_len: usize) -> usize {
        let key = match key_len {
            Some(len) => varint_len(len as i32) + len,
            None => varint_len(-1),
        };
        // attributes + timestamp delta + offset delta + key + value + no headers.
        1 + varlong_len(timestamp_delta)
            + varint_len(self.record_count)
            + key
            + varint_len(value_len as i32)
            + value_len
            + 1
    }

    /// Appends a record whose value is the concatenation of `value` (so a
    /// caller can prepend a small header to a shared payload without first
    /// copying them together). Returns the bytes added.
    pub fn append(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[&[u8]]) -> usize {
        // A record count beyond i32 cannot be expressed; batch.size bounds
        // keep real batches many orders of magnitude below it.
        assert!(self.record_count < i32::MAX, "record batch is full");
        if self.record_count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms - self.base_timestamp;
        let value_len: usize = value.iter().map(|part| part.len()).sum();
        let body = self.body_len(timestamp_delta, key.map(<[u8]>::len), value_len);
        let before = self.buffer.len();
        self.buffer.reserve(varint_len(body as i32) + body);
        put_varint(&mut self.buffer, body as i32);
        self.buffer.put_u8(0); // attributes
        put_varlong(&mut self.buffer, timestamp_delta);
        put_varint(&mut self.buffer, self.record_count);
        match key {
            Some(key) => {
                put_varint(&mut self.buffer, key.len() as i32);
                self.buffer.put_slice(key);
            }
            None => put_varint(&mut self.buffer, -1),
        }
        put_varint(&mut self.buffer, value_len as i32);
        for part in value {
            self.buffer.put_slice(part);
        }
        put_varint(&mut self.buffer, 0); // no headers
        self.record_count += 1;
        self.buffer.len() - before
    }

    /// Compresses the records if asked, fills in the header and checksum,
    /// and returns the finished batch.
    pub fn finish(self, identity: ProducerIdentity) -> Result<Bytes, ClientError> {
        assert!(self.record_count > 0, "an empty batch is never sent");
        let mut batch = if self.compression == Compression::None {
            self.buffer
        } else {
            let records = &self.buffer[BATCH_HEADER_BYTES..];
            let mut compressed = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len() / 2);
            compressed.put_bytes(0, BATCH_HEADER_BYTES);
            compression::compress(self.compression, records, &mut compressed)?;
            compressed
        };
        let length = i32::try_from(batch.len() - LOG_OVERHEAD)
            .map_err(|_| ClientError::Records(format!("batch of {} bytes", batch.len())))?;
        let header = &mut batch[..BATCH_HEADER_BYTES];
        header[LENGTH_AT..LEADER_EPOCH_AT].copy_from_slice(&length.to_be_bytes());
        header[LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
        header[MAGIC_AT] = MAGIC_V2 as u8;
        header[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT]
            .copy_from_slice(&self.compression.attribute().to_be_bytes());
        header[LAST_OFFSET_DELTA_AT..BASE_TIMESTAMP_AT]
            .copy_from_slice(&(self.record_count - 1).to_be_bytes());
        header[BASE_TIMESTAMP_AT..MAX_TIMESTAMP_AT]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        header[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&self.max_timestamp.to_be_bytes());
        header[PRODUCER_ID_AT..PRODUCER_EPOCH_AT]
            .copy_from_slice(&identity.producer_id.to_be_bytes());
        header[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&identity.epoch.to_be_bytes());
        header[BASE_SEQUENCE_AT..RECORD_COUNT_AT]
            .copy_from_slice(&identity.base_sequence.to_be_bytes());
        header[RECORD_COUNT_AT..BATCH_HEADER_BYTES]
            .copy_from_slice(&self.record_count.to_be_bytes());
        let crc = batch::compute_crc(&batch);
        batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        Ok(batch.freeze())
    }
}

/// Where the complete batches of a fetched record set end, and the offset
/// after the last of them (`None` if there is no complete batch). Kafka may
/// cut the last batch of a partition short; it is fetched again next time.
pub fn complete_batches(records: &[u8]) -> (usize, Option<i64>) {
    let mut at = 0usize;
    let mut next_offset = None;
    while let Some(rest) = records.get(at..) {
        let Some(head) = rest.get(..LOG_OVERHEAD) else {
            break;
        };
        let base_offset = i64::from_be_bytes(head[..LENGTH_AT].try_into().unwrap_or([0; 8]));
        let length = i32::from_be_bytes(head[LENGTH_AT..].try_into().unwrap_or([0; 4]));
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let total = LOG_OVERHEAD + length;
        if length < BATCH_HEADER_BYTES - LOG_OVERHEAD || rest.len() < total {
            break;
        }
        let delta_at = LAST_OFFSET_DELTA_AT;
        let last_delta =
            i32::from_be_bytes(rest[delta_at..delta_at + 4].try_into().unwrap_or([0; 4]));
        next_offset = Some(base_offset + i64::from(last_delta) + 1);
        at += total;
    }
    (at, next_offset)
}

/// One fetched batch with its records decompressed.
pub struct RecordBatch {
    pub header: BatchHeader,
    records: Bytes,
}

/// Walks the complete batches of a fetched record set.
pub struct BatchIter {
    data: Bytes,
    check_crcs: bool,
}

impl BatchIter {
    /// `data` should hold only complete batches (see [`complete_batches`]);
    /// a cut-short tail simply ends the iteration.
    pub fn new(data: Bytes, check_crcs: bool) -> BatchIter {
        BatchIter { data, check_crcs }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ClientError> {
        let Some(length) = self.data.get(LENGTH_AT..LOG_OVERHEAD) else {
            return Ok(None);
        };
        let length = i32::from_be_bytes(length.try_into().unwrap_or([0; 4]));
        let total = usize::try_from(length)
            .ok()
            .filter(|length| *length >= BATCH_HEADER_BYTES - LOG_OVERHEAD)
            .map(|length| LOG_OVERHEAD + length)
            .ok_or_else(|| ClientError::Records(format!("batch length {length}")))?;
        if self.data.len() < total {
            // The cut-short tail Kafka allows.
            return Ok(None);
        }
        let bytes = self.data.split_to(total);
        let header = if self.check_crcs {
            // Fetched batches may be compacted (fewer records than offsets).
            batch::validate_stored(&bytes, usize::MAX)
                .map_err(|error| ClientError::Records(error.to_string()))?
        } else {
            let header = BatchHeader::parse(&bytes)
                .map_err(|error| ClientError::Records(error.to_string()))?;
            if header.magic != MAGIC_V2 {
                return Err(ClientError::Records(format!(
                    "batch magic {} is not 2",
                    header.magic
                )));
            }
            header
        };
        let codec_value = header.attributes & attributes::COMPRESSION_MASK;
        let codec = Compression::from_attribute(codec_value).ok_or_else(|| {
            ClientError::Records(format!("unknown compression codec {codec_value}"))
        })?;
        let records = bytes.slice(BATCH_HEADER_BYTES..);
        let records = match codec {
            Compression::None => records,
            codec => Bytes::from(compression::decompress(
                codec,
                &records,
                DECOMPRESSED_BATCH_BYTES_MAX,
            )?),
        };
        Ok(Some(RecordBatch { header, records }))
    }
}

impl Iterator for BatchIter {
    type Item = Result<RecordBatch, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => None,
            Err(error) => {
                // Nothing after a malformed batch can be trusted.
                self.data = Bytes::new();
                Some(Err(error))
            }
        }
    }
}

/// One record, borrowed from its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: RecordHeaders<'a>,
}

/// A record's headers, read only when asked for: most readers never look
/// at them, and a header's bytes are checked as it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeaders<'a> {
    count: i32,
    rest: &'a [u8],
}

impl<'a> RecordHeaders<'a> {
    /// How many headers the record says it has.
    pub fn count(&self) -> usize {
        usize::try_from(self.count).unwrap_or(0)
    }

    /// Each header's key and value (`None`: a null value), in record
    /// order; keys may repeat, as Kafka allows. Stops after the first
    /// header that does not fit the record.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            left: self.count,
            rest: self.rest,
        }
    }
}

/// Iterates the headers of a [`Record`].
pub struct HeaderIter<'a> {
    left: i32,
    rest: &'a [u8],
}

/// One header: its key and its value (`None` for a null value).
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> HeaderIter<'a> {
    fn next_header(&mut self) -> Result<Header<'a>, ClientError> {
        let key = read_field(&mut self.rest, "header key")?
            .ok_or_else(|| ClientError::Records("header key is null".into()))?;
        let value = read_field(&mut self.rest, "header value")?;
        Ok((key, value))
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<Header<'a>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let header = self.next_header();
        if header.is_err() {
            self.left = 0;
        }
        Some(header)
    }
}

impl RecordBatch {
    /// Whether this is a transaction marker, whose record is not data.
    pub fn is_control(&self) -> bool {
        self.header.is_control()
    }

    /// The batch's records, each checked against the bytes that remain.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter {
            batch: self,
            rest: &self.records,
            index: 0,
        }
    }
}

/// Iterates the records of a [`RecordBatch`].
pub struct RecordIter<'a> {
    batch: &'a RecordBatch,
    rest: &'a [u8],
    index: i32,
}

fn cut(what: &str) -> ClientError {
    ClientError::Records(format!("record cut short in its {what}"))
}

fn read_varlong(rest: &mut &[u8]) -> Result<i64, ClientError> {
    let mut value = 0u64;
    for index in 0..10 {
        let Some((&byte, after)) = rest.split_first() else {
            return Err(cut("varint"));
        };
        *rest = after;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(ClientError::Records("varint longer than ten bytes".into()))
}

fn read_varint(rest: &mut &[u8]) -> Result<i32, ClientError> {
    let value = read_varlong(rest)?;
    i32::try_from(value).map_err(|_| ClientError::Records(format!("varint {value} overflows i32")))
}

/// A length-prefixed field: `None` for length -1.
fn read_field<'a>(rest: &mut &'a [u8], what: &str) -> Result<Option<&'a [u8]>, ClientError> {
    let len = read_varint(rest)?;
    if len == -1 {
        return Ok(None);
    }
    let len =
        usize::try_from(len).map_err(|_| ClientError::Records(format!("{what} length {len}")))?;
    let Some(field) = rest.get(..len) else {
        return Err(cut(what));
    };
    *rest = &rest[len..];
    Ok(Some(field))
}

impl<'a> RecordIter<'a> {
    fn next_record(&mut self) -> Result<Record<'a>, ClientError> {
        let len = read_varint(&mut self.rest)?;
        let len = usize::try_from(len)
            .map_err(|_| ClientError::Records(format!("record length {len}")))?;
        let Some(mut body) = self.rest.get(..len) else {
            return Err(cut("body"));
        };
        self.rest = &self.rest[len..];
        let Some((_attributes, after)) = body.split_first() else {
            return Err(cut("attributes"));
        };
        body = after;
        let timestamp_delta = read_varlong(&mut body)?;
        let offset_delta = read_varint(&mut body)?;
        let key = read_field(&mut body, "key")?;
        let value = read_field(&mut body, "value")?;
        let count = read_varint(&mut body)?;
        if count < 0 {
            return Err(ClientError::Records(format!("header count {count}")));
        }
        let header = &self.batch.header;
        Ok(Record {
            offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: header.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers: RecordHeaders { count, rest: body },
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.batch.header.record_count {
            return None;
        }
        self.index += 1;
        let record = self.next_record();
        if record.is_err() {
            // Stop after the first malformed record.
            self.index = self.batch.header.record_count;
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(codec: Compression, count: usize) -> Bytes {
        let mut builder = BatchBuilder::new(1024, codec);
        for index in 0..count {
            let key = format!("key-{index}");
            let value = format!("value-{index}");
            let added = builder.append(
                1_000 + index as i64,
                Some(key.as_bytes()),
                &[b"v:", value.as_bytes()],
            );
            assert!(added > value.len());
        }
        builder
            .finish(ProducerIdentity {
                producer_id: 7,
                epoch: 1,
                base_sequence: 40,
            })
            .expect("finishes")
    }

    #[test]
    fn every_codec_builds_a_batch_the_engine_accepts_and_reads_back() {
        for codec in Compression::ALL {
            let batch = build(codec, 300);
            let header = batch::validate(&batch, usize::MAX).expect("valid batch");
            assert_eq!(header.record_count, 300);
            assert_eq!(header.producer_id, 7);
            assert_eq!(header.base_sequence, 40);
            assert_eq!(header.max_timestamp, 1_299);
            let mut batches = BatchIter::new(batch.clone(), true);
            let read = batches.next().expect("one batch").expect("readable");
            assert!(batches.next().is_none());
            let records: Vec<_> = read.records().collect::<Result<_, _>>().expect("records");
            assert_eq!(records.len(), 300);
            assert_eq!(records[299].offset, 299);
            assert_eq!(records[299].timestamp, 1_299);
            assert_eq!(records[5].key, Some(&b"key-5"[..]));
            assert_eq!(records[5].value, Some(&b"v:value-5"[..]));
        }
    }

    #[test]
    fn builder_matches_the_crate_encoder_byte_for_byte() {
        use kafka_protocol::records::{
            Compression as CrateCompression, Record as CrateRecord, RecordBatchEncoder,
            RecordEncodeOptions, TimestampType,
        };
        let records: Vec<CrateRecord> = (0..3)
            .map(|index| CrateRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index,
                // The crate starts a new batch unless offset - sequence is
                // constant; base sequence -1 is what a plain producer writes.
                sequence: index as i32 - 1,
                timestamp: 500 + index,
                key: (index != 1).then(|| Bytes::from(format!("k{index}"))),
                value: Some(Bytes::from(format!("value {index}"))),
                headers: Default::default(),
            })
            .collect();
        let mut theirs = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: CrateCompression::None,
        };
        RecordBatchEncoder::encode(&mut theirs, &records, &options).expect("crate encodes");
        let mut builder = BatchBuilder::new(64, Compression::None);
        for record in &records {
            let value = record.value.as_deref().unwrap_or_default();
            builder.append(record.timestamp, record.key.as_deref(), &[value]);
        }
        let ours = builder.finish(ProducerIdentity::NONE).expect("finishes");
        assert_eq!(&ours[..], &theirs[..]);
    }

    #[test]
    fn record_size_predicts_append() {
        let mut builder = BatchBuilder::new(64, Compression::None);
        for index in 0..200usize {
            let value = vec![1u8; index * 7];
            let predicted = builder.record_size(Some(3), value.len());
            let added = builder.append(0, Some(b"abc"), &[&value]);
            assert_eq!(predicted, added);
        }
    }

    #[test]
    fn cut_short_tails_and_garbage_do_not_panic() {
        let first = build(Compression::None, 3);
        let second = build(Compression::Lz4, 3);
        let mut both = BytesMut::new();
        both.put_slice(&first);
        both.put_slice(&second[..second.len() - 5]);
        let (end, next) = complete_batches(&both);
        assert_eq!(end, first.len());
        assert_eq!(next, Some(3));
        assert_eq!(BatchIter::new(both.freeze(), true).count(), 1);
        // Every truncation and single-byte corruption of a batch is handled.
        for cut in 0..first.len() {
            let _ = BatchIter::new(first.slice(..cut), true).count();
            let mut corrupt = BytesMut::from(&first[..]);
            corrupt[cut] ^= 0x5a;
            for batch in BatchIter::new(corrupt.freeze(), false).flatten() {
                let _ = batch.records().count();
            }
        }
    }

    #[test]
    fn varint_lengths_are_exact() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut buffer = BytesMut::new();
            put_varlong(&mut buffer, value);
            assert_eq!(buffer.len(), varlong_len(value), "{value}");
            let mut slice = &buffer[..];
            assert_eq!(read_varlong(&mut slice).expect("reads"), value);
        }
    }
}
