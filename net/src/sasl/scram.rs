//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, as
//! Kafka speaks them (KIP-84): no channel binding, user names in SCRAM's
//! `=2C`/`=3D` escaping, passwords used as their UTF-8 bytes (Kafka does
//! not apply SASLprep, and credentials must match what Kafka's clients
//! derive).
//!
//! The exchange is two round trips:
//! 1. client-first `n,,n=USER,r=CNONCE` → server-first
//!    `r=CNONCE+SNONCE,s=SALT,i=ITERATIONS`;
//! 2. client-final `c=biws,r=CNONCE+SNONCE,p=PROOF` → server-final
//!    `v=SERVER_SIGNATURE`, after the proof is checked.
//!
//! The server never needs the password: with StoredKey = H(ClientKey) it
//! recovers ClientKey = proof XOR HMAC(StoredKey, AuthMessage) and checks
//! H(ClientKey) = StoredKey, in constant time, as it checks the nonce.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::credentials::{CredentialStore, ScramCredential};
use super::{AuthFailure, Mechanism};
use crate::constants::{
    SASL_USER_BYTES_MAX, SCRAM_CLIENT_NONCE_BYTES_MAX, SCRAM_SERVER_NONCE_BYTES,
};

/// The HMAC key of ClientKey and ServerKey (RFC 5802 section 3).
const CLIENT_KEY_LABEL: &[u8] = b"Client Key";
const SERVER_KEY_LABEL: &[u8] = b"Server Key";

/// The extension Kafka's clients add to authenticate with a delegation
/// token (KIP-48), which Sluice does not have.
const TOKEN_AUTH_EXTENSION: &str = "tokenauth";

/// H(data) with the mechanism's hash.
pub fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        Mechanism::ScramSha256 | Mechanism::Plain | Mechanism::OAuthBearer => {
            Sha256::digest(data).to_vec()
        }
    }
}

/// HMAC(key, data) with the mechanism's hash.
pub fn hmac(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length (a longer one is hashed first), so
    // `new_from_slice` cannot fail.
    match mechanism {
        Mechanism::ScramSha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Mechanism::ScramSha256 | Mechanism::Plain | Mechanism::OAuthBearer => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// The hash's output length: StoredKey's, ServerKey's and a proof's.
pub fn output_bytes(mechanism: Mechanism) -> usize {
    match mechanism {
        Mechanism::ScramSha512 => 64,
        Mechanism::ScramSha256 | Mechanism::Plain | Mechanism::OAuthBearer => 32,
    }
}

/// SaltedPassword = Hi(password, salt, iterations), PBKDF2 with HMAC.
pub fn salted_password(
    mechanism: Mechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; output_bytes(mechanism)];
    match mechanism {
        Mechanism::ScramSha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
        }
        Mechanism::ScramSha256 | Mechanism::Plain | Mechanism::OAuthBearer => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
        }
    }
    out
}

/// ClientKey = HMAC(SaltedPassword, "Client Key"): what a client proves
/// it knows.
pub fn client_key(mechanism: Mechanism, salted: &[u8]) -> Vec<u8> {
    hmac(mechanism, salted, CLIENT_KEY_LABEL)
}

/// ServerKey = HMAC(SaltedPassword, "Server Key"): what the server signs
/// its final message with.
pub fn server_key(mechanism: Mechanism, salted: &[u8]) -> Vec<u8> {
    hmac(mechanism, salted, SERVER_KEY_LABEL)
}

/// StoredKey and ServerKey of a salted password.
pub fn keys(mechanism: Mechanism, salted: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let stored_key = hash(mechanism, &client_key(mechanism, salted));
    (stored_key, server_key(mechanism, salted))
}

/// A user name in SCRAM's escaping: `,` as `=2C` and `=` as `=3D`, which
/// the attribute syntax reserves (RFC 5802 section 5.1).
pub fn encode_sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Whether `password` is the one `credential` was made from: StoredKey
/// derived with its salt and iterations, compared in constant time. PLAIN
/// logs in with this.
pub fn password_matches(
    mechanism: Mechanism,
    credential: &ScramCredential,
    password: &[u8],
) -> bool {
    let salted = salted_password(mechanism, password, &credential.salt, credential.iterations);
    let (stored_key, _) = keys(mechanism, &salted);
    bool::from(stored_key.ct_eq(&credential.stored_key))
}

