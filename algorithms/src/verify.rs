//! Verification scores for rain forecasts, as in pysteps and rainymotion.
//!
//! Every score compares a forecast and an observation of the same shape (mm/h,
//! NaN = unknown) over **finite pairs only**: a cell counts when both values
//! are finite. A score is `None` when it is undefined (no events, no finite
//! pairs).
//!
//! * Categorical scores at a threshold `t` (event = rate ≥ `t`): hits `a`,
//!   false alarms `b`, misses `c`, correct negatives `d`;
//!   CSI = a/(a+b+c), POD = a/(a+c), FAR = b/(a+b).
//! * FSS (Roberts & Lean 2008) at threshold `t` and window side `n` cells:
//!   fractions of event cells in an `n × n` window (cells outside the grid or
//!   not in a finite pair count as non-events, as in pysteps), then
//!   FSS = 1 − Σ(Pf − Po)² / (ΣPf² + ΣPo²), summed over the finite pairs.
//!   Window sums use integral images, so the cost does not depend on `n`.
//! * MAE = mean |f − o| (mm/h).
//! * [`Reliability`]: forecast probability bins against observed frequency.

use ndarray::{Array2, ArrayView2};

/// Contingency table of one forecast against one observation at a threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contingency {
    /// Forecast ≥ t and observed ≥ t.
    pub hits: u64,
    /// Forecast < t, observed ≥ t.
    pub misses: u64,
    /// Forecast ≥ t, observed < t.
    pub false_alarms: u64,
    /// Both < t.
    pub correct_negatives: u64,
}

impl Contingency {
    /// Counts the finite pairs of `forecast` and `obs` (same shape).
    pub fn new(forecast: &ArrayView2<f32>, obs: &ArrayView2<f32>, threshold: f32) -> Self {
        let mut t = Contingency::default();
        for (f, o) in forecast.iter().zip(obs.iter()) {
            if !(f.is_finite() && o.is_finite()) {
                continue;
            }
            match (*f >= threshold, *o >= threshold) {
                (true, true) => t.hits += 1,
                (false, true) => t.misses += 1,
                (true, false) => t.false_alarms += 1,
                (false, false) => t.correct_negatives += 1,
            }
        }
        t
    }

    /// Critical success index a/(a+b+c).
    pub fn csi(&self) -> Option<f64> {
        ratio(self.hits, self.hits + self.misses + self.false_alarms)
    }

    /// Probability of detection a/(a+c).
    pub fn pod(&self) -> Option<f64> {
        ratio(self.hits, self.hits + self.misses)
    }

    /// False alarm ratio b/(a+b).
    pub fn far(&self) -> Option<f64> {
        ratio(self.false_alarms, self.hits + self.false_alarms)
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Fractions skill score at `threshold` (mm/h) with an `window × window`
/// neighbourhood (cells). `None` when neither field has an event in a finite
/// pair, or the shapes differ, or `window` is 0.
pub fn fss(
    forecast: &ArrayView2<f32>,
    obs: &ArrayView2<f32>,
    threshold: f32,
    window: usize,
) -> Option<f64> {
    let (num, den) = fss_sums(forecast, obs, threshold, window)?;
    (den > 0.0).then(|| 1.0 - num / den)
}

/// The two sums of [`fss`], `(Σ(Pf − Po)², ΣPf² + ΣPo²)` (dimensionless),
/// so that several cases can be pooled by adding them: the pooled FSS is
/// `1 − Σnum / Σden`. `None` when the shapes differ or `window` is 0.
pub fn fss_sums(
    forecast: &ArrayView2<f32>,
    obs: &ArrayView2<f32>,
    threshold: f32,
    window: usize,
) -> Option<(f64, f64)> {
    if forecast.dim() != obs.dim() || window == 0 {
        return None;
    }
    let (rows, cols) = obs.dim();
    let w = cols + 1;
    let mut int_f = vec![0u32; (rows + 1) * w];
    let mut int_o = vec![0u32; (rows + 1) * w];
    let mut pair = vec![false; rows * cols];
    for r in 0..rows {
        let (mut rf, mut ro) = (0u32, 0u32);
        for c in 0..cols {
            let (f, o) = (forecast[[r, c]], obs[[r, c]]);
            if f.is_finite() && o.is_finite() {
                pair[r * cols + c] = true;
                rf += (f >= threshold) as u32;
                ro += (o >= threshold) as u32;
            }
            int_f[(r + 1) * w + c + 1] = int_f[r * w + c + 1] + rf;
            int_o[(r + 1) * w + c + 1] = int_o[r * w + c + 1] + ro;
        }
    }
    let mut sums = [(0f64, 0f64)];
    fss_window_pass((rows, cols), window, &pair, &int_o, &[&int_f], &mut sums);
    Some(sums[0])
}

/// Inclusive column span `(first, last)` per row; `first > last` = empty.
type Span = (usize, usize);
const NO_SPAN: Span = (usize::MAX, 0);

/// The window pass of the FSS: for every pair cell, the event fractions of
/// the observation and of each forecast in the window [r − lo, r − lo +
/// window) (like scipy's uniform_filter), from their integral images
/// (`(rows + 1) × (cols + 1)`), added to `(Σ(Pf − Po)², ΣPf² + ΣPo²)` per
/// forecast. A band of rows without any event in either field adds nothing
/// and is skipped. The straightforward form: [`SkillStream`] gets the same
/// sums with sliding window sums.
fn fss_window_pass(
    (rows, cols): (usize, usize),
    window: usize,
    pair: &[bool],
    int_o: &[u32],
    int_f: &[&[u32]],
    sums: &mut [(f64, f64)],
) {
    if cols == 0 {
        return;
    }
    let w = cols + 1;
    let lo = window / 2;
    let area = (window * window) as f64;
    for r in 0..rows {
        let r0 = r.saturating_sub(lo);
        let r1 = (r + window - lo).min(rows);
        let band = |img: &[u32]| img[r1 * w + cols] - img[r0 * w + cols];
        if band(int_o) == 0 && int_f.iter().all(|img| band(img) == 0) {
            continue;
        }
        for c in 0..cols {
            if !pair[r * cols + c] {
                continue;
            }
            let c0 = c.saturating_sub(lo);
            let c1 = (c + window - lo).min(cols);
            let sum = |img: &[u32]| {
                (img[r1 * w + c1] + img[r0 * w + c0] - img[r0 * w + c1] - img[r1 * w + c0]) as f64
            };
            let po = sum(int_o) / area;
            for ((num, den), img) in sums.iter_mut().zip(int_f) {
                let pf = sum(img) / area;
                *num += (pf - po) * (pf - po);
                *den += pf * pf + po * po;
            }
        }
    }
}

/// Mean absolute error over finite pairs, mm/h.
pub fn mae(forecast: &ArrayView2<f32>, obs: &ArrayView2<f32>) -> Option<f64> {
    let (mut s, mut n) = (0f64, 0u64);
    for (f, o) in forecast.iter().zip(obs.iter()) {
        if f.is_finite() && o.is_finite() {
            s += (*f as f64 - *o as f64).abs();
            n += 1;
        }
    }
    (n > 0).then(|| s / n as f64)
}

/// Sum of |f − o| (mm/h) and number of the finite pairs that are wet: the
/// forecast or the observation is ≥ `wet` mm/h. MAE on wet cells is
/// `sum / n`; sums of several cases add up.
pub fn wet_abs_error_sum(
    forecast: &ArrayView2<f32>,
    obs: &ArrayView2<f32>,
    wet: f32,
) -> (f64, u64) {
    let (mut s, mut n) = (0f64, 0u64);
    for (f, o) in forecast.iter().zip(obs.iter()) {
        if f.is_finite() && o.is_finite() && (*f >= wet || *o >= wet) {
            s += (*f as f64 - *o as f64).abs();
            n += 1;
        }
    }
    (s, n)
}

/// Sum of squared errors `(p − e)²` of a probability field (0..1) against
/// the event "observed ≥ `threshold` mm/h" (e = 0 or 1), and the number of
/// finite pairs: the Brier score is `sum / n`; sums of several cases add up.
pub fn brier_sum(prob: &ArrayView2<f32>, obs: &ArrayView2<f32>, threshold: f32) -> (f64, u64) {
    let (mut s, mut n) = (0f64, 0u64);
    for (p, o) in prob.iter().zip(obs.iter()) {
        if p.is_finite() && o.is_finite() {
            let e = if *o >= threshold { 1.0 } else { 0.0 };
            s += (p.clamp(0.0, 1.0) as f64 - e).powi(2);
            n += 1;
        }
    }
    (s, n)
}

/// Sets to NaN every cell of `field` where `mask` is not finite, so that
/// several forecasts can be scored on exactly the same cells.
pub fn mask_like(field: &mut Array2<f32>, mask: &ArrayView2<f32>) {
    for (v, m) in field.iter_mut().zip(mask.iter()) {
        if !m.is_finite() {
            *v = f32::NAN;
        }
    }
}

/// The scores of one forecast at one lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per threshold of [`score`]: `(CSI, POD, FAR)`.
    pub categorical: Vec<(Option<f64>, Option<f64>, Option<f64>)>,
    /// FSS at the requested threshold and window.
    pub fss: Option<f64>,
    /// Mean absolute error, mm/h.
    pub mae: Option<f64>,
}

/// Scores one forecast: CSI/POD/FAR at each threshold, FSS at
/// `(fss_threshold, fss_window)` and MAE.
pub fn score(
    forecast: &ArrayView2<f32>,
    obs: &ArrayView2<f32>,
    thresholds: &[f32],
    fss_threshold: f32,
    fss_window: usize,
) -> Scores {
    Scores {
        categorical: thresholds
            .iter()
            .map(|t| {
                let c = Contingency::new(forecast, obs, *t);
                (c.csi(), c.pod(), c.far())
            })
            .collect(),
        fss: fss(forecast, obs, fss_threshold, fss_window),
        mae: mae(forecast, obs),
    }
}

/// Running mean that ignores undefined values; reports how many were defined.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    /// Adds a value when defined.
    pub fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.sum += v;
            self.n += 1;
        }
    }

    /// The mean, `None` before any defined value.
    pub fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// How many defined values were added.
    pub fn count(&self) -> u64 {
        self.n
    }
}

/// Reliability of a probability forecast: `bins` equal bins of forecast
/// probability; per bin the number of cells, the mean forecast probability and
/// the observed frequency of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    /// Per bin: (cells, Σ forecast probability, observed events).
    pub bins: Vec<(u64, f64, u64)>,
}

impl Reliability {
    /// Empty table with `bins` bins over [0, 1].
    pub fn new(bins: usize) -> Self {
        Self {
            bins: vec![(0, 0.0, 0); bins.max(1)],
        }
    }

    /// Adds the finite pairs of a probability field and an observation (mm/h)
    /// with the event "observed ≥ threshold".
    pub fn add(&mut self, prob: &ArrayView2<f32>, obs: &ArrayView2<f32>, threshold: f32) {
        let nb = self.bins.len();
        for (p, o) in prob.iter().zip(obs.iter()) {
            if !(p.is_finite() && o.is_finite()) {
                continue;
            }
            let b = ((p.clamp(0.0, 1.0) * nb as f32) as usize).min(nb - 1);
            let bin = &mut self.bins[b];
            bin.0 += 1;
            bin.1 += *p as f64;
            bin.2 += (*o >= threshold) as u64;
        }
    }

    /// Rows `(bin low, bin high, cells, mean forecast probability, observed
    /// frequency)` for the non-empty bins.
    pub fn table(&self) -> Vec<(f64, f64, u64, f64, f64)> {
        let nb = self.bins.len() as f64;
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, b)| {
                (
                    i as f64 / nb,
                    (i + 1) as f64 / nb,
                    b.0,
                    b.1 / b.0 as f64,
                    b.2 as f64 / b.0 as f64,
                )
            })
            .collect()
    }

    /// Brier score of the accumulated pairs, from the binned sums (exact when
    /// forecast probabilities equal their bin means; an approximation
    /// otherwise). `None` when empty.
    pub fn brier_approx(&self) -> Option<f64> {
        let (mut s, mut n) = (0f64, 0u64);
        for &(cells, psum, events) in &self.bins {
            if cells == 0 {
                continue;
            }
            let p = psum / cells as f64;
            // events × (1 − p)² + (cells − events) × p²
            s += events as f64 * (1.0 - p) * (1.0 - p) + (cells - events) as f64 * p * p;
            n += cells;
        }
        (n > 0).then(|| s / n as f64)
    }
}

// ---------------------------------------------------------------------------
// Calibration of a probability from its reliability table.

impl Reliability {
    /// Cells in the table.
    pub fn cells(&self) -> u64 {
        self.bins.iter().map(|b| b.0).sum()
    }

    /// Expected calibration error: Σ over bins of (cells/total) ×
    /// |mean forecast probability − observed frequency| (0..1). `None` when
    /// empty.
    pub fn ece(&self) -> Option<f64> {
        let total = self.cells();
        (total > 0).then(|| {
            self.bins
                .iter()
                .filter(|b| b.0 > 0)
                .map(|&(_, psum, events)| (psum - events as f64).abs() / total as f64)
                .sum()
        })
    }
}

/// A monotone calibration of a probability, fitted on a reliability table by
/// isotonic regression (pool-adjacent-violators, weighted by cells): knots
/// `(mean forecast probability, observed frequency)` of the pooled blocks,
/// both non-decreasing; between knots the map is linear, outside them it
/// keeps the offset of the nearest knot (clamped to 0..1 and to that knot's
/// value), so it is monotone and the identity on a perfectly reliable table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// `(x, y)` per pooled block, x strictly increasing, y non-decreasing.
    pub knots: Vec<(f64, f64)>,
}

