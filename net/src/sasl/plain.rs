//! PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`,
//! checked against the user's stored SCRAM credential. Without TLS the
//! password crosses the network in the clear, as it does with Kafka's
//! SASL_PLAINTEXT listener; it is never kept or logged.

use super::credentials::CredentialStore;
use super::{scram, AuthFailure, Mechanism};
use crate::constants::{SASL_PASSWORD_BYTES_MAX, SASL_USER_BYTES_MAX};

/// The parts of a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub authzid: &'a str,
    pub user: &'a str,
    pub password: &'a [u8],
}

/// Splits a PLAIN message. The password stays bytes: it is only hashed.
pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, AuthFailure> {
    let mut parts = message.splitn(3, |byte| *byte == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed(
            "PLAIN needs authzid NUL user NUL password",
        ));
    };
    let authzid = std::str::from_utf8(authzid)
        .map_err(|_| AuthFailure::Malformed("PLAIN's authorization id is not UTF-8"))?;
    let user = std::str::from_utf8(user)
        .map_err(|_| AuthFailure::Malformed("PLAIN's user name is not UTF-8"))?;
    if user.is_empty() || user.len() > SASL_USER_BYTES_MAX {
        return Err(AuthFailure::Malformed(
            "PLAIN's user name is empty or too long",
        ));
    }
    if password.is_empty() || password.len() > SASL_PASSWORD_BYTES_MAX {
        return Err(AuthFailure::Malformed(
            "PLAIN's password is empty or too long",
        ));
    }
    // A NUL inside the password is the sign of a fourth field.
    if password.contains(&0) {
        return Err(AuthFailure::Malformed("PLAIN has more than three fields"));
    }
    Ok(PlainMessage {
        authzid,
        user,
        password,
    })
}

/// Checks a PLAIN message; the authenticated user on success. An unknown
/// user's password is checked against a dummy credential at the same cost
/// as a known user's, and fails.
pub fn authenticate(message: &[u8], store: &CredentialStore) -> Result<String, AuthFailure> {
    let plain = parse(message)?;
    // Kafka lets a user act only as itself.
    if !plain.authzid.is_empty() && plain.authzid != plain.user {
        return Err(AuthFailure::Unsupported(
            "an authorization id other than the user",
        ));
    }
    let (mechanism, credential, known) = match store.any_of(plain.user) {
        Some((mechanism, credential)) => (mechanism, credential.clone(), true),
        None => (
            Mechanism::ScramSha256,
            store.dummy(plain.user, Mechanism::ScramSha256),
            false,
        ),
    };
    let matches = scram::password_matches(mechanism, &credential, plain.password);
    if matches && known {
        Ok(plain.user.to_string())
    } else {
        Err(AuthFailure::BadCredentials {
            user: plain.user.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::ScramCredential;

    fn store() -> CredentialStore {
        let mut store = CredentialStore::empty().unwrap();
        store.insert(
            "alice",
            Mechanism::ScramSha512,
            ScramCredential::from_password(
                Mechanism::ScramSha512,
                b"wonderland",
                vec![3; 32],
                4096,
            ),
        );
        store
    }

    #[test]
    fn rfc_4616_messages_are_split() {
        assert_eq!(
            parse(b"\0tim\0tanstaaftanstaaf"),
            Ok(PlainMessage {
                authzid: "",
                user: "tim",
                password: b"tanstaaftanstaaf",
            })
        );
        assert_eq!(
            parse(b"Ursel\0Kurt\0xipj3plmq").map(|plain| plain.authzid),
            Ok("Ursel")
        );
        for bad in [
            &b""[..],
            b"user",
            b"\0user",
            b"\0\0password",
            b"\0user\0",
            b"\0user\0pass\0word",
            b"\0\xff\0password",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [&b"\0u\0"[..], &[b'p'; SASL_PASSWORD_BYTES_MAX + 1]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn the_password_is_checked_against_the_scram_credential() {
        let store = store();
        assert_eq!(
            authenticate(b"\0alice\0wonderland", &store),
            Ok("alice".into())
        );
        assert_eq!(
            authenticate(b"alice\0alice\0wonderland", &store),
            Ok("alice".into())
        );
        let wrong = authenticate(b"\0alice\0looking-glass", &store);
        let unknown = authenticate(b"\0carol\0wonderland", &store);
        // The same failure, but for the name, whether the user exists or not.
        assert_eq!(
            wrong,
            Err(AuthFailure::BadCredentials {
                user: "alice".into()
            })
        );
        assert_eq!(
            unknown,
            Err(AuthFailure::BadCredentials {
                user: "carol".into()
            })
        );
        assert!(matches!(
            authenticate(b"bob\0alice\0wonderland", &store),
            Err(AuthFailure::Unsupported(_))
        ));
    }
}
