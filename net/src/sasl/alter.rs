//! The credential APIs' side of the store (KIP-554): the store every shard
//! authenticates against, and the changes AlterUserScramCredentials makes
//! to it, checked as Kafka's controller checks them, on the controller,
//! and written to the metadata log before any connection sees them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use sluice_engine::ScramCredentials;

use super::credentials::{check_user_name, CredentialStore, ScramCredential};
use super::{scram, Mechanism};
use crate::constants::{
    SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, SCRAM_SALT_BYTES_MAX, SCRAM_SALT_BYTES_MIN,
};
use crate::errors::code;

/// Kafka's code for a SCRAM mechanism in the credential APIs
/// (`ScramMechanism.type()`): 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
pub fn mechanism_code(mechanism: Mechanism) -> i8 {
    match mechanism {
        Mechanism::ScramSha256 => 1,
        Mechanism::ScramSha512 => 2,
        // PLAIN has no credential of its own (it checks a SCRAM one), and
        // OAUTHBEARER none at all.
        Mechanism::Plain | Mechanism::OAuthBearer => 0,
    }
}

/// The SCRAM mechanism a credential API code names, if any (0 is Kafka's
/// UNKNOWN).
pub fn mechanism_of_code(code: i8) -> Option<Mechanism> {
    Mechanism::SCRAM
        .into_iter()
        .find(|mechanism| mechanism_code(*mechanism) == code)
}

/// One credential to remove.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub user: String,
    pub mechanism: i8,
}

/// One credential to create or replace. A client sends the salted
/// password (PBKDF2 of the password), never the password itself; the
/// broker that receives it derives the two keys at once, so only what the
/// metadata log stores travels to the controller.
#[derive(Clone)]
pub struct Upsertion {
    pub user: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    /// Empty when the mechanism is unknown or the salted password empty
    /// (the change is refused for that).
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Upsertion {
    /// The change a client's upsertion asks for, its keys derived.
    pub fn from_salted_password(
        user: String,
        mechanism: i8,
        iterations: i32,
        salt: Vec<u8>,
        salted_password: &[u8],
    ) -> Upsertion {
        let (stored_key, server_key) = match mechanism_of_code(mechanism) {
            Some(known) if !salted_password.is_empty() => scram::keys(known, salted_password),
            _ => (Vec::new(), Vec::new()),
        };
        Upsertion {
            user,
            mechanism,
            iterations,
            salt,
            stored_key,
            server_key,
        }
    }
}

/// The keys stay out of logs.
impl std::fmt::Debug for Upsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upsertion")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The answer for one user of an AlterUserScramCredentials request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserOutcome {
    pub user: String,
    pub error_code: i16,
    pub message: Option<String>,
}

/// Kafka's message for a user named by two changes of one request.
const ALTERED_TWICE: &str = "A user credential cannot be altered twice in the same request";

