//! The scheduled ingest job: one tokio-cron-scheduler job per radar.
//!
//! * Each radar runs once at start-up, then on the cron schedule (every
//!   minute by default).
//! * A tick that finds the previous run of the same radar still going is
//!   skipped, so runs never overlap within one instance (the lease keeps
//!   instances apart).
//! * A failed run (S3 or DynamoDB unreachable ...) is logged and the radar
//!   backs off: the next `backoff_base · 2^(failures-1)` (capped at
//!   `backoff_max`) of ticks are skipped. The first successful run resets it
//!   and catches up from the checkpoint.
//! * Shutdown: when `shutdown` turns true the scheduler stops, running passes
//!   finish the file in hand, checkpoint, release their lease, and
//!   [`run_scheduled`] returns.

use crate::pass::{Ingester, PassSummary, RadarSource};
use chrono::Duration;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{debug, info, warn};

/// The scheduler could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("job scheduler: {0}")]
pub struct JobError(String);

impl JobError {
    /// An error with this description.
    pub fn new(reason: impl Into<String>) -> Self {
        JobError(reason.into())
    }
}

/// Per-radar run state inside one instance.
#[derive(Debug, Default)]
struct RadarState {
    consecutive_failures: u32,
    next_try: Option<std::time::Instant>,
}

/// Delay after `failures` consecutive failures.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let factor = 1i32 << (failures - 1).min(20);
    let d = base.checked_mul(factor).unwrap_or(max);
    d.min(max)
}

/// One radar's job body; also used for the start-up run.
async fn tick(
    ingester: Arc<Ingester>,
    rs: Arc<RadarSource>,
    state: Arc<Mutex<RadarState>>,
) -> Option<PassSummary> {
    let radar = rs.radar.id.clone();
    let Ok(mut st) = state.try_lock() else {
        debug!(radar = %radar, "previous run still going; tick skipped");
        return None;
    };
    if let Some(t) = st.next_try {
        if std::time::Instant::now() < t {
            debug!(radar = %radar, "backing off after failures; tick skipped");
            return None;
        }
    }
    match ingester.run_once(&rs).await {
        Ok(summary) => {
            if st.consecutive_failures > 0 {
                info!(radar = %radar, after_failures = st.consecutive_failures, "ingest recovered");
            }
            st.consecutive_failures = 0;
            st.next_try = None;
            if summary.ingested + summary.quarantined > 0 || summary.remaining > 0 {
                info!(radar = %radar, listed = summary.listed, ingested = summary.ingested,
                    skipped = summary.skipped, quarantined = summary.quarantined,
                    remaining = summary.remaining, seconds = summary.duration, "ingest run done");
            }
            Some(summary)
        }
        Err(e) => {
            st.consecutive_failures += 1;
            let s = ingester.settings();
            let delay = backoff_delay(s.backoff_base, s.backoff_max, st.consecutive_failures);
            st.next_try = Some(std::time::Instant::now() + delay.to_std().unwrap_or_default());
            ingester
                .metrics()
                .failures
                .with_label_values(&[radar.as_str(), e.code()])
                .inc();
            warn!(radar = %radar, error = %e, failures = st.consecutive_failures,
                retry_in_s = delay.num_seconds(), "ingest run failed; backing off");
            None
        }
    }
}

/// Runs every radar on `schedule` until `shutdown` turns true.
pub async fn run_scheduled(
    ingester: Arc<Ingester>,
    radars: Vec<RadarSource>,
    schedule: &str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), JobError> {
    let mut sched = JobScheduler::new()
        .await
        .map_err(|e| JobError(e.to_string()))?;
    let mut states = Vec::new();
    for rs in radars {
        let rs = Arc::new(rs);
        let state = Arc::new(Mutex::new(RadarState::default()));
        states.push(state.clone());
        // Start-up run, without waiting for the first tick.
        tokio::spawn(tick(ingester.clone(), rs.clone(), state.clone()));
        let ing = ingester.clone();
        let job = Job::new_async(schedule, move |_id, _lock| {
            let (ing, rs, state) = (ing.clone(), rs.clone(), state.clone());
            Box::pin(async move {
                tick(ing, rs, state).await;
            })
        })
        .map_err(|e| JobError(format!("schedule {schedule:?}: {e}")))?;
        sched.add(job).await.map_err(|e| JobError(e.to_string()))?;
    }
    sched.start().await.map_err(|e| JobError(e.to_string()))?;
    info!(
        schedule,
        radars = states.len(),
        owner = ingester.owner(),
        "ingest jobs started"
    );
    let _ = shutdown.wait_for(|stop| *stop).await;
    info!("shutting down ingest jobs");
    sched
        .shutdown()
        .await
        .map_err(|e| JobError(e.to_string()))?;
    // Wait for runs in progress: they stop between files.
    for st in states {
        let _ = st.lock().await;
    }
    info!("ingest jobs stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (b, m) = (Duration::seconds(30), Duration::minutes(15));
        assert_eq!(backoff_delay(b, m, 0), Duration::zero());
        assert_eq!(backoff_delay(b, m, 1), Duration::seconds(30));
        assert_eq!(backoff_delay(b, m, 2), Duration::seconds(60));
        assert_eq!(backoff_delay(b, m, 5), Duration::seconds(480));
        assert_eq!(backoff_delay(b, m, 6), Duration::minutes(15));
        assert_eq!(backoff_delay(b, m, 60), Duration::minutes(15));
    }
}
