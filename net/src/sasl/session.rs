//! Where a connection on a SASL listener stands in Kafka's authentication
//! sequence (KIP-43, KIP-152):
//!
//! ```text
//! Handshake --SaslHandshake v1--> Exchange --SaslAuthenticate...--> Authenticated
//!     |                              ^
//!     +--SaslHandshake v0------------+ (raw tokens, no Kafka framing)
//! ```
//!
//! Before `Authenticated` only ApiVersions (in `Handshake`), SaslHandshake
//! and SaslAuthenticate are served; any other request closes the
//! connection without its body being decoded. A failed step ends the
//! connection too (after its error response), so a client gets one try per
//! connection, as with Kafka.

use super::alter::SharedCredentials;
use super::scram::{ScramServer, Step};
use super::{oauthbearer, plain, AuthFailure, Mechanism, Principal};

/// SASL settings of the client listener.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Kafka's `sasl.enabled.mechanisms`.
    pub enabled_mechanisms: Vec<Mechanism>,
    /// Kafka's `super.users`, as user names (the `User:` prefix taken off).
    pub super_users: Vec<String>,
    /// The users' credentials, read at start and changed by
    /// AlterUserScramCredentials; `None` until then (no user can log in),
    /// and on a broker of a cluster, which has no credential store yet.
    pub credentials: Option<std::sync::Arc<SharedCredentials>>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): how long an
    /// authenticated session lasts before the client must authenticate
    /// again on the same connection; 0 (Kafka's default) is for ever.
    pub reauth_ms: u64,
    /// OAUTHBEARER may be enabled: its tokens are checked without a
    /// signature (Kafka's unsecured validator), which the operator must
    /// accept in so many words.
    pub oauthbearer_unsecured_jwt: bool,
}

impl Default for SaslConfig {
    /// Every mechanism Sluice has: Kafka's default (GSSAPI) needs Kerberos,
    /// which Sluice does not speak, and PLAIN and both SCRAMs check the
    /// same stored credential, so enabling all costs nothing.
    fn default() -> Self {
        SaslConfig {
            enabled_mechanisms: Mechanism::ALL.to_vec(),
            super_users: Vec::new(),
            credentials: None,
            reauth_ms: 0,
            oauthbearer_unsecured_jwt: false,
        }
    }
}

/// Where a connection stands.
#[derive(Debug)]
pub enum Authenticator {
    /// Waiting for SaslHandshake (ApiVersions may come first).
    Handshake,
    /// A mechanism was chosen; waiting for its messages. `raw_tokens`: the
    /// handshake was v0, so messages come as bare length-prefixed tokens
    /// instead of SaslAuthenticate requests.
    Exchange {
        mechanism: Mechanism,
        scram: Option<ScramServer>,
        raw_tokens: bool,
    },
    /// Logged in as `principal` with `mechanism`, which a KIP-368
    /// re-authentication must use again; `expires_at_ms`: when the
    /// OAUTHBEARER token it presented expires (ms since the Unix epoch).
    Authenticated {
        principal: Principal,
        mechanism: Mechanism,
        expires_at_ms: Option<i64>,
    },
    /// A step failed; the connection is closing.
    Failed,
}

/// The answer to a SaslHandshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    Accepted,
    /// Not one of `sasl_enabled_mechanisms`: UNSUPPORTED_SASL_MECHANISM.
    UnsupportedMechanism,
    /// Not expected now: ILLEGAL_SASL_STATE.
    IllegalState,
}

/// The answer to one authentication message.
#[derive(Debug, PartialEq, Eq)]
pub enum Authenticate {
    /// Send this token and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated; send this last token.
    Done(Vec<u8>),
    /// SASL_AUTHENTICATION_FAILED; the connection closes after the answer.
    Failed(AuthFailure),
    /// Not expected now: ILLEGAL_SASL_STATE.
    IllegalState,
}

impl Authenticator {
    pub fn new() -> Authenticator {
        Authenticator::Handshake
    }

