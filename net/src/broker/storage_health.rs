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
//!
//! The reports name the data directories whose logs fail, so shard 0
//! logs each directory's failure once for the whole broker (not once per
//! partition: a failed disk of a thousand partitions is one event), and
//! its recovery once.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use sluice_engine::ShardId;

use super::{Broker, ControllerRequest, PartitionKey, ShardRequest, ShardResponse};
use crate::constants::{CONTROLLED_SHUTDOWN_RETRY, STORAGE_CHECK_INTERVAL, STORAGE_RECOVERY_HOLD};

impl Broker {
    /// Runs on every shard until shutdown: reports to shard 0 whenever
    /// the set of data directories whose logs fail their writes changes.
    pub async fn watch_storage(self: Rc<Self>) {
        // A directory that failed must keep working for a while before it
        // counts as working again: a full disk whose space comes and goes
        // would otherwise move leaderships back and forth, and log its
        // failure over and over.
        let mut last_failed: BTreeMap<usize, Instant> = BTreeMap::new();
        let mut reported: BTreeSet<usize> = BTreeSet::new();
        loop {
            glommio::timer::sleep(STORAGE_CHECK_INTERVAL).await;
            if self.shutting_down.get() {
                return;
            }
            let now = Instant::now();
            let failing_now = self.failing_dirs();
            let mut error = None;
            for (dir, failure) in &failing_now {
                last_failed.insert(*dir, now);
                error.get_or_insert_with(|| failure.clone());
            }
            let failing: BTreeSet<usize> = last_failed
                .iter()
                .filter(|(dir, since)| {
                    failing_now.contains_key(dir)
                        || (reported.contains(dir)
                            && now.duration_since(**since) < STORAGE_RECOVERY_HOLD)
                })
                .map(|(dir, _)| *dir)
                .collect();
            last_failed.retain(|dir, _| failing.contains(dir));
            if !failing_now.is_empty() {
                self.resign_failing_replicas(&failing_now).await;
            }
            if failing == reported {
                continue;
            }
            let report = ShardRequest::StorageFailing {
                shard: self.shard,
                dirs: failing.iter().copied().collect(),
                error,
            };
            if self.mesh.call(ShardId(0), report).await.is_some() {
                reported = failing;
            }
        }
    }

    /// This shard's data directories (by index) holding a log whose last
    /// write or sync failed, each with one such failure.
    pub(super) fn failing_dirs(&self) -> BTreeMap<usize, String> {
        let logs = self.logs.borrow();
        let log_dirs = self.log_dirs.borrow();
        let mut failing = BTreeMap::new();
        for (_, _, log) in logs.iter() {
            if let Some(failure) = log.write_failure() {
                let dir = log_dirs.index_of(log.dir()).unwrap_or(0);
                failing.entry(dir).or_insert(failure);
            }
        }
        failing
    }

    /// Whether the failing directories `dirs` (with those other shards
    /// report) take the whole broker out of the cluster.
    fn storage_fails_whole(&self, dirs: impl Iterator<Item = usize>) -> bool {
        let mut failing: BTreeSet<usize> = self.dirs_failing.borrow().iter().copied().collect();
        failing.extend(dirs);
        fails_whole(&failing, self.config.log_dirs().len())
    }

