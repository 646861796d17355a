//! One ingest run for one radar: lease, list, fetch, process, store,
//! checkpoint, quarantine.
//!
//! Listing: the window starts at the checkpoint minus the lookback (or at
//! `--since` / now minus the backfill for a radar without a checkpoint) and
//! ends now. One ListObjectsV2 per day prefix of the key template, always
//! from the start of the folder (no `StartAfter`): a file that arrives late
//! is listed however its key sorts. A long window (a backfill of months)
//! discovers the existing day folders with delimiter listings instead.
//!
//! A listed file timed before the window (up to [`LATE_HOURS`] before it)
//! was uploaded late: after a newer scan had moved the checkpoint (an
//! uploader that sends the newest scan first and then backfills, an
//! unordered copy of a backlog). It is ingested like any other when no
//! stored scan came from it and it is not quarantined, and it does not move
//! the checkpoint.
//!
//! Every listed file that matches the template is then, in time order:
//! * deferred (left for a later run, not checkpointed) when its time is
//!   more than `future_tolerance` ahead of now, or when it is a file in a
//!   folder modified less than `settle` ago; such a file also holds the
//!   checkpoint before its time, so that the next listing finds it again
//!   even when newer files were stored meanwhile;
//! * skipped when a stored scan already came from it, or it is quarantined
//!   and unchanged since (a quarantined file whose size changed is tried
//!   again; one older than the window is looked at by its exact key, a few
//!   per run: [`Ingester::retry_changed_old_quarantined`]);
//! * quarantined as `too_large` without being fetched when the listing says
//!   it is above `max_file_bytes`, or as soon as the fetch finds it larger
//!   (the read stops at the limit);
//! * quarantined as `crashed` when `max_attempts` earlier decodes of it
//!   were begun and never ended (the process died: out of memory, abort);
//! * otherwise fetched, marked in progress in the state store, decoded,
//!   prepped and encoded on the blocking pool (each decoder checks the
//!   declared grid against `max_cells` first), unmarked, and stored (tiles
//!   first, manifest last, conditional);
//! * quarantined with its reason when it cannot be decoded or stored.
//!
//! At most `batch_size` new files are processed per run; the checkpoint
//! moves after each, so a crash loses nothing and a re-run repeats nothing
//! (the conditional manifest write makes any repeat harmless anyway).

use crate::config::{IngestSettings, RadarConfig};
use crate::layout::{Granularity, KeyTemplate};
use crate::metrics::IngestMetrics;
use crate::process::{ProcessedScan, Rejection, ScanProcessor};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use raincast_store::{
    Checkpoint, LeaseOutcome, LeasePredecessor, NewScan, PutOutcome, QuarantineRecord, ScanSource,
    ScanStore, SourceObject, StateStore, StoreError,
};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// True when `listed` (the same key, listed now) is no longer the file that
/// was quarantined: its size differs (a file completed after a pause in its
/// writing, a re-upload with other content). A re-upload of the same bytes
/// is not tried again (a poison file would crash the decoder again). A file
/// that could not be read at all (`unreadable`) is also tried again when
/// its modification time changed (`touch` after fixing its permissions).
/// Unknown values (records written before they were kept) never count.
fn changed_since_quarantine(q: &QuarantineRecord, listed: &SourceObject) -> bool {
    let size = q.size.is_some_and(|s| s != listed.size);
    let touched = q.reason_code == UNREADABLE
        && matches!((q.modified, listed.last_modified), (Some(a), Some(b)) if a != b);
    size || touched
}

/// Quarantined files older than the listing window looked at per run, at
/// most ([`Ingester::retry_changed_old_quarantined`]).
const RECHECK_PER_RUN: usize = 8;
/// How often this process looks at one such file again.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// When this process forgets that it looked at one (bounds its memory).
const RECHECK_FORGET: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Quarantine code of a file the source lists but cannot read.
const UNREADABLE: &str = "unreadable";

/// How far before the listing window a late file is still ingested (see
/// the module docs). Only the listed day folders are looked at, so with a
/// day-folder layout a file is found while its day is listed (its day and
/// the lookback's); a file arriving later than that is found by a queue's
/// notification, or by `raincast ingest --once --since` on a radar
/// without a checkpoint.
const LATE_HOURS: i64 = 24;

/// Windows up to this many days are listed day by day; longer ones discover
/// the existing day folders first.
const MAX_DIRECT_DAYS: i64 = 14;

/// Why a run failed. Nothing half-written is left behind: stored scans are
/// complete, and the checkpoint covers exactly what was done.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("radar {radar}: {op}: {source}")]
    Store {
        radar: String,
        op: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("radar {radar}: the lease was lost to another instance during the run")]
    LeaseLost { radar: String },
}

impl IngestError {
    /// Short code for metrics (`unavailable`, `backend`, `lease_lost` ...).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Store { source, .. } => source.kind(),
            IngestError::LeaseLost { .. } => "lease_lost",
        }
    }
}

