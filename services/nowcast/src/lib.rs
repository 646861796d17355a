//! The nowcast service: builds nowcasts from the sparse scans in the store,
//! stores their frames, and keeps the latest one per radar in memory.
//!
//! * [`NowcastService::update`] reads the newest scans of a radar through
//!   the [`ScanStore`], runs the nowcast (`raincast_algorithms::nowcast`:
//!   motion, S-PROG-like extrapolation, probability), stores every forecast
//!   frame as a sparse array, and caches the result. When another instance
//!   has already stored the frames for the newest scan, they are loaded
//!   instead of recomputed.
//! * [`NowcastService::latest`] returns the cached nowcast instantly;
//!   [`NowcastService::ensure`] also refreshes it when the store holds a
//!   newer scan (checked at most every few seconds).
//! * [`LatestNowcast::point`] gives the forecast at a lon/lat: rate and
//!   probability per lead plus a one-line summary.
//! * Live skill ([`skill`]): a service made with
//!   [`NowcastService::with_live_skill`] scores, at every update to a new
//!   scan, the earlier nowcasts valid at that scan and persistence, once per
//!   scan across instances, into running sums in the state store;
//!   [`NowcastService::skill`] reads them over 24 h or 7 d.
//! * [`NowcastService::past_scans`] and [`NowcastService::observed_fields`]
//!   are the one frames builder: the observed scans before a nowcast, spaced
//!   at its lead step, that precede its forecast frames in the API's
//!   animation and in the notifier's GIF.
//! * [`NowcastService::mosaic`] places every radar's latest scans and
//!   nowcast frames (from the same cache and frames builder) on one time
//!   line: the mosaic behind the map tiles and `/v1/forecast` in overlaps
//!   ([`mosaic`]).
//!
//! # Stored frames
//! The frame of lead `L` minutes of the nowcast based on the scan at `B` is
//! stored as a scan of the pseudo-radar `{radar}.nowcast.{L:03}` at time `B`
//! (source key `nowcast:{radar}:{B}+{L}`, format `nowcast`); its sparse
//! header carries the grid and the valid time `B + L`. Rates are mm/h, NaN
//! where the forecast is unknown. Readers list a radar's stored nowcasts
//! with the ordinary scan listing of a lead's pseudo-radar.

use chrono::{DateTime, Duration, Utc};
use ndarray::Array2;
use raincast_algorithms::nowcast::{self, neighbourhood_probability, summary_text, NowcastError};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::sparse::{self, SparseOptions};
use raincast_algorithms::verify;
use raincast_algorithms::Grid;
use raincast_store::{NewScan, ScanManifest, ScanStore, StateStore, StoreError};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use raincast_config::nowcast::NowcastSettings;

/// Why a nowcast could not be built or loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NowcastServiceError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("scan {radar} at {time}: {reason}")]
    BadScan {
        radar: String,
        time: DateTime<Utc>,
        reason: String,
    },
    #[error("nowcast of {radar}: {source}")]
    Nowcast {
        radar: String,
        #[source]
        source: NowcastError,
    },
    #[error("nowcast task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Skill(#[from] skill::SkillError),
}

impl NowcastServiceError {
    /// Whether trying again later can succeed: a store that failed (a full
    /// disk, a lost connection, a write that lost a race), a task that
    /// died, records still changing. A stored scan that does not decode,
    /// a record that does not parse, or scans that cannot be nowcast
    /// together fail the same way every time.
    fn is_transient(&self) -> bool {
        // The store's own `is_transient` (unavailable only) is ingest's
        // retry-at-once rule; a failed I/O call (`Backend`: a full disk) can
        // also succeed at a later update.
        let store = |e: &StoreError| {
            e.is_transient()
                || matches!(e, StoreError::Backend { .. } | StoreError::Conflict { .. })
        };
        match self {
            Self::Store(e) | Self::Skill(skill::SkillError::Store(e)) => store(e),
            Self::Task(_) | Self::Skill(skill::SkillError::Contended { .. }) => true,
            Self::Skill(_) | Self::BadScan { .. } | Self::Nowcast { .. } => false,
        }
    }
}

pub mod mosaic;
pub mod skill;

/// Where a cached nowcast came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    /// Computed by this process.
    Computed { motion_and_forecast_ms: f64 },
    /// Loaded from frames another instance stored.
    Stored,
}

/// The newest nowcast of a radar, with everything the API and the notifier need.
#[derive(Debug, Clone)]
pub struct LatestNowcast {
    pub radar: String,
    /// Grid of every field.
    pub grid: Grid,
    /// Time of the newest scan used (the issue time).
    pub base_time: DateTime<Utc>,
    /// Interval between the input scans, seconds.
    pub step_s: i64,
    /// Scan times used, oldest first.
    pub inputs: Vec<DateTime<Utc>>,
    /// Leads, minutes after `base_time`.
    pub leads_min: Vec<u32>,
    /// Forecast rate per lead, mm/h, `(rows, cols)`, row 0 north, NaN unknown.
    pub rate_mm_h: Vec<Array2<f32>>,
    /// Probability of rain ≥ `threshold_mm_h` per lead (0..1, NaN unknown).
    pub probability: Vec<Array2<f32>>,
    /// Threshold of `probability`, mm/h.
    pub threshold_mm_h: f32,
    /// Per lead: whether `probability` is calibrated from the live
    /// reliability of that lead (see [`skill`]) or raw (empty = all raw).
    pub probability_calibrated: Vec<bool>,
    /// The newest observed field, mm/h (the "now").
    pub observed_mm_h: Array2<f32>,
    /// The observed fields of the other `inputs`, mm/h, oldest first (so
    /// `inputs[i]` for `i < inputs.len() - 1`): the frames builder shows them
    /// without decoding their scans again.
    pub earlier_inputs_mm_h: Vec<Array2<f32>>,
    /// When this process built or loaded it.
    pub created_at: DateTime<Utc>,
    pub origin: Origin,
}

/// One step of a point forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct PointStep {
    pub lead_min: u32,
    pub time: DateTime<Utc>,
    /// Forecast rate, mm/h (NaN = unknown).
    pub rate_mm_h: f32,
    /// Probability of rain ≥ the threshold (NaN = unknown).
    pub probability: f32,
}

/// The forecast at one place.
#[derive(Debug, Clone, PartialEq)]
pub struct PointForecast {
    /// Grid cell of the place.
    pub row: usize,
    pub col: usize,
    /// Observed rate at the base time, mm/h (NaN = no data).
    pub now_mm_h: f32,
    pub steps: Vec<PointStep>,
    /// One line such as "Light rain starting in about 15 min, easing after 40 min".
    pub summary: String,
}

impl LatestNowcast {
    /// Valid time of lead `i`.
    pub fn valid_time(&self, i: usize) -> DateTime<Utc> {
        self.base_time + Duration::minutes(self.leads_min.get(i).copied().unwrap_or(0) as i64)
    }

    /// The observed field at an input time (mm/h), held since the nowcast
    /// was built; `None` for any other time.
    pub fn input_field(&self, time: DateTime<Utc>) -> Option<&Array2<f32>> {
        if time == self.base_time {
            return Some(&self.observed_mm_h);
        }
        let i = self.inputs.iter().position(|t| *t == time)?;
        self.earlier_inputs_mm_h.get(i)
    }

