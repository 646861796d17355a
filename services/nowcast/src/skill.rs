//! Live skill: every scan the service updates to is the truth for the
//! nowcasts issued before it, and is scored against them once.
//!
//! * **What.** When [`crate::NowcastService::update`] moves a radar's nowcast
//!   to the scan at `T`, it publishes the nowcast and then spawns a scoring
//!   task (never delaying the nowcast): every stored frame of lead `L`
//!   issued at `T − L` (`{radar}.nowcast.{L:03}` at `T − L`) is scored
//!   against the observed field at `T`, and so is Eulerian persistence: the
//!   observed field at `T − L`. Both are scored on the same cells: where the
//!   observation, the frame and the persistence field are all finite (NaN =
//!   no data is never counted as dry). The frame's probability is the
//!   service's `neighbourhood_probability` of its stored (raw) rate, i.e.
//!   the raw probability the calibration is fitted on; persistence is a
//!   yes/no forecast (probability 1 where it reaches the threshold, else 0).
//! * **Cost.** One streaming pass over the rows per lead for both methods
//!   ([`verify::skill_sums_of`]: sliding window sums over a window's height
//!   of rows, the frame's neighbourhood probability computed row by row,
//!   no whole-grid integral image or probability field); each frame is
//!   decoded once; the observed field at `T` is the nowcast's own, and
//!   persistence fields come from memory (the fields of the scans the
//!   service updated to in the last `max_lead_min`, one per lead step) or
//!   are decoded.
//! * **Scores** (the scorer of `raincast verify`, `raincast_algorithms::verify`):
//!   CSI at 0.5, 1 and 5 mm/h, FSS at 1 mm/h with a 10 km window, MAE on wet
//!   cells (forecast or observation ≥ 0.1 mm/h), Brier score and a 10-bin
//!   reliability table of the probability of rain ≥ the service's
//!   `probability_threshold_mm_h` (0.1 mm/h by default). They are kept as
//!   additive sums ([`Sums`]), so a window's score is the pooled score of all
//!   its cells (not a mean of per-case scores, as `raincast verify`'s main
//!   table reports; its `LeadRow::pooled` holds the same pooled sums).
//! * **Calibration.** A lead whose 24 h reliability table holds at least
//!   `min_samples` cells gets its served probability mapped through the
//!   isotonic fit of that table ([`MethodSkill::calibration`]).
//! * **Once.** The scoring of `(radar, T)` is claimed first with a
//!   create-if-absent record; the instance that loses the claim does not
//!   score. A crash between the claim and the write loses that scan's cases
//!   (at most once).
//! * **Records** (versioned JSON through [`StateStore`]):
//!   `skill/{radar}/h/{slot:03}`: the sums of the hour starting at `hour`,
//!   per lead and method, where `slot` is the hour since the epoch modulo
//!   [`RING_HOURS`] (8 days): a slot is reused (reset) by the hour eight days
//!   later, so old buckets are pruned by overwriting and the records of a
//!   radar stay bounded. `skill/{radar}/claim/{second:06}`: the claim of the
//!   scan at that second of the same 8-day ring, holding its time; a claim
//!   left by a scan one ring earlier is taken over with a compare-and-set.
//! * **Windows** (24 h, 7 d) are sums of the hourly buckets whose hour lies
//!   in the window ending with the newest bucket's hour (the data clock, so
//!   a replayed day reads like a live one).

use chrono::{DateTime, Duration, DurationRound, Utc};
use ndarray::ArrayView2;
use raincast_algorithms::verify;
use raincast_store::{StateStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Thresholds of the CSI, mm/h.
pub const CSI_THRESHOLDS_MM_H: [f32; 3] = verify::SKILL_CSI_THRESHOLDS_MM_H;
/// FSS threshold, mm/h.
pub const FSS_THRESHOLD_MM_H: f32 = 1.0;
/// FSS window side, km.
pub const FSS_WINDOW_KM: f64 = 10.0;
/// A cell is wet for the MAE when the forecast or the observation reaches
/// this rate, mm/h.
pub const WET_MM_H: f32 = 0.1;
/// Bins of the reliability table.
pub const RELIABILITY_BINS: usize = verify::SKILL_BINS;
/// Hours in the ring of bucket slots (8 days: a 7-day window is always whole).
pub const RING_HOURS: i64 = 8 * 24;
/// Compare-and-set attempts on a bucket before giving up.
const MAX_CAS_ATTEMPTS: usize = 16;

/// Why the skill could not be recorded or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkillError {
    #[error("skill store: {0}")]
    Store(#[from] StoreError),
    #[error("skill record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("skill record {key}: still changing after {attempts} compare-and-set attempts")]
    Contended { key: String, attempts: usize },
    #[error("unknown skill window {given:?} (use 24h or 7d)")]
    BadWindow { given: String },
}

/// The forecasts scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The nowcast's stored frames.
    Raincast,
    /// The observed field at the issue time, unchanged.
    Persistence,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 2] = [Method::Raincast, Method::Persistence];

    /// Name in records and responses.
    pub fn name(self) -> &'static str {
        match self {
            Method::Raincast => "raincast",
            Method::Persistence => "persistence",
        }
    }
}

