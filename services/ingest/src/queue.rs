//! The queue consumer: event-driven ingest from S3 event notifications.
//!
//! Several workers per process each long-poll the queue (up to 10
//! messages, `wait_seconds`) and handle one message at a time:
//!
//! * an `s3:TestEvent` is deleted; a message that is not an S3 event is
//!   logged with its id, deleted and counted (`not_s3`);
//! * every `ObjectCreated` record is mapped to its radar: the key must lie
//!   below a radar's source and follow its key template; keys of radars
//!   that are not configured are skipped, unless `all_radars` is set (then
//!   the radar is the key's `{radar}` folder);
//! * each object is fetched, decoded, prepped and stored exactly as the
//!   listing does ([`Ingester::ingest_notified`]: the same idempotent put,
//!   quarantine and metrics), while the visibility of every message of the
//!   batch not yet handled is extended every third of `visibility_timeout`;
//! * the message is deleted only when every record is stored, skipped or
//!   quarantined. A failure (S3 or the store unreachable, the object
//!   missing) leaves it in the queue: it comes back after its visibility
//!   timeout, and after the queue's `maxReceiveCount` receipts its redrive
//!   policy moves it to the dead-letter queue.
//!
//! Concurrent messages for one object within a process wait for each
//! other (one lock per key), so the second finds the scan stored; across
//! processes the store's conditional put stores it once.

pub mod events;

use crate::config::{QueueSettings, RadarConfig};
use crate::layout::KeyTemplate;
use crate::pass::{IngestError, Ingester, PassSummary, RadarSource};
use events::{Notification, ObjectRecord};
use raincast_store::{MessageQueue, QueueMessage, ScanSource};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// What the consumer works with.
#[derive(Clone)]
pub struct QueueDeps {
    /// The queue of notifications.
    pub queue: Arc<dyn MessageQueue>,
    /// The global source and key template: where the keys of radars that
    /// are not configured are read from under `all_radars`.
    pub source: Arc<dyn ScanSource>,
    pub key_template: KeyTemplate,
}

/// What the consumer did (the queue part of `raincast ingest --once`'s summary).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueSummary {
    /// Messages received.
    pub messages: usize,
    /// Test events and messages that are not S3 events (deleted).
    pub ignored_messages: usize,
    /// Messages deleted (done or ignored).
    pub deleted: usize,
    /// Messages left in the queue to come back (a failure).
    pub retried: usize,
    /// Object records ingested (stored, skipped or quarantined).
    pub records: usize,
    /// Records skipped: outside the sources, radars not configured, keys
    /// not following the template, events other than creation.
    pub skipped_records: usize,
    /// Newly stored scans.
    pub ingested: usize,
    /// Records whose scan was already stored.
    pub skipped: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Records of files quarantined before and unchanged since (the same
    /// size): not fetched or decoded again.
    pub still_quarantined: usize,
    /// Receives from the queue that failed.
    pub receive_failures: usize,
    /// Workers of a drain (`--once`) that stopped after three failed
    /// receives in a row: the queue was not read to its end.
    pub workers_gave_up: usize,
    /// Seconds from each stored object's notification event time (its
    /// creation) to its scan stored: median, 99th percentile, maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_p50_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_p99_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_max_s: Option<f64>,
}

/// At most this many lags are kept for the summary's percentiles.
const LAG_MEMORY: usize = 100_000;

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Default)]
struct Counters {
    messages: AtomicUsize,
    ignored_messages: AtomicUsize,
    deleted: AtomicUsize,
    retried: AtomicUsize,
    records: AtomicUsize,
    skipped_records: AtomicUsize,
    ingested: AtomicUsize,
    skipped: AtomicUsize,
    quarantined: AtomicUsize,
    still_quarantined: AtomicUsize,
    receive_failures: AtomicUsize,
    workers_gave_up: AtomicUsize,
    lags: Mutex<Vec<f64>>,
}

