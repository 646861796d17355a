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
//! 3. **Forecast** every lead ([`NowcastInput::forecast`], or one lead at a
//!    time, as an iterator, with [`NowcastInput::leads`]). With
//!    [`Smoothing::Sprog`] (the default) this is an S-PROG-like forecast
//!    (Seed 2003):
//!    * the latest field in dBR (10·log₁₀ R, −15 dBR where dry; no data
//!      enters as dry, as in pysteps' S-PROG, and is unknown again in the
//!      forecast) is split into a cascade of six Gaussian band passes in
//!      the Fourier domain, as pysteps' `filter_gaussian` (`nowcast/fourier.rs`;
//!      on the half grid of 2 × 2 block means, padded with the dry floor
//!      to fast transform sizes: the octave below four cells, whose
//!      memory is a few minutes, is left out, and each lead is
//!      interpolated bilinearly back to the field's cells before its
//!      quantile matching);
//!    * for every level, the **Lagrangian** lag-1 and lag-2 correlations are
//!      measured from the data (the previous two fields advected onto the
//!      latest), and an AR(2) autocorrelation function is derived from them,
//!      the lag-2 correlation raised to S-PROG's bound so that the process
//!      has real roots (a level relaxes towards its mean; it does not
//!      extrapolate its last change);
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
//!
//! # Modules
//! * `nowcast/sprog.rs`: step 3's cascade, its AR(2) evolution per level and
//!   the quantile matching;
//! * `nowcast/fourier.rs`: the 2-D real FFT and the band-pass filters of
//!   the cascade (with each level's statistics on a sub-grid);
//! * `nowcast/probability.rs`: step 4, [`neighbourhood_probability`];
//! * `nowcast/point.rs`: step 5, [`PointSeries`], [`Intensity`],
//!   [`summary_text`].

mod fourier;
mod point;
mod probability;
mod sprog;

pub use point::{summary_text, Intensity, PointSeries};
pub use probability::{neighbourhood_probability, NeighbourhoodRows};

use crate::extrapolate::{displacements, warp_into, Displacement, ExtrapolateError};
use crate::grid::Grid;
use crate::motion::{self, MotionConfig, MotionError, MotionField};
use crate::prep::RainField;
use crate::raster::Img;
use chrono::{DateTime, Utc};
use ndarray::{Array2, ArrayView2};
use sprog::{LeadScratch, Sprog};

/// The fewest input fields a nowcast accepts (motion from two pairs, lag-1
/// and lag-2 correlations for the smoothing).
pub const MIN_FRAMES: usize = 3;

/// Longest lead accepted, minutes.
pub const MAX_LEAD_MIN: u32 = 360;

/// Longest accepted interval between input fields, seconds: beyond 30 min rain
/// changes too much between scans for its motion to be tracked.
pub const MAX_STEP_S: i64 = 1800;

/// The most common interval between consecutive times (sorted), seconds:
/// a series' cadence, which a missing scan does not change.
pub fn modal_step(times: &[DateTime<Utc>]) -> Option<i64> {
    let mut steps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .filter(|s| *s > 0)
        .collect();
    steps.sort_unstable();
    let mut best = (0usize, None);
    let mut i = 0;
    while i < steps.len() {
        let j = steps[i..]
            .iter()
            .position(|s| *s != steps[i])
            .map_or(steps.len(), |p| i + p);
        if j - i > best.0 {
            best = (j - i, Some(steps[i]));
        }
        i = j;
    }
    best.1
}

/// How far, in seconds, an interval between input fields may differ from
/// a step of `step_s`: the fraction `tolerance` of it, at least 30 s for
/// the jitter of real radars' scan times (NEXRAD volumes start a few tens
/// of seconds off their nominal cadence), but never more than a quarter of
/// the step, so that a radar scanning every 10 s (the demo) cannot take
/// 10 and 20 s as equal (what [`NowcastInput::new`] accepts and
/// [`equally_spaced`] picks).
fn step_tolerance_s(tolerance: f32, step_s: i64) -> f64 {
    let step = step_s as f64;
    (f64::from(tolerance) * step).max(30.0f64.min(0.25 * step))
}