/// What one run did; printed as JSON by `raincast ingest --once`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassSummary {
    pub radar: String,
    /// Files in the window that follow the key template.
    pub listed: usize,
    /// Newly stored scans.
    pub ingested: usize,
    /// Files whose scan was already stored.
    pub skipped: usize,
    /// Files quarantined by this run.
    pub quarantined: usize,
    /// Files quarantined by an earlier run and unchanged since: not tried
    /// again (`raincast scans quarantined` says why).
    pub still_quarantined: usize,
    /// New files left for the next run (batch limit, shutdown).
    pub remaining: usize,
    /// Files left for a later run because their time is too far ahead of
    /// now, or (folder sources) they were modified too recently.
    pub deferred: usize,
    /// Files timed before the listing window (uploaded after a newer scan
    /// had moved the checkpoint) found new and ingested or quarantined by
    /// this run; also counted in `ingested` or `quarantined`.
    #[serde(skip_serializing_if = "is_zero")]
    pub late: usize,
    /// Seconds the run took.
    pub duration: f64,
    /// Set when another instance held the lease and nothing was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_held_by: Option<String>,
    /// With a queue: files this listing (the reconciler) stored or
    /// quarantined, i.e. files whose notification the queue missed.
    #[serde(skip_serializing_if = "is_zero")]
    pub reconciled: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A radar with its source.
#[derive(Clone)]
pub struct RadarSource {
    pub radar: RadarConfig,
    pub source: Arc<dyn ScanSource>,
}

/// Runs ingest passes. Shared by the scheduled jobs and `ingest --once`.
pub struct Ingester {
    scans: Arc<dyn ScanStore>,
    state: Arc<dyn StateStore>,
    processor: Arc<dyn ScanProcessor>,
    settings: IngestSettings,
    owner: String,
    metrics: IngestMetrics,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Scans stored by this ingester (for the `pause_after_put` failpoint).
    #[cfg(debug_assertions)]
    stored_total: std::sync::atomic::AtomicUsize,
    /// Future-dated keys already logged, so each is logged once.
    deferred_logged: std::sync::Mutex<HashSet<String>>,
    /// When this process last looked at each quarantined file older than
    /// the listing window ([`Self::retry_changed_old_quarantined`]).
    rechecked: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// How often one of them is looked at again ([`RECHECK_EVERY`]).
    recheck_every: std::time::Duration,
    /// Radars this process has registered in the state store.
    registered: std::sync::Mutex<HashSet<String>>,
}

/// At most this many future-dated keys are remembered for logging once.
const DEFERRED_LOG_MEMORY: usize = 10_000;

/// A listed file that matches the template, with its time.
#[derive(Debug, Clone)]
struct Candidate {
    object: SourceObject,
    time: DateTime<Utc>,
    /// The span of time the key names (`KeyMatch::time_span`), which the
    /// content's time must fall in, give or take `key_time_tolerance`.
    key_span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    file_name: String,
    /// Named by a notification (the object must exist: a missing one is a
    /// failure to retry, not a file that vanished after a listing).
    notified: bool,
    /// Timed before the listing window (a late upload): it never moves the
    /// checkpoint, and is left out unless it is new.
    late: bool,
}

/// Why a scan timed `content` cannot be the file `key` whose key names
/// `span` (`KeyMatch::time_span`): its time is more than `tolerance` outside
/// the span (a file put under the wrong radar or day, which would otherwise
/// be stored as that radar's scan at its content's time). `None` when it
/// fits, when the key names no time, or when `tolerance` is zero (the check
/// is off).
fn key_time_mismatch(
    key: &str,
    content: DateTime<Utc>,
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    tolerance: chrono::Duration,
) -> Option<Rejection> {
    let (from, to) = span?;
    if tolerance.is_zero() || (from - tolerance <= content && content <= to + tolerance) {
        return None;
    }
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let named = if from == to {
        fmt(from)
    } else {
        format!("the day {}", from.format("%Y-%m-%d"))
    };
    Some(Rejection {
        code: "time_mismatch".into(),
        reason: format!(
            "{key}: its content is timed {}, but its key names {named}: more than \
             key_time_tolerance_hours = {} apart (a file under the wrong radar or day?); \
             not stored",
            fmt(content),
            tolerance.num_minutes() as f64 / 60.0
        ),
    })
}

impl Candidate {
    /// Whether its time is the key's (not the source's modification time).
    fn key_timed(&self) -> bool {
        self.key_span.is_some_and(|(from, to)| from == to)
    }
}

/// An owner id unique to this process: host, pid and a clock-derived suffix.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}-{}-{:04x}", std::process::id(), nanos & 0xffff)
}

