//! The ingest service: [`run`] (the scheduled jobs, until shutdown) and
//! [`run_once`] (one pass per radar, for `raincast ingest --once`).

use crate::config::IngestSettings;
use crate::jobs::{run_scheduled, JobError};
use crate::pass::default_owner;
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
    run_scheduled(ingester, deps.radars, &settings.schedule, shutdown).await
}

/// What [`run_once`] did, printed as JSON by `raincast ingest --once`.
#[derive(Debug, Clone, Serialize)]
pub struct OnceReport {
    pub listed: usize,
    pub ingested: usize,
    pub skipped: usize,
    pub quarantined: usize,
    pub remaining: usize,
    pub deferred: usize,
    /// Radars whose lease another instance held.
    pub leases_held: usize,
    /// Seconds.
    pub duration: f64,
    pub radars: Vec<PassSummary>,
    pub errors: Vec<RadarFailure>,
}

/// A radar whose run failed.
#[derive(Debug, Clone, Serialize)]
pub struct RadarFailure {
    pub radar: String,
    pub error: String,
}

/// One pass per radar, one after another.
pub async fn run_once(
    settings: IngestSettings,
    deps: IngestDeps,
    shutdown: watch::Receiver<bool>,
) -> Result<OnceReport, JobError> {
    let ingester = ingester(&settings, &deps, shutdown).await?;
    tracing::info!(store = %deps.stores.description, radars = deps.radars.len(),
        owner = ingester.owner(), "ingest pass starting");
    let started = std::time::Instant::now();
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
    Ok(OnceReport {
        listed: total(|s| s.listed),
        ingested: total(|s| s.ingested),
        skipped: total(|s| s.skipped),
        quarantined: total(|s| s.quarantined),
        remaining: total(|s| s.remaining),
        deferred: total(|s| s.deferred),
        leases_held: summaries
            .iter()
            .filter(|s| s.lease_held_by.is_some())
            .count(),
        duration: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        radars: summaries,
        errors,
    })
}
