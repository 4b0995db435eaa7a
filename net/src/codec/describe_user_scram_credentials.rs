//! DescribeUserScramCredentials (API key 50, KIP-554).

use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{ApiKey, DescribeUserScramCredentialsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeUserScramCredentials versions Sluice decodes; the only version
/// is flexible.
pub const DESCRIBE_USER_SCRAM_CREDENTIALS_VERSIONS: (i16, i16) = (0, 0);

/// Decodes a DescribeUserScramCredentials request body.
pub fn decode(
    r: &mut Reader,
    version: i16,
) -> Result<DescribeUserScramCredentialsRequest, DecodeError> {
    check_version(
        ApiKey::DescribeUserScramCredentials,
        version,
        DESCRIBE_USER_SCRAM_CREDENTIALS_VERSIONS,
    )?;
    let mut req = DescribeUserScramCredentialsRequest::default();
    // Null or empty: every user.
    req.users = r.compact_nullable_array(user)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn user(r: &mut Reader) -> Result<UserName, DecodeError> {
    let mut user = UserName::default();
    user.name = r.compact_string()?;
    r.tagged_fields(&mut user.unknown_tagged_fields)?;
    Ok(user)
}
