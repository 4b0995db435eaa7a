//! Cluster metadata on disk: topics, their ids, partition counts and configs.
//!
//! Stored as one rkyv snapshot framed with magic, version, length and
//! CRC-32C, replaced atomically (temp file, fsync, rename, directory fsync).
//! [`MetadataStore`] is the interface the Raft metadata log will replace.
//! The data directory carries a format marker so that Sluice never mistakes
//! a foreign directory for its own, and never reinitialises over data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::constants::{METADATA_RESERVE_BYTES, METADATA_SNAPSHOT_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use crate::error::{OpenError, StorageError};
use crate::storage::{is_disk_full, Storage};

/// One partition's replicas and leadership, as the controller decided them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Broker ids holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas: the replicas that hold every committed record.
    pub isr: Vec<i32>,
    /// The leading broker, or -1 when none is available.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped on every change of the partition's state (AlterPartition's
    /// fencing token).
    pub partition_epoch: i32,
    /// While a reassignment runs: replicas being added (in `replicas`, not
    /// yet in the ISR of the target assignment)...
    pub adding: Vec<i32>,
    /// ...and replicas to remove once every added one is in the ISR.
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// A partition whose one replica, on `broker`, leads it.
    pub fn led_by(broker: i32) -> Self {
        PartitionState {
            replicas: vec![broker],
            isr: vec![broker],
            leader: broker,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment of the partition is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition ends with: a reassignment's target, else
    /// its replicas.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.removing.contains(id))
            .collect()
    }
}

/// One topic as the metadata image knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Kafka topic id (a UUID's 16 bytes).
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level config overrides, Kafka's names (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
    /// One entry per partition, in partition order (`partitions` long).
    pub placement: Vec<PartitionState>,
}

/// A broker as registered with the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    /// Random per process start: tells a restarted broker from the old one.
    pub incarnation: u64,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not offered to clients.
    pub fenced: bool,
    /// Its listeners after the first (whose address is `host` and `port`,
    /// the one brokers reach each other through): clients that came in
    /// through a listener of another name are told these addresses.
    pub endpoints: Vec<Endpoint>,
}

/// A broker's listener other than the first, as its registration carries
/// it: Kafka's listener name (its security protocol's unless
/// `listener_security_protocol_map` names it otherwise) and the address its
/// clients are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

impl BrokerInfo {
    /// This broker as the clients of its listener named `listener`, one
    /// after the first, must see it: at that listener's address; `None`
    /// when it has no such listener, so that they are not sent to a port
    /// that speaks another protocol.
    pub fn through(&self, listener: &str) -> Option<BrokerInfo> {
        let endpoint = self
            .endpoints
            .iter()
            .find(|endpoint| endpoint.listener == listener)?;
        Some(BrokerInfo {
            host: endpoint.host.clone(),
            port: endpoint.port,
            ..self.clone()
        })
    }
}

/// One part of a client quota entity (KIP-546): a name, or the default
/// that applies to every name without a quota of its own (Kafka's `null`
/// entity name, `<default>` in its tools).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaName {
    Default,
    Named(String),
}

impl QuotaName {
    /// Kafka's wire form: `None` for the default.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            QuotaName::Default => None,
            QuotaName::Named(name) => Some(name),
        }
    }

    /// From Kafka's wire form.
    pub fn from_wire(name: Option<&str>) -> QuotaName {
        match name {
            None => QuotaName::Default,
            Some(name) => QuotaName::Named(name.to_string()),
        }
    }
}

/// A client quota entity: a user, a client id, or a user's client id
/// (`/users/u/clients/c`); at least one of the two is set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<QuotaName>,
    pub client_id: Option<QuotaName>,
}

/// A quota's value: Kafka's quota values are doubles. Compared by bits, so
/// that an image equals itself (values are checked finite and positive
/// before they are stored, so no NaN gets in).
#[derive(Clone, Copy, Debug)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &QuotaValue) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// An entity's quotas by Kafka's key (`producer_byte_rate`, ...).
pub type QuotaValues = BTreeMap<String, QuotaValue>;

/// One ACL binding as the metadata log keeps it: Kafka's codes for the
/// resource type, pattern type, operation and permission, which the
/// broker's authorizer gives their meaning (the engine only stores them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredAcl {
    pub resource_type: i8,
    pub pattern_type: i8,
    pub resource_name: String,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// One user's SCRAM credential for one mechanism (RFC 5802): enough to
