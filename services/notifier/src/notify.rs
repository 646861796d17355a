//! One notifier pass: evaluate, claim, render, publish, record.
//!
//! [`Notifier::run_once`] takes the outlooks of the latest scans (one
//! [`Job`] per place and radar) and:
//! 1. evaluates each job against its stored [`PlaceState`], claims every new
//!    event ([`Claims::claim`]) and then stores the new state with a
//!    compare-and-set (claims first: a crash in between re-evaluates the same
//!    scan next time and meets its own claims);
//! 2. picks up pending claims of earlier runs whose lease has run out, and
//!    marks those past their expiry as expired. Expiry is judged on the
//!    **data clock** (the latest scan time of the event's radar in this pass),
//!    so replaying a past day behaves like a live run;
//! 3. publishes every claim it holds, with its GIF ([`GifSource`]), one
//!    after another, each exactly once (see [`crate::claims`]): a claim
//!    found `Attempting` is first looked up at the publisher; then the claim
//!    is checked and renewed ([`Claims::begin_attempt`]), the publish runs
//!    inside the renewed lease and the shutdown signal
//!    ([`PublishContext`]), and the outcome is recorded (a "posted" record
//!    is written until the store accepts it).
//!
//! It returns one [`Report`] per event touched.

use crate::claims::{ClaimOutcome, ClaimRecord, ClaimStatus, Claims};
use crate::events::{evaluate, Event, EventKind};
use crate::outlook::Outlook;
use crate::place::Place;
use crate::publish::{Post, PublishContext, Publisher, Receipt};
use crate::text::compose;
use crate::PlaceState;
use chrono::{DateTime, Utc};
use raincast_store::StoreError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::watch;
use tracing::{info, warn};

/// Supplies the animated GIF of an event.
pub trait GifSource: Send + Sync {
    /// The GIF for `event` at `place`, or `None` when no frames are available.
    /// Errors are logged and the post goes out without a GIF.
    fn gif(&self, event: &Event, place: &Place) -> Result<Option<Vec<u8>>, String>;
}

/// No GIFs: text-only posts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGif;

impl GifSource for NoGif {
    fn gif(&self, _event: &Event, _place: &Place) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

/// One place and the outlook of its radar's latest scan.
#[derive(Debug, Clone)]
pub struct Job {
    /// The place.
    pub place: Place,
    /// Its outlook.
    pub outlook: Outlook,
    /// Whether this radar serves the place in this pass. Only the serving
    /// radar's events are claimed and posted; another radar that also sees
    /// the place only advances its stored state (so that, should it take
    /// over, it does not announce again what was announced). See
    /// `crate::service::choose_serving_radars`.
    pub post: bool,
}

/// What happened to an event in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Posted now.
    Posted,
    /// The destination already had it (X duplicate, outbox record present).
    AlreadyPosted,
    /// Claimed earlier and already posted or expired (nothing done).
    Duplicate,
    /// Another instance holds it.
    Busy,
    /// Publishing failed; it will be retried on a later run.
    Pending,
    /// It expired before it could be posted.
    Expired,
    /// Within the cool-down of an earlier event of the same kind (claim store).
    CoolingDown,
}

/// One line of output per event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Event key.
    pub key: String,
    /// Kind.
    pub kind: EventKind,
    /// Place name.
    pub place: String,
    /// Radar id.
    pub radar: String,
    /// Post text.
    pub text: String,
    /// GIF size, bytes (0 without GIF).
    pub gif_bytes: usize,
    /// Outcome.
    pub status: ReportStatus,
    /// Post id (tweet id or outbox path) when posted.
    pub post_id: Option<String>,
    /// Error, when pending.
    pub error: Option<String>,
}

/// Errors that stop a whole pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lease time kept in reserve when publishing: the publisher must be done
/// this long (or a tenth of the lease, when shorter) before the claim's
/// lease ends, since the clocks of instances differ.
pub const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A notifier instance: claims in a store, posts through a publisher.
#[derive(Debug)]
pub struct Notifier<P> {
    claims: Claims,
    publisher: P,
    shutdown: Option<watch::Receiver<bool>>,
    /// When set: the only event kinds posted per place slug (webhook
    /// subscriptions choose theirs); other kinds are evaluated, not claimed.
    kinds: Option<BTreeMap<String, BTreeSet<EventKind>>>,
    /// A pass's `now` is the wall clock of a live service ([`Self::with_live_clock`]).
    live: bool,
}