/// A user name in SCRAM's escaping (`,` as `=2C`, `=` as `=3D`) decoded;
/// `None` for any other `=` sequence or a bare `,`.
fn decode_sasl_name(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find(['=', ',']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A nonce is printable ASCII but `,` (RFC 5802 section 7).
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= SCRAM_CLIENT_NONCE_BYTES_MAX
        && nonce
            .bytes()
            .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b',')
}

/// The parts of a client-first message the server uses.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,` or `y,,` (or with an authorization id): echoed, base64, in the
    /// client-final's `c=`.
    pub gs2_header: String,
    pub user: String,
    pub nonce: String,
    /// client-first-message-bare, the first part of AuthMessage.
    pub bare: String,
}

/// Parses a client-first message.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, AuthFailure> {
    let text = std::str::from_utf8(message)
        .map_err(|_| AuthFailure::Malformed("client-first is not UTF-8"))?;
    // gs2-header: cbind-flag "," [authzid] ","
    let (flag, rest) = text
        .split_once(',')
        .ok_or(AuthFailure::Malformed("client-first has no GS2 header"))?;
    match flag {
        // "n": the client does not support channel binding; "y": it does
        // but thinks the server does not. Both are fine without TLS.
        "n" | "y" => {}
        flag if flag.starts_with("p=") => {
            return Err(AuthFailure::Unsupported("channel binding"));
        }
        _ => {
            return Err(AuthFailure::Malformed(
                "client-first has a bad channel-binding flag",
            ))
        }
    }
    let (authzid, bare) = rest.split_once(',').ok_or(AuthFailure::Malformed(
        "client-first's GS2 header is cut short",
    ))?;
    let authzid = match authzid {
        "" => None,
        id => Some(id.strip_prefix("a=").and_then(decode_sasl_name).ok_or(
            AuthFailure::Malformed("client-first has a bad authorization id"),
        )?),
    };
    let gs2_header = text[..text.len() - bare.len()].to_string();
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("n="))
        .ok_or(AuthFailure::Malformed("client-first has no user name"))?;
    if user.is_empty() || user.len() > SASL_USER_BYTES_MAX {
        return Err(AuthFailure::Malformed(
            "client-first's user name is empty or too long",
        ));
    }
    let user = decode_sasl_name(user).ok_or(AuthFailure::Malformed(
        "client-first's user name is badly escaped",
    ))?;
    let nonce = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("r="))
        .ok_or(AuthFailure::Malformed("client-first has no nonce"))?;
    if !valid_nonce(nonce) {
        return Err(AuthFailure::Malformed(
            "client-first's nonce is not printable or too long",
        ));
    }
    for extension in attributes {
        // RFC 5802 reserves "m=" for mandatory extensions: one the server
        // does not know ends the exchange.
        let name = extension
            .split_once('=')
            .map(|(name, _)| name)
            .unwrap_or(extension);
        if name == "m" {
            return Err(AuthFailure::Unsupported("mandatory extension"));
        }
        if name == TOKEN_AUTH_EXTENSION {
            return Err(AuthFailure::Unsupported("delegation tokens"));
        }
    }
    // Kafka lets a user act only as itself.
    if authzid.as_ref().is_some_and(|id| *id != user) {
        return Err(AuthFailure::Unsupported(
            "an authorization id other than the user",
        ));
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// The parts of a client-final message the server checks.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFinal {
    /// `c=`: the base64 of the GS2 header.
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// client-final-message-without-proof, the last part of AuthMessage.
    pub without_proof: String,
}