/// check a client's proof, not enough to recover its password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredScram {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Keys stay out of logs and panic messages.
impl std::fmt::Debug for StoredScram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredScram")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// SCRAM credentials by user and Kafka's mechanism code (1 SCRAM-SHA-256,
/// 2 SCRAM-SHA-512).
pub type ScramCredentials = BTreeMap<(String, i8), StoredScram>;

/// The metadata image: everything the metadata log describes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Bumped on every change; lets shards drop stale snapshots.
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Next producer id to hand out (InitProducerId), persisted so ids are
    /// never reused after a restart.
    pub next_producer_id: i64,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Client quotas (KIP-13, KIP-546): every entity with at least one
    /// value; an entity whose last value is removed is dropped.
    pub client_quotas: BTreeMap<QuotaEntity, QuotaValues>,
    /// ACL bindings (KIP-140), shared between images: most changes leave
    /// them alone, and there may be many.
    pub acls: Arc<BTreeSet<StoredAcl>>,
    /// SCRAM credentials (KIP-554), shared between images like the ACLs.
    pub scram_credentials: Arc<ScramCredentials>,
    /// The active controller (the metadata quorum's leader) when this image
    /// was published; not part of the metadata log.
    pub controller: Option<i32>,
}

impl ClusterMetadata {
    /// Brokers that may lead and take replicas.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// The state of one partition, if the topic and partition exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.placement.get(index)
    }
}

/// The single-node metadata file's layout (format version 1), kept to read
/// and write data directories of single-node brokers.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredTopic {
    name: String,
    id: [u8; 16],
    partitions: i32,
    configs: BTreeMap<String, String>,
}

#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
struct StoredMetadata {
    version: u64,
    cluster_id: String,
    topics: BTreeMap<String, StoredTopic>,
    next_producer_id: i64,
}

impl StoredMetadata {
    /// The image of a single-node directory whose partitions `broker` leads.
    /// Refuses a partition count no topic can have: the file's checksum
    /// holds, but a count read from disk must not size an allocation.
    fn into_image(self, broker: i32) -> Result<ClusterMetadata, String> {
        let stored = self;
        let mut topics = BTreeMap::new();
        for (name, topic) in stored.topics {
            if !(0..=TOPIC_PARTITIONS_MAX).contains(&topic.partitions) {
                return Err(format!(
                    "topic {name} has {} partitions (at most {TOPIC_PARTITIONS_MAX})",
                    topic.partitions
                ));
            }
            let placement = (0..topic.partitions)
                .map(|_| PartitionState::led_by(broker))
                .collect();
            let topic = TopicMetadata {
                name: topic.name,
                id: topic.id,
                partitions: topic.partitions,
                configs: topic.configs,
                placement,
            };
            topics.insert(name, topic);
        }
        Ok(ClusterMetadata {
            version: stored.version,
            cluster_id: stored.cluster_id,
            topics,
            next_producer_id: stored.next_producer_id,
            brokers: BTreeMap::new(),
            // The single-node file predates client quotas, ACLs and
            // credentials in the metadata.
            client_quotas: BTreeMap::new(),
            acls: Arc::default(),
            scram_credentials: Arc::default(),
            controller: None,
        })
    }
}

impl From<&ClusterMetadata> for StoredMetadata {
    fn from(metadata: &ClusterMetadata) -> Self {
        StoredMetadata {
            version: metadata.version,
            cluster_id: metadata.cluster_id.clone(),
            topics: metadata
                .topics
                .iter()
                .map(|(name, topic)| {
                    let stored = StoredTopic {
                        name: topic.name.clone(),
                        id: topic.id,
                        partitions: topic.partitions,
                        configs: topic.configs.clone(),
                    };
                    (name.clone(), stored)
                })
                .collect(),
            next_producer_id: metadata.next_producer_id,
        }
    }
}

/// Where cluster metadata lives. The single-node file store today; the Raft
/// metadata log later.
#[allow(async_fn_in_trait)]
pub trait MetadataStore {
    /// The stored metadata, or `None` on a fresh data directory.
    async fn load(&self) -> Result<Option<ClusterMetadata>, OpenError>;
    /// Stores `metadata` durably; after a crash `load` returns it or the
    /// previous version, never a mix.
    async fn save(&self, metadata: &ClusterMetadata) -> Result<(), StorageError>;
}

/// The directory fsck puts recovered files in, at a file system's root.
const LOST_AND_FOUND: &str = "lost+found";