/// Whether a claim's place is a webhook subscription's: its id is the
/// subscription's (`sub_…`, which configured places may not use).
pub fn is_subscription_place(place: &crate::Place) -> bool {
    place
        .id
        .as_deref()
        .is_some_and(|id| id.starts_with(raincast_store::subscriptions::ID_PREFIX))
}

fn report(record: &ClaimRecord, status: ReportStatus) -> Report {
    Report {
        key: record.event.key.clone(),
        kind: record.event.kind,
        place: record.event.place.clone(),
        radar: record.event.radar.clone(),
        text: record.text.clone(),
        gif_bytes: record.gif_bytes.unwrap_or(0),
        status,
        post_id: record.post_id.clone(),
        error: record.last_error.clone(),
    }
}

impl<P: Publisher> Notifier<P> {
    /// A notifier over `claims`, posting with `publisher`.
    pub fn new(claims: Claims, publisher: P) -> Self {
        Self {
            claims,
            publisher,
            shutdown: None,
            kinds: None,
            live: false,
        }
    }

    /// Posts only the kinds listed for each place (by [`Place::slug`]);
    /// a place not listed gets none.
    pub fn with_kinds(mut self, kinds: BTreeMap<String, BTreeSet<EventKind>>) -> Self {
        self.kinds = Some(kinds);
        self
    }

