//! `--client rdkafka`: the same producers (schedule, payload, keys,
//! latency from the intended send time) driven through librdkafka, so the
//! glommio client can be compared with the most used Kafka client at the
//! same settings. Consumers stay on the glommio client, so end-to-end
//! latency is measured the same way in both modes.
//!
//! Each producer is a thread with its own `ThreadedProducer` (librdkafka
//! adds its own broker and polling threads). The delivery callback runs on
//! librdkafka's polling thread and records into a mutex-guarded recorder
//! that only it and the end-of-run collection touch.

#[cfg(not(feature = "rdkafka"))]
use crate::driver::{IntervalReport, ProducerPlan, RunOptions, Shared, WorkerResult};

/// Starts one thread per producer; each counts as a worker for the run's
/// ready / producers-done accounting.
#[cfg(not(feature = "rdkafka"))]
pub fn start(
    _options: &RunOptions,
    _producers: &[ProducerPlan],
    _shared: &std::sync::Arc<Shared>,
    _reports: std::sync::mpsc::Sender<IntervalReport>,
) -> Result<Vec<std::thread::JoinHandle<WorkerResult>>, String> {
    Err(
        "this sluice-perf was built without librdkafka: rebuild with `--features rdkafka`"
            .to_string(),
    )
}

#[cfg(feature = "rdkafka")]
pub use with_rdkafka::start;

#[cfg(feature = "rdkafka")]
mod with_rdkafka {
    use std::sync::atomic::Ordering;
    use std::sync::{mpsc, Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use rdkafka::config::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{
        BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
    };
    use rdkafka::ClientContext;

    use crate::clock;
    use crate::driver::{self, IntervalReport, ProducerPlan, RunOptions, Shared, WorkerResult};
    use crate::payload::{self, KeyChooser};
    use crate::rate::Schedule;
    use crate::stats;

    /// Pause when librdkafka's queue is full (its `buffer.memory`).
    const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(100);
    /// How long the final flush may take.
    const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
    /// librdkafka counts messages per batch too; make `batch.size` the limit.
    const BATCH_MESSAGES_MAX: &str = "1000000";

    struct Recorder {
        ack: Histogram<u64>,
        ack_interval: Histogram<u64>,
        produced_messages: u64,
        produced_bytes: u64,
    }

    struct Context {
        shared: Arc<Shared>,
        recorder: Arc<Mutex<Recorder>>,
        message_bytes: u64,
        timed: bool,
    }

    impl ClientContext for Context {}

    impl ProducerContext for Context {
        type DeliveryOpaque = usize;

        fn delivery(&self, result: &DeliveryResult<'_>, intended: usize) {
            if let Err((error, _)) = result {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                self.shared.note_error(format!("rdkafka produce: {error}"));
                return;
            }
            let intended = intended as u64;
            let latency = clock::now_nanos().saturating_sub(intended);
            if let Ok(mut recorder) = self.recorder.lock() {
                if self.timed {
                    stats::record(&mut recorder.ack_interval, latency);
                }
                if self.shared.in_window(intended) {
                    if self.timed {
                        stats::record(&mut recorder.ack, latency);
                    }
                    recorder.produced_messages += 1;
                    recorder.produced_bytes += self.message_bytes;
                }
            }
            self.shared.acked.fetch_add(1, Ordering::Relaxed);
            self.shared
                .acked_bytes
                .fetch_add(self.message_bytes, Ordering::Relaxed);
        }
    }

    fn config(options: &RunOptions, plan: &ProducerPlan) -> ClientConfig {
        let workload = &options.workload;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &options.bootstrap)
            .set("client.id", format!("sluice-perf-rdkafka-{}", plan.index))
            .set(
                "acks",
                if workload.acks == "-1" {
                    "all"
                } else {
                    workload.acks.as_str()
                },
            )
            .set("compression.type", &workload.compression)
            .set("batch.size", workload.batch_size.to_string())
            .set("batch.num.messages", BATCH_MESSAGES_MAX)
            .set("linger.ms", workload.linger_ms.to_string())
            .set(
                "max.in.flight.requests.per.connection",
                workload.max_in_flight.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (workload.buffer_memory / 1024).max(1).to_string(),
            )
            .set("enable.idempotence", workload.idempotence.to_string())
            // The glommio client's default, so both partition keys alike.
            .set("partitioner", "murmur2_random");
        if let Some(ca) = &options.tls_ca {
            config
                .set("security.protocol", "SSL")
                .set("ssl.ca.location", ca.display().to_string());
        }
        config
    }

