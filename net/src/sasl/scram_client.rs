//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), client side, for
//! Sluice's own admin client: the messages [`super::scram`]'s server reads,
//! built from the same key functions, so the two sides cannot drift apart.
//!
//! The client checks the server too: the server-final signature proves the
//! broker holds the user's ServerKey, so a broker that merely says "yes" is
//! caught. The server's iteration count is bounded before any PBKDF2 work,
//! so a hostile broker cannot make the client spin for minutes.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::scram::{client_key, encode_sasl_name, hash, hmac, salted_password, server_key};
use super::Mechanism;
use crate::constants::{SCRAM_CLIENT_NONCE_BYTES, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};

/// GS2 header of a client without channel binding, and its base64 (`c=`
/// of client-final).
const GS2_HEADER: &str = "n,,";
const GS2_HEADER_BASE64: &str = "biws";

/// Why an exchange failed on the client's side. Carries no password, key,
/// proof or nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScramClientFailure {
    /// A server message that does not follow SCRAM's syntax.
    Malformed(&'static str),
    /// The server's nonce does not extend the client's.
    NonceMismatch,
    /// An iteration count outside Kafka's bounds.
    Iterations(u32),
    /// The server ended the exchange with `e=`.
    ServerError(String),
    /// The server-final signature is not the one the password gives: the
    /// broker does not hold this user's credential.
    ServerSignature,
    /// The system's random number generator failed.
    Random(String),
}

impl fmt::Display for ScramClientFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramClientFailure::Malformed(what) => write!(f, "malformed server message: {what}"),
            ScramClientFailure::NonceMismatch => {
                f.write_str("the server's nonce does not extend the client's")
            }
            ScramClientFailure::Iterations(count) => write!(
                f,
                "the server asks for {count} iterations, outside {SCRAM_ITERATIONS_MIN} to \
                 {SCRAM_ITERATIONS_MAX}"
            ),
            ScramClientFailure::ServerError(error) => write!(f, "the server says: {error}"),
            ScramClientFailure::ServerSignature => {
                f.write_str("the server's signature is wrong (it does not hold this credential)")
            }
            ScramClientFailure::Random(error) => f.write_str(error),
        }
    }
}

/// The client after client-first: waiting for server-first.
pub struct ScramClient {
    mechanism: Mechanism,
    nonce: String,
    /// client-first-message-bare, the first part of AuthMessage.
    first_bare: String,
}

/// The nonce and bare message stay out of logs.
impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// The client after client-final: waiting for server-final.
pub struct AwaitingServerFinal {
    mechanism: Mechanism,
    /// The ServerSignature the server must send.
    expected_signature: Vec<u8>,
}