    /// The principal, once authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Authenticator::Authenticated { principal, .. } => Some(principal),
            _ => None,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.principal().is_some()
    }

    /// The mechanism being exchanged, or logged in with, if any.
    pub fn mechanism(&self) -> Option<Mechanism> {
        match self {
            Authenticator::Exchange { mechanism, .. }
            | Authenticator::Authenticated { mechanism, .. } => Some(*mechanism),
            _ => None,
        }
    }

    /// How long the session just authenticated lasts (KIP-368), in ms; 0
    /// for ever. With `connections_max_reauth_ms` set, that long, or less
    /// when an OAUTHBEARER token expires sooner (as Kafka bounds it); the
    /// token's expiry alone does not end a session that never expires.
    pub fn session_lifetime_ms(&self, reauth_ms: u64) -> u64 {
        let Authenticator::Authenticated { expires_at_ms, .. } = self else {
            return 0;
        };
        if reauth_ms == 0 {
            return 0;
        }
        let token_left = expires_at_ms
            .map(|expires| u64::try_from(expires.saturating_sub(now_ms())).unwrap_or(0))
            .unwrap_or(u64::MAX);
        // At least a millisecond: 0 would say "for ever".
        reauth_ms.min(token_left).max(1)
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self,
            Authenticator::Exchange {
                raw_tokens: true,
                ..
            }
        )
    }

    /// Whether ApiVersions is served now: before the handshake only, as in
    /// Kafka (a client asks it to learn the SaslHandshake version).
    pub fn serves_api_versions(&self) -> bool {
        matches!(
            self,
            Authenticator::Handshake | Authenticator::Authenticated { .. }
        )
    }

    /// A SaslHandshake naming `mechanism`, of request version `version`.
    pub fn handshake(&mut self, mechanism: &str, version: i16, config: &SaslConfig) -> Handshake {
        if !matches!(self, Authenticator::Handshake) {
            *self = Authenticator::Failed;
            return Handshake::IllegalState;
        }
        let Some(mechanism) = Mechanism::from_name(mechanism)
            .filter(|mechanism| config.enabled_mechanisms.contains(mechanism))
        else {
            *self = Authenticator::Failed;
            return Handshake::UnsupportedMechanism;
        };
        *self = Authenticator::Exchange {
            mechanism,
            scram: mechanism.is_scram().then(|| ScramServer::new(mechanism)),
            raw_tokens: version == 0,
        };
        Handshake::Accepted
    }

    /// One message of the chosen mechanism (a SaslAuthenticate's bytes, or
    /// a bare token after a v0 handshake).
    pub fn authenticate(&mut self, token: &[u8], config: &SaslConfig) -> Authenticate {
        let Authenticator::Exchange {
            scram, mechanism, ..
        } = self
        else {
            *self = Authenticator::Failed;
            return Authenticate::IllegalState;
        };
        let mut expires_at_ms = None;
        let outcome = if *mechanism == Mechanism::OAuthBearer {
            oauthbearer::authenticate(token, now_ms()).map(|token| {
                expires_at_ms = Some(token.expires_at_ms);
                (token.principal, Vec::new())
            })
        } else {
            let Some(shared) = config.credentials.as_deref() else {
                // Not loaded: nobody can log in, so there is no user whose
                // existence the failure could give away.
                *self = Authenticator::Failed;
                return Authenticate::Failed(AuthFailure::Unsupported("no credentials loaded"));
            };
            let store = &*shared.read();
            match scram {
                None => plain::authenticate(token, store).map(|user| (user, Vec::new())),
                Some(server) => match server.step(token, store) {
                    Ok(Step::Continue(response)) => return Authenticate::Continue(response),
                    Ok(Step::Authenticated { user, response }) => Ok((user, response)),
                    Err(failure) => Err(failure),
                },
            }
        };
        match outcome {
            Ok((user, response)) => {
                let super_user = config.super_users.contains(&user);
                *self = Authenticator::Authenticated {
                    principal: Principal { user, super_user },
                    mechanism: *mechanism,
                    expires_at_ms,
                };
                Authenticate::Done(response)
            }
            Err(failure) => {
                *self = Authenticator::Failed;
                Authenticate::Failed(failure)
            }
        }
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new()
    }
}

/// Milliseconds since the Unix epoch (tokens state their times so).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `super_users`: Kafka's `super.users`, principals separated by
/// `;`, each `User:<name>`.
pub fn parse_super_users(value: &str) -> Result<Vec<String>, String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let name = entry
                .strip_prefix("User:")
                .ok_or_else(|| format!("'{entry}' is not a principal of the form User:NAME"))?;
            super::credentials::check_user_name(name)
                .map_err(|error| format!("'{entry}': {error}"))?;
            Ok(name.to_string())
        })
        .collect()
}