/// Checks a request's changes against `store` and applies the valid ones,
/// as Kafka's controller does: a user named more than once (by deletions,
/// upsertions or both, whatever the mechanisms) gets DUPLICATE_RESOURCE and
/// none of its changes; every other user's change stands or fails alone.
/// Returns one outcome per user: the applied ones first, then the refused.
pub fn apply(
    store: &mut CredentialStore,
    deletions: &[Deletion],
    upsertions: &[Upsertion],
) -> Vec<UserOutcome> {
    let mut refused: BTreeMap<String, (i16, String)> = BTreeMap::new();
    let mut deleting: HashMap<&str, (&Deletion, Mechanism)> = HashMap::new();
    let mut upserting: HashMap<&str, (&Upsertion, Mechanism)> = HashMap::new();
    // Users in the order their first accepted change came, so that the
    // answer lists them as the request did.
    let mut order: Vec<&str> = Vec::new();
    for deletion in deletions {
        let user = deletion.user.as_str();
        if refused.contains_key(user) {
            continue;
        }
        if deleting.remove(user).is_some() {
            refused.insert(
                user.to_string(),
                (code::DUPLICATE_RESOURCE, ALTERED_TWICE.into()),
            );
            continue;
        }
        let checked = check_user_and_mechanism(user, deletion.mechanism).and_then(|mechanism| {
            match store.get(user, mechanism) {
                Some(_) => Ok(mechanism),
                None => Err((
                    code::RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist".to_string(),
                )),
            }
        });
        match checked {
            Ok(mechanism) => {
                deleting.insert(user, (deletion, mechanism));
                order.push(user);
            }
            Err(error) => {
                refused.insert(user.to_string(), error);
            }
        }
    }
    for upsertion in upsertions {
        let user = upsertion.user.as_str();
        if refused.contains_key(user) {
            continue;
        }
        if deleting.remove(user).is_some() || upserting.remove(user).is_some() {
            refused.insert(
                user.to_string(),
                (code::DUPLICATE_RESOURCE, ALTERED_TWICE.into()),
            );
            continue;
        }
        match check_upsertion(upsertion) {
            Ok(mechanism) => {
                upserting.insert(user, (upsertion, mechanism));
                order.push(user);
            }
            Err(error) => {
                refused.insert(user.to_string(), error);
            }
        }
    }
    let mut outcomes = Vec::with_capacity(order.len() + refused.len());
    for user in order {
        if let Some((deletion, mechanism)) = deleting.remove(user) {
            store.remove(&deletion.user, Some(mechanism));
        } else if let Some((upsertion, mechanism)) = upserting.remove(user) {
            let credential = ScramCredential {
                salt: upsertion.salt.clone(),
                // Checked within SCRAM_ITERATIONS_MIN..=MAX, so positive.
                iterations: upsertion.iterations.unsigned_abs(),
                stored_key: upsertion.stored_key.clone(),
                server_key: upsertion.server_key.clone(),
            };
            store.insert(&upsertion.user, mechanism, credential);
        } else {
            // A later change of the same user refused both.
            continue;
        }
        outcomes.push(UserOutcome {
            user: user.to_string(),
            error_code: code::NONE,
            message: None,
        });
    }
    outcomes.extend(
        refused
            .into_iter()
            .map(|(user, (error_code, message))| UserOutcome {
                user,
                error_code,
                message: Some(message),
            }),
    );
    outcomes
}

fn check_user_and_mechanism(user: &str, mechanism: i8) -> Result<Mechanism, (i16, String)> {
    if user.is_empty() {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            "Username must not be empty".into(),
        ));
    }
    let Some(mechanism) = mechanism_of_code(mechanism) else {
        return Err((
            code::UNSUPPORTED_SASL_MECHANISM,
            "Unknown SCRAM mechanism".into(),
        ));
    };
    // Bounds of the credentials file (a name Kafka would take but the
    // file cannot hold is refused here, not lost at the next start).
    check_user_name(user).map_err(|reason| (code::UNACCEPTABLE_CREDENTIAL, reason))?;
    Ok(mechanism)
}

fn check_upsertion(upsertion: &Upsertion) -> Result<Mechanism, (i16, String)> {
    let mechanism = check_user_and_mechanism(&upsertion.user, upsertion.mechanism)?;
    let iterations = i64::from(upsertion.iterations);
    if iterations < i64::from(SCRAM_ITERATIONS_MIN) {
        return Err((code::UNACCEPTABLE_CREDENTIAL, "Too few iterations".into()));
    }
    if iterations > i64::from(SCRAM_ITERATIONS_MAX) {
        return Err((code::UNACCEPTABLE_CREDENTIAL, "Too many iterations".into()));
    }
    // Kafka's clients send a 64-byte random salt; the file keeps 8 to 64.
    if !(SCRAM_SALT_BYTES_MIN..=SCRAM_SALT_BYTES_MAX).contains(&upsertion.salt.len()) {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            format!(
                "a salt takes {SCRAM_SALT_BYTES_MIN} to {SCRAM_SALT_BYTES_MAX} bytes, not {}",
                upsertion.salt.len()
            ),
        ));
    }
    let key_bytes = scram::output_bytes(mechanism);
    if upsertion.stored_key.is_empty() {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            "the salted password is empty".into(),
        ));
    }
    if upsertion.stored_key.len() != key_bytes || upsertion.server_key.len() != key_bytes {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            format!("a {mechanism} key takes {key_bytes} bytes"),
        ));
    }
    Ok(mechanism)
}

