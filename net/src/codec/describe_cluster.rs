//! DescribeCluster (API key 60): the admin client's view of brokers and controller.

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeCluster versions Sluice decodes.
pub const DESCRIBE_CLUSTER_VERSIONS: (i16, i16) = (0, 2);

/// Decodes a DescribeCluster request body; every version is flexible.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeClusterRequest, DecodeError> {
    check_version(ApiKey::DescribeCluster, version, DESCRIBE_CLUSTER_VERSIONS)?;
    let mut req = DescribeClusterRequest::default();
    req.include_cluster_authorized_operations = r.bool()?;
    if version >= 1 {
        req.endpoint_type = r.i8()?;
    }
    if version >= 2 {
        req.include_fenced_brokers = r.bool()?;
    }
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}