/// Parses a client-final message.
pub fn parse_client_final(message: &[u8]) -> Result<ClientFinal, AuthFailure> {
    let text = std::str::from_utf8(message)
        .map_err(|_| AuthFailure::Malformed("client-final is not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(AuthFailure::Malformed("client-final has no proof"))?;
    let proof = BASE64
        .decode(proof)
        .map_err(|_| AuthFailure::Malformed("client-final's proof is not base64"))?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("c="))
        .ok_or(AuthFailure::Malformed(
            "client-final has no channel binding",
        ))?;
    let channel_binding = BASE64
        .decode(channel_binding)
        .map_err(|_| AuthFailure::Malformed("client-final's channel binding is not base64"))?;
    let nonce = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("r="))
        .ok_or(AuthFailure::Malformed("client-final has no nonce"))?;
    // Extensions after the nonce are allowed and ignored (RFC 5802).
    Ok(ClientFinal {
        channel_binding,
        nonce: nonce.to_string(),
        proof,
        without_proof: without_proof.to_string(),
    })
}

/// What the server keeps between client-first and client-final.
#[derive(Debug)]
struct AwaitingFinal {
    first: ClientFirst,
    server_first: String,
    /// Client nonce and server nonce, as the client must echo them.
    nonce: String,
    credential: ScramCredential,
    /// Whether the credential is the user's or the dummy of an unknown
    /// user (the proof then fails whatever it is).
    known: bool,
}

/// Where a SCRAM exchange stands.
#[derive(Debug)]
enum Stage {
    ClientFirst,
    /// Boxed: it is most of the exchange's state, and a connection holds
    /// the exchange only while it authenticates.
    ClientFinal(Box<AwaitingFinal>),
    Done,
}

/// What the server answers a client message with.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send this (server-final) as the last token.
    Authenticated { user: String, response: Vec<u8> },
}