impl Counters {
    fn summary(&self) -> QueueSummary {
        let g = |a: &AtomicUsize| a.load(Ordering::SeqCst);
        let mut lags = self.lags.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lags.sort_by(f64::total_cmp);
        let round = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
        QueueSummary {
            lag_p50_s: round(quantile(&lags, 0.5)),
            lag_p99_s: round(quantile(&lags, 0.99)),
            lag_max_s: round(lags.last().copied()),
            messages: g(&self.messages),
            ignored_messages: g(&self.ignored_messages),
            deleted: g(&self.deleted),
            retried: g(&self.retried),
            records: g(&self.records),
            skipped_records: g(&self.skipped_records),
            ingested: g(&self.ingested),
            skipped: g(&self.skipped),
            quarantined: g(&self.quarantined),
            still_quarantined: g(&self.still_quarantined),
            receive_failures: g(&self.receive_failures),
            workers_gave_up: g(&self.workers_gave_up),
        }
    }
}

/// Consumes the queue with `settings.workers` workers.
pub struct QueueConsumer {
    ingester: Arc<Ingester>,
    deps: QueueDeps,
    radars: Vec<RadarSource>,
    settings: QueueSettings,
    /// One lock per object key being processed in this process.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
    /// Where skipped records came from (reason, bucket, first key segment),
    /// each warned about once ([`Self::resolve`]).
    warned: Mutex<HashSet<(String, String, String)>>,
}

/// Sources of skipped records warned about per process, at most.
const MAX_WARNED: usize = 1000;

/// The (id, receipt) of the messages of a batch not handled yet.
type Pending = Arc<Mutex<Vec<(String, String)>>>;

/// How one message ended.
enum Outcome {
    Delete,
    Retry,
}

