//! AlterUserScramCredentials (API key 51, KIP-554).

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AlterUserScramCredentials versions Sluice decodes; the only version is
/// flexible.
pub const ALTER_USER_SCRAM_CREDENTIALS_VERSIONS: (i16, i16) = (0, 0);

/// An empty tag section: its count, zero.
const LIBRDKAFKA_REPEATED_TAGS: [u8; 1] = [0];

/// Decodes an AlterUserScramCredentials request body.
pub fn decode(
    r: &mut Reader,
    version: i16,
) -> Result<AlterUserScramCredentialsRequest, DecodeError> {
    check_version(
        ApiKey::AlterUserScramCredentials,
        version,
        ALTER_USER_SCRAM_CREDENTIALS_VERSIONS,
    )?;
    let mut req = AlterUserScramCredentialsRequest::default();
    req.deletions = r.compact_array(deletion)?;
    req.upsertions = r.compact_array(upsertion)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    // librdkafka (2.12 and before) writes the request's empty tag section
    // twice, and Kafka, which ignores bytes after a request, answers it:
    // one trailing empty tag section is taken, anything else stays an
    // error.
    if r.remaining() == LIBRDKAFKA_REPEATED_TAGS.len() {
        let trailing = r.u8()?;
        if trailing != LIBRDKAFKA_REPEATED_TAGS[0] {
            return Err(DecodeError::TrailingBytes(1));
        }
    }
    Ok(req)
}

fn deletion(r: &mut Reader) -> Result<ScramCredentialDeletion, DecodeError> {
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = r.compact_string()?;
    deletion.mechanism = r.i8()?;
    r.tagged_fields(&mut deletion.unknown_tagged_fields)?;
    Ok(deletion)
}

fn upsertion(r: &mut Reader) -> Result<ScramCredentialUpsertion, DecodeError> {
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = r.compact_string()?;
    upsertion.mechanism = r.i8()?;
    upsertion.iterations = r.i32()?;
    upsertion.salt = r.compact_bytes()?;
    upsertion.salted_password = r.compact_bytes()?;
    r.tagged_fields(&mut upsertion.unknown_tagged_fields)?;
    Ok(upsertion)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    use kafka_protocol::messages::AlterUserScramCredentialsRequest;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::super::{decode_request, DecodeError, Request};

    fn body(extra: &[u8]) -> Bytes {
        let mut upsertion = ScramCredentialUpsertion::default();
        upsertion.name = StrBytes::from_static_str("bob");
        upsertion.mechanism = 1;
        upsertion.iterations = 4096;
        upsertion.salt = Bytes::from_static(b"salt-salt");
        upsertion.salted_password = Bytes::from_static(&[3; 32]);
        let mut request = AlterUserScramCredentialsRequest::default();
        request.upsertions = vec![upsertion];
        let mut buffer = BytesMut::new();
        request.encode(&mut buffer, 0).unwrap();
        buffer.extend_from_slice(extra);
        buffer.freeze()
    }

    #[test]
    fn librdkafkas_repeated_tag_section_is_taken_and_nothing_else() {
        let decoded = decode_request(51, 0, body(&[0])).unwrap();
        let Request::AlterUserScramCredentials(request) = decoded else {
            panic!("decoded as another request");
        };
        assert_eq!(request.upsertions.len(), 1);
        assert_eq!(request.upsertions[0].iterations, 4096);
        assert!(decode_request(51, 0, body(&[])).is_ok());
        assert!(matches!(
            decode_request(51, 0, body(&[1])),
            Err(DecodeError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_request(51, 0, body(&[0, 0])),
            Err(DecodeError::TrailingBytes(2))
        ));
    }
}