impl Calibration {
    /// Fits the table; `None` when it is empty.
    pub fn fit(table: &Reliability) -> Option<Calibration> {
        let bins: Vec<(f64, f64, f64)> = table
            .bins
            .iter()
            .map(|&(n, p, e)| (n as f64, p, e as f64))
            .collect();
        Self::fit_weighted(&bins)
    }

    /// Fits weighted bins `(Σw, Σw·p, Σw·event)` in the order of the
    /// probability (the bins of a [`Reliability`] with a weight per pair,
    /// e.g. by age); `None` when every bin is empty. With unit weights this
    /// is [`Calibration::fit`].
    pub fn fit_weighted(bins: &[(f64, f64, f64)]) -> Option<Calibration> {
        // Blocks: (cells, Σp, events).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for &(n, p, e) in bins.iter().filter(|b| b.0 > 0.0) {
            blocks.push((n, p, e));
            // Pool while the last block's frequency is below the previous one's.
            while blocks.len() >= 2 {
                let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
                if b.2 / b.0 >= a.2 / a.0 {
                    break;
                }
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            }
        }
        let mut knots: Vec<(f64, f64)> = Vec::with_capacity(blocks.len());
        for (n, p, e) in blocks {
            let (x, y) = (p / n, e / n);
            match knots.last_mut() {
                // Equal means (cannot happen with disjoint bins but for
                // rounding): keep the larger frequency.
                Some(k) if x <= k.0 => k.1 = k.1.max(y),
                _ => knots.push((x, y)),
            }
        }
        (!knots.is_empty()).then_some(Calibration { knots })
    }

    /// The calibrated probability of `p` (0..1); NaN stays NaN.
    pub fn apply(&self, p: f32) -> f32 {
        if !p.is_finite() {
            return p;
        }
        let x = p.clamp(0.0, 1.0) as f64;
        let (first, last) = (self.knots[0], self.knots[self.knots.len() - 1]);
        let y = if x <= first.0 {
            (x + first.1 - first.0).clamp(0.0, first.1)
        } else if x >= last.0 {
            (x + last.1 - last.0).clamp(last.1, 1.0)
        } else {
            let i = self.knots.partition_point(|k| k.0 <= x);
            let ((x0, y0), (x1, y1)) = (self.knots[i - 1], self.knots[i]);
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        };
        y.clamp(0.0, 1.0) as f32
    }

    /// Maps a whole probability field (0..1, NaN kept).
    pub fn apply_field(&self, prob: &ArrayView2<f32>) -> Array2<f32> {
        prob.mapv(|p| self.apply(p))
    }
}

/// Accumulates the Brier score and reliability of a probability field:
/// what the calibration report of [`verify_series`] needs per half.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityScore {
    /// Σ(p − e)², pairs and events.
    pub brier_sum: f64,
    pub cells: u64,
    pub events: u64,
    pub reliability: Reliability,
}

impl Default for ProbabilityScore {
    fn default() -> Self {
        Self {
            brier_sum: 0.0,
            cells: 0,
            events: 0,
            reliability: Reliability::new(10),
        }
    }
}

impl ProbabilityScore {
    /// Adds the finite pairs of `prob` (0..1) and `obs` (mm/h), event
    /// "observed ≥ `threshold`".
    pub fn add(&mut self, prob: &ArrayView2<f32>, obs: &ArrayView2<f32>, threshold: f32) {
        let (s, n) = brier_sum(prob, obs, threshold);
        self.brier_sum += s;
        self.cells += n;
        self.events += prob
            .iter()
            .zip(obs.iter())
            .filter(|(p, o)| p.is_finite() && o.is_finite() && **o >= threshold)
            .count() as u64;
        self.reliability.add(prob, obs, threshold);
    }

    /// Brier score.
    pub fn brier(&self) -> Option<f64> {
        (self.cells > 0).then(|| self.brier_sum / self.cells as f64)
    }

    /// Brier skill score against the sample climatology (the observed
    /// frequency ō of the same pairs, whose Brier score is ō(1 − ō)):
    /// 1 − BS/(ō(1 − ō)). `None` when empty or without both outcomes.
    pub fn bss(&self) -> Option<f64> {
        let o = self.events as f64 / self.cells.max(1) as f64;
        let reference = o * (1.0 - o);
        match self.brier() {
            Some(b) if reference > 0.0 => Some(1.0 - b / reference),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Additive sums: running (pooled) scores in one pass.

/// Thresholds of the CSI in [`SkillSums`], mm/h.
pub const SKILL_CSI_THRESHOLDS_MM_H: [f32; 3] = [0.5, 1.0, 5.0];
/// Bins of the reliability table in [`SkillSums`].
pub const SKILL_BINS: usize = 10;

/// What [`skill_sums`] scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SkillSpec {
    /// FSS threshold, mm/h.
    pub fss_threshold: f32,
    /// FSS window side, cells (≥ 1).
    pub fss_window: usize,
    /// A pair counts in the wet MAE when the forecast or the observation
    /// reaches this rate, mm/h.
    pub wet_mm_h: f32,
    /// The event of the probability: observed ≥ this rate, mm/h.
    pub prob_threshold: f32,
}

/// Additive verification sums of one forecast over some cases: adding the
/// sums of two sets of cases gives the sums of their union, so a window's
/// scores are **pooled** over all its cells (not means of per-case scores).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkillSums {
    /// Cases added.
    pub cases: u64,
    /// Per threshold of [`SKILL_CSI_THRESHOLDS_MM_H`]: cells.
    pub hits: [u64; 3],
    pub misses: [u64; 3],
    pub false_alarms: [u64; 3],
    /// FSS numerator and denominator (dimensionless, see [`fss_sums`]).
    pub fss_num: f64,
    pub fss_den: f64,
    /// Σ|f − o| over wet pairs, mm/h, and their number.
    pub abs_err_mm_h: f64,
    pub wet_cells: u64,
    /// Σ(p − e)² and the number of pairs of the Brier score.
    pub brier_sum: f64,
    pub brier_cells: u64,
    /// Reliability bins ([`SKILL_BINS`]): pairs, Σ forecast probability,
    /// observed events.
    pub rel_cells: [u64; SKILL_BINS],
    pub rel_prob: [f64; SKILL_BINS],
    pub rel_events: [u64; SKILL_BINS],
}

impl SkillSums {
    /// Adds another set of sums.
    pub fn add(&mut self, o: &SkillSums) {
        self.cases += o.cases;
        for i in 0..SKILL_CSI_THRESHOLDS_MM_H.len() {
            self.hits[i] += o.hits[i];
            self.misses[i] += o.misses[i];
            self.false_alarms[i] += o.false_alarms[i];
        }
        self.fss_num += o.fss_num;
        self.fss_den += o.fss_den;
        self.abs_err_mm_h += o.abs_err_mm_h;
        self.wet_cells += o.wet_cells;
        self.brier_sum += o.brier_sum;
        self.brier_cells += o.brier_cells;
        for i in 0..SKILL_BINS {
            self.rel_cells[i] += o.rel_cells[i];
            self.rel_prob[i] += o.rel_prob[i];
            self.rel_events[i] += o.rel_events[i];
        }
    }

    /// The contingency table at threshold `i` of [`SKILL_CSI_THRESHOLDS_MM_H`]
    /// (correct negatives are not kept: 0).
    pub fn contingency(&self, i: usize) -> Contingency {
        Contingency {
            hits: self.hits[i],
            misses: self.misses[i],
            false_alarms: self.false_alarms[i],
            correct_negatives: 0,
        }
    }

    /// Pooled FSS `1 − Σnum/Σden`.
    pub fn fss(&self) -> Option<f64> {
        (self.fss_den > 0.0).then(|| 1.0 - self.fss_num / self.fss_den)
    }

    /// Mean absolute error over the wet pairs, mm/h.
    pub fn mae_wet(&self) -> Option<f64> {
        (self.wet_cells > 0).then(|| self.abs_err_mm_h / self.wet_cells as f64)
    }

    /// Brier score of the probability.
    pub fn brier(&self) -> Option<f64> {
        (self.brier_cells > 0).then(|| self.brier_sum / self.brier_cells as f64)
    }

