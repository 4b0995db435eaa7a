//! InitProducerId. Idempotent producers get a fresh producer id from the
//! controller, or an epoch bump when they name their current id and epoch
//! (KIP-360). Transactional producers are served by the coordinator of
//! their transactional id.

use std::rc::Rc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::constants::PRODUCER_ID_WAIT_MS;
use crate::errors::code;
use crate::txn::{self, TxnRequest, TxnResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// Versions below this know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(transactional_id) = &request.transactional_id {
        let id = transactional_id.to_string();
        if id.is_empty() {
            response.error_code = code::INVALID_REQUEST;
            return Some(encode(&response, header.request_api_version));
        }
        if !session.may_on_transactional_id(broker, Operation::Write, &id) {
            response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            return Some(encode(&response, version));
        }
        let init = TxnRequest::InitProducerId {
            transactional_id: id.clone(),
            timeout_ms: request.transaction_timeout_ms,
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
        };
        match txn::route(broker, &id, init).await {
            Ok(TxnResponse::Producer {
                error_code,
                producer_id,
                producer_epoch,
            }) => {
                response.error_code =
                    if error_code == code::PRODUCER_FENCED && version < PRODUCER_FENCED_VERSION {
                        code::INVALID_PRODUCER_EPOCH
                    } else {
                        error_code
                    };
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = producer_epoch;
            }
            Ok(_) => response.error_code = code::UNKNOWN_SERVER_ERROR,
            Err(error_code) => response.error_code = error_code,
        }
        return Some(encode(&response, version));
    }
    // An idempotent producer takes IDEMPOTENT_WRITE on the cluster, or
    // WRITE on some topic (Kafka 2.8 and later, KIP-679).
    let may_be_idempotent = session.may_on_cluster(broker, Operation::IdempotentWrite)
        || broker.config.authorizer.as_ref().is_none_or(|authorizer| {
            authorizer.authorize_any(
                &session.requester(),
                Operation::Write,
                crate::acl::ResourceType::Topic,
            )
        });
    if !may_be_idempotent {
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        return Some(encode(&response, version));
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
        .controller_call_within(ControllerRequest::AllocateProducerId, PRODUCER_ID_WAIT_MS)
        .await
    {
        Some(Some(ShardResponse::ProducerId(id))) if id >= 0 => {
            response.error_code = code::NONE;
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        None => response.error_code = code::COORDINATOR_LOAD_IN_PROGRESS,
        Some(_) => response.error_code = code::KAFKA_STORAGE_ERROR,
    }
    Some(encode(&response, header.request_api_version))
}