impl Ingester {
    /// `shutdown` turning true makes runs stop between two files (after
    /// checkpointing what they did) and release their lease.
    pub fn new(
        scans: Arc<dyn ScanStore>,
        state: Arc<dyn StateStore>,
        processor: Arc<dyn ScanProcessor>,
        settings: IngestSettings,
        owner: String,
        metrics: IngestMetrics,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            scans,
            state,
            processor,
            settings,
            owner,
            metrics,
            shutdown,
            #[cfg(debug_assertions)]
            stored_total: std::sync::atomic::AtomicUsize::new(0),
            deferred_logged: std::sync::Mutex::default(),
            rechecked: std::sync::Mutex::default(),
            recheck_every: RECHECK_EVERY,
            registered: std::sync::Mutex::default(),
        }
    }

    /// This instance's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The settings.
    pub fn settings(&self) -> &IngestSettings {
        &self.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// True when a queue is configured: the listing then reconciles, and
    /// every file it has to store was missed by the queue.
    fn reconciling(&self) -> bool {
        self.settings.queue.is_some()
    }

    /// Ingests one object named by a notification: `key` (relative to the
    /// radar's source) with its `size`, without a lease (the queue gives
    /// each message to one consumer) and without moving the checkpoint
    /// (the reconciler's listing does). Fetched, processed, stored or
    /// quarantined exactly as a listed file; a key whose scan is already
    /// stored from this key is skipped. A missing object is an error, so
    /// that its message is tried again.
    pub async fn ingest_notified(
        &self,
        rs: &RadarSource,
        key: &str,
        size: u64,
    ) -> Result<PassSummary, IngestError> {
        let started = std::time::Instant::now();
        let radar = rs.radar.id.as_str();
        let mut summary = PassSummary {
            radar: radar.to_string(),
            ..Default::default()
        };
        let Some(m) = rs.radar.key_template.match_key(radar, key) else {
            debug!(
                radar,
                key, "key does not follow the radar's template; ignored"
            );
            return Ok(summary);
        };
        self.register(&rs.radar).await;
        summary.listed = 1;
        let store_err = |op, source| IngestError::Store {
            radar: radar.to_string(),
            op,
            source,
        };
        let now = Utc::now();
        if let Some(t) = m.time {
            let stored = self
                .scans
                .get_manifest(radar, t, now)
                .await
                .map_err(|e| store_err("read stored manifest", e))?;
            if stored.is_some_and(|s| s.source_key == key) {
                summary.skipped += 1;
                self.metrics.skipped.with_label_values(&[radar]).inc();
                debug!(radar, key, "already stored; notification acknowledged");
                return Ok(summary);
            }
        }
        let object = SourceObject {
            key: key.to_string(),
            size,
            last_modified: None,
        };
        // Quarantined and unchanged (the notified size is the quarantined
        // file's): not fetched, decoded or counted again, as the listing
        // does not; a repeated delivery or a redrive would otherwise run the
        // decoder on a known bad file each time.
        let quarantined = self
            .state
            .get_quarantined(radar, key)
            .await
            .map_err(|e| store_err("read quarantine record", e))?;
        if quarantined.is_some_and(|q| !changed_since_quarantine(&q, &object)) {
            summary.still_quarantined += 1;
            debug!(
                radar,
                key, "quarantined and unchanged since; notification acknowledged"
            );
            return Ok(summary);
        }
        let c = Candidate {
            object,
            time: m.time.unwrap_or(now),
            key_span: m.time_span(),
            file_name: m.file_name,
            notified: true,
            late: false,
        };
        self.ingest_one(rs, &c, 1, 1, &mut summary).await?;
        summary.duration = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// One run for one radar under its lease.
    pub async fn run_once(&self, rs: &RadarSource) -> Result<PassSummary, IngestError> {
        let started = std::time::Instant::now();
        let radar = rs.radar.id.clone();
        let lease = format!("ingest:{radar}");
        let store_err = |op, source| IngestError::Store {
            radar: radar.clone(),
            op,
            source,
        };
        let ttl = self.settings.lease_ttl;
        let outcome = self
            .state
            .acquire_lease(&lease, &self.owner, ttl, Utc::now())
            .await
            .map_err(|e| store_err("acquire lease", e))?;
        match outcome {
            LeaseOutcome::Held { owner, until } => {
                info!(radar = %radar, holder = %owner, until = %until, "lease held by another instance; not running");
                return Ok(PassSummary {
                    radar,
                    lease_held_by: Some(owner),
                    duration: started.elapsed().as_secs_f64(),
                    ..Default::default()
                });
            }
            LeaseOutcome::Acquired { predecessor, until } => match predecessor {
                LeasePredecessor::Released { owner } => {
                    info!(radar = %radar, from = %owner, to = %self.owner, "lease handed over")
                }
                LeasePredecessor::Expired { owner, expired_at } => {
                    self.metrics
                        .lease_takeovers
                        .with_label_values(&[&radar])
                        .inc();
                    warn!(radar = %radar, from = %owner, to = %self.owner, expired_at = %expired_at,
                        "lease taken over from an instance whose lease ran out");
                }
                LeasePredecessor::None | LeasePredecessor::Same => {
                    debug!(radar = %radar, owner = %self.owner, until = %until, "lease acquired")
                }
            },
        }

        self.register(&rs.radar).await;

        // Renew every third of the TTL while working.
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let state = self.state.clone();
            let (lease, owner, lost) = (lease.clone(), self.owner.clone(), lost.clone());
            let period = (ttl / 3)
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(1));
            let radar = radar.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match state.renew_lease(&lease, &owner, ttl, Utc::now()).await {
                        Ok(true) => debug!(radar = %radar, "lease renewed"),
                        Ok(false) => {
                            warn!(radar = %radar, owner = %owner, "lease lost: another instance took it");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A transient failure: the lease may still be ours; try again.
                        Err(e) => warn!(radar = %radar, error = %e, "lease renewal failed"),
                    }
                }
            })
        };

        let result = self.pass(rs, &lost).await;
        renewer.abort();
        if result.is_ok() {
            self.update_lag(&radar).await;
        }
        if !lost.load(Ordering::SeqCst) {
            match self
                .state
                .release_lease(&lease, &self.owner, Utc::now())
                .await
            {
                Ok(true) => debug!(radar = %radar, owner = %self.owner, "lease released"),
                Ok(false) => warn!(radar = %radar, "lease was no longer ours at release"),
                // It runs out by itself.
                Err(e) => warn!(radar = %radar, error = %e, "lease release failed"),
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics
            .job_duration
            .with_label_values(&[&radar])
            .observe(elapsed);
        let mut summary = result?;
        summary.duration = elapsed;
        Ok(summary)
    }

    /// Sets the lag gauge to now minus the newest stored scan's time, also
    /// when this run stored nothing: it grows while a radar is quiet, which
    /// is what the lag alert watches. A failed read leaves it as it was.
    async fn update_lag(&self, radar: &str) {
        let now = Utc::now();
        match self.scans.latest(radar, now).await {
            Ok(Some(m)) => {
                let lag = (now - m.time).num_milliseconds() as f64 / 1000.0;
                self.metrics
                    .lag_seconds
                    .with_label_values(&[radar])
                    .set(lag.max(0.0));
            }
            Ok(None) => {}
            Err(e) => debug!(radar, error = %e, "newest scan not read for the lag gauge"),
        }
    }

    /// Records the radar in the store's registry once per process, so that
    /// readers find it without a configuration. A failure is logged and
    /// retried next run; it never stops ingest.
    async fn register(&self, radar: &crate::RadarConfig) {
        let known = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&radar.id);
        if known {
            return;
        }
        let record = raincast_store::radars::RadarRecord {
            id: radar.id.clone(),
            name: radar.name.clone(),
        };
        match raincast_store::radars::register(self.state.as_ref(), &record).await {
            Ok(()) => {
                self.registered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(radar.id.clone());
            }
            Err(e) => warn!(radar = %radar.id, error = %e, "registering the radar failed"),
        }
    }

    async fn pass(&self, rs: &RadarSource, lost: &AtomicBool) -> Result<PassSummary, IngestError> {
        let radar = rs.radar.id.as_str();
        let store_err = |op, source| IngestError::Store {
            radar: radar.to_string(),
            op,
            source,
        };
        let now = Utc::now();
        // Nothing later than this is ingested or checkpointed in this run.
        let horizon = now + self.settings.future_tolerance;
        let template = &rs.radar.key_template;
        let checkpoint = self
            .state
            .get_checkpoint(radar)
            .await
            .map_err(|e| store_err("read checkpoint", e))?;
        let start = match &checkpoint {
            // A checkpoint ahead of the horizon (written before future keys
            // were deferred) must not hide the files of the present.
            Some(cp) => cp.last_time.min(horizon) - self.settings.lookback,
            None => self.settings.since.unwrap_or(now - self.settings.backfill),
        };
        let listing = list_window(rs.source.as_ref(), template, radar, start, now)
            .await
            .map_err(|e| store_err("list source", e))?;

        let mut summary = PassSummary {
            radar: radar.to_string(),
            ..Default::default()
        };
        // Read once: for the old files looked at first, then for the
        // listed ones below (the records the retry itself writes concern
        // files older than the window, which the listing does not hold).
        let quarantine = self
            .state
            .list_quarantined(radar)
            .await
            .map_err(|e| store_err("list quarantine", e))?;
        self.retry_changed_old_quarantined(rs, start, &quarantine, &mut summary)
            .await?;
        let settle_before = match &self.settings.queue {
            // The reconciler leaves recent objects to their notification.
            Some(q) if rs.source.needs_settling() => {
                Some(now - q.reconcile_grace.max(self.settings.settle))
            }
            Some(q) => Some(now - q.reconcile_grace),
            None => rs
                .source
                .needs_settling()
                .then(|| now - self.settings.settle),
        };
        let mut candidates = Vec::new();
        // The earliest time of a file left to settle: the checkpoint stays
        // before it, so that the next listing (a lookback behind the
        // checkpoint) finds it again however far behind the newest it is.
        let mut hold: Option<DateTime<Utc>> = None;
        for obj in listing {
            let Some(m) = template.match_key(radar, &obj.key) else {
                continue;
            };
            let Some(time) = m.time.or(obj.last_modified) else {
                debug!(radar, key = %obj.key, "no time in key and none from the source; ignored");
                continue;
            };
            let late = time < start;
            if time < start - Duration::hours(LATE_HOURS) {
                continue;
            }
            if time > horizon {
                summary.deferred += 1;
                self.log_deferred(radar, &obj.key, time, now);
                continue;
            }
            if let (Some(before), Some(modified)) = (settle_before, obj.last_modified) {
                if modified > before {
                    summary.deferred += 1;
                    // (A late file needs no checkpoint to be found again.)
                    if !late {
                        hold = Some(hold.map_or(time, |h| h.min(time)));
                    }
                    debug!(radar, key = %obj.key, modified = %modified,
                        "modified less than settle_seconds ago; left for the next run");
                    continue;
                }
            }
            candidates.push(Candidate {
                object: obj,
                time,
                key_span: m.time_span(),
                file_name: m.file_name,
                notified: false,
                late,
            });
        }
        candidates.sort_by(|a, b| (a.time, &a.object.key).cmp(&(b.time, &b.object.key)));
        if candidates.is_empty() {
            debug!(radar, start = %start, "nothing listed");
            return Ok(summary);
        }

        // Quarantined files stay skipped while they are unchanged; one that
        // changed since (see `changed_since_quarantine`) is tried again.
        let by_key: HashMap<&str, &SourceObject> = candidates
            .iter()
            .map(|c| (c.object.key.as_str(), &c.object))
            .collect();
        // A late file quarantined before is left to
        // `retry_changed_old_quarantined`, changed or not.
        let quarantined_before: HashSet<String> =
            quarantine.iter().map(|q| q.key.clone()).collect();
        let quarantined: HashSet<String> = quarantine
            .into_iter()
            .filter(|q| {
                let changed = by_key
                    .get(q.key.as_str())
                    .is_some_and(|o| changed_since_quarantine(q, o));
                if changed {
                    info!(radar, key = %q.key, code = %q.reason_code,
                        "a quarantined file changed since; trying it again");
                }
                !changed
            })
            .map(|q| q.key)
            .collect();
        // Source keys already stored: a scan's stored time comes from its
        // content and may differ a little from the key's, hence the margin.
        let (first, last) = (candidates[0].time, candidates[candidates.len() - 1].time);
        let stored: HashSet<String> = self
            .scans
            .list_scans(
                radar,
                first - Duration::hours(6),
                last + Duration::hours(6),
                now,
            )
            .await
            .map_err(|e| store_err("list stored scans", e))?
            .into_iter()
            .map(|m| m.source_key)
            .collect();
        // Late files only when they are new: the stored and quarantined ones
        // of the listed days are not counted as listed or skipped again at
        // every run.
        candidates.retain(|c| {
            !c.late
                || !(stored.contains(&c.object.key) || quarantined_before.contains(&c.object.key))
        });
        summary.listed = candidates.len();

        let new_total = candidates
            .iter()
            .filter(|c| !stored.contains(&c.object.key) && !quarantined.contains(&c.object.key))
            .count();
        let mut cursor: Option<(DateTime<Utc>, String)> = None;
        let mut done_new = 0usize;
        let mut result = Ok(());
        for c in &candidates {
            let key = &c.object.key;
            // The checkpoint's next position, unless a file left to settle
            // comes at or before it.
            let next = (!c.late && hold.is_none_or(|h| c.time < h)).then(|| (c.time, key.clone()));
            if stored.contains(key) {
                summary.skipped += 1;
                self.metrics.skipped.with_label_values(&[radar]).inc();
                cursor = next.or(cursor);
                continue;
            }
            // A quarantined file whose key names no time (a README, a
            // stray file) has only its modification time, which says
            // nothing of where the radar's scans are: it does not move the
            // checkpoint (it moved it to the day it was copied, and the
            // day's real files behind it were never listed again).
            if quarantined.contains(key) {
                summary.still_quarantined += 1;
                if c.key_timed() {
                    cursor = next.or(cursor);
                }
                continue;
            }
            if done_new >= self.settings.batch_size {
                break;
            }
            if self.stopping() {
                info!(radar, "shutting down: stopping between files");
                break;
            }
            if lost.load(Ordering::SeqCst) {
                result = Err(IngestError::LeaseLost {
                    radar: radar.to_string(),
                });
                break;
            }
            done_new += 1;
            if c.late {
                summary.late += 1;
                self.metrics.late.with_label_values(&[radar]).inc();
                info!(radar, key = %key, time = %c.time.format("%Y-%m-%dT%H:%M:%SZ"), window_start = %start.format("%Y-%m-%dT%H:%M:%SZ"),
                    "a file timed before the listing window was uploaded late; ingesting it");
            }
            let before = summary.ingested + summary.quarantined;
            let ingested_before = summary.ingested;
            match self
                .ingest_one(rs, c, done_new, new_total, &mut summary)
                .await
            {
                Ok(()) => {
                    if self.reconciling() && summary.ingested + summary.quarantined > before {
                        summary.reconciled += 1;
                        self.metrics.reconciled.with_label_values(&[radar]).inc();
                        warn!(radar, key = %key, time = %c.time.format("%Y-%m-%dT%H:%M:%SZ"),
                            "the reconciler found a file the queue missed (its notification was lost or never sent)");
                    }
                    if c.key_timed() || summary.ingested > ingested_before {
                        cursor = next.or(cursor)
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if let Some((t, k)) = &cursor {
                self.checkpoint(radar, *t, k)
                    .await
                    .map_err(|e| store_err("write checkpoint", e))?;
            }
        }
        summary.remaining = new_total.saturating_sub(done_new);
        if let Some((t, k)) = &cursor {
            let write = self
                .checkpoint(radar, *t, k)
                .await
                .map_err(|e| store_err("write checkpoint", e));
            if result.is_ok() {
                write?;
            }
        }
        result.map(|()| summary)
    }

    /// Quarantined files older than the listing window (`start`) are never
    /// listed again, so one completed or re-uploaded later (a truncated
    /// upload written whole an hour on) would stay lost. Each run looks at
    /// a few of them — [`RECHECK_PER_RUN`], the ones this process looked at
    /// longest ago, each at most every [`RECHECK_EVERY`] — with a listing
    /// of its exact key, and tries again one whose size changed since it
    /// was quarantined. The checkpoint does not move for them.
    async fn retry_changed_old_quarantined(
        &self,
        rs: &RadarSource,
        start: DateTime<Utc>,
        records: &[QuarantineRecord],
        summary: &mut PassSummary,
    ) -> Result<(), IngestError> {
        let radar = rs.radar.id.as_str();
        let store_err = |op, source| IngestError::Store {
            radar: radar.to_string(),
            op,
            source,
        };
        let now = std::time::Instant::now();
        let due: Vec<QuarantineRecord> = {
            let mut looked = self.rechecked.lock().unwrap_or_else(|e| e.into_inner());
            looked.retain(|_, at| now.duration_since(*at) < RECHECK_FORGET);
            let mut old: Vec<QuarantineRecord> = records
                .iter()
                .filter(|q| q.time.is_some_and(|t| t < start) && q.size.is_some())
                .filter(|q| {
                    looked
                        .get(&q.key)
                        .is_none_or(|at| now.duration_since(*at) >= self.recheck_every)
                })
                .cloned()
                .collect();
            // Never looked at first, then the longest ago.
            old.sort_by_key(|q| looked.get(&q.key).copied());
            old.truncate(RECHECK_PER_RUN);
            for q in &old {
                looked.insert(q.key.clone(), now);
            }
            old
        };
        for q in due {
            let listed = rs
                .source
                .list(&q.key, None)
                .await
                .map_err(|e| store_err("list a quarantined file", e))?;
            let Some(object) = listed.into_iter().find(|o| o.key == q.key) else {
                continue;
            };
            if !changed_since_quarantine(&q, &object) {
                continue;
            }
            let Some(m) = rs.radar.key_template.match_key(radar, &object.key) else {
                continue;
            };
            let Some(time) = m.time.or(object.last_modified) else {
                continue;
            };
            // Stored since (a record outlives the file's retry): done.
            let stored = self
                .scans
                .list_scans(
                    radar,
                    time - Duration::hours(6),
                    time + Duration::hours(6),
                    Utc::now(),
                )
                .await
                .map_err(|e| store_err("list stored scans", e))?;
            if stored.iter().any(|m| m.source_key == q.key) {
                continue;
            }
            info!(radar, key = %q.key, code = %q.reason_code,
                "a quarantined file older than the listing window changed since; trying it again");
            let c = Candidate {
                object,
                time,
                key_span: m.time_span(),
                file_name: m.file_name,
                notified: false,
                late: true,
            };
            self.ingest_one(rs, &c, 1, 1, summary).await?;
        }
        Ok(())
    }

    /// Fetch, process, store (or quarantine) one new file.
    async fn ingest_one(
        &self,
        rs: &RadarSource,
        c: &Candidate,
        index: usize,
        total: usize,
        summary: &mut PassSummary,
    ) -> Result<(), IngestError> {
        let radar = rs.radar.id.as_str();
        let key = c.object.key.as_str();
        let store_err = |op, source| IngestError::Store {
            radar: radar.to_string(),
            op,
            source,
        };
        let limit = self.settings.max_file_bytes;
        if c.object.size > limit {
            let rej = Rejection {
                code: "too_large".into(),
                reason: format!(
                    "{key}: {} bytes, above the limit max_file_mb = {} ({limit} bytes); not fetched",
                    c.object.size,
                    limit as f64 / 1048576.0
                ),
            };
            return self.quarantine(radar, c, &rej, summary).await;
        }
        let bytes = match rs.source.fetch(key, limit).await {
            Ok(b) => b,
            // Larger than listed or notified (it grew since, or the event
            // carried no size): the read stopped at the limit.
            Err(StoreError::TooLarge { size, .. }) => {
                let rej = Rejection {
                    code: "too_large".into(),
                    reason: format!(
                        "{key}: at least {size} bytes when fetched, above the limit \
                         max_file_mb = {} ({limit} bytes); not read further",
                        limit as f64 / 1048576.0
                    ),
                };
                return self.quarantine(radar, c, &rej, summary).await;
            }
            Err(e @ StoreError::NotFound { .. }) if c.notified => {
                return Err(store_err("fetch notified object", e))
            }
            Err(StoreError::NotFound { .. }) => {
                debug!(
                    radar,
                    key, "file vanished between listing and fetching; ignored"
                );
                return Ok(());
            }
            // This file only (it cannot be read, or the source refuses its
            // key, e.g. a folder's file name with a backslash): quarantined,
            // and the run goes on with the others.
            Err(e @ (StoreError::Unreadable { .. } | StoreError::Invalid { .. })) => {
                let rej = Rejection {
                    code: e.kind().into(),
                    reason: format!("{key}: {e}"),
                };
                return self.quarantine(radar, c, &rej, summary).await;
            }
            Err(e) => return Err(store_err("fetch", e)),
        };
        // Mark the decode in progress first: if the process dies in it (out
        // of memory, abort), the next run sees the mark and counts it.
        let earlier = self
            .state
            .begin_attempt(radar, key, &self.owner, Utc::now())
            .await
            .map_err(|e| store_err("mark attempt", e))?;
        if earlier >= self.settings.max_attempts {
            let rej = Rejection {
                code: "crashed".into(),
                reason: format!(
                    "{key}: {earlier} earlier attempts to decode it never finished \
                     (the process died); not tried again"
                ),
            };
            self.quarantine(radar, c, &rej, summary).await?;
            return self.end_attempt(radar, key).await;
        }
        if earlier > 0 {
            warn!(
                radar,
                key,
                earlier,
                limit = self.settings.max_attempts,
                "an earlier decode of this file has not ended (a process died in it, or \
                 another one is decoding it now, from a repeated notification); trying again"
            );
        }
        let processor = self.processor.clone();
        let radar_cfg = rs.radar.clone();
        let file_name = c.file_name.clone();
        #[cfg(debug_assertions)]
        let abort = match &self.settings.failpoint {
            Some(crate::config::Failpoint::AbortDecoding(t)) => key.contains(t.as_str()),
            _ => false,
        };
        let processed = tokio::task::spawn_blocking(move || {
            #[cfg(debug_assertions)]
            if abort {
                eprintln!("failpoint abort_decoding: aborting while decoding {file_name}");
                std::process::abort();
            }
            processor.process(&radar_cfg, &file_name, &bytes)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Rejection {
                code: "panic".into(),
                reason: format!("the decoder panicked: {e}"),
            })
        });
        self.end_attempt(radar, key).await?;
        let scan = match processed {
            Ok(p) => p,
            Err(rej) => {
                let rej = Rejection {
                    reason: format!("{key}: {}", rej.reason),
                    ..rej
                };
                return self.quarantine(radar, c, &rej, summary).await;
            }
        };
        // The stored time comes from the content, which the key's time does
        // not bound: a scan timed in the future would become the radar's
        // latest and hide every real scan after it (nowcast, readiness).
        let horizon = Utc::now() + self.settings.future_tolerance;
        if scan.time > horizon {
            let rej = Rejection {
                code: "future_time".into(),
                reason: format!(
                    "{key}: its content is timed {}, more than future_tolerance_minutes = {} \
                     ahead of now; not stored",
                    scan.time.format("%Y-%m-%dT%H:%M:%SZ"),
                    self.settings.future_tolerance.num_minutes()
                ),
            };
            return self.quarantine(radar, c, &rej, summary).await;
        }
        if let Some(rej) =
            key_time_mismatch(key, scan.time, c.key_span, self.settings.key_time_tolerance)
        {
            return self.quarantine(radar, c, &rej, summary).await;
        }
        let new = to_new_scan(radar, key, scan);
        let (tiles, bytes, rain_cells, time) = (
            new.tiles.len(),
            new.payload_bytes(),
            new.rain_cells,
            new.time,
        );
        let now = Utc::now();
        match self.scans.put_scan(&new, now).await {
            Ok(PutOutcome::Stored) => {
                summary.ingested += 1;
                self.metrics.scans.with_label_values(&[radar]).inc();
                let lag = (now - time).num_milliseconds() as f64 / 1000.0;
                self.metrics
                    .lag_seconds
                    .with_label_values(&[radar])
                    .set(lag);
                info!(radar, time = %time.format("%Y-%m-%dT%H:%M:%SZ"), key, rain_cells, tiles, bytes,
                    lag_s = lag.round(), "ingested scan [{index}/{total}]");
                #[cfg(debug_assertions)]
                {
                    let n = self.stored_total.fetch_add(1, Ordering::SeqCst) + 1;
                    if self.settings.failpoint == Some(crate::config::Failpoint::PauseAfterPut(n)) {
                        warn!(radar, key, "failpoint pause_after_put:{n}: scan stored, checkpoint not written; pausing");
                        std::future::pending::<()>().await;
                    }
                }
            }
            Ok(PutOutcome::AlreadyStored) => {
                let stored_from = self
                    .scans
                    .get_manifest(radar, time, now)
                    .await
                    .map_err(|e| store_err("read stored manifest", e))?
                    .map(|m| m.source_key);
                match stored_from {
                    // Another file carries the same scan (a re-upload under
                    // another name or prefix). Recorded, so that it is not
                    // fetched and decoded again by every run.
                    Some(other) if other != key => {
                        let rej = Rejection {
                            code: "duplicate".into(),
                            reason: format!(
                                "{key}: its scan ({}) is already stored, from {other}",
                                time.format("%Y-%m-%dT%H:%M:%SZ")
                            ),
                        };
                        return self.quarantine(radar, c, &rej, summary).await;
                    }
                    _ => {
                        summary.skipped += 1;
                        self.metrics.skipped.with_label_values(&[radar]).inc();
                        info!(radar, time = %time.format("%Y-%m-%dT%H:%M:%SZ"), key, "already stored (by another instance or an earlier run) [{index}/{total}]");
                    }
                }
            }
            Err(e @ (StoreError::TooLarge { .. } | StoreError::Invalid { .. })) => {
                let rej = Rejection {
                    code: e.kind().to_string(),
                    reason: e.to_string(),
                };
                return self.quarantine(radar, c, &rej, summary).await;
            }
            Err(e) => return Err(store_err("store scan", e)),
        }
        Ok(())
    }

    async fn quarantine(
        &self,
        radar: &str,
        c: &Candidate,
        rej: &Rejection,
        summary: &mut PassSummary,
    ) -> Result<(), IngestError> {
        warn!(radar, key = %c.object.key, code = %rej.code, reason = %rej.reason, "quarantined");
        self.metrics
            .failures
            .with_label_values(&[radar, &rej.code])
            .inc();
        let rec = QuarantineRecord {
            radar: radar.to_string(),
            key: c.object.key.clone(),
            reason_code: rej.code.clone(),
            reason: rej.reason.clone(),
            time: Some(c.time),
            recorded_at: Utc::now(),
            size: Some(c.object.size),
            modified: c.object.last_modified,
        };
        self.state
            .quarantine(&rec)
            .await
            .map_err(|e| IngestError::Store {
                radar: radar.to_string(),
                op: "record quarantine",
                source: e,
            })?;
        summary.quarantined += 1;
        Ok(())
    }

    /// Clears the in-progress mark of a decode that finished.
    async fn end_attempt(&self, radar: &str, key: &str) -> Result<(), IngestError> {
        self.state
            .end_attempt(radar, key)
            .await
            .map_err(|e| IngestError::Store {
                radar: radar.to_string(),
                op: "end attempt",
                source: e,
            })
    }

    /// Logs a future-dated key once per process (a bounded memory of them).
    fn log_deferred(&self, radar: &str, key: &str, time: DateTime<Utc>, now: DateTime<Utc>) {
        let mut logged = self
            .deferred_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if logged.len() >= DEFERRED_LOG_MEMORY {
            logged.clear();
        }
        if logged.insert(key.to_string()) {
            info!(radar, key, time = %time.format("%Y-%m-%dT%H:%M:%SZ"),
                ahead_min = (time - now).num_minutes(),
                "key timed in the future: deferred until its time comes (future_tolerance_minutes)");
        }
    }

    /// Writes the checkpoint `(time, key)`. Only processed files move it,
    /// and those are never later than now plus the future tolerance.
    async fn checkpoint(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.state
            .put_checkpoint(&Checkpoint {
                radar: radar.to_string(),
                last_time: time,
                last_key: key.to_string(),
                updated_at: Utc::now(),
            })
            .await
    }
}

fn to_new_scan(radar: &str, key: &str, p: ProcessedScan) -> NewScan {
    NewScan {
        radar: radar.to_string(),
        time: p.time,
        source_key: key.to_string(),
        format: p.format,
        header: p.header,
        rain_cells: p.rain_cells,
        tiles: p.tiles,
    }
}

/// Every object of `radar` in the folders covering `[start, now]`.
async fn list_window(
    source: &dyn ScanSource,
    template: &KeyTemplate,
    radar: &str,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<SourceObject>, StoreError> {
    let prefixes = window_prefixes(
        source,
        template,
        radar,
        start.date_naive(),
        now.date_naive(),
    )
    .await?;
    let mut out = Vec::new();
    for prefix in prefixes {
        out.extend(source.list(&prefix, None).await?);
    }
    Ok(out)
}

/// The folder prefixes to list for days `from..=to`, in order.
async fn window_prefixes(
    source: &dyn ScanSource,
    template: &KeyTemplate,
    radar: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<String>, StoreError> {
    let from = from.min(to);
    let all: BTreeSet<String> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|d| template.prefix_for(radar, d))
        .collect();
    if template.folder_granularity() != Granularity::Day
        || (to - from).num_days() <= MAX_DIRECT_DAYS
    {
        // BTreeSet order is key order, which is date order for these layouts.
        return Ok(all.into_iter().collect());
    }
    // A long window: walk the existing folders below the static prefix and
    // keep only those that lead to a day prefix in the window.
    let mut found = Vec::new();
    let mut frontier = vec![template.static_prefix(radar)];
    while let Some(dir) = frontier.pop() {
        if all.contains(&dir) {
            found.push(dir);
            continue;
        }
        for child in source.list_dirs(&dir).await? {
            let leads = all
                .range(child.clone()..)
                .next()
                .is_some_and(|p| p.starts_with(&child));
            if leads {
                frontier.push(child);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests;
