//! SCRAM user calls (`sluice user ... --bootstrap-server`):
//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554).
//! The client salts and hashes the password itself (a fresh salt from the
//! OS's CSPRNG, PBKDF2 with [`crate::sasl::scram`]'s functions) and sends
//! the salted password, as Kafka's clients do: the password never crosses
//! the wire.

use std::fmt;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::Admin;
use super::error::{ClientError, KafkaError};
use crate::constants::SCRAM_SALT_BYTES;
use crate::sasl::alter::{mechanism_code, mechanism_of_code};
use crate::sasl::{random_bytes, scram, Mechanism};

/// A user's SCRAM credentials as the broker describes them: per mechanism
/// the iteration count (never a salt or a key), or why the user could not
/// be described (RESOURCE_NOT_FOUND for an unknown one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserScramCredentials {
    pub user: String,
    pub credentials: Result<Vec<(Mechanism, u32)>, KafkaError>,
}

/// A credential to create or replace: what AlterUserScramCredentials
/// carries.
#[derive(Clone)]
pub struct ScramUpsertion {
    pub user: String,
    pub mechanism: Mechanism,
    pub iterations: u32,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

/// The salted password stays out of logs.
impl fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramUpsertion {
    /// The upsertion of `password` for `user`, with a fresh random salt.
    pub fn from_password(
        user: &str,
        mechanism: Mechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<ScramUpsertion, String> {
        assert!(mechanism.is_scram(), "{mechanism} is not a SCRAM mechanism");
        let salt = random_bytes::<SCRAM_SALT_BYTES>()?.to_vec();
        let salted_password = scram::salted_password(mechanism, password, &salt, iterations);
        Ok(ScramUpsertion {
            user: user.to_string(),
            mechanism,
            iterations,
            salt,
            salted_password,
        })
    }
}

/// A credential to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramDeletion {
    pub user: String,
    pub mechanism: Mechanism,
}

/// The answer for one user of an AlterUserScramCredentials request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAlteration {
    pub user: String,
    pub result: Result<(), KafkaError>,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

impl Admin {
    /// The SCRAM credentials of `users`, or of every user with `None`.
    pub fn describe_user_scram_credentials(
        &mut self,
        users: Option<&[&str]>,
    ) -> Result<Vec<UserScramCredentials>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::DescribeUserScramCredentials)?;
        let mut request = DescribeUserScramCredentialsRequest::default();
        request.users = users.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut user = UserName::default();
                    user.name = text(name);
                    user
                })
                .collect()
        });
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        )?;
        let mut described = Vec::with_capacity(response.results.len());
        for result in response.results {
            let user = result.user.to_string();
            let credentials = match KafkaError::check(
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                Err(error) => Err(error),
                Ok(()) => {
                    let mut known = Vec::with_capacity(result.credential_infos.len());
                    for info in &result.credential_infos {
                        let mechanism = mechanism_of_code(info.mechanism);
                        let iterations = u32::try_from(info.iterations).ok();
                        let (Some(mechanism), Some(iterations)) = (mechanism, iterations) else {
                            return Err(ClientError::Protocol {
                                address: connection.address().to_string(),
                                api: ApiKey::DescribeUserScramCredentials,
                                message: format!(
                                    "user '{user}' has a credential of unknown mechanism {} or \
                                     {} iterations",
                                    info.mechanism, info.iterations
                                ),
                            });
                        };
                        known.push((mechanism, iterations));
                    }
                    Ok(known)
                }
            };
            described.push(UserScramCredentials { user, credentials });
        }
        Ok(described)
    }

    /// Removes and creates or replaces credentials; one answer per user
    /// named. A broker refuses every change of a user named twice in one
    /// request (DUPLICATE_RESOURCE), so a caller changing two mechanisms of
    /// one user sends two requests.
    pub fn alter_user_scram_credentials(
        &mut self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Result<Vec<UserAlteration>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::AlterUserScramCredentials)?;
        let mut request = AlterUserScramCredentialsRequest::default();
        request.deletions = deletions
            .iter()
            .map(|deletion| {
                let mut wire = ScramCredentialDeletion::default();
                wire.name = text(&deletion.user);
                wire.mechanism = mechanism_code(deletion.mechanism);
                wire
            })
            .collect();
        let mut wire_upsertions = Vec::with_capacity(upsertions.len());
        for upsertion in upsertions {
            let iterations =
                i32::try_from(upsertion.iterations).map_err(|_| ClientError::Encode {
                    api: ApiKey::AlterUserScramCredentials,
                    version,
                    message: format!("{} iterations do not fit an i32", upsertion.iterations),
                })?;
            let mut wire = ScramCredentialUpsertion::default();
            wire.name = text(&upsertion.user);
            wire.mechanism = mechanism_code(upsertion.mechanism);
            wire.iterations = iterations;
            wire.salt = Bytes::from(upsertion.salt.clone());
            wire.salted_password = Bytes::from(upsertion.salted_password.clone());
            wire_upsertions.push(wire);
        }
        request.upsertions = wire_upsertions;
        let response = connection.send(&request, version)?;
        Ok(response
            .results
            .into_iter()
            .map(|result| UserAlteration {
                user: result.user.to_string(),
                result: KafkaError::check(
                    result.error_code,
                    result.error_message.map(|message| message.to_string()),
                ),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::ScramCredential;

    #[test]
    fn an_upsertion_gives_the_credential_of_its_password() {
        let first =
            ScramUpsertion::from_password("alice", Mechanism::ScramSha512, b"pw", 4096).unwrap();
        let second =
            ScramUpsertion::from_password("alice", Mechanism::ScramSha512, b"pw", 4096).unwrap();
        assert_eq!(first.salt.len(), SCRAM_SALT_BYTES);
        assert_ne!(first.salt, second.salt, "every upsertion has its own salt");
        // What the broker derives from the salted password is the
        // credential of the password itself.
        let (stored_key, server_key) = scram::keys(Mechanism::ScramSha512, &first.salted_password);
        let expected =
            ScramCredential::from_password(Mechanism::ScramSha512, b"pw", first.salt.clone(), 4096);
        assert_eq!(stored_key, expected.stored_key);
        assert_eq!(server_key, expected.server_key);
        assert!(!format!("{first:?}").contains("salted_password"));
    }
}
