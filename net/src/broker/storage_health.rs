//! A broker whose storage fails steps out of the cluster until it works
//! again, as Kafka takes a failed log directory's replicas offline.
//!
//! Every shard watches its logs: a log whose last write or sync failed
//! (a full disk, an I/O error) refuses appends until its writer's retry
//! succeeds. Shards report a change to shard 0, which, while any shard
//! reports failing writes, asks the active controller to fence this broker
//! (the controlled-shutdown request): its leaderships move to in-sync
//! replicas whose disks work and it leaves every ISR, so `acks=all` goes
//! on without it instead of waiting `replica.lag.time.max.ms` for a
//! follower that cannot write, and producers stop being answered
//! KAFKA_STORAGE_ERROR by a leader that cannot write. It stays fenced
//! (does not register again) until every shard's writes succeed again; it
//! then registers, catches up as a follower, and the leaders take it back
//! into their ISRs.
//!
//! A broker alone in its cluster, or the last one live, has nobody to hand
//! over to: it keeps answering KAFKA_STORAGE_ERROR until its writes
//! succeed, as a single node does.

use std::rc::Rc;
use std::time::Instant;

use sluice_engine::ShardId;

use super::{Broker, ControllerRequest, ShardRequest, ShardResponse};
use crate::constants::{CONTROLLED_SHUTDOWN_RETRY, STORAGE_CHECK_INTERVAL, STORAGE_RECOVERY_HOLD};

impl Broker {
    /// Runs on every shard until shutdown: reports to shard 0 whenever
    /// this shard's logs start or stop failing their writes.
    pub async fn watch_storage(self: Rc<Self>) {
        let mut reported = false;
        let mut healthy_since = Instant::now();
        loop {
            glommio::timer::sleep(STORAGE_CHECK_INTERVAL).await;
            if self.shutting_down.get() {
                return;
            }
            let now = Instant::now();
            if self
                .logs
                .borrow()
                .iter()
                .any(|(_, _, log)| log.write_failure().is_some())
            {
                healthy_since = now;
            }
            // A disk that failed must keep working for a while before the
            // broker takes partitions again: a full disk whose space comes
            // and goes would otherwise move leaderships back and forth.
            let failing = healthy_since == now
                || (reported && now.duration_since(healthy_since) < STORAGE_RECOVERY_HOLD);
            if failing == reported {
                continue;
            }
            let report = ShardRequest::StorageFailing {
                shard: self.shard,
                failing,
            };
            if self.mesh.call(ShardId(0), report).await.is_some() {
                reported = failing;
            }
        }
    }

    /// On shard 0: a shard's report. Steps out when the first shard fails
    /// and back in when the last one recovers.
    pub(super) fn storage_report(&self, shard: ShardId, failing: bool) {
        let Some(controller) = &self.controller else {
            return;
        };
        let (was, now) = {
            let mut shards = controller.storage_failing.borrow_mut();
            let was = !shards.is_empty();
            if failing {
                shards.insert(shard.0);
            } else {
                shards.remove(&shard.0);
            }
            (was, !shards.is_empty())
        };
        if was == now {
            return;
        }
        if now {
            let Some(this) = self.this.upgrade() else {
                return;
            };
            glommio::spawn_local(async move { this.step_out().await }).detach();
        } else {
            controller.withdrawn.set(false);
            tracing::info!("storage writes succeed again: registering with the controller");
            // keep_registered waits on the image's changes; wake it.
            if let Some(quorum) = controller.quorum() {
                quorum.changes().notify();
            }
        }
    }

    /// Asks the active controller to fence this broker until it is fenced
    /// or its storage has recovered.
    async fn step_out(&self) {
        let node = self.config.node_id;
        let others_live = self
            .metadata()
            .live_brokers()
            .any(|broker| broker.id != node);
        if self.config.cluster.voters.len() <= 1 || !others_live {
            tracing::error!(
                "storage writes are failing and no other broker can take over: produce is refused with KAFKA_STORAGE_ERROR until they succeed"
            );
            return;
        }
        let Some(controller) = &self.controller else {
            return;
        };
        if controller.storage_failing.borrow().is_empty() {
            // Recovered before this task ran.
            return;
        }
        controller.withdrawn.set(true);
        tracing::error!(
            "storage writes are failing: handing this broker's leaderships over and leaving the ISRs until they succeed"
        );
        let withdrawn = || controller.withdrawn.get();
        let fenced = || {
            self.metadata()
                .brokers
                .get(&node)
                .is_none_or(|broker| broker.fenced)
        };
        while withdrawn() && !fenced() && !self.shutting_down.get() {
            let answer = self
                .serve_controller(ControllerRequest::ShutDownBroker { id: node })
                .await;
            if matches!(answer, ShardResponse::Done) && fenced() {
                break;
            }
            glommio::timer::sleep(CONTROLLED_SHUTDOWN_RETRY).await;
        }
    }
}