    /// The reliability table of the sums.
    pub fn reliability(&self) -> Reliability {
        Reliability {
            bins: (0..SKILL_BINS)
                .map(|i| (self.rel_cells[i], self.rel_prob[i], self.rel_events[i]))
                .collect(),
        }
    }
}

/// The sums of one case for several forecasts at once, in one streaming
/// pass over the rows ([`SkillStream`]: per-cell sums as each row comes,
/// the FSS from sliding window sums over the cells whose window holds an
/// event). The counts are those of [`Contingency::new`], [`fss_sums`],
/// [`wet_abs_error_sum`], [`brier_sum`] and [`Reliability::add`] on masked
/// copies; the f64 sums are theirs up to the order of the additions (lane
/// by lane, see [`SKILL_LANES`]), which is fixed: the same fields give the
/// same bits, in `raincast verify` and in the live service alike (tested
/// against a per-cell reference that adds in that order).
///
/// `obs` is the observation (mm/h); each forecast is a rate field (mm/h)
/// and its probability of "observed ≥ `spec.prob_threshold`" (0..1), or
/// `None` for a deterministic forecast whose probability is 1 where its rate
/// reaches the threshold and 0 elsewhere. Every field has the shape of
/// `obs`. All forecasts are scored on the same cells: where the observation
/// and **every** forecast rate are finite (NaN = no data, never dry); the
/// Brier score and reliability also need a finite probability. `None` when
/// a shape differs or the FSS window is 0.
pub fn skill_sums(
    obs: &ArrayView2<f32>,
    forecasts: &[(ArrayView2<f32>, Option<ArrayView2<f32>>)],
    spec: &SkillSpec,
) -> Option<Vec<SkillSums>> {
    let forecasts: Vec<(ArrayView2<f32>, Prob)> = forecasts
        .iter()
        .map(|(f, p)| {
            (
                f.view(),
                match p {
                    Some(p) => Prob::Field(p.view()),
                    None => Prob::YesNo,
                },
            )
        })
        .collect();
    skill_sums_of(obs, &forecasts, spec)
}

/// The probability of a forecast in [`skill_sums_of`].
#[derive(Debug, Clone)]
pub enum Prob<'a> {
    /// A probability field (0..1, NaN = unknown) of the forecast's shape.
    Field(ArrayView2<'a, f32>),
    /// The neighbourhood probability of the forecast's own rate with this
    /// half-width in cells ([`crate::nowcast::neighbourhood_probability`]
    /// at [`SkillSpec::prob_threshold`]), computed row by row as the scorer
    /// goes: the same values bit for bit, without a probability field.
    Neighbourhood(usize),
    /// A deterministic forecast: 1 where its rate reaches the threshold,
    /// 0 elsewhere.
    YesNo,
}

/// The sums of one case for several forecasts at once ([`skill_sums`]),
/// with each forecast's probability given as a [`Prob`]. The one scorer of
/// `raincast verify` and of the nowcast service's live skill: both call
/// this with their frame's rate and its neighbourhood radius.
pub fn skill_sums_of(
    obs: &ArrayView2<f32>,
    forecasts: &[(ArrayView2<f32>, Prob)],
    spec: &SkillSpec,
) -> Option<Vec<SkillSums>> {
    let dim = obs.dim();
    if spec.fss_window == 0
        || forecasts
            .iter()
            .any(|(f, p)| f.dim() != dim || matches!(p, Prob::Field(p) if p.dim() != dim))
    {
        return None;
    }
    let (rows, cols) = dim;
    let obs = obs.as_standard_layout();
    let o_s = obs.as_slice()?;
    let rates: Vec<_> = forecasts
        .iter()
        .map(|(f, _)| f.as_standard_layout())
        .collect();
    let rate_s: Vec<&[f32]> = rates.iter().map(|a| a.as_slice()).collect::<Option<_>>()?;
    let fields: Vec<_> = forecasts
        .iter()
        .map(|(_, p)| match p {
            Prob::Field(p) => Some(p.as_standard_layout()),
            _ => None,
        })
        .collect();
    enum Rows<'b> {
        Field(&'b [f32]),
        Neighbourhood(crate::nowcast::NeighbourhoodRows<'b>),
        YesNo,
    }
    let mut sources: Vec<Rows> = Vec::with_capacity(forecasts.len());
    for (((_, p), field), rate) in forecasts.iter().zip(&fields).zip(&rate_s) {
        sources.push(match (p, field) {
            (Prob::Field(_), Some(f)) => Rows::Field(f.as_slice()?),
            (Prob::Neighbourhood(radius), _) => Rows::Neighbourhood(
                crate::nowcast::NeighbourhoodRows::new(rate, dim, spec.prob_threshold, *radius)?,
            ),
            _ => Rows::YesNo,
        });
    }
    let mut stream = SkillStream::new(dim, forecasts.len(), spec)?;
    for r in 0..rows {
        let span = r * cols..(r + 1) * cols;
        let mut row: Vec<(&[f32], Option<&[f32]>)> = Vec::with_capacity(forecasts.len());
        for (src, rate) in sources.iter_mut().zip(&rate_s) {
            let p = match src {
                Rows::Field(p) => Some(&p[span.clone()]),
                Rows::Neighbourhood(n) => Some(n.next_row()?),
                Rows::YesNo => None,
            };
            row.push((&rate[span.clone()], p));
        }
        stream.push_row(&o_s[span], &row)?;
    }
    stream.finish()
}

/// Lanes of the per-cell pass of [`SkillStream`]: cell `(r, c)` is added to
/// lane `c % LANES` of every sum, and the lanes of a sum are added in lane
/// order at the end. This fixes the order of every f64 sum (the same for
/// `raincast verify` and the live service, which share the scorer), and
/// lets the pass work on `LANES` cells at once.
pub const SKILL_LANES: usize = 8;
const L: usize = SKILL_LANES;

/// Per-lane sums of one forecast in [`SkillStream`] (u32 counts, flushed
/// into u64 before they could overflow).
#[derive(Clone)]
struct LaneSums {
    fcst_events: [[u32; L]; 3],
    hits: [[u32; L]; 3],
    wet: [u32; L],
    abs_err: [f64; L],
    brier_cells: [u32; L],
    brier: [f64; L],
    rel_cells: [[u32; L]; SKILL_BINS],
    rel_events: [[u32; L]; SKILL_BINS],
    rel_prob: [[f64; L]; SKILL_BINS],
    fss_num: [f64; L],
    fss_den: [f64; L],
    /// Yes/no forecasts: pairs with a probability of 1, and pairs whose
    /// probability (0 or 1) is not the event (1 or 0).
    yes: [u32; L],
    wrong: [u32; L],
}

impl Default for LaneSums {
    fn default() -> Self {
        Self {
            fcst_events: [[0; L]; 3],
            hits: [[0; L]; 3],
            wet: [0; L],
            abs_err: [0.0; L],
            brier_cells: [0; L],
            brier: [0.0; L],
            rel_cells: [[0; L]; SKILL_BINS],
            rel_events: [[0; L]; SKILL_BINS],
            rel_prob: [[0.0; L]; SKILL_BINS],
            fss_num: [0.0; L],
            fss_den: [0.0; L],
            yes: [0; L],
            wrong: [0; L],
        }
    }
}

fn lane_total(v: &[u32; L]) -> u64 {
    v.iter().map(|x| *x as u64).sum()
}

/// The lanes of an f64 sum added in lane order.
fn lane_sum(v: &[f64; L]) -> f64 {
    v.iter().fold(0.0, |s, x| s + x)
}

fn lanes_of(row: &[f32], c0: usize, fill: f32) -> [f32; L] {
    match row.get(c0..c0 + L) {
        Some(s) => s.try_into().unwrap_or([fill; L]),
        None => {
            let mut a = [fill; L];
            for (x, v) in a.iter_mut().zip(&row[c0.min(row.len())..]) {
                *x = *v;
            }
            a
        }
    }
}

/// [`skill_sums`] fed one row at a time, top to bottom, holding only a
/// window's height of rows: the per-cell sums are added as each row comes,
/// [`SKILL_LANES`] cells at a time (lane `c % SKILL_LANES` of each sum), and
/// the FSS of row `r` is added as soon as row `r + window − 1 − window/2`
/// is in, from sliding window sums (per column, the event counts of the
/// window's rows, updated by the rows entering and leaving, over the span
/// of each row's events only; then per row a prefix sum over the columns of
/// the span that can hold an event). Groups of cells that are all dry or
/// without data, and cells whose window holds no event, are not visited:
/// they would add exactly `0.0` to every f64 sum (and their counts are
/// added as a whole), so skipping them does not change any bit.
pub struct SkillStream {
    spec: SkillSpec,
    rows: usize,
    cols: usize,
    /// Forecasts; event row 0 of a slot is the observation's.
    n: usize,
    lo: usize,
    hi: usize,
    slots: usize,
    lowest: f32,
    /// Per forecast: the u64 totals of the counts flushed from `lanes`
    /// (`false_alarms` holds the forecast events until [`Self::finish`]).
    out: Vec<SkillSums>,
    lanes: Vec<LaneSums>,
    /// Observed events per CSI threshold, per lane, and their u64 totals.
    obs_events: [[u32; L]; 3],
    obs_total: [u64; 3],
    /// Per forecast: the u64 totals of `yes` and `wrong`.
    yes_wrong: Vec<(u64, u64)>,
    /// Rows pushed since the lanes' counts were flushed, and the number
    /// after which they are (so that no u32 lane count can overflow).
    unflushed: usize,
    flush_rows: usize,
    dry: u64,
    /// `k / window²` for every window count `k`: the same f64 as dividing.
    frac: Vec<f64>,
    /// Per slot (row modulo `slots`): finite pairs (0 or 1), `cols`.
    pair: Vec<u8>,
    /// Per slot: event indicators, `(n + 1) × cols`.
    ev: Vec<u8>,
    /// Per slot: a span holding every event of the row (any field).
    span: Vec<Span>,
    /// Per field: the column sums of the events of rows `top..bottom`.
    colsum: Vec<u32>,
    /// Per field: prefix sums over the columns, `cols + 1`.
    pre: Vec<u32>,
    /// Per field: the window counts of the row being emitted, `cols`.
    count: Vec<u32>,
    pushed: usize,
    top: usize,
    bottom: usize,
    emitted: usize,
}

impl SkillStream {
    /// A stream of `rows × cols` cells and `forecasts` forecasts; `None`
    /// when the FSS window is 0.
    pub fn new((rows, cols): (usize, usize), forecasts: usize, spec: &SkillSpec) -> Option<Self> {
        let window = spec.fss_window;
        if window == 0 {
            return None;
        }
        let lo = window / 2;
        let slots = window + 1;
        let m = forecasts + 1;
        let [t0, t1, t2] = SKILL_CSI_THRESHOLDS_MM_H;
        // A pair below every threshold, with zero probabilities, adds only
        // to the Brier and reliability counts (bin 0, no error, no event):
        // groups of such "dry" pairs, most of a radar image, are counted
        // and added at the end.
        let lowest = [
            t0,
            t1,
            t2,
            spec.wet_mm_h,
            spec.prob_threshold,
            spec.fss_threshold,
        ]
        .into_iter()
        .fold(f32::INFINITY, f32::min);
        let area = window.checked_mul(window)?;
        Some(Self {
            spec: *spec,
            rows,
            cols,
            n: forecasts,
            lo,
            hi: window - 1 - lo,
            slots,
            lowest,
            out: vec![
                SkillSums {
                    cases: 1,
                    ..SkillSums::default()
                };
                forecasts
            ],
            lanes: vec![LaneSums::default(); forecasts],
            obs_events: [[0; L]; 3],
            obs_total: [0; 3],
            yes_wrong: vec![(0, 0); forecasts],
            unflushed: 0,
            // A lane gains at most one per group of `L` cells of a row.
            flush_rows: (u32::MAX as usize / cols.div_ceil(L).max(1)).max(1),
            dry: 0,
            frac: (0..=area).map(|k| k as f64 / area as f64).collect(),
            pair: vec![0; slots * cols],
            ev: vec![0; slots * m * cols],
            span: vec![NO_SPAN; slots],
            colsum: vec![0; m * cols],
            pre: vec![0; m * (cols + 1)],
            count: vec![0; m * cols],
            pushed: 0,
            top: 0,
            bottom: 0,
            emitted: 0,
        })
    }

    /// Adds the next row: the observation (mm/h) and per forecast its rate
    /// (mm/h) and probability (`None`: yes/no), each `cols` long. `None`
    /// when a length differs, the count of forecasts differs or every row
    /// was pushed already.
    pub fn push_row(&mut self, obs: &[f32], forecasts: &[(&[f32], Option<&[f32]>)]) -> Option<()> {
        let cols = self.cols;
        if self.pushed >= self.rows
            || obs.len() != cols
            || forecasts.len() != self.n
            || forecasts
                .iter()
                .any(|(f, p)| f.len() != cols || p.is_some_and(|p| p.len() != cols))
        {
            return None;
        }
        let r = self.pushed;
        let m = self.n + 1;
        let slot = r % self.slots;
        // The slot's previous row left the window sums already: clear it.
        let old = self.span[slot];
        let ev = &mut self.ev[slot * m * cols..(slot + 1) * m * cols];
        if old.0 <= old.1 {
            for k in 0..m {
                ev[k * cols + old.0..=k * cols + old.1].fill(0);
            }
        }
        let pair = &mut self.pair[slot * cols..(slot + 1) * cols];
        let spec = self.spec;
        let lowest = self.lowest;
        let nb = SKILL_BINS as f32;
        let th = SKILL_CSI_THRESHOLDS_MM_H;
        let mut span = NO_SPAN;
        for c0 in (0..cols).step_by(L) {
            let width = L.min(cols - c0);
            // Known and dry pairs as 0/1 lanes (a comparison with NaN is
            // false, so a dry cell is a known one; lanes past the row are
            // NaN).
            let o = lanes_of(obs, c0, f32::NAN);
            let mut known = [0u32; L];
            let mut quiet = [0u32; L];
            for j in 0..L {
                known[j] = o[j].is_finite() as u32;
                quiet[j] = (o[j] < lowest) as u32;
            }
            for (f, p) in forecasts {
                let f = lanes_of(f, c0, f32::NAN);
                for j in 0..L {
                    known[j] &= f[j].is_finite() as u32;
                    quiet[j] &= (f[j] < lowest) as u32;
                }
                if let Some(p) = p {
                    let p = lanes_of(p, c0, f32::NAN);
                    for j in 0..L {
                        quiet[j] &= (p[j] == 0.0) as u32;
                    }
                }
            }
            // A -inf rate is below every threshold but not known: only
            // known pairs are dry.
            for j in 0..L {
                quiet[j] &= known[j];
            }
            for (d, k) in pair[c0..c0 + width].iter_mut().zip(known) {
                *d = k as u8;
            }
            let dry: u32 = quiet.iter().sum();
            if dry == known.iter().sum::<u32>() {
                self.dry += dry as u64;
                continue;
            }
            let mut oe = [[0u32; L]; 3];
            for (t, th) in th.into_iter().enumerate() {
                for j in 0..L {
                    oe[t][j] = known[j] & (o[j] >= th) as u32;
                    self.obs_events[t][j] += oe[t][j];
                }
            }
            let mut any = [0u32; L];
            let mut owet = [0u32; L];
            let mut event = [0u32; L];
            let mut o64 = [0f64; L];
            for j in 0..L {
                any[j] = known[j] & (o[j] >= spec.fss_threshold) as u32;
                owet[j] = (o[j] >= spec.wet_mm_h) as u32;
                event[j] = known[j] & (o[j] >= spec.prob_threshold) as u32;
                o64[j] = o[j] as f64;
            }
            for (d, e) in ev[c0..c0 + width].iter_mut().zip(any) {
                *d = e as u8;
            }
            for (k, ((f, p), acc)) in forecasts.iter().zip(&mut self.lanes).enumerate() {
                let f = lanes_of(f, c0, f32::NAN);
                for (t, th) in th.into_iter().enumerate() {
                    for j in 0..L {
                        let fe = known[j] & (f[j] >= th) as u32;
                        acc.fcst_events[t][j] += fe;
                        acc.hits[t][j] += fe & oe[t][j];
                    }
                }
                let mut fev = [0u32; L];
                for j in 0..L {
                    let wet = known[j] & ((f[j] >= spec.wet_mm_h) as u32 | owet[j]);
                    acc.wet[j] += wet;
                    let d = (f[j] as f64 - o64[j]).abs();
                    acc.abs_err[j] += if wet != 0 { d } else { 0.0 };
                    fev[j] = known[j] & (f[j] >= spec.fss_threshold) as u32;
                    any[j] |= fev[j];
                }
                let row = &mut ev[(k + 1) * cols + c0..(k + 1) * cols + c0 + width];
                for (d, e) in row.iter_mut().zip(fev) {
                    *d = e as u8;
                }
                let Some(p) = p else {
                    // Yes/no: the probability is 0 or 1, so every f64 sum
                    // of its pairs is an integer, counted.
                    for j in 0..L {
                        let yes = known[j] & (f[j] >= spec.prob_threshold) as u32;
                        acc.brier_cells[j] += known[j];
                        acc.wrong[j] += yes ^ event[j];
                        acc.yes[j] += yes;
                        acc.rel_cells[SKILL_BINS - 1][j] += yes;
                        acc.rel_events[SKILL_BINS - 1][j] += yes & event[j];
                        acc.rel_cells[0][j] += known[j] ^ yes;
                        acc.rel_events[0][j] += event[j] & (yes ^ 1);
                    }
                    continue;
                };
                let p = lanes_of(p, c0, f32::NAN);
                let mut valid = [0u32; L];
                let mut pc = [0f32; L];
                for j in 0..L {
                    valid[j] = known[j] & p[j].is_finite() as u32;
                    // Invalid lanes: 0, so that every lane is finite.
                    pc[j] = if valid[j] != 0 {
                        p[j].clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                }
                for j in 0..L {
                    let d = pc[j] as f64 - event[j] as f64;
                    acc.brier_cells[j] += valid[j];
                    acc.brier[j] += if valid[j] != 0 { d * d } else { 0.0 };
                }
                // The bin of each lane (-1: not valid), and the range of
                // bins in the group.
                let mut bin = [0i32; L];
                for j in 0..L {
                    let b = ((pc[j] * nb) as i32).min(SKILL_BINS as i32 - 1);
                    bin[j] = if valid[j] != 0 { b } else { -1 };
                }
                let first_bin = bin
                    .iter()
                    .map(|b| if *b < 0 { SKILL_BINS as i32 } else { *b })
                    .fold(SKILL_BINS as i32, i32::min);
                let last_bin = bin.iter().fold(-1, |a, b| a.max(*b));
                for b in first_bin..=last_bin {
                    let rel_cells = &mut acc.rel_cells[b as usize];
                    let rel_events = &mut acc.rel_events[b as usize];
                    let rel_prob = &mut acc.rel_prob[b as usize];
                    for j in 0..L {
                        let hit = (bin[j] == b) as u32;
                        rel_cells[j] += hit;
                        rel_events[j] += hit & event[j];
                        rel_prob[j] += if hit != 0 { p[j] as f64 } else { 0.0 };
                    }
                }
            }
            if any.iter().any(|e| *e != 0) {
                span = (span.0.min(c0), c0 + width - 1);
            }
        }
        self.span[slot] = span;
        self.pushed += 1;
        self.unflushed += 1;
        if self.unflushed >= self.flush_rows {
            self.flush();
        }
        if r >= self.hi {
            self.emit(r - self.hi);
        }
        Some(())
    }

    /// Moves the lanes' u32 counts into the u64 totals.
    fn flush(&mut self) {
        self.unflushed = 0;
        for (t, e) in self.obs_events.iter_mut().enumerate() {
            self.obs_total[t] += lane_total(e);
            *e = [0; L];
        }
        for ((s, a), yw) in self
            .out
            .iter_mut()
            .zip(&mut self.lanes)
            .zip(&mut self.yes_wrong)
        {
            yw.0 += lane_total(&a.yes);
            yw.1 += lane_total(&a.wrong);
            (a.yes, a.wrong) = ([0; L], [0; L]);
            for t in 0..3 {
                s.hits[t] += lane_total(&a.hits[t]);
                s.false_alarms[t] += lane_total(&a.fcst_events[t]);
                a.hits[t] = [0; L];
                a.fcst_events[t] = [0; L];
            }
            s.wet_cells += lane_total(&a.wet);
            s.brier_cells += lane_total(&a.brier_cells);
            (a.wet, a.brier_cells) = ([0; L], [0; L]);
            for b in 0..SKILL_BINS {
                s.rel_cells[b] += lane_total(&a.rel_cells[b]);
                s.rel_events[b] += lane_total(&a.rel_events[b]);
                (a.rel_cells[b], a.rel_events[b]) = ([0; L], [0; L]);
            }
        }
    }

    /// Adds (`true`) or removes row `r`'s events to or from the column sums.
    fn slide(&mut self, r: usize, add: bool) {
        let (cols, m) = (self.cols, self.n + 1);
        let slot = r % self.slots;
        let (a, b) = self.span[slot];
        if a > b {
            return;
        }
        for k in 0..m {
            let ev = &self.ev[(slot * m + k) * cols + a..=(slot * m + k) * cols + b];
            let sum = &mut self.colsum[k * cols + a..=k * cols + b];
            for (s, e) in sum.iter_mut().zip(ev) {
                *s = if add { *s + *e as u32 } else { *s - *e as u32 };
            }
        }
    }

    /// Adds the FSS terms of row `r` (rows up to `r + hi` pushed).
    fn emit(&mut self, r: usize) {
        self.emitted = r + 1;
        let cols = self.cols;
        if cols == 0 {
            return;
        }
        let want_bottom = (r + self.hi + 1).min(self.rows);
        while self.bottom < want_bottom {
            self.slide(self.bottom, true);
            self.bottom += 1;
        }
        let want_top = r.saturating_sub(self.lo);
        while self.top < want_top {
            self.slide(self.top, false);
            self.top += 1;
        }
        let hull = (self.top..self.bottom)
            .map(|k| self.span[k % self.slots])
            .fold(NO_SPAN, |h, s| (h.0.min(s.0), h.1.max(s.1)));
        if hull.0 > hull.1 {
            return;
        }
        let (lo, hi) = (self.lo, self.hi);
        let window = lo + hi + 1;
        // Cells whose window can hold an event, widened to whole groups of
        // `L` cells (the others have no event in their window: they would
        // add 0.0), and the columns their windows cover.
        let first = hull.0.saturating_sub(hi);
        let first = first - first % L;
        let end = (((hull.1 + lo).min(cols - 1) / L + 1) * L).min(cols);
        let (a, b) = (first.saturating_sub(lo), (end - 1 + window - lo).min(cols));
        let m = self.n + 1;
        let w = cols + 1;
        for k in 0..m {
            let pre = &mut self.pre[k * w..(k + 1) * w];
            let sum = &self.colsum[k * cols..(k + 1) * cols];
            // A running sum in a register, not a load of the previous
            // entry (a chain through memory).
            let mut acc = 0;
            pre[a] = 0;
            for (p, s) in pre[a + 1..=b].iter_mut().zip(&sum[a..b]) {
                acc += s;
                *p = acc;
            }
        }
        // Per field, the event count of the window of each cell of
        // `first..end`: where the window lies inside the row (columns
        // `c − lo .. c − lo + window`) from two shifted slices, at the
        // row's ends one by one.
        let inner0 = first.max(lo);
        let inner_end = end.min((cols + lo + 1).saturating_sub(window));
        for k in 0..m {
            let pre = &self.pre[k * w..(k + 1) * w];
            let count = &mut self.count[k * cols..(k + 1) * cols];
            if inner0 < inner_end {
                let n = inner_end - inner0;
                let (low, high) = (inner0 - lo, inner0 - lo + window);
                for ((x, h), l) in count[inner0..inner_end]
                    .iter_mut()
                    .zip(&pre[high..high + n])
                    .zip(&pre[low..low + n])
                {
                    *x = h - l;
                }
            }
            for c in (first..end).filter(|c| !(inner0..inner_end).contains(c)) {
                let (c0, c1) = (c.saturating_sub(lo), (c + window - lo).min(cols));
                count[c] = pre[c1] - pre[c0];
            }
        }
        let slot = r % self.slots;
        let pair = &self.pair[slot * cols..(slot + 1) * cols];
        let frac = &self.frac;
        let count = &self.count;
        for g in (first..end).step_by(L) {
            let width = L.min(end - g);
            // Lanes without a pair, or past the row, add 0.0.
            let mut take = [false; L];
            let mut po = [0f64; L];
            for j in 0..width {
                take[j] = pair[g + j] != 0;
                po[j] = if take[j] {
                    frac[count[g + j] as usize]
                } else {
                    0.0
                };
            }
            for (k, acc) in self.lanes.iter_mut().enumerate() {
                let count = &count[(k + 1) * cols..(k + 2) * cols];
                let mut pf = [0f64; L];
                for j in 0..width {
                    pf[j] = if take[j] {
                        frac[count[g + j] as usize]
                    } else {
                        0.0
                    };
                }
                for j in 0..L {
                    let d = pf[j] - po[j];
                    acc.fss_num[j] += d * d;
                    acc.fss_den[j] += pf[j] * pf[j] + po[j] * po[j];
                }
            }
        }
    }

    /// The sums, once every row is pushed (`None` before).
    pub fn finish(mut self) -> Option<Vec<SkillSums>> {
        if self.pushed != self.rows {
            return None;
        }
        for r in self.emitted..self.rows {
            self.emit(r);
        }
        self.flush();
        for ((s, a), (yes, wrong)) in self.out.iter_mut().zip(&self.lanes).zip(&self.yes_wrong) {
            for t in 0..3 {
                s.misses[t] = self.obs_total[t] - s.hits[t];
                s.false_alarms[t] -= s.hits[t];
            }
            s.abs_err_mm_h = lane_sum(&a.abs_err);
            // Yes/no pairs add whole numbers: exact in any order (the
            // lanes of a yes/no forecast hold 0.0; other forecasts have no
            // yes/no pairs, and adding 0.0 changes no sum).
            s.brier_sum = lane_sum(&a.brier) + *wrong as f64;
            s.brier_cells += self.dry;
            s.rel_cells[0] += self.dry;
            for b in 0..SKILL_BINS {
                s.rel_prob[b] = lane_sum(&a.rel_prob[b]);
            }
            s.rel_prob[SKILL_BINS - 1] += *yes as f64;
            (s.fss_num, s.fss_den) = (lane_sum(&a.fss_num), lane_sum(&a.fss_den));
        }
        Some(self.out)
    }
}

// ---------------------------------------------------------------------------
// Verification over a day of scans.

/// The forecasts compared by [`verify_series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Eulerian persistence: the latest observation, unchanged.
    Persistence,
    /// Plain semi-Lagrangian extrapolation of the latest rain rate.
    Extrapolation,
    /// The full Raincast nowcast (extrapolation + scale-dependent smoothing).
    Raincast,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 3] = [Method::Persistence, Method::Extrapolation, Method::Raincast];

    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Persistence => "persistence",
            Method::Extrapolation => "extrapolation",
            Method::Raincast => "raincast",
        }
    }
}