    /// Whether the probability of lead `i` is calibrated (else raw).
    pub fn is_calibrated(&self, i: usize) -> bool {
        self.probability_calibrated.get(i).copied().unwrap_or(false)
    }

    /// Index of a lead, if the nowcast has it.
    pub fn lead_index(&self, lead_min: u32) -> Option<usize> {
        self.leads_min.iter().position(|l| *l == lead_min)
    }

    /// The grid cell at a lon/lat when it lies in the grid and something
    /// is known there: the newest scan has data, or a lead does (rain
    /// advected out of the radar's view, which the frames, tiles and GIS
    /// exports show too).
    pub fn covered_cell(&self, lon: f64, lat: f64) -> Option<(usize, usize)> {
        let (r, c) = self.grid.cell_at_lonlat(lon, lat)?;
        let known = self.observed_mm_h[[r, c]].is_finite()
            || self.rate_mm_h.iter().any(|f| f[[r, c]].is_finite());
        known.then_some((r, c))
    }

    /// The forecast at a lon/lat; `None` where nothing is known
    /// ([`Self::covered_cell`]). `now_mm_h` is NaN where only leads are.
    pub fn point(&self, lon: f64, lat: f64) -> Option<PointForecast> {
        let (row, col) = self.covered_cell(lon, lat)?;
        let steps: Vec<PointStep> = (0..self.leads_min.len())
            .map(|i| PointStep {
                lead_min: self.leads_min[i],
                time: self.valid_time(i),
                rate_mm_h: self.rate_mm_h[i][[row, col]],
                probability: self.probability[i][[row, col]],
            })
            .collect();
        let now = self.observed_mm_h[[row, col]];
        let rates: Vec<f32> = steps.iter().map(|s| s.rate_mm_h).collect();
        let probs: Vec<f32> = steps.iter().map(|s| s.probability).collect();
        let summary = summary_text(now, &self.leads_min, &rates, &probs);
        Some(PointForecast {
            row,
            col,
            now_mm_h: now,
            steps,
            summary,
        })
    }
}

/// What [`NowcastService::update`] did.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    /// The cached nowcast is based on the newest scan already.
    Unchanged(Arc<LatestNowcast>),
    /// A new nowcast was computed (and its frames stored when configured).
    Built(Arc<LatestNowcast>),
    /// Frames stored by another instance were loaded.
    Loaded(Arc<LatestNowcast>),
    /// Fewer equally spaced scans on the newest scan's grid than a nowcast
    /// needs (too few scans yet, or a gap of more than 30 minutes or a
    /// change of grid not yet followed by enough scans).
    NotEnoughScans { have: usize, need: usize },
}

impl UpdateOutcome {
    /// The current nowcast, if there is one.
    pub fn nowcast(&self) -> Option<&Arc<LatestNowcast>> {
        match self {
            UpdateOutcome::Unchanged(n) | UpdateOutcome::Built(n) | UpdateOutcome::Loaded(n) => {
                Some(n)
            }
            UpdateOutcome::NotEnoughScans { .. } => None,
        }
    }
}

/// The scans a nowcast uses and its leads ([`NowcastService::pick`]).
struct Pick {
    /// Scan times, oldest first, equally spaced; the last is the issue time.
    used: Vec<DateTime<Utc>>,
    /// Their interval, seconds.
    step_s: i64,
    leads: Vec<u32>,
}

impl Pick {
    /// The stored scans to load.
    fn inputs(&self, radar: &str) -> Vec<(String, DateTime<Utc>)> {
        self.used.iter().map(|t| (radar.to_string(), *t)).collect()
    }
}

/// Builds, stores and caches nowcasts. Cheap to clone (shared state).
#[derive(Clone)]
pub struct NowcastService {
    inner: Arc<Inner>,
}

/// Observed fields (mm/h) kept by scan time, for persistence.
type ObservedRing = BTreeMap<DateTime<Utc>, Arc<Array2<f32>>>;

/// Drops the oldest fields of `ring` until the rest hold at most `budget`
/// bytes of `f32` cells (the newest that fit, newest first; none when the
/// newest alone is larger).
fn keep_newest_within(ring: &mut ObservedRing, budget: u64) {
    let mut held = 0u64;
    let mut keep_from = None;
    for (time, f) in ring.iter().rev() {
        held = held.saturating_add((f.len() * std::mem::size_of::<f32>()) as u64);
        if held > budget {
            break;
        }
        keep_from = Some(*time);
    }
    match keep_from {
        Some(from) => ring.retain(|time, _| *time >= from),
        None => ring.clear(),
    }
}

struct Inner {
    store: Arc<dyn ScanStore>,
    /// Where live skill is claimed and summed; `None`: no live skill.
    skill_state: Option<Arc<dyn StateStore>>,
    settings: NowcastSettings,
    /// The threads that build the leads (`settings.threads`); `None`:
    /// rayon's global pool.
    pool: Option<rayon::ThreadPool>,
    cache: RwLock<HashMap<String, Arc<LatestNowcast>>>,
    /// One build at a time per radar.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Unix seconds of the last freshness check per radar.
    checked: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// Newest scan time seen in the store per radar.
    seen: RwLock<HashMap<String, DateTime<Utc>>>,
    /// The 24 h live skill per radar, read after each scoring.
    recent_skill: RwLock<HashMap<String, Arc<skill::SkillReport>>>,
    /// Per radar, the observed fields of the last `max_lead_min` minutes
    /// that the service updated to (at most one per lead step), by time:
    /// persistence for the scans to come, without decoding them again.
    observed: Mutex<HashMap<String, ObservedRing>>,
    /// Scoring tasks spawned by `update` and maybe still running.
    scoring: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Per radar, the end of its latest scoring task (its sender dropped):
    /// the next one waits for it, so a radar's scans are scored in order.
    scoring_chain: Mutex<HashMap<String, tokio::sync::oneshot::Receiver<()>>>,
    /// Per radar, what the catch-ups of this process went through.
    caught_up: Mutex<HashMap<String, CaughtUp>>,
    /// The latest mosaic and the radars' mosaic geometry.
    mosaic: Mutex<mosaic::MosaicCache>,
    /// One mosaic build at a time.
    mosaic_build: Arc<tokio::sync::Mutex<()>>,
}

impl Inner {
    /// Runs `f` on the nowcast's threads (`settings.threads`), else on
    /// rayon's global pool; its parallel iterators use those threads.
    fn on_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

impl std::fmt::Debug for NowcastService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NowcastService")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pseudo-radar id of a lead's stored frames.
pub fn frame_series_id(radar: &str, lead_min: u32) -> String {
    format!("{radar}.nowcast.{lead_min:03}")
}

impl NowcastService {
    pub fn new(store: Arc<dyn ScanStore>, settings: NowcastSettings) -> Self {
        Self::with_skill_state(store, None, settings)
    }

    /// A service that also scores its earlier nowcasts against every new
    /// scan it updates to, keeping the sums in `state` (see [`skill`]).
    pub fn with_live_skill(
        store: Arc<dyn ScanStore>,
        state: Arc<dyn StateStore>,
        settings: NowcastSettings,
    ) -> Self {
        Self::with_skill_state(store, Some(state), settings)
    }