impl QueueConsumer {
    pub fn new(
        ingester: Arc<Ingester>,
        deps: QueueDeps,
        radars: Vec<RadarSource>,
        settings: QueueSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            ingester,
            deps,
            radars,
            settings,
            in_flight: Mutex::default(),
            counters: Counters::default(),
            warned: Mutex::default(),
        })
    }

    /// What the workers did so far.
    pub fn summary(&self) -> QueueSummary {
        self.counters.summary()
    }

    /// Runs the workers until `shutdown` turns true. A worker finishes the
    /// message in hand first.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        info!(queue = %self.deps.queue.describe(), workers = self.settings.workers,
            radars = self.radars.len(), all_radars = self.settings.all_radars,
            "queue consumer starting");
        self.workers(shutdown, false).await;
        info!("queue consumer stopped");
    }

    /// Runs the workers until the queue is empty (each stops at its first
    /// empty receive) or `shutdown` turns true.
    pub async fn drain(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> QueueSummary {
        self.clone().workers(shutdown, true).await;
        self.summary()
    }

    async fn workers(self: Arc<Self>, shutdown: watch::Receiver<bool>, until_empty: bool) {
        let mut tasks = Vec::new();
        for worker in 0..self.settings.workers {
            let me = self.clone();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                me.worker(worker, shutdown, until_empty).await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn worker(&self, worker: usize, mut shutdown: watch::Receiver<bool>, until_empty: bool) {
        // A drain stops at the first empty long poll of a second.
        let wait = if until_empty {
            self.settings.wait.min(Duration::from_secs(1))
        } else {
            self.settings.wait
        };
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let received = tokio::select! {
                r = self.deps.queue.receive(10, wait, self.settings.visibility_timeout) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let messages = match received {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(e) => {
                    failures += 1;
                    self.counters
                        .receive_failures
                        .fetch_add(1, Ordering::SeqCst);
                    self.ingester.metrics().queue_receive_failures.inc();
                    let delay = Duration::from_secs(1 << failures.min(5));
                    warn!(worker, error = %e, retry_in_s = delay.as_secs(), "receiving from the queue failed");
                    if until_empty && failures >= 3 {
                        self.counters.workers_gave_up.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                if until_empty {
                    return;
                }
                continue;
            }
            // Every message of the batch not yet handled stays hidden.
            let pending: Pending = Arc::new(Mutex::new(
                messages
                    .iter()
                    .map(|m| (m.id.clone(), m.receipt.clone()))
                    .collect(),
            ));
            let extender = self.extend_while_pending(pending.clone());
            for (i, m) in messages.iter().enumerate() {
                if *shutdown.borrow() {
                    extender.abort();
                    // Not started: hand the rest back at once.
                    for rest in &messages[i..] {
                        let _ = self.deps.queue.extend(&rest.receipt, Duration::ZERO).await;
                    }
                    return;
                }
                self.handle(m, &pending).await;
            }
            extender.abort();
        }
    }

    /// One message: classify, ingest its records, delete or leave it.
    async fn handle(&self, m: &QueueMessage, pending: &Pending) {
        self.counters.messages.fetch_add(1, Ordering::SeqCst);
        let metrics = self.ingester.metrics();
        let outcome = match events::parse(&m.body) {
            Notification::TestEvent => {
                debug!(id = %m.id, "S3 test event; deleted");
                self.counters
                    .ignored_messages
                    .fetch_add(1, Ordering::SeqCst);
                metrics
                    .queue_messages
                    .with_label_values(&["test_event"])
                    .inc();
                Outcome::Delete
            }
            Notification::NotS3(reason) => {
                warn!(id = %m.id, reason = %reason, body_start = %m.body.chars().take(120).collect::<String>(),
                    "queue message is not an S3 event notification; deleted");
                self.counters
                    .ignored_messages
                    .fetch_add(1, Ordering::SeqCst);
                metrics.queue_messages.with_label_values(&["not_s3"]).inc();
                Outcome::Delete
            }
            Notification::Objects(records) => {
                let outcome = self.records(m, &records).await;
                let label = match outcome {
                    Outcome::Delete => "done",
                    Outcome::Retry => "retry",
                };
                metrics.queue_messages.with_label_values(&[label]).inc();
                outcome
            }
        };
        pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, r)| *r != m.receipt);
        match outcome {
            Outcome::Delete => match self.deps.queue.delete(&m.receipt).await {
                Ok(()) => {
                    self.counters.deleted.fetch_add(1, Ordering::SeqCst);
                }
                // It comes back, and its records are found stored.
                Err(e) => warn!(id = %m.id, error = %e, "deleting a handled message failed"),
            },
            Outcome::Retry => {
                self.counters.retried.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Every third of the visibility timeout, extends the visibility of
    /// every message still pending, until aborted.
    fn extend_while_pending(&self, pending: Pending) -> tokio::task::JoinHandle<()> {
        let queue = self.deps.queue.clone();
        let timeout = self.settings.visibility_timeout;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(timeout / 3).await;
                let now: Vec<(String, String)> =
                    pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for (id, receipt) in now {
                    match queue.extend(&receipt, timeout).await {
                        Ok(()) => debug!(id = %id, "message visibility extended"),
                        Err(e) => {
                            warn!(id = %id, error = %e, "extending a message's visibility failed")
                        }
                    }
                }
            }
        })
    }

    async fn records(&self, m: &QueueMessage, records: &[ObjectRecord]) -> Outcome {
        for r in records {
            let Some((rs, key)) = self.resolve(r) else {
                continue;
            };
            self.counters.records.fetch_add(1, Ordering::SeqCst);
            match self.ingest(&rs, &key, r).await {
                Ok(s) => {
                    self.counters
                        .ingested
                        .fetch_add(s.ingested, Ordering::SeqCst);
                    self.counters.skipped.fetch_add(s.skipped, Ordering::SeqCst);
                    self.counters
                        .quarantined
                        .fetch_add(s.quarantined, Ordering::SeqCst);
                    self.counters
                        .still_quarantined
                        .fetch_add(s.still_quarantined, Ordering::SeqCst);
                    if s.ingested > 0 {
                        if let Some(t) = r.event_time {
                            let lag = ((chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
                                .max(0.0);
                            self.ingester.metrics().queue_lag.observe(lag);
                            debug!(radar = %rs.radar.id, key = %key, lag_s = lag,
                                "notified object stored");
                            let mut lags =
                                self.counters.lags.lock().unwrap_or_else(|p| p.into_inner());
                            if lags.len() < LAG_MEMORY {
                                lags.push(lag);
                            }
                        }
                    }
                }
                Err(e) => {
                    self.ingester
                        .metrics()
                        .failures
                        .with_label_values(&[rs.radar.id.as_str(), e.code()])
                        .inc();
                    warn!(id = %m.id, radar = %rs.radar.id, key = %key, error = %e,
                        receive_count = m.receive_count,
                        "ingesting a notified object failed; the message stays in the queue to come back");
                    return Outcome::Retry;
                }
            }
        }
        Outcome::Delete
    }

    /// One object under its key's lock.
    async fn ingest(
        &self,
        rs: &RadarSource,
        key: &str,
        r: &ObjectRecord,
    ) -> Result<PassSummary, IngestError> {
        let lock_key = format!("{}\n{key}", rs.radar.id);
        let lock = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(lock_key.clone())
            .or_default()
            .clone();
        let result = {
            let _guard = lock.lock().await;
            self.ingester.ingest_notified(rs, key, r.size).await
        };
        drop(lock);
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&lock_key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&lock_key);
        }
        result
    }

    /// The radar and source-relative key of a record, or `None` (counted
    /// and logged) when it is not to be ingested.
    fn resolve(&self, r: &ObjectRecord) -> Option<(RadarSource, String)> {
        let skip = |reason: &str| {
            // A record for another bucket, prefix or radar is deleted: say
            // so once per bucket and first key segment (a wrong `[queue]` or
            // source setting would otherwise leave no trace but a counter).
            let segment = r.key.split('/').next().unwrap_or_default();
            let first = reason != "not_created"
                && self.warned.lock().is_ok_and(|mut w| {
                    w.len() < MAX_WARNED
                        && w.insert((reason.into(), r.bucket.clone(), segment.into()))
                });
            if first {
                warn!(bucket = %r.bucket, key = %r.key, reason,
                    "a notified object is not ingested (outside_source: another bucket or prefix; unconfigured_radar: a radar not configured, see [queue] all_radars; no_match: not the key template); its message is deleted, and more like it are only counted");
            } else {
                debug!(bucket = %r.bucket, key = %r.key, event = %r.event_name, reason, "notified object skipped");
            }
            self.counters.skipped_records.fetch_add(1, Ordering::SeqCst);
            self.ingester
                .metrics()
                .queue_records_skipped
                .with_label_values(&[reason])
                .inc();
            None
        };
        if !r.is_created() {
            return skip("not_created");
        }
        let mut inside = false;
        for rs in &self.radars {
            if let Some(rel) = rs.source.relative_key(&r.bucket, &r.key) {
                inside = true;
                if rs
                    .radar
                    .key_template
                    .match_key(&rs.radar.id, &rel)
                    .is_some()
                {
                    return Some((rs.clone(), rel));
                }
            }
        }
        let Some(rel) = self.deps.source.relative_key(&r.bucket, &r.key) else {
            return if inside {
                skip("no_match")
            } else {
                skip("outside_source")
            };
        };
        let Some(id) = self.deps.key_template.radar_of(&rel) else {
            return skip("no_match");
        };
        if raincast_store::model::validate_radar_id(&id).is_err() {
            return skip("no_match");
        }
        if !self.settings.all_radars {
            return skip("unconfigured_radar");
        }
        let rs = RadarSource {
            radar: RadarConfig::ad_hoc(&id, &self.deps.key_template),
            source: self.deps.source.clone(),
        };
        Some((rs, rel))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod quantile_tests {
    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::quantile(&v, 0.5), Some(50.0));
        assert_eq!(super::quantile(&v, 0.99), Some(99.0));
        assert_eq!(super::quantile(&v, 1.0), Some(100.0));
        assert_eq!(super::quantile(&[3.0], 0.5), Some(3.0));
        assert_eq!(super::quantile(&[], 0.5), None);
    }
}
