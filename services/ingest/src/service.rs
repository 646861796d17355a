//! The ingest service: [`run`] (the scheduled jobs, until shutdown) and
//! [`run_once`] (one pass per radar, for `raincast ingest --once`).
//!
//! With a queue (`[queue]`, `--queue`), `run` also runs the queue consumer
//! and the listing runs on the slower `reconcile_schedule`; `run_once`
//! drains the queue first, then makes one reconciling pass per radar.

use crate::config::IngestSettings;
use crate::jobs::{run_scheduled, JobError};
use crate::pass::default_owner;
use crate::queue::QueueSummary;
use crate::queue::{QueueConsumer, QueueDeps};
use crate::{DecodeProcessor, IngestMetrics, Ingester, PassSummary, RadarSource, Stores};
use chrono::Utc;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

/// How often the embedded store drops expired scans.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What ingest works with.
#[derive(Clone)]
pub struct IngestDeps {
    /// Where sparse scans and state go.
    pub stores: Stores,
    /// The radars, each with its source.
    pub radars: Vec<RadarSource>,
    /// Where to count (under `raincast run`, the registry `/metrics` serves).
    pub metrics: IngestMetrics,
    /// The notification queue, when `settings.queue` is set.
    pub queue: Option<QueueDeps>,
}

/// The queue consumer, when both the settings and the dependencies name a queue.
fn consumer(
    settings: &IngestSettings,
    deps: &IngestDeps,
    ingester: &Arc<Ingester>,
) -> Result<Option<Arc<QueueConsumer>>, JobError> {
    match (&settings.queue, &deps.queue) {
        (None, _) => Ok(None),
        (Some(q), Some(d)) => Ok(Some(QueueConsumer::new(
            ingester.clone(),
            d.clone(),
            deps.radars.clone(),
            q.clone(),
        ))),
        (Some(q), None) => Err(JobError::new(format!(
            "queue {} configured but not connected",
            q.url
        ))),
    }
}

