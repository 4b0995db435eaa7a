//! SASL authentication of client connections: the mechanisms (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), the stored credentials, and the state a
//! connection is in until it has authenticated.
//!
//! Design notes:
//! - One credential store serves every mechanism. It keeps per user and
//!   SCRAM mechanism the salt, the iteration count, StoredKey and ServerKey
//!   (RFC 5802), never the password. PLAIN checks a password by deriving
//!   StoredKey from it with the stored salt and iterations, so a user made
//!   for SCRAM logs in with PLAIN too.
//! - An unknown user is run through the same steps as a known one, against
//!   a dummy credential derived from a per-process secret and the name, so
//!   neither the answer, its timing nor the salt the server sends tells
//!   whether the user exists.
//! - Secrets never leave this module as text: failures carry a reason fit
//!   for a log line (no password, proof, key or nonce).
//! - The wire side (which request may come when, the Kafka error codes) is
//!   in [`session`] and the SaslHandshake/SaslAuthenticate handlers; the
//!   mechanisms here know nothing of Kafka's framing.
//! - [`scram_client`] is the other side of SCRAM, for Sluice's own admin
//!   client ([`crate::client`]), built on the same key functions.

pub mod alter;
pub mod credentials;
pub mod oauthbearer;
pub mod plain;
pub mod scram;
pub mod scram_client;
pub mod session;

pub use credentials::{CredentialStore, ScramCredential};
pub use session::Authenticator;

use std::fmt;

/// A SASL mechanism Sluice implements, by its IANA name (which is also
/// Kafka's `sasl.enabled.mechanisms` spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    /// RFC 7628 with unsecured tokens only (see [`oauthbearer`]); never
    /// a default, and offered only with `sasl_oauthbearer_unsecured_jwt`.
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order `sasl_enabled_mechanisms` defaults to.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The SCRAM mechanisms: the ones a credential is stored for.
    pub const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// Every mechanism Sluice knows, the defaults first.
    pub const KNOWN: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of an IANA name. Exact match: SASL mechanism names are
    /// upper case (RFC 4422 section 3.1), and Kafka compares them exactly.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::KNOWN
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    pub fn is_scram(self) -> bool {
        matches!(self, Mechanism::ScramSha256 | Mechanism::ScramSha512)
    }

    /// Whether the mechanism checks a password against the stored SCRAM
    /// credentials (PLAIN and the SCRAMs; OAUTHBEARER checks a token).
    pub fn uses_credentials(self) -> bool {
        self != Mechanism::OAuthBearer
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a connection authenticated as: Kafka's `User:<name>` principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    /// Named in `super_users`: the authorizer allows it everything.
    pub super_user: bool,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.user)
    }
}

/// Why an exchange failed, for the one log line the broker writes about
/// it. Never carries a password, a proof, a key or a nonce; a user name is
/// logged only when the client's message was well formed enough to have
/// one, clipped by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The message does not follow the mechanism's syntax.
    Malformed(&'static str),
    /// A well-formed attempt with a wrong password or an unknown user;
    /// which of the two is not said, not even in the log.
    BadCredentials { user: String },
    /// Something the mechanism allows that Sluice does not offer (channel
    /// binding, delegation tokens, an authorization id of another user).
    Unsupported(&'static str),
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::Malformed(what) => write!(f, "malformed message: {what}"),
            AuthFailure::BadCredentials { user } => {
                write!(f, "invalid credentials for user '{user}'")
            }
            AuthFailure::Unsupported(what) => write!(f, "not supported: {what}"),
        }
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes)
        .map_err(|error| format!("the system's random number generator failed: {error}"))?;
    Ok(bytes)
}
