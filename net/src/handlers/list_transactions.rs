//! ListTransactions: every shard's transactional ids, filtered by state,
//! producer id, (v1, KIP-994) how long the transaction has been running and
//! (v2, KIP-1152) a regular expression the whole transactional id must
//! match. Kafka compiles the pattern with RE2/J; the `regex` crate follows
//! the same RE2 syntax and linear-time matching. A pattern that does not
//! compile gets INVALID_REGULAR_EXPRESSION.

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, TransactionalId,
};
use sluice_engine::ShardId;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::constants::{
    TRANSACTIONAL_ID_PATTERN_BYTES_MAX, TRANSACTIONAL_ID_PATTERN_COMPILED_BYTES_MAX,
};
use crate::errors::code;
use crate::txn::{self, TxnRequest, TxnResponse, TxnStatus};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 2);

/// First version with the duration filter.
const DURATION_FILTER_VERSION: i16 = 1;
/// First version with the transactional id pattern.
const PATTERN_FILTER_VERSION: i16 = 2;

/// The transactional id pattern of a request, anchored to whole ids;
/// `Ok(None)` when there is none (null or empty, as Kafka reads both).
fn id_pattern(pattern: Option<&str>) -> Result<Option<regex::Regex>, ()> {
    let Some(pattern) = pattern.filter(|pattern| !pattern.is_empty()) else {
        return Ok(None);
    };
    if pattern.len() > TRANSACTIONAL_ID_PATTERN_BYTES_MAX {
        return Err(());
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(TRANSACTIONAL_ID_PATTERN_COMPILED_BYTES_MAX)
        .build()
        .map(Some)
        .map_err(|_| ())
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ListTransactionsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = ListTransactionsResponse::default();
    let requested_pattern = request
        .transactional_id_pattern
        .as_ref()
        .filter(|_| version >= PATTERN_FILTER_VERSION)
        .map(|pattern| pattern.as_str());
    let Ok(id_pattern) = id_pattern(requested_pattern) else {
        response.error_code = code::INVALID_REGULAR_EXPRESSION;
        return Some(encode(&response, version));
    };
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
                    if id_pattern
                        .as_ref()
                        .is_some_and(|pattern| !pattern.is_match(&entry.transactional_id))
                    {
                        continue;
                    }
                    // Only the ids the sender may describe are listed.
                    if !session.may_on_transactional_id(
                        broker,
                        Operation::Describe,
                        &entry.transactional_id,
                    ) {
                        continue;
                    }
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
