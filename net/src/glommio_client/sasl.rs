//! SASL login on a glommio [`Connection`] (KIP-43, KIP-152): after the
//! ApiVersions exchange, a SaslHandshake v1 names the mechanism and
//! SaslAuthenticate v1 requests carry its messages, one round trip for
//! PLAIN and two for SCRAM. Brokers of a cluster log in to each other with
//! it on a SASL listener. The SCRAM messages come from
//! [`crate::sasl::scram_client`]; the responses are read by bounds-checked
//! decoders. No error names the password.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use crate::client::sasl::{plain_message, SaslCredentials};
use crate::codec::{DecodeError, Reader};
use crate::errors::code;
use crate::sasl::scram_client::ScramClient;

/// Logs `connection` in with `credentials`; the error says why not, in one
/// line without the password.
pub async fn authenticate(
    connection: &Connection,
    credentials: &SaslCredentials,
) -> Result<(), String> {
    let failed = |reason: String| {
        format!(
            "{} login as {} at {} failed: {reason}",
            credentials.mechanism,
            credentials.user,
            connection.address()
        )
    };
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str(credentials.mechanism.name());
    let (version, body) = connection
        .call(ApiKey::SaslHandshake, &handshake)
        .await
        .map_err(|error| failed(error.to_string()))?;
    let error_code = decode_handshake(body)
        .map_err(|error| failed(format!("SaslHandshake v{version} answer: {error}")))?;
    if error_code != code::NONE {
        return Err(failed(format!("SaslHandshake answered error {error_code}")));
    }
    let step = |message: Vec<u8>| async {
        let mut request = SaslAuthenticateRequest::default();
        request.auth_bytes = Bytes::from(message);
        let (version, body) = connection
            .call(ApiKey::SaslAuthenticate, &request)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let (error_code, message, bytes, lifetime_ms) = decode_authenticate(body)
            .map_err(|error| failed(format!("SaslAuthenticate v{version} answer: {error}")))?;
        if error_code != code::NONE {
            return Err(failed(format!(
                "SaslAuthenticate answered error {error_code}{}",
                message.map(|text| format!(": {text}")).unwrap_or_default()
            )));
        }
        // The last step's answer states the session's lifetime (KIP-368);
        // zero when sessions do not expire.
        if let Ok(lifetime_ms) = u64::try_from(lifetime_ms) {
            if lifetime_ms > 0 {
                connection.session_lasts(std::time::Duration::from_millis(lifetime_ms));
            }
        }
        Ok(bytes)
    };
    let password = credentials.password().as_bytes();
    if !credentials.mechanism.is_scram() {
        step(plain_message(credentials)).await?;
        return Ok(());
    }
    let (client, first) = ScramClient::start(credentials.mechanism, &credentials.user)
        .map_err(|failure| failed(failure.to_string()))?;
    let server_first = step(first).await?;
    let (awaiting, last) = client
        .answer(&server_first, password)
        .map_err(|failure| failed(failure.to_string()))?;
    let server_final = step(last).await?;
    awaiting
        .verify(&server_final)
        .map_err(|failure| failed(failure.to_string()))
}

/// SaslHandshake v1: the error code (the mechanisms that follow are not
/// needed: the broker's own setting names one).
fn decode_handshake(body: Bytes) -> Result<i16, DecodeError> {
    let mut r = Reader::new(body);
    let error_code = r.i16()?;
    r.array(|r| r.string())?;
    r.finish()?;
    Ok(error_code)
}

/// SaslAuthenticate v1: error code, message, the mechanism's bytes and the
/// session lifetime in milliseconds.
fn decode_authenticate(body: Bytes) -> Result<(i16, Option<String>, Bytes, i64), DecodeError> {
    let mut r = Reader::new(body);
    let error_code = r.i16()?;
    let message = r.nullable_string()?.map(|text| text.to_string());
    let bytes = r.bytes()?;
    let session_lifetime_ms = r.i64()?;
    r.finish()?;
    Ok((error_code, message, bytes, session_lifetime_ms))
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    #[test]
    fn answers_are_read_and_cut_ones_refused() {
        let mut body = BytesMut::new();
        body.put_i16(0);
        body.put_i32(1);
        body.put_i16(5);
        body.put_slice(b"PLAIN");
        let body = body.freeze();
        assert_eq!(decode_handshake(body.clone()).unwrap(), 0);
        for cut in 0..body.len() {
            assert!(decode_handshake(body.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut body = BytesMut::new();
        body.put_i16(58);
        body.put_i16(4);
        body.put_slice(b"nope");
        body.put_i32(2);
        body.put_slice(b"xy");
        body.put_i64(3_600_000);
        let body = body.freeze();
        let (error_code, message, bytes, lifetime_ms) = decode_authenticate(body.clone()).unwrap();
        assert_eq!(
            (error_code, message.as_deref(), &bytes[..], lifetime_ms),
            (58, Some("nope"), &b"xy"[..], 3_600_000)
        );
        for cut in 0..body.len() {
            assert!(
                decode_authenticate(body.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }
}
