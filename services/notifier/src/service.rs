//! The notifier job: [`run`] (under `raincast run`, a pass after every new
//! nowcast) and [`pass`] (one pass, `raincast notify --once`).
//!
//! A pass reads each radar's nowcast from the one nowcast service
//! ([`NowcastService`]): the cached one when the nowcast job has built it,
//! else one built (or loaded from stored frames) through the same service
//! and the same `[nowcast]` settings. The GIF's frames come from the
//! service's frames builder. So an alert describes exactly the nowcast that
//! `/v1/forecast` serves, and a pass under `raincast run` decodes no scan
//! the nowcast job has decoded.

use crate::claims::Claims;
use crate::frames::{jobs_for, RadarFrames};
use crate::gif::{FrameLibrary, PAST_MIN};
use crate::notify::{Job, NoGif, Notifier, NotifyError, Report};
use crate::oauth::Credentials;
use crate::publish::mastodon::{MastodonConfig, MastodonPublisher};
use crate::publish::outbox::OutboxPublisher;
use crate::publish::webhook::WebhookPublisher;
use crate::publish::x::{XConfig, XPublisher};
use crate::publish::{AnyPublisher, PublishError};
use crate::webhook::{subscription_kinds, subscription_place, Deliverer, WebhookSettings};
use crate::Place;
use chrono::{DateTime, Duration, Utc};
use raincast_algorithms::mosaic::MosaicRadar;
use raincast_config::notifier::{posting_account, NotifierSection, PostingAccount};
use raincast_config::secrets::Secrets;
use raincast_nowcast::mosaic::MosaicSite;
use raincast_nowcast::{NowcastService, NowcastServiceError};
use raincast_store::StateStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// The claim lease of a notifier: long enough for one post with a
/// rate-limit wait (X: up to 15 minutes) and its requests. Each post checks
/// and renews it right before publishing.
pub const CLAIM_LEASE_MIN: i64 = 20;

/// Nowcasts issued longer ago than this give no alerts under `raincast run`
/// (while a backlog or the demo's backfill is ingested, old rain is history).
pub const MAX_ALERT_AGE_MIN: i64 = 30;

/// How the notifier works (the validated `[notifier]` section).
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// The places to watch.
    pub places: Vec<Place>,
    /// Outbox folder: one JSON file and one GIF per post, when not posting to X.
    pub outbox: PathBuf,
    /// The process's secrets. Each pass posts to X or Mastodon (unless a
    /// dry run) when they hold that account's credentials, read for that
    /// pass, so rotated credentials are used without a restart.
    pub secrets: Secrets,
    /// Where X's API is.
    pub x_config: XConfig,
    /// The Mastodon instance, when `[notifier.mastodon]` is set (its token
    /// is the secret `mastodon_token`).
    pub mastodon: Option<MastodonConfig>,
    /// Webhook deliveries of the subscriptions in the state store.
    pub webhooks: WebhookSettings,
    /// Write to the outbox even with an X account, and keep claims and
    /// place states in memory: the store is read, never written.
    pub dry_run: bool,
    /// Claim lease.
    pub lease: Duration,
    /// Observations shown in a GIF before the nowcast's issue time, minutes.
    pub past_min: u32,
    /// Under [`run`]: how often to look for a new nowcast.
    pub interval: std::time::Duration,
    /// Under [`run`]: nowcasts issued longer ago give no alerts.
    pub max_alert_age: Duration,
}

impl NotifierSettings {
    /// Settings for `places` writing to `outbox`, defaults otherwise.
    pub fn new(places: Vec<Place>, outbox: PathBuf) -> Self {
        Self {
            places,
            outbox,
            secrets: Secrets::default(),
            x_config: XConfig::default(),
            mastodon: None,
            webhooks: WebhookSettings::default(),
            dry_run: false,
            lease: Duration::minutes(CLAIM_LEASE_MIN),
            past_min: PAST_MIN,
            interval: std::time::Duration::from_secs(15),
            max_alert_age: Duration::minutes(MAX_ALERT_AGE_MIN),
        }
    }
}