/// What [`verify_series`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyConfig {
    /// Lead times, minutes. `None`: every multiple of the scan interval up to
    /// 60 min.
    pub leads_min: Option<Vec<u32>>,
    /// Thresholds of the categorical scores, mm/h.
    pub thresholds: Vec<f32>,
    /// FSS threshold (mm/h) and window side (cells).
    pub fss_threshold: f32,
    pub fss_window: usize,
    /// Window side (cells) of the FSS in [`LeadRow::pooled`]; `None`: the
    /// same as `fss_window`. The nowcast service's live skill uses a 10-km
    /// window, so `raincast verify` sets that here to report its pooled
    /// scores like for like.
    pub pooled_fss_window: Option<usize>,
    /// Threshold of the probability whose reliability is measured, mm/h.
    pub prob_threshold: f32,
    /// The nowcast (its `smoothing` is set per method).
    pub nowcast: crate::nowcast::NowcastConfig,
    /// Wet threshold of the pooled MAE, mm/h.
    pub wet_mm_h: f32,
    /// Cells a lead's fit needs before its probability is calibrated.
    pub min_samples: u64,
    /// An experiment, not what the service does: weight each fit case by
    /// its age at the middle of the day, `0.5^(age / half-life)` minutes
    /// (`None`: every fit case counts the same, as in the service). Only
    /// with [`CalibrationFit::FirstHalf`].
    pub calibration_half_life_min: Option<f64>,
    /// Which calibration the second half is scored with.
    pub calibration_fit: CalibrationFit,
}

/// The calibration a held-out case (issued in the second half of the day)
/// is scored with. Either way only pairs whose verifying scan lies before
/// the case's issue time enter its fit: nothing is peeked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CalibrationFit {
    /// One fit on the pairs verified in the first half of the day, applied
    /// to every held-out case (issue 17's check).
    #[default]
    FirstHalf,
    /// What the nowcast service serves: before each held-out case, a fit on
    /// every pair verified before the case's issue time within the last
    /// [`SERVED_WINDOW_HOURS`] (the service's live table), raw below
    /// `min_samples` cells ([`LeadRow::served_calibration`]).
    Served,
}

/// Hours of verified pairs the service fits its calibration on (its 24 h
/// live skill window).
pub const SERVED_WINDOW_HOURS: i64 = 24;

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            leads_min: None,
            thresholds: vec![0.5, 1.0, 5.0],
            fss_threshold: 1.0,
            fss_window: 10,
            pooled_fss_window: None,
            prob_threshold: 1.0,
            nowcast: crate::nowcast::NowcastConfig::default(),
            wet_mm_h: 0.1,
            min_samples: 2000,
            calibration_half_life_min: None,
            calibration_fit: CalibrationFit::FirstHalf,
        }
    }
}

/// Mean scores of one method at one lead (means over cases of per-case
/// scores, undefined cases skipped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodScores {
    /// Per threshold.
    pub csi: Vec<Mean>,
    pub pod: Vec<Mean>,
    pub far: Vec<Mean>,
    pub fss: Mean,
    pub mae: Mean,
}

/// All methods at one lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRow {
    pub lead_min: u32,
    /// Cases scored at this lead.
    pub cases: u64,
    /// In the order of [`Method::ALL`].
    pub methods: Vec<MethodScores>,
    /// Reliability of the Raincast probability at this lead.
    pub reliability: Reliability,
    /// Pooled sums of Raincast and persistence (yes/no probability), in
    /// that order, on the cells where the observation, Raincast and
    /// persistence are known: what the nowcast service's live skill keeps
    /// ([`skill_sums`] with [`VerifyConfig::wet_mm_h`]).
    pub pooled: [SkillSums; 2],
    /// Calibration check: the Raincast probability of the cases whose
    /// verifying scan lies in the first half of the day (the fit)...
    pub fit: ProbabilityScore,
    /// With [`VerifyConfig::calibration_half_life_min`]: the reliability
    /// table of each fit case, by the time of its verifying scan; with
    /// [`CalibrationFit::Served`], of every case.
    pub fit_cases: Vec<(chrono::DateTime<chrono::Utc>, Reliability)>,
    /// ...the calibration fitted on it (`None` below
    /// [`VerifyConfig::min_samples`] cells: raw is served)...
    pub calibration: Option<Calibration>,
    /// ...and the cases issued in the second half, raw and calibrated
    /// (identical to raw without a calibration).
    pub held_out_raw: ProbabilityScore,
    pub held_out_calibrated: ProbabilityScore,
    /// Held-out cases, and those of them scored with a calibration (the
    /// others were served raw).
    pub held_out_cases: u64,
    pub held_out_calibrated_cases: u64,
}

impl LeadRow {
    /// The calibration the service serves for a forecast issued at `at`
    /// ([`CalibrationFit::Served`]): fitted on the cases of `fit_cases`
    /// verified before `at` and less than [`SERVED_WINDOW_HOURS`] before
    /// it, every case counting the same; `None` below `min_samples` cells
    /// (raw is served). A case verified by the scan of `at` itself is not
    /// in it: the service scores that scan after it has published the
    /// nowcast issued from it.
    pub fn served_calibration(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        min_samples: u64,
    ) -> Option<Calibration> {
        let from = at - chrono::Duration::hours(SERVED_WINDOW_HOURS);
        let bins = self.weighted_bins(|t| f64::from(u8::from(t < at && t > from)));
        let cells: f64 = bins.iter().map(|b| b.0).sum();
        if cells < min_samples as f64 {
            return None;
        }
        Calibration::fit_weighted(&bins)
    }

    /// The fit cases' bins `(Σw, Σw·p, Σw·event)` with the weight
    /// `0.5^(age / half_life_min)`, `age` = minutes from the verifying scan
    /// to `at`: recent cases count more.
    pub fn fit_by_age(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        half_life_min: f64,
    ) -> Vec<(f64, f64, f64)> {
        self.weighted_bins(|t| {
            let age = (at - t).num_seconds().max(0) as f64 / 60.0;
            0.5f64.powf(age / half_life_min.max(f64::MIN_POSITIVE))
        })
    }

