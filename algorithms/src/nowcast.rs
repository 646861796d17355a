//! The nowcast: motion + extrapolation + scale-dependent smoothing, with a
//! probability of rain and point series with a one-line summary.
//!
//! # Pipeline ([`nowcast`])
//! 1. **Validate** the inputs ([`NowcastInput::new`]): at least
//!    [`MIN_FRAMES`] rain fields, oldest first, on one grid, equally spaced
//!    in time; see [`NowcastError`] for every refusal. Only the latest
//!    [`NowcastConfig::frames`] are used (default 3): more frames give the
//!    motion more equations (less noise, longer baseline) but average motion
//!    that changes within the window and cost a decode each; 3 is the usual
//!    compromise (pysteps, rainymotion).
//! 2. **Motion** from those frames ([`crate::motion`]).
//! 3. **Forecast** every lead ([`NowcastInput::forecast`]). With
//!    [`Smoothing::Sprog`] (the default) this is an S-PROG-like forecast
//!    (Seed 2003), built from cheap spatial-domain parts:
//!    * the latest field in dBR (10·log₁₀ R, −15 dBR where dry; no data
//!      filled by push-pull interpolation so it does not bias the filters)
//!      is split into a Laplacian pyramid: band-pass levels of 1, 2, 4, …
//!      cells plus a coarse residual;
//!    * for every level, the **Lagrangian** lag-1 and lag-2 correlations are
//!      measured from the data (the previous two fields advected onto the
//!      latest), and an AR(2) autocorrelation function is derived from them;
//!    * the forecast at lead *n* weights level *k* by its autocorrelation at
//!      lag *n*: small scales, which decorrelate within minutes, fade first
//!      and large scales persist; this is the expected value of the rain
//!      given what is predictable, instead of keeping unpredictable detail in
//!      the wrong places;
//!    * the weighted field is advected (semi-Lagrangian, interpolated once
//!      from the latest field, see [`crate::extrapolate`]);
//!    * its distribution is mapped back onto that of the latest observation
//!      (quantile matching, as in pysteps' S-PROG), so the forecast keeps the
//!      observed wet area and intensities instead of a washed-out field.
//!
//!    With [`Smoothing::None`], the latest rain rate is simply advected.
//! 4. **Probability** of rain ≥ a threshold ([`Nowcast::probability`]): the
//!    fraction of forecast cells above the threshold in a square neighbourhood
//!    whose half-width grows with lead, `r = r₀ + g · lead` (default 2 km +
//!    0.12 km/min, about 9 km at one hour). This expresses the typical
//!    position error of extrapolation, which grows roughly linearly with lead.
//! 5. **Point series** ([`Nowcast::point`]): rate and probability per lead at
//!    one cell, plus a summary sentence ([`summary_text`]).
//!
//! # Intensity bands ([`Intensity`])
//! dry < 0.1 mm/h ≤ light < 2.5 mm/h ≤ moderate < 10 mm/h ≤ heavy (the usual
//! meteorological bands for rain rate).
//!
//! # Degenerate inputs
//! Frames that are all zero rain are valid: the nowcast is zero rain where the
//! source is known and NaN where it is not, the motion is zero. Frames that
//! are entirely no data are refused ([`NowcastError::AllNoData`]): there is
//! nothing to forecast from.

use crate::extrapolate::{displacements, warp_into, Displacement, ExtrapolateError};
use crate::grid::Grid;
use crate::motion::{self, to_dbr, MotionConfig, MotionError, MotionField};
use crate::prep::RainField;
use crate::raster::{expand_into, reduce, upsample, Img};
use chrono::{DateTime, Utc};
use ndarray::{Array2, ArrayView2};
use std::fmt;

/// The fewest input fields a nowcast accepts (motion from two pairs, lag-1
/// and lag-2 correlations for the smoothing).
pub const MIN_FRAMES: usize = 3;

/// Longest lead accepted, minutes.
pub const MAX_LEAD_MIN: u32 = 360;

/// Longest accepted interval between input fields, seconds: beyond 30 min rain
/// changes too much between scans for its motion to be tracked.
pub const MAX_STEP_S: i64 = 1800;

/// Why a nowcast was refused. Every variant says what is wrong with which
/// input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NowcastError {
    /// Not enough input fields.
    #[error("a nowcast needs at least {needed} consecutive fields, got {got}")]
    TooFewFrames { needed: usize, got: usize },
    /// A field is on another grid than the latest one.
    #[error("field {index} ({time}) is on a different grid than the latest field: {found} vs {expected}")]
    GridMismatch {
        index: usize,
        time: DateTime<Utc>,
        expected: String,
        found: String,
    },
    /// A field's array does not have its grid's shape.
    #[error("field {index} has an array of shape {found:?} but its grid is {expected:?}")]
    ShapeMismatch {
        index: usize,
        expected: (usize, usize),
        found: (usize, usize),
    },
    /// The times are not strictly increasing (oldest first is required).
    #[error(
        "field times must increase (oldest first): field {index} at {time} follows {previous}"
    )]
    NotIncreasing {
        index: usize,
        previous: DateTime<Utc>,
        time: DateTime<Utc>,
    },
    /// The intervals between fields differ.
    #[error("irregular time steps: times {}, intervals {} s; a nowcast needs equally spaced fields", fmt_times(.times), fmt_steps(.steps_s))]
    IrregularSteps {
        times: Vec<DateTime<Utc>>,
        steps_s: Vec<i64>,
    },
    /// The interval between fields is too long to track motion.
    #[error(
        "interval of {step_s} s between fields is longer than the {max_s} s a nowcast can track"
    )]
    StepTooLong { step_s: i64, max_s: i64 },
    /// A field has no data at all.
    #[error("field {index} ({time}) has no data at all (every cell is no data)")]
    AllNoData { index: usize, time: DateTime<Utc> },
    /// No lead time was asked for.
    #[error("no lead times requested")]
    NoLeads,
    /// A lead time is out of range.
    #[error("lead {lead_min} min is out of range (0..={max_min} min)")]
    BadLead { lead_min: u32, max_min: u32 },
    /// Motion estimation failed.
    #[error("motion: {0}")]
    Motion(#[from] MotionError),
    /// Extrapolation failed.
    #[error("extrapolation: {0}")]
    Extrapolate(#[from] ExtrapolateError),
}

fn fmt_times(times: &[DateTime<Utc>]) -> String {
    times
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_steps(steps: &[i64]) -> String {
    steps
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the advected field is post-processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    /// Plain extrapolation of the latest rain rate.
    None,
    /// S-PROG-like scale-dependent smoothing with quantile matching (default).
    Sprog,
}

/// Tuning of the nowcast. Defaults are physically motivated, not fitted to
/// any data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NowcastConfig {
    /// Latest fields used (≥ [`MIN_FRAMES`]; smaller values count as 3).
    pub frames: usize,
    /// Motion estimation.
    pub motion: MotionConfig,
    /// Post-processing of the advected field.
    pub smoothing: Smoothing,
    /// Rain threshold, mm/h (default 0.1): lower rates are dry.
    pub rain_threshold_mm_h: f32,
    /// Tolerance on unequal intervals: each interval may differ from the
    /// latest by this fraction (default 0.1) or 30 s, whichever is larger.
    pub step_tolerance: f32,
    /// Probability neighbourhood half-width at lead 0, km (default 2).
    pub prob_radius_km: f32,
    /// Growth of that half-width per minute of lead, km/min (default 0.12).
    pub prob_radius_growth_km_per_min: f32,
}

impl Default for NowcastConfig {
    fn default() -> Self {
        Self {
            frames: MIN_FRAMES,
            motion: MotionConfig::default(),
            smoothing: Smoothing::Sprog,
            rain_threshold_mm_h: 0.1,
            step_tolerance: 0.1,
            prob_radius_km: 2.0,
            prob_radius_growth_km_per_min: 0.12,
        }
    }
}

/// Validated inputs of a nowcast (borrowing the fields).
#[derive(Debug)]
pub struct NowcastInput<'a> {
    frames: &'a [RainField],
    cfg: NowcastConfig,
    step_s: i64,
}