impl NotifierSettings {
    /// The settings of the `[notifier]` section watching `places` (the
    /// section's, or others such as the demo's) with the posting
    /// credentials from `secrets`, or `None` when the notifier is off:
    /// `enabled = false`, or not set and no places. `enabled = true`
    /// without places watches the webhook subscriptions only.
    pub fn from_section(
        section: &NotifierSection,
        places: Vec<Place>,
        interval: std::time::Duration,
        secrets: Secrets,
    ) -> Result<Option<Self>, ServiceError> {
        if !section.enabled.unwrap_or(!places.is_empty()) {
            return Ok(None);
        }
        let mut x_config = XConfig::default();
        if let Some(base) = &section.x_api_base {
            x_config.base_url = base.clone();
        }
        let mastodon = section
            .mastodon
            .as_ref()
            .map(|m| MastodonConfig::new(m.base_url.clone()));
        let webhooks = WebhookSettings {
            allow_private: section.allow_private_webhooks,
            public_url: section.public_url.clone(),
            ..WebhookSettings::default()
        };
        Ok(Some(Self {
            secrets,
            x_config,
            mastodon,
            webhooks,
            dry_run: section.dry_run,
            interval,
            ..Self::new(places, section.outbox.clone())
        }))
    }
}

/// A radar the notifier watches.
#[derive(Debug, Clone, PartialEq)]
pub struct RadarRef {
    pub id: String,
    /// Display name (the GIF's title).
    pub name: String,
    /// Site `(lon, lat)`, degrees, when known: where two radars see a place,
    /// the one the mosaic weights most there serves it (the nearest site;
    /// without a site, the grid's centre counts, pushed back as the mosaic
    /// does).
    pub location: Option<(f64, f64)>,
}

/// What the notifier works with.
#[derive(Clone)]
pub struct NotifierDeps {
    /// Claims, posting records and place states.
    pub state: Arc<dyn StateStore>,
    /// The one nowcast service (shared with the API under `raincast run`).
    pub nowcasts: NowcastService,
    /// The radars to watch.
    pub radars: Vec<RadarRef>,
}

