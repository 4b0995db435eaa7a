//! ListTransactions: every shard's transactional ids, filtered by state,
//! producer id and (v1, KIP-994) how long the transaction has been running.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, TransactionalId,
};
use sluice_engine::ShardId;

use super::{encode, str_bytes};
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::txn::{self, TxnRequest, TxnResponse, TxnStatus};

pub const VERSIONS: (i16, i16) = (0, 1);

/// First version with the duration filter.
const DURATION_FILTER_VERSION: i16 = 1;

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: ListTransactionsRequest,
) -> Option<Vec<Bytes>> {
    let version = header.request_api_version;
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &request.state_filters {
        match TxnStatus::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    if !request.state_filters.is_empty() && states.is_empty() {
        // Only unknown states: nothing can match.
        return Some(encode(&response, version));
    }
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|id| id.0).collect();
    let min_duration_ms = if version >= DURATION_FILTER_VERSION {
        request.duration_filter
    } else {
        -1
    };
    let calls = (0..broker.shards()).map(|shard| {
        txn::call(
            broker,
            ShardId(shard as u16),
            TxnRequest::List {
                states: states.clone(),
                producer_ids: producer_ids.clone(),
                min_duration_ms,
            },
        )
    });
    for answer in futures_lite_join_all(calls.collect()).await {
        match answer {
            Some(TxnResponse::List(Ok(listed))) => {
                for entry in listed {
                    let mut state = TransactionState::default();
                    state.transactional_id = TransactionalId(str_bytes(&entry.transactional_id));
                    state.producer_id = ProducerId(entry.producer_id);
                    state.transaction_state = str_bytes(entry.state);
                    response.transaction_states.push(state);
                }
            }
            Some(TxnResponse::List(Err(error_code))) => response.error_code = error_code,
            _ => response.error_code = code::COORDINATOR_NOT_AVAILABLE,
        }
    }
    Some(encode(&response, version))
}
