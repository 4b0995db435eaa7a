//! Transaction admin calls (`sluice txn ...`): listing the transactions of
//! every broker (ListTransactions) and describing one transactional id on
//! its coordinator (FindCoordinator with the transaction key type, then
//! DescribeTransactions).

use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::Admin;
use super::error::{ClientError, KafkaError};

/// FindCoordinator's key type for a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// FindCoordinator takes a batch of keys from v4 on.
const FIND_COORDINATOR_BATCH_VERSION_MIN: i16 = 4;
/// The coordinator is loading or not ready: retried a few times.
const COORDINATOR_RETRIABLE: [i16; 3] = [14, 15, 16];
const FIND_COORDINATOR_ATTEMPTS: u32 = 5;
const FIND_COORDINATOR_BACKOFF_MS: u64 = 200;

/// A transaction as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// A transaction as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is running.
    pub start_ms: i64,
    pub partitions: Vec<(String, Vec<i32>)>,
}

impl Admin {
    /// Every broker's transactions, optionally only those in one of
    /// `states` (Kafka's state names, e.g. `Ongoing`). Sorted by id.
    pub fn list_transactions(&mut self, states: &[String]) -> Result<Vec<TxnListing>, ClientError> {
        let brokers = self.metadata(Some(&[]))?.brokers;
        let mut listed: Vec<TxnListing> = Vec::new();
        for broker in brokers {
            let connection = self.connection_to(broker.node_id)?;
            let version = connection.version(ApiKey::ListTransactions)?;
            let mut request = ListTransactionsRequest::default();
            request.state_filters = states
                .iter()
                .map(|state| StrBytes::from_string(state.clone()))
                .collect();
            request.duration_filter = -1;
            let response = connection.send(&request, version)?;
            KafkaError::check(response.error_code, None)?;
            for state in response.transaction_states {
                let listing = TxnListing {
                    transactional_id: state.transactional_id.as_str().to_string(),
                    producer_id: state.producer_id.0,
                    state: state.transaction_state.as_str().to_string(),
                };
                if !listed.contains(&listing) {
                    listed.push(listing);
                }
            }
        }
        listed.sort_by(|left, right| left.transactional_id.cmp(&right.transactional_id));
        Ok(listed)
    }

    /// Describes one transactional id on its coordinator.
    pub fn describe_transaction(&mut self, id: &str) -> Result<TxnDescription, ClientError> {
        let node_id = self.find_txn_coordinator(id)?;
        let connection = self.connection_to(node_id)?;
        let version = connection.version(ApiKey::DescribeTransactions)?;
        let mut request = DescribeTransactionsRequest::default();
        request.transactional_ids = vec![TransactionalId(StrBytes::from_string(id.to_string()))];
        let response = connection.send(&request, version)?;
        let state = response
            .transaction_states
            .into_iter()
            .find(|state| state.transactional_id.as_str() == id)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::DescribeTransactions,
                message: format!("no result for transactional id '{id}'"),
            })?;
        KafkaError::check(state.error_code, None)?;
        Ok(TxnDescription {
            transactional_id: id.to_string(),
            state: state.transaction_state.as_str().to_string(),
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            timeout_ms: state.transaction_timeout_ms,
            start_ms: state.transaction_start_time_ms,
            partitions: state
                .topics
                .into_iter()
                .map(|topic| (topic.topic.as_str().to_string(), topic.partitions))
                .collect(),
        })
    }

    fn find_txn_coordinator(&mut self, id: &str) -> Result<i32, ClientError> {
        let mut attempt = 1;
        loop {
            let connection = self.bootstrap();
            let version = connection.version(ApiKey::FindCoordinator)?;
            let mut request = FindCoordinatorRequest::default();
            request.key_type = KEY_TYPE_TRANSACTION;
            let (error_code, message, node_id) = if version >= FIND_COORDINATOR_BATCH_VERSION_MIN {
                request.coordinator_keys = vec![StrBytes::from_string(id.to_string())];
                let response = connection.send(&request, version)?;
                let coordinator = response
                    .coordinators
                    .into_iter()
                    .find(|coordinator| coordinator.key.as_str() == id)
                    .ok_or_else(|| ClientError::Protocol {
                        address: connection.address().to_string(),
                        api: ApiKey::FindCoordinator,
                        message: format!("no coordinator for transactional id '{id}'"),
                    })?;
                (
                    coordinator.error_code,
                    coordinator
                        .error_message
                        .map(|text| text.as_str().to_string()),
                    coordinator.node_id.0,
                )
            } else {
                request.key = StrBytes::from_string(id.to_string());
                let response = connection.send(&request, version)?;
                (
                    response.error_code,
                    response.error_message.map(|text| text.as_str().to_string()),
                    response.node_id.0,
                )
            };
            if COORDINATOR_RETRIABLE.contains(&error_code) && attempt < FIND_COORDINATOR_ATTEMPTS {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(
                    FIND_COORDINATOR_BACKOFF_MS,
                ));
                continue;
            }
            KafkaError::check(error_code, message)?;
            return Ok(node_id);
        }
    }
}
