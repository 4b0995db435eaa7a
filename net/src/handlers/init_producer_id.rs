//! InitProducerId for idempotent (non-transactional) producers: a fresh
//! producer id from the controller, or an epoch bump for a producer that
//! names its current id and epoch (KIP-360).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use super::encode;
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> Option<Vec<Bytes>> {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        // Transactions are not implemented yet; this is the error Kafka
        // gives when no transaction coordinator can be found.
        response.error_code = code::COORDINATOR_NOT_AVAILABLE;
        return Some(encode(&response, header.request_api_version));
    }
    let bump = request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1;
    if bump {
        response.error_code = code::NONE;
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch + 1;
        return Some(encode(&response, header.request_api_version));
    }
    match broker
        .controller_call(ControllerRequest::AllocateProducerId)
        .await
    {
        Some(ShardResponse::ProducerId(id)) if id >= 0 => {
            response.error_code = code::NONE;
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        _ => response.error_code = code::KAFKA_STORAGE_ERROR,
    }
    Some(encode(&response, header.request_api_version))
}