impl<'a> NowcastInput<'a> {
    /// Validates `frames` (oldest first). Only the latest `cfg.frames` are
    /// used and checked; older ones are ignored.
    pub fn new(frames: &'a [RainField], cfg: &NowcastConfig) -> Result<Self, NowcastError> {
        let want = cfg.frames.max(MIN_FRAMES);
        if frames.len() < MIN_FRAMES {
            return Err(NowcastError::TooFewFrames {
                needed: MIN_FRAMES,
                got: frames.len(),
            });
        }
        let offset = frames.len().saturating_sub(want);
        let used = &frames[offset..];
        let latest = &used[used.len() - 1];
        for (i, f) in used.iter().enumerate() {
            let index = offset + i;
            let expected = f.grid.shape();
            if f.rate_mm_h.dim() != expected {
                return Err(NowcastError::ShapeMismatch {
                    index,
                    expected,
                    found: f.rate_mm_h.dim(),
                });
            }
            if !f.grid.same_geometry(&latest.grid) {
                return Err(NowcastError::GridMismatch {
                    index,
                    time: f.time,
                    expected: describe_grid(&latest.grid),
                    found: describe_grid(&f.grid),
                });
            }
        }
        for i in 1..used.len() {
            if used[i].time <= used[i - 1].time {
                return Err(NowcastError::NotIncreasing {
                    index: offset + i,
                    previous: used[i - 1].time,
                    time: used[i].time,
                });
            }
        }
        let steps_s: Vec<i64> = used
            .windows(2)
            .map(|w| (w[1].time - w[0].time).num_seconds())
            .collect();
        let step_s = steps_s[steps_s.len() - 1];
        let tol = (cfg.step_tolerance as f64 * step_s as f64).max(30.0);
        if steps_s.iter().any(|s| (s - step_s).abs() as f64 > tol) {
            return Err(NowcastError::IrregularSteps {
                times: used.iter().map(|f| f.time).collect(),
                steps_s,
            });
        }
        if step_s > MAX_STEP_S {
            return Err(NowcastError::StepTooLong {
                step_s,
                max_s: MAX_STEP_S,
            });
        }
        for (i, f) in used.iter().enumerate() {
            if !f.rate_mm_h.iter().any(|v| v.is_finite()) {
                return Err(NowcastError::AllNoData {
                    index: offset + i,
                    time: f.time,
                });
            }
        }
        Ok(Self {
            frames: used,
            cfg: *cfg,
            step_s,
        })
    }

    /// Seconds between the fields.
    pub fn step_s(&self) -> i64 {
        self.step_s
    }

    /// The latest field (the nowcast's base).
    pub fn latest(&self) -> &RainField {
        &self.frames[self.frames.len() - 1]
    }

    /// Estimates the motion from the used fields.
    pub fn motion(&self) -> Result<MotionField, NowcastError> {
        let views: Vec<ArrayView2<f32>> = self.frames.iter().map(|f| f.rate_mm_h.view()).collect();
        let cell_km = (self.latest().grid.cell_m() / 1000.0) as f32;
        Ok(motion::estimate(&views, cell_km, &self.cfg.motion)?)
    }

    /// Forecasts every lead (minutes after the latest field) with `motion`.
    pub fn forecast(
        &self,
        motion: MotionField,
        leads_min: &[u32],
    ) -> Result<Nowcast, NowcastError> {
        if leads_min.is_empty() {
            return Err(NowcastError::NoLeads);
        }
        if let Some(&bad) = leads_min.iter().find(|l| **l > MAX_LEAD_MIN) {
            return Err(NowcastError::BadLead {
                lead_min: bad,
                max_min: MAX_LEAD_MIN,
            });
        }
        let latest = self.latest();
        let step_min = self.step_s as f32 / 60.0;
        let mut lead_steps: Vec<f32> = leads_min.iter().map(|l| *l as f32 / step_min).collect();
        let n_leads = lead_steps.len();
        let sprog = self.cfg.smoothing == Smoothing::Sprog;
        if sprog {
            // Lags 1 and 2 to measure the Lagrangian correlations.
            lead_steps.extend([1.0, 2.0]);
        }
        let disp = displacements(&motion, &lead_steps)?;
        let (rows, cols) = latest.grid.shape();
        let mut fields = Vec::with_capacity(n_leads);
        let mut correlations = Vec::new();
        if sprog {
            let n = self.frames.len();
            let sp = Sprog::new(
                &self.frames[n - 1].rate_mm_h.view(),
                &self.frames[n - 2].rate_mm_h.view(),
                &self.frames[n - 3].rate_mm_h.view(),
                &disp[n_leads],
                &disp[n_leads + 1],
                &self.cfg,
            );
            correlations = sp.rho.clone();
            fields = sp.forecast_all(&disp[..n_leads], &lead_steps[..n_leads]);
        } else {
            let src = Img::from_view(&latest.rate_mm_h.view());
            for d in &disp[..n_leads] {
                let mut out = Vec::new();
                warp_into(&src, d, &mut out);
                fields.push(
                    Img {
                        rows,
                        cols,
                        data: out,
                    }
                    .into_array(),
                );
            }
        }
        // As in the hot prep: rates below the rain threshold are dry (the
        // interpolation and the cascade leave small positive values at the
        // edges of rain); no data stays NaN.
        let thr = self.cfg.rain_threshold_mm_h;
        for f in &mut fields {
            f.mapv_inplace(|v| if v < thr { 0.0 } else { v });
        }
        Ok(Nowcast {
            grid: latest.grid.clone(),
            base_time: latest.time,
            step_s: self.step_s,
            leads_min: leads_min.to_vec(),
            rate_mm_h: fields,
            observed_mm_h: latest.rate_mm_h.clone(),
            motion,
            level_correlations: correlations,
            prob_radius_km: self.cfg.prob_radius_km,
            prob_radius_growth_km_per_min: self.cfg.prob_radius_growth_km_per_min,
            rain_threshold_mm_h: self.cfg.rain_threshold_mm_h,
        })
    }
}

fn describe_grid(g: &Grid) -> String {
    format!(
        "{}×{} cells of {:.0}×{:.0} m from ({:.0}, {:.0}) in {}",
        g.rows,
        g.cols,
        g.cell_x_m,
        g.cell_y_m,
        g.x_west_m,
        g.y_north_m,
        g.projection.trim()
    )
}

/// Runs the whole nowcast: validation, motion, forecast of each lead
/// (minutes after the latest field).
pub fn nowcast(
    frames: &[RainField],
    leads_min: &[u32],
    cfg: &NowcastConfig,
) -> Result<Nowcast, NowcastError> {
    let input = NowcastInput::new(frames, cfg)?;
    let motion = input.motion()?;
    input.forecast(motion, leads_min)
}

