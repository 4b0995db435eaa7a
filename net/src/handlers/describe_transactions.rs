//! DescribeTransactions: the state of transactional ids, each asked of its
//! coordinator shard.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, RequestHeader,
    TopicName, TransactionalId,
};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::txn::{self, DescribedTxn, TxnRequest, TxnResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeTransactionsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let ids: Vec<String> = request
        .transactional_ids
        .iter()
        .map(|id| id.to_string())
        .collect();
    let mut per_shard: BTreeMap<_, Vec<String>> = BTreeMap::new();
    let mut described: BTreeMap<String, DescribedTxn> = BTreeMap::new();
    let failed = |id: &str, error_code| DescribedTxn {
        transactional_id: id.to_string(),
        error_code,
        state: "",
        timeout_ms: 0,
        start_ms: -1,
        producer_id: -1,
        producer_epoch: -1,
        partitions: Vec::new(),
    };
    for id in &ids {
        if !session.may_on_transactional_id(broker, Operation::Describe, id) {
            described.insert(
                id.clone(),
                failed(id, code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            );
            continue;
        }
        match txn::coordinator_shard(broker, id) {
            Ok(shard) => per_shard.entry(shard).or_default().push(id.clone()),
            Err(error_code) => {
                described.insert(id.clone(), failed(id, error_code));
            }
        }
    }
    for (shard, wanted) in per_shard {
        match txn::call(broker, shard, TxnRequest::Describe(wanted.clone())).await {
            Some(TxnResponse::Describe(list)) => {
                for entry in list {
                    described.insert(entry.transactional_id.clone(), entry);
                }
            }
            _ => {
                for id in wanted {
                    described.insert(id.clone(), failed(&id, code::COORDINATOR_NOT_AVAILABLE));
                }
            }
        }
    }
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = ids
        .iter()
        .map(|id| {
            let entry = described
                .remove(id)
                .unwrap_or_else(|| failed(id, code::UNKNOWN_SERVER_ERROR));
            let mut state = TransactionState::default();
            state.error_code = entry.error_code;
            state.transactional_id = TransactionalId(str_bytes(id));
            state.transaction_state = str_bytes(entry.state);
            state.transaction_timeout_ms = entry.timeout_ms;
            state.transaction_start_time_ms = entry.start_ms;
            state.producer_id = ProducerId(entry.producer_id);
            state.producer_epoch = entry.producer_epoch;
            state.topics = entry
                .partitions
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut data = TopicData::default();
                    data.topic = TopicName(str_bytes(&topic));
                    data.partitions = partitions;
                    data
                })
                .collect();
            state
        })
        .collect();
    Some(encode(&response, version))
}