/// Marker file naming the directory's format.
pub const FORMAT_FILE: &str = "meta/format";
const FORMAT_LINE: &[u8] = b"sluice-data-dir 1\n";
const SNAPSHOT_FILE: &str = "meta/cluster.snapshot";
/// Space held back on the data disk for metadata: when the disk fills up,
/// the metadata snapshot could no longer be replaced, so the DeleteTopics or
/// retention change that would free the disk could not be recorded. The
/// reserve is released at the first save that meets a full disk.
const RESERVE_FILE: &str = "meta/space.reserve";
/// "SLMD": Sluice metadata.
const SNAPSHOT_MAGIC: u32 = 0x534c_4d44;
const SNAPSHOT_VERSION: u16 = 1;
/// magic u32 + version u16 + payload length u32.
const SNAPSHOT_HEADER_BYTES: usize = 10;
const SNAPSHOT_CRC_BYTES: usize = 4;

/// The metadata snapshot in `<data_dir>/meta/`.
pub struct FileMetadataStore<S: Storage> {
    storage: S,
    data_dir: PathBuf,
    /// The broker that leads every partition of this single-node store.
    node_id: i32,
}

impl<S: Storage> FileMetadataStore<S> {
    pub fn new(storage: S, data_dir: PathBuf, node_id: i32) -> Self {
        FileMetadataStore {
            storage,
            data_dir,
            node_id,
        }
    }
}

/// Frames a payload: magic, version, length, payload, CRC-32C (big-endian).
pub fn encode_snapshot(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len() + SNAPSHOT_CRC_BYTES);
    out.extend_from_slice(&SNAPSHOT_MAGIC.to_be_bytes());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks the frame and returns the payload, or why it is unusable.
pub fn decode_snapshot(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES {
        return Err(format!("{} bytes is too short for a snapshot", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - SNAPSHOT_CRC_BYTES);
    if body[..4] != SNAPSHOT_MAGIC.to_be_bytes() {
        return Err("wrong magic".into());
    }
    let version = u16::from_be_bytes([body[4], body[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot version {version}"));
    }
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let len = u32::from_be_bytes([body[6], body[7], body[8], body[9]]) as usize;
    let payload = &body[SNAPSHOT_HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!(
            "length {len} does not match the {} bytes present",
            payload.len()
        ));
    }
    Ok(payload)
}

impl<S: Storage> MetadataStore for FileMetadataStore<S> {
    async fn load(&self) -> Result<Option<ClusterMetadata>, OpenError> {
        let path = self.data_dir.join(SNAPSHOT_FILE);
        if !self.storage.exists(&path) {
            return Ok(None);
        }
        let bytes = self
            .storage
            .read_small(&path, METADATA_SNAPSHOT_BYTES_MAX)
            .await
            .map_err(|error| StorageError::new("read", &path, error))?;
        let corrupt = |reason: String| OpenError::Foreign {
            path: path.clone(),
            reason: format!("metadata snapshot unreadable: {reason}; restore it from a backup"),
        };
        let payload = decode_snapshot(&bytes).map_err(corrupt)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(payload);
        let stored = rkyv::from_bytes::<StoredMetadata, rkyv::rancor::Error>(&aligned)
            .map_err(|error| corrupt(error.to_string()))?;
        stored.into_image(self.node_id).map(Some).map_err(corrupt)
    }

    async fn save(&self, metadata: &ClusterMetadata) -> Result<(), StorageError> {
        let path = self.data_dir.join(SNAPSHOT_FILE);
        let stored = StoredMetadata::from(metadata);
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&stored).map_err(|error| {
            StorageError::new("encode", &path, std::io::Error::other(error.to_string()))
        })?;
        let snapshot = encode_snapshot(&payload);
        let mut written = self.storage.write_small_atomic(&path, &snapshot).await;
        if written.as_ref().is_err_and(is_disk_full)
            && release_reserve(&self.storage, &self.data_dir)
        {
            written = self.storage.write_small_atomic(&path, &snapshot).await;
        }
        written.map_err(|error| StorageError::new("write", &path, error))?;
        keep_reserve(&self.storage, &self.data_dir).await;
        Ok(())
    }
}

/// Gives up the metadata space reserve because the disk is full, so that a
/// metadata change (most often the DeleteTopics or retention change that
/// frees the disk) can still be recorded. True if there was one to give.
pub fn release_reserve<S: Storage>(storage: &S, data_dir: &Path) -> bool {
    let reserve = data_dir.join(RESERVE_FILE);
    if !storage.exists(&reserve) {
        return false;
    }
    tracing::warn!(
        path = %reserve.display(),
        "the disk is full: releasing the metadata space reserve to save metadata"
    );
    if let Err(error) = storage.remove_file_at_once(&reserve) {
        tracing::warn!(%error, "releasing the metadata space reserve failed");
        return false;
    }
    true
}

/// Makes sure the space reserve exists (after a successful save, and at
/// start): recreated as soon as the disk has room again. Failing to make it
/// is not an error; the broker runs without it until it can. True if the
/// reserve exists now.
pub async fn keep_reserve<S: Storage>(storage: &S, data_dir: &Path) -> bool {
    let reserve = data_dir.join(RESERVE_FILE);
    if storage.exists(&reserve) {
        return true;
    }
    let zeros = vec![0u8; METADATA_RESERVE_BYTES];
    match storage.write_small_atomic(&reserve, &zeros).await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%error, "no metadata space reserve for now");
            let _ = storage.remove_file_at_once(&reserve);
            false
        }
    }
}

