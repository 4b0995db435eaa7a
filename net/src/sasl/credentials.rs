//! The SCRAM credentials of the cluster's users. They live in the metadata
//! log (`MetadataRecord::ScramCredential`); the file
//! `<first data dir>/meta/scram-credentials` (format in docs/format.md)
//! holds credentials staged by `sluice user create --data-dir` while the
//! broker is stopped (as Kafka's `kafka-storage format --add-scram`), which
//! the broker writes to the log at its next start and then renames.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sluice_engine::{ScramCredentials, StoredScram};

use super::{scram, Mechanism};
use crate::constants::{
    CREDENTIALS_FILE_BYTES_MAX, SASL_USER_BYTES_MAX, SCRAM_ITERATIONS_DEFAULT,
    SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, SCRAM_SALT_BYTES, SCRAM_SALT_BYTES_MAX,
    SCRAM_SALT_BYTES_MIN,
};
use crate::meta_file::{read_bounded, save_atomically, Cursor};

/// Where the credentials live, under the first data directory.
pub const CREDENTIALS_FILE: &str = "meta/scram-credentials";
/// What that file is renamed to once its credentials are in the metadata
/// log (the next `sluice user create --data-dir` starts a new one).
pub const CREDENTIALS_FILE_IMPORTED: &str = "meta/scram-credentials.imported";
/// "SLUS": Sluice users.
const MAGIC: u32 = 0x534c_5553;
const VERSION: u16 = 1;
/// magic u32 + version u16 + entry count u32.
const HEADER_BYTES: usize = 10;
const CRC_BYTES: usize = 4;
/// Mechanism codes on disk.
const MECHANISM_SCRAM_SHA_256: u8 = 1;
const MECHANISM_SCRAM_SHA_512: u8 = 2;
/// Bytes of the per-process secret unknown users' dummy credentials are
/// derived from.
const DUMMY_SECRET_BYTES: usize = 32;

/// One user's credential for one SCRAM mechanism (RFC 5802): enough to
/// check a proof or a password, not enough to recover the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential of `password` with this salt and iteration count.
    pub fn from_password(
        mechanism: Mechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let salted = scram::salted_password(mechanism, password, &salt, iterations);
        let (stored_key, server_key) = scram::keys(mechanism, &salted);
        ScramCredential {
            salt,
            iterations,
            stored_key,
            server_key,
        }
    }

    /// A new credential for `password` with a random salt.
    pub fn generate(
        mechanism: Mechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, String> {
        let salt = super::random_bytes::<SCRAM_SALT_BYTES>()?.to_vec();
        Ok(ScramCredential::from_password(
            mechanism, password, salt, iterations,
        ))
    }
}

/// Keys stay out of logs and panic messages.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a user name is refused.
pub fn check_user_name(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > SASL_USER_BYTES_MAX {
        return Err(format!(
            "a user name takes 1 to {SASL_USER_BYTES_MAX} bytes"
        ));
    }
    if user.chars().any(char::is_control) {
        return Err("a user name has no control characters".into());
    }
    Ok(())
}