impl fmt::Debug for AwaitingServerFinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingServerFinal")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `user` with a nonce from the OS's CSPRNG;
    /// returns the client and the client-first message.
    pub fn start(
        mechanism: Mechanism,
        user: &str,
    ) -> Result<(ScramClient, Vec<u8>), ScramClientFailure> {
        let random = super::random_bytes::<SCRAM_CLIENT_NONCE_BYTES>()
            .map_err(ScramClientFailure::Random)?;
        Ok(ScramClient::with_nonce(
            mechanism,
            user,
            BASE64.encode(random),
        ))
    }

    /// Starts an exchange with a given nonce (printable, no `,`: base64
    /// is); for tests against known vectors.
    pub fn with_nonce(mechanism: Mechanism, user: &str, nonce: String) -> (ScramClient, Vec<u8>) {
        assert!(mechanism.is_scram(), "{mechanism} is not a SCRAM mechanism");
        assert!(
            !nonce.is_empty() && !nonce.contains(','),
            "a SCRAM nonce is printable without commas"
        );
        let first_bare = format!("n={},r={nonce}", encode_sasl_name(user));
        let message = format!("{GS2_HEADER}{first_bare}").into_bytes();
        let client = ScramClient {
            mechanism,
            nonce,
            first_bare,
        };
        (client, message)
    }

    /// Reads server-first and proves the password: returns the state
    /// waiting for server-final and the client-final message.
    pub fn answer(
        self,
        server_first: &[u8],
        password: &[u8],
    ) -> Result<(AwaitingServerFinal, Vec<u8>), ScramClientFailure> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramClientFailure::Malformed("server-first is not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramClientFailure::ServerError(error.to_string()));
        }
        let mut attributes = text.split(',');
        let nonce = attributes
            .next()
            .and_then(|attribute| attribute.strip_prefix("r="))
            .ok_or(ScramClientFailure::Malformed(
                "server-first does not start with a nonce",
            ))?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramClientFailure::NonceMismatch);
        }
        let salt = attributes
            .next()
            .and_then(|attribute| attribute.strip_prefix("s="))
            .ok_or(ScramClientFailure::Malformed("server-first has no salt"))?;
        let salt = BASE64
            .decode(salt)
            .ok()
            .filter(|salt| !salt.is_empty())
            .ok_or(ScramClientFailure::Malformed(
                "server-first's salt is not base64",
            ))?;
        let iterations = attributes
            .next()
            .and_then(|attribute| attribute.strip_prefix("i="))
            .ok_or(ScramClientFailure::Malformed(
                "server-first has no iteration count",
            ))?;
        let iterations: u32 = iterations.parse().map_err(|_| {
            ScramClientFailure::Malformed("server-first's iteration count is not a number")
        })?;
        // Checked before PBKDF2 runs: the count comes from the server.
        if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramClientFailure::Iterations(iterations));
        }
        // Extensions after the iteration count are allowed and ignored
        // (RFC 5802 section 7).
        let salted = salted_password(self.mechanism, password, &salt, iterations);
        let client_key = client_key(self.mechanism, &salted);
        let stored_key = hash(self.mechanism, &client_key);
        let without_proof = format!("c={GS2_HEADER_BASE64},r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let client_signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(key, signature)| key ^ signature)
            .collect();
        let expected_signature = hmac(
            self.mechanism,
            &server_key(self.mechanism, &salted),
            auth_message.as_bytes(),
        );
        let message = format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes();
        Ok((
            AwaitingServerFinal {
                mechanism: self.mechanism,
                expected_signature,
            },
            message,
        ))
    }
}