/// Parses `sasl_enabled_mechanisms`: names separated by commas.
pub fn parse_mechanisms(value: &str) -> Result<Vec<Mechanism>, String> {
    let mut mechanisms = Vec::new();
    for name in value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let mechanism = Mechanism::from_name(name).ok_or_else(|| {
            format!(
                "'{name}' is not a mechanism Sluice has ({})",
                Mechanism::KNOWN.map(Mechanism::name).join(", ")
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err("no mechanism named".into());
    }
    Ok(mechanisms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::{CredentialStore, ScramCredential};

    fn shared(store: &CredentialStore) -> SharedCredentials {
        let shared = SharedCredentials::new(None).unwrap();
        shared.replace(&store.to_stored());
        shared
    }

    fn config(enabled: &[Mechanism]) -> SaslConfig {
        let mut store = CredentialStore::empty().unwrap();
        store.insert(
            "admin",
            Mechanism::ScramSha256,
            ScramCredential::from_password(Mechanism::ScramSha256, b"secret", vec![5; 32], 4096),
        );
        SaslConfig {
            enabled_mechanisms: enabled.to_vec(),
            super_users: vec!["admin".into()],
            credentials: Some(std::sync::Arc::new(shared(&store))),
            reauth_ms: 0,
            oauthbearer_unsecured_jwt: false,
        }
    }

    /// An OAUTHBEARER message with an unsecured token for `sub` that
    /// expires `expires_in_s` from now.
    fn bearer(sub: &str, expires_in_s: i64) -> Vec<u8> {
        use base64::Engine;
        let encode = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let exp = now_ms() / 1000 + expires_in_s;
        format!(
            "n,,\u{1}auth=Bearer {}.{}.\u{1}\u{1}",
            encode(r#"{"alg":"none"}"#.to_string()),
            encode(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#))
        )
        .into_bytes()
    }

    #[test]
    fn oauthbearer_logs_in_the_tokens_subject_for_no_longer_than_the_token() {
        let mut config = config(&Mechanism::KNOWN);
        let mut session = Authenticator::new();
        assert_eq!(
            session.handshake("OAUTHBEARER", 1, &config),
            Handshake::Accepted
        );
        assert_eq!(
            session.authenticate(&bearer("carol", 60), &config),
            Authenticate::Done(Vec::new())
        );
        assert_eq!(session.principal().map(|p| p.user.as_str()), Some("carol"));
        assert_eq!(session.session_lifetime_ms(0), 0, "no reauth: for ever");
        assert_eq!(session.session_lifetime_ms(5_000), 5_000);
        let capped = session.session_lifetime_ms(3_600_000);
        assert!(
            (55_000..=60_000).contains(&capped),
            "the token's minute bounds the session: {capped}"
        );
        // An expired token fails; a mechanism not enabled is refused.
        let mut session = Authenticator::new();
        session.handshake("OAUTHBEARER", 1, &config);
        assert!(matches!(
            session.authenticate(&bearer("carol", -10), &config),
            Authenticate::Failed(AuthFailure::BadCredentials { .. })
        ));
        config.enabled_mechanisms = Mechanism::ALL.to_vec();
        let mut session = Authenticator::new();
        assert_eq!(
            session.handshake("OAUTHBEARER", 1, &config),
            Handshake::UnsupportedMechanism
        );
    }

    #[test]
    fn plain_after_a_handshake_authenticates_a_super_user() {
        let config = config(&Mechanism::ALL);
        let mut session = Authenticator::new();
        assert!(session.serves_api_versions());
        assert_eq!(session.handshake("PLAIN", 1, &config), Handshake::Accepted);
        assert!(!session.serves_api_versions());
        assert!(!session.expects_raw_token());
        assert_eq!(
            session.authenticate(b"\0admin\0secret", &config),
            Authenticate::Done(Vec::new())
        );
        assert_eq!(
            session.principal(),
            Some(&Principal {
                user: "admin".into(),
                super_user: true
            })
        );
        assert_eq!(session.principal().unwrap().to_string(), "User:admin");
    }

    #[test]
    fn out_of_order_steps_are_illegal_and_final() {
        let config = config(&Mechanism::ALL);
        let mut session = Authenticator::new();
        assert_eq!(
            session.authenticate(b"\0admin\0secret", &config),
            Authenticate::IllegalState
        );
        assert!(matches!(session, Authenticator::Failed));
        let mut session = Authenticator::new();
        session.handshake("SCRAM-SHA-256", 1, &config);
        assert_eq!(
            session.handshake("SCRAM-SHA-256", 1, &config),
            Handshake::IllegalState
        );
        let mut session = Authenticator::new();
        session.handshake("PLAIN", 1, &config);
        session.authenticate(b"\0admin\0secret", &config);
        assert_eq!(
            session.handshake("PLAIN", 1, &config),
            Handshake::IllegalState
        );
    }

    #[test]
    fn only_enabled_known_mechanisms_are_accepted() {
        let config = config(&[Mechanism::ScramSha512]);
        for name in ["PLAIN", "GSSAPI", "scram-sha-512", ""] {
            let mut session = Authenticator::new();
            assert_eq!(
                session.handshake(name, 1, &config),
                Handshake::UnsupportedMechanism,
                "{name}"
            );
        }
        let mut session = Authenticator::new();
        assert_eq!(
            session.handshake("SCRAM-SHA-512", 0, &config),
            Handshake::Accepted
        );
        assert!(session.expects_raw_token());
    }

    #[test]
    fn a_wrong_password_fails_once_and_for_all() {
        let config = config(&Mechanism::ALL);
        let mut session = Authenticator::new();
        session.handshake("PLAIN", 1, &config);
        assert!(matches!(
            session.authenticate(b"\0admin\0wrong", &config),
            Authenticate::Failed(AuthFailure::BadCredentials { .. })
        ));
        assert_eq!(
            session.authenticate(b"\0admin\0secret", &config),
            Authenticate::IllegalState
        );
        assert!(!session.is_authenticated());
    }

    #[test]
    fn settings_are_parsed() {
        assert_eq!(
            parse_super_users("User:admin; User:ops;").unwrap(),
            vec!["admin", "ops"]
        );
        assert!(parse_super_users("admin").is_err());
        assert!(parse_super_users("Group:admins").is_err());
        assert_eq!(parse_super_users("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_mechanisms("SCRAM-SHA-512, PLAIN,PLAIN").unwrap(),
            vec![Mechanism::ScramSha512, Mechanism::Plain]
        );
        assert!(parse_mechanisms("GSSAPI").unwrap_err().contains("GSSAPI"));
        assert!(parse_mechanisms(" , ").is_err());
    }
}