    fn with_skill_state(
        store: Arc<dyn ScanStore>,
        skill_state: Option<Arc<dyn StateStore>>,
        settings: NowcastSettings,
    ) -> Self {
        let pool = (settings.threads > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(settings.threads)
                    .thread_name(|i| format!("nowcast-{i}"))
                    .build()
                    .map_err(|e| {
                        tracing::warn!(threads = settings.threads, error = %e,
                            "cannot start the nowcast threads; using the shared pool")
                    })
                    .ok()
            })
            .flatten();
        Self {
            inner: Arc::new(Inner {
                store,
                skill_state,
                settings,
                pool,
                cache: RwLock::new(HashMap::new()),
                building: Mutex::new(HashMap::new()),
                checked: Mutex::new(HashMap::new()),
                seen: RwLock::new(HashMap::new()),
                recent_skill: RwLock::new(HashMap::new()),
                observed: Mutex::new(HashMap::new()),
                scoring: Mutex::new(Vec::new()),
                scoring_chain: Mutex::new(HashMap::new()),
                caught_up: Mutex::new(HashMap::new()),
                mosaic: Mutex::new(Default::default()),
                mosaic_build: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    pub fn settings(&self) -> &NowcastSettings {
        &self.inner.settings
    }

    /// The cached nowcast of a radar (no I/O).
    pub fn latest(&self, radar: &str) -> Option<Arc<LatestNowcast>> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(radar)
            .cloned()
    }

    /// The newest scan time this service has seen in the store for a radar
    /// (no I/O; updated by every [`NowcastService::update`]).
    pub fn latest_scan_seen(&self, radar: &str) -> Option<DateTime<Utc>> {
        self.inner
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(radar)
            .copied()
    }

    /// The cached nowcast, refreshed first when there is none; when there is
    /// one, a newer scan in the store (looked for at most every
    /// `recheck_s` seconds) triggers a refresh in the background.
    pub async fn ensure(
        &self,
        radar: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<LatestNowcast>>, NowcastServiceError> {
        let Some(cached) = self.latest(radar) else {
            return Ok(self.update(radar, now).await?.nowcast().cloned());
        };
        let stamp = {
            let mut m = lock(&self.inner.checked);
            m.entry(radar.to_string())
                .or_insert_with(|| Arc::new(AtomicI64::new(0)))
                .clone()
        };
        let last = stamp.load(Ordering::Relaxed);
        if now.timestamp() - last >= self.inner.settings.recheck_s
            && stamp
                .compare_exchange(last, now.timestamp(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let this = self.clone();
            let radar = radar.to_string();
            tokio::spawn(async move {
                if let Err(e) = this.update(&radar, now).await {
                    tracing::warn!(%radar, error = %e, "background nowcast refresh failed");
                }
            });
        }
        Ok(Some(cached))
    }

    fn radar_lock(&self, radar: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.building)
            .entry(radar.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    /// Brings the radar's nowcast up to date with its newest stored scan.
    /// With live skill, the earlier scans not scored yet (up to
    /// `catch_up_min` back) get their nowcasts afterwards, in the
    /// background ([`Self::spawn_scoring`]).
    pub async fn update(
        &self,
        radar: &str,
        now: DateTime<Utc>,
    ) -> Result<UpdateOutcome, NowcastServiceError> {
        let guard = self.radar_lock(radar);
        let _held = guard.lock().await;
        let store = self.inner.store.as_ref();
        let need = self.inner.settings.config.frames.max(nowcast::MIN_FRAMES);
        let Some(latest) = store.latest(radar, now).await? else {
            return Ok(UpdateOutcome::NotEnoughScans { have: 0, need });
        };
        // The first look at this newest scan (later refreshes repeat it).
        let first_look = self
            .inner
            .seen
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(radar.to_string(), latest.time)
            != Some(latest.time);
        if let Some(c) = self.latest(radar) {
            if c.base_time >= latest.time {
                return Ok(UpdateOutcome::Unchanged(c));
            }
        }
        let pick = match self.pick(radar, latest.time, now, first_look).await? {
            Ok(pick) => pick,
            Err(waiting) => return Ok(waiting),
        };
        let fields = self.load_fields(pick.inputs(radar), now).await?;
        let started = std::time::Instant::now();
        self.read_recent_skill_once(radar).await;
        let cals = self.calibrations(radar, &pick.leads);
        if let Some(mut n) = self
            .load_stored(radar, &fields, pick.step_s, &pick.leads, now)
            .await?
        {
            if cals.iter().any(Option::is_some) {
                n = tokio::task::spawn_blocking(move || {
                    calibrate(&mut n, &cals);
                    n
                })
                .await
                .map_err(|e| NowcastServiceError::Task(e.to_string()))?;
            }
            let n = Arc::new(n);
            self.cache_it(radar, n.clone());
            self.spawn_scoring(&n, started.elapsed().as_secs_f64() * 1000.0, now);
            return Ok(UpdateOutcome::Loaded(n));
        }
        let built = self
            .build_off_async(radar, fields, pick.leads, true, now)
            .await?;
        // Frames are stored raw (the scorer's input); the cached probability
        // is calibrated where the live record allows.
        let built = if cals.iter().any(Option::is_some) {
            tokio::task::spawn_blocking(move || {
                let mut b = built;
                calibrate(&mut b, &cals);
                b
            })
            .await
            .map_err(|e| NowcastServiceError::Task(e.to_string()))?
        } else {
            built
        };
        let n = Arc::new(built);
        if self.inner.settings.store_frames {
            self.store_frames(&n, now).await?;
        }
        self.cache_it(radar, n.clone());
        tracing::info!(
            radar,
            base_time = %n.base_time,
            leads = n.leads_min.len(),
            ms = match n.origin { Origin::Computed { motion_and_forecast_ms } => motion_and_forecast_ms, Origin::Stored => 0.0 },
            "nowcast built"
        );
        self.spawn_scoring(&n, started.elapsed().as_secs_f64() * 1000.0, now);
        Ok(UpdateOutcome::Built(n))
    }

    /// The scans a nowcast issued at the scan `at` uses, and its leads:
    /// equally spaced scans on `at`'s grid ending with it (a missing scan
    /// widens the interval, `nowcast::equally_spaced`), no older than the
    /// algorithm can track. `Err` holds the outcome to report when there
    /// are not enough (too few scans, or none equally spaced within 30
    /// minutes of each other, after an outage: wait for scans without
    /// loading any or failing on every refresh); with `warn`, enough recent
    /// scans none equally spaced are logged.
    async fn pick(
        &self,
        radar: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        warn: bool,
    ) -> Result<Result<Pick, UpdateOutcome>, NowcastServiceError> {
        let need = self.inner.settings.config.frames.max(nowcast::MIN_FRAMES);
        let from = at - Duration::seconds(nowcast::MAX_STEP_S * need as i64);
        let manifests = self.inner.store.list_scans(radar, from, at, now).await?;
        // Only scans on the newest scan's grid (a radar whose grid changed
        // waits for scans on the new one instead of failing every refresh).
        let grid_of = |m: &ScanManifest| sparse::header_info(&m.header).ok().map(|h| h.grid);
        let newest_grid = manifests.last().and_then(grid_of);
        let manifests: Vec<&ScanManifest> = manifests
            .iter()
            .filter(|m| match (&newest_grid, grid_of(m)) {
                (Some(g), Some(h)) => g.same_geometry(&h),
                _ => true, // unreadable: the load names the problem
            })
            .collect();
        let times: Vec<DateTime<Utc>> = manifests.iter().map(|m| m.time).collect();
        let tolerance = self.inner.settings.config.step_tolerance;
        let picked = match times.len().checked_sub(1) {
            Some(newest) => nowcast::equally_spaced(&times, newest, need, tolerance),
            None => None,
        };
        let Some(picked) = picked else {
            let recent: Vec<DateTime<Utc>> = match times.last() {
                Some(t) => times
                    .iter()
                    .filter(|u| (*t - **u).num_seconds() <= nowcast::MAX_STEP_S)
                    .copied()
                    .collect(),
                None => Vec::new(),
            };
            if warn && recent.len() >= need {
                // Enough recent scans, but not equally spaced: said once per
                // newest scan, with their times.
                tracing::warn!(%radar, times = ?recent, need,
                    "no equally spaced scans to nowcast from; waiting for more");
            }
            let have = recent.len().min(need - 1);
            return Ok(Err(UpdateOutcome::NotEnoughScans { have, need }));
        };
        let used: Vec<DateTime<Utc>> = picked.iter().map(|i| times[*i]).collect();
        let step_s = (used[used.len() - 1] - used[used.len() - 2]).num_seconds();
        // Leads follow the radar's cadence, not a gap's wider interval: the
        // same leads (and lead series) every cycle.
        let leads = self.leads(nowcast::modal_step(&times).unwrap_or(step_s));
        Ok(Ok(Pick {
            used,
            step_s,
            leads,
        }))
    }

    /// Builds a nowcast on the nowcast's threads, off the async workers
    /// (with its probability fields, or without: a catch-up nowcast is
    /// stored and scored, never served).
    async fn build_off_async(
        &self,
        radar: &str,
        fields: Vec<RainField>,
        leads: Vec<u32>,
        probability: bool,
        now: DateTime<Utc>,
    ) -> Result<LatestNowcast, NowcastServiceError> {
        let radar = radar.to_string();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.on_pool(|| build(&radar, fields, &leads, &inner.settings, probability, now))
        })
        .await
        .map_err(|e| NowcastServiceError::Task(e.to_string()))?
    }

    /// After `n` is published: spawns a background task that first catches
    /// up on the scans before `n`'s not scored yet ([`Self::catch_up`]),
    /// then keeps `n`'s observed field for
    /// the scans to come and scores `n`'s scan ([`Self::score_scan`]), so
    /// scoring never delays a nowcast. A radar's tasks run one after
    /// another, in the order of the updates: a scan is scored after the
    /// nowcasts before it are stored. The task logs how long the scoring
    /// took next to `build_ms`, the time taken to build (or load) `n`;
    /// failures are logged and never fail an update.
    fn spawn_scoring(&self, n: &Arc<LatestNowcast>, build_ms: f64, now: DateTime<Utc>) {
        if self.inner.skill_state.is_none() {
            return;
        }
        // The previous task's end for this radar (its sender dropped), and
        // this task's, for the next one.
        let (done, next) = tokio::sync::oneshot::channel::<()>();
        let after = lock(&self.inner.scoring_chain).insert(n.radar.clone(), next);
        let this = self.clone();
        let n = n.clone();
        let task = tokio::spawn(async move {
            if let Some(after) = after {
                let _ = after.await;
            }
            let _done = done;
            this.catch_up(&n, now).await;
            this.keep_observed(&n);
            this.score_and_log(&n, build_ms, now).await;
            // Whoever scored it, the 24 h sums may have changed.
            this.read_recent_skill(&n.radar).await;
        });
        let mut tasks = lock(&self.inner.scoring);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// [`Self::score_scan`], logged. True when it failed in a way a later
    /// try can mend ([`NowcastServiceError::is_transient`]; the claim is
    /// the first write, so a store that fails leaves the scan unclaimed for
    /// a later catch-up).
    async fn score_and_log(
        &self,
        n: &Arc<LatestNowcast>,
        build_ms: f64,
        now: DateTime<Utc>,
    ) -> bool {
        let started = std::time::Instant::now();
        let scored = self.score_scan(n, now).await;
        let score_ms = started.elapsed().as_secs_f64() * 1000.0;
        match scored {
            Ok(Some(leads)) => {
                tracing::info!(radar = %n.radar, scan_time = %n.base_time, leads, score_ms, build_ms, "live skill scored");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(radar = %n.radar, error = %e, "live skill not scored");
                return e.is_transient();
            }
        }
        false
    }

    /// The scans before `n`'s not scored yet (a backfill at start, a burst
    /// after an outage, a replayed day, a scan that arrived late), each
    /// nowcast, its frames stored, and scored, oldest first: without them
    /// `n`'s scan and the ones after it would find no nowcast to score for
    /// the leads that fall on them. Which scans: from `catch_up_since` if
    /// set, else at most `catch_up_min` before `n`'s scan, at most one per
    /// lead step counted back from `n`'s scan (the issue times a later
    /// scan's scores look for), whose scoring nobody has claimed. A scan
    /// whose frames are stored already (another instance, an earlier run)
    /// is not nowcast again. Never served: the map and the alerts keep `n`.
    async fn catch_up(&self, n: &Arc<LatestNowcast>, now: DateTime<Utc>) {
        let settings = &self.inner.settings;
        let Some(state) = self.inner.skill_state.clone() else {
            return;
        };
        if settings.catch_up_min == 0 || !settings.store_frames {
            return;
        }
        let window = n.base_time - Duration::minutes(settings.catch_up_min as i64);
        // From `catch_up_since` on, but not again over what an earlier
        // catch-up of this process went through (a service left running
        // after a replay would otherwise list the whole replay at every
        // update), except for the last `catch_up_min` (late scans).
        let (done, seen) = match lock(&self.inner.caught_up).get(&n.radar) {
            Some(c) => (Some(c.until), c.seen.clone()),
            None => (None, BTreeSet::new()),
        };
        let from = match (settings.catch_up_since, done) {
            (Some(since), Some(done)) => since.max(done.min(window)),
            (Some(since), None) => since,
            (None, _) => window,
        };
        if from >= n.base_time {
            return;
        }
        let listed = match self
            .inner
            .store
            .list_scans(&n.radar, from, n.base_time, now)
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(radar = %n.radar, error = %e, "cannot list the scans to catch up on");
                return;
            }
        };
        // Only scans no earlier catch-up of this process listed (late ones,
        // a burst after it): the scans it listed and left out were left out
        // by the lead step's spacing, and looking at them again from a
        // newer scan's phase of the step nowcast the whole window again at
        // every update of a radar scanning faster than the step (the
        // demo's, every 10 s with 5-min leads: 23 catch-up nowcasts per
        // scan for its first 5 minutes; found by an outside audit in
        // session 41).
        let listed_times: Vec<DateTime<Utc>> = listed.iter().map(|m| m.time).collect();
        let listed: Vec<ScanManifest> = listed
            .into_iter()
            .filter(|m| !seen.contains(&m.time))
            .collect();
        // One per lead step counted back from `n`'s scan (listed last),
        // which is scored after the catch-up.
        let step_s = n.leads_min.first().copied().unwrap_or(1).max(1) as i64 * 60;
        let times: Vec<DateTime<Utc>> = spaced_by(listed, step_s)
            .into_iter()
            .map(|m| m.time)
            .filter(|t| *t < n.base_time)
            .collect();
        let claimed = all_at_once(times.clone(), |t| {
            let state = state.clone();
            let radar = n.radar.clone();
            async move { Ok(skill::claimed(state.as_ref(), &radar, t).await?) }
        })
        .await;
        let times: Vec<DateTime<Utc>> = match claimed {
            Ok(claimed) => times
                .into_iter()
                .zip(claimed)
                .filter(|(_, c)| !c)
                .map(|(t, _)| t)
                .collect(),
            Err(e) => {
                tracing::warn!(radar = %n.radar, error = %e, "cannot read which scans are scored");
                return;
            }
        };
        // The next catch-up starts at the first scan this one failed on in
        // a way a later try can mend (a store error: a full disk, a lost
        // connection), else after it: a scan that fails the same way every
        // time (it does not decode) does not hold every later catch-up back.
        // The scans listed are seen (those within `catch_up_min` of `n`'s,
        // which later listings cover), except from the first failure on.
        let caught_up = |this: &Self, failed: Option<DateTime<Utc>>| {
            let until = failed.unwrap_or(n.base_time);
            let seen = listed_times
                .iter()
                .copied()
                .filter(|t| *t >= window && failed.is_none_or(|f| *t < f))
                .collect();
            lock(&this.inner.caught_up).insert(n.radar.clone(), CaughtUp { until, seen });
        };
        if times.is_empty() {
            caught_up(self, None);
            return;
        }
        let mut failed = None;
        tracing::info!(radar = %n.radar, scans = times.len(), from = %times[0], until = %n.base_time,
            "catching up: nowcasting and scoring the scans before the newest, oldest first");
        for (i, t) in times.iter().enumerate() {
            let started = std::time::Instant::now();
            match self.catch_up_one(&n.radar, *t, &n.leads_min, now).await {
                Ok(Some(m)) => {
                    self.keep_observed(&m);
                    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
                    if self.score_and_log(&m, build_ms, now).await {
                        failed = failed.or(Some(*t));
                    }
                    tracing::debug!(radar = %n.radar, scan_time = %t, "caught up [{}/{}]", i + 1, times.len());
                }
                Ok(None) => {
                    tracing::debug!(radar = %n.radar, scan_time = %t, "catch-up: too few scans before this one to nowcast it")
                }
                Err(e) => {
                    tracing::warn!(radar = %n.radar, scan_time = %t, error = %e, "catch-up: scan not nowcast; going on");
                    if e.is_transient() {
                        failed = failed.or(Some(*t));
                    }
                }
            }
        }
        caught_up(self, failed);
    }

    /// The nowcast issued at the scan `t` for [`Self::catch_up`], its
    /// frames stored; `None` when it cannot be made (too few scans before
    /// `t`). When its frames are stored already, only `t`'s observed field
    /// is loaded (what scoring needs).
    async fn catch_up_one(
        &self,
        radar: &str,
        t: DateTime<Utc>,
        leads: &[u32],
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<LatestNowcast>>, NowcastServiceError> {
        if self.frames_stored(radar, t, leads, now).await? {
            let Some(f) = self
                .load_fields(vec![(radar.to_string(), t)], now)
                .await?
                .pop()
            else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(LatestNowcast {
                radar: radar.to_string(),
                grid: f.grid,
                base_time: t,
                step_s: 0,
                inputs: vec![t],
                leads_min: leads.to_vec(),
                rate_mm_h: Vec::new(),
                probability: Vec::new(),
                threshold_mm_h: self.inner.settings.probability_threshold_mm_h,
                probability_calibrated: Vec::new(),
                observed_mm_h: f.rate_mm_h,
                earlier_inputs_mm_h: Vec::new(),
                created_at: now,
                origin: Origin::Stored,
            })));
        }
        let pick = match self.pick(radar, t, now, false).await? {
            Ok(pick) => pick,
            Err(_) => return Ok(None),
        };
        let fields = self.load_fields(pick.inputs(radar), now).await?;
        let n = Arc::new(
            self.build_off_async(radar, fields, pick.leads, false, now)
                .await?,
        );
        self.store_frames(&n, now).await?;
        Ok(Some(n))
    }

    /// Whether every lead's frame of the nowcast issued at `t` is stored.
    async fn frames_stored(
        &self,
        radar: &str,
        t: DateTime<Utc>,
        leads: &[u32],
        now: DateTime<Utc>,
    ) -> Result<bool, NowcastServiceError> {
        let found = all_at_once(leads.to_vec(), |lead| {
            let store = self.inner.store.clone();
            let series = frame_series_id(radar, lead);
            async move { Ok(store.get_manifest(&series, t, now).await?.is_some()) }
        })
        .await?;
        Ok(found.iter().all(|f| *f))
    }

    /// Waits until every scoring task spawned so far has finished (tests,
    /// and a clean shutdown).
    pub async fn scoring_settled(&self) {
        loop {
            let tasks: Vec<_> = lock(&self.inner.scoring).drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    /// Keeps `n`'s observed field as persistence for later scans: at most
    /// one per lead step, none older than the longest lead, and no more
    /// than `persistence_cache_mb` per radar (the newest that fit; a scan
    /// scored against an older one reads it from the store again).
    fn keep_observed(&self, n: &LatestNowcast) {
        let step = n.leads_min.first().copied().unwrap_or(1).max(1) as i64;
        let max = n.leads_min.last().copied().unwrap_or(0) as i64;
        let budget = self
            .inner
            .settings
            .persistence_cache_mb
            .saturating_mul(1 << 20);
        // A field larger than the cap is not copied only to be dropped.
        let fits = (n.observed_mm_h.len() * std::mem::size_of::<f32>()) as u64 <= budget;
        let mut all = lock(&self.inner.observed);
        let ring = all.entry(n.radar.clone()).or_default();
        let t = n.base_time;
        let spaced = ring
            .range(
                t - Duration::minutes(step) + Duration::seconds(1)
                    ..=t + Duration::minutes(step) - Duration::seconds(1),
            )
            .next()
            .is_none();
        if spaced && fits {
            ring.insert(t, Arc::new(n.observed_mm_h.clone()));
        }
        let oldest = t - Duration::minutes(max);
        ring.retain(|time, _| *time >= oldest);
        keep_newest_within(ring, budget);
    }

    /// Bytes of the observed fields held for `radar`'s live skill
    /// (see [`Self::keep_observed`]).
    pub fn held_observed_bytes(&self, radar: &str) -> u64 {
        lock(&self.inner.observed).get(radar).map_or(0, |ring| {
            ring.values()
                .map(|f| (f.len() * std::mem::size_of::<f32>()) as u64)
                .sum()
        })
    }

    /// The observed field at `time` when held in memory: an input of `n`
    /// or a field kept by [`Self::keep_observed`].
    fn observed_at(&self, n: &LatestNowcast, time: DateTime<Utc>) -> Option<Arc<Array2<f32>>> {
        if let Some(f) = lock(&self.inner.observed)
            .get(&n.radar)
            .and_then(|r| r.get(&time))
        {
            return Some(f.clone());
        }
        n.input_field(time).map(|f| Arc::new(f.clone()))
    }

    /// Per lead of `leads`, the calibration of the probability fitted on
    /// the radar's 24 h live reliability table of that lead (no I/O: the
    /// report read after the last scoring), when it holds at least
    /// `min_samples` cells.
    fn calibrations(&self, radar: &str, leads: &[u32]) -> Vec<Option<verify::Calibration>> {
        let report = self.recent_skill(radar);
        let min = self.inner.settings.min_samples;
        leads
            .iter()
            .map(|lead| {
                report
                    .as_ref()?
                    .leads
                    .iter()
                    .find(|l| l.lead_min == *lead)?
                    .raincast
                    .calibration(min)
            })
            .collect()
    }

    /// Scores every stored nowcast frame valid at `n`'s scan time (lead `L`
    /// issued at `T − L`), and persistence from `T − L`, against `n`'s
    /// observed field, and adds the sums to the state store. Each frame is
    /// decoded once; persistence comes from memory when the service updated
    /// to `T − L` (else its scan is decoded); the frame's probability is the
    /// service's neighbourhood probability of its rate. `Ok(None)` when
    /// there is nothing to score, no live skill, or another instance claimed
    /// the scan; else the number of leads scored.
    pub async fn score_scan(
        &self,
        n: &Arc<LatestNowcast>,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, NowcastServiceError> {
        let Some(state) = self.inner.skill_state.as_deref() else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let t = n.base_time;
        let found: Vec<_> = all_at_once(n.leads_min.clone(), |lead| {
            let store = store.clone();
            let issued = t - Duration::minutes(lead as i64);
            let series = frame_series_id(&n.radar, lead);
            async move {
                let m = store.get_manifest(&series, issued, now).await?;
                Ok(m.map(|_| (lead, issued, series)))
            }
        })
        .await?
        .into_iter()
        .flatten()
        .collect();
        // Claimed even when there is nothing to score (no nowcast before
        // it): the catch-up then does not look at the scan again.
        if !skill::claim(state, &n.radar, t).await? || found.is_empty() {
            return Ok(None);
        }
        // Fetch now, decode on the nowcast's threads.
        let fetch = found.into_iter().map(|(lead, issued, series)| {
            let held = self.observed_at(n, issued);
            (lead, issued, series, held)
        });
        let jobs: Vec<_> = all_at_once(fetch, |(lead, issued, series, held)| {
            let store = store.clone();
            let radar = n.radar.clone();
            async move {
                let Some(frame) = store.get_scan(&series, issued, now).await? else {
                    return Ok(None);
                };
                let persist = match held {
                    Some(f) => Ok(f),
                    None => match store.get_scan(&radar, issued, now).await? {
                        Some(scan) => Err(scan),
                        None => return Ok(None),
                    },
                };
                Ok(Some((lead, frame, persist)))
            }
        })
        .await?
        .into_iter()
        .flatten()
        .collect();
        let cfg = self.inner.settings.config;
        let threshold = self.inner.settings.probability_threshold_mm_h;
        let window = skill::fss_window_cells(n.grid.cell_m());
        let obs = n.clone();
        let inner = self.inner.clone();
        // One lead per thread of the nowcast's pool at a time; each thread
        // reuses one grid's storage for the frames it decodes. A lead's sums
        // do not depend on the threads.
        let sums = tokio::task::spawn_blocking(move || {
            inner.on_pool(|| {
                jobs.into_par_iter()
                    .map_init(Vec::new, |buffer, (lead, frame, persist)| {
                        let frame =
                            decode_stored_reusing(&obs.radar, &frame, std::mem::take(buffer))?;
                        let persist = match persist {
                            Ok(f) => f,
                            Err(scan) => {
                                let f = decode_stored(&obs.radar, &scan)?;
                                if !f.grid.same_geometry(&obs.grid) {
                                    return Ok(None);
                                }
                                Arc::new(f.rate_mm_h)
                            }
                        };
                        if !frame.grid.same_geometry(&obs.grid) {
                            return Ok(None);
                        }
                        let radius = cfg.prob_radius_cells(&obs.grid, lead);
                        let sums = skill::case_sums(
                            (&frame.rate_mm_h.view(), radius),
                            &persist.view(),
                            &obs.observed_mm_h.view(),
                            threshold,
                            window,
                        );
                        *buffer = frame.rate_mm_h.into_raw_vec_and_offset().0;
                        Ok(sums.map(|s| (lead, s)))
                    })
                    .collect::<Result<Vec<_>, NowcastServiceError>>()
            })
        })
        .await
        .map_err(|e| NowcastServiceError::Task(e.to_string()))??
        .into_iter()
        .flatten()
        .collect::<BTreeMap<_, _>>();
        skill::record(state, &n.radar, t, threshold, &sums).await?;
        Ok(Some(sums.len()))
    }

    /// The live skill of a radar over `window`, ending with the newest hour
    /// scored; `None` when the service keeps no live skill.
    pub async fn skill(
        &self,
        radar: &str,
        window: skill::Window,
    ) -> Result<Option<skill::SkillReport>, skill::SkillError> {
        match self.inner.skill_state.as_deref() {
            Some(state) => Ok(Some(
                skill::skill(
                    state,
                    radar,
                    window,
                    None,
                    self.inner.settings.probability_threshold_mm_h,
                )
                .await?,
            )),
            None => Ok(None),
        }
    }

    /// Reads the radar's 24 h live skill into [`Self::recent_skill`].
    async fn read_recent_skill(&self, radar: &str) {
        match self.skill(radar, skill::Window::Day).await {
            Ok(Some(r)) => {
                self.inner
                    .recent_skill
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(radar.to_string(), Arc::new(r));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%radar, error = %e, "live skill not read"),
        }
    }

    /// [`Self::read_recent_skill`] when this process has not read it yet
    /// (after a restart, or in a process that does not score): a nowcast
    /// built or loaded then is calibrated from the record in the store,
    /// as it was before the restart, not served raw.
    async fn read_recent_skill_once(&self, radar: &str) {
        if self.inner.skill_state.is_some() && self.recent_skill(radar).is_none() {
            self.read_recent_skill(radar).await;
        }
    }

    /// The 24 h live skill of a radar as read after the last update to a
    /// new scan (no I/O); `None` before that or without live skill.
    pub fn recent_skill(&self, radar: &str) -> Option<Arc<skill::SkillReport>> {
        self.inner
            .recent_skill
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(radar)
            .cloned()
    }

    fn cache_it(&self, radar: &str, n: Arc<LatestNowcast>) {
        self.inner
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(radar.to_string(), n);
    }

    /// Leads for a scan interval: every step up to the longest lead.
    pub fn leads(&self, step_s: i64) -> Vec<u32> {
        let s = &self.inner.settings;
        let step = s
            .lead_step_min
            .unwrap_or(((step_s as f64 / 60.0).round() as u32).max(1))
            .max(1);
        let max = s.max_lead_min.min(nowcast::MAX_LEAD_MIN);
        (1..).map(|k| k * step).take_while(|l| *l <= max).collect()
    }

    /// The stored fields of `(series, time)`, in that order: fetched all at
    /// once, then decoded off the async workers, on the nowcast's threads.
    async fn load_fields(
        &self,
        keys: Vec<(String, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RainField>, NowcastServiceError> {
        let scans = all_at_once(keys, |(series, time)| {
            let store = self.inner.store.clone();
            async move {
                let scan = store.get_scan(&series, time, now).await?.ok_or_else(|| {
                    NowcastServiceError::BadScan {
                        radar: series.clone(),
                        time,
                        reason: "listed but not found (expired?)".into(),
                    }
                })?;
                Ok((series, scan))
            }
        })
        .await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.on_pool(|| {
                scans
                    .par_iter()
                    .map(|(series, scan)| decode_stored(series, scan))
                    .collect()
            })
        })
        .await
        .map_err(|e| NowcastServiceError::Task(e.to_string()))?
    }

    /// Stores `n`'s frames, one pseudo-radar series per lead. Encoding is
    /// CPU work, so it runs off the async workers, on the nowcast's
    /// threads, one frame per thread at a time (a frame's bytes do not
    /// depend on the threads); then the frames are written all at once
    /// (each frame's manifest after its tiles, as always).
    async fn store_frames(
        &self,
        n: &Arc<LatestNowcast>,
        now: DateTime<Utc>,
    ) -> Result<(), NowcastServiceError> {
        let opts = SparseOptions {
            tile_size: self.inner.settings.tile_size,
        };
        let inner = self.inner.clone();
        let nc = n.clone();
        let scans = tokio::task::spawn_blocking(move || {
            inner.on_pool(|| {
                nc.leads_min
                    .par_iter()
                    .enumerate()
                    .map(|(i, lead)| encode_frame(&nc, i, *lead, &opts))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .await
        .map_err(|e| NowcastServiceError::Task(e.to_string()))??;
        all_at_once(scans, |scan| {
            let store = self.inner.store.clone();
            async move {
                store.put_scan(&scan, now).await?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// Loads the frames stored for the newest scan, when all leads are there.
    async fn load_stored(
        &self,
        radar: &str,
        fields: &[RainField],
        step_s: i64,
        leads: &[u32],
        now: DateTime<Utc>,
    ) -> Result<Option<LatestNowcast>, NowcastServiceError> {
        let Some(latest) = fields.last() else {
            return Ok(None);
        };
        let base = latest.time;
        if !self.frames_stored(radar, base, leads, now).await? {
            return Ok(None);
        }
        let frames = leads
            .iter()
            .map(|lead| (frame_series_id(radar, *lead), base))
            .collect();
        let mut rate = Vec::with_capacity(leads.len());
        for f in self.load_fields(frames, now).await? {
            if !f.grid.same_geometry(&latest.grid) {
                return Ok(None);
            }
            rate.push(f.rate_mm_h);
        }
        let cfg = self.inner.settings.config;
        let threshold = self.inner.settings.probability_threshold_mm_h;
        let grid = latest.grid.clone();
        let leads_owned = leads.to_vec();
        let inner = self.inner.clone();
        let (rate, probability) = tokio::task::spawn_blocking(move || {
            let p: Vec<Array2<f32>> = inner.on_pool(|| {
                rate.par_iter()
                    .zip(&leads_owned)
                    .map(|(f, lead)| {
                        neighbourhood_probability(
                            &f.view(),
                            threshold,
                            cfg.prob_radius_cells(&grid, *lead),
                        )
                    })
                    .collect()
            });
            (rate, p)
        })
        .await
        .map_err(|e| NowcastServiceError::Task(e.to_string()))?;
        Ok(Some(LatestNowcast {
            radar: radar.to_string(),
            grid: latest.grid.clone(),
            base_time: base,
            step_s,
            inputs: fields.iter().map(|f| f.time).collect(),
            leads_min: leads.to_vec(),
            rate_mm_h: rate,
            probability,
            threshold_mm_h: self.inner.settings.probability_threshold_mm_h,
            probability_calibrated: Vec::new(),
            observed_mm_h: latest.rate_mm_h.clone(),
            earlier_inputs_mm_h: fields[..fields.len() - 1]
                .iter()
                .map(|f| f.rate_mm_h.clone())
                .collect(),
            created_at: now,
            origin: Origin::Stored,
        }))
    }

    /// The stored scans of the `past_min` minutes up to the nowcast's issue
    /// time, no closer together than its lead step (the newest kept: a radar
    /// that scans every few seconds still gives one frame per lead step),
    /// oldest first.
    pub async fn past_scans(
        &self,
        n: &LatestNowcast,
        past_min: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScanManifest>, NowcastServiceError> {
        let from = n.base_time - Duration::minutes(past_min as i64);
        let listed = self
            .inner
            .store
            .list_scans(&n.radar, from, n.base_time, now)
            .await?;
        Ok(spaced(listed, n))
    }

    /// The stored scans behind the observed frames of `n`, fetched but not
    /// decoded (the decode is CPU work: [`ObservedScans::decode`] runs it on
    /// a blocking thread). The scans the nowcast was built from are not
    /// fetched: the nowcast holds their fields already.
    pub async fn observed_scans(
        &self,
        n: &Arc<LatestNowcast>,
        scans: &[ScanManifest],
        now: DateTime<Utc>,
    ) -> Result<ObservedScans, NowcastServiceError> {
        let mut out = Vec::with_capacity(scans.len());
        for m in scans {
            if n.input_field(m.time).is_some() {
                out.push((m.time, None));
                continue;
            }
            let scan = self
                .inner
                .store
                .get_scan(&n.radar, m.time, now)
                .await?
                .ok_or_else(|| NowcastServiceError::BadScan {
                    radar: n.radar.clone(),
                    time: m.time,
                    reason: "listed but not found (expired?)".into(),
                })?;
            out.push((m.time, Some(scan)));
        }
        Ok(ObservedScans {
            nowcast: n.clone(),
            scans: out,
        })
    }

    /// The observed fields of `scans` (from [`NowcastService::past_scans`]),
    /// oldest first; scans on another grid than the nowcast's are left out.
    /// The nowcast's input scans are not decoded again.
    pub async fn observed_fields(
        &self,
        n: &Arc<LatestNowcast>,
        scans: &[ScanManifest],
        now: DateTime<Utc>,
    ) -> Result<Vec<RainField>, NowcastServiceError> {
        let fetched = self.observed_scans(n, scans, now).await?;
        tokio::task::spawn_blocking(move || fetched.decode())
            .await
            .map_err(|e| NowcastServiceError::BadScan {
                radar: n.radar.clone(),
                time: n.base_time,
                reason: format!("decoding task failed: {e}"),
            })?
    }

    /// Refreshes every radar now and then every `interval`, until `shutdown`.
    pub async fn run_periodic(
        self,
        radars: Vec<String>,
        interval: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    for r in &radars {
                        match self.update(r, Utc::now()).await {
                            Ok(UpdateOutcome::NotEnoughScans { have, need }) => {
                                tracing::debug!(radar = %r, have, need, "nowcast waits for scans")
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(radar = %r, error = %e, "nowcast update failed"),
                        }
                    }
                }
            }
        }
    }
}

/// The nowcast job: every radar's nowcast brought up to date now and then
/// every `section.refresh()`, until `shutdown` turns true.
pub async fn run(
    section: raincast_config::nowcast::NowcastSection,
    service: NowcastService,
    radars: Vec<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    service.run_periodic(radars, section.refresh(), stop).await
}

/// `manifests` (oldest first) thinned so that no two are closer than the
/// nowcast's lead step (at least its scan interval), newest kept, oldest first.
pub fn spaced(manifests: Vec<ScanManifest>, n: &LatestNowcast) -> Vec<ScanManifest> {
    let spacing_s = (n.leads_min.first().copied().unwrap_or(0) as i64 * 60).max(n.step_s);
    spaced_by(manifests, spacing_s)
}

/// `manifests` (oldest first) thinned so that no two are closer than
/// `spacing_s` seconds, the newest kept, oldest first.
fn spaced_by(manifests: Vec<ScanManifest>, spacing_s: i64) -> Vec<ScanManifest> {
    let mut out: Vec<ScanManifest> = Vec::with_capacity(manifests.len());
    for m in manifests.into_iter().rev() {
        if out
            .last()
            .is_none_or(|l| (l.time - m.time).num_seconds() >= spacing_s)
        {
            out.push(m);
        }
    }
    out.reverse();
    out
}

/// Maps each lead's probability through its calibration (where there is
/// one) and records which leads are calibrated.
fn calibrate(n: &mut LatestNowcast, cals: &[Option<verify::Calibration>]) {
    n.probability_calibrated = vec![false; n.leads_min.len()];
    for (i, cal) in cals.iter().enumerate().take(n.probability.len()) {
        if let Some(c) = cal {
            n.probability[i].mapv_inplace(|p| c.apply(p));
            n.probability_calibrated[i] = true;
        }
    }
}

/// What the catch-ups of one radar in this process went through
/// ([`NowcastService::catch_up`]).
struct CaughtUp {
    /// The newest scan up to which every scan was gone through
    /// (`catch_up_since` then applies once).
    until: DateTime<Utc>,
    /// The times of the scans the latest catch-up listed within
    /// `catch_up_min` of its newest: the next one looks only at others.
    seen: BTreeSet<DateTime<Utc>>,
}

/// Observed scans fetched for the frames of one nowcast
/// ([`NowcastService::observed_scans`]), by time; `None` stands for an input
/// of the nowcast, whose field it already holds.
pub struct ObservedScans {
    nowcast: Arc<LatestNowcast>,
    scans: Vec<(DateTime<Utc>, Option<raincast_store::StoredScan>)>,
}

impl ObservedScans {
    /// How many scans were fetched from the store (and will be decoded);
    /// the nowcast's own inputs are not among them.
    pub fn fetched(&self) -> usize {
        self.scans.iter().filter(|(_, s)| s.is_some()).count()
    }

    /// Decodes the scans (CPU-bound; call it off the async threads), keeping
    /// those on the nowcast's grid, oldest first.
    pub fn decode(self) -> Result<Vec<RainField>, NowcastServiceError> {
        let n = &self.nowcast;
        let mut out = Vec::with_capacity(self.scans.len());
        for (time, scan) in &self.scans {
            let field = match scan {
                Some(scan) => decode_stored(&n.radar, scan)?,
                None => match n.input_field(*time) {
                    Some(f) => RainField {
                        grid: n.grid.clone(),
                        time: *time,
                        rate_mm_h: f.clone(),
                    },
                    None => continue,
                },
            };
            if field.grid.same_geometry(&n.grid) {
                out.push(field);
            }
        }
        Ok(out)
    }
}

/// The rain field of a stored scan.
fn decode_stored(
    radar: &str,
    scan: &raincast_store::StoredScan,
) -> Result<RainField, NowcastServiceError> {
    decode_stored_reusing(radar, scan, Vec::new())
}

/// Runs `request` on every item at once, as tasks on the runtime, and
/// returns the results in the items' order; the first error cancels the
/// rest. Against DynamoDB each store request is a round trip (a frame's
/// write is three or more), and an update or a scoring makes dozens: one
/// after another they add up to the wall time of all of them.
async fn all_at_once<T, R, Fut>(
    items: impl IntoIterator<Item = T>,
    request: impl Fn(T) -> Fut,
) -> Result<Vec<R>, NowcastServiceError>
where
    Fut: std::future::Future<Output = Result<R, NowcastServiceError>> + Send + 'static,
    R: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut count = 0;
    for (i, item) in items.into_iter().enumerate() {
        let fut = request(item);
        tasks.spawn(async move { (i, fut.await) });
        count += 1;
    }
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(count).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.map_err(|e| NowcastServiceError::Task(e.to_string()))?;
        out[i] = Some(result?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Lead `i` (`lead` minutes) of `n` as the scan of its frame series.
fn encode_frame(
    n: &LatestNowcast,
    i: usize,
    lead: u32,
    opts: &SparseOptions,
) -> Result<NewScan, NowcastServiceError> {
    let field = RainField {
        grid: n.grid.clone(),
        time: n.valid_time(i),
        rate_mm_h: n.rate_mm_h[i].clone(),
    };
    let enc = sparse::encode(&field, opts).map_err(|e| NowcastServiceError::BadScan {
        radar: n.radar.clone(),
        time: field.time,
        reason: format!("encode frame: {e}"),
    })?;
    Ok(NewScan {
        radar: frame_series_id(&n.radar, lead),
        time: n.base_time,
        source_key: format!("nowcast:{}:{}+{lead}", n.radar, n.base_time.to_rfc3339()),
        format: "nowcast".into(),
        header: enc.header,
        rain_cells: field.rain_cells() as u64,
        tiles: enc.tiles,
    })
}

/// [`decode_stored`] into the allocation of `buffer` (see
/// [`sparse::decode_reusing`]).
fn decode_stored_reusing(
    radar: &str,
    scan: &raincast_store::StoredScan,
    buffer: Vec<f32>,
) -> Result<RainField, NowcastServiceError> {
    sparse::decode_reusing(&scan.manifest.header, &scan.tiles, buffer).map_err(|e| {
        NowcastServiceError::BadScan {
            radar: radar.to_string(),
            time: scan.manifest.time,
            reason: format!("sparse decode: {e}"),
        }
    })
}

fn build(
    radar: &str,
    mut fields: Vec<RainField>,
    leads: &[u32],
    s: &NowcastSettings,
    with_probability: bool,
    now: DateTime<Utc>,
) -> Result<LatestNowcast, NowcastServiceError> {
    let start = std::time::Instant::now();
    let n = nowcast::nowcast(&fields, leads, &s.config).map_err(|source| {
        NowcastServiceError::Nowcast {
            radar: radar.to_string(),
            source,
        }
    })?;
    let probability = if with_probability {
        n.probability(s.probability_threshold_mm_h)
    } else {
        Vec::new()
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let used = fields.len().min(s.config.frames.max(nowcast::MIN_FRAMES));
    // The inputs before the newest are kept (moved, not copied) for the
    // frames builder; the newest is `observed_mm_h`.
    let mut used_fields: Vec<RainField> = fields.drain(fields.len() - used..).collect();
    let inputs = used_fields.iter().map(|f| f.time).collect();
    used_fields.pop();
    Ok(LatestNowcast {
        radar: radar.to_string(),
        grid: n.grid.clone(),
        base_time: n.base_time,
        step_s: n.step_s,
        inputs,
        leads_min: n.leads_min.clone(),
        rate_mm_h: n.rate_mm_h,
        probability,
        threshold_mm_h: s.probability_threshold_mm_h,
        probability_calibrated: Vec::new(),
        observed_mm_h: n.observed_mm_h,
        earlier_inputs_mm_h: used_fields.into_iter().map(|f| f.rate_mm_h).collect(),
        created_at: now,
        origin: Origin::Computed {
            motion_and_forecast_ms: ms,
        },
    })
}

#[cfg(test)]
mod tests;