/// Every user's credentials, by user and mechanism.
#[derive(Clone)]
pub struct CredentialStore {
    credentials: BTreeMap<(String, Mechanism), ScramCredential>,
    /// Unknown users' dummy credentials are derived from it, so that they
    /// stay the same for one name while the broker runs (a salt that
    /// changed from one attempt to the next would give the user away) and
    /// cannot be predicted.
    dummy_secret: [u8; DUMMY_SECRET_BYTES],
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    /// A store without users.
    pub fn empty() -> Result<CredentialStore, String> {
        Ok(CredentialStore {
            credentials: BTreeMap::new(),
            dummy_secret: super::random_bytes::<DUMMY_SECRET_BYTES>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        // The key is owned; the map is small and looked up once per login.
        self.credentials.get(&(user.to_string(), mechanism))
    }

    /// A credential of the user for PLAIN to check a password against:
    /// SCRAM-SHA-256's if there is one (the cheaper hash), else SCRAM-SHA-512's.
    pub fn any_of(&self, user: &str) -> Option<(Mechanism, &ScramCredential)> {
        Mechanism::SCRAM
            .into_iter()
            .find_map(|mechanism| self.get(user, mechanism).map(|found| (mechanism, found)))
    }

    pub fn insert(&mut self, user: &str, mechanism: Mechanism, credential: ScramCredential) {
        assert!(
            mechanism.is_scram(),
            "credentials are stored per SCRAM mechanism"
        );
        // What `encode` writes in one- and two-byte length fields; callers
        // check names and salts before they get here.
        assert!(
            user.len() <= SASL_USER_BYTES_MAX,
            "a user name of {} bytes",
            user.len()
        );
        assert!(
            credential.salt.len() <= SCRAM_SALT_BYTES_MAX,
            "a salt of {} bytes",
            credential.salt.len()
        );
        assert_eq!(credential.stored_key.len(), scram::output_bytes(mechanism));
        assert_eq!(credential.server_key.len(), scram::output_bytes(mechanism));
        self.credentials
            .insert((user.to_string(), mechanism), credential);
    }

    /// Removes the user's credential for `mechanism`, or for every
    /// mechanism; whether there was one.
    pub fn remove(&mut self, user: &str, mechanism: Option<Mechanism>) -> bool {
        let before = self.credentials.len();
        self.credentials
            .retain(|(name, stored), _| !(name == user && mechanism.is_none_or(|m| m == *stored)));
        self.credentials.len() != before
    }

    /// A store of the credentials a metadata image holds, with this
    /// store's secret for unknown users (so their dummy salts do not change
    /// while the broker runs). A credential this broker cannot use (an
    /// unknown mechanism code, a length outside the bounds) is left out and
    /// logged.
    pub fn with_credentials(&self, stored: &ScramCredentials) -> CredentialStore {
        let mut store = CredentialStore {
            credentials: BTreeMap::new(),
            dummy_secret: self.dummy_secret,
        };
        for ((user, code), credential) in stored {
            let usable = super::alter::mechanism_of_code(*code).filter(|mechanism| {
                check_user_name(user).is_ok()
                    && (SCRAM_SALT_BYTES_MIN..=SCRAM_SALT_BYTES_MAX)
                        .contains(&credential.salt.len())
                    && credential.stored_key.len() == scram::output_bytes(*mechanism)
                    && credential.server_key.len() == scram::output_bytes(*mechanism)
            });
            match usable {
                Some(mechanism) => store.insert(
                    user,
                    mechanism,
                    ScramCredential {
                        salt: credential.salt.clone(),
                        iterations: credential.iterations,
                        stored_key: credential.stored_key.clone(),
                        server_key: credential.server_key.clone(),
                    },
                ),
                None => {
                    tracing::warn!(%user, code, "a SCRAM credential this broker cannot use is ignored")
                }
            }
        }
        store
    }

    /// The credentials as the metadata image keeps them.
    pub fn to_stored(&self) -> ScramCredentials {
        self.iter()
            .map(|(user, mechanism, credential)| {
                (
                    (user.to_string(), super::alter::mechanism_code(mechanism)),
                    StoredScram {
                        salt: credential.salt.clone(),
                        iterations: credential.iterations,
                        stored_key: credential.stored_key.clone(),
                        server_key: credential.server_key.clone(),
                    },
                )
            })
            .collect()
    }

    /// Every credential, by user then mechanism.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Mechanism, &ScramCredential)> {
        self.credentials
            .iter()
            .map(|((user, mechanism), credential)| (user.as_str(), *mechanism, credential))
    }

    /// The credential an unknown user is checked against: the default
    /// iteration count, a salt and keys derived from the secret and the
    /// name. No password has these keys (finding one means inverting the
    /// hash), and the exchange fails on `known` anyway.
    pub fn dummy(&self, user: &str, mechanism: Mechanism) -> ScramCredential {
        let derive = |label: &[u8], length: usize| {
            let mut input = Vec::with_capacity(label.len() + user.len() + 16);
            input.extend_from_slice(label);
            input.extend_from_slice(mechanism.name().as_bytes());
            input.push(0);
            input.extend_from_slice(user.as_bytes());
            let mut out = scram::hmac(mechanism, &self.dummy_secret, &input);
            out.truncate(length);
            out
        };
        let key_bytes = scram::output_bytes(mechanism);
        ScramCredential {
            salt: derive(b"salt", SCRAM_SALT_BYTES),
            iterations: SCRAM_ITERATIONS_DEFAULT,
            stored_key: derive(b"stored", key_bytes),
            server_key: derive(b"server", key_bytes),
        }
    }

    /// The file's bytes (docs/format.md, "SCRAM credentials").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.credentials.len() * 200);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(self.credentials.len() as u32).to_be_bytes());
        for ((user, mechanism), credential) in &self.credentials {
            // Lengths fit their fields: names, salts and keys are checked
            // when they are made and when they are read.
            out.extend_from_slice(&(user.len() as u16).to_be_bytes());
            out.extend_from_slice(user.as_bytes());
            out.push(match mechanism {
                Mechanism::ScramSha512 => MECHANISM_SCRAM_SHA_512,
                // Only SCRAM credentials are stored (checked when made).
                Mechanism::ScramSha256 | Mechanism::Plain | Mechanism::OAuthBearer => {
                    MECHANISM_SCRAM_SHA_256
                }
            });
            out.extend_from_slice(&credential.iterations.to_be_bytes());
            for field in [
                &credential.salt,
                &credential.stored_key,
                &credential.server_key,
            ] {
                out.push(field.len() as u8);
                out.extend_from_slice(field);
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads the file's bytes; every length and value is checked.
    pub fn decode(bytes: &[u8]) -> Result<CredentialStore, String> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err(format!("{} bytes is too short", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        let mut reader = Cursor { bytes: body };
        if reader.u32()? != MAGIC {
            return Err("wrong magic: not a Sluice credential file".into());
        }
        let version = reader.u16()?;
        if version != VERSION {
            return Err(format!("unsupported version {version}"));
        }
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let count = reader.u32()?;
        let mut store = CredentialStore::empty()?;
        for _ in 0..count {
            let user_len = reader.u16()? as usize;
            let user = std::str::from_utf8(reader.take(user_len)?)
                .map_err(|_| "a user name is not UTF-8".to_string())?
                .to_string();
            check_user_name(&user)?;
            let mechanism = match reader.u8()? {
                MECHANISM_SCRAM_SHA_256 => Mechanism::ScramSha256,
                MECHANISM_SCRAM_SHA_512 => Mechanism::ScramSha512,
                other => return Err(format!("unknown mechanism code {other}")),
            };
            let iterations = reader.u32()?;
            if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
                return Err(format!(
                    "{user}: {iterations} iterations outside [{SCRAM_ITERATIONS_MIN}, {SCRAM_ITERATIONS_MAX}]"
                ));
            }
            let salt_len = reader.u8()? as usize;
            if !(SCRAM_SALT_BYTES_MIN..=SCRAM_SALT_BYTES_MAX).contains(&salt_len) {
                return Err(format!("{user}: a salt of {salt_len} bytes"));
            }
            let salt = reader.take(salt_len)?.to_vec();
            let key_bytes = scram::output_bytes(mechanism);
            let mut key = || -> Result<Vec<u8>, String> {
                let len = reader.u8()? as usize;
                if len != key_bytes {
                    return Err(format!("{user}: a {mechanism} key of {len} bytes"));
                }
                Ok(reader.take(len)?.to_vec())
            };
            let stored_key = key()?;
            let server_key = key()?;
            if store.get(&user, mechanism).is_some() {
                return Err(format!("{user}: {mechanism} listed twice"));
            }
            store.insert(
                &user,
                mechanism,
                ScramCredential {
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                },
            );
        }
        if !reader.bytes.is_empty() {
            return Err(format!("{} bytes after the last entry", reader.bytes.len()));
        }
        Ok(store)
    }

    /// The store in `data_dir`, or `None` when it has no credential file.
    /// The error is one line naming the file.
    pub fn load(data_dir: &Path) -> Result<Option<CredentialStore>, String> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let bytes = match read_bounded(&path, CREDENTIALS_FILE_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        };
        CredentialStore::decode(&bytes)
            .map(Some)
            .map_err(|reason| format!("{} is unusable: {reason}", path.display()))
    }

    /// Replaces the file in `data_dir` atomically: the new bytes go to a
    /// temporary file that is synced and renamed over the old one, and the
    /// directory is synced, so a crash leaves the old file or the new one.
    pub fn save(&self, data_dir: &Path) -> Result<PathBuf, String> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let bytes = self.encode();
        if bytes.len() > CREDENTIALS_FILE_BYTES_MAX {
            return Err(format!(
                "{} credentials take {} bytes, more than the {CREDENTIALS_FILE_BYTES_MAX} a broker reads",
                self.credentials.len(),
                bytes.len()
            ));
        }
        // The keys are not the password, but they let anyone who has them
        // try passwords offline: the file is the broker user's alone.
        save_atomically(&path, &bytes)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CredentialStore {
        let mut store = CredentialStore::empty().unwrap();
        for (user, mechanism) in [
            ("alice", Mechanism::ScramSha256),
            ("alice", Mechanism::ScramSha512),
            ("bob,=", Mechanism::ScramSha512),
        ] {
            store.insert(
                user,
                mechanism,
                ScramCredential::from_password(mechanism, b"pw", vec![1; 16], 4096),
            );
        }
        store
    }

    #[test]
    fn the_file_round_trips() {
        let store = sample();
        let bytes = store.encode();
        let read = CredentialStore::decode(&bytes).unwrap();
        let listed: Vec<_> = read
            .iter()
            .map(|(u, m, c)| (u.to_string(), m, c.clone()))
            .collect();
        let written: Vec<_> = store
            .iter()
            .map(|(u, m, c)| (u.to_string(), m, c.clone()))
            .collect();
        assert_eq!(listed, written);
        assert_eq!(listed.len(), 3);
    }

    #[test]
    fn every_damaged_file_is_refused_without_panicking() {
        let bytes = sample().encode();
        // Every truncation and every single-byte change.
        for len in 0..bytes.len() {
            assert!(
                CredentialStore::decode(&bytes[..len]).is_err(),
                "cut at {len}"
            );
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(CredentialStore::decode(&damaged).is_err(), "byte {at}");
        }
    }

    #[test]
    fn values_out_of_bounds_are_refused_even_with_a_good_checksum() {
        let reframe = |body: &[u8]| {
            let mut out = body.to_vec();
            out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
            out
        };
        let mut one = CredentialStore::empty().unwrap();
        one.insert(
            "u",
            Mechanism::ScramSha256,
            ScramCredential::from_password(Mechanism::ScramSha256, b"pw", vec![1; 16], 4096),
        );
        let good = one.encode();
        let body = &good[..good.len() - CRC_BYTES];
        // Header 10, name length 2 + "u" 1, mechanism 1, iterations 4.
        let iterations_at = HEADER_BYTES + 3 + 1;
        let mut low = body.to_vec();
        low[iterations_at..iterations_at + 4].copy_from_slice(&100u32.to_be_bytes());
        assert!(CredentialStore::decode(&reframe(&low))
            .unwrap_err()
            .contains("iterations"));
        let mut mechanism = body.to_vec();
        mechanism[iterations_at - 1] = 9;
        assert!(CredentialStore::decode(&reframe(&mechanism))
            .unwrap_err()
            .contains("mechanism"));
        let mut count = body.to_vec();
        count[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(CredentialStore::decode(&reframe(&count)).is_err());
    }

    #[test]
    fn save_and_load_replace_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-credentials-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        assert!(CredentialStore::load(&dir).unwrap().is_none());
        let store = sample();
        let path = store.save(&dir).unwrap();
        assert_eq!(path, dir.join(CREDENTIALS_FILE));
        let loaded = CredentialStore::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.encode(), store.encode());
        let mut smaller = loaded;
        assert!(smaller.remove("alice", None));
        assert!(!smaller.remove("alice", None));
        smaller.save(&dir).unwrap();
        assert_eq!(
            CredentialStore::load(&dir).unwrap().unwrap().iter().count(),
            1
        );
        assert!(!dir.join("meta/scram-credentials.tmp").exists());
        std::fs::write(dir.join(CREDENTIALS_FILE), b"garbage").unwrap();
        let error = CredentialStore::load(&dir).unwrap_err();
        assert!(error.contains("scram-credentials"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dummy_credentials_are_steady_per_name_and_look_real() {
        let store = sample();
        let a = store.dummy("nobody", Mechanism::ScramSha512);
        assert_eq!(a, store.dummy("nobody", Mechanism::ScramSha512));
        assert_ne!(a.salt, store.dummy("nobody2", Mechanism::ScramSha512).salt);
        assert_eq!(a.salt.len(), SCRAM_SALT_BYTES);
        assert_eq!(a.stored_key.len(), 64);
        assert_eq!(a.iterations, SCRAM_ITERATIONS_DEFAULT);
        // Another process, another secret.
        assert_ne!(
            a.salt,
            sample().dummy("nobody", Mechanism::ScramSha512).salt
        );
    }
}