/// A nowcast: forecast rain rates for several leads after `base_time`.
#[derive(Debug, Clone)]
pub struct Nowcast {
    /// Grid of every field (that of the latest input).
    pub grid: Grid,
    /// Time of the latest input field (UTC).
    pub base_time: DateTime<Utc>,
    /// Interval between the input fields, seconds.
    pub step_s: i64,
    /// Lead times, minutes after `base_time`, in the order asked.
    pub leads_min: Vec<u32>,
    /// Forecast rain rate per lead, mm/h, `(rows, cols)`, row 0 north; NaN
    /// where the source lies outside the grid or in no data.
    pub rate_mm_h: Vec<Array2<f32>>,
    /// The latest observed field (mm/h), the "now" of point series.
    pub observed_mm_h: Array2<f32>,
    /// The motion used, pixels per step.
    pub motion: MotionField,
    /// Lagrangian `(lag-1, lag-2)` correlation of each pyramid level, finest
    /// first (empty without smoothing). Diagnostics.
    pub level_correlations: Vec<(f32, f32)>,
    prob_radius_km: f32,
    prob_radius_growth_km_per_min: f32,
    rain_threshold_mm_h: f32,
}

impl Nowcast {
    /// Valid time of lead `i`.
    pub fn valid_time(&self, i: usize) -> DateTime<Utc> {
        self.base_time
            + chrono::Duration::minutes(self.leads_min.get(i).copied().unwrap_or(0) as i64)
    }

    /// Half-width of the probability neighbourhood at a lead, in cells.
    pub fn prob_radius_cells(&self, lead_min: u32) -> usize {
        let km = self.prob_radius_km + self.prob_radius_growth_km_per_min * lead_min as f32;
        let cell_km = (self.grid.cell_m() / 1000.0).max(1e-3) as f32;
        (km / cell_km).round().max(0.0) as usize
    }

    /// Probability (0..1) of rain ≥ `threshold_mm_h` per cell and lead: the
    /// fraction of forecast cells at or above the threshold among the known
    /// cells of the neighbourhood. NaN where the forecast is unknown.
    pub fn probability(&self, threshold_mm_h: f32) -> Vec<Array2<f32>> {
        self.rate_mm_h
            .iter()
            .zip(&self.leads_min)
            .map(|(f, &lead)| {
                neighbourhood_probability(&f.view(), threshold_mm_h, self.prob_radius_cells(lead))
            })
            .collect()
    }

    /// Rate and probability of rain ≥ `threshold_mm_h` per lead at one cell,
    /// with a summary sentence. `None` outside the grid.
    pub fn point(&self, row: usize, col: usize, threshold_mm_h: f32) -> Option<PointSeries> {
        let (rows, cols) = self.grid.shape();
        if row >= rows || col >= cols {
            return None;
        }
        let mut rate = Vec::with_capacity(self.leads_min.len());
        let mut prob = Vec::with_capacity(self.leads_min.len());
        for (f, &lead) in self.rate_mm_h.iter().zip(&self.leads_min) {
            let v = f[[row, col]];
            rate.push(v);
            prob.push(if v.is_nan() {
                f32::NAN
            } else {
                window_fraction(
                    &f.view(),
                    row,
                    col,
                    self.prob_radius_cells(lead),
                    threshold_mm_h,
                )
            });
        }
        let now = self.observed_mm_h[[row, col]];
        let summary = summary_text(now, &self.leads_min, &rate, &prob);
        Some(PointSeries {
            row,
            col,
            now_mm_h: now,
            leads_min: self.leads_min.clone(),
            rate_mm_h: rate,
            probability: prob,
            summary,
        })
    }

    /// [`Nowcast::point`] at a WGS84 lon/lat; `None` outside the grid.
    pub fn point_lonlat(&self, lon: f64, lat: f64, threshold_mm_h: f32) -> Option<PointSeries> {
        let (row, col) = self.grid.cell_at_lonlat(lon, lat)?;
        self.point(row, col, threshold_mm_h)
    }

    /// The rain threshold the nowcast was made with, mm/h.
    pub fn rain_threshold_mm_h(&self) -> f32 {
        self.rain_threshold_mm_h
    }
}

/// The forecast at one place.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSeries {
    pub row: usize,
    pub col: usize,
    /// Observed rate at the base time, mm/h (NaN = no data).
    pub now_mm_h: f32,
    /// Leads, minutes.
    pub leads_min: Vec<u32>,
    /// Forecast rate per lead, mm/h (NaN = unknown).
    pub rate_mm_h: Vec<f32>,
    /// Probability of rain at or above the requested threshold per lead.
    pub probability: Vec<f32>,
    /// One line such as "Light rain starting in about 15 min, easing after 40 min".
    pub summary: String,
}

/// Rain intensity bands, mm/h: dry < 0.1 ≤ light < 2.5 ≤ moderate < 10 ≤ heavy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Intensity {
    Dry,
    Light,
    Moderate,
    Heavy,
}

impl Intensity {
    /// Lower bound of light rain, mm/h.
    pub const LIGHT_MM_H: f32 = 0.1;
    /// Lower bound of moderate rain, mm/h.
    pub const MODERATE_MM_H: f32 = 2.5;
    /// Lower bound of heavy rain, mm/h.
    pub const HEAVY_MM_H: f32 = 10.0;

    /// The band of a rate (NaN counts as dry; callers check unknowns first).
    pub fn of(rate_mm_h: f32) -> Self {
        if rate_mm_h >= Self::HEAVY_MM_H {
            Intensity::Heavy
        } else if rate_mm_h >= Self::MODERATE_MM_H {
            Intensity::Moderate
        } else if rate_mm_h >= Self::LIGHT_MM_H {
            Intensity::Light
        } else {
            Intensity::Dry
        }
    }

    /// Lower-case word: "dry", "light", "moderate", "heavy".
    pub fn word(self) -> &'static str {
        match self {
            Intensity::Dry => "dry",
            Intensity::Light => "light",
            Intensity::Moderate => "moderate",
            Intensity::Heavy => "heavy",
        }
    }

    fn capitalised(self) -> &'static str {
        match self {
            Intensity::Dry => "Dry",
            Intensity::Light => "Light",
            Intensity::Moderate => "Moderate",
            Intensity::Heavy => "Heavy",
        }
    }
}

impl fmt::Display for Intensity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One line describing a point forecast, e.g. "Light rain starting in about
/// 15 min, easing after 40 min". `now_mm_h` is the observed rate, `rates`
/// and `probs` (same length as `leads_min`, probability of rain, may be empty)
/// the forecast. Unknown (NaN) entries are skipped.
pub fn summary_text(now_mm_h: f32, leads_min: &[u32], rates: &[f32], probs: &[f32]) -> String {
    let series: Vec<(u32, f32, f32)> = leads_min
        .iter()
        .zip(rates)
        .enumerate()
        .filter(|(_, (_, r))| r.is_finite())
        .map(|(i, (l, r))| (*l, *r, probs.get(i).copied().unwrap_or(f32::NAN)))
        .collect();
    let horizon = leads_min.iter().copied().max().unwrap_or(0);
    if series.is_empty() && !now_mm_h.is_finite() {
        return "No radar data here".to_string();
    }
    let band = |r: f32| Intensity::of(r);
    let now = if now_mm_h.is_finite() {
        band(now_mm_h)
    } else {
        Intensity::Dry
    };
    if now == Intensity::Dry {
        let Some(start) = series.iter().position(|s| band(s.1) > Intensity::Dry) else {
            return format!("No rain expected in the next {horizon} min");
        };
        // The spell: from `start` while it keeps raining.
        let end = series[start..]
            .iter()
            .position(|s| band(s.1) == Intensity::Dry)
            .map(|p| start + p);
        let spell = &series[start..end.unwrap_or(series.len())];
        let peak = spell
            .iter()
            .map(|s| band(s.1))
            .max()
            .unwrap_or(Intensity::Light);
        let (t0, _, p0) = series[start];
        let mut text = if p0.is_finite() && p0 < 0.5 {
            format!("{} rain possible in about {t0} min", peak.capitalised())
        } else {
            format!("{} rain starting in about {t0} min", peak.capitalised())
        };
        let last_peak = spell
            .iter()
            .rposition(|s| band(s.1) == peak)
            .map(|p| spell[p].0);
        match (end, last_peak) {
            (Some(e), Some(lp))
                if peak > Intensity::Light && spell.last().map(|s| s.0) != Some(lp) =>
            {
                text.push_str(&format!(
                    ", easing after {lp} min, stopping by {} min",
                    series[e].0
                ));
            }
            (Some(e), _) => text.push_str(&format!(", stopping by {} min", series[e].0)),
            (None, Some(lp)) if spell.last().map(|s| s.0) != Some(lp) => {
                text.push_str(&format!(", easing after {lp} min"));
            }
            _ => {}
        }
        text
    } else {
        let end = series.iter().position(|s| band(s.1) == Intensity::Dry);
        let upto = &series[..end.unwrap_or(series.len())];
        let peak = upto.iter().map(|s| band(s.1)).max().unwrap_or(now);
        let mut text = format!("{} rain now", now.capitalised());
        if peak > now {
            if let Some(s) = upto.iter().find(|s| band(s.1) == peak) {
                text.push_str(&format!(", turning {} in about {} min", peak.word(), s.0));
            }
        } else if let Some(s) = upto.iter().find(|s| band(s.1) < now) {
            if end.is_none() || series[end.unwrap_or(0)].0 != s.0 {
                text.push_str(&format!(", easing in about {} min", s.0));
            }
        }
        match end {
            Some(e) => text.push_str(&format!(", stopping in about {} min", series[e].0)),
            None => text.push_str(&format!(", continuing for the next {horizon} min")),
        }
        text
    }
}

