//! Helpers shared by the engine's integration tests.

use std::future::Future;

use glommio::LocalExecutorBuilder;

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
