//! Client quotas (KIP-13, KIP-546): the entities and keys Kafka defines,
//! the checks AlterClientQuotas makes, the filters DescribeClientQuotas
//! takes, which quota applies to a request's user and client id, and each
//! shard's measurement of what they use (KIP-219 throttling).
//!
//! Quotas are records of the metadata log (see `sluice_cluster::records`),
//! so they are the same on every broker and survive restarts; this module
//! only reads the image.
//!
//! **Per broker, shared late.** Kafka measures a client's bytes over all
//! its connections to one broker; here a client's connections may sit on
//! several shards. Each shard measures the connections it accepted, and
//! while any of its sensors is active it sends the others its measured
//! rates every `QUOTA_SHARE_INTERVAL_MS` over the mesh
//! (`broker::quota_share`); a shard throttles on its own rate plus the
//! other shards' last reported ones. Asking the other shards on every
//! request would put a cross-shard round trip (about 14-150 µs, see
//! DESIGN.md) on every produce and fetch of a client with a quota, and
//! dividing the quota by the shard count would hold the usual client,
//! which produces or fetches over one connection per broker (librdkafka,
//! the Java clients), to a fraction of its quota. The price: what another
//! shard took in the last interval is seen that much late.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_engine::{ClusterMetadata, QuotaEntity, QuotaName, QuotaValue, QuotaValues};

use crate::constants::{
    QUOTA_SENSORS_MAX, QUOTA_SHARE_INTERVAL_MS, QUOTA_SHARE_STALE_INTERVALS, QUOTA_THROTTLE_MS_MAX,
    QUOTA_WINDOW_SAMPLES, QUOTA_WINDOW_SAMPLE_MS,
};

/// Kafka's entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
/// Connection-rate quotas (KIP-612) are not implemented: refused.
pub const IP: &str = "ip";

/// Kafka's quota keys for users and client ids.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// The share of a shard's time a client's requests may take, in percent
/// of one shard (Kafka: of one network or I/O thread), measured as the
/// time the shard spends polling their handlers.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Partitions a client may create or delete per second (KIP-599), with a
/// burst of a whole window's worth (`MutationBuckets`).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// Keys whose values Kafka types as LONG: whole numbers.
const WHOLE_KEYS: [&str; 2] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE];
const KEYS: [&str; 4] = [
    PRODUCER_BYTE_RATE,
    CONSUMER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    CONTROLLER_MUTATION_RATE,
];

/// DescribeClientQuotas match types.
pub mod match_type {
    pub const EXACT: i8 = 0;
    pub const DEFAULT: i8 = 1;
    pub const ANY: i8 = 2;
}

/// An entity as a request names it: (type, name or `None` for the
/// default), checked into a [`QuotaEntity`]. The error is Kafka's message
/// for INVALID_REQUEST.
pub fn entity_of(parts: &[(&str, Option<&str>)]) -> Result<QuotaEntity, String> {
    if parts.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for (entity_type, name) in parts {
        let slot = match *entity_type {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => {
                return Err(
                    "ip quotas (connection creation rates) are not supported by this broker".into(),
                )
            }
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        };
        if slot.is_some() {
            return Err(format!(
                "Duplicate entity type {entity_type} in the client quota entity"
            ));
        }
        *slot = Some(QuotaName::from_wire(*name));
    }
    Ok(entity)
}

/// An entity as Kafka lists it: user first, then client id.
pub fn entity_parts(entity: &QuotaEntity) -> Vec<(&'static str, Option<&str>)> {
    let mut parts = Vec::with_capacity(2);
    if let Some(user) = &entity.user {
        parts.push((USER, user.as_wire()));
    }
    if let Some(client_id) = &entity.client_id {
        parts.push((CLIENT_ID, client_id.as_wire()));
    }
    parts
}