    fn producer_thread(
        options: RunOptions,
        plan: ProducerPlan,
        shared: Arc<Shared>,
        reports: mpsc::Sender<IntervalReport>,
    ) -> WorkerResult {
        let workload = &options.workload;
        let recorder = Arc::new(Mutex::new(Recorder {
            ack: stats::histogram(),
            ack_interval: stats::histogram(),
            produced_messages: 0,
            produced_bytes: 0,
        }));
        let context = Context {
            shared: Arc::clone(&shared),
            recorder: Arc::clone(&recorder),
            message_bytes: workload.message_size as u64,
            timed: workload.acks != "0",
        };
        let producer: ThreadedProducer<Context> =
            match config(&options, &plan).create_with_context(context) {
                Ok(producer) => producer,
                Err(error) => {
                    shared.note_error(format!("rdkafka: {error}"));
                    driver::mark_ready(&shared);
                    driver::mark_producers_done(&shared);
                    return WorkerResult::default();
                }
            };
        driver::mark_ready(&shared);
        while driver::start_of(&shared) == 0 && !driver::aborted(&shared) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = driver::start_of(&shared);
        let end = match plan.limit {
            Some(_) => u64::MAX,
            None => shared.measure_end.load(Ordering::Relaxed),
        };
        let limit = plan.limit.unwrap_or(u64::MAX);
        let filler = payload::filler(workload.payload, workload.message_size, 0x5eed);
        let mut keys = KeyChooser::new(
            workload.key_distribution,
            workload.keys,
            u64::from(plan.index) + 1,
        );
        let mut value = Vec::with_capacity(workload.message_size);
        let schedule = Schedule::new(start, plan.rate);
        let mut index = 0u64;
        let mut next_report = Instant::now() + options.report_interval;
        std::thread::sleep(clock::instant_at(start).saturating_duration_since(Instant::now()));
        'run: loop {
            let now = clock::now_nanos();
            // An aborted run never set a start: nothing to send.
            if start == 0 || now >= end || index >= limit || driver::aborted(&shared) {
                break;
            }
            if Instant::now() >= next_report {
                next_report += options.report_interval;
                if let Ok(mut recorder) = recorder.lock() {
                    let ack = std::mem::replace(&mut recorder.ack_interval, stats::histogram());
                    let _ = reports.send(IntervalReport {
                        ack,
                        e2e: stats::histogram(),
                    });
                }
            }
            let due = if schedule.is_unlimited() {
                index + 1
            } else {
                schedule.due(now).min(schedule.due(end - 1))
            };
            while index < due {
                let intended = if schedule.is_unlimited() {
                    clock::now_nanos()
                } else {
                    schedule.intended(index)
                };
                value.clear();
                value.extend_from_slice(&payload::timestamp_prefix(intended));
                value.extend_from_slice(&filler);
                let key = keys.next_key().map(<[u8]>::to_vec);
                loop {
                    let mut record =
                        BaseRecord::with_opaque_to(&plan.topic, intended as usize).payload(&value);
                    if let Some(key) = &key {
                        record = record.key(key);
                    }
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            std::thread::sleep(QUEUE_FULL_BACKOFF);
                        }
                        Err((error, _)) => {
                            shared.note_error(format!("rdkafka send: {error}"));
                            break 'run;
                        }
                    }
                }
                index += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            if !schedule.is_unlimited() {
                let next = schedule.intended(index);
                if next >= end {
                    break;
                }
                std::thread::sleep(
                    clock::instant_at(next).saturating_duration_since(Instant::now()),
                );
            }
        }
        if let Err(error) = producer.flush(FLUSH_TIMEOUT) {
            shared.note_error(format!("rdkafka flush: {error}"));
        }
        driver::mark_producers_done(&shared);
        drop(producer);
        let recorder = match recorder.lock() {
            Ok(recorder) => recorder,
            Err(poisoned) => poisoned.into_inner(),
        };
        WorkerResult {
            ack: Some(recorder.ack.clone()),
            // librdkafka does not tell a message's request round trip.
            request: None,
            e2e: None,
            produced_messages: recorder.produced_messages,
            produced_bytes: recorder.produced_bytes,
            consumed_messages: 0,
            consumed_bytes: 0,
        }
    }

    /// Starts one thread per producer.
    pub fn start(
        options: &RunOptions,
        producers: &[ProducerPlan],
        shared: &Arc<Shared>,
        reports: mpsc::Sender<IntervalReport>,
    ) -> Result<Vec<JoinHandle<WorkerResult>>, String> {
        producers
            .iter()
            .map(|plan| {
                let options = options.clone();
                let plan = plan.clone();
                let shared = Arc::clone(shared);
                let reports = reports.clone();
                std::thread::Builder::new()
                    .name(format!("perf-rdkafka-{}", plan.index))
                    .spawn(move || producer_thread(options, plan, shared, reports))
                    .map_err(|error| format!("cannot start a producer thread: {error}"))
            })
            .collect()
    }
}
