//! Kafka error codes, and the one function that maps engine errors to them.

use sluice_engine::batch::BatchError;
use sluice_engine::{AppendError, ProducerError, ReadError};

/// Kafka protocol error codes used by Sluice (values from Kafka's protocol
/// documentation).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// SaslHandshake named a mechanism the listener does not enable.
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    /// A SASL request out of Kafka's sequence (KIP-43, KIP-152).
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    /// A wrong password or an unknown user (not said which).
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const LOG_DIR_NOT_FOUND: i16 = 57;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const INVALID_RECORD: i16 = 87;
    /// A partition-mutation quota (KIP-599) is used up.
    pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    /// An incremental fetch named topics by id in a session opened by name,
    /// or the other way round.
    pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
    /// Another live broker is registered with this node id.
    pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const TOPIC_DELETION_DISABLED: i16 = 73;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    /// A credential API named one user twice in one request.
    pub const DUPLICATE_RESOURCE: i16 = 92;
    /// A SCRAM credential outside what the broker accepts (iterations, name).
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    /// An ACL API on a broker without an authorizer.
    pub const SECURITY_DISABLED: i16 = 54;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    // The transaction coordinator's codes.
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    /// KIP-1050: the transaction must be aborted; clients that know it
    /// (Produce v11+, TxnOffsetCommit v4+) get it instead of INVALID_TXN_STATE.
    pub const TRANSACTION_ABORTABLE: i16 = 120;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const INVALID_UPDATE_VERSION: i16 = 108;
}

/// The Kafka error code for a failed append.
pub fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::Batch(batch) => batch_error_code(batch),
        // A marker's too: Kafka's partition leader refuses both with
        // InvalidProducerEpochException, which a WriteTxnMarkers answer
        // carries as INVALID_PRODUCER_EPOCH (and Kafka's coordinator then
        // stops sending that transaction's markers).
        AppendError::Producer(
            ProducerError::InvalidEpoch { .. } | ProducerError::MarkerEpochNotBumped { .. },
        ) => code::INVALID_PRODUCER_EPOCH,
        AppendError::Producer(ProducerError::OutOfOrderSequence { .. }) => {
            code::OUT_OF_ORDER_SEQUENCE_NUMBER
        }
        AppendError::Producer(ProducerError::BehindRefused { error_code, .. }) => *error_code,
        AppendError::Producer(ProducerError::DuplicateAmongOthers { .. }) => {
            code::DUPLICATE_SEQUENCE_NUMBER
        }
        AppendError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        AppendError::Closed | AppendError::Truncating => code::NOT_LEADER_OR_FOLLOWER,
        // Only a follower's copy of its leader's batches can be out of
        // place: it must find where its log and the leader's part.
        AppendError::NotContiguous { .. } => code::OFFSET_OUT_OF_RANGE,
    }
}

/// The Kafka error code for an invalid batch.
pub fn batch_error_code(error: &BatchError) -> i16 {
    match error {
        BatchError::BadLength { .. } | BatchError::BadCrc { .. } => code::CORRUPT_MESSAGE,
        BatchError::UnknownCompression(_) => code::CORRUPT_MESSAGE,
        BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::BadRecordCount { .. } | BatchError::BadControlRecord => code::INVALID_RECORD,
        BatchError::TooLarge { .. } => code::MESSAGE_TOO_LARGE,
    }
}

/// The Kafka error code for a failed read.
pub fn read_error_code(error: &ReadError) -> i16 {
    match error {
        ReadError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        ReadError::Storage(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// Kafka's check of the leader epoch a client sent with a partition (-1:
/// none): older than the partition's current epoch is FENCED_LEADER_EPOCH
/// (the client's metadata is stale), newer is UNKNOWN_LEADER_EPOCH (the
/// client knows of a leader this broker has not heard of yet).
pub fn leader_epoch_error(
    state: Option<&sluice_engine::PartitionState>,
    client_epoch: i32,
) -> Option<i16> {
    if client_epoch < 0 {
        return None;
    }
    let current = state?.leader_epoch;
    if client_epoch < current {
        Some(code::FENCED_LEADER_EPOCH)
    } else if client_epoch > current {
        Some(code::UNKNOWN_LEADER_EPOCH)
    } else {
        None
    }
}