    fn wanted(&self, place: &Place, kind: EventKind) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|k| k.get(&place.slug()).is_some_and(|set| set.contains(&kind)))
    }

    /// The passes' `now` is the wall clock of a live service (`raincast
    /// run`), later than the scan by the time ingest and nowcast took: an
    /// expected rain is told in minutes from `now` (not from the scan), and
    /// one whose start has come by `now` is not posted as expected (the
    /// "rain started" event follows from the next scan).
    pub fn with_live_clock(mut self) -> Self {
        self.live = true;
        self
    }

    /// The event as told at `now`: under a live clock an expected rain's
    /// lead counts from `now`, and `None` once its start has come.
    fn as_told(&self, event: &Event, now: DateTime<Utc>) -> Option<Event> {
        let mut told = event.clone();
        if self.live && event.kind == EventKind::RainExpected {
            let ahead = (event.start_time - now.max(event.scan_time)).num_minutes();
            if ahead <= 0 {
                return None;
            }
            told.lead_min = Some(u32::try_from(ahead).unwrap_or(u32::MAX));
        }
        Some(told)
    }

    /// Stops publishing (between steps, and in the middle of waits) once
    /// `shutdown` turns true: a stopping process never dies mid-post.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| *s.borrow())
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The publisher.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// Evaluates one job, claims its events and stores its state. Returns the
    /// claims acquired and reports for the others.
    async fn evaluate_job(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        to_publish: &mut Vec<(ClaimRecord, u64)>,
        reports: &mut Vec<Report>,
    ) -> Result<(), StoreError> {
        let radar = &job.outlook.radar;
        for _ in 0..4 {
            let (state, version): (PlaceState, Option<u64>) =
                self.claims.load_state(&job.place, radar).await?;
            let ev = evaluate(&job.place, &state, &job.outlook);
            if !ev.applied {
                return Ok(());
            }
            for kind in &ev.suppressed {
                info!(place = %job.place.name, %kind, "event within cool-down, not posted");
            }
            if !job.post && !ev.events.is_empty() {
                tracing::debug!(place = %job.place.name, radar = %job.outlook.radar,
                    events = ev.events.len(), "another radar serves this place: state only");
            }
            let serving = job.post;
            for event in ev
                .events
                .iter()
                .filter(|e| serving && self.wanted(&job.place, e.kind))
            {
                let Some(told) = self.as_told(event, now) else {
                    info!(key = %event.key, start = %event.start_time,
                        "expected rain already due: not posted");
                    continue;
                };
                let text = compose(&told, &job.place);
                match self.claims.claim(event, &job.place, &text, now).await? {
                    ClaimOutcome::Acquired { version, record } => {
                        to_publish.push((record, version))
                    }
                    ClaimOutcome::Done { record } => {
                        reports.push(report(&record, ReportStatus::Duplicate))
                    }
                    ClaimOutcome::Busy { record } => {
                        reports.push(report(&record, ReportStatus::Busy))
                    }
                    ClaimOutcome::CoolingDown { other_key } => {
                        info!(key = %event.key, %other_key, "event within cool-down of a claimed one");
                        let mut r = report(
                            &ClaimRecord::new(event.clone(), job.place.clone(), text, "", now),
                            ReportStatus::CoolingDown,
                        );
                        r.error = Some(format!("cool-down after {other_key}"));
                        reports.push(r);
                    }
                }
            }
            match self
                .claims
                .save_state(&job.place, radar, &ev.state, version)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    // Another instance stored a state meanwhile: re-read; if it
                    // already covers this scan we are done, else evaluate again
                    // (our claims are idempotent).
                    let (other, _) = self.claims.load_state(&job.place, radar).await?;
                    if other.last_scan.is_some_and(|t| t >= job.outlook.scan_time) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict {
            what: crate::claims::state_key(&job.place, radar),
            reason: "the place state kept changing".into(),
        })
    }

    /// One pass over `jobs` at wall time `now` (leases). See the module docs.
    pub async fn run_once(
        &self,
        jobs: &[Job],
        gifs: &impl GifSource,
        now: DateTime<Utc>,
    ) -> Result<Vec<Report>, NotifyError> {
        let mut reports = Vec::new();
        let mut to_publish: Vec<(ClaimRecord, u64)> = Vec::new();
        for job in jobs {
            if let Err(e) = self
                .evaluate_job(job, now, &mut to_publish, &mut reports)
                .await
            {
                // The state was not saved: the same scan is evaluated again next run.
                warn!(place = %job.place.name, radar = %job.outlook.radar, error = %e, "evaluation failed");
            }
        }

        // Data clock per radar.
        let mut data_now: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for job in jobs {
            let t = data_now
                .entry(job.outlook.radar.as_str())
                .or_insert(job.outlook.scan_time);
            *t = (*t).max(job.outlook.scan_time);
        }
        let held: BTreeSet<String> = to_publish
            .iter()
            .map(|(r, _)| r.event.key.clone())
            .collect();
        for (record, version) in self.claims.retryable(now).await? {
            if held.contains(&record.event.key) {
                continue;
            }
            // Each channel retries its own events only: a webhook
            // subscription's (private: its place is the subscriber's) never
            // goes to X, Mastodon or the outbox, nor a place's to webhooks.
            if is_subscription_place(&record.place) != self.kinds.is_some() {
                continue;
            }
            let clock = data_now
                .get(record.event.radar.as_str())
                .copied()
                .unwrap_or(now);
            // A retry under a live clock: told anew, or expired once due.
            let told = self.as_told(&record.event, now);
            if clock > record.event.expires_at || told.is_none() {
                let mut expired = record.clone();
                expired.status = ClaimStatus::Expired;
                expired.owner = Some(self.claims.owner().to_string());
                match self.claims.update(&expired, version).await {
                    Ok(_) => {
                        warn!(key = %expired.event.key, "event expired before it could be posted");
                        reports.push(report(&expired, ReportStatus::Expired));
                    }
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            // Told anew only if never attempted: an attempt that may have
            // posted is looked for on the account by its text, unchanged.
            let mut record = record;
            if let Some(t) = told.filter(|_| self.live && record.status == ClaimStatus::Pending) {
                record.text = compose(&t, &record.place);
            }
            match self.claims.acquire(record, version, now).await? {
                ClaimOutcome::Acquired { version, record } => to_publish.push((record, version)),
                ClaimOutcome::Done { record } => {
                    reports.push(report(&record, ReportStatus::Duplicate))
                }
                ClaimOutcome::Busy { record } => reports.push(report(&record, ReportStatus::Busy)),
                ClaimOutcome::CoolingDown { .. } => {}
            }
        }

        // The lease clock moves on while posts go out one after another.
        let started = tokio::time::Instant::now();
        for (record, version) in to_publish {
            let clock = now
                + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::zero());
            reports.push(self.publish_claim(record, version, gifs, clock).await?);
        }
        Ok(reports)
    }

    /// Publishes one held claim and records the outcome.
    async fn publish_claim(
        &self,
        mut record: ClaimRecord,
        version: u64,
        gifs: &impl GifSource,
        now: DateTime<Utc>,
    ) -> Result<Report, NotifyError> {
        if self.shutting_down() {
            // Leave it to the next run (our lease runs out meanwhile).
            return Ok(report(&record, ReportStatus::Pending));
        }
        // Rendering is CPU work (tens of MB for a large window): on a
        // multi-threaded runtime it leaves the async worker first, so the
        // HTTP API sharing the runtime keeps answering.
        let render = || gifs.gif(&record.event, &record.place);
        let rendered = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(render),
            _ => render(),
        };
        let gif = match rendered {
            Ok(g) => g,
            Err(e) => {
                warn!(key = %record.event.key, error = %e, "GIF rendering failed; posting text only");
                None
            }
        };
        let post = Post {
            event: &record.event,
            place: &record.place,
            text: &record.text,
            gif: gif.as_deref(),
        };
        // An earlier attempt may have posted it: ask the publisher first.
        if record.status == ClaimStatus::Attempting {
            let since = record.attempt_at.unwrap_or(record.event.scan_time);
            match self.publisher.find(&post, since).await {
                Ok(Some(receipt)) => {
                    info!(key = %record.event.key, id = %receipt.id,
                          "an earlier attempt had posted it; not posting again");
                    let gif_bytes = gif.as_ref().map(Vec::len);
                    return self
                        .record_posted(record, version, receipt, gif_bytes)
                        .await;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(key = %record.event.key, error = %e,
                          "cannot tell whether an earlier attempt posted; left for a later run");
                    record.last_error = Some(format!("checking an earlier attempt: {e}"));
                    record.lease_until = None;
                    self.record_outcome(&record, version).await?;
                    return Ok(report(&record, ReportStatus::Pending));
                }
            }
        }
        // Check and renew the claim right before publishing.
        let version = match self.claims.begin_attempt(&mut record, version, now).await {
            Ok(v) => v,
            Err(StoreError::Conflict { .. }) => {
                warn!(key = %record.event.key, "claim taken over before publishing; not posting");
                return Ok(report(&record, ReportStatus::Busy));
            }
            Err(e) => return Err(e.into()),
        };
        record.gif_bytes = gif.as_ref().map(Vec::len);
        let lease = self.claims.lease().to_std().unwrap_or_default();
        let lease_left = lease.saturating_sub(LEASE_MARGIN.min(lease / 10));
        let ctx = PublishContext::new(
            Some(tokio::time::Instant::now() + lease_left),
            self.shutdown.clone(),
        );
        let post = Post {
            event: &record.event,
            place: &record.place,
            text: &record.text,
            gif: gif.as_deref(),
        };
        match self.publisher.publish(&post, &ctx).await {
            Ok(receipt) => {
                let gif_bytes = record.gif_bytes;
                self.record_posted(record, version, receipt, gif_bytes)
                    .await
            }
            Err(e) => {
                // Before the post could exist the claim goes back to
                // pending; otherwise it stays attempting, so that the next
                // holder asks the publisher before posting again.
                if !e.maybe_posted() {
                    record.status = ClaimStatus::Pending;
                }
                warn!(key = %record.event.key, attempt = record.attempts, error = %e,
                      status = ?record.status, "publishing failed; event stays open");
                record.last_error = Some(e.to_string());
                record.lease_until = None;
                self.record_outcome(&record, version).await?;
                Ok(report(&record, ReportStatus::Pending))
            }
        }
    }

    /// Records a post the publisher accepted (or already had).
    async fn record_posted(
        &self,
        mut record: ClaimRecord,
        version: u64,
        receipt: Receipt,
        gif_bytes: Option<usize>,
    ) -> Result<Report, NotifyError> {
        record.status = ClaimStatus::Posted;
        record.publisher = Some(self.publisher.name().to_string());
        record.post_id = Some(receipt.id).filter(|s| !s.is_empty());
        record.posted_at = Some(Utc::now());
        record.lease_until = None;
        record.last_error = None;
        record.gif_bytes = gif_bytes;
        info!(key = %record.event.key, publisher = self.publisher.name(),
              id = ?record.post_id, already = receipt.already_posted, "posted");
        self.record_outcome(&record, version).await?;
        let status = if receipt.already_posted {
            ReportStatus::AlreadyPosted
        } else {
            ReportStatus::Posted
        };
        Ok(report(&record, status))
    }

    /// Writes the outcome of a publish, trying again (with backoff) until the
    /// store accepts it. Only shutdown ends the retries early: the claim then
    /// stays `Attempting` and whoever takes it over asks the publisher first.
    async fn record_outcome(&self, record: &ClaimRecord, version: u64) -> Result<(), NotifyError> {
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match self.claims.update(record, version).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    // Only possible when our lease ran out and someone took
                    // the claim; it finds the post before posting again.
                    warn!(key = %record.event.key, "claim changed while publishing (lease lost)");
                    return Ok(());
                }
                Err(e) => {
                    warn!(key = %record.event.key, error = %e, retry_in_ms = delay.as_millis() as u64,
                          "recording the outcome failed; trying again");
                    let stop = async {
                        match self.shutdown.clone() {
                            Some(mut rx) => {
                                let _ = rx.wait_for(|s| *s).await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop => return Err(e.into()),
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
    }
}