    /// The bins `(Σw, Σw·p, Σw·event)` of `fit_cases`, each case weighted
    /// by `weight` of the time of its verifying scan.
    fn weighted_bins(
        &self,
        weight: impl Fn(chrono::DateTime<chrono::Utc>) -> f64,
    ) -> Vec<(f64, f64, f64)> {
        let mut bins = vec![(0.0, 0.0, 0.0); SKILL_BINS];
        for (t, rel) in &self.fit_cases {
            let w = weight(*t);
            if w == 0.0 {
                continue;
            }
            for (b, r) in bins.iter_mut().zip(&rel.bins) {
                b.0 += w * r.0 as f64;
                b.1 += w * r.1;
                b.2 += w * r.2 as f64;
            }
        }
        bins
    }
}

/// The result of [`verify_series`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Scan interval found in the series, seconds.
    pub step_s: i64,
    pub rows: Vec<LeadRow>,
    /// Start times that could not be nowcast, with the reason.
    pub skipped: Vec<(chrono::DateTime<chrono::Utc>, String)>,
    /// Start times nowcast.
    pub cases: usize,
}

/// The scans of a day for [`verify_series_from`]: every scan's time up
/// front, each field only when a start time needs it, so that a caller can
/// decode it then and a day of a large composite is never held whole
/// (a day of 96 OPERA scans is 1.6 GB of fields).
pub trait SeriesFields {
    /// The scans' times; index `i` is [`Self::field`]'s `i` (any order,
    /// no time twice).
    fn times(&self) -> Vec<chrono::DateTime<chrono::Utc>>;
    /// Scan `i`, or why it cannot be had (named in the report's skipped
    /// start times). Asked for in the order of the start times, each a few
    /// times: the scans of one start time's nowcast and its leads.
    fn field(&mut self, i: usize) -> Result<std::sync::Arc<crate::prep::RainField>, String>;
    /// Told once, before the first [`Self::field`]: how many scans one
    /// start time asks for at most (its nowcast's and its leads'), so a
    /// cache can hold a few start times' worth and no more.
    fn working_set(&mut self, _scans: usize) {}
}

/// Fields held in memory.
struct InMemory(Vec<std::sync::Arc<crate::prep::RainField>>);

impl SeriesFields for InMemory {
    fn times(&self) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.0.iter().map(|f| f.time).collect()
    }
    fn field(&mut self, i: usize) -> Result<std::sync::Arc<crate::prep::RainField>, String> {
        self.0.get(i).cloned().ok_or_else(|| format!("no scan {i}"))
    }
}

