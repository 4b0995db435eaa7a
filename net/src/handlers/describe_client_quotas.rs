//! DescribeClientQuotas (48, KIP-546): the client quotas whose entities
//! match a filter, read from this broker's metadata image (every broker
//! applies the same metadata log). Needs DESCRIBE_CONFIGS on the cluster,
//! as Kafka asks.

use std::rc::Rc;

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    DescribeClientQuotasRequest, DescribeClientQuotasResponse, RequestHeader,
};

use super::{encode, str_bytes, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::quota::{self, FilterComponent};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 1);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeClientQuotasRequest,
) -> Option<Pieces> {
    let mut response = DescribeClientQuotasResponse::default();
    if !session.may_on_cluster(broker, Operation::DescribeConfigs) {
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        response.error_message = Some(str_bytes(
            "describing client quotas takes DESCRIBE_CONFIGS on the cluster",
        ));
        return Some(encode(&response, header.request_api_version));
    }
    let components: Vec<FilterComponent<'_>> = request
        .components
        .iter()
        .map(|component| FilterComponent {
            entity_type: component.entity_type.as_str(),
            match_type: component.match_type,
            name: component._match.as_deref(),
        })
        .collect();
    let image = broker.metadata();
    match quota::describe(&image, &components, request.strict) {
        Ok(found) => {
            response.entries = Some(
                found
                    .into_iter()
                    .map(|(entity, values)| {
                        let mut entry = EntryData::default();
                        entry.entity = quota::entity_parts(entity)
                            .into_iter()
                            .map(|(entity_type, name)| {
                                let mut part = EntityData::default();
                                part.entity_type = str_bytes(entity_type);
                                part.entity_name = name.map(str_bytes);
                                part
                            })
                            .collect();
                        entry.values = values
                            .iter()
                            .map(|(key, value)| {
                                let mut described = ValueData::default();
                                described.key = str_bytes(key);
                                described.value = value.0;
                                described
                            })
                            .collect();
                        entry
                    })
                    .collect(),
            );
        }
        Err(message) => {
            response.error_code = code::INVALID_REQUEST;
            response.error_message = Some(str_bytes(&message));
        }
    }
    Some(encode(&response, header.request_api_version))
}
