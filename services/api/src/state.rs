//! The state every handler shares: configuration, the scan store, the radar
//! list, the nowcast cache, metrics and a few small response caches.

use crate::config::{ApiConfig, ApiConfigError};
use crate::cpu::CpuPool;
use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use chrono::{DateTime, Utc};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::render::MapRaster;
use raincast_algorithms::sparse;
use raincast_algorithms::Grid;
use raincast_nowcast::NowcastService;
use raincast_store::{ScanManifest, ScanStore, StateStore, StoredScan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A radar the API serves.
#[derive(Debug, Clone, PartialEq)]
pub struct RadarInfo {
    /// Id used in URLs and in the store.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Site (WGS84 degrees), if known: `(lon, lat)`.
    pub location: Option<(f64, f64)>,
}

impl From<&raincast_config::RadarConfig> for RadarInfo {
    fn from(r: &raincast_config::RadarConfig) -> Self {
        RadarInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            location: r.location.map(|l| (l.lon, l.lat)),
        }
    }
}

/// Current time source (tests pin it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ApiConfig,
    store: Arc<dyn ScanStore>,
    state_store: Option<Arc<dyn StateStore>>,
    keys: crate::auth::KeyAuth,
    webhooks: crate::routes::subscriptions::WebhookPolicy,
    radars: Vec<RadarInfo>,
    nowcasts: NowcastService,
    metrics: ApiMetrics,
    cpu: CpuPool,
    clock: Clock,
    png_cache: Lru<Arc<[u8]>>,
    gif_cache: Lru<Arc<[u8]>>,
    spread_cache: Lru<Arc<[f32]>>,
    tile_cache: crate::tile_cache::TileCache,
    rasters: Mutex<HashMap<String, Arc<MapRaster>>>,
}

/// Points whose neighbourhood spread per lead is kept (the compatible
/// endpoint's `precipIntensityError`): the places apps ask for again and
/// again. An entry is 4 bytes per lead.
pub const SPREAD_CACHE_ENTRIES: usize = 512;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("radars", &self.inner.radars)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    config: ApiConfig,
    store: Arc<dyn ScanStore>,
    state_store: Option<Arc<dyn StateStore>>,
    webhooks: crate::routes::subscriptions::WebhookPolicy,
    radars: Vec<RadarInfo>,
    nowcasts: NowcastService,
    registry: prometheus::Registry,
    clock: Clock,
}

impl AppStateBuilder {
    /// API settings (default: [`ApiConfig::default`]).
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// The radars served (in listing order).
    pub fn radars(mut self, radars: Vec<RadarInfo>) -> Self {
        self.radars = radars;
        self
    }

    /// The state store holding API keys and subscriptions (without one,
    /// endpoints that need a key answer 500 and `require_keys` cannot work).
    pub fn state_store(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state_store = Some(state);
        self
    }

    /// What webhook subscriptions may target, and how many a key may hold
    /// (default: public `https` URLs only, 100 per key).
    pub fn webhooks(mut self, policy: crate::routes::subscriptions::WebhookPolicy) -> Self {
        self.webhooks = policy;
        self
    }

