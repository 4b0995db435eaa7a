//! A broker's membership of its cluster: what it does when the active
//! controller refuses its registration, and the checks that turn a
//! misconfigured broker away with one line instead of letting it join the
//! wrong cluster or take another broker's id.
//!
//! A broker that is not a voter (an observer) keeps no metadata log, so its
//! data directory records the id of the cluster it joined in
//! `meta/cluster-id` (as Kafka's `meta.properties` does); a voter's
//! directory is its metadata log, which holds the cluster id already.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_cluster::wal::Wal;
use sluice_cluster::WriteError;
use sluice_engine::notify::Signal;
use sluice_engine::{DmaStorage, Storage};

use crate::constants::{
    CLUSTER_ID_FILE_BYTES_MAX, DUPLICATE_REGISTRATION_REPORT_INTERVAL,
    DUPLICATE_REGISTRATION_SESSIONS,
};

/// Where a broker that is not a voter records its cluster's id.
const CLUSTER_ID_FILE: &str = "meta/cluster-id";

/// How start-up and [`Refusals`] share the fate of this broker's first
/// registration: start-up waits until it is registered or given up.
#[derive(Default)]
pub(super) struct Registration {
    /// Set once start-up saw this broker registered.
    started: Cell<bool>,
    given_up: RefCell<Option<String>>,
    signal: Signal,
}

impl Registration {
    /// Start-up saw this broker registered: a refusal from now on does not
    /// stop it (see [`Refusals::refused`]).
    pub(super) fn started(&self) {
        self.started.set(true);
    }

    /// Resolves with the reason once the first registration is given up.
    pub(super) async fn given_up(&self) -> String {
        self.signal
            .wait_for(|| self.given_up.borrow().clone())
            .await
    }
}

/// The active controller's refusals of this broker's registration in a row
/// (DUPLICATE_BROKER_REGISTRATION: another live broker holds its id).
///
/// A refused registration is retried, since the holder may be this
/// broker's own previous process, killed, whose session has not run out
/// yet. Refused for the broker session times
/// [`DUPLICATE_REGISTRATION_SESSIONS`], a broker that never registered
/// gives up (start-up fails with the reason: two processes with one id),
/// and one that had (its id taken over while it was fenced, e.g. stopped
/// past its session) stays fenced and says so every
/// [`DUPLICATE_REGISTRATION_REPORT_INTERVAL`] while it keeps asking.
pub(super) struct Refusals {
    give_up_after: Duration,
    since: Option<Instant>,
    reported_at: Option<Instant>,
}

impl Refusals {
    pub(super) fn new(session: Duration) -> Refusals {
        Refusals {
            give_up_after: session * DUPLICATE_REGISTRATION_SESSIONS,
            since: None,
            reported_at: None,
        }
    }

    /// The registration was written.
    pub(super) fn accepted(&mut self) {
        self.since = None;
    }

    /// A registration failed with `error`; returns true when this broker
    /// gives up registering (told to start-up through `registration`).
    pub(super) fn failed(&mut self, error: WriteError, registration: &Registration) -> bool {
        let WriteError::DuplicateBroker(reason) = error else {
            tracing::debug!(?error, "registering with the controller failed; retrying");
            return false;
        };
        let since = *self.since.get_or_insert_with(Instant::now);
        let refused_for = since.elapsed();
        if refused_for < self.give_up_after {
            tracing::info!(%reason, "registration refused; retrying until the holder's session expires");
            return false;
        }
        let line = format!(
            "{reason}; the active controller refused this broker's registration for {} ms \
             (DUPLICATE_BROKER_REGISTRATION): give each broker its own node_id",
            refused_for.as_millis()
        );
        if !registration.started.get() {
            *registration.given_up.borrow_mut() = Some(line);
            registration.signal.notify();
            return true;
        }
        let due = self
            .reported_at
            .is_none_or(|at| at.elapsed() >= DUPLICATE_REGISTRATION_REPORT_INTERVAL);
        if due {
            tracing::error!("this broker stays fenced: {line}");
            self.reported_at = Some(Instant::now());
        }
        false
    }
}

