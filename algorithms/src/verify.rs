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
    // Window [r - lo, r - lo + window) like scipy's uniform_filter.
    let lo = window / 2;
    let area = (window * window) as f64;
    let (mut num, mut den) = (0f64, 0f64);
    for r in 0..rows {
        let r0 = r.saturating_sub(lo);
        let r1 = (r + window - lo).min(rows);
        for c in 0..cols {
            if !pair[r * cols + c] {
                continue;
            }
            let c0 = c.saturating_sub(lo);
            let c1 = (c + window - lo).min(cols);
            let sum = |img: &[u32]| {
                (img[r1 * w + c1] + img[r0 * w + c0] - img[r0 * w + c1] - img[r1 * w + c0]) as f64
            };
            let pf = sum(&int_f) / area;
            let po = sum(&int_o) / area;
            num += (pf - po) * (pf - po);
            den += pf * pf + po * po;
        }
    }
    Some((num, den))
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
    /// Threshold of the probability whose reliability is measured, mm/h.
    pub prob_threshold: f32,
    /// The nowcast (its `smoothing` is set per method).
    pub nowcast: crate::nowcast::NowcastConfig,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            leads_min: None,
            thresholds: vec![0.5, 1.0, 5.0],
            fss_threshold: 1.0,
            fss_window: 10,
            prob_threshold: 1.0,
            nowcast: crate::nowcast::NowcastConfig::default(),
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

/// The most common interval between consecutive fields, seconds.
fn modal_step(times: &[chrono::DateTime<chrono::Utc>]) -> Option<i64> {
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

/// Runs a nowcast at every time of `fields` that has enough past fields and
/// at least one observation at a requested lead, and scores persistence,
/// plain extrapolation and Raincast against the observations. All methods are
/// scored on the same cells: where the observation and every forecast are
/// finite. `progress(done, total)` is called after each start time.
pub fn verify_series(
    fields: &[crate::prep::RainField],
    cfg: &VerifyConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> VerifyReport {
    use crate::nowcast::{NowcastInput, Smoothing};
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by_key(|i| fields[*i].time);
    let sorted: Vec<&crate::prep::RainField> = order.iter().map(|i| &fields[*i]).collect();
    let times: Vec<_> = sorted.iter().map(|f| f.time).collect();
    let step_s = modal_step(&times).unwrap_or(300);
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
        })
        .collect();
    let need = cfg.nowcast.frames.max(crate::nowcast::MIN_FRAMES);
    let mut skipped = Vec::new();
    let mut cases = 0;
    let total = sorted.len();
    for base in 0..sorted.len() {
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
        let window: Vec<crate::prep::RainField> = sorted[base + 1 - need..=base]
            .iter()
            .map(|f| (*f).clone())
            .collect();
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
        let probs = rc.probability(cfg.prob_threshold);
        let persistence = &sorted[base].rate_mm_h;
        for (j, &k) in wanted.iter().enumerate() {
            let Some(oi) = obs_idx[k] else { continue };
            let obs = &sorted[oi].rate_mm_h;
            if obs.dim() != persistence.dim() || !sorted[oi].grid.same_geometry(&sorted[base].grid)
            {
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