    /// The Prometheus registry `/metrics` renders; share it with the ingest
    /// job so that one scrape sees everything. Default: a private registry.
    pub fn registry(mut self, registry: prometheus::Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Time source (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration and builds the state.
    pub fn build(self) -> Result<AppState, BuildError> {
        self.config.validate()?;
        if self.config.require_keys && self.state_store.is_none() {
            return Err(BuildError::Config(ApiConfigError {
                field: "require_keys",
                reason: "keys need a state store to be checked against".into(),
            }));
        }
        let metrics =
            ApiMetrics::new(&self.registry).map_err(|e| BuildError::Metrics(e.to_string()))?;
        let cpu = CpuPool::new(
            self.config.cpu_worker_count(),
            self.config.cpu_queue,
            metrics.busy.clone(),
        );
        Ok(AppState {
            inner: Arc::new(Inner {
                cpu,
                png_cache: Lru::new(self.config.png_cache_entries),
                gif_cache: Lru::new(self.config.gif_cache_entries),
                spread_cache: Lru::new(SPREAD_CACHE_ENTRIES),
                tile_cache: crate::tile_cache::TileCache::new(
                    self.config.tile_cache_mb * 1024 * 1024,
                ),
                keys: crate::auth::KeyAuth::new(
                    self.state_store.clone(),
                    std::time::Duration::from_secs(self.config.key_cache_s),
                    self.config.rate_limit_per_minute,
                ),
                config: self.config,
                store: self.store,
                state_store: self.state_store,
                webhooks: self.webhooks,
                radars: self.radars,
                nowcasts: self.nowcasts,
                metrics,
                clock: self.clock,
                rasters: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Why an [`AppState`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ApiConfigError),
    #[error("cannot register the API metrics: {0}")]
    Metrics(String),
}

impl AppState {
    /// Starts a builder over a scan store and the nowcast service reading it.
    pub fn builder(store: Arc<dyn ScanStore>, nowcasts: NowcastService) -> AppStateBuilder {
        AppStateBuilder {
            config: ApiConfig::default(),
            store,
            state_store: None,
            webhooks: Default::default(),
            radars: Vec::new(),
            nowcasts,
            registry: prometheus::Registry::new(),
            clock: Arc::new(Utc::now),
        }
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &dyn ScanStore {
        self.inner.store.as_ref()
    }

    /// The state store (API keys, subscriptions), when the API has one.
    pub fn state_store(&self) -> Option<&Arc<dyn StateStore>> {
        self.inner.state_store.as_ref()
    }

    /// The webhook policy (SSRF rules, per-key limit).
    pub fn webhooks(&self) -> crate::routes::subscriptions::WebhookPolicy {
        self.inner.webhooks
    }

    /// The API key checker.
    pub fn keys(&self) -> &crate::auth::KeyAuth {
        &self.inner.keys
    }

    pub fn radars(&self) -> &[RadarInfo] {
        &self.inner.radars
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }

    /// Base time of the newest nowcast held for a radar.
    pub fn latest_nowcast_time(&self, radar: &str) -> Option<DateTime<Utc>> {
        self.inner.nowcasts.latest(radar).map(|n| n.base_time)
    }

    /// The nowcast service.
    pub fn nowcasts(&self) -> &NowcastService {
        &self.inner.nowcasts
    }

    /// The radar with this id, or a 404 problem.
    pub fn radar(&self, id: &str) -> Result<&RadarInfo, ApiError> {
        self.inner
            .radars
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_radar",
                    format!("no radar with id {:?}; see /v1/radars", truncate(id, 64)),
                )
            })
    }

    /// Cache of rendered PNG frames.
    pub fn png_cache(&self) -> &Lru<Arc<[u8]>> {
        &self.inner.png_cache
    }

    /// Cache of rendered animations.
    pub fn gif_cache(&self) -> &Lru<Arc<[u8]>> {
        &self.inner.gif_cache
    }

    /// Cache of the per-lead neighbourhood spread at a point of a nowcast,
    /// keyed by radar, nowcast and cell.
    pub fn spread_cache(&self) -> &Lru<Arc<[f32]>> {
        &self.inner.spread_cache
    }

    /// Cache of rendered map tiles.
    pub fn tile_cache(&self) -> &crate::tile_cache::TileCache {
        &self.inner.tile_cache
    }

    /// The mosaic of every radar (see `raincast_nowcast::mosaic`), or a
    /// 503 problem while no radar has a nowcast.
    pub async fn mosaic(&self) -> Result<Arc<raincast_nowcast::mosaic::Mosaic>, ApiError> {
        let sites: Vec<raincast_nowcast::mosaic::MosaicSite> = self
            .inner
            .radars
            .iter()
            .map(|r| raincast_nowcast::mosaic::MosaicSite {
                id: r.id.clone(),
                location: r.location,
            })
            .collect();
        match self.inner.nowcasts.mosaic(&sites, self.now()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ApiError::Unavailable {
                code: "mosaic_unavailable",
                detail: "no radar has enough recent scans for a nowcast yet".into(),
                retry_after_s: 30,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "mosaic unavailable");
                Err(ApiError::Unavailable {
                    code: "mosaic_unavailable",
                    detail: "the mosaic could not be made from the stored scans".into(),
                    retry_after_s: 30,
                })
            }
        }
    }

    /// The web-map lookup of a grid, built once per distinct grid.
    pub fn map_raster(&self, grid: &Grid) -> Result<Arc<MapRaster>, ApiError> {
        let key = format!(
            "{}|{}x{}|{}|{}|{}|{}",
            grid.projection.trim(),
            grid.rows,
            grid.cols,
            grid.cell_x_m,
            grid.cell_y_m,
            grid.x_west_m,
            grid.y_north_m
        );
        if let Some(r) = lock(&self.inner.rasters).get(&key) {
            return Ok(r.clone());
        }
        let raster = MapRaster::for_grid(grid, self.inner.config.map_max_side_px)
            .map(Arc::new)
            .map_err(|e| ApiError::Internal(format!("map raster: {e}")))?;
        let mut map = lock(&self.inner.rasters);
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(key, raster.clone());
        Ok(raster)
    }

    /// Grid and counts of a stored scan, read from its header.
    pub fn header_info(&self, m: &ScanManifest) -> Result<sparse::HeaderInfo, ApiError> {
        sparse::header_info(&m.header)
            .map_err(|e| ApiError::Internal(format!("scan {} {}: header: {e}", m.radar, m.time)))
    }

    /// Runs CPU-heavy work in the API's bounded pool (see [`crate::cpu`]):
    /// 503 `busy` when its queue is full.
    pub async fn cpu<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner.cpu.run(job).await
    }

    /// A place in the CPU pool's queue for a job to [`run`](crate::cpu::Admitted::run)
    /// later, or 503 `busy`: take it before reading the job's input.
    pub fn cpu_admit(&self) -> Result<crate::cpu::Admitted, ApiError> {
        self.inner.cpu.admit()
    }

    /// Reads one scan with its tiles (undecoded), or a 404 problem.
    pub async fn fetch_scan(
        &self,
        radar: &str,
        time: DateTime<Utc>,
    ) -> Result<StoredScan, ApiError> {
        self.store()
            .get_scan(radar, time, self.now())
            .await?
            .ok_or_else(|| {
                ApiError::not_found(
                    "scan_not_found",
                    format!("radar {radar} has no scan at {}", time.to_rfc3339()),
                )
            })
    }
}

/// Decodes a stored scan: mm/h, `NaN` = no data. CPU-heavy: call it inside
/// [`AppState::cpu`].
pub fn decode_scan(scan: &StoredScan) -> Result<RainField, ApiError> {
    let m = &scan.manifest;
    sparse::decode(&m.header, &scan.tiles)
        .map_err(|e| ApiError::Internal(format!("scan {} {}: sparse decode: {e}", m.radar, m.time)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; use it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shortens user input before echoing it in an error.
pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

/// A small least-recently-inserted cache (capacity in the hundreds at most;
/// eviction scans the entries).
pub struct Lru<V> {
    cap: usize,
    map: Mutex<LruEntries<V>>,
}

/// A use counter and the entries with the count of their last use.
struct LruEntries<V>(u64, HashMap<String, (u64, V)>);

impl<V: Clone> Lru<V> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            map: Mutex::new(LruEntries(0, HashMap::new())),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let mut g = lock(&self.map);
        g.0 += 1;
        let tick = g.0;
        g.1.get_mut(key).map(|e| {
            e.0 = tick;
            e.1.clone()
        })
    }

    pub fn insert(&self, key: String, value: V) {
        if self.cap == 0 {
            return;
        }
        let mut g = lock(&self.map);
        g.0 += 1;
        let tick = g.0;
        if g.1.len() >= self.cap && !g.1.contains_key(&key) {
            if let Some(oldest) = g.1.iter().min_by_key(|(_, e)| e.0).map(|(k, _)| k.clone()) {
                g.1.remove(&oldest);
            }
        }
        g.1.insert(key, (tick, value));
    }

    pub fn len(&self) -> usize {
        lock(&self.map).1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let c = Lru::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        assert_eq!(c.get("a"), Some(1));
        c.insert("c".into(), 3);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("c"), Some(3));
        assert_eq!(c.len(), 2);
        let off = Lru::new(0);
        off.insert("a".into(), 1);
        assert!(off.is_empty());
    }

    #[test]
    fn truncate_marks_cuts() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
