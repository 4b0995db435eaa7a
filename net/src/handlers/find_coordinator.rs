//! FindCoordinator: every group's and transactional id's coordinator is
//! this node (one broker); the request creates `__consumer_offsets` or
//! `__transaction_state` on first use. Inside the
//! broker, the group's shard is found per request (`groups::route`).

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups;
use crate::txn;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 6);

/// First version that looks up a batch of keys.
const BATCHED_VERSION: i16 = 4;
/// First version with an error message.
const ERROR_MESSAGE_VERSION: i16 = 1;
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// v6 (KIP-932): share groups, which Sluice does not run.
const KEY_TYPE_SHARE: i8 = 2;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let keys: Vec<_> = if version >= BATCHED_VERSION {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let (error_code, message) = match request.key_type {
        KEY_TYPE_GROUP => match groups::ensure_offsets_topic(broker).await {
            Ok(_) => (code::NONE, None),
            Err(error_code) => (
                error_code,
                Some("The offsets topic could not be created.".to_string()),
            ),
        },
        KEY_TYPE_TRANSACTION => match txn::ensure_txn_topic(broker).await {
            Ok(_) => (code::NONE, None),
            Err(error_code) => (
                error_code,
                Some("The transaction state topic could not be created.".to_string()),
            ),
        },
        // Kafka answers a share-group lookup with INVALID_REQUEST when share
        // groups are unavailable (and below v6, where the type is unknown).
        KEY_TYPE_SHARE => (
            code::INVALID_REQUEST,
            Some("Share groups are not supported by this broker.".to_string()),
        ),
        other => (
            code::INVALID_REQUEST,
            Some(format!("Unknown coordinator key type {other}.")),
        ),
    };
    let topic = match request.key_type {
        KEY_TYPE_TRANSACTION => txn::TXN_TOPIC,
        _ => groups::OFFSETS_TOPIC,
    };
    let metadata = broker.metadata();
    let live = session.live_brokers(broker);
    // The coordinator of a key is the leader of the internal partition the
    // key hashes to. Kafka answers an error with "no node": id -1, empty
    // host, port -1.
    let locate = |key: &str| -> (i16, Option<String>, i32, String, i32) {
        if error_code != code::NONE {
            return (error_code, message.clone(), -1, String::new(), -1);
        }
        // Finding a coordinator takes DESCRIBE on the group or the
        // transactional id.
        let refused = match request.key_type {
            KEY_TYPE_TRANSACTION => {
                (!session.may_on_transactional_id(broker, Operation::Describe, key))
                    .then_some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            }
            _ => (!session.may_on_group(broker, Operation::Describe, key))
                .then_some(code::GROUP_AUTHORIZATION_FAILED),
        };
        if let Some(error_code) = refused {
            return (error_code, None, -1, String::new(), -1);
        }
        let leader = metadata.topics.get(topic).and_then(|described| {
            let partition = sluice_engine::shard::coordinator_partition(key, described.partitions);
            metadata
                .partition(topic, partition)
                .map(|state| state.leader)
        });
        let node = leader.and_then(|leader| live.iter().find(|node| node.id == leader));
        match node {
            Some(node) => (
                code::NONE,
                None,
                node.id,
                node.host.clone(),
                i32::from(node.port),
            ),
            None => (
                code::COORDINATOR_NOT_AVAILABLE,
                Some("The coordinator's partition has no live leader.".to_string()),
                -1,
                String::new(),
                -1,
            ),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= BATCHED_VERSION {
        response.coordinators = keys
            .into_iter()
            .map(|key| {
                let (error_code, message, node_id, host, port) = locate(key.as_str());
                let mut coordinator = Coordinator::default();
                coordinator.key = key;
                coordinator.node_id = BrokerId(node_id);
                coordinator.host = str_bytes(&host);
                coordinator.port = port;
                coordinator.error_code = error_code;
                coordinator.error_message = message.as_deref().map(str_bytes);
                coordinator
            })
            .collect();
    } else {
        let key = keys.first().map(|key| key.as_str()).unwrap_or_default();
        let (error_code, message, node_id, host, port) = locate(key);
        response.error_code = error_code;
        if version >= ERROR_MESSAGE_VERSION {
            response.error_message = message.as_deref().map(str_bytes);
        }
        response.node_id = BrokerId(node_id);
        response.host = str_bytes(&host);
        response.port = port;
    }
    Some(encode(&response, version))
}
