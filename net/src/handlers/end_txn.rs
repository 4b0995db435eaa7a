//! EndTxn: commit or abort the producer's transaction. v5 is transaction
//! version 2 (KIP-890): the epoch is bumped at every end and returned.

use std::rc::Rc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId, RequestHeader};

use super::add_partitions_to_txn::fenced_for;
use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::txn::{self, TxnRequest, TxnResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version of transaction version 2.
const EPOCH_BUMP_VERSION: i16 = 5;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: EndTxnRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let id = request.transactional_id.to_string();
    if id.is_empty() {
        response.error_code = code::INVALID_REQUEST;
        return Some(encode(&response, version));
    }
    if !session.may_on_transactional_id(broker, Operation::Write, &id) {
        response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return Some(encode(&response, version));
    }
    let end = TxnRequest::EndTxn {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        commit: request.committed,
        bump_epoch: version >= EPOCH_BUMP_VERSION,
    };
    match txn::route(broker, &id, end).await {
        Ok(TxnResponse::Producer {
            error_code,
            producer_id,
            producer_epoch,
        }) => {
            response.error_code = fenced_for(version, error_code);
            if version >= EPOCH_BUMP_VERSION {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = producer_epoch;
            }
        }
        Ok(_) => response.error_code = code::UNKNOWN_SERVER_ERROR,
        Err(error_code) => response.error_code = error_code,
    }
    Some(encode(&response, version))
}
