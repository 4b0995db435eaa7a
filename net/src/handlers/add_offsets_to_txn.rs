//! AddOffsetsToTxn: puts the group's `__consumer_offsets` partition into
//! the transaction, so its TxnOffsetCommit gets the transaction's marker.

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, RequestHeader};

use super::add_partitions_to_txn::fenced_for;
use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups;
use crate::txn::{self, TxnRequest, TxnResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 4);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AddOffsetsToTxnRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = AddOffsetsToTxnResponse::default();
    let id = request.transactional_id.to_string();
    response.error_code = if id.is_empty() {
        code::INVALID_REQUEST
    } else if !session.may_on_transactional_id(broker, Operation::Write, &id) {
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !session.may_on_group(broker, Operation::Read, request.group_id.as_str()) {
        code::GROUP_AUTHORIZATION_FAILED
    } else {
        match groups::ensure_offsets_topic(broker).await {
            Err(error_code) => error_code,
            Ok(partitions) => {
                let partition = sluice_engine::shard::coordinator_partition(
                    request.group_id.as_str(),
                    partitions,
                );
                let add = TxnRequest::AddPartitions {
                    transactional_id: id.clone(),
                    producer_id: request.producer_id.0,
                    producer_epoch: request.producer_epoch,
                    partitions: vec![(groups::OFFSETS_TOPIC.to_string(), partition)],
                    verify_only: false,
                };
                match txn::route(broker, &id, add).await {
                    Ok(TxnResponse::AddPartitions(Ok(errors))) => errors
                        .into_iter()
                        .find(|error_code| *error_code != code::NONE)
                        .unwrap_or(code::NONE),
                    Ok(TxnResponse::AddPartitions(Err(error_code))) => error_code,
                    Ok(_) => code::UNKNOWN_SERVER_ERROR,
                    Err(error_code) => error_code,
                }
            }
        }
    };
    response.error_code = fenced_for(version, response.error_code);
    Some(encode(&response, version))
}
