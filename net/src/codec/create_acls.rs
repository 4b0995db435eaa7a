//! CreateAcls (API key 30).

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest};

use super::{check_version, DecodeError, Reader};

/// CreateAcls versions Sluice decodes: Kafka 4 dropped v0 (KIP-896).
pub const CREATE_ACLS_VERSIONS: (i16, i16) = (1, 3);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a CreateAcls request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<CreateAclsRequest, DecodeError> {
    check_version(ApiKey::CreateAcls, version, CREATE_ACLS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = CreateAclsRequest::default();
    req.creations = r.array_v(flexible, |r| creation(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn creation(r: &mut Reader, flexible: bool) -> Result<AclCreation, DecodeError> {
    let mut creation = AclCreation::default();
    creation.resource_type = r.i8()?;
    creation.resource_name = r.string_v(flexible)?;
    creation.resource_pattern_type = r.i8()?;
    creation.principal = r.string_v(flexible)?;
    creation.host = r.string_v(flexible)?;
    creation.operation = r.i8()?;
    creation.permission_type = r.i8()?;
    r.tagged_fields_v(flexible, &mut creation.unknown_tagged_fields)?;
    Ok(creation)
}
