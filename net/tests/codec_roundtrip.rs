//! Cross-checks Sluice's request decoders (`sluice_net::codec`) against `kafka-protocol`.
//!
//! For every supported API and version, randomized requests are encoded with
//! `kafka-protocol`'s encoder; Sluice's decoder must produce exactly what `kafka-protocol`'s own
//! decoder produces from those well-formed bytes, and re-encoding Sluice's result must give the
//! same bytes back. The same encodings then serve as seeds for hostile input: every strict
//! prefix must be rejected, oversized counts planted at every nesting level must be rejected
//! before anything large is allocated, and byte-level mutations and random garbage must never
//! panic or allocate out of proportion to the frame.
//!
//! A global allocator wrapper measures the allocations made while decoding, and a tiny
//! deterministic PRNG (SplitMix64) keeps every run reproducible without extra dependencies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_net::codec::write_txn_markers::TRANSACTION_VERSION_DEFAULT;
use sluice_net::codec::{
    decode_request, decode_request_header, supported_versions, DecodeError, Request, SUPPORTED_APIS,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Allocation measurement
// ---------------------------------------------------------------------------------------------

/// Passes every allocation to the system allocator, recording sizes while a thread measures.
struct MeasuringAlloc;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with` because allocations can happen while thread-locals are being torn down.
    let _ = MEASURING.try_with(|measuring| {
        if measuring.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` with the arguments it was given; recording sizes
// in const-initialized thread-locals neither allocates nor touches the returned memory.
unsafe impl GlobalAlloc for MeasuringAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: MeasuringAlloc = MeasuringAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|largest| largest.set(0));
    MEASURING.with(|measuring| measuring.set(true));
    let result = f();
    MEASURING.with(|measuring| measuring.set(false));
    (result, LARGEST.with(Cell::get))
}

/// Allowance for small fixed-size allocations (a vector's first growth to four elements, a
/// B-tree node for tagged fields) that a decoder makes whatever the frame size.
const ALLOC_SLACK: usize = 4096;

/// How many times its wire size a decoded request may legitimately occupy in one allocation:
/// a two-byte empty topic name becomes a struct of a hundred-odd bytes, and vectors double.
/// Any allocation driven by a claimed count rather than by decoded content would be orders of
/// magnitude above this.
const CONTENT_AMPLIFICATION_MAX: usize = 256;

/// Decodes `body` while measuring, and checks the allocations stayed within `limit`.
fn decode_measured(
    key: i16,
    version: i16,
    body: Bytes,
    limit: usize,
) -> Result<Request, DecodeError> {
    let len = body.len();
    let (result, largest) = measure(|| decode_request(key, version, body));
    assert!(
        largest <= limit,
        "api {key} v{version}: a {len}-byte frame caused a {largest}-byte allocation \
         (limit {limit}); result {result:?}"
    );
    result
}

// ---------------------------------------------------------------------------------------------
// Deterministic random request generation
// ---------------------------------------------------------------------------------------------

/// Random values for request fields. In `one_each` mode it instead produces a fixed shape —
/// exactly one element in every array, every optional value present, no tagged fields, and
/// filler values that cannot be mistaken for an array count — so that the positions of all
/// array counts in the encoding can be found by pattern.
struct Gen {
    state: u64,
    one_each: bool,
}

/// Filler byte for `one_each` mode; it differs from every count or length byte used there.
const FILLER: u8 = 0x5a;

/// Characters random strings are drawn from, including multi-byte UTF-8.
const STRING_CHARS: &[char] = &['a', 'b', 'z', '0', '.', '-', '_', 'é', 'ß', '日', '🦀'];

