//! The lease under which a broker takes writes as a partition leader.
//!
//! The active controller fences a broker it has not heard from for
//! `broker.session.timeout.ms` and hands its partitions to other replicas.
//! A broker cut off from the controller learns of that only when it hears
//! from the quorum again, and until then it would go on acknowledging
//! acks=1 (and acks=0) writes to partitions that now have another leader:
//! writes that are thrown away when it rejoins (Kafka's brokers do exactly
//! that). Instead, a broker stops taking produce requests once it has not
//! been in touch with the controller for a session less
//! [`LEASE_SAFETY_MARGIN`]: before the controller can have fenced it, so
//! at no moment do two brokers both acknowledge writes for one partition.
//! Its writes are answered NOT_LEADER_OR_FOLLOWER (retriable: the client
//! looks the leader up again) until it is back in touch.
//!
//! Shard 0 holds the quorum member and renews the lease every
//! [`LEASE_RENEW_INTERVAL`]; every shard reads it with one atomic load per
//! produce request. A shard 0 that stalls stops renewing, which only ends
//! the lease early.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_cluster::Quorum;

use crate::constants::{LEASE_RENEW_INTERVAL, LEASE_SAFETY_MARGIN};

/// Marks a lease that never ends (a quorum of one).
const FOREVER: u64 = u64::MAX;

/// The lease of one broker process, shared by its shards.
#[derive(Debug)]
pub struct ControllerLease {
    /// The instant the millisecond counts below start from.
    epoch: Instant,
    /// Milliseconds after `epoch` at which the lease ends; 0 before the
    /// first contact.
    until_ms: AtomicU64,
}

impl Default for ControllerLease {
    fn default() -> Self {
        ControllerLease {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }
}

impl ControllerLease {
    /// Whether this broker may take writes as a partition leader now.
    pub fn holds(&self) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until == FOREVER || self.millis(Instant::now()) < until
    }

    /// Renews the lease from the last contact with the controller (none
    /// yet: nothing to renew).
    pub fn renew(&self, contact: Option<Instant>, session: Duration) {
        let Some(at) = contact else {
            return;
        };
        let until = self.millis(at + session.saturating_sub(LEASE_SAFETY_MARGIN));
        // Contact times only move forward; a stale renewal never shortens
        // a lease a fresher one granted, nor revives a lapsed one.
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// A lease that never ends: this node alone is the quorum, so no other
    /// controller can fence it.
    pub fn grant_forever(&self) {
        self.until_ms.store(FOREVER, Ordering::Relaxed);
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(FOREVER - 1)
    }
}

/// Renews `lease` from `quorum` until the process stops (on shard 0).
/// `voters` is the quorum's size.
pub async fn renew_lease(
    quorum: Quorum,
    lease: std::sync::Arc<ControllerLease>,
    voters: usize,
    session: Duration,
) {
    if voters <= 1 {
        lease.grant_forever();
        return;
    }
    loop {
        lease.renew(quorum.controller_contact(), session);
        glommio::timer::sleep(LEASE_RENEW_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_millis(1_500);

    #[test]
    fn the_lease_ends_a_margin_before_the_session() {
        let lease = ControllerLease::default();
        assert!(!lease.holds(), "no lease before any contact");
        lease.renew(None, SESSION);
        assert!(!lease.holds());
        lease.renew(Some(Instant::now()), SESSION);
        assert!(lease.holds());

        // A lease whose counter started a session ago.
        let epoch = Instant::now()
            .checked_sub(SESSION)
            .expect("the clock is past one session");
        let late = ControllerLease {
            epoch,
            until_ms: AtomicU64::new(0),
        };
        // In touch a session ago less half the margin: the controller may
        // fence within half a margin, so the lease has lapsed.
        late.renew(Some(epoch + LEASE_SAFETY_MARGIN / 2), SESSION);
        assert!(!late.holds());
        // Back in touch: the lease holds again.
        late.renew(Some(Instant::now()), SESSION);
        assert!(late.holds());
        // A stale renewal does not shorten it.
        late.renew(Some(epoch), SESSION);
        assert!(late.holds());
        late.grant_forever();
        assert!(late.holds());
    }
}