/// A broker that is not a voter must not run on a voter's data directory:
/// that is a voter left out of `controller_voters` (its quorum would be
/// one voter short, and this node would ignore its metadata log).
pub(super) fn check_observer_data_dir(
    data_dir: &Path,
    node_id: i32,
    voters: &[(i32, SocketAddr)],
) -> Result<(), String> {
    if Wal::new(DmaStorage, data_dir).is_new() {
        return Ok(());
    }
    Err(format!(
        "{} holds a metadata quorum voter's log, but node {node_id} is not in controller_voters \
         ({}); a voter must be listed there (add node {node_id} back), and a broker that is not \
         a voter needs a data directory of its own",
        data_dir.display(),
        listed(voters)
    ))
}

/// Checks that this broker's data directory belongs to the cluster its
/// voters form (`cluster_id`), recording the id there the first time.
pub(super) async fn check_cluster_id(
    data_dir: &Path,
    cluster_id: &str,
    voters: &[(i32, SocketAddr)],
) -> Result<(), String> {
    let storage = DmaStorage;
    let path = data_dir.join(CLUSTER_ID_FILE);
    if !storage.exists(&path) {
        let line = format!("{cluster_id}\n");
        return storage
            .write_small_atomic(&path, line.as_bytes())
            .await
            .map_err(|error| format!("writing {}: {error}", path.display()));
    }
    let bytes = storage
        .read_small(&path, CLUSTER_ID_FILE_BYTES_MAX)
        .await
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    let stored = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.strip_suffix('\n'))
        .filter(|id| !id.is_empty() && !id.contains('\n'))
        .ok_or_else(|| {
            format!(
                "{} does not hold a cluster id (one line expected); it is not Sluice's",
                path.display()
            )
        })?;
    if stored == cluster_id {
        return Ok(());
    }
    Err(format!(
        "{} belongs to cluster {stored}, but the voters in controller_voters ({}) are of cluster \
         {cluster_id}; start this broker with its own cluster's voters, or on an empty data \
         directory to join this cluster",
        data_dir.display(),
        listed(voters)
    ))
}

fn listed(voters: &[(i32, SocketAddr)]) -> String {
    voters
        .iter()
        .map(|(id, address)| format!("{id}@{address}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T, F>(make: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(make)
            .expect("an executor")
            .join()
            .expect("the executor ran")
    }

    #[test]
    fn the_cluster_id_is_recorded_once_and_another_is_refused() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("sluice-cluster-id-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("meta")).expect("a temp dir");
        let voters = vec![(1, SocketAddr::from(([127, 0, 0, 1], 9093)))];
        let checked = dir.clone();
        let outcomes = run(move || async move {
            let first = check_cluster_id(&checked, "cluster-a", &[]).await;
            let again = check_cluster_id(&checked, "cluster-a", &[]).await;
            let other = check_cluster_id(&checked, "cluster-b", &voters).await;
            (first, again, other)
        });
        assert_eq!(outcomes.0, Ok(()));
        assert_eq!(outcomes.1, Ok(()));
        let error = outcomes
            .2
            .expect_err("another cluster's voters are refused");
        assert!(
            error.contains("belongs to cluster cluster-a")
                && error.contains("are of cluster cluster-b")
                && error.contains("1@127.0.0.1:9093")
                && !error.contains('\n'),
            "{error}"
        );
        std::fs::write(dir.join(CLUSTER_ID_FILE), b"no newline").expect("overwrite");
        let checked = dir.clone();
        let garbled =
            run(move || async move { check_cluster_id(&checked, "cluster-a", &[]).await });
        assert!(garbled.is_err_and(|error| error.contains("does not hold a cluster id")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