/// Which scans a nowcast ending with `times[newest]` uses: `need` scans,
/// equally spaced, the newest one included, at the shortest interval that
/// the series allows. `times` is sorted, oldest first; the result is their
/// indices, oldest first, or `None` when no interval up to [`MAX_STEP_S`]
/// fits.
///
/// With regular scans this is the `need` newest ones. When a scan is
/// missing (a radar skips one, a file is quarantined), the newest scans
/// are not equally spaced and [`NowcastInput::new`] would refuse them;
/// then the interval widens to a multiple of the cadence that the scans
/// still have (one scan missing at 10:42 in a 6-minute series: 10:24,
/// 10:36, 10:48 at 10:48, then 10:18, 10:36, 10:54), so a gap costs the
/// forecast some motion detail instead of two cycles of no nowcast. Each
/// interval may differ from the newest one by `step_tolerance` (a
/// fraction) or 30 s, as [`NowcastInput::new`] accepts.
pub fn equally_spaced(
    times: &[DateTime<Utc>],
    newest: usize,
    need: usize,
    step_tolerance: f32,
) -> Option<Vec<usize>> {
    let t0 = *times.get(newest)?;
    let need = need.max(1);
    for previous in (0..newest).rev() {
        let step = (t0 - times[previous]).num_seconds();
        if step > MAX_STEP_S {
            break;
        }
        if step <= 0 {
            continue;
        }
        let tol = step_tolerance_s(step_tolerance, step);
        let mut picked = vec![newest, previous];
        while picked.len() < need {
            let last = times[picked[picked.len() - 1]];
            // The scan whose interval to `last` is nearest to `step`.
            let best = (0..picked[picked.len() - 1])
                .rev()
                .map(|i| (i, (last - times[i]).num_seconds()))
                .take_while(|(_, d)| (*d as f64) <= step as f64 + tol)
                .min_by_key(|(_, d)| (d - step).abs());
            match best {
                Some((i, d)) if ((d - step).abs() as f64) <= tol => picked.push(i),
                _ => break,
            }
        }
        if picked.len() == need {
            picked.reverse();
            return Some(picked);
        }
    }
    (need == 1).then(|| vec![newest])
}

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
        let tol = step_tolerance_s(cfg.step_tolerance, step_s);
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

    /// Forecasts every lead (minutes after the latest field) with `motion`:
    /// collects [`NowcastInput::leads`], one lead per task on the threads of
    /// the current rayon pool (the same fields, bit for bit, on one thread
    /// or many).
    pub fn forecast(
        &self,
        motion: MotionField,
        leads_min: &[u32],
    ) -> Result<Nowcast, NowcastError> {
        let leads = self.leads(&motion, leads_min)?;
        let level_correlations = leads.level_correlations().to_vec();
        let rate_mm_h: Vec<Array2<f32>> = leads.collect_parallel();
        let latest = self.latest();
        Ok(Nowcast {
            grid: latest.grid.clone(),
            base_time: latest.time,
            step_s: self.step_s,
            leads_min: leads_min.to_vec(),
            rate_mm_h,
            observed_mm_h: latest.rate_mm_h.clone(),
            motion,
            level_correlations,
            prob_radius_km: self.cfg.prob_radius_km,
            prob_radius_growth_km_per_min: self.cfg.prob_radius_growth_km_per_min,
            rain_threshold_mm_h: self.cfg.rain_threshold_mm_h,
        })
    }

    /// The forecast of every lead (minutes after the latest field) with
    /// `motion`, built one lead at a time as the iterator is advanced, in
    /// the order asked. Everything shared by the leads (their
    /// displacements, and with [`Smoothing::Sprog`] the cascade) is built
    /// here, once; the iterator borrows neither `self` nor `motion`, so a
    /// caller that writes each lead as it comes (`raincast nowcast`) can
    /// drop the inputs and holds one lead's field at a time.
    /// [`NowcastInput::forecast`] collects it: one code path.
    pub fn leads(&self, motion: &MotionField, leads_min: &[u32]) -> Result<Leads, NowcastError> {
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
        let mut disp = displacements(motion, &lead_steps)?;
        let (rows, cols) = latest.grid.shape();
        let source = if sprog {
            let n = self.frames.len();
            let sp = Sprog::new(
                &self.frames[n - 1].rate_mm_h.view(),
                &self.frames[n - 2].rate_mm_h.view(),
                &self.frames[n - 3].rate_mm_h.view(),
                &disp[n_leads],
                &disp[n_leads + 1],
                &self.cfg,
            );
            LeadSource::Sprog(Box::new(sp))
        } else {
            LeadSource::Plain(Img::from_view(&latest.rate_mm_h.view()))
        };
        disp.truncate(n_leads);
        lead_steps.truncate(n_leads);
        Ok(Leads {
            source,
            scratch: LeadScratch::default(),
            disp,
            lead_steps,
            next: 0,
            shape: (rows, cols),
            // As in the hot prep: rates below the rain threshold are dry (the
            // interpolation and the cascade leave small positive values at the
            // edges of rain); no data stays NaN.
            dry_below: self.cfg.rain_threshold_mm_h,
        })
    }
}