/// Errors that stop a pass.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Nowcast(#[from] NowcastServiceError),
    #[error("publisher: {0}")]
    Publisher(#[from] PublishError),
    #[error(transparent)]
    Secrets(#[from] raincast_config::ConfigError),
    #[error("webhook subscriptions: {0}")]
    Store(#[from] raincast_store::StoreError),
}

/// This pass's publisher: X or Mastodon with the credentials as they are
/// now (unless a dry run), else the outbox.
fn publisher(settings: &NotifierSettings) -> Result<AnyPublisher, ServiceError> {
    let account = if settings.dry_run {
        PostingAccount::None
    } else {
        let mastodon = settings.mastodon.as_ref().map(|m| m.base_url.as_str());
        posting_account(mastodon, &settings.secrets)?
    };
    match account {
        PostingAccount::X(s) => {
            let credentials = Credentials {
                consumer_key: s.consumer_key.expose().to_string(),
                consumer_secret: s.consumer_secret.expose().to_string(),
                access_token: s.access_token.expose().to_string(),
                access_secret: s.access_secret.expose().to_string(),
            };
            let x = XPublisher::new(credentials, settings.x_config.clone())?;
            debug!(base = %x.config().base_url, "posting to X");
            Ok(AnyPublisher::X(Box::new(x)))
        }
        PostingAccount::Mastodon { token, .. } => {
            let config = settings.mastodon.clone().unwrap_or_else(|| {
                unreachable!("posting_account returns Mastodon only with [notifier.mastodon]")
            });
            let p = MastodonPublisher::new(token, config)?;
            debug!(base = %p.config().base_url, "posting to Mastodon");
            Ok(AnyPublisher::Mastodon(Box::new(p)))
        }
        PostingAccount::None => {
            debug!(outbox = %settings.outbox.display(), dry_run = settings.dry_run,
                "writing to the outbox");
            Ok(AnyPublisher::Outbox(OutboxPublisher::new(
                settings.outbox.clone(),
            )))
        }
    }
}

/// One pass: each radar's nowcast (issued at `not_before` or later, when
/// given) from the nowcast service, its frames, the places' events, and
/// each new event posted once.
pub async fn pass(
    settings: &NotifierSettings,
    deps: &NotifierDeps,
    now: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
    shutdown: Option<watch::Receiver<bool>>,
) -> Result<Vec<Report>, ServiceError> {
    let mut gifs = FrameLibrary::new();
    let mut jobs = Vec::new();
    // Webhook subscriptions are places too (a dry run leaves them alone:
    // it must not send anything).
    let subscriptions = if settings.dry_run {
        Vec::new()
    } else {
        raincast_store::subscriptions::list_all(deps.state.as_ref()).await?
    };
    let sub_places: Vec<Place> = subscriptions.iter().map(subscription_place).collect();
    let mut sub_jobs = Vec::new();
    let mut sites = HashMap::new();
    for radar in &deps.radars {
        let nowcast = match deps.nowcasts.latest(&radar.id) {
            Some(n) => Some(n),
            None => deps
                .nowcasts
                .update(&radar.id, now)
                .await?
                .nowcast()
                .cloned(),
        };
        let Some(nowcast) = nowcast else {
            info!(radar = %radar.id, "no current nowcast");
            continue;
        };
        if let Some(t) = not_before.filter(|t| nowcast.base_time < *t) {
            info!(radar = %radar.id, issued = %nowcast.base_time, not_before = %t,
                "the radar's latest nowcast is older than alerts allow (its scan more than {} min old): no alerts from it",
                (now - t).num_minutes());
            continue;
        }
        let frames =
            RadarFrames::load(&deps.nowcasts, nowcast, &radar.name, settings.past_min, now).await?;
        jobs.extend(jobs_for(&frames, &settings.places));
        sub_jobs.extend(jobs_for(&frames, &sub_places));
        let site = MosaicSite {
            id: radar.id.clone(),
            location: radar.location,
        };
        match deps.nowcasts.mosaic_radar(&site, &frames.nowcast) {
            Ok(s) => {
                sites.insert(radar.id.clone(), s);
            }
            Err(e) => warn!(radar = %radar.id, error = %e, "no mosaic weight for this radar"),
        }
        gifs.insert(frames);
    }
    choose_serving_radars(&mut jobs, &sites);
    choose_serving_radars(&mut sub_jobs, &sites);
    let owner = Claims::process_owner();
    // Claims and posting records live in the one state store; a dry run
    // reads it and keeps its writes in memory.
    let claims = if settings.dry_run {
        Claims::dry_run(deps.state.clone(), owner, settings.lease)
    } else {
        Claims::new(deps.state.clone(), owner, settings.lease)
    };
    let mut notifier = Notifier::new(claims.clone(), publisher(settings)?);
    if let Some(rx) = shutdown.clone() {
        notifier = notifier.with_shutdown(rx);
    }
    // Under `run` (the passes get a cut-off): `now` is the live wall clock,
    // and webhook deliveries have a task of their own.
    let live = not_before.is_some();
    if live {
        notifier = notifier.with_live_clock();
    }
    let mut reports = notifier.run_once(&jobs, &gifs, Utc::now()).await?;
    if settings.dry_run {
        return Ok(reports);
    }
    // Subscriptions: the same evaluation and claims; "posting" queues a
    // delivery, which the deliverer then sends.
    if !subscriptions.is_empty() {
        let kinds = subscriptions
            .iter()
            .zip(&sub_places)
            .map(|(s, p)| (p.slug(), subscription_kinds(s)))
            .collect();
        let hooks =
            WebhookPublisher::new(deps.state.clone(), subscriptions, settings.webhooks.clone());
        let mut notifier = Notifier::new(claims.clone(), hooks).with_kinds(kinds);
        if let Some(rx) = shutdown {
            notifier = notifier.with_shutdown(rx);
        }
        if live {
            notifier = notifier.with_live_clock();
        }
        reports.extend(notifier.run_once(&sub_jobs, &NoGif, Utc::now()).await?);
    }
    // A one-off pass sends the deliveries it queued; under `run` a task of
    // their own does, so a slow receiver never holds up the posts.
    if !live {
        deliver(settings, deps, claims.owner()).await;
    }
    Ok(reports)
}

/// Marks, for each place, the one job that posts: among the radars with data
/// over the place, the one the mosaic weights most at its centre
/// (`raincast_algorithms::mosaic`, `1 / (d² + D₀²)`: the nearest site), ties
/// to the smaller radar id. The map shows that radar's rain there too.
/// Without this a place in an overlap got one alert per radar, each with its
/// radar's own figures. The other radars' jobs still run, to keep their
/// state of the place current: should the serving radar drop out, the next
/// one takes over without announcing again what was announced.
pub(crate) fn choose_serving_radars(jobs: &mut [Job], sites: &HashMap<String, Arc<MosaicRadar>>) {
    let weight = |job: &Job| -> f64 {
        let Some(site) = sites.get(&job.outlook.radar) else {
            return 0.0;
        };
        match site.grid.lonlat_to_rowcol(job.place.lon, job.place.lat) {
            Ok((r, c)) if r.is_finite() && c.is_finite() => site.weight_at(r, c),
            _ => 0.0,
        }
    };
    let mut best: HashMap<String, (f64, String)> = HashMap::new();
    for job in jobs.iter().filter(|j| j.outlook.now.is_some()) {
        let w = weight(job);
        let radar = &job.outlook.radar;
        let better = |(bw, br): &(f64, String)| w > *bw || (w == *bw && radar < br);
        match best.get(&job.place.slug()) {
            Some(b) if !better(b) => {}
            _ => {
                best.insert(job.place.slug(), (w, radar.clone()));
            }
        }
    }
    for job in jobs.iter_mut() {
        job.post = best
            .get(&job.place.slug())
            .is_some_and(|(_, r)| *r == job.outlook.radar);
    }
}

/// Sends the webhook deliveries that are due (first attempts and retries).
async fn deliver(settings: &NotifierSettings, deps: &NotifierDeps, owner: &str) {
    let deliverer = Deliverer::new(deps.state.clone(), settings.webhooks.clone(), owner);
    match deliverer.run_due(Utc::now()).await {
        Ok(reports) => {
            for r in reports {
                debug!(webhook_id = %r.webhook_id, subscription = %r.subscription,
                    attempt = r.attempt, status = ?r.status, http_status = ?r.http_status,
                    "webhook attempt");
            }
        }
        Err(e) => warn!(error = %e, "webhook deliveries failed; next run tries again"),
    }
}

/// The webhook deliveries of [`run`], in a task of their own, looking for
/// due ones every `settings.interval` (as the notifier's loop did, so the
/// store sees no more reads): first attempts once a pass queued them,
/// retries when they fall due. Shutdown ends the attempts in flight at once
/// (each is tried again after its lease, with the same `webhook-id`).
async fn deliveries(
    settings: NotifierSettings,
    deps: NotifierDeps,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = format!("notify-{}", std::process::id());
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = deliver(&settings, &deps, &owner) => {}
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
}

/// The notifier job of `raincast run`: a [`pass`] whenever a radar's
/// cached nowcast is newer than at the last pass, until `shutdown`.
/// Publishing sees the shutdown signal: a stopping process ends between
/// posts (or during a wait), never in the middle of one.
pub async fn run(
    settings: NotifierSettings,
    deps: NotifierDeps,
    mut shutdown: watch::Receiver<bool>,
) {
    let deliveries = (!settings.dry_run)
        .then(|| tokio::spawn(deliveries(settings.clone(), deps.clone(), shutdown.clone())));
    match publisher(&settings) {
        Ok(AnyPublisher::X(x)) => info!(places = settings.places.len(), x = %x.config().base_url,
            "notifier runs after every nowcast, posting to X"),
        Ok(AnyPublisher::Mastodon(m)) => info!(places = settings.places.len(),
            mastodon = %m.config().base_url,
            "notifier runs after every nowcast, posting to Mastodon"),
        Ok(_) => info!(places = settings.places.len(), outbox = %settings.outbox.display(),
            "notifier runs after every nowcast, writing to the outbox"),
        Err(e) => warn!(error = %e,
            "notifier runs after every nowcast; posting credentials unusable"),
    }
    let mut seen: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let current = Utc::now() - settings.max_alert_age;
        let mut fresh = false;
        for r in &deps.radars {
            if let Some(n) = deps
                .nowcasts
                .latest(&r.id)
                .filter(|n| n.base_time >= current)
            {
                if seen.insert(r.id.clone(), n.base_time) != Some(n.base_time) {
                    fresh = true;
                }
            }
        }
        if !fresh {
            continue;
        }
        // Only cached nowcasts: the nowcast job builds them, never the notifier.
        let cached = NotifierDeps {
            radars: deps
                .radars
                .iter()
                .filter(|r| deps.nowcasts.latest(&r.id).is_some())
                .cloned()
                .collect(),
            ..deps.clone()
        };
        match pass(
            &settings,
            &cached,
            Utc::now(),
            Some(current),
            Some(shutdown.clone()),
        )
        .await
        {
            Ok(reports) => {
                for r in &reports {
                    info!(key = %r.key, kind = r.kind.as_str(), place = %r.place,
                        status = ?r.status, gif_bytes = r.gif_bytes, text = %r.text, "notifier event");
                }
            }
            Err(e) => warn!(error = %e, "notifier pass failed"),
        }
    }
    if let Some(d) = deliveries {
        let _ = d.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gif::tests::{field, grid, t0};
    use crate::notify::ReportStatus;
    use crate::EventKind;
    use chrono::Timelike;
    use raincast_algorithms::prep::RainField;
    use raincast_algorithms::sparse::{encode, SparseOptions};
    use raincast_nowcast::NowcastSettings;
    use raincast_store::model::NewScan;
    use raincast_store::{EmbeddedStore, ScanStore};

    /// Stores the synthetic moving cell of [`crate::gif::tests::field`] as
    /// real sparse scans every 5 minutes for minutes `from..=to`.
    async fn fill(store: &EmbeddedStore, from: i64, to: i64) {
        fill_radar(store, "synthetic", from, to).await
    }

    /// [`fill`] for radar `radar`.
    async fn fill_radar(store: &EmbeddedStore, radar: &str, from: i64, to: i64) {
        fill_around(store, radar, t0(), from, to).await
    }

    /// [`fill_radar`] with the minutes counted from `base`.
    async fn fill_around(
        store: &EmbeddedStore,
        radar: &str,
        base: DateTime<Utc>,
        from: i64,
        to: i64,
    ) {
        for m in (from..=to).step_by(5) {
            let time = base + Duration::minutes(m);
            let rf = RainField {
                grid: grid(),
                time,
                rate_mm_h: field(m),
            };
            let enc = encode(&rf, &SparseOptions::default()).expect("encode");
            let scan = NewScan {
                radar: radar.into(),
                time,
                source_key: format!("{radar}/{m}"),
                format: "synthetic".into(),
                header: enc.header,
                rain_cells: rf.rain_cells() as u64,
                tiles: enc.tiles,
            };
            store.put_scan(&scan, time).await.expect("put");
        }
    }

    /// An embedded store in `dir` and the notifier's dependencies on it,
    /// watching the one radar `synthetic`.
    async fn synthetic_deps(dir: &raincast_testkit::TempDir) -> (Arc<EmbeddedStore>, NotifierDeps) {
        let store = Arc::new(
            EmbeddedStore::open(dir.path().join("raincast.redb"), Duration::days(7))
                .await
                .expect("store"),
        );
        let deps = NotifierDeps {
            state: store.clone(),
            nowcasts: NowcastService::new(store.clone(), NowcastSettings::default()),
            radars: vec![RadarRef {
                id: "synthetic".into(),
                name: "Synthetic".into(),
                location: None,
            }],
        };
        (store, deps)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_scans_become_a_nowcast_frames_and_one_post() {
        let dir = raincast_testkit::TempDir::new("notifier-service");
        let (store, deps) = synthetic_deps(&dir).await;
        let now = t0();
        let place = Place::new("Brussels", 50.85, 4.35);
        let settings = NotifierSettings::new(vec![place], dir.path().join("outbox"));
        // Nothing stored: no nowcast, no events.
        assert!(pass(&settings, &deps, now, None, None)
            .await
            .expect("pass")
            .is_empty());

        // Scans from -80 to -10 min: the cell is still 60 km west of the place.
        fill(&store, -80, -10).await;
        let reports = pass(&settings, &deps, now, None, None).await.expect("pass");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].kind, EventKind::RainExpected);
        assert_eq!(reports[0].status, ReportStatus::Posted);
        assert!(reports[0].gif_bytes > 0);
        // The pass built its nowcast through the service, which caches it.
        let n = deps.nowcasts.latest("synthetic").expect("cached nowcast");
        assert_eq!(n.base_time, t0() - Duration::minutes(10));
        // The nowcast moves the cell east: at lead 40 (minute 30) the truth
        // has it 20 km west of the centre, at column 130.
        let f40 = &n.rate_mm_h[n.lead_index(40).expect("lead 40")];
        let peak = f40
            .indexed_iter()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((r, c), _)| (r, c))
            .expect("rain");
        assert!((peak.0 as i64 - 150).abs() <= 6, "{peak:?}");
        assert!((peak.1 as i64 - 130).abs() <= 15, "{peak:?}");
        // The same event is not posted twice.
        let again = pass(&settings, &deps, now, None, None).await.expect("pass");
        assert!(
            again.iter().all(|r| r.status != ReportStatus::Posted),
            "{again:?}"
        );
        // A nowcast issued before `not_before` gives no alerts.
        let fresh_only = pass(&settings, &deps, now, Some(now), None)
            .await
            .expect("pass");
        assert!(fresh_only.is_empty(), "{fresh_only:?}");
    }

    /// Files written to the outbox folder (none when it does not exist).
    fn outbox_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    /// Under [`run`], a nowcast of scans older than `max_alert_age` gives
    /// no alert (a backlog being ingested is history); once a recent scan's
    /// nowcast is cached, the loop posts it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_run_only_nowcasts_of_recent_scans_give_alerts() {
        let dir = raincast_testkit::TempDir::new("notifier-run-recent");
        let (store, deps) = synthetic_deps(&dir).await;
        let nowcasts = deps.nowcasts.clone();
        let outbox = dir.path().join("outbox");
        let mut settings =
            NotifierSettings::new(vec![Place::new("Brussels", 50.85, 4.35)], outbox.clone());
        settings.interval = std::time::Duration::from_millis(50);
        // The whole minute, so that the scans' times are those of a radar.
        let base = Utc::now()
            .with_nanosecond(0)
            .and_then(|t| t.with_second(0))
            .expect("a whole minute");
        // The scans of the test above, 30 min earlier: the cell is 60 km
        // west of the place at the last one, 40 min ago, 10 min before
        // the cut-off.
        fill_around(&store, "synthetic", base - Duration::minutes(30), -50, -10).await;
        let n = nowcasts
            .update("synthetic", Utc::now())
            .await
            .expect("update");
        assert!(n.nowcast().is_some(), "no nowcast from the older scans");
        // Without the cut-off, that nowcast would give an alert (a dry run,
        // its claims in memory, to another folder).
        let mut probe = settings.clone();
        probe.dry_run = true;
        probe.outbox = dir.path().join("probe");
        let would = pass(&probe, &deps, Utc::now(), None, None)
            .await
            .expect("pass");
        assert_eq!(would.len(), 1, "{would:?}");
        assert_eq!(would[0].status, ReportStatus::Posted, "{would:?}");
        let (stop, rx) = watch::channel(false);
        let job = tokio::spawn(run(settings, deps, rx));
        // The loop's first look is at once; a pass it started now would end
        // before it looks at the next nowcast.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        // The scans up to 10 min ago: the loop sees the newer nowcast.
        fill_around(&store, "synthetic", base, -35, -10).await;
        nowcasts
            .update("synthetic", Utc::now())
            .await
            .expect("update");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while outbox_files(&outbox) == 0 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.send(true).expect("stop");
        job.await.expect("run");
        // Every post is of the recent scan (a post of the old one would also
        // have kept the recent one's back, inside the place's cool-down).
        let scans: Vec<String> = std::fs::read_dir(&outbox)
            .expect("outbox")
            .filter_map(|e| {
                let path = e.expect("entry").path();
                let json = path.extension().is_some_and(|x| x == "json");
                json.then(|| std::fs::read(&path).expect("record"))
            })
            .map(|b| {
                let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
                v["scan_time"].as_str().expect("scan_time").to_string()
            })
            .collect();
        let recent = (base - Duration::minutes(10)).to_rfc3339();
        assert!(!scans.is_empty(), "no alert from a recent scan");
        assert!(
            scans.iter().all(|t| *t == recent),
            "{scans:?}, not {recent}"
        );
    }

    /// A dry run writes to the outbox even when the X credentials are set
    /// (here with X's API on a port nobody listens on, so a post to X
    /// could not succeed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_posts_only_to_the_outbox_even_with_x_credentials() {
        let dir = raincast_testkit::TempDir::new("notifier-dry-run");
        let (store, deps) = synthetic_deps(&dir).await;
        fill(&store, -80, -10).await;
        let outbox = dir.path().join("outbox");
        let mut settings =
            NotifierSettings::new(vec![Place::new("Brussels", 50.85, 4.35)], outbox.clone());
        let env: HashMap<String, String> = raincast_config::notifier::X_CREDENTIAL_VARS
            .iter()
            .map(|v| (v.to_string(), "credential".to_string()))
            .collect();
        settings.secrets = Secrets::from_env(&env);
        settings.x_config.base_url = "http://127.0.0.1:9".into();
        settings.x_config.max_attempts = 1;
        assert!(
            matches!(publisher(&settings), Ok(AnyPublisher::X(_))),
            "the credentials make an X account"
        );
        settings.dry_run = true;
        let reports = pass(&settings, &deps, t0(), None, None)
            .await
            .expect("pass");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].status, ReportStatus::Posted, "{reports:?}");
        assert!(outbox_files(&outbox) > 0, "nothing in the outbox");
    }

    /// Two radars see the place with the same rain: one alert, from the
    /// radar whose site is nearer (the one the mosaic weights most there),
    /// and no second one when the other radar later serves it alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_place_seen_by_two_radars_gets_one_alert() {
        let dir = raincast_testkit::TempDir::new("notifier-two-radars");
        let store = Arc::new(
            EmbeddedStore::open(dir.path().join("raincast.redb"), Duration::days(7))
                .await
                .expect("store"),
        );
        fill_radar(&store, "east", -80, -10).await;
        fill_radar(&store, "west", -80, -10).await;
        let place = Place::new("Brussels", 50.85, 4.35);
        let radar = |id: &str, lon: f64| RadarRef {
            id: id.into(),
            name: id.into(),
            location: Some((lon, 50.85)),
        };
        let nowcasts = NowcastService::new(store.clone(), NowcastSettings::default());
        let deps = |radars: Vec<RadarRef>| NotifierDeps {
            state: store.clone(),
            nowcasts: nowcasts.clone(),
            radars,
        };
        let mut settings = NotifierSettings::new(vec![place], dir.path().join("outbox"));
        // A webhook subscription at the same place is served the same way.
        // (Its receiver refuses connections: the delivery stays queued.)
        settings.webhooks.allow_private = true;
        raincast_store::subscriptions::create(
            store.as_ref(),
            "key1",
            raincast_store::subscriptions::NewSubscription {
                name: "Office".into(),
                lat: 50.85,
                lon: 4.35,
                radius_km: 10.0,
                url: "http://127.0.0.1:9/hook".into(),
                events: vec!["rain_expected".into(), "rain_started".into()],
            },
            10,
            t0(),
        )
        .await
        .expect("subscribe");
        // "west" stands 0.3° from the place, "east" 0.6°: west serves it.
        let both = deps(vec![radar("east", 4.95), radar("west", 4.05)]);
        let reports = pass(&settings, &both, t0(), None, None)
            .await
            .expect("pass");
        for place in ["Brussels", "Office"] {
            let posted: Vec<_> = reports
                .iter()
                .filter(|r| r.status == ReportStatus::Posted && r.place == place)
                .collect();
            assert_eq!(posted.len(), 1, "{place}: {reports:?}");
            assert_eq!(posted[0].kind, EventKind::RainExpected);
            assert_eq!(posted[0].radar, "west");
        }
        // West drops out; east, whose state followed the place all along,
        // takes over without announcing the same rain again.
        fill_radar(&store, "east", -5, -5).await;
        let east_only = deps(vec![radar("east", 4.95)]);
        let later = pass(
            &settings,
            &east_only,
            t0() + Duration::minutes(5),
            None,
            None,
        )
        .await
        .expect("pass");
        assert!(
            later.iter().all(|r| r.status != ReportStatus::Posted),
            "{later:?}"
        );
    }
}