/// Fraction of known cells at or above `threshold` in the square window of
/// half-width `radius` around `(row, col)`.
fn window_fraction(
    f: &ArrayView2<f32>,
    row: usize,
    col: usize,
    radius: usize,
    threshold: f32,
) -> f32 {
    let (rows, cols) = f.dim();
    let (r0, r1) = (row.saturating_sub(radius), (row + radius).min(rows - 1));
    let (c0, c1) = (col.saturating_sub(radius), (col + radius).min(cols - 1));
    let (mut n, mut k) = (0u32, 0u32);
    for r in r0..=r1 {
        for c in c0..=c1 {
            let v = f[[r, c]];
            if v.is_finite() {
                n += 1;
                if v >= threshold {
                    k += 1;
                }
            }
        }
    }
    if n == 0 {
        f32::NAN
    } else {
        k as f32 / n as f32
    }
}

/// Neighbourhood probability over a whole field with integral images: per
/// cell, the fraction of known cells at or above `threshold` in the square
/// window of half-width `radius`; NaN where the field itself is unknown.
pub fn neighbourhood_probability(
    f: &ArrayView2<f32>,
    threshold: f32,
    radius: usize,
) -> Array2<f32> {
    let (rows, cols) = f.dim();
    let src = Img::from_view(f);
    let w = cols + 1;
    // Integral images of "known" and "at or above threshold" counts.
    let mut known = vec![0u32; (rows + 1) * w];
    let mut wet = vec![0u32; (rows + 1) * w];
    for (r, row) in src.data.chunks_exact(cols).enumerate() {
        let (mut rk, mut rw) = (0u32, 0u32);
        let (above, below) = (r * w, (r + 1) * w);
        for (c, v) in row.iter().enumerate() {
            rk += v.is_finite() as u32;
            rw += (*v >= threshold) as u32;
            known[below + c + 1] = known[above + c + 1] + rk;
            wet[below + c + 1] = wet[above + c + 1] + rw;
        }
    }
    let mut out = Img::filled(rows, cols, f32::NAN);
    for (r, orow) in out.data.chunks_exact_mut(cols).enumerate() {
        let (r0, r1) = (r.saturating_sub(radius) * w, (r + radius + 1).min(rows) * w);
        let srow = &src.data[r * cols..(r + 1) * cols];
        for (c, (o, v)) in orow.iter_mut().zip(srow).enumerate() {
            if !v.is_finite() {
                continue;
            }
            let (c0, c1) = (c.saturating_sub(radius), (c + radius + 1).min(cols));
            let n = known[r1 + c1] + known[r0 + c0] - known[r0 + c1] - known[r1 + c0];
            if n > 0 {
                let k = wet[r1 + c1] + wet[r0 + c0] - wet[r0 + c1] - wet[r1 + c0];
                *o = k as f32 / n as f32;
            }
        }
    }
    out.into_array()
}

// ---------------------------------------------------------------------------
// S-PROG-like smoothing.

/// Fills no-data cells by push-pull interpolation (means of coarser and
/// coarser blocks pulled back down), so filters see a smooth continuation
/// instead of an edge. Cells with data are unchanged. An all-NaN image is
/// filled with `fallback`.
fn push_pull_fill(img: &mut Img, fallback: f32) {
    if img.data.iter().all(|v| v.is_finite()) {
        return;
    }
    let mut levels = vec![img.clone()];
    while levels[levels.len() - 1].data.iter().any(|v| v.is_nan())
        && (levels[levels.len() - 1].rows > 1 || levels[levels.len() - 1].cols > 1)
    {
        let prev = &levels[levels.len() - 1];
        levels.push(block_mean_any(prev));
    }
    let top = levels.len() - 1;
    for v in levels[top].data.iter_mut() {
        if v.is_nan() {
            *v = fallback;
        }
    }
    for k in (0..top).rev() {
        let (rows, cols) = (levels[k].rows, levels[k].cols);
        let up = upsample(&levels[k + 1], rows, cols, 2.0);
        for (v, u) in levels[k].data.iter_mut().zip(&up.data) {
            if v.is_nan() {
                *v = *u;
            }
        }
    }
    *img = levels.swap_remove(0);
}

/// 2× block mean of whatever cells are finite (NaN only if none is).
fn block_mean_any(src: &Img) -> Img {
    let rows = src.rows.div_ceil(2);
    let cols = src.cols.div_ceil(2);
    let mut out = Img::filled(rows, cols, f32::NAN);
    for i in 0..rows {
        for j in 0..cols {
            let (mut s, mut n) = (0f32, 0u32);
            for r in 2 * i..(2 * i + 2).min(src.rows) {
                for c in 2 * j..(2 * j + 2).min(src.cols) {
                    let v = src.data[r * src.cols + c];
                    if v.is_finite() {
                        s += v;
                        n += 1;
                    }
                }
            }
            if n > 0 {
                out.data[i * cols + j] = s / n as f32;
            }
        }
    }
    out
}

/// A Laplacian pyramid (Burt & Adelson 1983) of a gap-free image:
/// `gauss[0]` is the image, `gauss[k+1] = REDUCE(gauss[k])` (5-tap binomial
/// blur, every second sample); band `k` is `gauss[k] − EXPAND(gauss[k+1])`,
/// which holds wavelengths of roughly 2^(k+1) to 2^(k+2) cells.
struct Pyramid {
    gauss: Vec<Img>,
    bands: Vec<Img>,
}

/// Number of band-pass levels for a grid: halve while the short side stays
/// at least 16 cells.
fn pyramid_levels(rows: usize, cols: usize) -> usize {
    let mut k = 0;
    while (rows.min(cols) >> (k + 1)) >= 16 {
        k += 1;
    }
    k
}

