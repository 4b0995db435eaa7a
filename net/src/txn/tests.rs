//! The coordinator through a one-shard broker: a transaction decided
//! (PrepareCommit durable) but not completed is completed when its state
//! partition is loaded again, markers included.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::shard::mesh_plan;
use sluice_engine::{DmaStorage, Mesh};

use super::*;
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
            let (end, _) = broker
                .txns
                .end_now(&broker, "decided", true, false, None)
                .expect("decided");
            broker
                .txns
                .wait_written(&broker, 0, end)
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
