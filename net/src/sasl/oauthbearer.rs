//! SASL OAUTHBEARER (RFC 7628; Kafka's KIP-255) with Kafka's *unsecured*
//! token validation: the bearer token is a JSON Web Token whose header says
//! `"alg":"none"` and whose signature is empty, and the broker checks only
//! its claims — a subject (the principal), an expiry in the future, an
//! issue time not in the future. Nothing proves who made the token, so
//! this is for development and tests, as Kafka's own default validator is,
//! and the broker offers it only when `sasl_oauthbearer_unsecured_jwt` is
//! set beside `OAUTHBEARER` in `sasl_enabled_mechanisms`.
//!
//! The client's one message (RFC 7628 section 3.1) is a GS2 header, then
//! key=value pairs each ended by 0x01, then 0x01:
//! `n,,\x01auth=Bearer <token>\x01\x01`. Extensions (other keys) are
//! allowed and ignored, as Kafka ignores those no handler claims.

use base64::Engine;

use super::AuthFailure;

/// The separator of RFC 7628's key/value pairs.
const KV_SEPARATOR: char = '\u{1}';
/// How far a token's `exp` may lie in the past and its `iat` in the future
/// (Kafka's `unsecuredValidatorAllowableClockSkewMs` defaults to 0).
pub const CLOCK_SKEW_MS: i64 = 0;
/// The longest client message read: a token with a few claims is well
/// under a kilobyte; the SASL frame bound is the outer limit.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// The claim that names the principal (Kafka's
/// `unsecuredValidatorPrincipalClaimName` default).
const PRINCIPAL_CLAIM: &str = "sub";
const MILLIS_PER_SECOND: f64 = 1000.0;

/// A token that passed: who it names and when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub principal: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Checks the client's message at `now_ms` (milliseconds since the Unix
/// epoch). The failure names what was wrong, never the token.
pub fn authenticate(message: &[u8], now_ms: i64) -> Result<Token, AuthFailure> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(AuthFailure::Malformed("OAUTHBEARER message too long"));
    }
    let text = std::str::from_utf8(message)
        .map_err(|_| AuthFailure::Malformed("OAUTHBEARER message is not UTF-8"))?;
    let token = bearer_token(text)?;
    validate_unsecured(token, now_ms)
}

/// The token of the `auth` pair, after checking the GS2 header (no
/// channel binding; an authorization id, if any, is checked against the
/// principal by the caller's rules: here it must be absent).
fn bearer_token(text: &str) -> Result<&str, AuthFailure> {
    let (header, pairs) = text
        .split_once(KV_SEPARATOR)
        .ok_or(AuthFailure::Malformed("no key/value pairs"))?;
    match header {
        "n,," | "y,," => {}
        _ if header.starts_with("p=") => {
            return Err(AuthFailure::Unsupported("channel binding"));
        }
        _ if header.starts_with("n,a=") || header.starts_with("y,a=") => {
            return Err(AuthFailure::Unsupported("an authorization id"));
        }
        _ => return Err(AuthFailure::Malformed("GS2 header")),
    }
    // Each pair ends with 0x01, and the message with one more.
    let pairs = pairs
        .strip_suffix(KV_SEPARATOR)
        .filter(|pairs| pairs.is_empty() || pairs.ends_with(KV_SEPARATOR))
        .ok_or(AuthFailure::Malformed("message does not end with 0x01"))?;
    let mut token = None;
    for pair in pairs.split_terminator(KV_SEPARATOR) {
        let (key, value) = pair
            .split_once('=')
            .ok_or(AuthFailure::Malformed("a pair without '='"))?;
        if key == "auth" {
            if token.is_some() {
                return Err(AuthFailure::Malformed("two auth pairs"));
            }
            let (scheme, bearer) = value
                .split_once(' ')
                .ok_or(AuthFailure::Malformed("auth is not 'Bearer <token>'"))?;
            if !scheme.eq_ignore_ascii_case("Bearer") {
                return Err(AuthFailure::Malformed("auth scheme is not Bearer"));
            }
            token = Some(bearer.trim());
        }
    }
    token
        .filter(|token| !token.is_empty())
        .ok_or(AuthFailure::Malformed("no auth pair"))
}