/// The ingester for `settings` over `deps`' stores, stopping when
/// `shutdown` turns true. An embedded store is purged of expired scans now
/// and every hour until shutdown.
pub async fn ingester(
    settings: &IngestSettings,
    deps: &IngestDeps,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Ingester>, JobError> {
    if let Some(e) = &deps.stores.embedded {
        let purged = e
            .purge_expired(Utc::now())
            .await
            .map_err(|e| JobError::new(format!("purging expired scans: {e}")))?;
        if purged > 0 {
            tracing::info!(purged, "deleted scans past their retention");
        }
        e.spawn_purger(PURGE_EVERY, shutdown.clone());
    }
    Ok(Arc::new(Ingester::new(
        deps.stores.scans.clone(),
        deps.stores.state.clone(),
        Arc::new(DecodeProcessor::new(settings)),
        settings.clone(),
        default_owner(),
        deps.metrics.clone(),
        shutdown,
    )))
}

/// The ingest jobs: every radar on `settings.schedule` (and once at start)
/// until `shutdown` turns true.
pub async fn run(
    settings: IngestSettings,
    deps: IngestDeps,
    shutdown: watch::Receiver<bool>,
) -> Result<(), JobError> {
    let ingester = ingester(&settings, &deps, shutdown.clone()).await?;
    tracing::info!(store = %deps.stores.description, radars = deps.radars.len(),
        owner = ingester.owner(), "ingest starting");
    let Some(consumer) = consumer(&settings, &deps, &ingester)? else {
        return run_scheduled(ingester, deps.radars, &settings.schedule, shutdown).await;
    };
    let schedule = listing_schedule(&settings).to_string();
    tracing::info!(schedule = %schedule, "with a queue, the listing reconciles on its own schedule");
    let consuming = tokio::spawn(consumer.run(shutdown.clone()));
    let listing = run_scheduled(ingester, deps.radars, &schedule, shutdown).await;
    let _ = consuming.await;
    listing
}

/// The cron schedule of the listing: `schedule`, or with a queue its
/// slower `reconcile_schedule`.
pub fn listing_schedule(settings: &IngestSettings) -> &str {
    settings
        .queue
        .as_ref()
        .map_or(settings.schedule.as_str(), |q| {
            q.reconcile_schedule.as_str()
        })
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What [`run_once`] did, printed as JSON by `raincast ingest --once`.
#[derive(Debug, Clone, Serialize)]
pub struct OnceReport {
    pub listed: usize,
    pub ingested: usize,
    pub skipped: usize,
    pub quarantined: usize,
    /// Files quarantined before and unchanged since (not tried again).
    pub still_quarantined: usize,
    /// Files uploaded after a newer scan, found behind the listing window
    /// and ingested or quarantined (also in `ingested` or `quarantined`).
    #[serde(skip_serializing_if = "is_zero")]
    pub late: usize,
    pub remaining: usize,
    pub deferred: usize,
    /// Radars whose lease another instance held.
    pub leases_held: usize,
    /// Seconds.
    pub duration: f64,
    pub radars: Vec<PassSummary>,
    pub errors: Vec<RadarFailure>,
    /// With a queue: messages received, of which test events and
    /// messages that are not S3 events (`ignored_messages`), and deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_messages: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<usize>,
    /// With a queue: files the reconciling listing found that the queue missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<usize>,
    /// With a queue: everything the consumer did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSummary>,
}

/// A radar whose run failed.
#[derive(Debug, Clone, Serialize)]
pub struct RadarFailure {
    pub radar: String,
    pub error: String,
}

/// One pass per radar, one after another. With a queue, the queue is
/// drained first (until a receive finds it empty), then each radar gets
/// one reconciling pass.
pub async fn run_once(
    settings: IngestSettings,
    deps: IngestDeps,
    shutdown: watch::Receiver<bool>,
) -> Result<OnceReport, JobError> {
    let ingester = ingester(&settings, &deps, shutdown.clone()).await?;
    tracing::info!(store = %deps.stores.description, radars = deps.radars.len(),
        owner = ingester.owner(), "ingest pass starting");
    let started = std::time::Instant::now();
    let drained = match consumer(&settings, &deps, &ingester)? {
        Some(c) => Some(c.drain(shutdown).await),
        None => None,
    };
    let mut summaries: Vec<PassSummary> = Vec::new();
    let mut errors = Vec::new();
    for rs in &deps.radars {
        match ingester.run_once(rs).await {
            Ok(s) => summaries.push(s),
            Err(e) => {
                tracing::error!(radar = %rs.radar.id, error = %e, "ingest run failed");
                errors.push(RadarFailure {
                    radar: rs.radar.id.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    let total = |f: fn(&PassSummary) -> usize| summaries.iter().map(f).sum::<usize>();
    let q = drained.clone().unwrap_or_default();
    Ok(OnceReport {
        listed: total(|s| s.listed),
        ingested: total(|s| s.ingested) + q.ingested,
        skipped: total(|s| s.skipped) + q.skipped,
        quarantined: total(|s| s.quarantined) + q.quarantined,
        still_quarantined: total(|s| s.still_quarantined) + q.still_quarantined,
        late: total(|s| s.late),
        remaining: total(|s| s.remaining),
        deferred: total(|s| s.deferred),
        leases_held: summaries
            .iter()
            .filter(|s| s.lease_held_by.is_some())
            .count(),
        duration: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        messages: drained.as_ref().map(|q| q.messages),
        ignored_messages: drained.as_ref().map(|q| q.ignored_messages),
        deleted: drained.as_ref().map(|q| q.deleted),
        reconciled: drained.as_ref().map(|_| total(|s| s.reconciled)),
        queue: drained,
        radars: summaries,
        errors,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use raincast_config::{Config, Overrides};
    use std::collections::HashMap;

    #[test]
    fn with_a_queue_the_listing_runs_on_the_reconcile_schedule() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let plain = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(listing_schedule(&plain.ingest), "0 * * * * *");
        let queued = Config::from_toml(
            "",
            &env(&[("RAINCAST_QUEUE_URL", "http://127.0.0.1:5000/1/q")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(listing_schedule(&queued.ingest), "0 */15 * * * *");
    }
}
