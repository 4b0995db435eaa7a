//! The transaction APIs on the wire, encoded and decoded with
//! kafka-protocol at several versions: the coordinator's error rules
//! (INVALID_TXN_STATE, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH by version,
//! UNKNOWN_TOPIC_OR_PARTITION with OPERATION_NOT_ATTEMPTED, timeouts above
//! the maximum), KIP-890 verification, the admin APIs, and state surviving
//! a kill -9.

mod common;

use std::time::{Duration, Instant};

use common::{text, Stop, TestBroker, WireClient};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::*;

const TOPIC: &str = "txn-wire";

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

impl WireClient {
    fn find_coordinator(&mut self, id: &str) {
        let mut request = FindCoordinatorRequest::default();
        request.key = text(id);
        request.key_type = 1;
        let response: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 3, &request);
        assert_eq!(response.error_code, NONE, "FindCoordinator(transaction)");
        assert!(response.port > 0);
    }

    /// InitProducerId, retried while the coordinator loads.
    fn init(
        &mut self,
        id: &str,
        timeout_ms: i32,
        version: i16,
        current: (i64, i16),
    ) -> InitProducerIdResponse {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = Some(TransactionalId(text(id)));
            request.transaction_timeout_ms = timeout_ms;
            request.producer_id = ProducerId(current.0);
            request.producer_epoch = current.1;
            let response: InitProducerIdResponse =
                self.call(ApiKey::InitProducerId, version, &request);
            let retriable = [COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, 15, 51];
            if retriable.contains(&response.error_code) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return response;
        }
    }

    fn add_partitions(
        &mut self,
        version: i16,
        id: &str,
        producer: (i64, i16),
        topics: &[(&str, Vec<i32>)],
    ) -> Vec<(String, i32, i16)> {
        let topics: Vec<AddPartitionsToTxnTopic> = topics
            .iter()
            .map(|(name, partitions)| {
                let mut topic = AddPartitionsToTxnTopic::default();
                topic.name = TopicName(text(name));
                topic.partitions = partitions.clone();
                topic
            })
            .collect();
        let mut request = AddPartitionsToTxnRequest::default();
        request.v3_and_below_transactional_id = TransactionalId(text(id));
        request.v3_and_below_producer_id = ProducerId(producer.0);
        request.v3_and_below_producer_epoch = producer.1;
        request.v3_and_below_topics = topics;
        let response: AddPartitionsToTxnResponse =
            self.call(ApiKey::AddPartitionsToTxn, version, &request);
        flatten(&response.results_by_topic_v3_and_below)
    }

    fn end(
        &mut self,
        version: i16,
        id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> EndTxnResponse {
        let mut request = EndTxnRequest::default();
        request.transactional_id = TransactionalId(text(id));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.committed = commit;
        self.call(ApiKey::EndTxn, version, &request)
    }
}

fn flatten(
    results: &[add_partitions_to_txn_response::AddPartitionsToTxnTopicResult],
) -> Vec<(String, i32, i16)> {
    let mut out = Vec::new();
    for topic in results {
        for partition in &topic.results_by_partition {
            out.push((
                topic.name.to_string(),
                partition.partition_index,
                partition.partition_error_code,
            ));
        }
    }
    out
}

