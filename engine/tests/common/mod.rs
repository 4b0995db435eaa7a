//! Helpers shared by the engine's integration tests.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::LocalExecutorBuilder;
use sluice_engine::log::LogConfig;
use sluice_engine::{BatchCache, MemStorage, PartitionLog};

/// Runs `body` on a fresh glommio executor and fails the test if it panics.
pub fn in_executor<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let handle = LocalExecutorBuilder::default()
        .spawn(body)
        .expect("start an executor");
    if handle.join().is_err() {
        panic!("the test body panicked (see above)");
    }
}

/// Opens (or creates) the log in `dir` on `storage`, with default settings
/// and a batch cache of `cache_bytes`.
pub async fn open_mem_log(
    storage: &MemStorage,
    dir: &str,
    cache_bytes: usize,
) -> Rc<PartitionLog<MemStorage>> {
    match PartitionLog::open(
        storage.clone(),
        PathBuf::from(dir),
        LogConfig::default(),
        BatchCache::new(cache_bytes),
    )
    .await
    {
        Ok(log) => log,
        Err(error) => panic!("opening {dir} failed: {error}"),
    }
}
