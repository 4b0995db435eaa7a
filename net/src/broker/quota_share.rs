//! Client quota usage shared between shards (see `crate::quota`): a shard
//! whose quota sensors are active reports their rates to every other shard
//! every `QUOTA_SHARE_INTERVAL_MS` over the mesh (and at once when a
//! sensor took a tenth of a second of its quota since its last report), and
//! throttles on its own rates plus the others' last reports. The reporting
//! task starts at the shard's first measurement and ends once no sensor
//! recorded anything for a whole quota window, so a broker without quotas,
//! or with idle clients, does not run it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_engine::{ClusterMetadata, ShardId};

use super::{futures_lite_join_all, Broker, ShardRequest};
use crate::constants::QUOTA_SHARE_INTERVAL_MS;

const SHARE_INTERVAL: Duration = Duration::from_millis(QUOTA_SHARE_INTERVAL_MS);

impl Broker {
    /// Records `amount` of quota `key` (bytes of
    /// `quota::PRODUCER_BYTE_RATE` or `quota::CONSUMER_BYTE_RATE`,
    /// `quota::request_time` of `quota::REQUEST_PERCENTAGE`) for `identity`
    /// (user, client id) and returns how long the sender is throttled for
    /// (zero without a quota), by the quotas of `image`, the metadata the
    /// handler already holds.
    pub(crate) fn record_quota(
        self: &Rc<Self>,
        image: &ClusterMetadata,
        key: &'static str,
        identity: (&str, &str),
        amount: f64,
    ) -> Duration {
        if image.client_quotas.is_empty() {
            return Duration::ZERO;
        }
        let mut sensors = self.quota_sensors.borrow_mut();
        let Some(throttle) = sensors.record(image, key, identity, amount, Instant::now()) else {
            return Duration::ZERO;
        };
        if self.shards() > 1 {
            if !sensors.sharing {
                sensors.sharing = true;
                glommio::spawn_local(Rc::clone(self).share_quota_usage()).detach();
            } else if sensors.report_now {
                let rates = sensors.active_rates(Instant::now());
                glommio::spawn_local(Rc::clone(self).report_quota_usage(rates)).detach();
            }
        }
        throttle
    }

    /// Reports this shard's active rates to the other shards every
    /// interval until none is active.
    async fn share_quota_usage(self: Rc<Self>) {
        let interval = SHARE_INTERVAL;
        loop {
            glommio::timer::sleep(interval).await;
            let rates = self.quota_sensors.borrow_mut().active_rates(Instant::now());
            if rates.is_empty() || self.shutting_down.get() {
                self.quota_sensors.borrow_mut().sharing = false;
                return;
            }
            Rc::clone(&self).report_quota_usage(rates).await;
        }
    }

    /// Sends `rates` to every other shard.
    async fn report_quota_usage(self: Rc<Self>, rates: Vec<(crate::quota::SensorKey, f64)>) {
        let calls = (0..self.shards())
            .filter(|shard| *shard != self.shard.0 as usize)
            .map(|shard| {
                self.mesh.call(
                    ShardId(shard as u16),
                    ShardRequest::QuotaUsage {
                        from: self.shard.0,
                        rates: rates.clone(),
                    },
                )
            })
            .collect();
        futures_lite_join_all(calls).await;
    }
}
