//! The `[nowcast]` section: how nowcasts are made and how often the nowcast
//! job looks for new scans.
//!
//! ```toml
//! [nowcast]
//! max_lead_min = 120            # 1..=360
//! lead_step_min = 5             # default: the scan interval (5 for the demo)
//! frames = 3                    # input scans, 3..=12
//! probability_threshold_mm_h = 0.1
//! store_frames = true
//! refresh_seconds = 15          # 5 for the demo
//! smoothing = "sprog"           # or "none"
//! min_samples = 2000            # cell-cases before a lead's probability is calibrated
//! threads = 0                   # threads of the nowcast work (fields, leads, frames, scoring); 0 = every core
//! catch_up_minutes = 120        # earlier scans not scored yet get their nowcast and score, this far back; 0 = off
//! persistence_cache_mb = 512    # observed fields held per radar as live skill's persistence; beyond, read again from the store
//! ```

use crate::{invalid, ConfigError, Origins};
use chrono::{DateTime, Utc};
use raincast_algorithms::nowcast::{NowcastConfig, Smoothing};
use raincast_algorithms::sparse;
use serde::Deserialize;

/// How nowcasts are made.
#[derive(Debug, Clone, PartialEq)]
pub struct NowcastSettings {
    /// The algorithm's settings (input frames, motion, smoothing, probability radius).
    pub config: NowcastConfig,
    /// Longest lead, minutes (default 120).
    pub max_lead_min: u32,
    /// Interval between leads, minutes; `None` (default) = the scan interval
    /// rounded to whole minutes, at least 1.
    pub lead_step_min: Option<u32>,
    /// Threshold of the cached probability fields, mm/h (default 0.1).
    pub probability_threshold_mm_h: f32,
    /// Store every frame through the scan store (default true).
    pub store_frames: bool,
    /// Sparse tile side of stored frames, cells (default 256).
    pub tile_size: usize,
    /// [`NowcastService::ensure`] looks for a newer scan at most this often, seconds (default 5).
    pub recheck_s: i64,
    /// Cell-cases a lead's live reliability table needs before its
    /// probability is served calibrated (default 2000); raw before.
    pub min_samples: u64,
    /// Threads that build a nowcast (its fields, then its leads, each one
    /// lead at a time), encode or decode its stored frames and score a
    /// scan's live skill (default 0: every core, or `RAYON_NUM_THREADS`).
    /// The fields, frames and scores are the same, bit for bit, with any
    /// number; more threads cut a nowcast's wall time, not its work.
    pub threads: usize,
    /// With live skill: the scans before the newest that are not scored
    /// yet (a backfill, a burst after an outage, a replayed day, a scan
    /// that arrived late) and at most this many minutes older than it each
    /// get their nowcast too, oldest first and after the newest is
    /// published, so that every scan is scored against the nowcasts before
    /// it (default 120, the default longest lead: what the newest scan's
    /// scores need; 0 = off). See `catch_up_since`.
    pub catch_up_min: u32,
    /// Where the catch-up of a radar starts instead of `catch_up_min`
    /// before its newest scan (ingest's `--since`: a replayed day is
    /// nowcast and scored from there on, however long).
    pub catch_up_since: Option<DateTime<Utc>>,
    /// With live skill: the observed fields a radar's scorer holds in
    /// memory as the persistence forecasts of the scans to come (one per
    /// lead step over the longest lead), at most this many MB per radar
    /// (default 512); the older ones beyond it are read again from the
    /// store when a scan is scored. The scores are the same either way;
    /// the cap bounds memory on large grids (a 1-km European composite of
    /// 4400 × 3800 cells holds 67 MB per field, 1.6 GB for 24 leads).
    pub persistence_cache_mb: u64,
}

impl Default for NowcastSettings {
    fn default() -> Self {
        Self {
            config: NowcastConfig::default(),
            max_lead_min: 120,
            lead_step_min: None,
            probability_threshold_mm_h: 0.1,
            store_frames: true,
            tile_size: sparse::DEFAULT_TILE_SIZE,
            recheck_s: 5,
            min_samples: 2000,
            threads: 0,
            catch_up_min: 120,
            catch_up_since: None,
            persistence_cache_mb: 512,
        }
    }
}

/// The `[nowcast]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NowcastFile {
    max_lead_min: Option<u32>,
    lead_step_min: Option<u32>,
    frames: Option<usize>,
    probability_threshold_mm_h: Option<f32>,
    store_frames: Option<bool>,
    refresh_seconds: Option<f64>,
    smoothing: Option<SmoothingName>,
    min_samples: Option<u64>,
    threads: Option<usize>,
    catch_up_minutes: Option<u32>,
    persistence_cache_mb: Option<u64>,
}

/// `smoothing = "sprog" | "none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SmoothingName {
    Sprog,
    None,
}

