//! One clock for every timestamp the benchmark takes: nanoseconds since the
//! Unix epoch, read from the monotonic clock anchored once to the wall
//! clock. Monotonic, so a wall-clock step cannot produce negative or huge
//! latencies; anchored, so timestamps carried in payloads are comparable
//! between threads (and, roughly, between processes on one host).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();

fn anchor() -> &'static (Instant, u64) {
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64);
        (Instant::now(), wall.unwrap_or(0))
    })
}

/// Nanoseconds since the Unix epoch, monotonic within the process.
pub fn now_nanos() -> u64 {
    let (instant, wall) = anchor();
    wall + instant.elapsed().as_nanos() as u64
}

/// The `Instant` at which `now_nanos()` reads `nanos` (for timers).
pub fn instant_at(nanos: u64) -> Instant {
    let (instant, wall) = anchor();
    *instant + std::time::Duration::from_nanos(nanos.saturating_sub(*wall))
}

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
pub const NANOS_PER_MILLI: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_maps_to_instants() {
        let first = now_nanos();
        let second = now_nanos();
        assert!(second >= first);
        let at = instant_at(second + NANOS_PER_SEC);
        let gap = at.duration_since(instant_at(second));
        assert_eq!(gap.as_nanos(), NANOS_PER_SEC as u128);
    }
}