/// Where a single-node metadata file goes once its contents live in the
/// metadata log: kept for reference, never read again.
const RETIRED_SNAPSHOT_FILE: &str = "meta/cluster.snapshot.migrated";

impl<S: Storage> FileMetadataStore<S> {
    /// Moves the file aside after its contents were written to the
    /// metadata log, so that it is never taken for current metadata.
    pub fn retire(&self) -> Result<(), StorageError> {
        let path = self.data_dir.join(SNAPSHOT_FILE);
        let retired = self.data_dir.join(RETIRED_SNAPSHOT_FILE);
        std::fs::rename(&path, &retired).map_err(|error| StorageError::new("rename", &path, error))
    }

    pub async fn keep_reserve(&self) -> bool {
        keep_reserve(&self.storage, &self.data_dir).await
    }
}

/// Checks (or initialises) a data directory: it must be writable, and either
/// empty or marked as Sluice's. Errors are one line naming the path and fix.
/// Every data directory of a broker gets the same marker (in `meta/`);
/// only the first holds the metadata itself.
pub async fn prepare_data_dir<S: Storage>(storage: &S, data_dir: &Path) -> Result<(), OpenError> {
    storage.create_dir_all(data_dir).await.map_err(|error| {
        OpenError::Storage(StorageError::new("create data directory", data_dir, error))
    })?;
    let entries = storage
        .list_dir(data_dir)
        .await
        .map_err(|error| OpenError::Storage(StorageError::new("list", data_dir, error)))?;
    let marker = data_dir.join(FORMAT_FILE);
    crate::storage::forget_doomed(storage, data_dir, &entries);
    if storage.exists(&marker) {
        let bytes = storage
            .read_small(&marker, 1024)
            .await
            .map_err(|error| OpenError::Storage(StorageError::new("read", &marker, error)))?;
        if bytes != FORMAT_LINE {
            return Err(OpenError::Foreign {
                path: marker,
                reason: "unrecognised format marker".into(),
            });
        }
        return Ok(());
    }
    // A file system's own `lost+found` (the root of a freshly made ext4
    // volume has one) is not data: such a volume may be the data directory.
    let stranger = entries
        .iter()
        .find(|name| !name.starts_with('.') && name.as_str() != LOST_AND_FOUND);
    if let Some(stranger) = stranger {
        return Err(OpenError::Foreign {
            path: data_dir.to_path_buf(),
            reason: format!("it already holds '{stranger}' but no {FORMAT_FILE}"),
        });
    }
    let meta = data_dir.join("meta");
    storage
        .create_dir_all(&meta)
        .await
        .map_err(|error| OpenError::Storage(StorageError::new("create", &meta, error)))?;
    storage
        .write_small_atomic(&marker, FORMAT_LINE)
        .await
        .map_err(|error| OpenError::Storage(StorageError::new("write", &marker, error)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures_lite::future::block_on(future)
    }

    /// Found by fuzzing: a stored partition count sized an allocation.
    #[test]
    fn a_stored_partition_count_past_the_limit_is_refused() {
        let mut stored = StoredMetadata::default();
        stored.topics.insert(
            "t".into(),
            StoredTopic {
                name: "t".into(),
                id: [1; 16],
                partitions: i32::MAX,
                configs: BTreeMap::new(),
            },
        );
        let refused = stored.clone().into_image(1).unwrap_err();
        assert!(refused.contains("partitions"), "{refused}");
        if let Some(topic) = stored.topics.get_mut("t") {
            topic.partitions = -1;
        }
        assert!(stored.into_image(1).is_err());
    }

    /// The same finding through `load`, as a broker starting on such a
    /// directory meets it: the file's checksum holds, so only the count
    /// check stands between the file and the allocation it would size.
    /// Counts just past the bounds keep the test cheap without the check
    /// (it then loads them and fails here, where `i32::MAX` would abort).
    #[test]
    fn a_metadata_file_with_a_partition_count_past_the_limit_is_refused_on_load() {
        let storage = MemStorage::new(1);
        let store = FileMetadataStore::new(storage, PathBuf::from("/d"), 1);
        let with_partitions = |partitions: i32| {
            let mut metadata = ClusterMetadata::default();
            // Only the count is stored; the placement is rebuilt on load.
            metadata.topics.insert(
                "t".into(),
                TopicMetadata {
                    name: "t".into(),
                    id: [1; 16],
                    partitions,
                    configs: BTreeMap::new(),
                    placement: Vec::new(),
                },
            );
            metadata
        };
        for partitions in [TOPIC_PARTITIONS_MAX + 1, -1] {
            block_on(store.save(&with_partitions(partitions))).unwrap();
            match block_on(store.load()) {
                Err(OpenError::Foreign { reason, .. }) => {
                    assert!(reason.contains("partitions"), "{reason}")
                }
                other => panic!("{partitions} partitions loaded: {:?}", other.map(|_| ())),
            }
        }
        block_on(store.save(&with_partitions(TOPIC_PARTITIONS_MAX))).unwrap();
        let loaded = block_on(store.load()).unwrap().unwrap();
        assert_eq!(
            loaded.topics["t"].placement.len(),
            TOPIC_PARTITIONS_MAX as usize
        );
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let storage = MemStorage::new(1);
        let store = FileMetadataStore::new(storage.clone(), PathBuf::from("/d"), 1);
        assert_eq!(block_on(store.load()).unwrap(), None);
        let mut metadata = ClusterMetadata {
            version: 3,
            cluster_id: "c".into(),
            ..Default::default()
        };
        metadata.topics.insert(
            "t".into(),
            TopicMetadata {
                name: "t".into(),
                id: [7; 16],
                partitions: 1,
                configs: BTreeMap::new(),
                placement: vec![PartitionState::led_by(1)],
            },
        );
        block_on(store.save(&metadata)).unwrap();
        assert_eq!(block_on(store.load()).unwrap(), Some(metadata));
        let path = PathBuf::from("/d").join(SNAPSHOT_FILE);
        let mut bytes = block_on(storage.read_small(&path, 1 << 20)).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        block_on(storage.write_small_atomic(&path, &bytes)).unwrap();
        let error = block_on(store.load()).unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
    }

    #[test]
    fn foreign_directory_is_refused() {
        let storage = MemStorage::new(1);
        block_on(storage.write_small_atomic(Path::new("/x/photos.jpg"), b"jpeg")).unwrap();
        let error = block_on(prepare_data_dir(&storage, Path::new("/x"))).unwrap_err();
        assert!(error.to_string().contains("photos.jpg"), "{error}");
        block_on(prepare_data_dir(&storage, Path::new("/fresh"))).unwrap();
        block_on(prepare_data_dir(&storage, Path::new("/fresh"))).unwrap();
    }

    #[test]
    fn a_fresh_volume_with_lost_and_found_is_taken() {
        let storage = MemStorage::new(1);
        block_on(storage.write_small_atomic(Path::new("/vol/lost+found/x"), b"")).unwrap();
        block_on(prepare_data_dir(&storage, Path::new("/vol"))).unwrap();
        assert!(storage.exists(&Path::new("/vol").join(FORMAT_FILE)));
    }

    #[test]
    fn a_save_keeps_the_space_reserve() {
        let storage = MemStorage::new(1);
        let store = FileMetadataStore::new(storage.clone(), PathBuf::from("/d"), 1);
        block_on(store.save(&ClusterMetadata::default())).unwrap();
        let reserve = Path::new("/d").join(RESERVE_FILE);
        assert_eq!(
            storage.file_size(&reserve).unwrap(),
            METADATA_RESERVE_BYTES as u64
        );
    }
}