/// Additive verification sums of one method at one lead over some cases
/// (the scorer of `raincast verify`, filled in one pass by
/// [`verify::skill_sums_of`]).
pub use verify::SkillSums as Sums;

impl MethodSkill {
    /// The pooled scores of some sums.
    pub fn of(s: &Sums) -> MethodSkill {
        MethodSkill {
            cases: s.cases,
            csi: CSI_THRESHOLDS_MM_H
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, s.contingency(i).csi()))
                .collect(),
            fss: s.fss(),
            mae_wet_mm_h: s.mae_wet(),
            brier: s.brier(),
            reliability: s.reliability().table(),
            sums: s.clone(),
        }
    }
}

/// Pooled scores of one method at one lead over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSkill {
    /// Scans scored.
    pub cases: u64,
    /// `(threshold mm/h, CSI)` per threshold of [`CSI_THRESHOLDS_MM_H`];
    /// `None` without any event.
    pub csi: Vec<(f32, Option<f64>)>,
    /// FSS at 1 mm/h, 10 km window.
    pub fss: Option<f64>,
    /// Mean absolute error over wet cells, mm/h.
    pub mae_wet_mm_h: Option<f64>,
    /// Brier score of the probability of rain.
    pub brier: Option<f64>,
    /// Non-empty bins: `(low, high, cells, mean forecast probability,
    /// observed frequency)`.
    pub reliability: Vec<(f64, f64, u64, f64, f64)>,
    /// The sums behind the scores.
    pub sums: Sums,
}

impl MethodSkill {
    /// The calibration of the probability fitted on this reliability table
    /// (isotonic, [`verify::Calibration`]) once it holds at least
    /// `min_samples` cells; `None` before: the raw probability is served.
    pub fn calibration(&self, min_samples: u64) -> Option<verify::Calibration> {
        let table = self.sums.reliability();
        if table.cells() < min_samples.max(1) {
            return None;
        }
        verify::Calibration::fit(&table)
    }
}

/// Both methods' sums at one lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadSums {
    pub raincast: Sums,
    pub persistence: Sums,
}

impl LeadSums {
    fn add(&mut self, o: &LeadSums) {
        self.raincast.add(&o.raincast);
        self.persistence.add(&o.persistence);
    }
}

/// One hourly bucket record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Bucket {
    /// Start of the hour of the verifying scans.
    hour: DateTime<Utc>,
    /// The probability's threshold the Brier sums and the reliability table
    /// are of, mm/h (absent in records written before it was kept: the
    /// default, [`DEFAULT_PROB_THRESHOLD_MM_H`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prob_threshold_mm_h: Option<f32>,
    /// Per lead (minutes).
    leads: BTreeMap<u32, LeadSums>,
}

/// `[nowcast] probability_threshold_mm_h`'s default, mm/h: that of the
/// records that do not say theirs.
pub const DEFAULT_PROB_THRESHOLD_MM_H: f32 = 0.1;

impl Bucket {
    fn new(hour: DateTime<Utc>, threshold: f32) -> Self {
        Self {
            hour,
            prob_threshold_mm_h: Some(threshold),
            leads: BTreeMap::new(),
        }
    }

    /// Whether its probability is of rain at least `threshold` mm/h.
    fn of_threshold(&self, threshold: f32) -> bool {
        let t = self
            .prob_threshold_mm_h
            .unwrap_or(DEFAULT_PROB_THRESHOLD_MM_H);
        (t - threshold).abs() <= 1e-6 * threshold.abs().max(1.0)
    }
}

/// A window of [`skill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last 24 hourly buckets.
    Day,
    /// The last 168 hourly buckets.
    Week,
}