/// The validated `[nowcast]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NowcastSection {
    /// The nowcast service's settings. `lead_step_min` is `None` unless
    /// configured (the scan interval, or 5 for the demo radar).
    pub settings: NowcastSettings,
    /// How often the nowcast job looks for new scans (`None` = 15 s, 5 s
    /// for the demo radar).
    pub refresh: Option<std::time::Duration>,
}

impl NowcastSection {
    /// How often the nowcast job looks for new scans.
    pub fn refresh(&self) -> std::time::Duration {
        self.refresh
            .unwrap_or(std::time::Duration::from_secs(DEFAULT_REFRESH_S))
    }

    pub(crate) fn build(
        f: &NowcastFile,
        tile_size: usize,
        origins: &Origins,
    ) -> Result<Self, ConfigError> {
        let at = |key: &str| origins.of("nowcast", key);
        let mut s = NowcastSettings::default();
        if let Some(v) = f.max_lead_min {
            if !(1..=360).contains(&v) {
                let (setting, origin) = at("max_lead_min");
                return Err(invalid(&setting, origin, format!("{v} is not in 1..=360")));
            }
            s.max_lead_min = v;
        }
        if let Some(v) = f.lead_step_min {
            if !(1..=60).contains(&v) {
                let (setting, origin) = at("lead_step_min");
                return Err(invalid(&setting, origin, format!("{v} is not in 1..=60")));
            }
            s.lead_step_min = Some(v);
        }
        if let Some(v) = f.frames {
            if !(3..=12).contains(&v) {
                let (setting, origin) = at("frames");
                return Err(invalid(&setting, origin, format!("{v} is not in 3..=12")));
            }
            s.config.frames = v;
        }
        if let Some(v) = f.probability_threshold_mm_h {
            if !(v.is_finite() && v > 0.0) {
                let (setting, origin) = at("probability_threshold_mm_h");
                return Err(invalid(
                    &setting,
                    origin,
                    format!("{v} is not a positive number"),
                ));
            }
            s.probability_threshold_mm_h = v;
        }
        if let Some(v) = f.store_frames {
            s.store_frames = v;
        }
        if let Some(v) = f.min_samples {
            if v == 0 {
                let (setting, origin) = at("min_samples");
                return Err(invalid(&setting, origin, "0 is not at least 1".to_string()));
            }
            s.min_samples = v;
        }
        if let Some(v) = f.threads {
            if v > MAX_THREADS {
                let (setting, origin) = at("threads");
                return Err(invalid(
                    &setting,
                    origin,
                    format!("{v} is not in 0..={MAX_THREADS}"),
                ));
            }
            s.threads = v;
        }
        if let Some(v) = f.catch_up_minutes {
            if v > MAX_CATCH_UP_MIN {
                let (setting, origin) = at("catch_up_minutes");
                return Err(invalid(
                    &setting,
                    origin,
                    format!("{v} is not in 0..={MAX_CATCH_UP_MIN} (7 days)"),
                ));
            }
            s.catch_up_min = v;
        }
        if let Some(v) = f.persistence_cache_mb {
            if v > MAX_PERSISTENCE_CACHE_MB {
                let (setting, origin) = at("persistence_cache_mb");
                return Err(invalid(
                    &setting,
                    origin,
                    format!("{v} is not in 0..={MAX_PERSISTENCE_CACHE_MB}"),
                ));
            }
            s.persistence_cache_mb = v;
        }
        s.config.smoothing = match f.smoothing {
            None => s.config.smoothing,
            Some(SmoothingName::Sprog) => Smoothing::Sprog,
            Some(SmoothingName::None) => Smoothing::None,
        };
        s.tile_size = tile_size;
        let refresh = match f.refresh_seconds {
            None => None,
            Some(v) if v.is_finite() && (1.0..=86_400.0).contains(&v) => {
                Some(std::time::Duration::from_secs_f64(v))
            }
            Some(v) => {
                let (setting, origin) = at("refresh_seconds");
                return Err(invalid(
                    &setting,
                    origin,
                    format!("{v} is not in 1..=86400"),
                ));
            }
        };
        Ok(Self {
            settings: s,
            refresh,
        })
    }
}

/// Longest `catch_up_minutes`: 7 days, the longest live-skill window.
pub const MAX_CATCH_UP_MIN: u32 = 7 * 24 * 60;

/// Largest `persistence_cache_mb`: 1 TB, far beyond any machine's memory
/// (a typo, not a setting).
pub const MAX_PERSISTENCE_CACHE_MB: u64 = 1 << 20;

/// Most threads `threads` (and `raincast nowcast --threads`) may ask for.
pub const MAX_THREADS: usize = 1024;

/// Default interval of the nowcast job, seconds.
pub const DEFAULT_REFRESH_S: u64 = 15;
