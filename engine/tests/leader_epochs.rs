//! The leader-epoch checkpoint: a new log starts epoch 0 at its start, a new
//! epoch is recorded at the log end, and both survive a restart in Kafka's
//! text format.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_engine::batch::{build_batch, split_and_validate};
use sluice_engine::{BatchCache, LeaderEpoch, LogConfig, MemStorage, PartitionLog, Storage};

fn run<F: std::future::Future<Output = ()> + 'static>(future: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .spawn(future)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn epochs_are_recorded_and_reloaded() {
    run(|| async {
        let storage = MemStorage::new(11);
        let dir = PathBuf::from("/data/epochs-0");
        let log = PartitionLog::open(
            storage.clone(),
            dir.clone(),
            LogConfig::default(),
            BatchCache::new(1 << 20),
        )
        .await
        .unwrap();
        assert_eq!(log.leader_epochs(), vec![(0, 0)]);
        let raw = Bytes::from(build_batch(5, &[b"a", b"b", b"c"]));
        log.append(&split_and_validate(&raw, usize::MAX).unwrap())
            .unwrap();
        log.set_leader_epoch(LeaderEpoch(3)).await.unwrap();
        let appended = log
            .append(&split_and_validate(&raw, usize::MAX).unwrap())
            .unwrap();
        assert_eq!(appended.base_offset.0, 3);
        log.close().await.unwrap();
        drop(log);
        let text = storage
            .read_small(
                &Path::new("/data/epochs-0").join("leader-epoch-checkpoint"),
                1024,
            )
            .await
            .unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "0\n2\n0 0\n3 3\n");
        let reopened = PartitionLog::open(
            storage.snapshot(),
            dir,
            LogConfig::default(),
            BatchCache::new(1 << 20),
        )
        .await
        .unwrap();
        assert_eq!(reopened.leader_epochs(), vec![(0, 0), (3, 3)]);
        // Batches appended now carry epoch 3 in their header.
        let appended = reopened
            .append(&split_and_validate(&raw, usize::MAX).unwrap())
            .unwrap();
        let read = reopened
            .read(appended.base_offset.0, 1 << 20, i64::MAX)
            .await
            .unwrap();
        let head: Vec<u8> = read
            .chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .take(16)
            .collect();
        assert_eq!(
            i32::from_be_bytes([head[12], head[13], head[14], head[15]]),
            3
        );
    });
}
