//! ApiVersions: the APIs and versions this broker implements.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use super::{encode, IMPLEMENTED};
use crate::broker::Broker;
use crate::errors::code;
use crate::wire::ResponseFrame;

pub const VERSIONS: (i16, i16) = (0, 4);

fn response(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.api_keys = IMPLEMENTED
        .iter()
        .map(|(key, (min, max))| {
            let mut version = ApiVersion::default();
            version.api_key = *key as i16;
            version.min_version = *min;
            version.max_version = *max;
            version
        })
        .collect();
    // No supported/finalized features and the default epoch: nothing tagged
    // is sent, which older librdkafka builds need (they mis-skip tags).
    response.finalized_features_epoch = -1;
    response
}

pub async fn handle(
    _broker: &Rc<Broker>,
    header: &RequestHeader,
    _request: ApiVersionsRequest,
) -> Option<Vec<Bytes>> {
    Some(encode(&response(code::NONE), header.request_api_version))
}

/// The answer to an ApiVersions request of a version Sluice does not know:
/// version 0 layout, UNSUPPORTED_VERSION, and the full list, as Kafka does.
pub fn unsupported_version_response(correlation_id: i32) -> ResponseFrame {
    let body = encode(&response(code::UNSUPPORTED_VERSION), 0);
    ResponseFrame::new(
        correlation_id,
        ApiKey::ApiVersions.response_header_version(0),
        body,
    )
}