/// Checks one change of an entity's quotas: a known key, and for a value
/// to set, a finite positive number (whole for the byte rates, which Kafka
/// types as LONG). Kafka's controller takes zero and negative numbers; a
/// zero byte rate would throttle without end, so they are refused here.
pub fn check_change(key: &str, value: Option<f64>) -> Result<(), String> {
    if !KEYS.contains(&key) {
        return Err(format!("Invalid configuration key {key}"));
    }
    let Some(value) = value else {
        return Ok(());
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "Quota {key} must be a positive number, not {value}"
        ));
    }
    if WHOLE_KEYS.contains(&key) && (value.fract() != 0.0 || value > i64::MAX as f64) {
        return Err(format!("Configuration {key} must be a Long value"));
    }
    Ok(())
}

/// Applies changes (a key and its new value, `None` to remove it) to an
/// entity's values; the entity is gone when no value is left.
pub fn apply_changes(values: &mut QuotaValues, changes: &[(String, Option<f64>)]) {
    for (key, value) in changes {
        match value {
            Some(value) => {
                values.insert(key.clone(), QuotaValue(*value));
            }
            None => {
                values.remove(key);
            }
        }
    }
}

/// One component of a DescribeClientQuotas filter.
pub struct FilterComponent<'a> {
    pub entity_type: &'a str,
    pub match_type: i8,
    pub name: Option<&'a str>,
}

/// What a filter asks of one entity type.
enum Want {
    /// This name, or the default.
    Exactly(QuotaName),
    /// Any name or the default, as long as the type is there.
    Present,
}

/// The entities `components` match, with their values, as Kafka's
/// controller answers DescribeClientQuotas; the error is Kafka's message
/// for INVALID_REQUEST.
pub fn describe<'m>(
    image: &'m ClusterMetadata,
    components: &[FilterComponent<'_>],
    strict: bool,
) -> Result<Vec<(&'m QuotaEntity, &'m QuotaValues)>, String> {
    let mut user = None;
    let mut client_id = None;
    for component in components {
        let slot = match component.entity_type {
            "" => return Err("Invalid empty entity type.".into()),
            USER => &mut user,
            CLIENT_ID => &mut client_id,
            // No entity has one: matches nothing, as it would in Kafka
            // without ip quotas.
            IP => return Ok(Vec::new()),
            other => return Err(format!("Unknown entity type {other}")),
        };
        if slot.is_some() {
            return Err(format!(
                "Entity type {} cannot appear more than once in the filter.",
                component.entity_type
            ));
        }
        *slot = Some(match (component.match_type, component.name) {
            (match_type::EXACT, Some(name)) => Want::Exactly(QuotaName::Named(name.to_string())),
            (match_type::EXACT, None) => {
                return Err(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                )
            }
            (match_type::DEFAULT, None) => Want::Exactly(QuotaName::Default),
            (match_type::ANY, None) => Want::Present,
            (match_type::DEFAULT | match_type::ANY, Some(_)) => {
                return Err(format!(
                    "Request specified match type {}, but also specified a match string.",
                    component.match_type
                ))
            }
            (other, _) => return Err(format!("Unknown match type {other}")),
        });
    }
    let matches = |have: &Option<QuotaName>, want: &Option<Want>| match (have, want) {
        (_, None) => !strict || have.is_none(),
        (None, Some(_)) => false,
        (Some(_), Some(Want::Present)) => true,
        (Some(name), Some(Want::Exactly(wanted))) => name == wanted,
    };
    Ok(image
        .client_quotas
        .iter()
        .filter(|(entity, _)| {
            matches(&entity.user, &user) && matches(&entity.client_id, &client_id)
        })
        .collect())
}

/// Who a quota is measured for: the user and client id a sensor counts,
/// each `None` when the quota that applies does not tell them apart (a
/// user's quota shared by all its client ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SensorKey {
    key: &'static str,
    user: Option<String>,
    client_id: Option<String>,
}

