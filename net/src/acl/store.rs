//! The broker's ACLs, indexed for the authorizer. They are kept in the
//! metadata log (`MetadataRecord::CreateAcl` / `RemoveAcl`), so every
//! broker of a cluster authorizes alike and a change is durable on a
//! majority of the quorum before it is answered. The file a single-node
//! broker kept them in before, `<first data dir>/meta/acls` (format in
//! docs/format.md), is read once at start, written to the log, and renamed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use sluice_engine::StoredAcl;

use super::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::constants::{ACLS_FILE_BYTES_MAX, ACLS_MAX, ACL_FIELD_BYTES_MAX};
use crate::meta_file::{read_bounded, save_atomically, Cursor};

/// Where a single-node broker kept its ACLs before the metadata log held
/// them, under the first data directory.
pub const ACLS_FILE: &str = "meta/acls";
/// What that file is renamed to once its ACLs are in the metadata log.
pub const ACLS_FILE_IMPORTED: &str = "meta/acls.imported";
/// "SLAC": Sluice access control.
const MAGIC: u32 = 0x534c_4143;
const VERSION: u16 = 1;
/// magic u32 + version u16 + entry count u32.
const HEADER_BYTES: usize = 10;
const CRC_BYTES: usize = 4;

/// The ACLs, by resource type and pattern type, then by resource name: a
/// check looks up the literal name, the literal wildcard and each prefix of
/// the name, never the whole set.
#[derive(Clone, Debug, Default)]
pub struct AclStore {
    by_pattern: BTreeMap<(ResourceType, PatternType), BTreeMap<String, Vec<AclBinding>>>,
    count: usize,
}

impl AclStore {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `acl`; false when it is there already (Kafka treats creating
    /// an existing ACL as success).
    pub fn insert(&mut self, acl: AclBinding) -> bool {
        let named = self
            .by_pattern
            .entry((acl.resource_type, acl.pattern_type))
            .or_default()
            .entry(acl.resource_name.clone())
            .or_default();
        if named.contains(&acl) {
            return false;
        }
        named.push(acl);
        self.count += 1;
        true
    }

    /// Removes and returns every ACL `filter` matches.
    pub fn remove_matching(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let mut removed = Vec::new();
        for names in self.by_pattern.values_mut() {
            for acls in names.values_mut() {
                let (gone, kept) = std::mem::take(acls)
                    .into_iter()
                    .partition(|acl| filter.matches(acl));
                *acls = kept;
                removed.extend::<Vec<_>>(gone);
            }
            names.retain(|_, acls| !acls.is_empty());
        }
        self.by_pattern.retain(|_, names| !names.is_empty());
        self.count -= removed.len();
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.by_pattern
            .values()
            .flat_map(|names| names.values().flatten())
    }

    /// The ACLs of `resource_type` whose pattern covers `name`.
    pub fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.by_pattern.get(&(resource_type, PatternType::Literal));
        let exact = literal.and_then(|names| names.get(name));
        let wildcard = literal
            .filter(|_| name != super::WILDCARD_RESOURCE)
            .and_then(|names| names.get(super::WILDCARD_RESOURCE));
        let prefixed = self.by_pattern.get(&(resource_type, PatternType::Prefixed));
        let prefixes = prefixed.into_iter().flat_map(move |names| {
            name.char_indices()
                .map(|(at, c)| at + c.len_utf8())
                .filter_map(move |end| names.get(&name[..end]))
        });
        exact.into_iter().chain(wildcard).chain(prefixes).flatten()
    }

    /// Every ACL of `resource_type`, whatever its pattern.
    pub fn of_type(&self, resource_type: ResourceType) -> impl Iterator<Item = &AclBinding> {
        self.by_pattern
            .range((resource_type, PatternType::Any)..=(resource_type, PatternType::Prefixed))
            .flat_map(|(_, names)| names.values().flatten())
    }