#[test]
fn coordinator_error_rules_on_the_wire() {
    let broker = TestBroker::start_with(&["--transaction-max-timeout-ms", "120000"]);
    broker.create_topic(TOPIC, 3);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("wire-a");

    // A timeout above transaction.max.timeout.ms is refused.
    let refused = client.init("wire-a", 120_001, 1, (-1, -1));
    assert_eq!(refused.error_code, INVALID_TRANSACTION_TIMEOUT);

    let first = client.init("wire-a", 60_000, 1, (-1, -1));
    assert_eq!(first.error_code, NONE);
    assert!(first.producer_id.0 >= 0);
    assert_eq!(first.producer_epoch, 0);
    let producer = (first.producer_id.0, first.producer_epoch);

    // No transaction yet: ending one is INVALID_TXN_STATE.
    for version in [0, 3] {
        let response = client.end(version, "wire-a", producer, true);
        assert_eq!(response.error_code, INVALID_TXN_STATE, "EndTxn v{version}");
    }
    // An unknown producer id for the transactional id.
    let response = client.end(3, "wire-a", (producer.0 + 1_000_000, 0), true);
    assert_eq!(response.error_code, INVALID_PRODUCER_ID_MAPPING);
    // A wrong epoch: PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before.
    let response = client.end(3, "wire-a", (producer.0, 5), false);
    assert_eq!(response.error_code, PRODUCER_FENCED);
    let response = client.end(1, "wire-a", (producer.0, 5), false);
    assert_eq!(response.error_code, INVALID_PRODUCER_EPOCH);

    // An unknown topic fails that partition; the others are not attempted.
    let results = client.add_partitions(
        3,
        "wire-a",
        producer,
        &[(TOPIC, vec![0, 1]), ("no-such-topic", vec![0])],
    );
    assert_eq!(
        results,
        vec![
            (TOPIC.to_string(), 0, OPERATION_NOT_ATTEMPTED),
            (TOPIC.to_string(), 1, OPERATION_NOT_ATTEMPTED),
            ("no-such-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    // A partition past the topic's count is unknown too.
    let results = client.add_partitions(3, "wire-a", producer, &[(TOPIC, vec![7])]);
    assert_eq!(
        results,
        vec![(TOPIC.to_string(), 7, UNKNOWN_TOPIC_OR_PARTITION)]
    );
    // Wrong epoch on AddPartitionsToTxn, by version.
    let results = client.add_partitions(3, "wire-a", (producer.0, 9), &[(TOPIC, vec![0])]);
    assert_eq!(results, vec![(TOPIC.to_string(), 0, PRODUCER_FENCED)]);
    let results = client.add_partitions(1, "wire-a", (producer.0, 9), &[(TOPIC, vec![0])]);
    assert_eq!(
        results,
        vec![(TOPIC.to_string(), 0, INVALID_PRODUCER_EPOCH)]
    );

    // A real transaction: two partitions added.
    let results = client.add_partitions(3, "wire-a", producer, &[(TOPIC, vec![0, 2])]);
    assert_eq!(
        results,
        vec![(TOPIC.to_string(), 0, NONE), (TOPIC.to_string(), 2, NONE)]
    );

    // KIP-890 verification (v4+, verify_only): added partitions pass, the
    // others are not in the transaction.
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = TransactionalId(text("wire-a"));
    transaction.producer_id = ProducerId(producer.0);
    transaction.producer_epoch = producer.1;
    transaction.verify_only = true;
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(text(TOPIC));
    topic.partitions = vec![0, 1];
    transaction.topics = vec![topic];
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    let response: AddPartitionsToTxnResponse = client.call(ApiKey::AddPartitionsToTxn, 4, &request);
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.results_by_transaction.len(), 1);
    assert_eq!(
        flatten(&response.results_by_transaction[0].topic_results),
        vec![
            (TOPIC.to_string(), 0, NONE),
            (TOPIC.to_string(), 1, INVALID_TXN_STATE)
        ]
    );

    // The admin view of the running transaction.
    let mut describe = DescribeTransactionsRequest::default();
    describe.transactional_ids = vec![
        TransactionalId(text("wire-a")),
        TransactionalId(text("wire-unknown")),
    ];
    let described: DescribeTransactionsResponse =
        client.call(ApiKey::DescribeTransactions, 0, &describe);
    assert_eq!(described.transaction_states.len(), 2);
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, NONE);
    assert_eq!(state.transaction_state.as_str(), "Ongoing");
    assert_eq!(state.producer_id.0, producer.0);
    assert_eq!(state.transaction_timeout_ms, 60_000);
    assert!(state.transaction_start_time_ms > 0);
    assert_eq!(state.topics.len(), 1);
    assert_eq!(state.topics[0].partitions, vec![0, 2]);
    assert_eq!(
        described.transaction_states[1].error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );
    let mut list = ListTransactionsRequest::default();
    list.state_filters = vec![text("Ongoing"), text("Bogus")];
    let listed: ListTransactionsResponse = client.call(ApiKey::ListTransactions, 1, &list);
    assert_eq!(listed.error_code, NONE);
    assert_eq!(listed.unknown_state_filters, vec![text("Bogus")]);
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(
        listed.transaction_states[0].transactional_id.as_str(),
        "wire-a"
    );
    let mut list = ListTransactionsRequest::default();
    list.producer_id_filters = vec![ProducerId(producer.0 + 12345)];
    let listed: ListTransactionsResponse = client.call(ApiKey::ListTransactions, 0, &list);
    assert!(listed.transaction_states.is_empty());
    // A duration filter longer than the transaction has run matches nothing.
    let mut list = ListTransactionsRequest::default();
    list.duration_filter = 3_600_000;
    let listed: ListTransactionsResponse = client.call(ApiKey::ListTransactions, 1, &list);
    assert!(listed.transaction_states.is_empty());

    // Commit; a retried commit succeeds, an abort after it does not.
    let response = client.end(3, "wire-a", producer, true);
    assert_eq!(response.error_code, NONE);
    let response = client.end(3, "wire-a", producer, true);
    assert_eq!(response.error_code, NONE, "a retried commit succeeds");
    let response = client.end(3, "wire-a", producer, false);
    assert_eq!(response.error_code, INVALID_TXN_STATE);

    // State survives a crash: the next InitProducerId bumps the epoch.
    drop(client);
    let mut broker = broker;
    broker.restart(Stop::Kill);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("wire-a");
    let second = client.init("wire-a", 60_000, 1, (-1, -1));
    assert_eq!(second.error_code, NONE);
    assert_eq!(second.producer_id.0, producer.0);
    assert_eq!(second.producer_epoch, 1);
    // The old epoch is fenced now.
    let results = client.add_partitions(3, "wire-a", producer, &[(TOPIC, vec![0])]);
    assert_eq!(results, vec![(TOPIC.to_string(), 0, PRODUCER_FENCED)]);
    // KIP-360: naming the current epoch bumps it; a retry of that bump
    // (the answer was lost) gets the same pair; an older epoch is fenced.
    let bumped = client.init("wire-a", 60_000, 4, (second.producer_id.0, 1));
    assert_eq!(bumped.error_code, NONE);
    assert_eq!(bumped.producer_epoch, 2);
    let retried = client.init("wire-a", 60_000, 4, (second.producer_id.0, 1));
    assert_eq!(retried.error_code, NONE);
    assert_eq!(retried.producer_epoch, 2);
    let stale = client.init("wire-a", 60_000, 4, producer);
    assert_eq!(stale.error_code, PRODUCER_FENCED);
    let stale = client.init("wire-a", 60_000, 3, producer);
    assert_eq!(
        stale.error_code, INVALID_PRODUCER_EPOCH,
        "v3 predates PRODUCER_FENCED"
    );
}

#[test]
fn a_new_producer_aborts_the_running_transaction() {
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("wire-b");
    let first = client.init("wire-b", 60_000, 1, (-1, -1));
    assert_eq!(first.error_code, NONE);
    let producer = (first.producer_id.0, first.producer_epoch);
    let results = client.add_partitions(3, "wire-b", producer, &[(TOPIC, vec![0, 1])]);
    assert!(
        results.iter().all(|(_, _, error)| *error == NONE),
        "{results:?}"
    );
    // A second producer with the same id: the running transaction is
    // aborted (with the epoch bumped past it), then the epoch bumps again.
    let second = client.init("wire-b", 60_000, 1, (-1, -1));
    assert_eq!(second.error_code, NONE);
    assert_eq!(second.producer_id.0, producer.0);
    assert_eq!(second.producer_epoch, 2);
    let mut describe = DescribeTransactionsRequest::default();
    describe.transactional_ids = vec![TransactionalId(text("wire-b"))];
    let described: DescribeTransactionsResponse =
        client.call(ApiKey::DescribeTransactions, 0, &describe);
    assert_eq!(
        described.transaction_states[0].transaction_state.as_str(),
        "Empty"
    );
    // The old producer's commit is fenced.
    let response = client.end(3, "wire-b", producer, true);
    assert_eq!(response.error_code, PRODUCER_FENCED);
}

/// Runs the `sluice` CLI: (exit code, stdout).
/// KIP-890 part 2: EndTxn v5 ends every transaction with the epoch bumped
/// and hands the new epoch back; the old epoch is fenced from then on.
#[test]
fn end_txn_v5_bumps_the_epoch_at_every_end() {
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("wire-v5");
    let first = client.init("wire-v5", 60_000, 5, (-1, -1));
    assert_eq!(first.error_code, NONE);
    let mut producer = (first.producer_id.0, first.producer_epoch);
    for (round, commit) in [(1i16, true), (2, false), (3, true)] {
        let results = client.add_partitions(3, "wire-v5", producer, &[(TOPIC, vec![0, 1])]);
        assert!(
            results.iter().all(|(_, _, error)| *error == NONE),
            "round {round}: {results:?}"
        );
        let ended = client.end(5, "wire-v5", producer, commit);
        assert_eq!(ended.error_code, NONE, "round {round}");
        assert_eq!(
            ended.producer_id.0, producer.0,
            "round {round}: same producer id"
        );
        assert_eq!(
            ended.producer_epoch,
            first.producer_epoch + round,
            "round {round}: the epoch is bumped at every end"
        );
        let old = producer;
        producer = (ended.producer_id.0, ended.producer_epoch);
        // The epoch the transaction ran with cannot start another one.
        let fenced = client.add_partitions(3, "wire-v5", old, &[(TOPIC, vec![0])]);
        assert!(
            fenced
                .iter()
                .all(|(_, _, error)| [PRODUCER_FENCED, INVALID_PRODUCER_EPOCH].contains(error)),
            "round {round}: old epoch {fenced:?}"
        );
    }
}

fn cli(args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running the sluice CLI");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn txn_cli_lists_and_describes() {
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("cli-a");
    let first = client.init("cli-a", 45_000, 1, (-1, -1));
    assert_eq!(first.error_code, NONE);
    let producer = (first.producer_id.0, first.producer_epoch);
    let results = client.add_partitions(3, "cli-a", producer, &[(TOPIC, vec![1])]);
    assert_eq!(results, vec![(TOPIC.to_string(), 1, NONE)]);
    let idle = client.init("cli-b", 45_000, 1, (-1, -1));
    assert_eq!(idle.error_code, NONE);
    let bootstrap = broker.bootstrap();

    let (code, out) = cli(&["txn", "list", "--bootstrap", &bootstrap]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("TRANSACTIONAL-ID"), "{out}");
    let line_a = out
        .lines()
        .find(|line| line.starts_with("cli-a"))
        .expect("cli-a listed");
    assert!(
        line_a.contains("Ongoing") && line_a.contains(&producer.0.to_string()),
        "{out}"
    );
    let line_b = out
        .lines()
        .find(|line| line.starts_with("cli-b"))
        .expect("cli-b listed");
    assert!(line_b.contains("Empty"), "{out}");

    let (code, out) = cli(&[
        "txn",
        "list",
        "--state",
        "Ongoing",
        "--json",
        "--bootstrap",
        &bootstrap,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let ids: Vec<&str> = listed["transactions"]
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|txn| txn["transactional_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["cli-a"]);

    let (code, out) = cli(&[
        "txn",
        "describe",
        "cli-a",
        "--json",
        "--bootstrap",
        &bootstrap,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let described: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(described["state"], "Ongoing");
    assert_eq!(described["producer_id"], producer.0);
    assert_eq!(described["timeout_ms"], 45_000);
    assert_eq!(
        described["partitions"],
        serde_json::json!([format!("{TOPIC}-1")])
    );

    let (code, out) = cli(&["txn", "describe", "cli-missing", "--bootstrap", &bootstrap]);
    assert_eq!(code, Some(1), "an unknown id is a broker refusal: {out}");
}

/// OffsetFetch v7 of one partition: (error, offset).
fn fetch_offset(client: &mut WireClient, group: &str, require_stable: bool) -> (i16, i64) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_indexes = vec![0];
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(text(group));
    request.topics = Some(vec![topic]);
    request.require_stable = require_stable;
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.committed_offset)
}

#[test]
fn txn_offset_commit_is_visible_only_after_the_commit() {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("offsets-txn");
    let mut find_group = FindCoordinatorRequest::default();
    find_group.key = text("txn-group");
    let found: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 3, &find_group);
    assert_eq!(found.error_code, NONE);
    let init = client.init("offsets-txn", 60_000, 1, (-1, -1));
    assert_eq!(init.error_code, NONE);
    let producer = (init.producer_id.0, init.producer_epoch);

    for (round, commit) in [(0, false), (1, true)] {
        let mut add = AddOffsetsToTxnRequest::default();
        add.transactional_id = TransactionalId(text("offsets-txn"));
        add.producer_id = ProducerId(producer.0);
        add.producer_epoch = producer.1;
        add.group_id = GroupId(text("txn-group"));
        let added: AddOffsetsToTxnResponse = client.call(ApiKey::AddOffsetsToTxn, 1, &add);
        assert_eq!(added.error_code, NONE);

        let mut partition = TxnOffsetCommitRequestPartition::default();
        partition.partition_index = 0;
        partition.committed_offset = 40 + round;
        let mut topic = TxnOffsetCommitRequestTopic::default();
        topic.name = TopicName(text(TOPIC));
        topic.partitions = vec![partition];
        let mut request = TxnOffsetCommitRequest::default();
        request.transactional_id = TransactionalId(text("offsets-txn"));
        request.group_id = GroupId(text("txn-group"));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.generation_id = -1;
        request.topics = vec![topic];
        let committed: TxnOffsetCommitResponse = client.call(ApiKey::TxnOffsetCommit, 3, &request);
        assert_eq!(committed.topics[0].partitions[0].error_code, NONE);

        // Pending: unstable for require_stable readers, invisible to others.
        assert_eq!(
            fetch_offset(&mut client, "txn-group", true).0,
            UNSTABLE_OFFSET_COMMIT
        );
        assert_eq!(fetch_offset(&mut client, "txn-group", false), (NONE, -1));
        let ended = client.end(3, "offsets-txn", producer, commit);
        assert_eq!(ended.error_code, NONE);
    }
    // The aborted round left nothing; the committed one is the offset.
    assert_eq!(fetch_offset(&mut client, "txn-group", true), (NONE, 41));

    // Replay after a crash: the commit marker makes the offset stick, the
    // aborted one stays dropped.
    drop(client);
    let mut broker = broker;
    broker.restart(Stop::Kill);
    let mut client = WireClient::new(&broker);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (error, offset) = fetch_offset(&mut client, "txn-group", true);
        if error == NONE {
            assert_eq!(offset, 41);
            break;
        }
        assert!(Instant::now() < deadline, "OffsetFetch error {error}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces one transactional batch (v9, acks -1) and returns its error.
fn produce_txn(
    client: &mut WireClient,
    id: &str,
    producer: (i64, i16),
    partition: i32,
    sequence: i32,
) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use sluice_engine::batch::{attributes, build_batch_with, BuildBatch};
    let records = build_batch_with(
        BuildBatch {
            base_timestamp: 1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: sequence,
            attributes: attributes::TRANSACTIONAL,
        },
        &[b"value"],
    );
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(bytes::Bytes::from(records));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.transactional_id = Some(TransactionalId(text(id)));
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic];
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn kip_890_a_transactional_batch_needs_its_partition_added() {
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("verify-a");
    let init = client.init("verify-a", 60_000, 1, (-1, -1));
    assert_eq!(init.error_code, NONE);
    let producer = (init.producer_id.0, init.producer_epoch);
    // No transaction: the batch would open one no marker ends.
    assert_eq!(
        produce_txn(&mut client, "verify-a", producer, 0, 0),
        INVALID_TXN_STATE
    );
    let added = client.add_partitions(3, "verify-a", producer, &[(TOPIC, vec![0])]);
    assert_eq!(added, vec![(TOPIC.to_string(), 0, NONE)]);
    assert_eq!(produce_txn(&mut client, "verify-a", producer, 0, 0), NONE);
    // Partition 1 was not added to this transaction.
    assert_eq!(
        produce_txn(&mut client, "verify-a", producer, 1, 0),
        INVALID_TXN_STATE
    );
    // After the commit, a late batch to partition 0 is refused again.
    assert_eq!(client.end(3, "verify-a", producer, true).error_code, NONE);
    assert_eq!(
        produce_txn(&mut client, "verify-a", producer, 0, 1),
        INVALID_TXN_STATE
    );
}

#[test]
fn idle_transactional_ids_expire_and_clients_cannot_write_the_state_topic() {
    let broker = TestBroker::start_with(&[
        "--transactional-id-expiration-ms",
        "500",
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "100",
    ]);
    broker.create_topic(TOPIC, 1);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("expiring");
    assert_eq!(
        client.init("expiring", 60_000, 1, (-1, -1)).error_code,
        NONE
    );
    let describe = |client: &mut WireClient| {
        let mut request = DescribeTransactionsRequest::default();
        request.transactional_ids = vec![TransactionalId(text("expiring"))];
        let response: DescribeTransactionsResponse =
            client.call(ApiKey::DescribeTransactions, 0, &request);
        response.transaction_states[0].error_code
    };
    assert_eq!(describe(&mut client), NONE);
    let deadline = Instant::now() + Duration::from_secs(20);
    while describe(&mut client) != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "the idle id never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The tombstone survives a restart: the id stays gone.
    drop(client);
    let mut broker = broker;
    broker.restart(Stop::Kill);
    let mut client = WireClient::new(&broker);
    client.find_coordinator("expiring");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let error = describe(&mut client);
        if error == TRANSACTIONAL_ID_NOT_FOUND {
            break;
        }
        assert!(
            error == COORDINATOR_LOAD_IN_PROGRESS && Instant::now() < deadline,
            "error {error}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Clients may not produce to the state topic (INVALID_TOPIC_EXCEPTION).
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut data = PartitionProduceData::default();
    data.index = 0;
    data.records = Some(bytes::Bytes::from(sluice_engine::batch::build_batch(
        1,
        &[b"x"],
    )));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text("__transaction_state"));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic];
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 17);
}