/// The quota `key` that applies to `user` and `client_id`, by Kafka's
/// precedence (most specific first), and whom it is measured for.
fn resolve(
    image: &ClusterMetadata,
    key: &'static str,
    user: &str,
    client_id: &str,
) -> Option<(f64, SensorKey)> {
    use QuotaName::{Default, Named};
    let named_user = || Named(user.to_string());
    let named_client = || Named(client_id.to_string());
    // (the entity, and whether its sensor tells users and client ids apart)
    let precedence = [
        (Some(named_user()), Some(named_client()), true, true),
        (Some(named_user()), Some(Default), true, true),
        (Some(named_user()), None, true, false),
        (Some(Default), Some(named_client()), true, true),
        (Some(Default), Some(Default), true, true),
        (Some(Default), None, true, false),
        (None, Some(named_client()), false, true),
        (None, Some(Default), false, true),
    ];
    precedence
        .into_iter()
        .find_map(|(entity_user, entity_client, by_user, by_client)| {
            let entity = QuotaEntity {
                user: entity_user,
                client_id: entity_client,
            };
            let value = image.client_quotas.get(&entity)?.get(key)?;
            Some((
                value.0,
                SensorKey {
                    key,
                    user: by_user.then(|| user.to_string()),
                    client_id: by_client.then(|| client_id.to_string()),
                },
            ))
        })
}

/// Request time as `REQUEST_PERCENTAGE` counts it: a second of a shard's
/// time is 100 (percent) over one second, so a nanosecond is 1e-7.
const NANOS_PER_PERCENT: f64 = 1e7;

/// What `busy` (time a shard spent on a request) counts against a
/// `REQUEST_PERCENTAGE` quota.
pub fn request_time(busy: Duration) -> f64 {
    busy.as_nanos() as f64 / NANOS_PER_PERCENT
}

/// The longest throttle a request-time quota imposes on one response:
/// one sample, as Kafka bounds it (`quota.window.size.seconds`), since a
/// single slow request would otherwise hold its connection for the whole
/// window.
const REQUEST_THROTTLE_MAX: Duration = Duration::from_millis(QUOTA_WINDOW_SAMPLE_MS);

/// One sample of a [`Rate`]: what was recorded from `start` on.
#[derive(Clone, Copy)]
struct Sample {
    start: Instant,
    total: f64,
}

/// Kafka's sampled rate: `QUOTA_WINDOW_SAMPLES` samples of
/// `QUOTA_WINDOW_SAMPLE_MS` each; the rate is their total over the time
/// since the oldest began, counted as at least all but one full sample so
/// that a new client's first bytes are not read as a huge rate.
struct Rate {
    samples: [Option<Sample>; QUOTA_WINDOW_SAMPLES],
    current: usize,
    last_recorded: Instant,
    /// Bytes recorded since this shard last reported the rate.
    unreported: f64,
}

const SAMPLE: Duration = Duration::from_millis(QUOTA_WINDOW_SAMPLE_MS);

impl Rate {
    fn new(now: Instant) -> Rate {
        let mut samples = [None; QUOTA_WINDOW_SAMPLES];
        samples[0] = Some(Sample {
            start: now,
            total: 0.0,
        });
        Rate {
            samples,
            current: 0,
            last_recorded: now,
            unreported: 0.0,
        }
    }

    fn record(&mut self, value: f64, now: Instant) {
        self.last_recorded = now;
        self.unreported += value;
        let fresh = self.samples[self.current]
            .is_some_and(|sample| now.saturating_duration_since(sample.start) < SAMPLE);
        if !fresh {
            self.current = (self.current + 1) % QUOTA_WINDOW_SAMPLES;
            self.samples[self.current] = Some(Sample {
                start: now,
                total: 0.0,
            });
        }
        if let Some(sample) = &mut self.samples[self.current] {
            sample.total += value;
        }
    }

    /// The rate per second and the window it was measured over.
    fn measure(&mut self, now: Instant) -> (f64, Duration) {
        let span = SAMPLE * QUOTA_WINDOW_SAMPLES as u32;
        let mut total = 0.0;
        let mut oldest = now;
        for slot in &mut self.samples {
            match slot {
                Some(sample) if now.saturating_duration_since(sample.start) >= span => {
                    *slot = None;
                }
                Some(sample) => {
                    total += sample.total;
                    oldest = oldest.min(sample.start);
                }
                None => {}
            }
        }
        let elapsed = now.saturating_duration_since(oldest);
        let window = elapsed.max(SAMPLE * (QUOTA_WINDOW_SAMPLES as u32 - 1));
        (total / window.as_secs_f64(), window)
    }