    /// The file's bytes (docs/format.md, "ACLs").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.count * 64 + CRC_BYTES);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(self.count as u32).to_be_bytes());
        for acl in self.iter() {
            out.push(acl.resource_type.code() as u8);
            out.push(acl.pattern_type.code() as u8);
            // Field lengths are checked against ACL_FIELD_BYTES_MAX (below
            // u16::MAX) when an ACL is created and when it is read.
            for field in [&acl.resource_name, &acl.principal, &acl.host] {
                out.extend_from_slice(&(field.len() as u16).to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
            out.push(acl.operation.code() as u8);
            out.push(acl.permission.code() as u8);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads the file's bytes; every code, length and ACL is checked.
    pub fn decode(bytes: &[u8]) -> Result<AclStore, String> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err(format!("{} bytes is too short", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        let mut reader = Cursor { bytes: body };
        if reader.u32()? != MAGIC {
            return Err("wrong magic: not a Sluice ACL file".into());
        }
        let version = reader.u16()?;
        if version != VERSION {
            return Err(format!("unsupported version {version}"));
        }
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let count = reader.u32()? as usize;
        if count > ACLS_MAX {
            return Err(format!("{count} ACLs, more than {ACLS_MAX}"));
        }
        let mut store = AclStore::default();
        for _ in 0..count {
            let resource_type = code(&mut reader, ResourceType::of_code, "resource type")?;
            let pattern_type = code(&mut reader, PatternType::of_code, "pattern type")?;
            let resource_name = reader.string(ACL_FIELD_BYTES_MAX, "a resource name")?;
            let principal = reader.string(ACL_FIELD_BYTES_MAX, "a principal")?;
            let host = reader.string(ACL_FIELD_BYTES_MAX, "a host")?;
            let operation = code(&mut reader, Operation::of_code, "operation")?;
            let permission = code(&mut reader, Permission::of_code, "permission")?;
            let acl = AclBinding {
                resource_type,
                pattern_type,
                resource_name,
                principal,
                host,
                operation,
                permission,
            };
            acl.validate()
                .map_err(|reason| format!("{acl}: {reason}"))?;
            if !store.insert(acl) {
                return Err("an ACL is listed twice".into());
            }
        }
        if !reader.bytes.is_empty() {
            return Err(format!("{} bytes after the last entry", reader.bytes.len()));
        }
        Ok(store)
    }

    /// The ACLs in `data_dir`, or `None` when it has no ACL file. The error
    /// is one line naming the file.
    pub fn load(data_dir: &Path) -> Result<Option<AclStore>, String> {
        let path = data_dir.join(ACLS_FILE);
        let bytes = match read_bounded(&path, ACLS_FILE_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        };
        AclStore::decode(&bytes)
            .map(Some)
            .map_err(|reason| format!("{} is unusable: {reason}", path.display()))
    }

    pub fn save(&self, data_dir: &Path) -> Result<PathBuf, String> {
        let path = data_dir.join(ACLS_FILE);
        save_atomically(&path, &self.encode())?;
        Ok(path)
    }
}

fn code<T>(reader: &mut Cursor<'_>, of_code: fn(i8) -> Option<T>, what: &str) -> Result<T, String> {
    let raw = reader.u8()?;
    of_code(raw as i8).ok_or_else(|| format!("unknown {what} code {raw}"))
}

/// One new ACL's outcome: `None` when it was created (or existed).
pub type Created = Option<String>;

impl AclStore {
    /// The store of the ACLs a metadata image holds. A binding whose codes
    /// this broker does not know (a newer one wrote it) is left out and
    /// logged; it grants nothing here.
    pub fn from_stored(acls: &BTreeSet<StoredAcl>) -> AclStore {
        let mut store = AclStore::default();
        for stored in acls {
            match AclBinding::from_stored(stored) {
                Some(acl) => {
                    store.insert(acl);
                }
                None => tracing::warn!(?stored, "an ACL with codes unknown here is ignored"),
            }
        }
        store
    }

    /// The bindings as the metadata image keeps them.
    pub fn to_stored(&self) -> BTreeSet<StoredAcl> {
        self.iter().map(AclBinding::to_stored).collect()
    }

    /// Creates `acls`, each validated on its own (an invalid one gets its
    /// reason and the others still stand), as the controller does before
    /// it writes them to the metadata log.
    pub fn create(&mut self, acls: Vec<AclBinding>) -> Vec<Created> {
        let mut outcomes = Vec::with_capacity(acls.len());
        for acl in acls {
            let outcome = acl
                .validate()
                .and_then(|()| check_field_lengths(&acl))
                .and_then(|()| {
                    if self.len() >= ACLS_MAX {
                        Err(format!("the cluster keeps at most {ACLS_MAX} ACLs"))
                    } else {
                        Ok(())
                    }
                });
            match outcome {
                Ok(()) => {
                    self.insert(acl);
                    outcomes.push(None);
                }
                Err(reason) => outcomes.push(Some(reason)),
            }
        }
        outcomes
    }

    /// Deletes what each filter matches; per filter, the ACLs it removed
    /// (an ACL two filters match is reported under the first).
    pub fn delete(&mut self, filters: &[AclFilter]) -> Vec<Vec<AclBinding>> {
        filters
            .iter()
            .map(|filter| self.remove_matching(filter))
            .collect()
    }
}

/// The ACLs every shard of a broker reads. They live in the metadata log
/// (CreateAcls and DeleteAcls go to the controller); shard 0 replaces this
/// copy whenever an image it applies holds other ACLs, before the change
/// is answered.
#[derive(Debug, Default)]
pub struct SharedAcls {
    store: RwLock<AclStore>,
    /// The ACLs of a single-node data directory's ACL file, which predates
    /// ACLs in the metadata log, until they are written there at start.
    legacy: Mutex<Option<AclStore>>,
}

impl SharedAcls {
    /// Empty until the first image; `legacy` is an old ACL file's contents.
    pub fn new(legacy: Option<AclStore>) -> SharedAcls {
        SharedAcls {
            store: RwLock::default(),
            legacy: Mutex::new(legacy),
        }
    }

    /// The ACLs as they are now. Changes replace the store whole, so a
    /// lock poisoned by a panic elsewhere still guards a consistent store.
    pub fn read(&self) -> RwLockReadGuard<'_, AclStore> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shows `store` to every shard.
    pub fn replace(&self, store: AclStore) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = store;
    }

    /// The old ACL file's contents, once, to write to the metadata log.
    pub fn take_legacy(&self) -> Option<AclStore> {
        self.legacy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

fn check_field_lengths(acl: &AclBinding) -> Result<(), String> {
    for (what, field) in [
        ("resource name", &acl.resource_name),
        ("principal", &acl.principal),
        ("host", &acl.host),
    ] {
        if field.len() > ACL_FIELD_BYTES_MAX {
            return Err(format!(
                "a {what} of {} bytes is longer than the {ACL_FIELD_BYTES_MAX} the broker keeps",
                field.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{WILDCARD_HOST, WILDCARD_RESOURCE};

    fn acl(resource_type: ResourceType, pattern: PatternType, name: &str) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type: pattern,
            resource_name: name.into(),
            principal: "User:alice".into(),
            host: WILDCARD_HOST.into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    fn sample() -> AclStore {
        let mut store = AclStore::default();
        store.insert(acl(ResourceType::Topic, PatternType::Literal, "orders"));
        store.insert(acl(
            ResourceType::Topic,
            PatternType::Literal,
            WILDCARD_RESOURCE,
        ));
        store.insert(acl(ResourceType::Topic, PatternType::Prefixed, "ord"));
        store.insert(acl(ResourceType::Topic, PatternType::Prefixed, "x"));
        store.insert(acl(ResourceType::Group, PatternType::Literal, "orders"));
        store
    }

    #[test]
    fn covering_finds_the_literal_the_wildcard_and_each_prefix() {
        let store = sample();
        let names: Vec<_> = store
            .covering(ResourceType::Topic, "orders")
            .map(|acl| (acl.pattern_type, acl.resource_name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                (PatternType::Literal, "orders"),
                (PatternType::Literal, "*"),
                (PatternType::Prefixed, "ord"),
            ]
        );
        assert_eq!(store.covering(ResourceType::Topic, "é").count(), 1);
        assert_eq!(store.of_type(ResourceType::Topic).count(), 4);
        assert_eq!(store.of_type(ResourceType::Cluster).count(), 0);
    }

    #[test]
    fn inserting_twice_keeps_one_and_removal_counts() {
        let mut store = sample();
        assert!(!store.insert(acl(ResourceType::Topic, PatternType::Literal, "orders")));
        assert_eq!(store.len(), 5);
        let mut filter = AclFilter::any();
        filter.resource_type = ResourceType::Topic;
        assert_eq!(store.remove_matching(&filter).len(), 4);
        assert_eq!(store.len(), 1);
        assert_eq!(store.iter().count(), 1);
    }

    #[test]
    fn the_file_round_trips_and_every_damaged_file_is_refused() {
        let store = sample();
        let bytes = store.encode();
        let back = AclStore::decode(&bytes).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            store.iter().collect::<Vec<_>>()
        );
        for cut in 0..bytes.len() {
            assert!(AclStore::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(AclStore::decode(&damaged).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn creation_checks_each_acl_and_the_image_form_round_trips() {
        let mut store = sample();
        let outcomes = store.create(vec![
            acl(ResourceType::Topic, PatternType::Literal, "t"),
            acl(ResourceType::Any, PatternType::Literal, "t"),
            acl(ResourceType::Topic, PatternType::Literal, &"x".repeat(5000)),
        ]);
        assert_eq!(outcomes[0], None);
        assert!(outcomes[1].as_deref().unwrap().contains("ANY"));
        assert!(outcomes[2].as_deref().unwrap().contains("longer"));
        assert_eq!(store.len(), 6);
        let back = AclStore::from_stored(&store.to_stored());
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            store.iter().collect::<Vec<_>>()
        );
        // A code this broker does not know grants nothing and is skipped.
        let mut stored = store.to_stored();
        let mut unknown = stored.iter().next().unwrap().clone();
        unknown.operation = 99;
        stored.insert(unknown);
        assert_eq!(AclStore::from_stored(&stored).len(), 6);
        let mut filter = AclFilter::any();
        filter.resource_name = Some("t".into());
        let removed = store.delete(&[filter, AclFilter::any()]);
        assert_eq!((removed[0].len(), removed[1].len()), (1, 5));
        assert!(store.is_empty());
    }
}