/// [`verify_series_from`] over fields in memory.
pub fn verify_series(
    fields: &[crate::prep::RainField],
    cfg: &VerifyConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> VerifyReport {
    let held = InMemory(fields.iter().cloned().map(std::sync::Arc::new).collect());
    verify_series_from(held, cfg, progress)
}

/// Runs a nowcast at every time of `fields` that has enough past fields and
/// at least one observation at a requested lead, and scores persistence,
/// plain extrapolation and Raincast against the observations. All methods are
/// scored on the same cells: where the observation and every forecast are
/// finite. `progress(done, total)` is called after each start time.
pub fn verify_series_from(
    mut fields: impl SeriesFields,
    cfg: &VerifyConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> VerifyReport {
    use crate::nowcast::{NowcastInput, Smoothing};
    let all_times = fields.times();
    let mut order: Vec<usize> = (0..all_times.len()).collect();
    order.sort_by_key(|i| all_times[*i]);
    let times: Vec<_> = order.iter().map(|i| all_times[*i]).collect();
    let step_s = crate::nowcast::modal_step(&times).unwrap_or(300);
    let leads: Vec<u32> = cfg.leads_min.clone().unwrap_or_else(|| {
        let step_min = (step_s / 60).max(1) as u32;
        (1..=60 / step_min).map(|k| k * step_min).collect()
    });
    let nt = cfg.thresholds.len();
    let mut rows: Vec<LeadRow> = leads
        .iter()
        .map(|&lead_min| LeadRow {
            lead_min,
            cases: 0,
            methods: vec![
                MethodScores {
                    csi: vec![Mean::default(); nt],
                    pod: vec![Mean::default(); nt],
                    far: vec![Mean::default(); nt],
                    ..Default::default()
                };
                Method::ALL.len()
            ],
            reliability: Reliability::new(10),
            pooled: Default::default(),
            fit: ProbabilityScore::default(),
            fit_cases: Vec::new(),
            calibration: None,
            held_out_raw: ProbabilityScore::default(),
            held_out_calibrated: ProbabilityScore::default(),
            held_out_cases: 0,
            held_out_calibrated_cases: 0,
        })
        .collect();
    let need = cfg.nowcast.frames.max(crate::nowcast::MIN_FRAMES);
    fields.working_set(need + leads.len() + 1);
    let mut sorted = |i: usize| fields.field(order[i]);
    // The halves of the day: fit on cases verified before `mid`, score the
    // cases issued from `mid` on (no observation is in both).
    let mid = match (times.first(), times.last()) {
        (Some(a), Some(b)) => *a + (*b - *a) / 2,
        _ => chrono::DateTime::<chrono::Utc>::MIN_UTC,
    };
    let mut fitted = false;
    let spec = SkillSpec {
        fss_threshold: cfg.fss_threshold,
        fss_window: cfg.pooled_fss_window.unwrap_or(cfg.fss_window),
        wet_mm_h: cfg.wet_mm_h,
        prob_threshold: cfg.prob_threshold,
    };
    let mut skipped = Vec::new();
    let mut cases = 0;
    let total = times.len();
    for base in 0..total {
        if base + 1 < need {
            progress(base + 1, total);
            continue;
        }
        // Observations at each lead, exactly at base + lead.
        let obs_idx: Vec<Option<usize>> = leads
            .iter()
            .map(|l| {
                let t = times[base] + chrono::Duration::minutes(*l as i64);
                times.binary_search(&t).ok()
            })
            .collect();
        let wanted: Vec<usize> = (0..leads.len()).filter(|k| obs_idx[*k].is_some()).collect();
        if wanted.is_empty() {
            progress(base + 1, total);
            continue;
        }
        // The scans the service would use at this time (equally spaced,
        // bridging a missing scan); without such, the newest `need`, whose
        // nowcast then names what is wrong with them.
        let picked =
            crate::nowcast::equally_spaced(&times[..=base], base, need, cfg.nowcast.step_tolerance)
                .unwrap_or_else(|| (base + 1 - need..=base).collect());
        let window: Result<Vec<crate::prep::RainField>, String> = picked
            .iter()
            .map(|i| sorted(*i).map(|f| (*f).clone()))
            .collect();
        let base_field = window.and_then(|w| Ok((w, sorted(base)?)));
        let (window, base_field) = match base_field {
            Ok(x) => x,
            Err(e) => {
                skipped.push((times[base], e));
                progress(base + 1, total);
                continue;
            }
        };
        let mut ext_cfg = cfg.nowcast;
        ext_cfg.smoothing = Smoothing::None;
        let mut rc_cfg = cfg.nowcast;
        rc_cfg.smoothing = Smoothing::Sprog;
        let wanted_leads: Vec<u32> = wanted.iter().map(|k| leads[*k]).collect();
        let run = || -> Result<_, crate::nowcast::NowcastError> {
            let input = NowcastInput::new(&window, &rc_cfg)?;
            let motion = input.motion()?;
            let rc = input.forecast(motion.clone(), &wanted_leads)?;
            let ext = NowcastInput::new(&window, &ext_cfg)?.forecast(motion, &wanted_leads)?;
            Ok((ext, rc))
        };
        let (ext, rc) = match run() {
            Ok(x) => x,
            Err(e) => {
                skipped.push((times[base], e.to_string()));
                progress(base + 1, total);
                continue;
            }
        };
        cases += 1;
        if times[base] >= mid && !fitted {
            fitted = true;
            for row in rows.iter_mut() {
                if row.fit.cells >= cfg.min_samples {
                    row.calibration = match cfg.calibration_half_life_min {
                        Some(h) => Calibration::fit_weighted(&row.fit_by_age(mid, h)),
                        None => Calibration::fit(&row.fit.reliability),
                    };
                }
            }
        }
        let probs = rc.probability(cfg.prob_threshold);
        let persistence = &base_field.rate_mm_h;
        for (j, &k) in wanted.iter().enumerate() {
            let Some(oi) = obs_idx[k] else { continue };
            // (A scan that cannot be had now leaves this lead out.)
            let Ok(obs_field) = sorted(oi) else { continue };
            let obs = &obs_field.rate_mm_h;
            if obs.dim() != persistence.dim() || !obs_field.grid.same_geometry(&base_field.grid) {
                continue;
            }
            // The common mask.
            let mut mask = obs.clone();
            for f in [persistence, &ext.rate_mm_h[j], &rc.rate_mm_h[j]] {
                mask_like(&mut mask, &f.view());
            }
            let row = &mut rows[k];
            row.cases += 1;
            for (m, method) in Method::ALL.iter().enumerate() {
                let mut f = match method {
                    Method::Persistence => persistence.clone(),
                    Method::Extrapolation => ext.rate_mm_h[j].clone(),
                    Method::Raincast => rc.rate_mm_h[j].clone(),
                };
                mask_like(&mut f, &mask.view());
                let s = score(
                    &f.view(),
                    &mask.view(),
                    &cfg.thresholds,
                    cfg.fss_threshold,
                    cfg.fss_window,
                );
                let ms = &mut row.methods[m];
                for (t, (csi, pod, far)) in s.categorical.iter().enumerate() {
                    ms.csi[t].add(*csi);
                    ms.pod[t].add(*pod);
                    ms.far[t].add(*far);
                }
                ms.fss.add(s.fss);
                ms.mae.add(s.mae);
            }
            row.reliability
                .add(&probs[j].view(), &mask.view(), cfg.prob_threshold);
            // As the live skill: Raincast and persistence only, with the
            // same call (the neighbourhood probability streamed, equal to
            // `probs[j]` bit for bit).
            if let Some(sums) = skill_sums_of(
                &obs.view(),
                &[
                    (
                        rc.rate_mm_h[j].view(),
                        Prob::Neighbourhood(rc.prob_radius_cells(leads[k])),
                    ),
                    (persistence.view(), Prob::YesNo),
                ],
                &spec,
            ) {
                for (p, s) in row.pooled.iter_mut().zip(&sums) {
                    p.add(s);
                }
            }
            // The calibration check, on the common mask.
            let mut prob = probs[j].clone();
            mask_like(&mut prob, &mask.view());
            let served = cfg.calibration_fit == CalibrationFit::Served;
            let held_out = times[base] >= mid;
            // A held-out case's calibration, before its own pair is kept
            // (it verifies after the issue time, so it would not count).
            let calibration = match (held_out, served) {
                (false, _) => None,
                (true, true) => row.served_calibration(times[base], cfg.min_samples),
                (true, false) => row.calibration.clone(),
            };
            let fit_case = times[oi] < mid;
            if fit_case {
                row.fit.add(&prob.view(), &mask.view(), cfg.prob_threshold);
            }
            if served || (fit_case && cfg.calibration_half_life_min.is_some()) {
                let mut rel = Reliability::new(10);
                rel.add(&prob.view(), &mask.view(), cfg.prob_threshold);
                row.fit_cases.push((times[oi], rel));
            }
            if held_out {
                row.held_out_cases += 1;
                row.held_out_raw
                    .add(&prob.view(), &mask.view(), cfg.prob_threshold);
                let cal = match &calibration {
                    Some(c) => {
                        row.held_out_calibrated_cases += 1;
                        c.apply_field(&prob.view())
                    }
                    None => prob,
                };
                row.held_out_calibrated
                    .add(&cal.view(), &mask.view(), cfg.prob_threshold);
            }
        }
        progress(base + 1, total);
    }
    VerifyReport {
        step_s,
        rows,
        skipped,
        cases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const NAN: f32 = f32::NAN;

    #[test]
    fn contingency_by_hand() {
        // Threshold 1: pairs (f, o):
        // (2,3) hit, (0,2) miss, (5,0) false alarm, (0,0) cn,
        // (1,1) hit (≥ is an event), (NaN,4) skipped, (3,NaN) skipped, (0.5,0.9) cn.
        let f = array![[2.0, 0.0, 5.0, 0.0], [1.0, NAN, 3.0, 0.5]];
        let o = array![[3.0, 2.0, 0.0, 0.0], [1.0, 4.0, NAN, 0.9]];
        let t = Contingency::new(&f.view(), &o.view(), 1.0);
        assert_eq!(
            t,
            Contingency {
                hits: 2,
                misses: 1,
                false_alarms: 1,
                correct_negatives: 2
            }
        );
        assert_eq!(t.csi(), Some(0.5));
        assert_eq!(t.pod(), Some(2.0 / 3.0));
        assert_eq!(t.far(), Some(1.0 / 3.0));
        // No events at a high threshold: undefined.
        let t = Contingency::new(&f.view(), &o.view(), 100.0);
        assert_eq!(t.csi(), None);
        assert_eq!(t.correct_negatives, 6);
    }

    #[test]
    fn mae_by_hand() {
        let f = array![[1.0, 2.0], [NAN, 4.0]];
        let o = array![[2.0, 2.0], [9.0, 1.0]];
        // |1-2| + |2-2| + |4-1| = 4 over 3 pairs.
        assert_eq!(mae(&f.view(), &o.view()), Some(4.0 / 3.0));
        let none = array![[NAN]];
        assert_eq!(mae(&none.view(), &none.view()), None);
    }

    #[test]
    fn fss_by_hand() {
        // 1×4 strip, window 1: FSS reduces to 1 − Σ(If−Io)²/(ΣIf²+ΣIo²).
        let f = array![[1.0f32, 0.0, 1.0, 0.0]];
        let o = array![[1.0f32, 1.0, 0.0, 0.0]];
        // (0 + 1 + 1 + 0) / (2 + 2) = 0.5
        assert_eq!(fss(&f.view(), &o.view(), 0.5, 1), Some(0.5));
        // Window 2 (cells [c-1, c+1) like scipy): fractions with area 4 in a
        // 1-row grid. f windows: c0:{f0}=1, c1:{f0,f1}=1, c2:{f1,f2}=1, c3:{f2,f3}=1
        // → Pf = 0.25 each; o: c0:1, c1:2, c2:1, c3:0 → Po = .25,.5,.25,0.
        // num = 0 + .0625 + 0 + .0625 = .125; den = 4·.0625 + (.0625+.25+.0625+0) = .625
        let v = fss(&f.view(), &o.view(), 0.5, 2).expect("defined");
        assert!((v - (1.0 - 0.125 / 0.625)).abs() < 1e-12, "{v}");
        // A perfect forecast scores 1, a displaced single cell scores 0 at window 1.
        assert_eq!(fss(&o.view(), &o.view(), 0.5, 3), Some(1.0));
        let a = array![[1.0f32, 0.0, 0.0]];
        let b = array![[0.0f32, 0.0, 1.0]];
        assert_eq!(fss(&a.view(), &b.view(), 0.5, 1), Some(0.0));
        // With a 3-cell window both see the event from the middle cell.
        assert!(fss(&a.view(), &b.view(), 0.5, 3).expect("defined") > 0.0);
        // No events: undefined.
        let z = array![[0.0f32, 0.0]];
        assert_eq!(fss(&z.view(), &z.view(), 0.5, 3), None);
    }

    #[test]
    fn fss_ignores_non_finite_pairs() {
        let f = array![[1.0f32, NAN], [0.0, 0.0]];
        let o = array![[1.0f32, 1.0], [0.0, NAN]];
        // Only (0,0) and (1,0) are pairs; the observed event at (0,1) is not
        // in a pair, so it does not count: a perfect score.
        assert_eq!(fss(&f.view(), &o.view(), 0.5, 1), Some(1.0));
    }

    #[test]
    fn reliability_table() {
        let p = array![[0.05f32, 0.05, 0.95, 0.95, 0.55, NAN]];
        let o = array![[0.0f32, 2.0, 2.0, 2.0, 0.0, 2.0]];
        let mut r = Reliability::new(10);
        r.add(&p.view(), &o.view(), 1.0);
        let t = r.table();
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].2, t[0].4), (2, 0.5));
        assert_eq!((t[1].2, t[1].4), (1, 0.0));
        assert_eq!((t[2].2, t[2].4), (2, 1.0));
        assert!((t[2].3 - 0.95).abs() < 1e-6);
        // Brier: bin 0: one event at p=.05 → .9025, one non-event → .0025;
        // bin 5: .3025; bin 9: two events → 2·.0025. Sum 1.2125 / 5.
        let b = r.brier_approx().expect("defined");
        assert!((b - 1.2125 / 5.0).abs() < 1e-6, "{b}");
    }

    #[test]
    fn pooled_sums_by_hand() {
        let f = array![[1.0f32, 0.0, 3.0, NAN]];
        let o = array![[0.0f32, 0.0, 1.0, 5.0]];
        // Wet at 0.1: (1,0) and (3,1); (0,0) dry, NaN pair left out.
        assert_eq!(wet_abs_error_sum(&f.view(), &o.view(), 0.1), (3.0, 2));
        let p = array![[0.5f32, 0.0, 1.0, 0.7]];
        // (0.5−0)² + 0 + (1−1)²; the pair with NaN forecast counts (p finite).
        let (s, n) = brier_sum(&p.view(), &o.view(), 1.0);
        assert_eq!(n, 4);
        assert!((s - (0.25 + 0.09)).abs() < 1e-6, "{s}");
        let (num, den) = fss_sums(&f.view(), &o.view(), 0.5, 1).expect("same shape");
        assert_eq!(fss(&f.view(), &o.view(), 0.5, 1), Some(1.0 - num / den));
    }

    /// Pseudo-random fields with no-data holes: with `dense`, rain on half
    /// the cells; else two rain blobs in a dry field, so that the FSS pass
    /// skips most cells.
    fn skill_fields(dense: bool) -> [Array2<f32>; 3] {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f32 / (1u64 << 31) as f32
        };
        let (rows, cols) = if dense { (23, 31) } else { (67, 83) };
        let mut field = |nan_every: usize, shift: f32| {
            Array2::from_shape_fn((rows, cols), |(r, c)| {
                let v = next();
                if (r * cols + c) % nan_every == 0 {
                    NAN
                } else if dense {
                    if v < 0.5 {
                        0.0
                    } else {
                        (v - 0.5) * 16.0
                    }
                } else {
                    let blob = |cy: f32, cx: f32| {
                        (r as f32 - cy).powi(2) + (c as f32 - cx - shift).powi(2) < 36.0
                    };
                    if blob(20.0, 15.0) || blob(50.0, 60.0) {
                        v * 12.0
                    } else {
                        0.0
                    }
                }
            })
        };
        [field(17, 0.0), field(13, 2.0), field(19, -3.0)]
    }

    #[test]
    fn fused_sums_equal_the_separate_scores() {
        for dense in [true, false] {
            let [o, f1, f2] = skill_fields(dense);
            let p1 = f1.mapv(|v| {
                if v.is_finite() {
                    (v / 8.0).min(1.0)
                } else {
                    NAN
                }
            });
            let spec = SkillSpec {
                fss_threshold: 1.0,
                fss_window: 5,
                wet_mm_h: 0.1,
                prob_threshold: 0.1,
            };
            let sums = skill_sums(
                &o.view(),
                &[(f1.view(), Some(p1.view())), (f2.view(), None)],
                &spec,
            )
            .expect("same shapes");
            let mut mask = o.clone();
            mask_like(&mut mask, &f1.view());
            mask_like(&mut mask, &f2.view());
            let p2 = f2.mapv(|v| {
                if v.is_nan() {
                    NAN
                } else {
                    (v >= 0.1) as u8 as f32
                }
            });
            for (s, (f, p)) in sums.iter().zip([(&f1, &p1), (&f2, &p2)]) {
                let mut f = f.clone();
                mask_like(&mut f, &mask.view());
                assert_eq!(s.cases, 1);
                for (i, t) in SKILL_CSI_THRESHOLDS_MM_H.iter().enumerate() {
                    let c = Contingency::new(&f.view(), &mask.view(), *t);
                    assert_eq!(
                        (s.hits[i], s.misses[i], s.false_alarms[i]),
                        (c.hits, c.misses, c.false_alarms)
                    );
                }
                // The same sums (added in another order: lane by lane),
                // although the fused pass skips the cells whose window
                // holds no event and `fss_sums` visits all.
                let (num, den) = fss_sums(&f.view(), &mask.view(), 1.0, 5).expect("same shape");
                assert_close(s.fss_num, num);
                assert_close(s.fss_den, den);
                assert!(num > 0.0 && den > 0.0);
                let (abs, wet) = wet_abs_error_sum(&f.view(), &mask.view(), 0.1);
                assert_eq!(s.wet_cells, wet);
                assert_close(s.abs_err_mm_h, abs);
                let mut pm = p.clone();
                mask_like(&mut pm, &mask.view());
                let (brier, cells) = brier_sum(&pm.view(), &mask.view(), 0.1);
                assert_eq!(s.brier_cells, cells);
                assert_close(s.brier_sum, brier);
                let mut rel = Reliability::new(SKILL_BINS);
                rel.add(&pm.view(), &mask.view(), 0.1);
                for (got, want) in s.reliability().bins.iter().zip(&rel.bins) {
                    assert_eq!((got.0, got.2), (want.0, want.2));
                    assert_close(got.1, want.1);
                }
                assert!(s.hits[0] > 0 && s.wet_cells > 0 && s.brier_cells > 0);
            }
            // Sums add up; a shape mismatch is refused.
            let mut two = sums[0].clone();
            two.add(&sums[0]);
            assert_eq!((two.cases, two.hits[1]), (2, 2 * sums[0].hits[1]));
            assert_eq!(two.fss(), sums[0].fss());
            let small = Array2::<f32>::zeros((2, 2));
            assert!(skill_sums(&o.view(), &[(small.view(), None)], &spec).is_none());
        }
    }

    /// The straightforward sums of one forecast on the common mask of
    /// `obs` and `all`: the per-score functions on masked copies, the FSS
    /// from whole-grid integral images visiting every cell.
    fn straightforward(
        obs: &Array2<f32>,
        all: &[&Array2<f32>],
        f: &Array2<f32>,
        p: &Array2<f32>,
        spec: &SkillSpec,
    ) -> SkillSums {
        let mut mask = obs.clone();
        for g in all {
            mask_like(&mut mask, &g.view());
        }
        let mut f = f.clone();
        mask_like(&mut f, &mask.view());
        let mut p = p.clone();
        mask_like(&mut p, &mask.view());
        let mut s = SkillSums {
            cases: 1,
            ..SkillSums::default()
        };
        for (i, t) in SKILL_CSI_THRESHOLDS_MM_H.iter().enumerate() {
            let c = Contingency::new(&f.view(), &mask.view(), *t);
            (s.hits[i], s.misses[i], s.false_alarms[i]) = (c.hits, c.misses, c.false_alarms);
        }
        (s.fss_num, s.fss_den) =
            fss_sums(&f.view(), &mask.view(), spec.fss_threshold, spec.fss_window).expect("shape");
        (s.abs_err_mm_h, s.wet_cells) = wet_abs_error_sum(&f.view(), &mask.view(), spec.wet_mm_h);
        (s.brier_sum, s.brier_cells) = brier_sum(&p.view(), &mask.view(), spec.prob_threshold);
        let mut rel = Reliability::new(SKILL_BINS);
        rel.add(&p.view(), &mask.view(), spec.prob_threshold);
        for (i, b) in rel.bins.iter().enumerate() {
            (s.rel_cells[i], s.rel_prob[i], s.rel_events[i]) = *b;
        }
        s
    }

    /// `got` equals `want` up to the rounding of adding in another order.
    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{got} against {want}"
        );
    }

    /// The counts equal, the f64 sums up to the order of the additions.
    fn assert_sums_close(got: &SkillSums, want: &SkillSums) {
        let counts = |s: &SkillSums| {
            (
                s.cases,
                s.hits,
                s.misses,
                s.false_alarms,
                s.wet_cells,
                s.brier_cells,
                s.rel_cells,
                s.rel_events,
            )
        };
        assert_eq!(counts(got), counts(want));
        for (g, w) in [
            (got.fss_num, want.fss_num),
            (got.fss_den, want.fss_den),
            (got.abs_err_mm_h, want.abs_err_mm_h),
            (got.brier_sum, want.brier_sum),
        ]
        .into_iter()
        .chain(got.rel_prob.into_iter().zip(want.rel_prob))
        {
            assert_close(g, w);
        }
    }

    /// The sums of one forecast in the order [`SkillStream`] documents,
    /// cell by cell with no skipping: every cell where `obs` and all of
    /// `all` are finite, in row-major order, adds to lane `c % SKILL_LANES`
    /// of each f64 sum; the lanes are added in lane order; the FSS from
    /// whole-grid integral images.
    fn lane_reference(
        obs: &Array2<f32>,
        all: &[&Array2<f32>],
        f: &Array2<f32>,
        p: &Array2<f32>,
        spec: &SkillSpec,
    ) -> SkillSums {
        let (rows, cols) = obs.dim();
        let known = |r: usize, c: usize| {
            obs[[r, c]].is_finite() && all.iter().all(|g| g[[r, c]].is_finite())
        };
        let mut s = SkillSums {
            cases: 1,
            ..SkillSums::default()
        };
        let mut abs = [0f64; SKILL_LANES];
        let mut brier = [0f64; SKILL_LANES];
        let mut rel = [[0f64; SKILL_LANES]; SKILL_BINS];
        let (mut num, mut den) = ([0f64; SKILL_LANES], [0f64; SKILL_LANES]);
        let (w, window, lo) = (cols + 1, spec.fss_window, spec.fss_window / 2);
        let mut int_f = vec![0u32; (rows + 1) * w];
        let mut int_o = vec![0u32; (rows + 1) * w];
        for r in 0..rows {
            let (mut rf, mut ro) = (0, 0);
            for c in 0..cols {
                let (o, fv, pv, lane) = (obs[[r, c]], f[[r, c]], p[[r, c]], c % SKILL_LANES);
                if known(r, c) {
                    rf += (fv >= spec.fss_threshold) as u32;
                    ro += (o >= spec.fss_threshold) as u32;
                    for (i, t) in SKILL_CSI_THRESHOLDS_MM_H.iter().enumerate() {
                        match (fv >= *t, o >= *t) {
                            (true, true) => s.hits[i] += 1,
                            (false, true) => s.misses[i] += 1,
                            (true, false) => s.false_alarms[i] += 1,
                            (false, false) => {}
                        }
                    }
                    if fv >= spec.wet_mm_h || o >= spec.wet_mm_h {
                        abs[lane] += (fv as f64 - o as f64).abs();
                        s.wet_cells += 1;
                    }
                    if pv.is_finite() {
                        let e = (o >= spec.prob_threshold) as u8;
                        let pc = pv.clamp(0.0, 1.0);
                        brier[lane] += (pc as f64 - e as f64).powi(2);
                        s.brier_cells += 1;
                        let b = ((pc * SKILL_BINS as f32) as usize).min(SKILL_BINS - 1);
                        s.rel_cells[b] += 1;
                        s.rel_events[b] += e as u64;
                        rel[b][lane] += pv as f64;
                    }
                }
                int_f[(r + 1) * w + c + 1] = int_f[r * w + c + 1] + rf;
                int_o[(r + 1) * w + c + 1] = int_o[r * w + c + 1] + ro;
            }
        }
        let area = (window * window) as f64;
        for r in 0..rows {
            let (r0, r1) = (r.saturating_sub(lo), (r + window - lo).min(rows));
            for c in 0..cols {
                if !known(r, c) {
                    continue;
                }
                let (c0, c1) = (c.saturating_sub(lo), (c + window - lo).min(cols));
                let sum = |img: &[u32]| {
                    (img[r1 * w + c1] + img[r0 * w + c0] - img[r0 * w + c1] - img[r1 * w + c0])
                        as f64
                        / area
                };
                let (po, pf) = (sum(&int_o), sum(&int_f));
                num[c % SKILL_LANES] += (pf - po) * (pf - po);
                den[c % SKILL_LANES] += pf * pf + po * po;
            }
        }
        let total = |v: &[f64; SKILL_LANES]| v.iter().fold(0.0, |a, x| a + x);
        (s.abs_err_mm_h, s.brier_sum) = (total(&abs), total(&brier));
        (s.fss_num, s.fss_den) = (total(&num), total(&den));
        for (sum, lanes) in s.rel_prob.iter_mut().zip(&rel) {
            *sum = total(lanes);
        }
        s
    }

    /// Rain touching every edge of the grid, a no-data block and a no-data
    /// border column, on a grid of `rows × cols`.
    fn edge_fields(rows: usize, cols: usize, shift: usize) -> [Array2<f32>; 3] {
        let field = |seed: usize| {
            Array2::from_shape_fn((rows, cols), |(r, c)| {
                if c == cols - 1 && r % 3 == seed % 3 {
                    return NAN;
                }
                if (rows / 3..rows / 2).contains(&r) && (cols / 3..cols / 2).contains(&c) {
                    return NAN;
                }
                let edge = r == 0 || c == 0 || r == rows - 1 || c + 2 >= cols;
                let v = ((r * 7 + c * 13 + seed * 5 + shift) % 23) as f32 * 0.4;
                if edge || (r + c + seed).is_multiple_of(4) {
                    v
                } else {
                    0.0
                }
            })
        };
        [field(0), field(1), field(2)]
    }

    #[test]
    fn streaming_scorer_equals_the_straightforward_sums_at_every_edge() {
        let mut cases = Vec::new();
        for (rows, cols) in [(23, 31), (3, 40), (40, 2), (1, 9)] {
            cases.push(edge_fields(rows, cols, 0));
        }
        let [o, a, b] = skill_fields(true);
        cases.push([o, a, b]);
        let [o, a, b] = skill_fields(false);
        cases.push([o, a, b]);
        // Rain only in the last row and column: a window pass that stops
        // early or drops the last rows still pending misses it.
        let corner = |v: f32| {
            Array2::from_shape_fn((12, 12), |(r, c)| if r == 11 || c == 11 { v } else { 0.0 })
        };
        cases.push([corner(2.0), corner(0.0), corner(6.0)]);
        let mut checked = 0;
        for [o, f1, f2] in &cases {
            for window in [1, 2, 4, 5, 8, 30] {
                let spec = SkillSpec {
                    fss_threshold: 1.0,
                    fss_window: window,
                    wet_mm_h: 0.1,
                    prob_threshold: 0.1,
                };
                let p1 = f1.mapv(|v| {
                    if v.is_finite() {
                        (v / 8.0).min(1.0)
                    } else {
                        NAN
                    }
                });
                let p2 = f2.mapv(|v| {
                    if v.is_nan() {
                        NAN
                    } else {
                        (v >= 0.1) as u8 as f32
                    }
                });
                let sums = skill_sums(
                    &o.view(),
                    &[(f1.view(), Some(p1.view())), (f2.view(), None)],
                    &spec,
                )
                .expect("same shapes");
                for (s, (f, p)) in sums.iter().zip([(f1, &p1), (f2, &p2)]) {
                    // Bit for bit against the per-cell reference that adds
                    // in the same lane order: `==` on every f64.
                    let want = lane_reference(o, &[f1, f2], f, p, &spec);
                    assert_eq!(*s, want, "{:?} window {window}", o.dim());
                    // The same sums as the per-score functions (which add
                    // in plain row-major order).
                    assert_sums_close(s, &straightforward(o, &[f1, f2], f, p, &spec));
                    checked += (s.fss_num > 0.0) as usize;
                }
            }
        }
        assert!(
            checked > 40,
            "{checked} cases with a non-zero FSS numerator"
        );
    }

    /// The neighbourhood probability by its definition, cell by cell: the
    /// fraction of known cells at or above `threshold` in the window,
    /// NaN where the cell itself is unknown.
    fn neighbourhood_by_definition(f: &Array2<f32>, threshold: f32, radius: usize) -> Array2<f32> {
        let (rows, cols) = f.dim();
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            if !f[[r, c]].is_finite() {
                return f32::NAN;
            }
            let (mut n, mut k) = (0u32, 0u32);
            for rr in r.saturating_sub(radius)..(r + radius + 1).min(rows) {
                for cc in c.saturating_sub(radius)..(c + radius + 1).min(cols) {
                    let v = f[[rr, cc]];
                    n += v.is_finite() as u32;
                    k += (v >= threshold) as u32;
                }
            }
            k as f32 / n as f32
        })
    }

    #[test]
    fn streamed_neighbourhood_probability_is_the_field_bit_for_bit() {
        for [f, o, _] in [edge_fields(29, 17, 3), skill_fields(false)] {
            for radius in [0, 1, 3, 7, 40] {
                let p = crate::nowcast::neighbourhood_probability(&f.view(), 0.1, radius);
                let by_definition = neighbourhood_by_definition(&f, 0.1, radius);
                for ((at, v), want) in p.indexed_iter().zip(&by_definition) {
                    assert_eq!(v.to_bits(), want.to_bits(), "{at:?} radius {radius}");
                }
                let flat = f.as_standard_layout();
                let mut rows = crate::nowcast::NeighbourhoodRows::new(
                    flat.as_slice().expect("standard"),
                    f.dim(),
                    0.1,
                    radius,
                )
                .expect("shape");
                for r in 0..f.nrows() {
                    let got = rows.next_row().expect("row");
                    for (c, v) in got.iter().enumerate() {
                        assert_eq!(
                            v.to_bits(),
                            p[[r, c]].to_bits(),
                            "({r}, {c}) radius {radius}"
                        );
                    }
                }
                assert!(rows.next_row().is_none());
                // And through the scorer: the same sums as the field.
                let spec = SkillSpec {
                    fss_threshold: 1.0,
                    fss_window: 4,
                    wet_mm_h: 0.1,
                    prob_threshold: 0.1,
                };
                let streamed = skill_sums_of(
                    &o.view(),
                    &[
                        (f.view(), Prob::Neighbourhood(radius)),
                        (o.view(), Prob::YesNo),
                    ],
                    &spec,
                );
                let field = skill_sums(
                    &o.view(),
                    &[(f.view(), Some(p.view())), (o.view(), None)],
                    &spec,
                );
                assert_eq!(streamed, field);
                assert!(streamed.expect("shape")[0].brier_sum > 0.0);
            }
        }
    }

    /// Random fields built to hit every branch of the lane pass: runs of
    /// dry cells (whole groups skipped and groups partly dry), runs and
    /// single cells of no data, rates on the CSI, wet, FSS and probability
    /// thresholds, probabilities of exactly 0, 1 and every bin edge, below
    /// 0 and above 1, NaN probabilities on known rates.
    fn lane_fields(rows: usize, cols: usize, seed: u64) -> [Array2<f32>; 4] {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let mut rate = |dry_from: u32| {
            let mut run = (0, 0u32);
            Array2::from_shape_fn((rows, cols), |_| {
                if run.1 == 0 {
                    // A new run: 0 dry, 1 no data, 2 rain, of 1..24 cells.
                    run = (
                        (next() % 100 >= dry_from) as u32 + (next() % 7 == 0) as u32,
                        1 + next() % 24,
                    );
                }
                run.1 -= 1;
                match run.0 {
                    0 => 0.0,
                    1 if next() % 3 == 0 => NAN,
                    _ => match next() % 8 {
                        0 => SKILL_CSI_THRESHOLDS_MM_H[(next() % 3) as usize],
                        1 => 0.1,
                        2 => 0.0,
                        _ => (next() % 2000) as f32 * 0.01,
                    },
                }
            })
        };
        let (o, f1, f2) = (rate(40), rate(50), rate(60));
        let p = Array2::from_shape_fn((rows, cols), |(r, c)| {
            let v = f1[[r, c]];
            if !v.is_finite() {
                return NAN;
            }
            match next() % 12 {
                0 => 0.0,
                1 => 1.0,
                2 => (next() % 11) as f32 / 10.0,
                3 => -0.25,
                4 => 1.5,
                5 => NAN,
                _ if v < 0.1 => 0.0,
                _ => (next() % 1000) as f32 / 999.0,
            }
        });
        [o, f1, f2, p]
    }

    #[test]
    fn lane_pass_equals_a_per_cell_reference_on_random_fields() {
        let mut visited = (0, 0);
        for (rows, cols, seed) in [(37, 53, 1), (20, 8, 2), (9, 61, 3), (64, 16, 4), (5, 7, 5)] {
            let [o, f1, f2, p1] = lane_fields(rows, cols, seed);
            let p2 = f2.mapv(|v| (v >= 0.1) as u8 as f32);
            for window in [1, 3, 6] {
                let spec = SkillSpec {
                    fss_threshold: 1.0,
                    fss_window: window,
                    wet_mm_h: 0.1,
                    prob_threshold: 0.1,
                };
                let run = |flush_rows: Option<usize>| {
                    let mut stream = SkillStream::new((rows, cols), 2, &spec).expect("window");
                    if let Some(n) = flush_rows {
                        stream.flush_rows = n;
                    }
                    for r in 0..rows {
                        let span = r * cols..(r + 1) * cols;
                        let [o, f1, f2, p1] = [&o, &f1, &f2, &p1]
                            .map(|a| &a.as_slice().expect("standard")[span.clone()]);
                        stream
                            .push_row(o, &[(f1, Some(p1)), (f2, None)])
                            .expect("row");
                    }
                    stream.finish().expect("all rows")
                };
                let sums = run(None);
                // Counts flushed from the lanes after every row: the same.
                assert_eq!(run(Some(1)), sums);
                for (s, (f, p)) in sums.iter().zip([(&f1, &p1), (&f2, &p2)]) {
                    assert_eq!(*s, lane_reference(&o, &[&f1, &f2], f, p, &spec));
                    assert_sums_close(s, &straightforward(&o, &[&f1, &f2], f, p, &spec));
                    visited.0 += s.rel_cells.iter().filter(|n| **n > 0).count();
                    visited.1 += (s.hits[2] > 0 && s.fss_num > 0.0) as usize;
                }
            }
        }
        assert!(visited.0 > 100 && visited.1 > 10, "{visited:?}");
    }

    /// Groups whose rates are all below every threshold but whose
    /// probability is not 0 (scored by the probability's lanes only), with
    /// bins 0 and 9 and every bin edge in one group, negative rates, and a
    /// −inf rate (below every threshold, but not known) in a group with a
    /// wet cell: the per-cell reference's sums, bit for bit.
    #[test]
    fn calm_groups_and_minus_infinity_equal_the_per_cell_reference() {
        let (rows, cols) = (14, 45);
        let mut s = 7u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let calm = [0.0, 0.05, 0.0999, -1.0];
        let mut rate = |k: usize| {
            Array2::from_shape_fn((rows, cols), |(r, c)| match (r >= 6, next() % 10) {
                (true, 0) => 0.1 + (next() % 800) as f32 * 0.01,
                (true, 1) if (c + k).is_multiple_of(5) => f32::NEG_INFINITY,
                (_, 2) if next() % 4 == 0 => NAN,
                _ => calm[(next() % 4) as usize],
            })
        };
        let (mut o, mut f1, mut f2) = (rate(0), rate(1), rate(2));
        let mut p1 = Array2::from_shape_fn((rows, cols), |(r, c)| match (r % 3, next() % 6) {
            (0, _) => (c % 2) as f32,
            (1, 0) => 0.0,
            (1, _) => (next() % 21) as f32 / 20.0,
            (_, 0) => NAN,
            (_, 1) => -0.25,
            (_, 2) => 1.5,
            _ => 0.0,
        });
        // Row 10, columns 8..16: dry with zero probabilities but for a −inf
        // observation and a wet one.
        for c in 8..16 {
            (o[[10, c]], f1[[10, c]], f2[[10, c]], p1[[10, c]]) = (0.0, 0.0, 0.0, 0.0);
        }
        (o[[10, 9]], o[[10, 12]]) = (f32::NEG_INFINITY, 3.0);
        let p2 = f2.mapv(|v| (v >= 0.1) as u8 as f32);
        for window in [1, 4] {
            let spec = SkillSpec {
                fss_threshold: 1.0,
                fss_window: window,
                wet_mm_h: 0.1,
                prob_threshold: 0.1,
            };
            let mut stream = SkillStream::new((rows, cols), 2, &spec).expect("window");
            for r in 0..rows {
                let span = r * cols..(r + 1) * cols;
                let [o, f1, f2, p1] =
                    [&o, &f1, &f2, &p1].map(|a| &a.as_slice().expect("standard")[span.clone()]);
                stream
                    .push_row(o, &[(f1, Some(p1)), (f2, None)])
                    .expect("row");
            }
            let sums = stream.finish().expect("all rows");
            for (s, (f, p)) in sums.iter().zip([(&f1, &p1), (&f2, &p2)]) {
                assert_eq!(*s, lane_reference(&o, &[&f1, &f2], f, p, &spec));
            }
            // The wet observation beside the −inf one is a miss at 0.5 and
            // 1 mm/h; the calm rows' probabilities fill every bin.
            assert!(sums[0].misses[1] >= 1);
            assert!(
                sums[0].rel_cells.iter().all(|n| *n > 0),
                "{:?}",
                sums[0].rel_cells
            );
        }
    }

    #[test]
    fn a_stream_refuses_wrong_rows() {
        let spec = SkillSpec {
            fss_threshold: 1.0,
            fss_window: 3,
            wet_mm_h: 0.1,
            prob_threshold: 0.1,
        };
        let mut s = SkillStream::new((2, 3), 1, &spec).expect("window");
        let row = [0.0f32; 3];
        assert!(s.push_row(&row, &[(&row[..2], None)]).is_none());
        assert!(s.push_row(&row, &[]).is_none());
        assert!(s.push_row(&row, &[(&row, None)]).is_some());
        let early = SkillStream::new((2, 3), 1, &spec).expect("window");
        assert!(early.finish().is_none(), "not every row pushed");
        assert!(s.push_row(&row, &[(&row, None)]).is_some());
        assert!(
            s.push_row(&row, &[(&row, None)]).is_none(),
            "a third row of two"
        );
        assert_eq!(s.finish().expect("all rows")[0].brier_cells, 6);
        assert!(SkillStream::new(
            (2, 3),
            1,
            &SkillSpec {
                fss_window: 0,
                ..spec
            }
        )
        .is_none());
    }

    /// `n` pairs of a forecaster whose true event probability is `q`
    /// (spread over 0..1) and who says `say(q)`, events drawn from `q`.
    fn forecaster(n: usize, seed: u64, say: impl Fn(f32) -> f32) -> (Array2<f32>, Array2<f32>) {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut prob = Array2::zeros((1, n));
        let mut obs = Array2::zeros((1, n));
        for i in 0..n {
            let q = next();
            prob[[0, i]] = say(q);
            obs[[0, i]] = if next() < q { 1.0 } else { 0.0 };
        }
        (prob, obs)
    }

    /// A lead's row holding only these cases' reliability tables.
    fn row_of(fit_cases: Vec<(chrono::DateTime<chrono::Utc>, Reliability)>) -> LeadRow {
        LeadRow {
            lead_min: 5,
            cases: 0,
            methods: Vec::new(),
            reliability: Reliability::new(10),
            pooled: Default::default(),
            fit: ProbabilityScore::default(),
            fit_cases,
            calibration: None,
            held_out_raw: ProbabilityScore::default(),
            held_out_calibrated: ProbabilityScore::default(),
            held_out_cases: 0,
            held_out_calibrated_cases: 0,
        }
    }

    #[test]
    fn the_served_calibration_fits_only_what_was_verified_by_the_issue_time() {
        // An over-confident morning, a reliable afternoon, and a wildly
        // wrong case verified after the issue time (it must not count),
        // and one older than the service's window (it must not count
        // either).
        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let min = |m: i64| t0 + chrono::Duration::minutes(m);
        let table = |n: usize, seed: u64, say: &dyn Fn(f32) -> f32| {
            let (p, o) = forecaster(n, seed, say);
            let mut r = Reliability::new(10);
            r.add(&p.view(), &o.view(), 0.5);
            r
        };
        let morning = table(20_000, 11, &|q| (q * 3.0).min(1.0));
        let afternoon = table(20_000, 12, &|q| q);
        let later = table(20_000, 13, &|q| 1.0 - q);
        let cases = vec![(min(0), morning.clone()), (min(300), afternoon.clone())];
        let row = row_of(cases.clone());
        let at = min(310);
        let served = row.served_calibration(at, 2000).expect("enough cells");
        // Equal to the fit of the two tables verified by then...
        let mut both = morning.clone();
        for (b, r) in both.bins.iter_mut().zip(&afternoon.bins) {
            *b = (b.0 + r.0, b.1 + r.1, b.2 + r.2);
        }
        assert_eq!(Some(served.clone()), Calibration::fit(&both));
        // ...with a case verified after the issue time added, one verified
        // by the very scan of the issue time (the service scores that scan
        // after publishing), or one 24 h older than it: the same calibration.
        let mut peek = cases.clone();
        peek.push((min(320), later.clone()));
        peek.push((at, later));
        peek.push((
            at - chrono::Duration::hours(SERVED_WINDOW_HOURS),
            table(20_000, 14, &|_| 0.0),
        ));
        assert_eq!(row_of(peek).served_calibration(at, 2000), Some(served));
        // Just after the first case verified only the morning is known;
        // until then, or below min_samples cells, raw is served.
        assert_eq!(
            row.served_calibration(min(1), 2000),
            Calibration::fit(&morning)
        );
        assert_eq!(row.served_calibration(min(0), 2000), None);
        assert_eq!(row.served_calibration(at, 40_001), None);
    }

    #[test]
    fn weighted_calibration_follows_the_recent_cases() {
        // Unit weights: the plain fit.
        let (p, o) = forecaster(20_000, 3, |q| (q * 1.5).min(1.0));
        let mut t = Reliability::new(10);
        t.add(&p.view(), &o.view(), 0.5);
        let unit: Vec<(f64, f64, f64)> = t
            .bins
            .iter()
            .map(|&(n, s, e)| (n as f64, s, e as f64))
            .collect();
        assert_eq!(Calibration::fit_weighted(&unit), Calibration::fit(&t));
        // An old, very over-confident record and a recent, reliable one:
        // weighted by age, the fit is close to the recent one.
        let (p_old, o_old) = forecaster(20_000, 5, |q| (q * 3.0).min(1.0));
        let (p_new, o_new) = forecaster(20_000, 6, |q| q);
        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let mut row_cases = Vec::new();
        for (p, o, age_min) in [(&p_old, &o_old, 240), (&p_new, &o_new, 0)] {
            let mut r = Reliability::new(10);
            r.add(&p.view(), &o.view(), 0.5);
            row_cases.push((t0 - chrono::Duration::minutes(age_min), r));
        }
        let row = row_of(row_cases);
        let recent = Calibration::fit_weighted(&row.fit_by_age(t0, 60.0)).expect("fit");
        let flat = Calibration::fit_weighted(&row.fit_by_age(t0, 1e9)).expect("fit");
        // The reliable recent forecaster says 0.6 and means it.
        assert!(
            (recent.apply(0.6) - 0.6).abs() < 0.05,
            "{}",
            recent.apply(0.6)
        );
        assert!(flat.apply(0.6) < 0.5, "{}", flat.apply(0.6));
    }

    #[test]
    fn calibration_is_monotone() {
        // Any table, however unreliable: the map never decreases.
        for seed in 1..40u64 {
            let mut t = Reliability::new(10);
            let mut s = seed;
            for b in t.bins.iter_mut() {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = (s >> 54) + 1;
                let e = (s >> 20) % (n + 1);
                *b = (n, n as f64 * ((s >> 8) % 1000) as f64 / 1000.0, e);
            }
            let c = Calibration::fit(&t).expect("non-empty");
            assert!(
                c.knots
                    .windows(2)
                    .all(|k| k[0].0 < k[1].0 && k[0].1 <= k[1].1),
                "{c:?}"
            );
            let mut last = -1.0f32;
            for i in 0..=1000 {
                let y = c.apply(i as f32 / 1000.0);
                assert!(
                    (0.0..=1.0).contains(&y) && y >= last,
                    "seed {seed} p {i}: {y} < {last}"
                );
                last = y;
            }
        }
        assert_eq!(Calibration::fit(&Reliability::new(10)), None);
    }

    #[test]
    fn calibration_is_the_identity_on_reliable_input() {
        // Every bin's observed frequency equals its mean probability.
        let mut t = Reliability::new(10);
        for (i, b) in t.bins.iter_mut().enumerate() {
            let p = (i as f64 + 0.5) / 10.0;
            *b = (1000, 1000.0 * p, (1000.0 * p) as u64);
        }
        let c = Calibration::fit(&t).expect("non-empty");
        assert_eq!(c.knots.len(), 10);
        for i in 0..=100 {
            let p = i as f32 / 100.0;
            assert!((c.apply(p) - p).abs() < 1e-6, "{p} -> {}", c.apply(p));
        }
        assert!(c.apply(f32::NAN).is_nan());
        // A reliable forecaster's sample: the map stays close to the identity.
        let (p, o) = forecaster(200_000, 3, |q| q);
        let mut score = ProbabilityScore::default();
        score.add(&p.view(), &o.view(), 0.5);
        assert!(score.reliability.ece().expect("cells") < 0.01);
        let c = Calibration::fit(&score.reliability).expect("non-empty");
        for i in 0..=20 {
            let q = i as f32 / 20.0;
            assert!((c.apply(q) - q).abs() < 0.03, "{q} -> {}", c.apply(q));
        }
    }

    #[test]
    fn calibration_fixes_an_over_confident_forecaster() {
        // Says 0.5 + 1.8 (q − 0.5): too sure both ways.
        let say = |q: f32| (0.5 + 1.8 * (q - 0.5)).clamp(0.0, 1.0);
        let (p_fit, o_fit) = forecaster(100_000, 11, say);
        let (p, o) = forecaster(100_000, 12, say);
        let mut fit = ProbabilityScore::default();
        fit.add(&p_fit.view(), &o_fit.view(), 0.5);
        let c = Calibration::fit(&fit.reliability).expect("non-empty");
        let (mut raw, mut cal) = (ProbabilityScore::default(), ProbabilityScore::default());
        raw.add(&p.view(), &o.view(), 0.5);
        cal.add(&c.apply_field(&p.view()).view(), &o.view(), 0.5);
        let (ece_raw, ece_cal) = (
            raw.reliability.ece().expect("cells"),
            cal.reliability.ece().expect("cells"),
        );
        assert!(ece_raw > 0.1, "over-confident: {ece_raw}");
        assert!(ece_cal < 0.02, "calibrated: {ece_cal}");
        assert!(
            cal.bss().expect("cells") > raw.bss().expect("cells"),
            "{:?} {:?}",
            cal.bss(),
            raw.bss()
        );
        assert!(cal.brier().expect("cells") < raw.brier().expect("cells"));
    }

    #[test]
    fn verify_series_fits_on_the_first_half_and_scores_the_second() {
        use crate::nowcast::tests::radar;
        use crate::synth::Coverage;
        let fields = radar(96, 128, (2.0, 1.0), Coverage::Full).fields(30, 14);
        let step_min = ((fields[1].time - fields[0].time).num_seconds() / 60) as u32;
        let cfg = VerifyConfig {
            leads_min: Some(vec![step_min, 2 * step_min]),
            prob_threshold: 0.1,
            min_samples: 1000,
            ..VerifyConfig::default()
        };
        let report = verify_series(&fields, &cfg, &mut |_, _| {});
        let mid = fields[0].time + (fields[13].time - fields[0].time) / 2;
        for row in &report.rows {
            // Fit cases verified before the middle, test cases issued after.
            assert!(row.fit.cells >= cfg.min_samples, "{row:?}");
            assert!(row.held_out_raw.cells > 0);
            assert_eq!(row.held_out_raw.cells, row.held_out_calibrated.cells);
            let c = row.calibration.as_ref().expect("enough fit cells");
            assert!(c.knots.windows(2).all(|k| k[0].1 <= k[1].1));
            assert!(
                row.held_out_raw.bss().is_some()
                    && row.held_out_calibrated.reliability.ece().is_some()
            );
            // Pooled sums: Raincast and persistence, one case per scan.
            assert_eq!(row.pooled[0].cases, row.cases);
            assert_eq!(row.pooled[1].cases, row.cases);
            assert_eq!(row.pooled[0].brier_cells, row.pooled[1].brier_cells);
            // A case issued before `mid` and verified after it is in neither half.
            let straddling = fields
                .iter()
                .filter(|f| {
                    f.time < mid && f.time + chrono::Duration::minutes(row.lead_min as i64) >= mid
                })
                .count();
            assert!(straddling > 0);
        }
        let run = |c: VerifyConfig| verify_series(&fields, &c, &mut |_, _| {});
        // Below `min_samples` the probability stays raw.
        let raw = run(VerifyConfig {
            min_samples: u64::MAX,
            ..cfg.clone()
        });
        for row in &raw.rows {
            assert!(row.calibration.is_none());
            assert_eq!(row.held_out_raw, row.held_out_calibrated);
            assert_eq!(row.held_out_calibrated_cases, 0);
        }
        // The calibration as served: the same held-out pairs, each case
        // scored with the fit of what was verified before its issue time, which
        // is the first half's fit plus what verified since.
        let served = run(VerifyConfig {
            calibration_fit: CalibrationFit::Served,
            ..cfg.clone()
        });
        for (s, f) in served.rows.iter().zip(&report.rows) {
            assert_eq!(s.held_out_raw, f.held_out_raw);
            assert_eq!(s.held_out_cases, f.held_out_cases);
            assert_eq!(f.held_out_calibrated_cases, f.held_out_cases);
            assert_eq!(s.held_out_calibrated_cases, s.held_out_cases);
            assert!(s.held_out_cases > 0);
            // Every case in the record, each once.
            assert_eq!(s.fit_cases.len() as u64, s.cases);
            assert_ne!(s.held_out_calibrated, f.held_out_calibrated);
        }
    }

    #[test]
    fn running_mean_skips_undefined() {
        let mut m = Mean::default();
        m.add(Some(1.0));
        m.add(None);
        m.add(Some(f64::NAN));
        m.add(Some(0.0));
        assert_eq!((m.get(), m.count()), (Some(0.5), 2));
        assert_eq!(Mean::default().get(), None);
    }

    #[test]
    fn score_and_mask_like() {
        let mut f = array![[2.0f32, 0.0], [3.0, 0.0]];
        let o = array![[2.0f32, 2.0], [NAN, 0.0]];
        mask_like(&mut f, &o.view());
        assert!(f[[1, 0]].is_nan());
        let s = score(&f.view(), &o.view(), &[1.0, 5.0], 1.0, 1);
        assert_eq!(s.categorical[0], (Some(0.5), Some(0.5), Some(0.0)));
        assert_eq!(s.categorical[1], (None, None, None));
        assert_eq!(s.mae, Some(2.0 / 3.0));
    }
}