    /// Nothing recorded for a whole window: forgetting it changes nothing.
    fn idle(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_recorded) >= SAMPLE * QUOTA_WINDOW_SAMPLES as u32
    }
}

/// Kafka's throttle time for a rate over its quota: the delay that brings
/// the rate measured over `window` back to the quota if nothing more
/// arrives, `(rate - quota) / quota * window`, bounded by
/// `QUOTA_THROTTLE_MS_MAX`.
fn throttle_for(rate: f64, quota: f64, window: Duration) -> Duration {
    if rate <= quota {
        return Duration::ZERO;
    }
    let millis = ((rate - quota) / quota * window.as_secs_f64() * 1_000.0).round();
    Duration::from_millis((millis as u64).min(QUOTA_THROTTLE_MS_MAX))
}

/// Another shard's last reported rate of a sensor, and when it came.
struct RemoteRate {
    shard: u16,
    rate: f64,
    at: Instant,
}

/// One shard's rates, one per user and client id a quota applies to, and
/// the other shards' reports of theirs.
#[derive(Default)]
pub struct QuotaSensors {
    rates: HashMap<SensorKey, Rate>,
    remote: HashMap<SensorKey, Vec<RemoteRate>>,
    /// Whether this shard's task that reports its rates runs.
    pub sharing: bool,
    /// Set when a sensor took more than `QUOTA_SHARE_EAGER_SECONDS` of its
    /// quota since it was last reported: report before the interval ends.
    pub report_now: bool,
}

/// A sensor that took this many seconds' worth of its quota since its last
/// report is reported at once.
const QUOTA_SHARE_EAGER_SECONDS: f64 = 0.1;

/// How long another shard's report counts: a few intervals, so that one
/// late report does not drop it, and a shard that went quiet stops
/// counting soon after.
const REMOTE_RATE_STALE: Duration =
    Duration::from_millis(QUOTA_SHARE_INTERVAL_MS * QUOTA_SHARE_STALE_INTERVALS);

impl QuotaSensors {
    /// Records `amount` of `key` (bytes of `PRODUCER_BYTE_RATE` or
    /// `CONSUMER_BYTE_RATE`, [`request_time`] of `REQUEST_PERCENTAGE`) for
    /// `user` and `client_id`, and returns how long they are throttled
    /// for; `None` when no quota applies to them. Costs nothing while the
    /// cluster has no client quota.
    pub fn record(
        &mut self,
        image: &ClusterMetadata,
        key: &'static str,
        identity: (&str, &str),
        amount: f64,
        now: Instant,
    ) -> Option<Duration> {
        let throttle = self.record_unbounded(image, key, identity, amount, now)?;
        Some(if key == REQUEST_PERCENTAGE {
            throttle.min(REQUEST_THROTTLE_MAX)
        } else {
            throttle
        })
    }

    fn record_unbounded(
        &mut self,
        image: &ClusterMetadata,
        key: &'static str,
        identity: (&str, &str),
        amount: f64,
        now: Instant,
    ) -> Option<Duration> {
        if image.client_quotas.is_empty() {
            return None;
        }
        let (user, client_id) = identity;
        let (quota, sensor) = resolve(image, key, user, client_id)?;
        if !self.rates.contains_key(&sensor) && self.rates.len() >= QUOTA_SENSORS_MAX {
            self.rates.retain(|_, rate| !rate.idle(now));
        }
        if self.rates.len() >= QUOTA_SENSORS_MAX && !self.rates.contains_key(&sensor) {
            // Full of active clients: this one is measured from nothing.
            let mut rate = Rate::new(now);
            rate.record(amount, now);
            let (measured, window) = rate.measure(now);
            return Some(throttle_for(measured, quota, window));
        }
        let remote = self.remote_rate(&sensor, now);
        let rate = self.rates.entry(sensor).or_insert_with(|| Rate::new(now));
        rate.record(amount, now);
        // A burst is reported at once rather than at the next interval:
        // a client's first window of quota goes by in milliseconds.
        if rate.unreported >= quota * QUOTA_SHARE_EAGER_SECONDS {
            self.report_now = true;
        }
        let (measured, window) = rate.measure(now);
        Some(throttle_for(measured + remote, quota, window))
    }

