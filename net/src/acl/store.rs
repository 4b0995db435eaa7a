//! The broker's ACLs, indexed for the authorizer, and the file that holds
//! them: `<first data dir>/meta/acls` (format in docs/format.md). CreateAcls
//! and DeleteAcls change a copy, save it, and only then show it to the
//! shards, so an answer of success means the change survives a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use super::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::constants::{ACLS_FILE_BYTES_MAX, ACLS_MAX, ACL_FIELD_BYTES_MAX};
use crate::meta_file::{read_bounded, save_atomically, Cursor};

/// Where the ACLs live, under the first data directory.
pub const ACLS_FILE: &str = "meta/acls";
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

/// The ACLs every shard of a broker reads, and the one writer that changes
/// them: a change is saved to the file first and shown after.
#[derive(Debug)]
pub struct SharedAcls {
    store: RwLock<AclStore>,
    /// The first data directory, which holds the file.
    data_dir: PathBuf,
    /// One change at a time: each writes the whole file.
    changing: Mutex<()>,
}

/// Why a change was not made.
#[derive(Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// The file could not be written: nothing changed.
    NotSaved(String),
}

impl SharedAcls {
    pub fn new(store: AclStore, data_dir: PathBuf) -> SharedAcls {
        SharedAcls {
            store: RwLock::new(store),
            data_dir,
            changing: Mutex::new(()),
        }
    }

    /// The ACLs as they are now. Changes replace the store whole, so a
    /// lock poisoned by a panic elsewhere still guards a consistent store.
    pub fn read(&self) -> RwLockReadGuard<'_, AclStore> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates `acls`, each validated on its own (an invalid one gets its
    /// reason and the others still stand). Blocks on the file's write and
    /// sync: call it off the shards' executors.
    pub fn create(&self, acls: Vec<AclBinding>) -> Result<Vec<Created>, ChangeError> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut copy = self.read().clone();
        let mut outcomes = Vec::with_capacity(acls.len());
        let mut changed = false;
        for acl in acls {
            let outcome = acl
                .validate()
                .and_then(|()| check_field_lengths(&acl))
                .and_then(|()| {
                    if copy.len() >= ACLS_MAX {
                        Err(format!("the broker keeps at most {ACLS_MAX} ACLs"))
                    } else {
                        Ok(())
                    }
                });
            match outcome {
                Ok(()) => {
                    changed |= copy.insert(acl);
                    outcomes.push(None);
                }
                Err(reason) => outcomes.push(Some(reason)),
            }
        }
        if changed {
            self.replace(copy)?;
        }
        Ok(outcomes)
    }

    /// Deletes what each filter matches; per filter, the ACLs it removed
    /// (an ACL two filters match is reported under the first).
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, ChangeError> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut copy = self.read().clone();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|filter| copy.remove_matching(filter))
            .collect();
        if removed.iter().any(|acls| !acls.is_empty()) {
            self.replace(copy)?;
        }
        Ok(removed)
    }

    fn replace(&self, copy: AclStore) -> Result<(), ChangeError> {
        if let Err(reason) = copy.save(&self.data_dir) {
            tracing::error!(%reason, "saving the ACLs failed; the change is not made");
            return Err(ChangeError::NotSaved(reason));
        }
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = copy;
        Ok(())
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
    fn a_change_is_saved_before_it_is_shown() {
        let dir = std::env::temp_dir().join(format!("sluice-acls-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        let shared = SharedAcls::new(AclStore::default(), dir.clone());
        let outcomes = shared
            .create(vec![
                acl(ResourceType::Topic, PatternType::Literal, "t"),
                acl(ResourceType::Any, PatternType::Literal, "t"),
            ])
            .unwrap();
        assert_eq!(outcomes[0], None);
        assert!(outcomes[1].is_some());
        assert_eq!(AclStore::load(&dir).unwrap().unwrap().len(), 1);
        let removed = shared.delete(&[AclFilter::any()]).unwrap();
        assert_eq!(removed[0].len(), 1);
        assert!(AclStore::load(&dir).unwrap().unwrap().is_empty());
        // A directory that cannot hold the file: nothing changes.
        let gone = SharedAcls::new(AclStore::default(), dir.join("missing"));
        let refused = gone.create(vec![acl(ResourceType::Topic, PatternType::Literal, "t")]);
        assert!(matches!(refused, Err(ChangeError::NotSaved(_))));
        assert!(gone.read().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