impl AwaitingServerFinal {
    /// Checks server-final: the server's signature over the exchange.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramClientFailure> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramClientFailure::Malformed("server-final is not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramClientFailure::ServerError(error.to_string()));
        }
        let signature = text
            .split(',')
            .next()
            .and_then(|attribute| attribute.strip_prefix("v="))
            .ok_or(ScramClientFailure::Malformed(
                "server-final has no signature",
            ))?;
        let signature = BASE64
            .decode(signature)
            .map_err(|_| ScramClientFailure::Malformed("server-final's signature is not base64"))?;
        if bool::from(signature.ct_eq(&self.expected_signature)) {
            Ok(())
        } else {
            Err(ScramClientFailure::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::scram::{ScramServer, Step};
    use crate::sasl::{CredentialStore, ScramCredential};

    /// RFC 7677 section 3: user "user", password "pencil".
    const RFC7677_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC7677_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC7677_CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_client() -> ScramClient {
        let (client, first) = ScramClient::with_nonce(
            Mechanism::ScramSha256,
            "user",
            RFC7677_CLIENT_NONCE.to_string(),
        );
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        client
    }

    #[test]
    fn rfc_7677_messages_are_reproduced_and_the_server_is_verified() {
        let (awaiting, last) = rfc_client()
            .answer(RFC7677_SERVER_FIRST.as_bytes(), b"pencil")
            .expect("the RFC's server-first is valid");
        assert_eq!(String::from_utf8(last).unwrap(), RFC7677_CLIENT_FINAL);
        assert_eq!(awaiting.verify(RFC7677_SERVER_FINAL.as_bytes()), Ok(()));
    }

    #[test]
    fn a_wrong_server_signature_or_an_error_fails() {
        let answer = || {
            rfc_client()
                .answer(RFC7677_SERVER_FIRST.as_bytes(), b"pencil")
                .unwrap()
                .0
        };
        let other = RFC7677_SERVER_FINAL.replace("v=6rri", "v=6rrj");
        assert_eq!(
            answer().verify(other.as_bytes()),
            Err(ScramClientFailure::ServerSignature)
        );
        assert_eq!(
            answer().verify(b"e=invalid-proof"),
            Err(ScramClientFailure::ServerError("invalid-proof".into()))
        );
        assert!(matches!(
            answer().verify(b"v=***"),
            Err(ScramClientFailure::Malformed(_))
        ));
        // A wrong password gives another proof, and the true server's
        // signature no longer matches.
        let (awaiting, last) = rfc_client()
            .answer(RFC7677_SERVER_FIRST.as_bytes(), b"pencil2")
            .unwrap();
        assert_ne!(String::from_utf8(last).unwrap(), RFC7677_CLIENT_FINAL);
        assert_eq!(
            awaiting.verify(RFC7677_SERVER_FINAL.as_bytes()),
            Err(ScramClientFailure::ServerSignature)
        );
    }

    #[test]
    fn bad_server_firsts_are_refused_before_any_work() {
        let tail = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        for (server_first, expected) in [
            (
                format!("r=other{tail},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
                ScramClientFailure::NonceMismatch,
            ),
            (
                format!("r={RFC7677_CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
                ScramClientFailure::NonceMismatch,
            ),
            (
                format!("r={RFC7677_CLIENT_NONCE}{tail},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000"),
                ScramClientFailure::Iterations(4_000_000_000),
            ),
            (
                format!("r={RFC7677_CLIENT_NONCE}{tail},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1"),
                ScramClientFailure::Iterations(1),
            ),
            (
                "e=unknown-user".to_string(),
                ScramClientFailure::ServerError("unknown-user".into()),
            ),
        ] {
            assert_eq!(
                rfc_client()
                    .answer(server_first.as_bytes(), b"pencil")
                    .map(|_| ()),
                Err(expected),
                "{server_first}"
            );
        }
        for malformed in [
            "",
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=many",
        ] {
            assert!(
                matches!(
                    rfc_client().answer(malformed.as_bytes(), b"pencil"),
                    Err(ScramClientFailure::Malformed(_))
                ),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_client_logs_in_to_the_server_with_both_hashes_and_an_escaped_name() {
        for mechanism in Mechanism::SCRAM {
            let user = "a=b,c";
            let mut store = CredentialStore::empty().unwrap();
            store.insert(
                user,
                mechanism,
                ScramCredential::generate(mechanism, b"secret", SCRAM_ITERATIONS_MIN).unwrap(),
            );
            let mut server = ScramServer::new(mechanism);
            let (client, first) = ScramClient::start(mechanism, user).unwrap();
            assert!(String::from_utf8_lossy(&first).starts_with("n,,n=a=3Db=2Cc,r="));
            let Ok(Step::Continue(server_first)) = server.step(&first, &store) else {
                panic!("{mechanism}: client-first refused");
            };
            let (awaiting, last) = client.answer(&server_first, b"secret").unwrap();
            let Ok(Step::Authenticated {
                user: logged_in,
                response,
            }) = server.step(&last, &store)
            else {
                panic!("{mechanism}: client-final refused");
            };
            assert_eq!(logged_in, user);
            assert_eq!(awaiting.verify(&response), Ok(()));
        }
    }

    #[test]
    fn two_exchanges_use_different_nonces() {
        let (_, first) = ScramClient::start(Mechanism::ScramSha512, "u").unwrap();
        let (_, second) = ScramClient::start(Mechanism::ScramSha512, "u").unwrap();
        assert_ne!(first, second);
    }
}