    /// The other shards' rates of `sensor`, as last reported.
    fn remote_rate(&mut self, sensor: &SensorKey, now: Instant) -> f64 {
        let Some(reports) = self.remote.get_mut(sensor) else {
            return 0.0;
        };
        reports.retain(|report| now.saturating_duration_since(report.at) < REMOTE_RATE_STALE);
        let total = reports.iter().map(|report| report.rate).sum();
        if reports.is_empty() {
            self.remote.remove(sensor);
        }
        total
    }

    /// This shard's rates of the sensors recorded within the quota window
    /// (their rate is not zero), to report to the other shards; empty when
    /// there are none. A sensor whose connections are throttled records
    /// nothing for seconds and still counts: reporting only recent ones
    /// let the other shards forget it and take a window of their own.
    pub fn active_rates(&mut self, now: Instant) -> Vec<(SensorKey, f64)> {
        self.report_now = false;
        self.rates
            .iter_mut()
            .filter(|(_, rate)| !rate.idle(now))
            .map(|(sensor, rate)| {
                rate.unreported = 0.0;
                (sensor.clone(), rate.measure(now).0)
            })
            .collect()
    }

    /// Takes shard `shard`'s report of its rates.
    pub fn take_remote(&mut self, shard: u16, rates: Vec<(SensorKey, f64)>, now: Instant) {
        for (sensor, rate) in rates {
            let known = self.remote.contains_key(&sensor);
            if !known && self.remote.len() >= QUOTA_SENSORS_MAX {
                // Full: the report is dropped; the shard measures alone.
                continue;
            }
            let reports = self.remote.entry(sensor).or_default();
            reports.retain(|report| report.shard != shard);
            reports.push(RemoteRate {
                shard,
                rate,
                at: now,
            });
        }
    }

    /// The most bytes one fetch may return to `user` and `client_id`: a
    /// whole window of their consumer quota (Kafka caps a fetch response
    /// so, so that one response cannot take many windows' worth), or
    /// `None` without a quota.
    pub fn fetch_bytes_max(image: &ClusterMetadata, identity: (&str, &str)) -> Option<usize> {
        if image.client_quotas.is_empty() {
            return None;
        }
        let (user, client_id) = identity;
        let (quota, _) = resolve(image, CONSUMER_BYTE_RATE, user, client_id)?;
        let window_seconds = (QUOTA_WINDOW_SAMPLES as u64 - 1) * QUOTA_WINDOW_SAMPLE_MS / 1_000;
        Some((quota * window_seconds as f64).min(usize::MAX as f64) as usize)
    }
}

