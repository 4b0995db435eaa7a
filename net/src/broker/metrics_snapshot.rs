//! A shard's metrics snapshot: its partitions' offsets and sizes, its bytes
//! per topic, its groups' committed offsets, its cache and executor
//! figures, gathered on the shard and published for the admin port (see
//! `crate::metrics` for why on a timer rather than on request).

use std::rc::Rc;
use std::time::Instant;

use crate::constants::{METRICS_COMMITTED_OFFSETS_MAX, METRICS_PUBLISH_INTERVAL};
use crate::metrics::{PartitionGauges, ShardSnapshot};

use super::Broker;

impl Broker {
    /// Publishes this shard's snapshot every `METRICS_PUBLISH_INTERVAL`
    /// until shutdown; run in a low-priority task queue.
    pub async fn publish_metrics(self: Rc<Self>) {
        let mut warned_truncated = false;
        loop {
            let (snapshot, truncated) = self.metrics_snapshot();
            if truncated && !warned_truncated {
                warned_truncated = true;
                tracing::warn!(
                    shard = %self.shard,
                    published = METRICS_COMMITTED_OFFSETS_MAX,
                    "more committed offsets than the metrics publish; the consumer lag of the \
                     rest is left out"
                );
            }
            self.metrics.shared().publish(snapshot);
            glommio::timer::sleep(METRICS_PUBLISH_INTERVAL).await;
            if self.shutting_down.get() {
                return;
            }
        }
    }

    /// This shard's figures now, and whether committed offsets were left
    /// out to stay within `METRICS_COMMITTED_OFFSETS_MAX`.
    fn metrics_snapshot(&self) -> (ShardSnapshot, bool) {
        let metadata = self.metadata();
        let node = self.config.node_id;
        let partitions: Vec<PartitionGauges> = self
            .logs
            .borrow()
            .iter()
            .map(|(topic, partition, log)| {
                let offsets = log.offsets();
                let state = metadata.partition(topic, partition);
                let leader = state.is_some_and(|state| state.leader == node);
                PartitionGauges {
                    topic: topic.to_string(),
                    partition,
                    log_start: offsets.log_start,
                    high_watermark: offsets.hw,
                    log_end: offsets.leo,
                    size_bytes: log.size_bytes(),
                    leader,
                    under_replicated: leader
                        && state.is_some_and(|state| state.isr.len() < state.replicas.len()),
                }
            })
            .collect();
        let topics = self
            .metrics
            .topic_traffic(|topic| metadata.topics.contains_key(topic));
        let (committed, truncated) = self.groups.committed_offsets(METRICS_COMMITTED_OFFSETS_MAX);
        // Counted on shard 0 only: every shard holds the same image.
        let offline_partitions = (self.shard.0 == 0).then(|| {
            metadata
                .topics
                .values()
                .flat_map(|topic| &topic.placement)
                .filter(|state| state.leader < 0)
                .count() as u64
        });
        let (reads_from_cache, reads_from_disk) = self.cache.reads();
        // The log counts a read served by read-ahead as a disk read first.
        let reads_ahead = self.cache.read_ahead_hits();
        let snapshot = ShardSnapshot {
            made: Some(Instant::now()),
            partitions,
            topics,
            committed,
            cache_used_bytes: self.cache.used_bytes() as u64,
            cache_budget_bytes: self.cache.budget_bytes() as u64,
            reads_from_cache,
            reads_from_disk: reads_from_disk.saturating_sub(reads_ahead),
            reads_ahead,
            read_ahead_bytes: self.cache.read_ahead_bytes() as u64,
            segment_files_open: self.cache.open_files().held() as u64,
            segment_files_max: u64::try_from(self.cache.open_files().max()).unwrap_or(u64::MAX),
            segment_files_closed_for_room: self.cache.open_files().closed_for_room(),
            executor: self.metrics.executor_figures(),
            cleaner: self.metrics.cleaner_figures(),
            offline_partitions,
        };
        (snapshot, truncated)
    }
}
