//! The coordinator through a one-shard broker: a transaction decided
//! (PrepareCommit durable) but not completed is completed when its state
//! partition is loaded again; a refused state write leaves the old state
//! and maps the error as Kafka does; a request during a pending transition
//! sees only durable state; a cleaning pass during one keeps it; exhausted epochs
//! end with markers at Short.MAX_VALUE on the timeout and EndTxn v5 paths.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::shard::mesh_plan;
use sluice_engine::{DmaStorage, Mesh};

use super::*;
use crate::broker::{ControllerRequest, NewTopic};
use crate::config::BrokerConfig;

fn temp_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("sluice-txn-coord-{}-{nanos}", std::process::id()))
}

/// Serves a request, retrying while the state partition loads.
async fn serve_loaded(broker: &Rc<Broker>, make: impl Fn() -> TxnRequest) -> TxnResponse {
    for _ in 0..200 {
        let response = serve(broker, make()).await;
        let loading = matches!(
            &response,
            TxnResponse::Producer { error_code, .. } if *error_code == code::COORDINATOR_LOAD_IN_PROGRESS
        ) || matches!(
            &response,
            TxnResponse::AddPartitions(Err(error_code)) if *error_code == code::COORDINATOR_LOAD_IN_PROGRESS
        );
        if !loading {
            return response;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    panic!("the state partition never loaded");
}

fn state_of(broker: &Rc<Broker>, id: &str) -> String {
    broker
        .txns
        .describe(broker, vec![id.to_string()])
        .first()
        .map(|described| described.state.to_string())
        .unwrap_or_default()
}

#[test]
fn a_decided_transaction_is_completed_after_a_reload() {
    let dir = temp_dir();
    let cleanup = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            sluice_engine::metadata::prepare_data_dir(&DmaStorage, &dir)
                .await
                .expect("data dir");
            let mesh = Mesh::join(mesh_plan::<ShardRequest, ShardResponse>(1))
                .await
                .expect("mesh");
            let mut config = BrokerConfig {
                data_dir: dir,
                shards: 1,
                pin_shards: false,
                ..Default::default()
            };
            config.txn.state_partitions = 1;
            let broker = Broker::new(Arc::new(config), mesh).await.expect("broker");
            broker.start_controller().await.expect("controller");
            broker.wait_ready().await;
            let topic = NewTopic {
                name: "data".into(),
                partitions: 1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: Default::default(),
                validate_only: false,
            };
            broker
                .controller_call(ControllerRequest::CreateTopics(vec![topic]))
                .await
                .expect("create");
            ensure_txn_topic(&broker).await.expect("state topic");

            let init = serve_loaded(&broker, || TxnRequest::InitProducerId {
                transactional_id: "decided".into(),
                timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
            })
            .await;
            let TxnResponse::Producer {
                error_code,
                producer_id,
                producer_epoch,
            } = init
            else {
                panic!("unexpected answer {init:?}");
            };
            assert_eq!(error_code, code::NONE);
            let added = serve_loaded(&broker, || TxnRequest::AddPartitions {
                transactional_id: "decided".into(),
                producer_id,
                producer_epoch,
                partitions: vec![("data".into(), 0)],
                verify_only: false,
            })
            .await;
            assert!(
                matches!(&added, TxnResponse::AddPartitions(Ok(errors)) if errors == &vec![code::NONE]),
                "{added:?}"
            );

            // Decide the commit, durably, without writing the markers: what
            // a crash right after the decision leaves behind.
            let meta = broker
                .txns
                .txns
                .borrow()
                .get("decided")
                .cloned()
                .expect("installed");
            let token = broker.txns.token();
            let step = coordinator::end_transition(
                &meta, false, producer_id, producer_epoch, true, false, None, token, now_ms(),
            );
            let Ok(coordinator::EndStep::Next(next)) = step else {
                panic!("unexpected step {step:?}");
            };
            broker
                .txns
                .transit(&broker, Some(meta), Some(next))
                .await
                .expect("durable");
            assert_eq!(state_of(&broker, "decided"), "PrepareCommit");
            let data = broker.log("data", 0).expect("data log");
            assert_eq!(data.offsets().leo, 0, "no marker yet");

            // Load the state partition again, as a restart does.
            broker.txns.partitions.borrow_mut().clear();
            broker.txns.txns.borrow_mut().clear();
            broker.txns.on_metadata(&broker.metadata());
            for _ in 0..200 {
                if state_of(&broker, "decided") == "CompleteCommit" {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(state_of(&broker, "decided"), "CompleteCommit");
            assert_eq!(data.offsets().leo, 1, "the commit marker was written");

            broker.close_logs().await;
        })
        .expect("executor")
        .join()
        .expect("join");
    let _ = std::fs::remove_dir_all(cleanup);
}

/// A one-shard broker with one state partition and a one-partition `data`
/// topic; `max_message_bytes` caps every log's batches.
async fn start_broker(dir: std::path::PathBuf, max_message_bytes: Option<u32>) -> Rc<Broker> {
    sluice_engine::metadata::prepare_data_dir(&DmaStorage, &dir)
        .await
        .expect("data dir");
    let mesh = Mesh::join(mesh_plan::<ShardRequest, ShardResponse>(1))
        .await
        .expect("mesh");
    let mut config = BrokerConfig {
        data_dir: dir,
        shards: 1,
        pin_shards: false,
        ..Default::default()
    };
    config.txn.state_partitions = 1;
    if let Some(bytes) = max_message_bytes {
        config.log.max_message_bytes = bytes;
    }
    let broker = Broker::new(Arc::new(config), mesh).await.expect("broker");
    broker.start_controller().await.expect("controller");
    broker.wait_ready().await;
    let topic = NewTopic {
        name: "data".into(),
        partitions: 1,
        replication_factor: -1,
        assignments: Vec::new(),
        configs: Default::default(),
        validate_only: false,
    };
    broker
        .controller_call(ControllerRequest::CreateTopics(vec![topic]))
        .await
        .expect("create");
    ensure_txn_topic(&broker).await.expect("state topic");
    broker
}

/// InitProducerId for a new id; returns its producer id and epoch.
async fn init(broker: &Rc<Broker>, id: &str) -> (i64, i16) {
    let answer = serve_loaded(broker, || TxnRequest::InitProducerId {
        transactional_id: id.into(),
        timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
    })
    .await;
    let TxnResponse::Producer {
        error_code,
        producer_id,
        producer_epoch,
    } = answer
    else {
        panic!("unexpected answer {answer:?}");
    };
    assert_eq!(error_code, code::NONE);
    (producer_id, producer_epoch)
}

fn add_request(id: &str, pair: (i64, i16), partitions: Vec<(String, i32)>) -> TxnRequest {
    TxnRequest::AddPartitions {
        transactional_id: id.into(),
        producer_id: pair.0,
        producer_epoch: pair.1,
        partitions,
        verify_only: false,
    }
}

fn described(broker: &Rc<Broker>, id: &str) -> DescribedTxn {
    broker
        .txns
        .describe(broker, vec![id.to_string()])
        .into_iter()
        .next()
        .expect("one answer")
}

/// Runs `test` on a fresh one-shard broker in its own executor.
fn run<F, Fut>(max_message_bytes: Option<u32>, test: F)
where
    F: FnOnce(Rc<Broker>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let dir = temp_dir();
    let cleanup = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let broker = start_broker(dir, max_message_bytes).await;
            test(broker.clone()).await;
            broker.close_logs().await;
        })
        .expect("executor")
        .join()
        .expect("join");
    let _ = std::fs::remove_dir_all(cleanup);
}