/// What every lead is built from.
enum LeadSource {
    /// The cascade.
    Sprog(Box<Sprog>),
    /// The latest rain rate (plain extrapolation).
    Plain(Img),
}

/// The leads of a nowcast as an iterator of rain-rate fields (mm/h,
/// `(rows, cols)`, row 0 north, NaN where unknown), in the order asked
/// ([`NowcastInput::leads`]). Each field is built when the iterator is
/// advanced; leads are independent, so a lead's field does not depend on
/// which leads were asked with it.
pub struct Leads {
    source: LeadSource,
    /// The iterator's per-lead buffers, kept from one lead to the next.
    scratch: LeadScratch,
    disp: Vec<Displacement>,
    lead_steps: Vec<f32>,
    next: usize,
    shape: (usize, usize),
    dry_below: f32,
}

impl Leads {
    /// Lagrangian `(lag-1, lag-2)` correlation of each cascade level, finest
    /// first (empty without smoothing). Diagnostics.
    pub fn level_correlations(&self) -> &[(f32, f32)] {
        match &self.source {
            LeadSource::Sprog(sp) => &sp.rho,
            LeadSource::Plain(_) => &[],
        }
    }

    /// The indices of the leads not yet taken by the iterator.
    fn remaining(&self) -> std::ops::Range<usize> {
        self.next..self.disp.len()
    }

    /// Builds lead `i` (an index into the leads asked) with `scratch`.
    fn build(&self, i: usize, scratch: &mut LeadScratch) -> Array2<f32> {
        let d = &self.disp[i];
        let mut data = Vec::new();
        let dry = Some(self.dry_below);
        match &self.source {
            LeadSource::Sprog(sp) => {
                warp_into(sp.matched(self.lead_steps[i], scratch), d, dry, &mut data)
            }
            LeadSource::Plain(src) => warp_into(src, d, dry, &mut data),
        }
        let (rows, cols) = self.shape;
        Img { rows, cols, data }.into_array()
    }

    /// Builds every lead not yet taken, on the threads of the current rayon
    /// pool (one lead per task, each thread with its own buffers), and
    /// hands each to `f` with its index among the leads asked, as it is
    /// built: in no particular order, at most one field per thread in
    /// memory at a time. Leads are independent, so every field is the same,
    /// bit for bit, whatever the number of threads. Stops at the first
    /// error of `f` (leads already running finish).
    pub fn try_for_each_parallel<E, F>(self, f: F) -> Result<(), E>
    where
        E: Send,
        F: Fn(usize, Array2<f32>) -> Result<(), E> + Sync + Send,
    {
        use rayon::prelude::*;
        let scratches = ScratchPool::default();
        self.remaining()
            .into_par_iter()
            .try_for_each(|i| f(i, scratches.with(|s| self.build(i, s))))
    }