/// One SCRAM exchange, server side.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    stage: Stage,
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> ScramServer {
        assert!(mechanism.is_scram(), "{mechanism} is not a SCRAM mechanism");
        ScramServer {
            mechanism,
            stage: Stage::ClientFirst,
        }
    }

    /// Takes the client's next message. After an `Err` or an
    /// `Authenticated` the exchange is over: any further message fails.
    pub fn step(&mut self, message: &[u8], store: &CredentialStore) -> Result<Step, AuthFailure> {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        match stage {
            Stage::ClientFirst => {
                let server_nonce = super::random_bytes::<SCRAM_SERVER_NONCE_BYTES>()
                    .map_err(|_| AuthFailure::Unsupported("no random numbers for a nonce"))?;
                self.client_first(message, store, &server_nonce)
            }
            Stage::ClientFinal(awaiting) => self.client_final(message, &awaiting),
            Stage::Done => Err(AuthFailure::Malformed("a message after the exchange ended")),
        }
    }

    fn client_first(
        &mut self,
        message: &[u8],
        store: &CredentialStore,
        server_nonce: &[u8],
    ) -> Result<Step, AuthFailure> {
        let first = parse_client_first(message)?;
        let (credential, known) = match store.get(&first.user, self.mechanism) {
            Some(credential) => (credential.clone(), true),
            None => (store.dummy(&first.user, self.mechanism), false),
        };
        let nonce = format!("{}{}", first.nonce, BASE64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let response = server_first.clone().into_bytes();
        self.stage = Stage::ClientFinal(Box::new(AwaitingFinal {
            first,
            server_first,
            nonce,
            credential,
            known,
        }));
        Ok(Step::Continue(response))
    }

    fn client_final(&self, message: &[u8], awaiting: &AwaitingFinal) -> Result<Step, AuthFailure> {
        let AwaitingFinal {
            first,
            server_first,
            nonce,
            credential,
            known,
        } = awaiting;
        let last = parse_client_final(message)?;
        if last.channel_binding != first.gs2_header.as_bytes() {
            return Err(AuthFailure::Malformed(
                "client-final's channel binding differs from client-first's header",
            ));
        }
        // librdkafka before 2.6.1 echoes the client nonce twice (`r=` CNONCE
        // CNONCE SNONCE; its issue 4895), and Kafka accepts that since 3.8.1.
        // So does Sluice, in that one form only: the server's part is still
        // checked, and the proof covers the message as the client sent it.
        let doubled = format!("{}{nonce}", first.nonce);
        let echoed = last.nonce.as_bytes();
        let nonce_matches =
            bool::from(echoed.ct_eq(nonce.as_bytes()) | echoed.ct_eq(doubled.as_bytes()));
        let auth_message = format!("{},{server_first},{}", first.bare, last.without_proof);
        let client_signature = hmac(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        // A proof of the wrong length fails the comparison below; it is
        // XORed over the common length so the work does not depend on it.
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(proof, signature)| proof ^ signature)
            .collect();
        let proof_matches = last.proof.len() == client_signature.len()
            && bool::from(hash(self.mechanism, &client_key).ct_eq(&credential.stored_key));
        if !(nonce_matches && proof_matches && *known) {
            return Err(AuthFailure::BadCredentials {
                user: first.user.clone(),
            });
        }
        let server_signature = hmac(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        Ok(Step::Authenticated {
            user: first.user.clone(),
            response: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const RFC7677_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC7677_SERVER_NONCE_TAIL: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC7677_ITERATIONS: u32 = 4096;
    const RFC7677_CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// The RFC's credential, derived from the password.
    fn rfc7677_credential() -> ScramCredential {
        let salt = BASE64.decode(RFC7677_SALT).unwrap();
        ScramCredential::from_password(Mechanism::ScramSha256, b"pencil", salt, RFC7677_ITERATIONS)
    }

    /// Runs the RFC's client-final against a server whose nonce is the
    /// RFC's (the server part of the nonce is random in real exchanges).
    fn rfc7677_server(store: &CredentialStore) -> ScramServer {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        // The RFC's server nonce tail is not base64 of anything, so the
        // stage after client-first is set the way `client_first` sets it.
        let first = parse_client_first(RFC7677_CLIENT_FIRST.as_bytes()).unwrap();
        let nonce = format!("{}{RFC7677_SERVER_NONCE_TAIL}", first.nonce);
        let credential = store.get("user", Mechanism::ScramSha256).unwrap().clone();
        let server_first = format!("r={nonce},s={RFC7677_SALT},i={RFC7677_ITERATIONS}");
        server.stage = Stage::ClientFinal(Box::new(AwaitingFinal {
            first,
            server_first,
            nonce,
            credential,
            known: true,
        }));
        server
    }

    fn store_with_rfc_user() -> CredentialStore {
        let mut store = CredentialStore::empty().unwrap();
        store.insert("user", Mechanism::ScramSha256, rfc7677_credential());
        store
    }

    #[test]
    fn rfc_7677_exchange_is_verified_and_signed() {
        let store = store_with_rfc_user();
        let mut server = rfc7677_server(&store);
        let step = server
            .step(RFC7677_CLIENT_FINAL.as_bytes(), &store)
            .expect("the RFC's proof is valid");
        assert_eq!(
            step,
            Step::Authenticated {
                user: "user".into(),
                response: RFC7677_SERVER_FINAL.as_bytes().to_vec(),
            }
        );
    }

    #[test]
    fn rfc_7677_with_the_wrong_password_fails() {
        let mut store = CredentialStore::empty().unwrap();
        let salt = BASE64.decode(RFC7677_SALT).unwrap();
        store.insert(
            "user",
            Mechanism::ScramSha256,
            ScramCredential::from_password(
                Mechanism::ScramSha256,
                b"pencil2",
                salt,
                RFC7677_ITERATIONS,
            ),
        );
        let mut server = rfc7677_server(&store);
        assert_eq!(
            server.step(RFC7677_CLIENT_FINAL.as_bytes(), &store),
            Err(AuthFailure::BadCredentials {
                user: "user".into()
            })
        );
    }

    /// The client-final of a client that echoes its nonce twice, as
    /// librdkafka before 2.6.1 does, for `user`/`password` and `server_first`.
    fn client_final_of(
        mechanism: Mechanism,
        password: &[u8],
        salt: &[u8],
        client_first_bare: &str,
        server_first: &str,
        echoed_nonce: &str,
    ) -> String {
        let salted = salted_password(mechanism, password, salt, 4096);
        let client_key = hmac(mechanism, &salted, CLIENT_KEY_LABEL);
        let stored_key = hash(mechanism, &client_key);
        let without_proof = format!("c=biws,r={echoed_nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    #[test]
    fn a_nonce_echoed_with_the_client_part_twice_is_accepted_and_no_other() {
        let salt = vec![9u8; 32];
        let mut store = CredentialStore::empty().unwrap();
        store.insert(
            "bob",
            Mechanism::ScramSha256,
            ScramCredential::from_password(Mechanism::ScramSha256, b"pw", salt.clone(), 4096),
        );
        let exchange = |echo: &dyn Fn(&str) -> String| {
            let mut server = ScramServer::new(Mechanism::ScramSha256);
            let Ok(Step::Continue(server_first)) = server.step(b"n,,n=bob,r=cnonce", &store) else {
                panic!("client-first refused");
            };
            let server_first = String::from_utf8(server_first).unwrap();
            let nonce = server_first[2..].split(',').next().unwrap().to_string();
            let last = client_final_of(
                Mechanism::ScramSha256,
                b"pw",
                &salt,
                "n=bob,r=cnonce",
                &server_first,
                &echo(&nonce),
            );
            server.step(last.as_bytes(), &store)
        };
        assert!(matches!(
            exchange(&|nonce| nonce.to_string()),
            Ok(Step::Authenticated { .. })
        ));
        assert!(matches!(
            exchange(&|nonce| format!("cnonce{nonce}")),
            Ok(Step::Authenticated { .. })
        ));
        for other in [
            |nonce: &str| format!("x{nonce}"),
            |nonce: &str| format!("cnoncecnonce{nonce}"),
            |nonce: &str| nonce[..nonce.len() - 1].to_string(),
        ] {
            assert!(matches!(
                exchange(&other),
                Err(AuthFailure::BadCredentials { .. })
            ));
        }
    }

    #[test]
    fn a_changed_nonce_or_proof_fails() {
        let store = store_with_rfc_user();
        let other_nonce = RFC7677_CLIENT_FINAL.replace("k0,", "k1,");
        let mut server = rfc7677_server(&store);
        assert!(matches!(
            server.step(other_nonce.as_bytes(), &store),
            Err(AuthFailure::BadCredentials { .. })
        ));
        let short_proof = RFC7677_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        let mut server = rfc7677_server(&store);
        assert!(matches!(
            server.step(short_proof.as_bytes(), &store),
            Err(AuthFailure::BadCredentials { .. })
        ));
        let truncated = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzb";
        let mut server = rfc7677_server(&store);
        assert!(server.step(truncated.as_bytes(), &store).is_err());
        // Once failed, the exchange is over.
        assert!(server
            .step(RFC7677_CLIENT_FINAL.as_bytes(), &store)
            .is_err());
    }

    #[test]
    fn the_rfc_7677_keys_come_from_the_password() {
        // Client-side derivation of the RFC's proof, to check the key
        // functions on their own: proof = ClientKey XOR ClientSignature.
        let salt = BASE64.decode(RFC7677_SALT).unwrap();
        let salted = salted_password(Mechanism::ScramSha256, b"pencil", &salt, 4096);
        let client_key = hmac(Mechanism::ScramSha256, &salted, CLIENT_KEY_LABEL);
        let stored_key = hash(Mechanism::ScramSha256, &client_key);
        let auth_message = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO{RFC7677_SERVER_NONCE_TAIL},\
             s={RFC7677_SALT},i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO{RFC7677_SERVER_NONCE_TAIL}"
        );
        let signature = hmac(Mechanism::ScramSha256, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            BASE64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(password_matches(
            Mechanism::ScramSha256,
            &rfc7677_credential(),
            b"pencil"
        ));
        assert!(!password_matches(
            Mechanism::ScramSha256,
            &rfc7677_credential(),
            b"pencil "
        ));
    }

    #[test]
    fn client_first_is_parsed_as_rfc_5802_writes_it() {
        // RFC 5802 section 5's example (SCRAM-SHA-1: only the syntax is
        // the same for every hash).
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.user, "user");
        assert_eq!(first.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(first.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let last = parse_client_final(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        )
        .unwrap();
        assert_eq!(last.channel_binding, b"n,,");
        assert_eq!(last.nonce, "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j");
        assert_eq!(last.proof.len(), 20);
        assert_eq!(
            last.without_proof,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
        );
    }

    #[test]
    fn client_first_variants_and_refusals() {
        let escaped = parse_client_first(b"y,a=a=2Cb,n=a=2Cb,r=abc").unwrap();
        assert_eq!(escaped.user, "a,b");
        assert_eq!(escaped.gs2_header, "y,a=a=2Cb,");
        assert_eq!(
            parse_client_first(b"n,a=other,n=user,r=abc"),
            Err(AuthFailure::Unsupported(
                "an authorization id other than the user"
            ))
        );
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=user,r=abc"),
            Err(AuthFailure::Unsupported("channel binding"))
        );
        assert_eq!(
            parse_client_first(b"n,,n=user,r=abc,tokenauth=true"),
            Err(AuthFailure::Unsupported("delegation tokens"))
        );
        assert_eq!(
            parse_client_first(b"n,,m=ext,n=user,r=abc"),
            Err(AuthFailure::Malformed("client-first has no user name"))
        );
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,r=abc,n=user",
            b"\xff,,n=user,r=abc",
        ] {
            assert!(
                matches!(parse_client_first(bad), Err(AuthFailure::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_user = format!("n,,n={},r=abc", "u".repeat(SASL_USER_BYTES_MAX + 1));
        assert!(parse_client_first(long_user.as_bytes()).is_err());
    }

    #[test]
    fn client_final_refusals() {
        for bad in [
            &b""[..],
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=***",
            b"c=***,r=abc,p=AAAA",
            b"r=abc,p=AAAA",
            b"c=biws,p=AAAA",
        ] {
            assert!(
                matches!(parse_client_final(bad), Err(AuthFailure::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_unknown_user_gets_a_steady_salt_and_fails_at_the_proof() {
        let store = store_with_rfc_user();
        let server_first = |user: &str| {
            let mut server = ScramServer::new(Mechanism::ScramSha256);
            let message = format!("n,,n={user},r=abc");
            let Ok(Step::Continue(response)) = server.step(message.as_bytes(), &store) else {
                panic!("client-first of {user} refused");
            };
            let text = String::from_utf8(response).unwrap();
            let salt = text.split(',').nth(1).unwrap().to_string();
            (server, salt)
        };
        let (_, salt_a) = server_first("nobody");
        let (mut server, salt_b) = server_first("nobody");
        assert_eq!(salt_a, salt_b, "an unknown user's salt must not change");
        let (_, other) = server_first("somebody-else");
        assert_ne!(salt_a, other);
        let final_message = "c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            server.step(final_message.as_bytes(), &store),
            Err(AuthFailure::BadCredentials {
                user: "nobody".into()
            })
        );
    }

    #[test]
    fn a_full_sha_512_exchange_round_trips() {
        let mut store = CredentialStore::empty().unwrap();
        let salt = vec![7u8; 32];
        store.insert(
            "alice",
            Mechanism::ScramSha512,
            ScramCredential::from_password(Mechanism::ScramSha512, b"secret", salt.clone(), 4096),
        );
        let mut server = ScramServer::new(Mechanism::ScramSha512);
        let Ok(Step::Continue(server_first)) = server.step(b"n,,n=alice,r=clientnonce", &store)
        else {
            panic!("client-first refused");
        };
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = server_first
            .strip_prefix("r=")
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        assert!(nonce.starts_with("clientnonce") && nonce.len() > "clientnonce".len());
        // The client's side, from the password.
        let salted = salted_password(Mechanism::ScramSha512, b"secret", &salt, 4096);
        let client_key = hmac(Mechanism::ScramSha512, &salted, CLIENT_KEY_LABEL);
        let stored_key = hash(Mechanism::ScramSha512, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=alice,r=clientnonce,{server_first},{without_proof}");
        let signature = hmac(Mechanism::ScramSha512, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
        let Ok(Step::Authenticated { user, response }) =
            server.step(client_final.as_bytes(), &store)
        else {
            panic!("client-final refused");
        };
        assert_eq!(user, "alice");
        let server_key = hmac(Mechanism::ScramSha512, &salted, SERVER_KEY_LABEL);
        let expected = hmac(Mechanism::ScramSha512, &server_key, auth_message.as_bytes());
        assert_eq!(
            response,
            format!("v={}", BASE64.encode(expected)).into_bytes()
        );
    }
}
