//! Open-loop rate control with coordinated-omission correction.
//!
//! A closed-loop generator sends the next message when the previous send
//! returns, so when the system stalls it simply stops asking, and the
//! stall shows up as one slow sample instead of the thousands of messages
//! that should have been sent meanwhile (Gil Tene's "coordinated
//! omission"). Here every message has an *intended* send time fixed in
//! advance by the target rate: message `i` is due at
//! `start + i / rate`. A producer that falls behind sends the backlog at
//! once, and every latency is measured from the intended time, so time
//! spent behind schedule is charged to every message that waited.

use crate::clock::NANOS_PER_SEC;

/// The intended send times of one producer's messages.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: u64,
    /// Messages per second; 0 means "as fast as possible" (no schedule).
    rate: u64,
}

impl Schedule {
    /// A schedule of `rate` messages per second from `start` (nanoseconds).
    pub fn new(start: u64, rate: u64) -> Schedule {
        Schedule { start, rate }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate == 0
    }

    /// When message `index` is due.
    pub fn intended(&self, index: u64) -> u64 {
        assert!(self.rate > 0, "an unlimited schedule has no intended times");
        let offset = u128::from(index) * u128::from(NANOS_PER_SEC) / u128::from(self.rate);
        self.start + offset as u64
    }

    /// How many messages are due at `now`: indices `0..due(now)` have an
    /// intended time at or before `now`.
    pub fn due(&self, now: u64) -> u64 {
        assert!(self.rate > 0, "an unlimited schedule has no intended times");
        if now < self.start {
            return 0;
        }
        let elapsed = u128::from(now - self.start);
        (elapsed * u128::from(self.rate) / u128::from(NANOS_PER_SEC)) as u64 + 1
    }
}

/// Splits a total rate over `producers`, spreading the remainder so the
/// sum is exact.
pub fn split_rate(total: u64, producers: u64, index: u64) -> u64 {
    assert!(producers > 0 && index < producers);
    total / producers + u64::from(index < total % producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let schedule = Schedule::new(1_000, 4);
        assert_eq!(schedule.intended(0), 1_000);
        assert_eq!(schedule.intended(1), 1_000 + 250_000_000);
        assert_eq!(schedule.intended(4), 1_000 + NANOS_PER_SEC);
        // Odd rates do not accumulate rounding drift.
        let odd = Schedule::new(0, 3);
        assert_eq!(odd.intended(3_000_000), 1_000_000 * NANOS_PER_SEC);
    }

    #[test]
    fn due_counts_messages_whose_time_has_come() {
        let schedule = Schedule::new(1_000, 4);
        assert_eq!(schedule.due(999), 0);
        assert_eq!(schedule.due(1_000), 1);
        assert_eq!(schedule.due(1_000 + 249_999_999), 1);
        assert_eq!(schedule.due(1_000 + 250_000_000), 2);
        for index in 0..1_000 {
            let at = schedule.intended(index);
            assert_eq!(
                schedule.due(at),
                index + 1,
                "message {index} is due at its own time"
            );
            assert_eq!(schedule.due(at - 1), index, "and not a nanosecond earlier");
        }
    }

    #[test]
    fn a_stalled_producer_charges_the_stall_to_every_late_message() {
        // 1000 msg/s; the producer stalls for 100 ms right after message 0.
        let schedule = Schedule::new(0, 1_000);
        let resumed = 100_000_000 + 1;
        let backlog = schedule.due(resumed);
        assert_eq!(backlog, 101);
        // The backlog is sent at `resumed`; latency is measured from each
        // message's intended time, not from when it was finally sent.
        let latencies: Vec<u64> = (1..backlog)
            .map(|index| resumed - schedule.intended(index))
            .collect();
        assert_eq!(latencies.first(), Some(&(resumed - 1_000_000)));
        assert_eq!(latencies.last(), Some(&1));
        // A closed-loop measurement would have seen one slow message; the
        // corrected one sees a hundred, with a mean of half the stall.
        let mean = latencies.iter().sum::<u64>() / latencies.len() as u64;
        assert!((49_000_000..=51_000_000).contains(&mean), "{mean}");
    }

    #[test]
    fn split_rate_is_exact() {
        for (total, producers) in [(10, 3), (200_000, 50), (7, 7), (3, 5)] {
            let sum: u64 = (0..producers)
                .map(|index| split_rate(total, producers, index))
                .sum();
            assert_eq!(sum, total);
        }
    }
}