impl Window {
    /// Hours in the window.
    pub fn hours(self) -> i64 {
        match self {
            Window::Day => 24,
            Window::Week => 7 * 24,
        }
    }

    /// `24h` or `7d`.
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }
}

impl std::str::FromStr for Window {
    type Err = SkillError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "24h" => Ok(Window::Day),
            "7d" => Ok(Window::Week),
            other => Err(SkillError::BadWindow {
                given: other.chars().take(32).collect(),
            }),
        }
    }
}

/// The skill of one lead over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadSkill {
    pub lead_min: u32,
    pub raincast: MethodSkill,
    pub persistence: MethodSkill,
}

impl MethodSkill {
    /// The CSI at 1 mm/h (`None` without any event).
    pub fn csi_1mm_h(&self) -> Option<f64> {
        self.csi
            .iter()
            .find(|(t, _)| *t == 1.0)
            .and_then(|(_, c)| *c)
    }
}

/// The skill of a radar over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillReport {
    pub radar: String,
    pub window: Window,
    /// Start of the oldest and end of the newest hour of the window (UTC);
    /// `None` when nothing was scored yet.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Per lead, shortest first.
    pub leads: Vec<LeadSkill>,
}

impl SkillReport {
    /// Raincast's CSI at 1 mm/h at a lead, when scored and defined.
    pub fn raincast_csi_1mm_h(&self, lead_min: u32) -> Option<f64> {
        self.leads
            .iter()
            .find(|l| l.lead_min == lead_min)
            .and_then(|l| l.raincast.csi_1mm_h())
    }
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn bucket_prefix(radar: &str) -> String {
    format!("skill/{radar}/h/")
}

fn bucket_key(radar: &str, hour: DateTime<Utc>) -> String {
    let slot = (hour.timestamp() / 3600).rem_euclid(RING_HOURS);
    format!("{}{slot:03}", bucket_prefix(radar))
}

fn claim_key(radar: &str, t: DateTime<Utc>) -> String {
    let second = t.timestamp().rem_euclid(RING_HOURS * 3600);
    format!("skill/{radar}/claim/{second:06}")
}

/// Claims the scoring of the scan of `radar` at `t`: true for exactly one
/// caller per scan, whichever instance asks first.
pub async fn claim(
    state: &dyn StateStore,
    radar: &str,
    t: DateTime<Utc>,
) -> Result<bool, SkillError> {
    let key = claim_key(radar, t);
    let value = t.to_rfc3339();
    match state.put_record(&key, &value, None).await {
        Ok(_) => return Ok(true),
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Taken: by this scan, or by the scan at the same second one ring ago.
    let Some(old) = state.get_record(&key).await? else {
        return Ok(false);
    };
    let older = DateTime::parse_from_rfc3339(&old.value).is_ok_and(|o| o.with_timezone(&Utc) < t);
    if !older {
        return Ok(false);
    }
    match state.put_record(&key, &value, Some(old.version)).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether the scoring of the scan of `radar` at `t` has been claimed
/// already (by any instance); a read only, [`claim`] decides.
pub async fn claimed(
    state: &dyn StateStore,
    radar: &str,
    t: DateTime<Utc>,
) -> Result<bool, SkillError> {
    Ok(state
        .get_record(&claim_key(radar, t))
        .await?
        .and_then(|r| DateTime::parse_from_rfc3339(&r.value).ok())
        .is_some_and(|c| c.with_timezone(&Utc) == t))
}

/// Adds the sums of the scan at `t` (per lead), whose probability is of
/// rain at least `threshold` mm/h, to its hourly bucket, with
/// compare-and-set retries. A slot still holding an hour later than `t`'s
/// (`t` is more than a ring older) keeps it and the sums are dropped. A
/// bucket of the same hour kept for another threshold (the setting
/// changed) is started afresh: sums of two events are never added.
pub async fn record(
    state: &dyn StateStore,
    radar: &str,
    t: DateTime<Utc>,
    threshold: f32,
    leads: &BTreeMap<u32, LeadSums>,
) -> Result<(), SkillError> {
    let hour = hour_of(t);
    let key = bucket_key(radar, hour);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let stored = state.get_record(&key).await?;
        let expected = stored.as_ref().map(|r| r.version);
        let mut bucket = match stored.map(|r| serde_json::from_str::<Bucket>(&r.value)) {
            Some(Ok(b)) if b.hour == hour && b.of_threshold(threshold) => b,
            Some(Ok(b)) if b.hour == hour => {
                tracing::warn!(%key, was = ?b.prob_threshold_mm_h, now = threshold,
                    "the probability's threshold changed: this hour's live skill starts afresh");
                Bucket::new(hour, threshold)
            }
            Some(Ok(b)) if b.hour > hour => {
                tracing::debug!(radar, %t, "scan older than the skill ring; not recorded");
                return Ok(());
            }
            Some(Err(e)) => {
                tracing::warn!(%key, error = %e, "skill bucket does not parse; reset");
                Bucket::new(hour, threshold)
            }
            _ => Bucket::new(hour, threshold),
        };
        for (lead, s) in leads {
            bucket.leads.entry(*lead).or_default().add(s);
        }
        let value = serde_json::to_string(&bucket).map_err(|e| SkillError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        match state.put_record(&key, &value, expected).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SkillError::Contended {
        key,
        attempts: MAX_CAS_ATTEMPTS,
    })
}

/// The skill of `radar` over `window`, ending with the hour of `until`
/// (default: the newest bucket's hour, the data clock), from the hours
/// recorded with the probability of rain at least `threshold` mm/h (a
/// change of `probability_threshold_mm_h` starts the record afresh; the
/// other hours are left out whole, so every score of a window is of the
/// same cases).
pub async fn skill(
    state: &dyn StateStore,
    radar: &str,
    window: Window,
    until: Option<DateTime<Utc>>,
    threshold: f32,
) -> Result<SkillReport, SkillError> {
    let mut buckets = Vec::new();
    for (key, r) in state.list_records(&bucket_prefix(radar)).await? {
        match serde_json::from_str::<Bucket>(&r.value) {
            Ok(b) if b.of_threshold(threshold) => buckets.push(b),
            Ok(_) => {}
            Err(e) => tracing::warn!(%key, error = %e, "skill bucket does not parse; skipped"),
        }
    }
    let last = until
        .map(hour_of)
        .or_else(|| buckets.iter().map(|b| b.hour).max());
    let mut sums: BTreeMap<u32, LeadSums> = BTreeMap::new();
    let from = last.map(|l| l - Duration::hours(window.hours() - 1));
    if let (Some(from), Some(last)) = (from, last) {
        for b in buckets.iter().filter(|b| b.hour >= from && b.hour <= last) {
            for (lead, s) in &b.leads {
                sums.entry(*lead).or_default().add(s);
            }
        }
    }
    Ok(SkillReport {
        radar: radar.to_string(),
        window,
        from,
        until: last.map(|l| l + Duration::hours(1)),
        leads: sums
            .into_iter()
            .map(|(lead_min, s)| LeadSkill {
                lead_min,
                raincast: MethodSkill::of(&s.raincast),
                persistence: MethodSkill::of(&s.persistence),
            })
            .collect(),
    })
}

/// The sums of one case at one lead, in one streaming pass
/// ([`verify::skill_sums_of`], the scorer of `raincast verify`): the frame
/// `rate` (mm/h) with its neighbourhood probability of radius `rate.1`
/// cells (computed row by row as the scorer goes, no probability field),
/// and persistence `persist` (mm/h, a yes/no forecast: probability 1 where
/// it reaches `prob_threshold`, else 0), against `obs` (mm/h), on the cells
/// where all three rate fields are finite. `None` when the shapes differ.
pub fn case_sums(
    rate: (&ArrayView2<f32>, usize),
    persist: &ArrayView2<f32>,
    obs: &ArrayView2<f32>,
    prob_threshold: f32,
    fss_window: usize,
) -> Option<LeadSums> {
    let spec = verify::SkillSpec {
        fss_threshold: FSS_THRESHOLD_MM_H,
        fss_window,
        wet_mm_h: WET_MM_H,
        prob_threshold,
    };
    let mut sums = verify::skill_sums_of(
        obs,
        &[
            (rate.0.view(), verify::Prob::Neighbourhood(rate.1)),
            (persist.view(), verify::Prob::YesNo),
        ],
        &spec,
    )?
    .into_iter();
    Some(LeadSums {
        raincast: sums.next()?,
        persistence: sums.next()?,
    })
}

/// The FSS window in cells for a grid with cells of `cell_m` metres.
pub fn fss_window_cells(cell_m: f64) -> usize {
    ((FSS_WINDOW_KM * 1000.0 / cell_m.max(1.0)).round() as usize).max(1)
}