impl Pyramid {
    fn new(img: Img, levels: usize) -> Self {
        let mut gauss = vec![img];
        for _ in 0..levels {
            let next = reduce(&gauss[gauss.len() - 1]);
            gauss.push(next);
        }
        let bands = (0..levels)
            .map(|k| {
                let g = &gauss[k];
                let mut up = Img::filled(g.rows, g.cols, 0.0);
                expand_into(&gauss[k + 1], &mut up);
                up.data
                    .iter_mut()
                    .zip(&g.data)
                    .for_each(|(u, x)| *u = x - *u);
                up
            })
            .collect();
        Self { gauss, bands }
    }
}

/// Pearson correlation of two images over cells where `mask` is finite.
fn masked_corr(a: &Img, b: &Img, mask: &Img) -> Option<f32> {
    let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for ((x, y), m) in a.data.iter().zip(&b.data).zip(&mask.data) {
        if m.is_finite() {
            let (x, y) = (*x as f64, *y as f64);
            n += 1.0;
            sa += x;
            sb += y;
            saa += x * x;
            sbb += y * y;
            sab += x * y;
        }
    }
    if n < 16.0 {
        return None;
    }
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    if va <= 1e-9 || vb <= 1e-9 {
        return None;
    }
    Some(((sab - sa * sb / n) / (va * vb).sqrt()) as f32)
}

/// Yule–Walker parameters `(φ1, φ2)` of an AR(2) process with lag-1 and
/// lag-2 correlations `(r1, r2)`. No positive lag-1 correlation means no
/// memory; `r1` is capped at 0.999, and `r2` is kept in `[0, r1]` and in the
/// stationary range `2·r1² − 1 < r2` (as pysteps adjusts it).
pub(crate) fn ar2_params(r1: f32, r2: f32) -> (f32, f32) {
    if r1.is_nan() || r1 <= 0.0 {
        return (0.0, 0.0);
    }
    let r1 = (r1 as f64).min(0.999);
    // Rain decorrelates: r2 ≤ r1; and the stationary range.
    let r2 = (r2 as f64).clamp(0.0, r1).max(2.0 * r1 * r1 - 1.0 + 1e-6);
    let den = 1.0 - r1 * r1;
    (
        (r1 * (1.0 - r2) / den) as f32,
        ((r2 - r1 * r1) / den) as f32,
    )
}

/// Entries of the tabulated quantile function.
const QUANTILES: usize = 8192;

/// The quantile function of the latest observation, tabulated (a small table
/// stays in cache; looking up a sorted copy of the field would not).
struct TargetDistribution {
    /// Rate (mm/h) at quantile `i / (QUANTILES − 1)`.
    table: Vec<f32>,
    /// Rates below this are dry.
    threshold: f32,
}

