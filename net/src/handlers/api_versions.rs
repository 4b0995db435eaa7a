//! ApiVersions: the APIs and versions this broker implements, and (v3+)
//! the feature levels clients read from it.
//!
//! Features: `transaction.version` is finalized at 2, so a Kafka 4 client
//! runs transaction version 2 (KIP-890 part 2: no AddPartitionsToTxn /
//! AddOffsetsToTxn, Produce v12 and TxnOffsetCommit v5 add the partition,
//! EndTxn v5 bumps the epoch). `group.version` 1 says the consumer group
//! protocol (KIP-848) is on, which Sluice implements. `metadata.version`
//! and `kraft.version` describe a KRaft metadata log Sluice does not have;
//! no client chooses a request's behaviour from them (the Java client reads
//! only `transaction.version` from the finalized features), so they are not
//! listed. As Kafka does, ApiVersions below v4 omits supported features
//! whose minimum is 0 (older clients reject a 0 minimum; KIP-1022) and
//! finalized levels of 0 are never listed.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use super::{encode, str_bytes, IMPLEMENTED};
use crate::broker::Broker;
use crate::errors::code;
use crate::wire::Pieces;
use crate::wire::ResponseFrame;

pub const VERSIONS: (i16, i16) = (0, 4);

/// The feature Kafka 4 clients read to enable transaction version 2.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The feature that says the KIP-848 consumer group protocol is enabled.
pub const GROUP_VERSION_FEATURE: &str = "group.version";
/// Transaction versions Sluice supports; the highest is the finalized one.
pub const TRANSACTION_VERSIONS: (i16, i16) = (0, 2);
/// Group versions Sluice supports; the highest is the finalized one.
pub const GROUP_VERSIONS: (i16, i16) = (0, 1);
/// The epoch of the finalized features. They never change while Sluice
/// runs, so it is fixed; clients take features only from an epoch above
/// the highest they have seen (starting at -1), so it must be at least 0.
pub const FINALIZED_FEATURES_EPOCH: i64 = 1;
/// First ApiVersions version whose SupportedFeatures may carry a minimum of
/// 0 (KIP-1022).
const FEATURE_LEVEL_0_VERSION: i16 = 4;

/// Every feature: name and supported (min, max); the max is finalized.
const FEATURES: &[(&str, (i16, i16))] = &[
    (TRANSACTION_VERSION_FEATURE, TRANSACTION_VERSIONS),
    (GROUP_VERSION_FEATURE, GROUP_VERSIONS),
];

fn response(error_code: i16, version: i16) -> ApiVersionsResponse {
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
    // The features are tagged fields: the encoder writes them at v3+ only.
    response.supported_features = FEATURES
        .iter()
        .filter(|(_, (min, _))| *min > 0 || version >= FEATURE_LEVEL_0_VERSION)
        .map(|(name, (min, max))| {
            let mut key = SupportedFeatureKey::default();
            key.name = str_bytes(name);
            key.min_version = *min;
            key.max_version = *max;
            key
        })
        .collect();
    response.finalized_features = FEATURES
        .iter()
        .filter(|(_, (_, max))| *max > 0)
        .map(|(name, (_, max))| {
            let mut key = FinalizedFeatureKey::default();
            key.name = str_bytes(name);
            key.min_version_level = *max;
            key.max_version_level = *max;
            key
        })
        .collect();
    response.finalized_features_epoch = FINALIZED_FEATURES_EPOCH;
    response
}

pub async fn handle(
    _broker: &Rc<Broker>,
    header: &RequestHeader,
    _request: ApiVersionsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    Some(encode(&response(code::NONE, version), version))
}

/// The answer to an ApiVersions request of a version Sluice does not know:
/// version 0 layout, UNSUPPORTED_VERSION, and the full list, as Kafka does.
pub fn unsupported_version_response(correlation_id: i32) -> ResponseFrame {
    let body = encode(&response(code::UNSUPPORTED_VERSION, 0), 0);
    ResponseFrame::new(
        correlation_id,
        ApiKey::ApiVersions.response_header_version(0),
        body,
    )
}