/// The store the shards of a broker share: every authentication reads it.
/// The credentials live in the metadata log (AlterUserScramCredentials goes
/// to the controller); shard 0 replaces this copy whenever an image it
/// applies holds other credentials, before the change is answered.
#[derive(Debug)]
pub struct SharedCredentials {
    store: RwLock<CredentialStore>,
    /// The credentials `sluice user create --data-dir` left in the data
    /// directory's credential file, until they are written to the log.
    staged: Mutex<Option<CredentialStore>>,
}

impl SharedCredentials {
    /// No credentials until the first image; `staged` is the credential
    /// file's contents.
    pub fn new(staged: Option<CredentialStore>) -> Result<SharedCredentials, String> {
        Ok(SharedCredentials {
            store: RwLock::new(CredentialStore::empty()?),
            staged: Mutex::new(staged),
        })
    }

    /// The store as it is now. A panic elsewhere while holding the lock
    /// cannot leave it half changed (changes replace it whole), so a
    /// poisoned lock is still read.
    pub fn read(&self) -> RwLockReadGuard<'_, CredentialStore> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shows the credentials of a metadata image to every shard.
    pub fn replace(&self, stored: &ScramCredentials) {
        let store = self.read().with_credentials(stored);
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = store;
    }

    /// The credential file's contents, once, to write to the metadata log.
    pub fn take_staged(&self) -> Option<CredentialStore> {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The credential file's contents as upsertions, in groups that each name
/// a user once (one group per mechanism), since one AlterUserScramCredentials
/// change may not name a user twice.
pub fn staged_upsertions(staged: &CredentialStore) -> Vec<Vec<Upsertion>> {
    Mechanism::SCRAM
        .into_iter()
        .map(|mechanism| {
            staged
                .iter()
                .filter(|(_, stored, _)| *stored == mechanism)
                .map(|(user, _, credential)| Upsertion {
                    user: user.to_string(),
                    mechanism: mechanism_code(mechanism),
                    iterations: i32::try_from(credential.iterations).unwrap_or(i32::MAX),
                    salt: credential.salt.clone(),
                    stored_key: credential.stored_key.clone(),
                    server_key: credential.server_key.clone(),
                })
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsertion(user: &str, mechanism: i8, iterations: i32) -> Upsertion {
        Upsertion::from_salted_password(user.into(), mechanism, iterations, vec![7; 16], &[9; 32])
    }

    fn deletion(user: &str, mechanism: i8) -> Deletion {
        Deletion {
            user: user.into(),
            mechanism,
        }
    }

    fn codes(outcomes: &[UserOutcome]) -> BTreeMap<String, i16> {
        outcomes
            .iter()
            .map(|outcome| (outcome.user.clone(), outcome.error_code))
            .collect()
    }

    #[test]
    fn an_upsertion_stores_the_keys_the_salted_password_gives() {
        let mut store = CredentialStore::empty().unwrap();
        let outcomes = apply(&mut store, &[], &[upsertion("alice", 1, 4096)]);
        assert_eq!(codes(&outcomes), BTreeMap::from([("alice".into(), 0)]));
        let stored = store.get("alice", Mechanism::ScramSha256).unwrap();
        let (stored_key, server_key) = scram::keys(Mechanism::ScramSha256, &[9; 32]);
        assert_eq!(stored.stored_key, stored_key);
        assert_eq!(stored.server_key, server_key);
        assert_eq!(stored.iterations, 4096);
        assert!(store.get("alice", Mechanism::ScramSha512).is_none());
    }

    #[test]
    fn a_user_changed_twice_gets_duplicate_resource_and_no_change() {
        let mut store = CredentialStore::empty().unwrap();
        let outcomes = apply(
            &mut store,
            &[],
            &[
                upsertion("alice", 1, 4096),
                upsertion("alice", 2, 4096),
                upsertion("bob", 2, 8192),
            ],
        );
        assert_eq!(
            codes(&outcomes),
            BTreeMap::from([
                ("alice".into(), code::DUPLICATE_RESOURCE),
                ("bob".into(), 0)
            ])
        );
        assert!(store.get("alice", Mechanism::ScramSha256).is_none());
        assert!(store.get("bob", Mechanism::ScramSha512).is_some());
        // A deletion and an upsertion of one user are a duplicate too.
        let outcomes = apply(
            &mut store,
            &[deletion("bob", 2)],
            &[upsertion("bob", 1, 4096)],
        );
        assert_eq!(
            codes(&outcomes),
            BTreeMap::from([("bob".into(), code::DUPLICATE_RESOURCE)])
        );
        assert!(store.get("bob", Mechanism::ScramSha512).is_some());
    }

    #[test]
    fn bad_changes_get_kafkas_errors() {
        let mut store = CredentialStore::empty().unwrap();
        let mut short_salt = upsertion("salty", 1, 4096);
        short_salt.salt = vec![1; 2];
        let outcomes = apply(
            &mut store,
            &[deletion("ghost", 1), deletion("weird", 0)],
            &[
                upsertion("few", 1, 4095),
                upsertion("many", 2, 16385),
                upsertion("", 1, 4096),
                upsertion("unknown", 3, 4096),
                short_salt,
            ],
        );
        assert_eq!(
            codes(&outcomes),
            BTreeMap::from([
                ("ghost".into(), code::RESOURCE_NOT_FOUND),
                ("weird".into(), code::UNSUPPORTED_SASL_MECHANISM),
                ("few".into(), code::UNACCEPTABLE_CREDENTIAL),
                ("many".into(), code::UNACCEPTABLE_CREDENTIAL),
                ("".into(), code::UNACCEPTABLE_CREDENTIAL),
                ("unknown".into(), code::UNSUPPORTED_SASL_MECHANISM),
                ("salty".into(), code::UNACCEPTABLE_CREDENTIAL),
            ])
        );
        assert!(store.is_empty());
    }

    #[test]
    fn a_deletion_removes_one_mechanism_only() {
        let mut store = CredentialStore::empty().unwrap();
        apply(&mut store, &[], &[upsertion("alice", 1, 4096)]);
        apply(&mut store, &[], &[upsertion("alice", 2, 4096)]);
        let outcomes = apply(&mut store, &[deletion("alice", 1)], &[]);
        assert_eq!(codes(&outcomes), BTreeMap::from([("alice".into(), 0)]));
        assert!(store.get("alice", Mechanism::ScramSha256).is_none());
        assert!(store.get("alice", Mechanism::ScramSha512).is_some());
    }

    #[test]
    fn the_image_form_round_trips_and_staged_users_come_in_groups_of_one_each() {
        let mut store = CredentialStore::empty().unwrap();
        apply(
            &mut store,
            &[],
            &[upsertion("alice", 1, 4096), upsertion("bob", 2, 8192)],
        );
        apply(&mut store, &[], &[upsertion("alice", 2, 4096)]);
        let shared = SharedCredentials::new(Some(store.clone())).unwrap();
        assert!(shared.read().is_empty());
        shared.replace(&store.to_stored());
        let alice = shared.read().get("alice", Mechanism::ScramSha512).cloned();
        assert_eq!(alice, store.get("alice", Mechanism::ScramSha512).cloned());
        assert_eq!(shared.read().iter().count(), 3);
        // A credential with a mechanism code this broker does not know is
        // left out, not guessed at.
        let mut stored = store.to_stored();
        let odd = stored[&("bob".to_string(), 2)].clone();
        stored.insert(("carol".into(), 9), odd);
        shared.replace(&stored);
        assert_eq!(shared.read().iter().count(), 3);
        // The staged file's credentials: one group per mechanism, so no
        // group names a user twice, and every group is taken whole.
        let staged = shared.take_staged().unwrap();
        assert!(shared.take_staged().is_none());
        let groups = staged_upsertions(&staged);
        assert_eq!(groups.len(), 2);
        let mut rebuilt = CredentialStore::empty().unwrap();
        for group in &groups {
            let outcomes = apply(&mut rebuilt, &[], group);
            assert!(outcomes.iter().all(|outcome| outcome.error_code == 0));
        }
        assert_eq!(rebuilt.to_stored(), store.to_stored());
    }
}