#[test]
fn a_refused_append_leaves_the_old_state_and_maps_the_error() {
    // The state log refuses batches over 2 KiB, as it refuses any record
    // over max.message.bytes: an AddPartitionsToTxn naming many long topic
    // names makes a state record that big.
    run(Some(2048), |broker| async move {
        let pair = init(&broker, "refused").await;
        let state_log = broker.log(TXN_TOPIC, 0).expect("state log");
        let leo_before = state_log.offsets().leo;
        let many: Vec<(String, i32)> = (0..20).map(|n| (format!("{n:0>200}"), 0)).collect();
        let refused = serve(&broker, add_request("refused", pair, many)).await;
        // Kafka maps MESSAGE_TOO_LARGE from its state log to
        // UNKNOWN_SERVER_ERROR.
        assert!(
            matches!(
                refused,
                TxnResponse::AddPartitions(Err(code::UNKNOWN_SERVER_ERROR))
            ),
            "{refused:?}"
        );
        let state = described(&broker, "refused");
        assert_eq!(state.state, "Empty", "the old state stays installed");
        assert!(state.partitions.is_empty());
        assert_eq!((state.producer_id, state.producer_epoch), pair);
        assert!(
            broker.txns.pending.borrow().is_empty(),
            "no pending mark left"
        );
        assert_eq!(state_log.offsets().leo, leo_before, "nothing was appended");

        // The id goes on normally.
        let added = serve(
            &broker,
            add_request("refused", pair, vec![("data".into(), 0)]),
        )
        .await;
        assert!(
            matches!(&added, TxnResponse::AddPartitions(Ok(errors)) if errors == &vec![code::NONE]),
            "{added:?}"
        );
        let state = described(&broker, "refused");
        assert_eq!(state.state, "Ongoing");
        assert_eq!(state.partitions, vec![("data".to_string(), vec![0])]);

        // A closed state log (the partition going away) maps to
        // NOT_COORDINATOR, and again nothing changes.
        state_log.close().await.expect("close");
        let refused = serve(
            &broker,
            add_request("refused", pair, vec![("data".into(), 1)]),
        )
        .await;
        assert!(
            matches!(
                refused,
                TxnResponse::AddPartitions(Err(code::NOT_COORDINATOR))
            ),
            "{refused:?}"
        );
        let ended = serve(
            &broker,
            TxnRequest::EndTxn {
                transactional_id: "refused".into(),
                producer_id: pair.0,
                producer_epoch: pair.1,
                commit: true,
                bump_epoch: false,
            },
        )
        .await;
        assert!(
            matches!(
                ended,
                TxnResponse::Producer {
                    error_code: code::NOT_COORDINATOR,
                    ..
                }
            ),
            "{ended:?}"
        );
        let state = described(&broker, "refused");
        assert_eq!(state.state, "Ongoing");
        assert_eq!(state.partitions, vec![("data".to_string(), vec![0])]);
        assert!(broker.txns.pending.borrow().is_empty());
    });
}