impl Gen {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            one_each: false,
        }
    }

    fn one_each() -> Self {
        Self {
            state: 0,
            one_each: true,
        }
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn i8(&mut self) -> i8 {
        if self.one_each {
            FILLER as i8
        } else {
            self.next() as i8
        }
    }

    fn i16(&mut self) -> i16 {
        if self.one_each {
            i16::from_be_bytes([FILLER; 2])
        } else {
            self.next() as i16
        }
    }

    fn i32(&mut self) -> i32 {
        if self.one_each {
            i32::from_be_bytes([FILLER; 4])
        } else {
            self.next() as i32
        }
    }

    fn i64(&mut self) -> i64 {
        if self.one_each {
            i64::from_be_bytes([FILLER; 8])
        } else {
            self.next() as i64
        }
    }

    fn bool(&mut self) -> bool {
        self.one_each || self.next() & 1 == 1
    }

    fn uuid(&mut self) -> Uuid {
        if self.one_each {
            Uuid::from_bytes([FILLER; 16])
        } else {
            Uuid::from_u64_pair(self.next(), self.next())
        }
    }

    fn string<T: From<StrBytes>>(&mut self) -> T {
        if self.one_each {
            return StrBytes::from_static_str("ab").into();
        }
        let len = self.below(7);
        let s: String = (0..len)
            .map(|_| STRING_CHARS[self.below(STRING_CHARS.len() as u64) as usize])
            .collect();
        StrBytes::from_string(s).into()
    }

    fn nullable_string<T: From<StrBytes>>(&mut self) -> Option<T> {
        if !self.one_each && self.below(4) == 0 {
            None
        } else {
            Some(self.string())
        }
    }

    fn bytes(&mut self) -> Bytes {
        if self.one_each {
            return Bytes::from_static(b"xyz");
        }
        let len = self.below(24);
        (0..len)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    fn nullable_bytes(&mut self) -> Option<Bytes> {
        if !self.one_each && self.below(4) == 0 {
            None
        } else {
            Some(self.bytes())
        }
    }

    fn vec<T>(&mut self, mut element: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let len = if self.one_each { 1 } else { self.below(4) };
        (0..len).map(|_| element(self)).collect()
    }

    fn nullable_vec<T>(&mut self, element: impl FnMut(&mut Self) -> T) -> Option<Vec<T>> {
        if !self.one_each && self.below(4) == 0 {
            None
        } else {
            Some(self.vec(element))
        }
    }

    /// Unknown tagged fields for a flexible struct. Tags start at 5 because the only known
    /// tags in the supported requests are Fetch's 0 and 1, which the encoder writes itself.
    fn tags(&mut self, flexible: bool) -> BTreeMap<i32, Bytes> {
        let mut tags = BTreeMap::new();
        if flexible && !self.one_each {
            for _ in 0..self.below(3) {
                let tag = 5 + self.below(60) as i32;
                let value = self.bytes();
                tags.insert(tag, value);
            }
        }
        tags
    }
}

// ---------------------------------------------------------------------------------------------
// Per-API generators. Each sets exactly the fields that exist in `v`, following the schemas in
// kafka-protocol's generated `messages/*_request.rs` (Kafka's own JSON schemas).
// ---------------------------------------------------------------------------------------------

fn gen_api_versions(g: &mut Gen, v: i16) -> ApiVersionsRequest {
    let mut r = ApiVersionsRequest::default();
    if v >= 3 {
        r.client_software_name = g.string();
        r.client_software_version = g.string();
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

fn gen_metadata(g: &mut Gen, v: i16) -> MetadataRequest {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let f = v >= 9;
    let mut r = MetadataRequest::default();
    r.topics = g.nullable_vec(|g| {
        let mut t = MetadataRequestTopic::default();
        if v >= 10 {
            t.topic_id = g.uuid();
        }
        t.name = g.nullable_string();
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    if v >= 4 {
        r.allow_auto_topic_creation = g.bool();
    }
    if (8..=10).contains(&v) {
        r.include_cluster_authorized_operations = g.bool();
    }
    if v >= 8 {
        r.include_topic_authorized_operations = g.bool();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_produce(g: &mut Gen, v: i16) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let f = v >= 9;
    let mut r = ProduceRequest::default();
    r.transactional_id = g.nullable_string();
    r.acks = g.i16();
    r.timeout_ms = g.i32();
    r.topic_data = g.vec(|g| {
        let mut t = TopicProduceData::default();
        if v >= 13 {
            t.topic_id = g.uuid();
        } else {
            t.name = g.string();
        }
        t.partition_data = g.vec(|g| {
            let mut p = PartitionProduceData::default();
            p.index = g.i32();
            p.records = g.nullable_bytes();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_fetch(g: &mut Gen, v: i16) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::{
        FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
    };
    let f = v >= 12;
    let mut r = FetchRequest::default();
    if f {
        r.cluster_id = g.nullable_string();
    }
    if v <= 14 {
        r.replica_id = g.i32().into();
    }
    if v >= 15 {
        let mut state = ReplicaState::default();
        state.replica_id = g.i32().into();
        state.replica_epoch = g.i64();
        state.unknown_tagged_fields = g.tags(f);
        r.replica_state = state;
    }
    r.max_wait_ms = g.i32();
    r.min_bytes = g.i32();
    r.max_bytes = g.i32();
    r.isolation_level = g.i8();
    if v >= 7 {
        r.session_id = g.i32();
        r.session_epoch = g.i32();
    }
    r.topics = g.vec(|g| {
        let mut t = FetchTopic::default();
        if v <= 12 {
            t.topic = g.string();
        } else {
            t.topic_id = g.uuid();
        }
        t.partitions = g.vec(|g| {
            let mut p = FetchPartition::default();
            p.partition = g.i32();
            if v >= 9 {
                p.current_leader_epoch = g.i32();
            }
            p.fetch_offset = g.i64();
            if v >= 12 {
                p.last_fetched_epoch = g.i32();
            }
            if v >= 5 {
                p.log_start_offset = g.i64();
            }
            p.partition_max_bytes = g.i32();
            // Tagged: sent only when not the default, so some are left out.
            if v >= 17 && g.bool() {
                p.replica_directory_id = g.uuid();
            }
            if v >= 18 && g.bool() {
                p.high_watermark = g.i64();
            }
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    if v >= 7 {
        r.forgotten_topics_data = g.vec(|g| {
            let mut t = ForgottenTopic::default();
            if v <= 12 {
                t.topic = g.string();
            } else {
                t.topic_id = g.uuid();
            }
            t.partitions = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(f);
            t
        });
    }
    if v >= 11 {
        r.rack_id = g.string();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_list_offsets(g: &mut Gen, v: i16) -> ListOffsetsRequest {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let f = v >= 6;
    let mut r = ListOffsetsRequest::default();
    r.replica_id = g.i32().into();
    if v >= 2 {
        r.isolation_level = g.i8();
    }
    r.topics = g.vec(|g| {
        let mut t = ListOffsetsTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = g.i32();
            if v >= 4 {
                p.current_leader_epoch = g.i32();
            }
            p.timestamp = g.i64();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    if v >= 10 {
        r.timeout_ms = g.i32();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_create_topics(g: &mut Gen, v: i16) -> CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    let f = v >= 5;
    let mut r = CreateTopicsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = CreatableTopic::default();
        t.name = g.string();
        t.num_partitions = g.i32();
        t.replication_factor = g.i16();
        t.assignments = g.vec(|g| {
            let mut a = CreatableReplicaAssignment::default();
            a.partition_index = g.i32();
            a.broker_ids = g.vec(|g| g.i32().into());
            a.unknown_tagged_fields = g.tags(f);
            a
        });
        t.configs = g.vec(|g| {
            let mut c = CreatableTopicConfig::default();
            c.name = g.string();
            c.value = g.nullable_string();
            c.unknown_tagged_fields = g.tags(f);
            c
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.timeout_ms = g.i32();
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_delete_topics(g: &mut Gen, v: i16) -> DeleteTopicsRequest {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let f = v >= 4;
    let mut r = DeleteTopicsRequest::default();
    if v >= 6 {
        r.topics = g.vec(|g| {
            let mut t = DeleteTopicState::default();
            t.name = g.nullable_string();
            t.topic_id = g.uuid();
            t.unknown_tagged_fields = g.tags(f);
            t
        });
    } else {
        r.topic_names = g.vec(Gen::string);
    }
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_create_partitions(g: &mut Gen, v: i16) -> CreatePartitionsRequest {
    use kafka_protocol::messages::create_partitions_request::{
        CreatePartitionsAssignment, CreatePartitionsTopic,
    };
    let f = v >= 2;
    let mut r = CreatePartitionsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = CreatePartitionsTopic::default();
        t.name = g.string();
        t.count = g.i32();
        t.assignments = g.nullable_vec(|g| {
            let mut a = CreatePartitionsAssignment::default();
            a.broker_ids = g.vec(|g| g.i32().into());
            a.unknown_tagged_fields = g.tags(f);
            a
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.timeout_ms = g.i32();
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_init_producer_id(g: &mut Gen, v: i16) -> InitProducerIdRequest {
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = g.nullable_string();
    r.transaction_timeout_ms = g.i32();
    if v >= 3 {
        r.producer_id = g.i64().into();
        r.producer_epoch = g.i16();
    }
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_describe_configs(g: &mut Gen, v: i16) -> DescribeConfigsRequest {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let f = v >= 4;
    let mut r = DescribeConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = DescribeConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.string();
        res.configuration_keys = g.nullable_vec(Gen::string);
        res.unknown_tagged_fields = g.tags(f);
        res
    });
    r.include_synonyms = g.bool();
    if v >= 3 {
        r.include_documentation = g.bool();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_incremental_alter_configs(g: &mut Gen, v: i16) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let f = v >= 1;
    let mut r = IncrementalAlterConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = AlterConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.string();
        res.configs = g.vec(|g| {
            let mut c = AlterableConfig::default();
            c.name = g.string();
            c.config_operation = g.i8();
            c.value = g.nullable_string();
            c.unknown_tagged_fields = g.tags(f);
            c
        });
        res.unknown_tagged_fields = g.tags(f);
        res
    });
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_alter_configs(g: &mut Gen, v: i16) -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let f = v >= 2;
    let mut r = AlterConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = AlterConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.string();
        res.configs = g.vec(|g| {
            let mut c = AlterableConfig::default();
            c.name = g.string();
            c.value = g.nullable_string();
            c.unknown_tagged_fields = g.tags(f);
            c
        });
        res.unknown_tagged_fields = g.tags(f);
        res
    });
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_describe_cluster(g: &mut Gen, v: i16) -> DescribeClusterRequest {
    let mut r = DescribeClusterRequest::default();
    r.include_cluster_authorized_operations = g.bool();
    if v >= 1 {
        r.endpoint_type = g.i8();
    }
    if v >= 2 {
        r.include_fenced_brokers = g.bool();
    }
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_alter_replica_log_dirs(g: &mut Gen, v: i16) -> AlterReplicaLogDirsRequest {
    use kafka_protocol::messages::alter_replica_log_dirs_request::{
        AlterReplicaLogDir, AlterReplicaLogDirTopic,
    };
    let f = v >= 2;
    let mut r = AlterReplicaLogDirsRequest::default();
    r.dirs = g.vec(|g| {
        let mut d = AlterReplicaLogDir::default();
        d.path = g.string();
        d.topics = g.vec(|g| {
            let mut t = AlterReplicaLogDirTopic::default();
            t.name = g.string();
            t.partitions = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(f);
            t
        });
        d.unknown_tagged_fields = g.tags(f);
        d
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_describe_log_dirs(g: &mut Gen, v: i16) -> DescribeLogDirsRequest {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    let f = v >= 2;
    let mut r = DescribeLogDirsRequest::default();
    r.topics = g.nullable_vec(|g| {
        let mut t = DescribableLogDirTopic::default();
        t.topic = g.string();
        t.partitions = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_find_coordinator(g: &mut Gen, v: i16) -> FindCoordinatorRequest {
    let mut r = FindCoordinatorRequest::default();
    if v <= 3 {
        r.key = g.string();
    }
    if v >= 1 {
        r.key_type = g.i8();
    }
    if v >= 4 {
        r.coordinator_keys = g.vec(Gen::string);
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

fn gen_join_group(g: &mut Gen, v: i16) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let f = v >= 6;
    let mut r = JoinGroupRequest::default();
    r.group_id = g.string();
    r.session_timeout_ms = g.i32();
    if v >= 1 {
        r.rebalance_timeout_ms = g.i32();
    }
    r.member_id = g.string();
    if v >= 5 {
        r.group_instance_id = g.nullable_string();
    }
    r.protocol_type = g.string();
    r.protocols = g.vec(|g| {
        let mut p = JoinGroupRequestProtocol::default();
        p.name = g.string();
        p.metadata = g.bytes();
        p.unknown_tagged_fields = g.tags(f);
        p
    });
    if v >= 8 {
        r.reason = g.nullable_string();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_sync_group(g: &mut Gen, v: i16) -> SyncGroupRequest {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let f = v >= 4;
    let mut r = SyncGroupRequest::default();
    r.group_id = g.string();
    r.generation_id = g.i32();
    r.member_id = g.string();
    if v >= 3 {
        r.group_instance_id = g.nullable_string();
    }
    if v >= 5 {
        r.protocol_type = g.nullable_string();
        r.protocol_name = g.nullable_string();
    }
    r.assignments = g.vec(|g| {
        let mut a = SyncGroupRequestAssignment::default();
        a.member_id = g.string();
        a.assignment = g.bytes();
        a.unknown_tagged_fields = g.tags(f);
        a
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_heartbeat(g: &mut Gen, v: i16) -> HeartbeatRequest {
    let mut r = HeartbeatRequest::default();
    r.group_id = g.string();
    r.generation_id = g.i32();
    r.member_id = g.string();
    if v >= 3 {
        r.group_instance_id = g.nullable_string();
    }
    r.unknown_tagged_fields = g.tags(v >= 4);
    r
}

fn gen_leave_group(g: &mut Gen, v: i16) -> LeaveGroupRequest {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    let f = v >= 4;
    let mut r = LeaveGroupRequest::default();
    r.group_id = g.string();
    if v <= 2 {
        r.member_id = g.string();
    } else {
        r.members = g.vec(|g| {
            let mut m = MemberIdentity::default();
            m.member_id = g.string();
            m.group_instance_id = g.nullable_string();
            if v >= 5 {
                m.reason = g.nullable_string();
            }
            m.unknown_tagged_fields = g.tags(f);
            m
        });
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_offset_commit(g: &mut Gen, v: i16) -> OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let f = v >= 8;
    let mut r = OffsetCommitRequest::default();
    r.group_id = g.string();
    r.generation_id_or_member_epoch = g.i32();
    r.member_id = g.string();
    if v >= 7 {
        r.group_instance_id = g.nullable_string();
    }
    if v <= 4 {
        r.retention_time_ms = g.i64();
    }
    r.topics = g.vec(|g| {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = g.i32();
            p.committed_offset = g.i64();
            if v >= 6 {
                p.committed_leader_epoch = g.i32();
            }
            p.committed_metadata = g.nullable_string();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_offset_fetch(g: &mut Gen, v: i16) -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    let f = v >= 6;
    let mut r = OffsetFetchRequest::default();
    if v <= 7 {
        r.group_id = g.string();
        r.topics = g.nullable_vec(|g| {
            let mut t = OffsetFetchRequestTopic::default();
            t.name = g.string();
            t.partition_indexes = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(f);
            t
        });
    } else {
        r.groups = g.vec(|g| {
            let mut group = OffsetFetchRequestGroup::default();
            group.group_id = g.string();
            if v >= 9 {
                group.member_id = g.nullable_string();
                group.member_epoch = g.i32();
            }
            group.topics = g.nullable_vec(|g| {
                let mut t = OffsetFetchRequestTopics::default();
                t.name = g.string();
                t.partition_indexes = g.vec(Gen::i32);
                t.unknown_tagged_fields = g.tags(f);
                t
            });
            group.unknown_tagged_fields = g.tags(f);
            group
        });
    }
    if v >= 7 {
        r.require_stable = g.bool();
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_describe_groups(g: &mut Gen, v: i16) -> DescribeGroupsRequest {
    let mut r = DescribeGroupsRequest::default();
    r.groups = g.vec(Gen::string);
    if v >= 3 {
        r.include_authorized_operations = g.bool();
    }
    r.unknown_tagged_fields = g.tags(v >= 5);
    r
}

fn gen_list_groups(g: &mut Gen, v: i16) -> ListGroupsRequest {
    let mut r = ListGroupsRequest::default();
    if v >= 4 {
        r.states_filter = g.vec(Gen::string);
    }
    if v >= 5 {
        r.types_filter = g.vec(Gen::string);
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

fn gen_delete_groups(g: &mut Gen, v: i16) -> DeleteGroupsRequest {
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = g.vec(Gen::string);
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_offset_delete(g: &mut Gen, _v: i16) -> OffsetDeleteRequest {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let mut r = OffsetDeleteRequest::default();
    r.group_id = g.string();
    r.topics = g.vec(|g| {
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = g.i32();
            p
        });
        t
    });
    r
}

fn gen_consumer_group_heartbeat(g: &mut Gen, v: i16) -> ConsumerGroupHeartbeatRequest {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    let mut r = ConsumerGroupHeartbeatRequest::default();
    r.group_id = g.string();
    r.member_id = g.string();
    r.member_epoch = g.i32();
    r.instance_id = g.nullable_string();
    r.rack_id = g.nullable_string();
    r.rebalance_timeout_ms = g.i32();
    r.subscribed_topic_names = g.nullable_vec(Gen::string);
    if v >= 1 {
        r.subscribed_topic_regex = g.nullable_string();
    }
    r.server_assignor = g.nullable_string();
    r.topic_partitions = g.nullable_vec(|g| {
        let mut t = TopicPartitions::default();
        t.topic_id = g.uuid();
        t.partitions = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_consumer_group_describe(g: &mut Gen, _v: i16) -> ConsumerGroupDescribeRequest {
    let mut r = ConsumerGroupDescribeRequest::default();
    r.group_ids = g.vec(Gen::string);
    r.include_authorized_operations = g.bool();
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_add_partitions_to_txn(g: &mut Gen, v: i16) -> AddPartitionsToTxnRequest {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    let f = v >= 3;
    let topic = |g: &mut Gen| {
        let mut t = AddPartitionsToTxnTopic::default();
        t.name = g.string();
        t.partitions = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(f);
        t
    };
    let mut r = AddPartitionsToTxnRequest::default();
    if v >= 4 {
        r.transactions = g.vec(|g| {
            let mut t = AddPartitionsToTxnTransaction::default();
            t.transactional_id = g.string();
            t.producer_id = g.i64().into();
            t.producer_epoch = g.i16();
            t.verify_only = g.bool();
            t.topics = g.vec(topic);
            t.unknown_tagged_fields = g.tags(f);
            t
        });
    } else {
        r.v3_and_below_transactional_id = g.string();
        r.v3_and_below_producer_id = g.i64().into();
        r.v3_and_below_producer_epoch = g.i16();
        r.v3_and_below_topics = g.vec(topic);
    }
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_add_offsets_to_txn(g: &mut Gen, v: i16) -> AddOffsetsToTxnRequest {
    let mut r = AddOffsetsToTxnRequest::default();
    r.transactional_id = g.string();
    r.producer_id = g.i64().into();
    r.producer_epoch = g.i16();
    r.group_id = g.string();
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

fn gen_end_txn(g: &mut Gen, v: i16) -> EndTxnRequest {
    let mut r = EndTxnRequest::default();
    r.transactional_id = g.string();
    r.producer_id = g.i64().into();
    r.producer_epoch = g.i16();
    r.committed = g.bool();
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

fn gen_write_txn_markers(g: &mut Gen, v: i16) -> kafka_protocol::messages::WriteTxnMarkersRequest {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let f = v >= 1;
    let mut r = kafka_protocol::messages::WriteTxnMarkersRequest::default();
    r.markers = g.vec(|g| {
        let mut m = WritableTxnMarker::default();
        m.producer_id = g.i64().into();
        m.producer_epoch = g.i16();
        m.transaction_result = g.bool();
        m.topics = g.vec(|g| {
            let mut t = WritableTxnMarkerTopic::default();
            t.name = g.string();
            t.partition_indexes = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(f);
            t
        });
        m.coordinator_epoch = g.i32();
        m.unknown_tagged_fields = g.tags(f);
        m
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_txn_offset_commit(g: &mut Gen, v: i16) -> TxnOffsetCommitRequest {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let f = v >= 3;
    let mut r = TxnOffsetCommitRequest::default();
    r.transactional_id = g.string();
    r.group_id = g.string();
    r.producer_id = g.i64().into();
    r.producer_epoch = g.i16();
    if v >= 3 {
        r.generation_id = g.i32();
        r.member_id = g.string();
        r.group_instance_id = g.nullable_string();
    }
    r.topics = g.vec(|g| {
        let mut t = TxnOffsetCommitRequestTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = TxnOffsetCommitRequestPartition::default();
            p.partition_index = g.i32();
            p.committed_offset = g.i64();
            if v >= 2 {
                p.committed_leader_epoch = g.i32();
            }
            p.committed_metadata = g.nullable_string();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_describe_producers(g: &mut Gen, _v: i16) -> DescribeProducersRequest {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let mut r = DescribeProducersRequest::default();
    r.topics = g.vec(|g| {
        let mut t = TopicRequest::default();
        t.name = g.string();
        t.partition_indexes = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_list_config_resources(g: &mut Gen, v: i16) -> ListConfigResourcesRequest {
    let mut r = ListConfigResourcesRequest::default();
    if v >= 1 {
        r.resource_types = g.vec(Gen::i8);
    }
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_describe_topic_partitions(g: &mut Gen, _v: i16) -> DescribeTopicPartitionsRequest {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let mut r = DescribeTopicPartitionsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = TopicRequest::default();
        t.name = g.string();
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.response_partition_limit = g.i32();
    if g.one_each || g.below(4) != 0 {
        let mut cursor = Cursor::default();
        cursor.topic_name = g.string();
        cursor.partition_index = g.i32();
        cursor.unknown_tagged_fields = g.tags(true);
        r.cursor = Some(cursor);
    }
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_describe_quorum(g: &mut Gen, _v: i16) -> DescribeQuorumRequest {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let mut r = DescribeQuorumRequest::default();
    r.topics = g.vec(|g| {
        let mut t = TopicData::default();
        t.topic_name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = PartitionData::default();
            p.partition_index = g.i32();
            p.unknown_tagged_fields = g.tags(true);
            p
        });
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_alter_partition_reassignments(g: &mut Gen, v: i16) -> AlterPartitionReassignmentsRequest {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    let mut r = AlterPartitionReassignmentsRequest::default();
    r.timeout_ms = g.i32();
    // v0 has no such field and stands for "allowed"; its encoder refuses false.
    if v >= 1 {
        r.allow_replication_factor_change = g.bool();
    }
    r.topics = g.vec(|g| {
        let mut t = ReassignableTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = ReassignablePartition::default();
            p.partition_index = g.i32();
            p.replicas = g.nullable_vec(|g| g.i32().into());
            p.unknown_tagged_fields = g.tags(true);
            p
        });
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_list_partition_reassignments(g: &mut Gen, _v: i16) -> ListPartitionReassignmentsRequest {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    let mut r = ListPartitionReassignmentsRequest::default();
    r.timeout_ms = g.i32();
    r.topics = g.nullable_vec(|g| {
        let mut t = ListPartitionReassignmentsTopics::default();
        t.name = g.string();
        t.partition_indexes = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_elect_leaders(g: &mut Gen, v: i16) -> ElectLeadersRequest {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let flexible = v >= 2;
    let mut r = ElectLeadersRequest::default();
    // v0 has no election type and stands for "preferred"; its encoder refuses
    // anything else.
    if v >= 1 {
        r.election_type = g.i8();
    }
    r.topic_partitions = g.nullable_vec(|g| {
        let mut t = TopicPartitions::default();
        t.topic = g.string();
        t.partitions = g.vec(Gen::i32);
        t.unknown_tagged_fields = g.tags(flexible);
        t
    });
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(flexible);
    r
}

fn gen_describe_transactions(g: &mut Gen, _v: i16) -> DescribeTransactionsRequest {
    let mut r = DescribeTransactionsRequest::default();
    r.transactional_ids = g.vec(Gen::string);
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_list_transactions(g: &mut Gen, v: i16) -> ListTransactionsRequest {
    let mut r = ListTransactionsRequest::default();
    r.state_filters = g.vec(Gen::string);
    r.producer_id_filters = g.vec(|g| g.i64().into());
    if v >= 1 {
        r.duration_filter = g.i64();
    }
    if v >= 2 {
        r.transactional_id_pattern = g.nullable_string();
    }
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_delete_records(g: &mut Gen, v: i16) -> DeleteRecordsRequest {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let f = v >= 2;
    let mut r = DeleteRecordsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = DeleteRecordsTopic::default();
        t.name = g.string();
        t.partitions = g.vec(|g| {
            let mut p = DeleteRecordsPartition::default();
            p.partition_index = g.i32();
            p.offset = g.i64();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_offset_for_leader_epoch(g: &mut Gen, v: i16) -> OffsetForLeaderEpochRequest {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let f = v >= 4;
    let mut r = OffsetForLeaderEpochRequest::default();
    if v >= 3 {
        r.replica_id = g.i32().into();
    }
    r.topics = g.vec(|g| {
        let mut t = OffsetForLeaderTopic::default();
        t.topic = g.string();
        t.partitions = g.vec(|g| {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = g.i32();
            p.current_leader_epoch = g.i32();
            p.leader_epoch = g.i32();
            p.unknown_tagged_fields = g.tags(f);
            p
        });
        t.unknown_tagged_fields = g.tags(f);
        t
    });
    r.unknown_tagged_fields = g.tags(f);
    r
}

fn gen_sasl_handshake(g: &mut Gen, _v: i16) -> SaslHandshakeRequest {
    let mut r = SaslHandshakeRequest::default();
    r.mechanism = g.string();
    r
}

fn gen_sasl_authenticate(g: &mut Gen, v: i16) -> SaslAuthenticateRequest {
    let mut r = SaslAuthenticateRequest::default();
    r.auth_bytes = g.bytes();
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_describe_user_scram_credentials(
    g: &mut Gen,
    _v: i16,
) -> DescribeUserScramCredentialsRequest {
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    let mut r = DescribeUserScramCredentialsRequest::default();
    r.users = g.nullable_vec(|g| {
        let mut user = UserName::default();
        user.name = g.string();
        user.unknown_tagged_fields = g.tags(true);
        user
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_alter_user_scram_credentials(g: &mut Gen, _v: i16) -> AlterUserScramCredentialsRequest {
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    let mut r = AlterUserScramCredentialsRequest::default();
    r.deletions = g.vec(|g| {
        let mut deletion = ScramCredentialDeletion::default();
        deletion.name = g.string();
        deletion.mechanism = g.i8();
        deletion.unknown_tagged_fields = g.tags(true);
        deletion
    });
    r.upsertions = g.vec(|g| {
        let mut upsertion = ScramCredentialUpsertion::default();
        upsertion.name = g.string();
        upsertion.mechanism = g.i8();
        upsertion.iterations = g.i32();
        upsertion.salt = g.bytes();
        upsertion.salted_password = g.bytes();
        upsertion.unknown_tagged_fields = g.tags(true);
        upsertion
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

fn gen_describe_acls(g: &mut Gen, v: i16) -> DescribeAclsRequest {
    let mut r = DescribeAclsRequest::default();
    r.resource_type_filter = g.i8();
    r.resource_name_filter = g.nullable_string();
    r.pattern_type_filter = g.i8();
    r.principal_filter = g.nullable_string();
    r.host_filter = g.nullable_string();
    r.operation = g.i8();
    r.permission_type = g.i8();
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_create_acls(g: &mut Gen, v: i16) -> CreateAclsRequest {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    let mut r = CreateAclsRequest::default();
    r.creations = g.vec(|g| {
        let mut creation = AclCreation::default();
        creation.resource_type = g.i8();
        creation.resource_name = g.string();
        creation.resource_pattern_type = g.i8();
        creation.principal = g.string();
        creation.host = g.string();
        creation.operation = g.i8();
        creation.permission_type = g.i8();
        creation.unknown_tagged_fields = g.tags(v >= 2);
        creation
    });
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_delete_acls(g: &mut Gen, v: i16) -> DeleteAclsRequest {
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    let mut r = DeleteAclsRequest::default();
    r.filters = g.vec(|g| {
        let mut filter = DeleteAclsFilter::default();
        filter.resource_type_filter = g.i8();
        filter.resource_name_filter = g.nullable_string();
        filter.pattern_type_filter = g.i8();
        filter.principal_filter = g.nullable_string();
        filter.host_filter = g.nullable_string();
        filter.operation = g.i8();
        filter.permission_type = g.i8();
        filter.unknown_tagged_fields = g.tags(v >= 2);
        filter
    });
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

fn gen_describe_client_quotas(g: &mut Gen, v: i16) -> DescribeClientQuotasRequest {
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    let mut r = DescribeClientQuotasRequest::default();
    r.components = g.vec(|g| {
        let mut component = ComponentData::default();
        component.entity_type = g.string();
        component.match_type = g.i8();
        component._match = g.nullable_string();
        component.unknown_tagged_fields = g.tags(v >= 1);
        component
    });
    r.strict = g.bool();
    r.unknown_tagged_fields = g.tags(v >= 1);
    r
}

fn gen_alter_client_quotas(g: &mut Gen, v: i16) -> AlterClientQuotasRequest {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    let mut r = AlterClientQuotasRequest::default();
    r.entries = g.vec(|g| {
        let mut entry = EntryData::default();
        entry.entity = g.vec(|g| {
            let mut entity = EntityData::default();
            entity.entity_type = g.string();
            entity.entity_name = g.nullable_string();
            entity.unknown_tagged_fields = g.tags(v >= 1);
            entity
        });
        entry.ops = g.vec(|g| {
            let mut op = OpData::default();
            op.key = g.string();
            // Never NaN (it would not equal itself), and with low mantissa
            // bytes that are not zero: the count sweep below takes every
            // 00 00 00 01 in the frame for an array count.
            op.value = (f64::from(g.i8()) + 0.1) / 3.0;
            op.remove = g.bool();
            op.unknown_tagged_fields = g.tags(v >= 1);
            op
        });
        entry.unknown_tagged_fields = g.tags(v >= 1);
        entry
    });
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(v >= 1);
    r
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// Random requests per API version.
const ITERATIONS: u64 = 64;

/// Of those, how many also get the (slower) byte-mutation sweep.
const MUTATION_ITERATIONS: u64 = 12;

/// Random garbage frames per API version.
const GARBAGE_FRAMES: u64 = 256;

/// Longest random garbage frame.
const GARBAGE_LEN_MAX: u64 = 96;

/// Values planted over every offset of valid encodings: huge and negative INT32 counts and
/// lengths, and maximal or over-long unsigned varints.
const MUTATIONS: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xfe],
    &[0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x08],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x7f, 0xff],
];

fn encode<T: Encodable>(request: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    request
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("kafka-protocol refused to encode v{version}: {e}"));
    buf.freeze()
}

/// One API under test: its key, how to generate requests and how to unwrap our result.
struct Api<T> {
    key: ApiKey,
    generate: fn(&mut Gen, i16) -> T,
    unwrap: fn(Request) -> Option<T>,
}

impl<T> Api<T>
where
    T: Encodable + Decodable + PartialEq + Debug,
{
    fn versions(&self) -> (i16, i16) {
        supported_versions(self.key)
            .unwrap_or_else(|| panic!("{:?} is missing from SUPPORTED_APIS", self.key))
    }

    /// The version kafka-protocol encodes and decodes for `v`: `v` itself,
    /// or an older one with the same bytes where the crate stops short.
    fn wire(&self, v: i16) -> i16 {
        SAME_WIRE_AS
            .iter()
            .find(|(key, version, _)| *key == self.key && *version == v)
            .map_or(v, |(_, _, same)| *same)
    }

    fn run(&self) {
        let key = self.key as i16;
        let (min, max) = self.versions();
        for v in [min - 1, max + 1] {
            assert_eq!(
                decode_request(key, v, Bytes::new()),
                Err(DecodeError::UnsupportedVersion {
                    api_key: key,
                    version: v
                }),
            );
        }
        for v in (min..=max).filter(|v| !BEYOND_THE_CRATE.contains(&(self.key, *v))) {
            for iteration in 0..ITERATIONS {
                let seed = (u64::from(key as u16) << 48) ^ (u64::from(v as u16) << 32) ^ iteration;
                let frame = encode(&(self.generate)(&mut Gen::new(seed), v), self.wire(v));
                self.round_trip(v, &frame);
                self.truncations(v, &frame);
                if iteration < MUTATION_ITERATIONS {
                    self.mutations(v, &frame);
                }
            }
            self.with_header(v);
            self.planted_counts(v);
            self.garbage(v);
        }
    }

    /// Our decoder must agree with kafka-protocol's on well-formed input and re-encode to the
    /// same bytes.
    fn round_trip(&self, v: i16, frame: &Bytes) {
        let key = self.key as i16;
        let theirs = T::decode(&mut frame.clone(), self.wire(v))
            .unwrap_or_else(|e| panic!("{:?} v{v}: kafka-protocol decode failed: {e}", self.key));
        let limit = frame.len() * CONTENT_AMPLIFICATION_MAX + ALLOC_SLACK;
        let ours = decode_measured(key, v, frame.clone(), limit).unwrap_or_else(|e| {
            panic!(
                "{:?} v{v}: decode failed: {e}; frame {frame:02x?}",
                self.key
            )
        });
        let ours = (self.unwrap)(ours).expect("decode_request returned the wrong variant");
        assert_eq!(ours, theirs, "{:?} v{v}: frame {frame:02x?}", self.key);
        assert_eq!(
            &encode(&ours, self.wire(v)),
            frame,
            "{:?} v{v}: re-encoding differs",
            self.key
        );

        // AlterUserScramCredentials takes one trailing empty tag section
        // (librdkafka writes it twice; see its decoder): a byte that is
        // not one is refused there too.
        let trailing = if self.key == ApiKey::AlterUserScramCredentials {
            1
        } else {
            0
        };
        let mut extended = BytesMut::from(&frame[..]);
        extended.extend_from_slice(&[trailing]);
        assert_eq!(
            decode_request(key, v, extended.freeze()),
            Err(DecodeError::TrailingBytes(1)),
            "{:?} v{v}: a trailing byte was accepted",
            self.key
        );
    }

    /// Every strict prefix of a valid encoding must be rejected.
    fn truncations(&self, v: i16, frame: &Bytes) {
        let limit = frame.len() * CONTENT_AMPLIFICATION_MAX + ALLOC_SLACK;
        for cut in 0..frame.len() {
            let result = decode_measured(self.key as i16, v, frame.slice(..cut), limit);
            assert!(
                result.is_err(),
                "{:?} v{v}: prefix of {cut}/{} bytes decoded: {result:?}",
                self.key,
                frame.len()
            );
        }
    }

    /// Huge, negative and over-long values planted over every offset must never panic or
    /// make an allocation out of proportion to the frame (they may decode, e.g. when they
    /// land on a plain integer field).
    fn mutations(&self, v: i16, frame: &Bytes) {
        for offset in 0..frame.len() {
            for pattern in MUTATIONS {
                let mut mutated = frame.to_vec();
                for (slot, byte) in mutated.iter_mut().skip(offset).zip(pattern.iter()) {
                    *slot = *byte;
                }
                let limit = mutated.len() * CONTENT_AMPLIFICATION_MAX + ALLOC_SLACK;
                let _ = decode_measured(self.key as i16, v, mutated.into(), limit);
            }
        }
    }

    /// Builds a request with exactly one element in every array, finds every array count in
    /// its encoding, and replaces each in turn with a huge (or negative) one: each must be
    /// rejected without allocating more than the frame.
    fn planted_counts(&self, v: i16) {
        let key = self.key as i16;
        let frame = encode(&(self.generate)(&mut Gen::one_each(), v), self.wire(v));
        let flexible = ApiKey::try_from(key)
            .map(|k| k.request_header_version(v) >= 2)
            .unwrap_or(false);
        let limit = frame.len() + ALLOC_SLACK;
        if flexible {
            // In one-each mode every 0x02 byte is a compact count of one element.
            for offset in (0..frame.len()).filter(|&i| frame[i] == 0x02) {
                for huge in [
                    &[0xff, 0xff, 0xff, 0xff, 0x07][..],
                    &[0xff, 0xff, 0xff, 0xff, 0x0f],
                ] {
                    let mut mutated = frame[..offset].to_vec();
                    mutated.extend_from_slice(huge);
                    mutated.extend_from_slice(&frame[offset + 1..]);
                    let result = decode_measured(key, v, mutated.into(), limit);
                    // Fetch v15+ has two known tagged fields, so one 0x02 is a tag count.
                    assert!(
                        matches!(
                            result,
                            Err(DecodeError::CountExceedsRemaining { .. }
                                | DecodeError::TooManyTaggedFields(_))
                        ),
                        "{:?} v{v}: compact count at {offset} → {result:?}",
                        self.key
                    );
                }
            }
        } else {
            // In one-each mode every 00 00 00 01 sequence is a count of one element.
            let count_at = |i: usize| frame.get(i..i + 4) == Some(&[0, 0, 0, 1][..]);
            for offset in (0..frame.len()).filter(|&i| count_at(i)) {
                for (huge, negative) in [([0x7f, 0xff, 0xff, 0xff], false), ([0x80, 0, 0, 0], true)]
                {
                    let mut mutated = frame.to_vec();
                    mutated[offset..offset + 4].copy_from_slice(&huge);
                    let result = decode_measured(key, v, mutated.into(), limit);
                    let expected = if negative {
                        matches!(result, Err(DecodeError::NegativeLength(_)))
                    } else {
                        matches!(result, Err(DecodeError::CountExceedsRemaining { .. }))
                    };
                    assert!(
                        expected,
                        "{:?} v{v}: count at {offset} → {result:?}",
                        self.key
                    );
                }
            }
        }
    }

    /// Random bytes must never panic or over-allocate.
    fn garbage(&self, v: i16) {
        let mut g =
            Gen::new(0x9a7b_a9e0 ^ (u64::from(self.key as u16) << 20) ^ u64::from(v as u16));
        for _ in 0..GARBAGE_FRAMES {
            let len = g.below(GARBAGE_LEN_MAX + 1);
            let frame: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
            let limit = frame.len() * CONTENT_AMPLIFICATION_MAX + ALLOC_SLACK;
            let _ = decode_measured(self.key as i16, v, frame.into(), limit);
        }
    }

    /// A full frame (header + body) must split and decode like kafka-protocol's header decoder
    /// says it should.
    fn with_header(&self, v: i16) {
        let key = self.key as i16;
        let header_version = self.key.request_header_version(v);
        let mut g = Gen::new(0x4ead ^ u64::from(v as u16));
        let mut header = RequestHeader::default();
        header.request_api_key = key;
        header.request_api_version = v;
        header.correlation_id = g.i32();
        header.client_id = g.nullable_string();
        header.unknown_tagged_fields = g.tags(header_version >= 2);
        let request = (self.generate)(&mut g, v);

        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, header_version)
            .expect("header encodes");
        let header_len = frame.len();
        request
            .encode(&mut frame, self.wire(v))
            .expect("body encodes");
        let frame = frame.freeze();

        let theirs = RequestHeader::decode(&mut frame.clone(), header_version).expect("decodes");
        let mut rest = frame.clone();
        let ours = decode_request_header(&mut rest, key, v)
            .unwrap_or_else(|e| panic!("{:?} v{v}: header decode failed: {e}", self.key));
        assert_eq!(ours, theirs);
        assert_eq!(rest, frame.slice(header_len..));
        let body = (self.unwrap)(decode_request(key, v, rest).expect("body decodes"));
        assert_eq!(body.as_ref(), Some(&request));

        // A header naming a different version than the frame was read as is rejected and
        // leaves the buffer untouched.
        let mut untouched = frame.clone();
        assert!(matches!(
            decode_request_header(&mut untouched, key, v.wrapping_add(1)),
            Err(DecodeError::HeaderMismatch { .. })
        ));
        assert_eq!(untouched, frame);
        for cut in 0..header_len {
            let mut truncated = frame.slice(..cut);
            assert!(decode_request_header(&mut truncated, key, v).is_err());
        }
    }
}

/// Versions newer than kafka-protocol knows whose request bytes are an
/// older version's: (API, version, the older version). ListOffsets v11
/// only allows a new timestamp value (KIP-1023).
const SAME_WIRE_AS: &[(ApiKey, i16, i16)] = &[(ApiKey::ListOffsets, 11, 10)];

/// Versions newer than kafka-protocol knows, with bytes of their own: no
/// reference encoder to compare with, so the codec's unit tests cover them
/// (`net/src/codec/offset_commit.rs`, `offset_fetch.rs`: topic ids in place
/// of names, KIP-848; `write_txn_markers.rs` and the peer encoder's round
/// trip in `net/src/glommio_client/protocol.rs`: a transaction version per
/// marker, KIP-1228).
const BEYOND_THE_CRATE: &[(ApiKey, i16)] = &[
    (ApiKey::OffsetCommit, 10),
    (ApiKey::OffsetFetch, 10),
    (ApiKey::WriteTxnMarkers, 2),
];

macro_rules! api_test {
    ($test:ident, $variant:ident, $generate:ident) => {
        #[test]
        fn $test() {
            Api {
                key: ApiKey::$variant,
                generate: $generate,
                unwrap: |request| match request {
                    Request::$variant(inner) => Some(inner),
                    _ => None,
                },
            }
            .run();
        }
    };
}

api_test!(api_versions, ApiVersions, gen_api_versions);
api_test!(metadata, Metadata, gen_metadata);
api_test!(produce, Produce, gen_produce);
api_test!(fetch, Fetch, gen_fetch);
api_test!(list_offsets, ListOffsets, gen_list_offsets);
api_test!(create_topics, CreateTopics, gen_create_topics);
api_test!(delete_topics, DeleteTopics, gen_delete_topics);
api_test!(create_partitions, CreatePartitions, gen_create_partitions);
api_test!(init_producer_id, InitProducerId, gen_init_producer_id);
api_test!(describe_configs, DescribeConfigs, gen_describe_configs);
api_test!(
    incremental_alter_configs,
    IncrementalAlterConfigs,
    gen_incremental_alter_configs
);
api_test!(alter_configs, AlterConfigs, gen_alter_configs);
api_test!(describe_cluster, DescribeCluster, gen_describe_cluster);
api_test!(describe_quorum, DescribeQuorum, gen_describe_quorum);
api_test!(
    alter_partition_reassignments,
    AlterPartitionReassignments,
    gen_alter_partition_reassignments
);
api_test!(
    list_partition_reassignments,
    ListPartitionReassignments,
    gen_list_partition_reassignments
);
api_test!(elect_leaders, ElectLeaders, gen_elect_leaders);
api_test!(describe_log_dirs, DescribeLogDirs, gen_describe_log_dirs);
api_test!(
    alter_replica_log_dirs,
    AlterReplicaLogDirs,
    gen_alter_replica_log_dirs
);
api_test!(find_coordinator, FindCoordinator, gen_find_coordinator);

/// FindCoordinator v6 (KIP-932) is v5's layout; a share-group lookup (key
/// type 2) decodes like any other.
#[test]
fn find_coordinator_v6_share_key_type() {
    assert_eq!(supported_versions(ApiKey::FindCoordinator), Some((0, 6)));
    let mut request = FindCoordinatorRequest::default();
    request.key_type = 2;
    request.coordinator_keys = vec![StrBytes::from_static_str("share-group")];
    let mut body = BytesMut::new();
    request.encode(&mut body, 6).expect("encode");
    match decode_request(ApiKey::FindCoordinator as i16, 6, body.freeze()) {
        Ok(Request::FindCoordinator(decoded)) => assert_eq!(decoded, request),
        other => panic!("decoded {other:?}"),
    }
}
api_test!(join_group, JoinGroup, gen_join_group);
api_test!(sync_group, SyncGroup, gen_sync_group);
api_test!(heartbeat, Heartbeat, gen_heartbeat);
api_test!(leave_group, LeaveGroup, gen_leave_group);
api_test!(offset_commit, OffsetCommit, gen_offset_commit);
api_test!(offset_fetch, OffsetFetch, gen_offset_fetch);
api_test!(describe_groups, DescribeGroups, gen_describe_groups);
api_test!(list_groups, ListGroups, gen_list_groups);
api_test!(delete_groups, DeleteGroups, gen_delete_groups);
api_test!(offset_delete, OffsetDelete, gen_offset_delete);
api_test!(
    consumer_group_heartbeat,
    ConsumerGroupHeartbeat,
    gen_consumer_group_heartbeat
);
api_test!(
    consumer_group_describe,
    ConsumerGroupDescribe,
    gen_consumer_group_describe
);
api_test!(
    add_partitions_to_txn,
    AddPartitionsToTxn,
    gen_add_partitions_to_txn
);
api_test!(add_offsets_to_txn, AddOffsetsToTxn, gen_add_offsets_to_txn);
api_test!(end_txn, EndTxn, gen_end_txn);

/// WriteTxnMarkers decodes to kafka-protocol's request with each marker's
/// transaction version beside it: below v2, the versions compared with the
/// crate here, every one is the schema's default.
#[test]
fn write_txn_markers() {
    Api {
        key: ApiKey::WriteTxnMarkers,
        generate: gen_write_txn_markers,
        unwrap: |request| match request {
            Request::WriteTxnMarkers(inner) => {
                assert_eq!(
                    inner.transaction_versions,
                    vec![TRANSACTION_VERSION_DEFAULT; inner.request.markers.len()]
                );
                Some(inner.request)
            }
            _ => None,
        },
    }
    .run();
}

api_test!(txn_offset_commit, TxnOffsetCommit, gen_txn_offset_commit);
api_test!(
    describe_producers,
    DescribeProducers,
    gen_describe_producers
);
api_test!(
    describe_transactions,
    DescribeTransactions,
    gen_describe_transactions
);
api_test!(list_transactions, ListTransactions, gen_list_transactions);
api_test!(
    describe_topic_partitions,
    DescribeTopicPartitions,
    gen_describe_topic_partitions
);
api_test!(
    list_config_resources,
    ListConfigResources,
    gen_list_config_resources
);
api_test!(delete_records, DeleteRecords, gen_delete_records);
api_test!(
    offset_for_leader_epoch,
    OffsetForLeaderEpoch,
    gen_offset_for_leader_epoch
);
api_test!(sasl_handshake, SaslHandshake, gen_sasl_handshake);
api_test!(sasl_authenticate, SaslAuthenticate, gen_sasl_authenticate);
api_test!(
    describe_user_scram_credentials,
    DescribeUserScramCredentials,
    gen_describe_user_scram_credentials
);
api_test!(
    alter_user_scram_credentials,
    AlterUserScramCredentials,
    gen_alter_user_scram_credentials
);
api_test!(describe_acls, DescribeAcls, gen_describe_acls);
api_test!(create_acls, CreateAcls, gen_create_acls);
api_test!(delete_acls, DeleteAcls, gen_delete_acls);
api_test!(
    describe_client_quotas,
    DescribeClientQuotas,
    gen_describe_client_quotas
);
api_test!(
    alter_client_quotas,
    AlterClientQuotas,
    gen_alter_client_quotas
);

/// Every API in SUPPORTED_APIS must have a round-trip test above; this list mirrors them.
const TESTED_APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::WriteTxnMarkers,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::DescribeQuorum,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::ElectLeaders,
    ApiKey::DescribeLogDirs,
    ApiKey::AlterReplicaLogDirs,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeProducers,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::DescribeTopicPartitions,
    ApiKey::ListConfigResources,
    ApiKey::DeleteRecords,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
    ApiKey::DescribeUserScramCredentials,
    ApiKey::AlterUserScramCredentials,
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::DescribeClientQuotas,
    ApiKey::AlterClientQuotas,
];

#[test]
fn every_supported_api_is_tested() {
    assert_eq!(SUPPORTED_APIS.len(), TESTED_APIS.len());
    for (key, _) in SUPPORTED_APIS {
        assert!(TESTED_APIS.contains(key), "{key:?} has no round-trip test");
    }
}

#[test]
fn supported_ranges_are_within_kafka_protocol() {
    use kafka_protocol::protocol::Message;
    fn within<T: Message>(key: ApiKey) {
        let (min, max) = supported_versions(key).expect("supported");
        // A version past the crate's newest must have an older one's
        // bytes, or tests of its own.
        let known_max = SAME_WIRE_AS
            .iter()
            .filter(|(listed, _, same)| *listed == key && *same <= T::VERSIONS.max)
            .map(|(_, version, _)| *version)
            .chain(
                BEYOND_THE_CRATE
                    .iter()
                    .filter(|(listed, _)| *listed == key)
                    .map(|(_, version)| *version),
            )
            .fold(T::VERSIONS.max, i16::max);
        assert!(
            min >= T::VERSIONS.min && max <= known_max && min <= max,
            "{key:?}: {min}..={max} against {}..={known_max}",
            T::VERSIONS.min
        );
    }
    within::<ProduceRequest>(ApiKey::Produce);
    within::<FetchRequest>(ApiKey::Fetch);
    within::<MetadataRequest>(ApiKey::Metadata);
    within::<ApiVersionsRequest>(ApiKey::ApiVersions);
    within::<ListOffsetsRequest>(ApiKey::ListOffsets);
    within::<CreateTopicsRequest>(ApiKey::CreateTopics);
    within::<OffsetCommitRequest>(ApiKey::OffsetCommit);
    within::<OffsetFetchRequest>(ApiKey::OffsetFetch);
}

// ---------------------------------------------------------------------------------------------
// Targeted hostile frames
// ---------------------------------------------------------------------------------------------

/// The attack that motivated the codec: a 14-byte frame (header v1 with a null client id,
/// then a body) claiming 2^31 - 1 topics. kafka-protocol would try to reserve ~200 GB.
#[test]
fn metadata_claiming_two_billion_topics_is_rejected() {
    for (version, count) in [
        (1i16, &[0x7f, 0xff, 0xff, 0xff][..]),
        (9, &[0xff, 0xff, 0xff, 0xff, 0x07]),
    ] {
        let mut frame = vec![0, 3];
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 7, 0xff, 0xff]);
        if version >= 9 {
            frame.push(0); // header tagged fields
        }
        frame.extend_from_slice(count);
        let mut frame = Bytes::from(frame);
        decode_request_header(&mut frame, 3, version).expect("header is fine");
        let result = decode_measured(3, version, frame, 64 + ALLOC_SLACK);
        assert!(
            matches!(result, Err(DecodeError::CountExceedsRemaining { .. })),
            "{result:?}"
        );
    }
}

/// Produce v3 and v9 frames that are honest down to the partition list, which claims
/// 2^31 - 1 (or 2^32 - 2) partitions.
#[test]
fn produce_claiming_huge_partition_count_is_rejected() {
    let mut classic = vec![0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0, 0, 0, 1, 0, 1, b't'];
    classic.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    let result = decode_measured(0, 3, classic.into(), 64 + ALLOC_SLACK);
    assert!(
        matches!(result, Err(DecodeError::CountExceedsRemaining { .. })),
        "{result:?}"
    );

    let mut flexible = vec![0, 0, 1, 0, 0, 0x75, 0x30, 2, 2, b't'];
    flexible.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let result = decode_measured(0, 9, flexible.into(), 64 + ALLOC_SLACK);
    assert!(
        matches!(result, Err(DecodeError::CountExceedsRemaining { .. })),
        "{result:?}"
    );
}

/// Negative and oversized lengths on strings and records are rejected before any copy.
#[test]
fn produce_bad_lengths_are_rejected() {
    // Transactional id length -2.
    let frame = Bytes::from_static(&[0xff, 0xfe, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode_request(0, 3, frame),
        Err(DecodeError::NegativeLength(-2))
    );
    // Records length -7 in the single partition.
    let frame = Bytes::from_static(&[
        0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff,
        0xff, 0xf9,
    ]);
    assert_eq!(
        decode_request(0, 3, frame),
        Err(DecodeError::NegativeLength(-7))
    );
    // Records claiming 2 GB.
    let frame = Bytes::from_static(&[
        0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0x7f, 0xff,
        0xff, 0xff,
    ]);
    assert!(matches!(
        decode_request(0, 3, frame),
        Err(DecodeError::Truncated { .. })
    ));
}

/// Produce record sets must be slices of the frame, not copies.
#[test]
fn produce_records_are_zero_copy() {
    let mut g = Gen::one_each();
    for v in 3..=11 {
        let frame = encode(&gen_produce(&mut g, v), v);
        let range = frame.as_ptr_range();
        let Ok(Request::Produce(request)) = decode_request(0, v, frame.clone()) else {
            panic!("produce v{v} failed to decode");
        };
        let records = request.topic_data[0].partition_data[0]
            .records
            .as_ref()
            .expect("records");
        assert!(
            range.contains(&records.as_ptr()),
            "v{v}: records were copied"
        );
        let name = request.topic_data[0].name.0.as_ptr();
        assert!(range.contains(&name), "v{v}: topic name was copied");
    }
}

/// A flexible Fetch with tagged fields out of order, duplicated, or too numerous.
#[test]
fn bad_tagged_field_sections_are_rejected() {
    // DescribeCluster v0: include_cluster_authorized_operations, then tagged fields.
    let with_tags = |tags: &[u8]| {
        let mut frame = vec![1];
        frame.extend_from_slice(tags);
        Bytes::from(frame)
    };
    let ok = decode_request(60, 0, with_tags(&[2, 5, 1, 0xaa, 9, 0])).expect("ascending tags");
    let Request::DescribeCluster(ok) = ok else {
        panic!("wrong variant")
    };
    assert_eq!(ok.unknown_tagged_fields.len(), 2);
    assert_eq!(
        decode_request(60, 0, with_tags(&[2, 9, 0, 5, 0])),
        Err(DecodeError::TaggedFieldOrder {
            tag: 5,
            previous: 9
        })
    );
    assert_eq!(
        decode_request(60, 0, with_tags(&[2, 5, 0, 5, 0])),
        Err(DecodeError::TaggedFieldOrder {
            tag: 5,
            previous: 5
        })
    );
    assert!(matches!(
        decode_request(60, 0, with_tags(&[0xff, 0xff, 0xff, 0xff, 0x0f])),
        Err(DecodeError::TooManyTaggedFields(_))
    ));
    assert!(matches!(
        decode_request(60, 0, with_tags(&[1, 5, 0x7f])),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(
        decode_request(60, 0, with_tags(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0])),
        Err(DecodeError::TagOutOfRange(u32::MAX))
    );
}

/// Fetch's known tagged fields must consume exactly their declared size, and ReplicaState is
/// only valid from v15.
#[test]
fn fetch_known_tags_are_checked() {
    // Fetch v12 prefix: replica id, max wait, min bytes, max bytes, isolation, session id and
    // epoch, no topics, no forgotten topics, empty rack id.
    let prefix: &[u8] = &[
        0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0xf4, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xff,
        0xff, 0xff, 0xff, 1, 1, 1,
    ];
    let frame = |tags: &[u8]| {
        let mut frame = prefix.to_vec();
        frame.extend_from_slice(tags);
        Bytes::from(frame)
    };
    // Cluster id "ab" as tag 0.
    let Ok(Request::Fetch(fetch)) = decode_request(1, 12, frame(&[1, 0, 3, 3, b'a', b'b'])) else {
        panic!("cluster id tag rejected");
    };
    assert_eq!(fetch.cluster_id.as_deref(), Some("ab"));
    // The same tag declaring one byte more than the string uses.
    assert_eq!(
        decode_request(1, 12, frame(&[1, 0, 4, 3, b'a', b'b', 0])),
        Err(DecodeError::TrailingBytes(1))
    );
    // ReplicaState (tag 1) in v12.
    assert_eq!(
        decode_request(1, 12, frame(&[1, 1, 1, 0])),
        Err(DecodeError::InvalidTag {
            tag: 1,
            version: 12
        })
    );
}

/// Unknown API keys, and known ones Sluice does not decode, are rejected up front.
#[test]
fn unsupported_apis_are_rejected() {
    assert_eq!(
        decode_request(-1, 0, Bytes::new()),
        Err(DecodeError::UnsupportedApiKey(-1))
    );
    assert_eq!(
        decode_request(9999, 0, Bytes::new()),
        Err(DecodeError::UnsupportedApiKey(9999))
    );
    // LeaderAndIsr (4) exists in Kafka but is not something a Sluice broker accepts.
    assert_eq!(
        decode_request(4, 0, Bytes::new()),
        Err(DecodeError::UnsupportedApiKey(4))
    );
    let mut frame = Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    assert_eq!(
        decode_request_header(&mut frame, 0x7f7f, 0),
        Err(DecodeError::UnsupportedApiKey(0x7f7f))
    );
}