    /// In a cluster, while only some of several data directories fail:
    /// asks the controller to take this broker out of the ISRs (and
    /// leaderships) of this shard's partitions in them, as Kafka takes an
    /// offline directory's replicas offline; its other partitions go on.
    /// Only partitions another live replica is in sync for are named, so
    /// this stops asking once the controller has moved them.
    async fn resign_failing_replicas(&self, failing: &BTreeMap<usize, String>) {
        if self.storage_fails_whole(failing.keys().copied()) {
            return;
        }
        let node = self.config.node_id;
        let metadata = self.metadata();
        let live: BTreeSet<i32> = metadata
            .live_brokers()
            .map(|broker| broker.id)
            .filter(|broker| *broker != node)
            .collect();
        if live.is_empty() {
            return;
        }
        let partitions: Vec<PartitionKey> = {
            let logs = self.logs.borrow();
            // A log whose writes fail is in a failing directory.
            logs.iter()
                .filter(|(_, _, log)| log.write_failure().is_some())
                .filter(|(topic, partition, _)| {
                    metadata.partition(topic, *partition).is_some_and(|state| {
                        state.isr.contains(&node)
                            && state.isr.iter().any(|member| live.contains(member))
                    })
                })
                .map(|(topic, partition, _)| (topic.to_string(), partition))
                .collect()
        };
        if partitions.is_empty() {
            return;
        }
        let count = partitions.len();
        let answer = self
            .controller_call(ControllerRequest::ResignReplicas {
                id: node,
                partitions,
            })
            .await;
        if !matches!(answer, Some(ShardResponse::Done)) {
            // Asked again at the next check.
            tracing::debug!(
                ?answer,
                count,
                "handing over partitions of a failing directory not accepted yet"
            );
        }
    }

    /// On shard 0: a shard's report of its failing data directories. Logs
    /// each directory's failure and recovery once for the broker. When the
    /// failures take the whole broker out (`storage_fails_whole`), steps
    /// out of the cluster, and back in once they no longer do; with only
    /// some of several directories failing, each shard hands over just
    /// their partitions (`resign_failing_replicas`).
    pub(super) fn storage_report(&self, shard: ShardId, dirs: &[usize], error: Option<&str>) {
        let (was, now) = {
            let mut failing = self.failing_dirs_by_shard.borrow_mut();
            let before: BTreeSet<usize> = failing.keys().copied().collect();
            for (dir, shards) in failing.iter_mut() {
                if !dirs.contains(dir) {
                    shards.remove(&shard.0);
                }
            }
            for dir in dirs {
                failing.entry(*dir).or_default().insert(shard.0);
            }
            failing.retain(|_, shards| !shards.is_empty());
            let after: BTreeSet<usize> = failing.keys().copied().collect();
            let names = self.config.log_dirs();
            let name = |dir: &usize| {
                names
                    .get(*dir)
                    .map_or_else(|| format!("#{dir}"), |path| path.display().to_string())
            };
            for dir in after.difference(&before) {
                tracing::error!(
                    dir = %name(dir),
                    error = error.unwrap_or("a write failed"),
                    "data directory failing: its partitions refuse writes with KAFKA_STORAGE_ERROR until they succeed; the other directories keep serving"
                );
            }
            for dir in before.difference(&after) {
                tracing::info!(dir = %name(dir), "data directory takes writes again");
            }
            if before != after {
                *self.dirs_failing.borrow_mut() = after.iter().copied().collect();
                self.tell_shards_dirs_failing(after.iter().copied().collect());
            }
            let total = names.len();
            (fails_whole(&before, total), fails_whole(&after, total))
        };
        if was == now {
            return;
        }
        let Some(controller) = &self.controller else {
            return;
        };
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

    /// On shard 0: tells every shard which directories fail now.
    fn tell_shards_dirs_failing(&self, dirs: Vec<usize>) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        glommio::spawn_local(async move {
            for shard in 0..this.shards() {
                let told = ShardRequest::DirsFailing(dirs.clone());
                // A shard that cannot be reached is stopping.
                let _ = this.mesh.call(ShardId(shard as u16), told).await;
            }
        })
        .detach();
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
        let failing: BTreeSet<usize> = self
            .failing_dirs_by_shard
            .borrow()
            .keys()
            .copied()
            .collect();
        if !fails_whole(&failing, self.config.log_dirs().len()) {
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

/// Whether `failing` data directories of `total` take the whole broker out
/// of the cluster: the first (it holds the broker's metadata) or every one.
/// With only some of several failing, only their partitions move.
fn fails_whole(failing: &BTreeSet<usize>, total: usize) -> bool {
    failing.contains(&0) || failing.len() >= total
}