#[test]
fn a_request_during_a_pending_transition_sees_only_durable_state() {
    run(None, |broker| async move {
        let pair = init(&broker, "pending").await;
        let first = {
            let broker = broker.clone();
            glommio::spawn_local(async move {
                serve(
                    &broker,
                    add_request("pending", pair, vec![("data".into(), 0)]),
                )
                .await
            })
        };
        // Let the first request append and start waiting for its sync.
        for _ in 0..10 {
            if broker.txns.pending.borrow().contains_key("pending") {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert!(
            broker.txns.pending.borrow().contains_key("pending"),
            "the first transition is in flight"
        );
        // Not durable yet: not visible.
        assert_eq!(described(&broker, "pending").state, "Empty");
        let verify = serve(
            &broker,
            TxnRequest::AddPartitions {
                transactional_id: "pending".into(),
                producer_id: pair.0,
                producer_epoch: pair.1,
                partitions: vec![("data".into(), 0)],
                verify_only: true,
            },
        )
        .await;
        assert!(
            matches!(&verify, TxnResponse::AddPartitions(Ok(errors)) if errors == &vec![code::INVALID_TXN_STATE]),
            "{verify:?}"
        );
        let second = serve(
            &broker,
            add_request("pending", pair, vec![("data".into(), 0)]),
        )
        .await;
        assert!(
            matches!(
                second,
                TxnResponse::AddPartitions(Err(code::CONCURRENT_TRANSACTIONS))
            ),
            "{second:?}"
        );
        let reinit = serve(
            &broker,
            TxnRequest::InitProducerId {
                transactional_id: "pending".into(),
                timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
            },
        )
        .await;
        assert!(
            matches!(
                reinit,
                TxnResponse::Producer {
                    error_code: code::CONCURRENT_TRANSACTIONS,
                    ..
                }
            ),
            "{reinit:?}"
        );
        let first = first.await;
        assert!(
            matches!(&first, TxnResponse::AddPartitions(Ok(errors)) if errors == &vec![code::NONE]),
            "{first:?}"
        );
        assert!(broker.txns.pending.borrow().is_empty());
        let state = described(&broker, "pending");
        assert_eq!(state.state, "Ongoing");
        assert_eq!((state.producer_id, state.producer_epoch), pair);
    });
}

#[test]
fn a_cleaning_pass_keeps_the_state_of_a_transition_in_flight() {
    run(None, |broker| async move {
        let pair = init(&broker, "rewritten").await;
        let other = init(&broker, "other").await;
        // Small segments, so that the records below fill sealed ones the
        // cleaner may take.
        let state_log = broker.log(TXN_TOPIC, 0).expect("state log");
        state_log.set_config(sluice_engine::log::LogConfig {
            segment_bytes: sluice_engine::constants::SEGMENT_BYTES_MIN,
            ..state_log.config()
        });
        // Fill the log with superseded records of "other".
        for _ in 0..OTHER_BUMPS {
            let answer = serve(
                &broker,
                TxnRequest::InitProducerId {
                    transactional_id: "other".into(),
                    timeout_ms: 60_000,
                    producer_id: -1,
                    producer_epoch: -1,
                },
            )
            .await;
            assert!(matches!(
                answer,
                TxnResponse::Producer {
                    error_code: code::NONE,
                    ..
                }
            ));
        }
        let first = {
            let broker = broker.clone();
            glommio::spawn_local(async move {
                serve(
                    &broker,
                    add_request("rewritten", pair, vec![("data".into(), 0)]),
                )
                .await
            })
        };
        for _ in 0..10 {
            if broker.txns.pending.borrow().contains_key("rewritten") {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert!(broker.txns.pending.borrow().contains_key("rewritten"));
        let report = crate::broker::clean_now(&state_log).await;
        assert!(
            report.records_removed > 0,
            "superseded states removed: {report:?}"
        );
        let first = first.await;
        assert!(
            matches!(&first, TxnResponse::AddPartitions(Ok(_))),
            "{first:?}"
        );

        // Replay from the cleaned log: the in-flight addition survived.
        let before_other = described(&broker, "other");
        broker.txns.partitions.borrow_mut().clear();
        broker.txns.txns.borrow_mut().clear();
        broker.txns.on_metadata(&broker.metadata());
        for _ in 0..200 {
            if described(&broker, "rewritten").error_code == code::NONE {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let state = described(&broker, "rewritten");
        assert_eq!(state.state, "Ongoing");
        assert_eq!(state.partitions, vec![("data".to_string(), vec![0])]);
        let after_other = described(&broker, "other");
        assert_eq!(
            (after_other.producer_id, after_other.producer_epoch),
            (before_other.producer_id, before_other.producer_epoch)
        );
        assert_eq!(before_other.producer_epoch, other.1 + OTHER_BUMPS);
    });
}

/// Epoch bumps of "other" in the cleaning test: enough records of one key
/// to fill several of the smallest segments.
const OTHER_BUMPS: i16 = 100;

/// Moves an id to the last usable epoch through the log, as a long life
/// of bumps would have.
async fn move_to_last_usable_epoch(broker: &Rc<Broker>, id: &str) -> (i64, i16) {
    let meta = broker
        .txns
        .txns
        .borrow()
        .get(id)
        .cloned()
        .expect("installed");
    let mut next = meta.clone();
    next.producer_epoch = coordinator::EPOCH_LAST_USABLE;
    let pair = (next.producer_id, next.producer_epoch);
    broker
        .txns
        .transit(broker, Some(meta), Some(next))
        .await
        .expect("durable");
    pair
}

/// Appends one transactional batch of `pair` to `data`-0 (so the partition
/// knows the producer at that epoch) and waits until it is durable.
async fn append_transactional(broker: &Rc<Broker>, pair: (i64, i16)) {
    let options = sluice_engine::batch::BuildBatch {
        producer_id: pair.0,
        producer_epoch: pair.1,
        base_sequence: 0,
        attributes: sluice_engine::batch::attributes::TRANSACTIONAL,
        base_timestamp: now_ms(),
    };
    let bytes = bytes::Bytes::from(sluice_engine::batch::build_batch_with(
        options,
        &[b"value".as_slice()],
    ));
    let header = batch::validate(&bytes, usize::MAX).expect("a valid batch");
    let log = broker.log("data", 0).expect("data log");
    let appended = log.append(&[(header, bytes)]).expect("appended");
    log.wait_durable(appended.last_offset.0 + 1)
        .await
        .expect("durable");
    let offsets = log.offsets();
    assert!(
        offsets.lso < offsets.hw,
        "the transaction is open: {offsets:?}"
    );
}

/// Waits until the `data`-0 transaction is closed by its marker.
async fn wait_closed(broker: &Rc<Broker>) {
    let log = broker.log("data", 0).expect("data log");
    for _ in 0..200 {
        let offsets = log.offsets();
        if offsets.lso == offsets.hw && offsets.hw == offsets.leo {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the marker never closed the transaction: {:?}",
        log.offsets()
    );
}

#[test]
fn a_timeout_abort_at_the_last_usable_epoch_writes_its_marker_at_short_max() {
    run(None, |broker| async move {
        let id = "exhausted-timeout";
        let answer = serve_loaded(&broker, || TxnRequest::InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 50,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await;
        assert!(matches!(
            answer,
            TxnResponse::Producer {
                error_code: code::NONE,
                ..
            }
        ));
        let pair = move_to_last_usable_epoch(&broker, id).await;
        let added = serve(&broker, add_request(id, pair, vec![("data".into(), 0)])).await;
        assert!(
            matches!(&added, TxnResponse::AddPartitions(Ok(_))),
            "{added:?}"
        );
        append_transactional(&broker, pair).await;

        glommio::timer::sleep(Duration::from_millis(100)).await;
        broker.txns.abort_timed_out(&broker).await;
        for _ in 0..200 {
            if described(&broker, id).state == "CompleteAbort" {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let state = described(&broker, id);
        assert_eq!(state.state, "CompleteAbort");
        assert_eq!(
            (state.producer_id, state.producer_epoch),
            (pair.0, i16::MAX)
        );
        // The partition took the abort marker at Short.MAX_VALUE, above the
        // producer's epoch there.
        wait_closed(&broker).await;

        // The timed-out producer is fenced, also when it tries to recover.
        let recovered = serve(
            &broker,
            TxnRequest::InitProducerId {
                transactional_id: id.into(),
                timeout_ms: 60_000,
                producer_id: pair.0,
                producer_epoch: pair.1,
            },
        )
        .await;
        assert!(
            matches!(
                recovered,
                TxnResponse::Producer {
                    error_code: code::PRODUCER_FENCED,
                    ..
                }
            ),
            "{recovered:?}"
        );
        // A new producer continues under a new producer id at epoch 0.
        let fresh = init(&broker, id).await;
        assert_ne!(fresh.0, pair.0);
        assert_eq!(fresh.1, 0);
        let state = described(&broker, id);
        assert_eq!((state.state, state.producer_id), ("Empty", fresh.0));
    });
}

#[test]
fn an_end_txn_v5_at_the_last_usable_epoch_moves_to_a_new_producer_id() {
    run(None, |broker| async move {
        let id = "exhausted-v2";
        init(&broker, id).await;
        let pair = move_to_last_usable_epoch(&broker, id).await;
        let added = serve(&broker, add_request(id, pair, vec![("data".into(), 0)])).await;
        assert!(
            matches!(&added, TxnResponse::AddPartitions(Ok(_))),
            "{added:?}"
        );
        append_transactional(&broker, pair).await;

        let ended = serve(
            &broker,
            TxnRequest::EndTxn {
                transactional_id: id.into(),
                producer_id: pair.0,
                producer_epoch: pair.1,
                commit: true,
                bump_epoch: true,
            },
        )
        .await;
        let TxnResponse::Producer {
            error_code,
            producer_id,
            producer_epoch,
        } = ended
        else {
            panic!("unexpected answer {ended:?}");
        };
        assert_eq!(error_code, code::NONE);
        assert_ne!(producer_id, pair.0, "a new producer id");
        assert_eq!(producer_epoch, 0);
        // The commit marker went out under the old id at Short.MAX_VALUE:
        // the partition, which saw the last usable epoch, took it.
        wait_closed(&broker).await;
        let state = described(&broker, id);
        assert_eq!(state.state, "CompleteCommit");
        assert_eq!((state.producer_id, state.producer_epoch), (producer_id, 0));

        // The new pair starts the next transaction.
        let added = serve(
            &broker,
            add_request(id, (producer_id, 0), vec![("data".into(), 0)]),
        )
        .await;
        assert!(
            matches!(&added, TxnResponse::AddPartitions(Ok(errors)) if errors == &vec![code::NONE]),
            "{added:?}"
        );
    });
}