/// Kafka's unsecured JWS: `base64url(header).base64url(claims).` with
/// `"alg":"none"` and an empty signature; claims checked at `now_ms`.
fn validate_unsecured(token: &str, now_ms: i64) -> Result<Token, AuthFailure> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed(
            "a token is three dot-separated parts",
        ));
    };
    if !signature.is_empty() {
        return Err(AuthFailure::Unsupported("signed tokens"));
    }
    let header = json_object(header, "token header")?;
    if header.get("alg").and_then(serde_json::Value::as_str) != Some("none") {
        return Err(AuthFailure::Unsupported(
            "a token algorithm other than none",
        ));
    }
    let claims = json_object(claims, "token claims")?;
    let principal = claims
        .get(PRINCIPAL_CLAIM)
        .and_then(serde_json::Value::as_str)
        .filter(|principal| !principal.is_empty())
        .ok_or(AuthFailure::Malformed("no sub claim"))?;
    super::credentials::check_user_name(principal)
        .map_err(|_| AuthFailure::Malformed("the sub claim is not a valid user name"))?;
    let expires_at_ms = claims
        .get("exp")
        .and_then(seconds_to_ms)
        .ok_or(AuthFailure::Malformed("no numeric exp claim"))?;
    if expires_at_ms.saturating_add(CLOCK_SKEW_MS) <= now_ms {
        return Err(AuthFailure::BadCredentials {
            user: principal.to_string(),
        });
    }
    if let Some(issued_at_ms) = claims.get("iat") {
        let issued_at_ms =
            seconds_to_ms(issued_at_ms).ok_or(AuthFailure::Malformed("iat is not a number"))?;
        if issued_at_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return Err(AuthFailure::BadCredentials {
                user: principal.to_string(),
            });
        }
    }
    Ok(Token {
        principal: principal.to_string(),
        expires_at_ms,
    })
}

/// A JWT part: base64url without padding (padding tolerated), a JSON
/// object.
fn json_object(
    part: &str,
    what: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, AuthFailure> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthFailure::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        _ => Err(AuthFailure::Malformed(what)),
    }
}

/// A JWT NumericDate (seconds since the epoch, maybe fractional) in
/// milliseconds.
fn seconds_to_ms(value: &serde_json::Value) -> Option<i64> {
    let seconds = value.as_f64()?;
    let millis = (seconds * MILLIS_PER_SECOND).round();
    (millis.is_finite() && millis.abs() < i64::MAX as f64).then_some(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn part(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn message(header: &str, claims: &str) -> Vec<u8> {
        format!(
            "n,,\u{1}auth=Bearer {}.{}.\u{1}\u{1}",
            part(header),
            part(claims)
        )
        .into_bytes()
    }

    #[test]
    fn an_unsecured_token_names_its_subject() {
        let claims = r#"{"sub":"alice","iat":1799999990,"exp":1800003600,"scope":"x"}"#;
        let token = authenticate(&message(r#"{"alg":"none"}"#, claims), NOW_MS).unwrap();
        assert_eq!(
            token,
            Token {
                principal: "alice".into(),
                expires_at_ms: 1_800_003_600_000
            }
        );
        // Extensions are ignored; padding is tolerated.
        let with_extension = format!(
            "n,,\u{1}host=broker\u{1}auth=Bearer {}==.{}.\u{1}\u{1}",
            part(r#"{"alg":"none"}"#),
            part(claims)
        );
        assert!(authenticate(with_extension.as_bytes(), NOW_MS).is_ok());
    }

    #[test]
    fn expired_early_and_malformed_tokens_are_refused() {
        let none = r#"{"alg":"none"}"#;
        let refused = [
            (
                message(none, r#"{"sub":"alice","exp":1799999999}"#),
                "expired",
            ),
            (
                message(none, r#"{"sub":"alice","exp":1800003600,"iat":1800000001}"#),
                "issued in the future",
            ),
            (message(none, r#"{"exp":1800003600}"#), "no subject"),
            (message(none, r#"{"sub":"alice"}"#), "no expiry"),
            (
                message(r#"{"alg":"HS256"}"#, r#"{"sub":"a","exp":1800003600}"#),
                "signed algorithm",
            ),
            (message(none, "[1,2]"), "claims not an object"),
            (b"n,,\x01auth=Bearer abc\x01\x01".to_vec(), "not a JWT"),
            (b"n,,\x01host=x\x01\x01".to_vec(), "no auth pair"),
            (b"n,,\x01auth=Basic abc\x01\x01".to_vec(), "not Bearer"),
            (
                b"p=tls-unique,,\x01auth=Bearer a..\x01\x01".to_vec(),
                "binding",
            ),
            (b"n,a=bob,\x01auth=Bearer a..\x01\x01".to_vec(), "authzid"),
            (b"n,,\x01auth=Bearer a..\x01".to_vec(), "no final 0x01"),
            (vec![0xff, 0xfe], "not UTF-8"),
            (vec![b'a'; MESSAGE_BYTES_MAX + 1], "too long"),
        ];
        for (message, why) in refused {
            assert!(authenticate(&message, NOW_MS).is_err(), "{why}");
        }
        let signed = format!(
            "n,,\u{1}auth=Bearer {}.{}.c2ln\u{1}\u{1}",
            part(none),
            part(r#"{"sub":"alice","exp":1800003600}"#)
        );
        assert_eq!(
            authenticate(signed.as_bytes(), NOW_MS),
            Err(AuthFailure::Unsupported("signed tokens"))
        );
    }
}