/// The partition mutations (KIP-599: partitions created by CreateTopics
/// and CreatePartitions, deleted by DeleteTopics) a user and client id
/// may still make: Kafka's token bucket, a whole window of the quota deep
/// (`QUOTA_WINDOW_SAMPLES` samples of `QUOTA_WINDOW_SAMPLE_MS`), refilled
/// at the quota's rate. A request is let through while the bucket is not
/// below zero and takes all its mutations, so one large request may take
/// it below; the time back to zero is the throttle.
#[derive(Debug, Default)]
pub struct MutationBuckets {
    buckets: HashMap<SensorKey, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl MutationBuckets {
    /// `identity`'s bucket refilled up to `now`, and its quota; `None`
    /// without a `CONTROLLER_MUTATION_RATE` quota.
    fn bucket(
        &mut self,
        image: &ClusterMetadata,
        identity: (&str, &str),
        now: Instant,
    ) -> Option<(&mut Bucket, f64)> {
        if image.client_quotas.is_empty() {
            return None;
        }
        let (quota, sensor) = resolve(image, CONTROLLER_MUTATION_RATE, identity.0, identity.1)?;
        let window = SAMPLE * QUOTA_WINDOW_SAMPLES as u32;
        let depth = quota * window.as_secs_f64();
        if !self.buckets.contains_key(&sensor) && self.buckets.len() >= QUOTA_SENSORS_MAX {
            // A bucket untouched for a window is full again: forgetting it
            // changes nothing.
            self.buckets
                .retain(|_, bucket| now.saturating_duration_since(bucket.at) < window);
            if self.buckets.len() >= QUOTA_SENSORS_MAX {
                // Full of active clients: they start again from full
                // buckets rather than the map growing without bound.
                self.buckets.clear();
            }
        }
        let bucket = self.buckets.entry(sensor).or_insert(Bucket {
            tokens: depth,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * quota;
        bucket.tokens = (bucket.tokens + refill).min(depth);
        bucket.at = now;
        Some((bucket, quota))
    }

    /// Whether `identity` may make `mutations` more: always without a
    /// quota, and while its bucket is not below zero. When `strict` is
    /// false (request versions from before KIP-599, which cannot be told
    /// no) they are always let through. Those let through are taken.
    pub fn admit(
        &mut self,
        image: &ClusterMetadata,
        identity: (&str, &str),
        mutations: u64,
        strict: bool,
        now: Instant,
    ) -> bool {
        let Some((bucket, _)) = self.bucket(image, identity, now) else {
            return true;
        };
        if strict && bucket.tokens < 0.0 {
            return false;
        }
        bucket.tokens -= mutations as f64;
        true
    }

    /// How long `identity` is throttled for: until its bucket is back at
    /// zero, bounded by `QUOTA_THROTTLE_MS_MAX`.
    pub fn throttle(
        &mut self,
        image: &ClusterMetadata,
        identity: (&str, &str),
        now: Instant,
    ) -> Duration {
        match self.bucket(image, identity, now) {
            Some((bucket, quota)) if bucket.tokens < 0.0 => {
                Duration::from_secs_f64(-bucket.tokens / quota)
                    .min(Duration::from_millis(QUOTA_THROTTLE_MS_MAX))
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entries: &[(Option<QuotaName>, Option<QuotaName>, &str, f64)]) -> ClusterMetadata {
        let mut image = ClusterMetadata::default();
        for (user, client_id, key, value) in entries {
            image
                .client_quotas
                .entry(QuotaEntity {
                    user: user.clone(),
                    client_id: client_id.clone(),
                })
                .or_default()
                .insert(key.to_string(), QuotaValue(*value));
        }
        image
    }

    fn named(name: &str) -> Option<QuotaName> {
        Some(QuotaName::Named(name.to_string()))
    }

    #[test]
    fn precedence_is_kafkas() {
        let default = Some(QuotaName::Default);
        let levels = [
            (named("u"), named("c")),
            (named("u"), default.clone()),
            (named("u"), None),
            (default.clone(), named("c")),
            (default.clone(), default.clone()),
            (default.clone(), None),
            (None, named("c")),
            (None, default.clone()),
        ];
        // With every level set, each is found once the ones above it go.
        for first in 0..levels.len() {
            let entries: Vec<_> = levels[first..]
                .iter()
                .enumerate()
                .map(|(index, (user, client))| {
                    (
                        user.clone(),
                        client.clone(),
                        PRODUCER_BYTE_RATE,
                        (first + index + 1) as f64,
                    )
                })
                .collect();
            let image = image(&entries);
            let (quota, _) = resolve(&image, PRODUCER_BYTE_RATE, "u", "c").unwrap();
            assert_eq!(quota, (first + 1) as f64, "level {first}");
        }
        // Another key's quota at a more specific level does not hide this one.
        let image = image(&[
            (named("u"), named("c"), CONSUMER_BYTE_RATE, 1.0),
            (None, default, PRODUCER_BYTE_RATE, 2.0),
        ]);
        let (quota, sensor) = resolve(&image, PRODUCER_BYTE_RATE, "u", "c").unwrap();
        assert_eq!(quota, 2.0);
        assert_eq!(sensor.user, None);
        assert_eq!(sensor.client_id.as_deref(), Some("c"));
        assert!(resolve(&image, CONSUMER_BYTE_RATE, "v", "c").is_none());
    }

    #[test]
    fn a_rate_over_quota_is_throttled_as_kafka_computes_it() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        // 20 MB at once over the minimum window of 10 s: 2 MB/s.
        rate.record(20e6, start);
        let (measured, window) = rate.measure(start);
        assert_eq!(window, Duration::from_secs(10));
        assert!((measured - 2e6).abs() < 1.0);
        // Twice a 1 MB/s quota: another 10 s brings it back.
        assert_eq!(throttle_for(measured, 1e6, window), Duration::from_secs(10));
        assert_eq!(throttle_for(measured, 4e6, window), Duration::ZERO);
        // Far over: bounded.
        assert_eq!(
            throttle_for(measured, 1.0, window),
            Duration::from_millis(QUOTA_THROTTLE_MS_MAX)
        );
        // Samples older than the window are forgotten.
        let later = start + SAMPLE * (QUOTA_WINDOW_SAMPLES as u32 + 1);
        rate.record(0.0, later);
        assert_eq!(rate.measure(later).0, 0.0);
    }

    #[test]
    fn sensors_throttle_only_quotad_clients() {
        let image = image(&[(None, named("slow"), PRODUCER_BYTE_RATE, 1000.0)]);
        let mut sensors = QuotaSensors::default();
        let now = Instant::now();
        let free = sensors.record(
            &image,
            PRODUCER_BYTE_RATE,
            ("ANONYMOUS", "fast"),
            (1 << 20) as f64,
            now,
        );
        assert_eq!(free, None);
        let throttled = sensors.record(
            &image,
            PRODUCER_BYTE_RATE,
            ("ANONYMOUS", "slow"),
            (20_000) as f64,
            now,
        );
        assert_eq!(throttled, Some(Duration::from_secs(10)));
        assert_eq!(
            QuotaSensors::fetch_bytes_max(&image, ("ANONYMOUS", "slow")),
            None
        );
    }

    #[test]
    fn another_shards_report_counts_until_it_is_stale() {
        let image = image(&[(None, named("c"), PRODUCER_BYTE_RATE, 1000.0)]);
        let (mut here, mut there) = (QuotaSensors::default(), QuotaSensors::default());
        let now = Instant::now();
        let identity = ("ANONYMOUS", "c");
        // Each shard alone is at its quota: 10 s of it over the window.
        assert!(
            there.record(&image, PRODUCER_BYTE_RATE, identity, 10_000.0, now)
                == Some(Duration::ZERO)
        );
        assert!(
            here.record(&image, PRODUCER_BYTE_RATE, identity, 10_000.0, now)
                == Some(Duration::ZERO)
        );
        let report = there.active_rates(now);
        assert_eq!(report.len(), 1);
        here.take_remote(1, report, now);
        // Together they are at twice the quota: another window to wait.
        let throttle = here.record(&image, PRODUCER_BYTE_RATE, identity, 0.0, now);
        assert_eq!(throttle, Some(Duration::from_secs(10)));
        let later = now + REMOTE_RATE_STALE;
        assert!(
            here.record(&image, PRODUCER_BYTE_RATE, identity, 0.0, later) == Some(Duration::ZERO)
        );
        assert_eq!(here.active_rates(later + SAMPLE).len(), 1);
        let idle = later + SAMPLE * QUOTA_WINDOW_SAMPLES as u32;
        assert!(here.active_rates(idle).is_empty());
    }

    #[test]
    fn a_mutation_bucket_lets_a_window_through_then_refills_at_the_quota() {
        let image = image(&[(named("u"), None, CONTROLLER_MUTATION_RATE, 10.0)]);
        let mut buckets = MutationBuckets::default();
        let now = Instant::now();
        let admin = ("u", "admin");
        // Without a quota nothing is counted.
        assert!(buckets.admit(&image, ("v", "admin"), 1_000_000, true, now));
        assert_eq!(
            buckets.throttle(&image, ("v", "admin"), now),
            Duration::ZERO
        );
        // A window's worth (10/s for 11 s) at once, then one request more,
        // which takes the bucket below zero.
        assert!(buckets.admit(&image, admin, 110, true, now));
        assert_eq!(buckets.throttle(&image, admin, now), Duration::ZERO);
        assert!(buckets.admit(&image, admin, 20, true, now));
        assert_eq!(buckets.throttle(&image, admin, now), Duration::from_secs(2));
        // Below zero: refused when strict, let through (and counted) when not.
        assert!(!buckets.admit(&image, admin, 1, true, now));
        assert!(buckets.admit(&image, admin, 10, false, now));
        assert_eq!(buckets.throttle(&image, admin, now), Duration::from_secs(3));
        // Three seconds later it is at zero again and lets one through.
        let later = now + Duration::from_secs(3);
        assert_eq!(buckets.throttle(&image, admin, later), Duration::ZERO);
        assert!(buckets.admit(&image, admin, 5, true, later));
    }

    #[test]
    fn changes_are_checked_as_kafka_checks_them() {
        assert!(check_change(PRODUCER_BYTE_RATE, Some(1024.0)).is_ok());
        assert!(check_change(PRODUCER_BYTE_RATE, Some(1.5)).is_err());
        assert!(check_change(REQUEST_PERCENTAGE, Some(1.5)).is_ok());
        assert!(check_change("bogus", Some(1.0)).is_err());
        assert!(check_change("bogus", None).is_err());
        assert!(check_change(CONSUMER_BYTE_RATE, Some(f64::NAN)).is_err());
        assert!(check_change(CONSUMER_BYTE_RATE, Some(0.0)).is_err());
        assert!(entity_of(&[]).is_err());
        assert!(entity_of(&[(USER, None), (USER, Some("u"))]).is_err());
        assert!(entity_of(&[(IP, None)]).is_err());
        assert_eq!(
            entity_of(&[(CLIENT_ID, Some("c")), (USER, None)]).unwrap(),
            QuotaEntity {
                user: Some(QuotaName::Default),
                client_id: named("c"),
            }
        );
    }

    #[test]
    fn filters_match_as_kafkas() {
        let image = image(&[
            (named("u"), None, PRODUCER_BYTE_RATE, 1.0),
            (named("u"), named("c"), PRODUCER_BYTE_RATE, 2.0),
            (Some(QuotaName::Default), None, PRODUCER_BYTE_RATE, 3.0),
            (None, named("c"), PRODUCER_BYTE_RATE, 4.0),
        ]);
        let component = |entity_type, match_type, name| FilterComponent {
            entity_type,
            match_type,
            name,
        };
        let count = |components: &[FilterComponent<'_>], strict| {
            describe(&image, components, strict).map(|found| found.len())
        };
        assert_eq!(count(&[], false), Ok(4));
        assert_eq!(count(&[], true), Ok(0));
        let exact_u = [component(USER, match_type::EXACT, Some("u"))];
        assert_eq!(count(&exact_u, false), Ok(2));
        assert_eq!(count(&exact_u, true), Ok(1));
        let default_user = [component(USER, match_type::DEFAULT, None)];
        assert_eq!(count(&default_user, true), Ok(1));
        let any_user = [component(USER, match_type::ANY, None)];
        assert_eq!(count(&any_user, false), Ok(3));
        assert_eq!(count(&any_user, true), Ok(2));
        assert!(count(&[component(USER, match_type::EXACT, None)], false).is_err());
        assert!(count(&[component(USER, match_type::ANY, Some("u"))], false).is_err());
        assert!(count(&[component("group", match_type::ANY, None)], false).is_err());
        assert!(count(&[component(USER, 7, None)], false).is_err());
        assert!(count(
            &[
                component(USER, match_type::ANY, None),
                component(USER, match_type::ANY, None)
            ],
            false
        )
        .is_err());
    }
}