impl TargetDistribution {
    /// From the latest field in dBR, where `floor` marks dry cells and NaN no
    /// data. Wet values are binned finely (16 384 bins over their range, a
    /// few thousandths of a dB) and interpolated within bins.
    fn new(dbr: &[f32], floor: f32, threshold: f32) -> Self {
        const BINS: usize = 16_384;
        let (mut n, mut lo, mut hi) = (0usize, f32::INFINITY, f32::NEG_INFINITY);
        for &v in dbr {
            if v.is_finite() {
                n += 1;
                if v > floor {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        let mut table = vec![0f32; QUANTILES];
        if n == 0 || lo > hi {
            return Self { table, threshold };
        }
        let width = ((hi - lo) / BINS as f32).max(1e-6);
        let mut counts = vec![0u32; BINS];
        let mut wet = 0usize;
        for &v in dbr {
            if v.is_finite() && v > floor {
                counts[(((v - lo) / width) as usize).min(BINS - 1)] += 1;
                wet += 1;
            }
        }
        let dry = (n - wet) as f64;
        let (mut bin, mut below) = (0usize, 0f64);
        for (i, t) in table.iter_mut().enumerate() {
            let p = i as f64 / (QUANTILES - 1) as f64 * n as f64 - dry;
            if p <= 0.0 {
                continue;
            }
            while bin + 1 < BINS && (below + counts[bin] as f64) < p {
                below += counts[bin] as f64;
                bin += 1;
            }
            let within = if counts[bin] > 0 {
                ((p - below) / counts[bin] as f64).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let x = lo as f64 + (bin as f64 + within) * width as f64;
            *t = 10f64.powf(x / 10.0) as f32;
        }
        Self { table, threshold }
    }

    /// The rate at quantile `q` in [0, 1]; 0 (dry) below the rain threshold.
    #[inline]
    fn quantile(&self, q: f32) -> f32 {
        let x = q.clamp(0.0, 1.0) * (QUANTILES - 1) as f32;
        let i = (x as usize).min(QUANTILES - 2);
        let t = x - i as f32;
        let v = self.table[i] + t * (self.table[i + 1] - self.table[i]);
        if v < self.threshold {
            0.0
        } else {
            v
        }
    }
}

/// Maps `values` (any monotone scale, NaN skipped) onto the target
/// distribution by rank, in place, using a fine histogram for the ranks.
fn quantile_match(values: &mut [f32], target: &TargetDistribution) {
    const BINS: usize = 4096;
    let (mut lo, mut hi, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    for &v in values.iter() {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    if hi <= lo {
        let q = 0.5;
        let out = target.quantile(q);
        values
            .iter_mut()
            .filter(|v| v.is_finite())
            .for_each(|v| *v = out);
        return;
    }
    let scale = (BINS as f32 - 1e-3) / (hi - lo);
    let mut counts = vec![0u32; BINS];
    for &v in values.iter() {
        if v.is_finite() {
            counts[((v - lo) * scale) as usize] += 1;
        }
    }
    let mut below = vec![0u32; BINS];
    let mut acc = 0u32;
    for (b, c) in below.iter_mut().zip(&counts) {
        *b = acc;
        acc += c;
    }
    let inv_n = 1.0 / n as f32;
    for v in values.iter_mut() {
        if v.is_finite() {
            let x = (*v - lo) * scale;
            let bin = x as usize;
            let frac = x - bin as f32;
            let rank = below[bin] as f32 + frac * counts[bin] as f32;
            *v = target.quantile(rank * inv_n);
        }
    }
}

/// Mean and standard deviation of a raster over all its cells.
fn mean_std(img: &Img) -> (f32, f32) {
    let n = img.data.len().max(1) as f64;
    let (mut s, mut ss) = (0f64, 0f64);
    for &v in &img.data {
        s += v as f64;
        ss += v as f64 * v as f64;
    }
    let m = s / n;
    ((m) as f32, ((ss / n - m * m).max(0.0)).sqrt() as f32)
}

/// One pyramid level in the AR(2) model: the standardised anomalies of the
/// latest field (`z0`) and of the previous field advected onto it (`z1`),
/// with the latest field's mean and standard deviation to recompose.
struct Level {
    z0: Img,
    z1: Img,
    mean: f32,
    std: f32,
    phi: (f32, f32),
}

/// Everything the S-PROG-like forecast needs, computed once per nowcast.
///
/// As in pysteps' S-PROG (Seed 2003): every level of the cascade (the band
/// passes and the coarse residual) is standardised and evolves as an AR(2)
/// process in the Lagrangian frame, `z(n+1) = φ1·z(n) + φ2·z(n−1)`, starting
/// from the latest field and the previous one advected onto it. Levels with
/// short memory (small scales) decay within a few steps; large, persistent
/// levels keep their structure and also continue their recent Lagrangian
/// trend, which carries growth and decay. The recomposed field is advected
/// and quantile-matched to the latest observation.
struct Sprog {
    levels: Vec<Level>,
    /// Lag-1 and lag-2 correlation per level, finest first (diagnostics).
    rho: Vec<(f32, f32)>,
    target: TargetDistribution,
    /// Cells without data in the latest field.
    nodata: Vec<bool>,
}

impl Sprog {
    fn new(
        latest: &ArrayView2<f32>,
        prev1: &ArrayView2<f32>,
        prev2: &ArrayView2<f32>,
        d1: &Displacement,
        d2: &Displacement,
        cfg: &NowcastConfig,
    ) -> Self {
        let (thr, floor) = (cfg.rain_threshold_mm_h, cfg.motion.floor_dbr);
        let dbr = |a: &ArrayView2<f32>| {
            let mut img = Img::from_view(a);
            img.data
                .iter_mut()
                .for_each(|v| *v = to_dbr(*v, thr, floor));
            img
        };
        let x0 = dbr(latest);
        let nodata: Vec<bool> = x0.data.iter().map(|v| v.is_nan()).collect();
        let target = TargetDistribution::new(&x0.data, floor, thr);
        let (rows, cols) = (x0.rows, x0.cols);
        let n_bands = pyramid_levels(rows, cols);
        // Previous fields advected onto the latest time (Lagrangian frame).
        let mut buf = Vec::new();
        warp_into(&dbr(prev1), d1, &mut buf);
        let x1 = Img {
            rows,
            cols,
            data: std::mem::take(&mut buf),
        };
        warp_into(&dbr(prev2), d2, &mut buf);
        let x2 = Img {
            rows,
            cols,
            data: buf,
        };
        // Correlations over the cells known in all three fields.
        let mut mask = Img::filled(rows, cols, f32::NAN);
        for (((m, a), b), c) in mask
            .data
            .iter_mut()
            .zip(&x0.data)
            .zip(&x1.data)
            .zip(&x2.data)
        {
            if a.is_finite() && b.is_finite() && c.is_finite() {
                *m = 1.0;
            }
        }
        // The mask at each level: the cells the REDUCE samples sit on.
        let mut masks = vec![mask];
        for _ in 0..n_bands {
            let m = &masks[masks.len() - 1];
            let (r2, c2) = (m.rows.div_ceil(2), m.cols.div_ceil(2));
            let mut next = Img::filled(r2, c2, f32::NAN);
            for i in 0..r2 {
                for j in 0..c2 {
                    next.data[i * c2 + j] = m.data[2 * i * m.cols + 2 * j];
                }
            }
            masks.push(next);
        }
        let pyr = |mut img: Img| {
            push_pull_fill(&mut img, floor);
            Pyramid::new(img, n_bands)
        };
        let (p0, p1, p2) = (pyr(x0), pyr(x1), pyr(x2));
        // Level k < n_bands is band k; level n_bands is the residual.
        let take = |p: Pyramid| -> Vec<Img> {
            let mut v = p.bands;
            v.extend(p.gauss.into_iter().last());
            v
        };
        let (l0, l1, l2) = (take(p0), take(p1), take(p2));
        let mut levels = Vec::with_capacity(l0.len());
        let mut rho = Vec::with_capacity(l0.len());
        for (k, ((a, b), c)) in l0.into_iter().zip(l1).zip(l2).enumerate() {
            let r1 = masked_corr(&a, &b, &masks[k]).unwrap_or(0.0);
            let r2 = masked_corr(&a, &c, &masks[k]).unwrap_or(0.0);
            rho.push((r1, r2));
            let (m0, s0) = mean_std(&a);
            let (m1, s1) = mean_std(&b);
            let standardise = |mut img: Img, m: f32, s: f32| {
                let inv = if s > 1e-6 { 1.0 / s } else { 0.0 };
                img.data.iter_mut().for_each(|v| *v = (*v - m) * inv);
                img
            };
            levels.push(Level {
                z0: standardise(a, m0, s0),
                z1: standardise(b, m1, s1),
                mean: m0,
                std: s0,
                phi: ar2_params(r1, r2),
            });
        }
        Self {
            levels,
            rho,
            target,
            nodata,
        }
    }

    /// Recomposes the field from per-level anomalies `z` (finest first) into
    /// `bufs[0]`, dBR at full resolution.
    fn recompose(&self, z: &[Img], bufs: &mut Vec<Img>) {
        let top = self.levels.len() - 1;
        if bufs.len() != self.levels.len() {
            *bufs = z.to_vec();
        }
        let lv = &self.levels[top];
        for (o, x) in bufs[top].data.iter_mut().zip(&z[top].data) {
            *o = lv.mean + lv.std * x;
        }
        for k in (0..top).rev() {
            let (lo, hi) = bufs.split_at_mut(k + 1);
            let out = &mut lo[k];
            expand_into(&hi[0], out);
            let lv = &self.levels[k];
            for (o, x) in out.data.iter_mut().zip(&z[k].data) {
                *o += lv.mean + lv.std * x;
            }
        }
    }

    /// The forecasts for all leads (steps, any order; may be fractional),
    /// each advected by its displacement, in mm/h.
    fn forecast_all(&self, disp: &[Displacement], lead_steps: &[f32]) -> Vec<Array2<f32>> {
        let mut order: Vec<usize> = (0..lead_steps.len()).collect();
        order.sort_by(|a, b| lead_steps[*a].total_cmp(&lead_steps[*b]));
        let mut out: Vec<Option<Array2<f32>>> = vec![None; lead_steps.len()];
        // AR(2) state per level: z(n) and z(n−1).
        let mut cur: Vec<Img> = self.levels.iter().map(|l| l.z0.clone()).collect();
        let mut prev: Vec<Img> = self.levels.iter().map(|l| l.z1.clone()).collect();
        let mut next: Vec<Img> = cur.clone();
        let mut step = 0u32;
        let advance = |cur: &mut Vec<Img>, prev: &mut Vec<Img>, next: &mut Vec<Img>| {
            for (k, lv) in self.levels.iter().enumerate() {
                let (p1, p2) = lv.phi;
                for ((n, c), p) in next[k].data.iter_mut().zip(&cur[k].data).zip(&prev[k].data) {
                    *n = p1 * c + p2 * p;
                }
            }
            std::mem::swap(prev, cur);
            std::mem::swap(cur, next);
        };
        let mut bufs = Vec::new();
        let mut zbuf: Vec<Img> = cur.clone();
        for idx in order {
            let lead = lead_steps[idx].max(0.0);
            let whole = lead.floor() as u32;
            while step < whole {
                advance(&mut cur, &mut prev, &mut next);
                step += 1;
            }
            let frac = lead - whole as f32;
            let z: &[Img] = if frac > 1e-6 {
                // Between two steps: interpolate the anomalies linearly.
                for (k, lv) in self.levels.iter().enumerate() {
                    let (p1, p2) = lv.phi;
                    for ((o, c), p) in zbuf[k].data.iter_mut().zip(&cur[k].data).zip(&prev[k].data)
                    {
                        let n = p1 * c + p2 * p;
                        *o = c + frac * (n - c);
                    }
                }
                &zbuf
            } else {
                &cur
            };
            self.recompose(z, &mut bufs);
            let field = &mut bufs[0];
            for (v, nodata) in field.data.iter_mut().zip(&self.nodata) {
                if *nodata {
                    *v = f32::NAN;
                }
            }
            // Quantile matching in the Lagrangian frame (as pysteps does),
            // then advection of the rain rate: dry areas are exactly zero
            // there, which the warp copies in bulk.
            quantile_match(&mut field.data, &self.target);
            let mut data = Vec::new();
            warp_into(field, &disp[idx], &mut data);
            let (rows, cols) = (field.rows, field.cols);
            out[idx] = Some(Img { rows, cols, data }.into_array());
        }
        out.into_iter().flatten().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::synth::{local_grid, Coverage, SynthConfig, SynthRadar};
    use crate::verify::Contingency;
    use chrono::Duration;

    fn radar(rows: usize, cols: usize, vel: (f32, f32), coverage: Coverage) -> SynthRadar {
        let grid = local_grid(5.0, 50.0, rows, cols, 1000.0).expect("grid");
        SynthRadar::new(
            grid,
            SynthConfig {
                velocity_px_per_step: vel,
                cells: 20,
                lifetime_steps: (40, 80),
                coverage,
                ..SynthConfig::for_shape(rows, cols)
            },
        )
    }

    fn frames() -> Vec<RainField> {
        radar(96, 128, (2.0, 1.0), Coverage::Full).fields(30, 3)
    }

    #[test]
    fn too_few_frames() {
        let f = frames();
        let err = nowcast(&f[..2], &[10], &NowcastConfig::default()).unwrap_err();
        assert_eq!(err, NowcastError::TooFewFrames { needed: 3, got: 2 });
        assert!(err.to_string().contains("at least 3"));
    }

    #[test]
    fn different_grids() {
        let mut f = frames();
        let other = local_grid(6.0, 50.0, 96, 128, 1000.0).expect("grid");
        f[0].grid = other;
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        assert!(
            matches!(err, NowcastError::GridMismatch { index: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("different grid"));
        // An array that does not fit its grid.
        let mut f = frames();
        f[1].rate_mm_h = Array2::zeros((10, 10));
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        assert!(
            matches!(err, NowcastError::ShapeMismatch { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn irregular_and_unordered_times() {
        let mut f = frames();
        f[0].time -= Duration::seconds(240); // steps of 540 s then 300 s
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        match &err {
            NowcastError::IrregularSteps { times, steps_s } => {
                assert_eq!(times.len(), 3);
                assert_eq!(steps_s, &vec![540, 300]);
            }
            other => panic!("unexpected {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("540, 300") && text.contains(&f[0].time.format("%H:%M:%S").to_string()),
            "{text}"
        );
        // Within the tolerance (10 % or 30 s) is accepted.
        let mut f = frames();
        f[0].time -= Duration::seconds(20);
        assert!(nowcast(&f, &[10], &NowcastConfig::default()).is_ok());
        // Oldest first is required.
        let mut f = frames();
        f.swap(1, 2);
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        assert!(
            matches!(err, NowcastError::NotIncreasing { index: 2, .. }),
            "{err}"
        );
        // Scans an hour apart cannot be tracked.
        let mut f = frames();
        for (i, x) in f.iter_mut().enumerate() {
            x.time += Duration::seconds(3300 * i as i64);
        }
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        assert!(
            matches!(err, NowcastError::StepTooLong { step_s: 3600, .. }),
            "{err}"
        );
    }

    #[test]
    fn all_no_data_is_refused() {
        let mut f = frames();
        f[1].rate_mm_h.fill(f32::NAN);
        let err = nowcast(&f, &[10], &NowcastConfig::default()).unwrap_err();
        assert!(
            matches!(err, NowcastError::AllNoData { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn all_zero_gives_a_zero_nowcast() {
        let mut f = frames();
        for x in f.iter_mut() {
            x.rate_mm_h.fill(0.0);
            x.rate_mm_h[[0, 0]] = f32::NAN;
        }
        for smoothing in [Smoothing::Sprog, Smoothing::None] {
            let cfg = NowcastConfig {
                smoothing,
                ..Default::default()
            };
            let nc = nowcast(&f, &[10, 60], &cfg).expect("valid");
            assert_eq!(nc.motion.max_speed(), 0.0);
            for field in &nc.rate_mm_h {
                assert!(field.iter().all(|v| *v == 0.0 || v.is_nan()));
                assert!(field[[0, 0]].is_nan(), "no data stays unknown");
                assert!(field[[50, 50]] == 0.0);
            }
            let p = nc.point(50, 50, 0.1).expect("inside");
            assert_eq!(p.summary, "No rain expected in the next 60 min");
        }
    }

    #[test]
    fn bad_leads() {
        let f = frames();
        let cfg = NowcastConfig::default();
        assert_eq!(nowcast(&f, &[], &cfg).unwrap_err(), NowcastError::NoLeads);
        assert!(matches!(
            nowcast(&f, &[10, 400], &cfg).unwrap_err(),
            NowcastError::BadLead { lead_min: 400, .. }
        ));
    }

    #[test]
    fn only_the_latest_frames_are_used() {
        let mut f = radar(96, 128, (2.0, 1.0), Coverage::Full).fields(27, 6);
        // An older, irregular, foreign frame is ignored with the default of 3.
        f[0].time -= Duration::seconds(999);
        f[0].grid = local_grid(9.0, 40.0, 96, 128, 1000.0).expect("grid");
        assert!(nowcast(&f, &[10], &NowcastConfig::default()).is_ok());
        let cfg = NowcastConfig {
            frames: 6,
            ..Default::default()
        };
        assert!(nowcast(&f, &[10], &cfg).is_err());
    }

    #[test]
    fn beats_persistence_on_moving_rain() {
        let r = radar(160, 200, (2.5, 1.0), Coverage::Full);
        let all = r.fields(40, 9);
        let (past, future) = all.split_at(3);
        let leads = [15, 30]; // 3 and 6 steps of 5 min
        for smoothing in [Smoothing::None, Smoothing::Sprog] {
            let cfg = NowcastConfig {
                smoothing,
                ..Default::default()
            };
            let nc = nowcast(past, &leads, &cfg).expect("nowcast");
            for (k, obs) in [(0usize, &future[2]), (1, &future[5])] {
                let persistence =
                    Contingency::new(&past[2].rate_mm_h.view(), &obs.rate_mm_h.view(), 1.0)
                        .csi()
                        .expect("events");
                let ours = Contingency::new(&nc.rate_mm_h[k].view(), &obs.rate_mm_h.view(), 1.0)
                    .csi()
                    .expect("events");
                assert!(
                    ours > persistence + 0.1,
                    "{smoothing:?} lead {}: CSI {ours:.3} vs persistence {persistence:.3}",
                    leads[k]
                );
            }
        }
    }

    #[test]
    fn coverage_and_inflow_stay_unknown() {
        let cov = Coverage::Circle {
            centre_row: 60.0,
            centre_col: 60.0,
            radius_px: 55.0,
        };
        let f = radar(120, 120, (3.0, 0.0), cov).fields(30, 3);
        let nc = nowcast(&f, &[30], &NowcastConfig::default()).expect("nowcast");
        let out = &nc.rate_mm_h[0];
        assert!(out[[0, 0]].is_nan(), "outside coverage");
        assert!(out[[60, 8]].is_nan(), "source west of the coverage edge");
        assert!(out[[60, 100]].is_finite());
        assert!(out.iter().filter(|v| v.is_finite()).all(|v| *v >= 0.0));
    }

    #[test]
    fn probability_is_a_fraction_and_widens() {
        let f = frames();
        let nc = nowcast(&f, &[10, 60], &NowcastConfig::default()).expect("nowcast");
        assert!(nc.prob_radius_cells(60) > nc.prob_radius_cells(10));
        let p1 = nc.probability(1.0);
        let p5 = nc.probability(5.0);
        for (a, b) in p1.iter().zip(&p5) {
            for (x, y) in a.iter().zip(b) {
                if x.is_finite() {
                    assert!((0.0..=1.0).contains(x));
                    assert!(y <= x, "a higher threshold is never more likely");
                }
            }
        }
        // The point series agrees with the field.
        let p = nc.point(40, 60, 1.0).expect("inside");
        assert!((p.probability[1] - p1[1][[40, 60]]).abs() < 1e-6);
        assert_eq!(p.rate_mm_h[0], nc.rate_mm_h[0][[40, 60]]);
        assert!(nc.point(96, 0, 1.0).is_none());
    }

    #[test]
    fn neighbourhood_probability_by_hand() {
        let f = ndarray::array![[0.0f32, 2.0, 0.0], [f32::NAN, 0.0, 3.0], [0.0, 0.0, 0.0]];
        let p = neighbourhood_probability(&f.view(), 1.0, 1);
        // Centre: 8 known cells, 2 wet.
        assert_eq!(p[[1, 1]], 2.0 / 8.0);
        // Corner (0,0): window rows 0-1, cols 0-1: 3 known, 1 wet.
        assert_eq!(p[[0, 0]], 1.0 / 3.0);
        assert!(p[[1, 0]].is_nan());
        let p0 = neighbourhood_probability(&f.view(), 1.0, 0);
        assert_eq!(p0[[0, 1]], 1.0);
        assert_eq!(p0[[0, 0]], 0.0);
    }

    #[test]
    fn ar2_yule_walker() {
        // The AR(2) recursion reproduces the lag-2 correlation it was fitted to.
        let (p1, p2) = ar2_params(0.9, 0.8);
        assert!((p1 * 0.9 + p2 - 0.8).abs() < 1e-5, "{p1} {p2}");
        assert!((p1 + p2 * 0.9 - 0.9).abs() < 1e-5);
        // r2 = r1² is an AR(1).
        let (p1, p2) = ar2_params(0.5, 0.25);
        assert!((p1 - 0.5).abs() < 1e-6 && p2.abs() < 1e-6);
        // No correlation, no memory; inconsistent inputs are tamed.
        assert_eq!(ar2_params(-0.3, 0.2), (0.0, 0.0));
        let (p1, p2) = ar2_params(0.5, 0.9);
        assert!((p1 - p2).abs() < 1e-6, "r2 capped at r1: {p1} {p2}");
        // Stationary even for nearly perfect correlation.
        let (p1, p2) = ar2_params(1.0, 0.2);
        assert!(
            p2.abs() < 1.0 && p1 + p2 < 1.0 && p2 - p1 < 1.0,
            "{p1} {p2}"
        );
    }

    #[test]
    fn quantile_matching_restores_the_distribution() {
        // Target: 6 dry, 4 wet cells (1, 2, 4, 8 mm/h), one no-data cell.
        let target_rates = [
            0.0f32,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            1.0,
            2.0,
            4.0,
            8.0,
            f32::NAN,
        ];
        let dbr: Vec<f32> = target_rates
            .iter()
            .map(|r| to_dbr(*r, 0.1, -15.0))
            .collect();
        let t = TargetDistribution::new(&dbr, -15.0, 0.1);
        // A smooth forecast with a different scale: ranks are what count.
        let mut v: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.0).collect();
        v.push(f32::NAN);
        quantile_match(&mut v, &t);
        assert!(v[10].is_nan());
        assert_eq!(v.iter().filter(|x| **x == 0.0).count(), 6, "{v:?}");
        assert!(v.windows(2).take(9).all(|w| w[1] >= w[0]), "monotone {v:?}");
        assert!((v[9] - 8.0).abs() < 0.05 && v[6] >= 0.99, "{v:?}");
    }

    #[test]
    fn push_pull_fills_gaps_smoothly() {
        let mut img = Img {
            rows: 4,
            cols: 4,
            data: vec![
                1.0,
                1.0,
                f32::NAN,
                3.0, //
                1.0,
                f32::NAN,
                f32::NAN,
                3.0, //
                1.0,
                1.0,
                3.0,
                3.0, //
                f32::NAN,
                1.0,
                3.0,
                3.0,
            ],
        };
        let before = img.clone();
        push_pull_fill(&mut img, -15.0);
        for (a, b) in img.data.iter().zip(&before.data) {
            assert!(a.is_finite() && (1.0..=3.0).contains(a));
            if b.is_finite() {
                assert_eq!(a, b);
            }
        }
        let mut empty = Img::filled(3, 3, f32::NAN);
        push_pull_fill(&mut empty, -15.0);
        assert!(empty.data.iter().all(|v| *v == -15.0));
    }

    #[test]
    fn summaries() {
        let leads = [10, 20, 30, 40, 50, 60];
        let p = [0.9f32; 6];
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, 0.5, 1.0, 1.2, 0.0, 0.0], &p),
            "Light rain starting in about 20 min, stopping by 50 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, 1.0, 4.0, 3.0, 1.0, 0.5], &p),
            "Moderate rain starting in about 20 min, easing after 40 min"
        );
        assert_eq!(
            summary_text(
                0.0,
                &leads,
                &[0.0, 0.0, 12.0, 0.0, 0.0, 0.0],
                &[0.0, 0.0, 0.3, 0.0, 0.0, 0.0]
            ),
            "Heavy rain possible in about 30 min, stopping by 40 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[0.0; 6], &p),
            "No rain expected in the next 60 min"
        );
        assert_eq!(
            summary_text(3.0, &leads, &[3.0, 2.0, 1.0, 0.0, 0.0, 0.0], &p),
            "Moderate rain now, easing in about 20 min, stopping in about 40 min"
        );
        assert_eq!(
            summary_text(1.0, &leads, &[1.0, 3.0, 12.0, 12.0, 12.0, 5.0], &p),
            "Light rain now, turning heavy in about 30 min, continuing for the next 60 min"
        );
        assert_eq!(
            summary_text(f32::NAN, &leads, &[f32::NAN; 6], &p),
            "No radar data here"
        );
        assert_eq!(Intensity::of(2.49), Intensity::Light);
        assert_eq!(Intensity::of(2.5), Intensity::Moderate);
        assert_eq!(Intensity::of(10.0), Intensity::Heavy);
        assert_eq!(Intensity::of(0.05), Intensity::Dry);
    }

    #[test]
    fn rain_arriving_at_a_point_is_announced() {
        // One cell moving east at 3 px/step towards a point 30 px downstream.
        let grid = local_grid(5.0, 50.0, 80, 160, 1000.0).expect("grid");
        let cfg = SynthConfig {
            velocity_px_per_step: (3.0, 0.0),
            cells: 1,
            peak_mm_h: (8.0, 8.0),
            sigma_px: (6.0, 6.0),
            lifetime_steps: (400, 400),
            ..SynthConfig::for_shape(80, 160)
        };
        let r = SynthRadar::new(grid, cfg);
        // Find steps where the cell centre is around column 40.
        let step = (2..800)
            .find(|s| {
                let f = r.field(*s);
                let (mut best, mut at) = (0.0, (0, 0));
                for ((row, col), v) in f.rate_mm_h.indexed_iter() {
                    if *v > best {
                        best = *v;
                        at = (row, col);
                    }
                }
                best > 4.0 && (38..42).contains(&at.1) && (12..68).contains(&at.0)
            })
            .expect("cell crosses the domain");
        let frames = r.fields(step - 2, 3);
        let peak_row = frames[2]
            .rate_mm_h
            .indexed_iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((row, _), _)| row)
            .expect("cells");
        let nc = nowcast(
            &frames,
            &[10, 20, 30, 40, 50, 60],
            &NowcastConfig::default(),
        )
        .expect("nowcast");
        // 40 + 30 px east: the centre arrives after 10 steps = 50 min; rain
        // (≥ 0.1 mm/h) reaches the point well before.
        let p = nc.point(peak_row, 70, 0.1).expect("inside");
        assert!(p.now_mm_h < 0.1, "dry now: {}", p.now_mm_h);
        assert!(
            p.summary.contains("rain") && p.summary.contains("in about"),
            "{}",
            p.summary
        );
        assert!(p.rate_mm_h[5] > p.rate_mm_h[0], "{:?}", p.rate_mm_h);
    }
}