    /// Every lead not yet taken, in the order asked, built as
    /// [`Leads::try_for_each_parallel`] does (all held at once).
    pub fn collect_parallel(self) -> Vec<Array2<f32>> {
        use rayon::prelude::*;
        let scratches = ScratchPool::default();
        self.remaining()
            .into_par_iter()
            .map(|i| scratches.with(|s| self.build(i, s)))
            .collect()
    }
}

/// Per-lead buffers for parallel leads: a lead takes a free set (or makes
/// one) and gives it back, so there are never more sets than leads being
/// built at once (rayon's `*_init` would make one per job split), and a
/// thread reuses the buffers of its previous lead.
#[derive(Default)]
struct ScratchPool(std::sync::Mutex<Vec<LeadScratch>>);

impl ScratchPool {
    fn with<T>(&self, f: impl FnOnce(&mut LeadScratch) -> T) -> T {
        let take = || self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut scratch = take().unwrap_or_default();
        let out = f(&mut scratch);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scratch);
        out
    }
}

impl Iterator for Leads {
    type Item = Array2<f32>;

    fn next(&mut self) -> Option<Array2<f32>> {
        let i = self.next;
        if i >= self.disp.len() {
            return None;
        }
        self.next += 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        let field = self.build(i, &mut scratch);
        self.scratch = scratch;
        Some(field)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.disp.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Leads {}

/// The stages of the default (S-PROG-like) forecast, one by one, for the
/// criterion bench's per-stage figures. Not part of the API: the stages are
/// what [`NowcastInput::forecast`] runs, in the same code.
#[doc(hidden)]
pub mod stages {
    use super::fourier::{Fft2, FftScratch};
    use super::sprog::{cascade_grid, halve_into, LeadScratch, Sprog};
    use super::{NowcastError, NowcastInput};
    use crate::extrapolate::{displacements, Displacement};
    use crate::motion::MotionField;
    use ndarray::ArrayView2;
    use realfft::num_complex::Complex32;

    /// The cascade of the latest field with its AR(2) parameters (the
    /// previous two fields advected onto it, three spectra, correlations).
    pub struct Cascade(Sprog);

    /// Backward displacements for leads given in steps.
    pub fn lead_displacements(
        motion: &MotionField,
        lead_steps: &[f32],
    ) -> Result<Vec<Displacement>, NowcastError> {
        Ok(displacements(motion, lead_steps)?)
    }

    /// Builds the cascade (needs the lag-1 and lag-2 displacements).
    pub fn cascade(input: &NowcastInput, lags: &[Displacement]) -> Cascade {
        let n = input.frames.len();
        Cascade(Sprog::new(
            &input.frames[n - 1].rate_mm_h.view(),
            &input.frames[n - 2].rate_mm_h.view(),
            &input.frames[n - 3].rate_mm_h.view(),
            &lags[0],
            &lags[1],
            &input.cfg,
        ))
    }

    /// Per-lead buffers, kept from one lead to the next.
    #[derive(Default)]
    pub struct Scratch(LeadScratch);

    impl Cascade {
        /// One lead before advection (recomposition and quantile matching);
        /// returns the number of cells.
        pub fn matched(&self, lead_steps: f32, scratch: &mut Scratch) -> usize {
            self.0.matched(lead_steps, &mut scratch.0).len()
        }
    }

    /// The cascade's Fourier transforms alone, with nothing else: the 2-D
    /// real FFT of the padded half grid the cascade uses for a field, forward
    /// (the nowcast makes three) and inverse (one per lead). For the
    /// benches' floor of the S-PROG layer (docs/PERFORMANCE.md).
    pub struct Transforms {
        fft: Fft2,
        field: Vec<f32>,
        cols: usize,
        spectrum: Vec<Complex32>,
        work: Vec<Complex32>,
        out: Vec<f32>,
        scratch: FftScratch,
    }

    impl Transforms {
        /// For `field` (mm/h; no data is taken as 0), as the cascade's
        /// half grid holds it (its 2 × 2 block means).
        pub fn new(field: &ArrayView2<f32>) -> Self {
            let (rows, cols) = field.dim();
            let ((_, hc), (pr, pc)) = cascade_grid(rows, cols);
            let fft = Fft2::new(pr, pc);
            let full: Vec<f32> = field.iter().copied().collect();
            let mut half = Vec::new();
            let zero_no_data = |v: f32| if v.is_finite() { v } else { 0.0 };
            halve_into(&full, rows, cols, zero_no_data, 0.0, &mut half);
            let mut t = Self {
                fft,
                field: half,
                cols: hc,
                spectrum: Vec::new(),
                work: Vec::new(),
                out: Vec::new(),
                scratch: FftScratch::default(),
            };
            t.forward();
            t
        }

        /// One forward transform of the field (padded with 0); returns the
        /// spectrum's length.
        pub fn forward(&mut self) -> usize {
            let Self {
                fft,
                field,
                cols,
                spectrum,
                scratch,
                ..
            } = self;
            fft.forward_padded(field, *cols, 0.0, |v| v, spectrum, scratch);
            spectrum.len()
        }

        /// One inverse transform of the whole padded grid (from a copy of
        /// the spectrum, as a lead's is written before its transform);
        /// returns the cells written.
        pub fn inverse(&mut self) -> usize {
            self.work.clear();
            self.work.extend_from_slice(&self.spectrum);
            self.fft
                .inverse(&mut self.work, &mut self.out, &mut self.scratch);
            self.out.len()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use ndarray::Array2;

        #[test]
        fn the_floors_transforms_are_the_cascades_round_trip() {
            // The bench's floor times real transforms: the inverse of the
            // forward is the cascade's half-grid field (the 2 × 2 block
            // means, padded with 0, scaled by the cells of the padded
            // grid), however often each runs.
            let f = Array2::from_shape_fn((37, 50), |(r, c)| {
                if (r + c) % 11 == 0 {
                    f32::NAN
                } else {
                    ((r * 7 + c * 3) % 13) as f32
                }
            });
            let mut t = Transforms::new(&f.view());
            let ((hr, hc), (pr, pc)) = cascade_grid(37, 50);
            assert_eq!(((hr, hc), (pr, pc)), ((19, 25), (24, 32)));
            for _ in 0..2 {
                assert_eq!(t.forward(), pr * (pc / 2 + 1));
                assert_eq!(t.inverse(), pr * pc);
            }
            let n = (pr * pc) as f32;
            let cell = |r: usize, c: usize| match f.get((r, c)) {
                Some(v) if v.is_finite() => *v,
                _ => 0.0,
            };
            for r in 0..pr {
                for c in 0..pc {
                    let want = if r < hr && c < hc {
                        let (r2, c2) = (2 * r, 2 * c);
                        0.25 * (cell(r2, c2)
                            + cell(r2, c2 + 1)
                            + cell(r2 + 1, c2)
                            + cell(r2 + 1, c2 + 1))
                    } else {
                        0.0
                    };
                    let got = t.out[r * pc + c] / n;
                    assert!(
                        (got - want).abs() < 1e-3,
                        "({r}, {c}): {got} against {want}"
                    );
                }
            }
        }
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
    /// Lagrangian `(lag-1, lag-2)` correlation of each cascade level, finest
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

    /// The rain threshold the nowcast was made with, mm/h.
    pub fn rain_threshold_mm_h(&self) -> f32 {
        self.rain_threshold_mm_h
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::synth::{local_grid, Coverage, SynthConfig, SynthRadar};
    use crate::verify::Contingency;
    use chrono::Duration;

    pub(crate) fn radar(
        rows: usize,
        cols: usize,
        vel: (f32, f32),
        coverage: Coverage,
    ) -> SynthRadar {
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

    pub(crate) fn frames() -> Vec<RainField> {
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

    /// Three fields of rain moving out of a radar's circular view (no data
    /// outside it, and inflow).
    fn leaving_a_circular_view() -> Vec<RainField> {
        let cov = Coverage::Circle {
            centre_row: 60.0,
            centre_col: 64.0,
            radius_px: 58.0,
        };
        radar(120, 128, (2.5, -1.0), cov).fields(30, 3)
    }

    #[test]
    fn streamed_leads_equal_each_lead_alone_and_the_batch() {
        // Rain moving out of a radar's circular view (no data outside it, and
        // inflow), leads out of order and repeated: every lead built by the
        // iterator has the bits of the same lead asked alone, and of the
        // batch forecast; no per-lead buffer carries anything to the next.
        let f = leaving_a_circular_view();
        let leads = [60, 5, 35, 20, 5, 12];
        for smoothing in [Smoothing::Sprog, Smoothing::None] {
            let cfg = NowcastConfig {
                smoothing,
                ..Default::default()
            };
            let input = NowcastInput::new(&f, &cfg).expect("valid");
            let motion = input.motion().expect("motion");
            let it = input.leads(&motion, &leads).expect("leads");
            assert_eq!(it.len(), leads.len());
            assert_eq!(
                it.level_correlations().is_empty(),
                smoothing == Smoothing::None
            );
            let streamed: Vec<Array2<f32>> = it.collect();
            let batch = input.forecast(motion.clone(), &leads).expect("batch");
            assert_eq!(streamed.len(), leads.len());
            let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            for (i, (&lead, field)) in leads.iter().zip(&streamed).enumerate() {
                let alone = input
                    .leads(&motion, &[lead])
                    .expect("one lead")
                    .next()
                    .expect("a field");
                assert_eq!(bits(field), bits(&alone), "{smoothing:?} lead {lead}");
                assert_eq!(
                    bits(field),
                    bits(&batch.rate_mm_h[i]),
                    "{smoothing:?} batch"
                );
                // The rain threshold is applied on the way: dry or ≥ 0.1.
                assert!(field.iter().any(|v| v.is_nan()), "no data stays unknown");
                assert!(field.iter().any(|v| *v > 0.0));
                assert!(
                    field
                        .iter()
                        .filter(|v| v.is_finite())
                        .all(|v| *v == 0.0 || *v >= cfg.rain_threshold_mm_h),
                    "{smoothing:?} lead {lead}: values below the threshold"
                );
            }
            // Different leads differ (the iterator does not repeat a field).
            assert_ne!(bits(&streamed[0]), bits(&streamed[1]));
        }
    }

    #[test]
    fn leads_on_several_threads_equal_the_leads_on_one() {
        // The motion (its frames on the pool's threads), the batch forecast
        // (the cascade's fields and the leads on the threads) and the
        // parallel hand-out of each lead, on a 1-thread and a 3-thread pool:
        // the same bits for the motion and every lead, each lead handed out
        // once with its index.
        let f = leaving_a_circular_view();
        let leads = [60, 5, 35, 20, 5, 12, 45, 30];
        let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool")
        };
        for smoothing in [Smoothing::Sprog, Smoothing::None] {
            let cfg = NowcastConfig {
                smoothing,
                ..Default::default()
            };
            let input = NowcastInput::new(&f, &cfg).expect("valid");
            let motion = pool(1).install(|| input.motion()).expect("motion");
            let one: Vec<Array2<f32>> = pool(1)
                .install(|| input.leads(&motion, &leads))
                .expect("leads")
                .collect();
            let img_bits = |m: &MotionField| {
                let (u, v) = (m.u.data.iter(), m.v.data.iter());
                u.chain(v).map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            for threads in [1, 3] {
                let moved = pool(threads).install(|| input.motion()).expect("motion");
                assert_eq!(img_bits(&moved), img_bits(&motion), "{threads} threads");
                let batch = pool(threads)
                    .install(|| input.forecast(motion.clone(), &leads))
                    .expect("batch");
                let handed = std::sync::Mutex::new(vec![None; leads.len()]);
                pool(threads)
                    .install(|| {
                        input
                            .leads(&motion, &leads)
                            .expect("leads")
                            .try_for_each_parallel(|i, field| {
                                let mut h = handed.lock().map_err(|_| "poisoned")?;
                                if h[i].replace(bits(&field)).is_some() {
                                    return Err("a lead handed out twice");
                                }
                                Ok(())
                            })
                    })
                    .expect("each lead once");
                let handed = handed.into_inner().expect("lock");
                for (i, lead) in leads.iter().enumerate() {
                    let want = bits(&one[i]);
                    assert_eq!(
                        bits(&batch.rate_mm_h[i]),
                        want,
                        "{smoothing:?} {threads} threads lead {lead}"
                    );
                    assert_eq!(
                        handed[i].as_ref(),
                        Some(&want),
                        "{smoothing:?} {threads} threads lead {lead}"
                    );
                }
                // The probability's leads on the threads: each lead's own
                // neighbourhood, in lead order.
                let p = pool(threads).install(|| batch.probability(1.0));
                assert_eq!(p.len(), leads.len());
                for (i, lead) in leads.iter().enumerate() {
                    let want = neighbourhood_probability(
                        &batch.rate_mm_h[i].view(),
                        1.0,
                        batch.prob_radius_cells(*lead),
                    );
                    assert!(
                        bits(&p[i]) == bits(&want),
                        "{smoothing:?} {threads} threads: probability of lead {lead} differs"
                    );
                }
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

    /// Odd shapes (single rows and columns, 1 × 1, prime sizes) and hostile
    /// values (huge rates, subnormals, a lone known cell, half no data) give
    /// a nowcast of the right shape with rates that are ≥ 0 or no data, or a
    /// typed error: never a panic.
    #[test]
    fn odd_shapes_and_hostile_values_never_panic() {
        use chrono::TimeZone;
        let mut seed = 7u64;
        let mut uniform = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32) / (1u64 << 24) as f32
        };
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let shapes = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 3), (1, 300), (300, 1)];
        let shapes = shapes
            .iter()
            .chain(&[(2, 513), (17, 3), (33, 65), (129, 7)]);
        let (mut built, mut refused) = (0, 0);
        for &(rows, cols) in shapes {
            let grid = local_grid(5.0, 50.0, rows, cols, 1000.0).expect("grid");
            for variant in 0..6 {
                let frames: Vec<RainField> = (0..3)
                    .map(|k| RainField {
                        grid: grid.clone(),
                        time: t0 + Duration::minutes(5 * k as i64),
                        rate_mm_h: Array2::from_shape_fn((rows, cols), |(r, c)| {
                            let u = uniform();
                            match variant {
                                0 => u * 50.0,
                                1 if u < 0.5 => f32::NAN,
                                1 => u * 10.0,
                                2 if (r + c + k) % 2 == 0 => 1e6,
                                2 => 0.0,
                                3 if r == 0 && c == 0 => 5.0,
                                3 => f32::NAN,
                                4 => f32::MIN_POSITIVE * u,
                                _ if u < 0.9 => 0.0,
                                _ => 200.0,
                            }
                        }),
                    })
                    .collect();
                for smoothing in [Smoothing::Sprog, Smoothing::None] {
                    let cfg = NowcastConfig {
                        smoothing,
                        ..Default::default()
                    };
                    let Ok(nc) = nowcast(&frames, &[5, 30, 60, 120], &cfg) else {
                        refused += 1;
                        continue;
                    };
                    built += 1;
                    for f in nc.rate_mm_h.iter().chain(&nc.probability(0.1)) {
                        assert_eq!(f.dim(), (rows, cols));
                        let bad = f
                            .iter()
                            .find(|v| !(v.is_nan() || **v >= 0.0 && v.is_finite()));
                        assert!(bad.is_none(), "{rows}×{cols}, variant {variant}: {bad:?}");
                    }
                }
            }
        }
        // Only 1 × 1 with no data (variant 1 can draw it) may be refused.
        assert!(
            built >= 128 && refused <= 4,
            "built {built}, refused {refused}"
        );
    }

    #[test]
    fn equally_spaced_scans_bridge_a_missing_one() {
        use chrono::TimeZone;
        let t = |h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2024, 6, 1, h, m, s).unwrap();
        let at = |ts: &[DateTime<Utc>], idx: Vec<usize>| -> Vec<DateTime<Utc>> {
            idx.into_iter().map(|i| ts[i]).collect()
        };
        // Regular 6-minute scans (with a few seconds of jitter): the newest three.
        let regular = [
            t(10, 24, 0),
            t(10, 30, 4),
            t(10, 36, 0),
            t(10, 41, 57),
            t(10, 48, 2),
        ];
        let got = equally_spaced(&regular, 4, 3, 0.1).unwrap();
        assert_eq!(got, vec![2, 3, 4]);
        assert_eq!(equally_spaced(&regular, 3, 3, 0.1).unwrap(), vec![1, 2, 3]);
        // 10:42 missing: 12 minutes at 10:48, then 18 minutes at 10:54, then
        // back to 6 minutes once three regular scans follow the gap.
        let gap = [
            t(10, 18, 0),
            t(10, 24, 0),
            t(10, 30, 0),
            t(10, 36, 0),
            t(10, 48, 0),
            t(10, 54, 0),
            t(11, 0, 0),
        ];
        let want = |v: &[DateTime<Utc>]| v.to_vec();
        let got = at(&gap, equally_spaced(&gap, 4, 3, 0.1).unwrap());
        assert_eq!(got, want(&[t(10, 24, 0), t(10, 36, 0), t(10, 48, 0)]));
        let got = at(&gap, equally_spaced(&gap, 5, 3, 0.1).unwrap());
        assert_eq!(got, want(&[t(10, 18, 0), t(10, 36, 0), t(10, 54, 0)]));
        let got = at(&gap, equally_spaced(&gap, 6, 3, 0.1).unwrap());
        assert_eq!(got, want(&[t(10, 48, 0), t(10, 54, 0), t(11, 0, 0)]));
        // An extra scan between two regular ones is skipped over.
        let extra = [t(10, 30, 0), t(10, 36, 0), t(10, 38, 30), t(10, 42, 0)];
        let got = at(&extra, equally_spaced(&extra, 3, 3, 0.1).unwrap());
        assert_eq!(got, want(&[t(10, 30, 0), t(10, 36, 0), t(10, 42, 0)]));
        // A radar scanning every 10 s (the demo) with one scan missing:
        // 10 and 20 s are not equal (a 30-s floor took them as such), so
        // three scans 30 s apart are used.
        let fast: Vec<_> = [0, 10, 20, 30, 40, 50, 60, 80, 90]
            .map(|s| t(10, 0, 0) + chrono::Duration::seconds(s))
            .to_vec();
        let got = at(&fast, equally_spaced(&fast, 8, 3, 0.1).unwrap());
        assert_eq!(got, want(&[t(10, 0, 30), t(10, 1, 0), t(10, 1, 30)]));
        // Nothing fits within 30 minutes, or too few scans: none.
        let sparse = [t(9, 0, 0), t(10, 0, 0), t(10, 36, 0), t(10, 42, 0)];
        assert_eq!(equally_spaced(&sparse, 3, 3, 0.1), None);
        assert_eq!(equally_spaced(&regular[..2], 1, 3, 0.1), None);
        assert_eq!(equally_spaced(&regular, 9, 3, 0.1), None);
        // Whatever it picks, the nowcast accepts.
        let f = frames();
        for ts in [&regular[..], &gap[..], &extra[..]] {
            for newest in 2..ts.len() {
                let Some(idx) = equally_spaced(ts, newest, 3, 0.1) else {
                    continue;
                };
                let picked: Vec<RainField> = idx
                    .iter()
                    .zip(&f)
                    .map(|(i, x)| RainField {
                        time: ts[*i],
                        ..x.clone()
                    })
                    .collect();
                let input = NowcastInput::new(&picked, &NowcastConfig::default());
                assert!(input.is_ok(), "{:?}: {:?}", idx, input.err());
            }
        }
    }
}
