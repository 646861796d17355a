//! Motion: a dense, smooth field of rain motion from the last few rain fields.
//!
//! # Convention
//! A [`MotionField`] holds `(u, v)` in **pixels of the input grid per time
//! step** (the interval between consecutive input fields):
//! * `u > 0`: rain moves **east** (towards increasing column);
//! * `v > 0`: rain moves **south** (towards increasing row, since row 0 is
//!   north).
//!
//! The field is the *velocity at the current (latest) time*: rain now at
//! `(row, col)` was at `(row − v, col − u)` one step ago.
//!
//! # Method, and why
//! Coarse-to-fine **dense Lucas–Kanade with warping**, solved on a reduced
//! "working" grid (long side ≤ [`MotionConfig::max_working_side`] cells, a few
//! km per cell) and regularised by confidence-weighted smoothing:
//!
//! 1. each field becomes dBR = 10·log₁₀(R) (rain below the threshold gets a
//!    floor of −15 dBR), block-averaged to the working grid (NaN-aware);
//! 2. a pyramid of 2× block means, down to about 12 cells on the short side;
//! 3. at every level, from coarse to fine, a few Gauss–Newton iterations:
//!    each older field `k` steps back is warped by `k·(u, v)` towards the
//!    latest field, the brightness-constancy equations of **all** frame pairs
//!    (oldest→latest, ..., previous→latest) are accumulated in a window (the
//!    dense LK normal equations), weighted by a Cauchy robust weight so that
//!    growth and decay do not drag the vectors, and solved for an update with a
//!    small Tikhonov term;
//! 4. after each iteration the field is smoothed by *normalised convolution*,
//!    weighted by the local confidence (smallest eigenvalue of the structure
//!    tensor), and blended with the confidence-weighted domain mean where there
//!    is no texture. That makes it dense (no-rain areas inherit the motion of
//!    nearby rain, far areas the mean motion) and smooth (it cannot tear rain
//!    apart);
//! 5. the result is kept on the working grid; [`MotionField::at`] and
//!    [`MotionField::dense`] interpolate it bilinearly to full resolution.
//!
//! Why not the alternatives: sparse LK on corner features plus RBF
//! interpolation (pysteps' default) spends most of its time on the
//! interpolation and depends on features existing everywhere; VET solves a
//! global variational problem with a generic optimiser and is two orders of
//! magnitude slower. Dense LK with warping over a pyramid is the classic
//! coarse-to-fine flow; the confidence-weighted smoothing plays the role of
//! VET's smoothness penalty at a fraction of the cost. Working at a few km per
//! cell is enough: rain motion varies over tens of kilometres, and the
//! reduced grid keeps the cost almost independent of the input size.
//!
//! Using more than two frames ("motion from more frames") adds equations for
//! the same unknown and doubles the baseline of the oldest pair, which halves
//! the noise of the estimate for steady motion; the price is that motion
//! changing within the window is averaged. The default uses the last 3.
//!
//! Degenerate inputs never panic: frames with no rain, or only no data, give a
//! zero field; rain touching the domain edge is fine because equations whose
//! warped source leaves the grid are simply left out.

use crate::raster::{bilinear, block_mean, box_sum, sample_clamped, upsample, Img};
use ndarray::{Array2, ArrayView2};

/// Why motion could not be estimated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MotionError {
    /// Fewer than two frames.
    #[error("motion needs at least {needed} frames, got {got}")]
    TooFewFrames { needed: usize, got: usize },
    /// The frames do not all have the same shape.
    #[error("frame {index} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        index: usize,
        expected: (usize, usize),
        found: (usize, usize),
    },
    /// An empty field.
    #[error("frames have no cells")]
    Empty,
}

/// Tuning of [`estimate`]. The defaults are physically motivated and are the
/// ones used everywhere in Raincast; see each field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionConfig {
    /// Rain threshold, mm/h; lower rates are "no rain" (default 0.1).
    pub rain_threshold_mm_h: f32,
    /// dBR given to cells without rain (default −15, 5 dB below the 0.1 mm/h
    /// threshold, as in pysteps).
    pub floor_dbr: f32,
    /// Upper bound of the working grid's long side, cells (default 192). The
    /// input is block-averaged by `ceil(long side / this)`.
    pub max_working_side: usize,
    /// The coarsest pyramid level keeps at least this many cells on its short
    /// side (default 12).
    pub min_level_side: usize,
    /// Half-width of the LK window, working cells (default 3: a 7×7 window).
    pub window_radius: usize,
    /// Gauss–Newton iterations per pyramid level (default 3).
    pub iterations: usize,
    /// Radius of the box used for the confidence-weighted smoothing after each
    /// iteration, working cells (default 2; applied twice, ≈ Gaussian σ 2.4).
    pub smooth_radius: usize,
    /// Gaussian σ of the final smoothing, km (default 25 km: rain motion is a
    /// mesoscale field; smaller structures in the flow come from growth and
    /// decay, not displacement).
    pub final_smooth_sigma_km: f32,
    /// Scale of the Cauchy robust weight on the brightness residual, dB
    /// (default 5 dB).
    pub robust_db: f32,
    /// Largest update per iteration, cells of the current level (default 1.0).
    pub max_update: f32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            rain_threshold_mm_h: 0.1,
            floor_dbr: -15.0,
            max_working_side: 192,
            min_level_side: 12,
            window_radius: 3,
            iterations: 3,
            smooth_radius: 2,
            final_smooth_sigma_km: 25.0,
            robust_db: 5.0,
            max_update: 1.0,
        }
    }
}

/// A dense motion field, stored on a reduced grid and interpolated on demand.
///
/// `u` and `v` are in **input-grid pixels per step** (see the module docs for
/// the sign convention). Working cell `(i, j)` covers input cells
/// `i·factor .. (i+1)·factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionField {
    pub(crate) u: Img,
    pub(crate) v: Img,
    /// Input cells per working cell along each axis.
    pub factor: usize,
    /// Shape of the input (full-resolution) grid, `(rows, cols)`.
    pub shape: (usize, usize),
}

impl MotionField {
    /// A uniform field (all cells move by `(u, v)` pixels per step).
    pub fn uniform(shape: (usize, usize), u: f32, v: f32) -> Self {
        Self {
            u: Img::filled(1, 1, u),
            v: Img::filled(1, 1, v),
            factor: shape.0.max(shape.1).max(1),
            shape,
        }
    }

    /// Zero motion.
    pub fn zero(shape: (usize, usize)) -> Self {
        Self::uniform(shape, 0.0, 0.0)
    }

    /// `(u, v)` in pixels per step at a fractional full-resolution position
    /// (cell `(r, c)` has its centre at `(r + 0.5, c + 0.5)`).
    pub fn at(&self, row: f32, col: f32) -> (f32, f32) {
        let f = self.factor as f32;
        let (wr, wc) = (row / f - 0.5, col / f - 0.5);
        (
            sample_clamped(&self.u, wr, wc),
            sample_clamped(&self.v, wr, wc),
        )
    }

    /// The field at every input cell: `(u, v)`, each `(rows, cols)`.
    pub fn dense(&self) -> (Array2<f32>, Array2<f32>) {
        let (rows, cols) = self.shape;
        let f = self.factor as f32;
        (
            upsample(&self.u, rows, cols, f).into_array(),
            upsample(&self.v, rows, cols, f).into_array(),
        )
    }

    /// Mean `(u, v)` over the field, pixels per step.
    pub fn mean(&self) -> (f32, f32) {
        let n = self.u.len().max(1) as f32;
        (
            self.u.data.iter().sum::<f32>() / n,
            self.v.data.iter().sum::<f32>() / n,
        )
    }

    /// Largest speed anywhere, pixels per step.
    pub fn max_speed(&self) -> f32 {
        self.u
            .data
            .iter()
            .zip(&self.v.data)
            .map(|(u, v)| (u * u + v * v).sqrt())
            .fold(0.0, f32::max)
    }
}

/// Rain rate (mm/h) to dBR with a floor for no rain; NaN stays NaN.
#[inline]
pub(crate) fn to_dbr(rate: f32, threshold: f32, floor: f32) -> f32 {
    if rate >= threshold {
        if rate.is_normal() {
            fast_db(rate)
        } else {
            10.0 * rate.log10()
        }
    } else if rate.is_nan() {
        f32::NAN
    } else {
        floor
    }
}

/// `10·log₁₀(x)` for a positive normal `x`, within 1e-4 dB, in plain
/// arithmetic instead of a libm call (every nowcast converts six full fields,
/// and the call dominated the conversion): `x = 2^e · m` with `m` in
/// `[√½, √2)`, and `ln m = 2·atanh(t)`, `t = (m − 1)/(m + 1)`, `|t| < 0.172`,
/// summed to `t⁷` (the first term left out is below 3e-8).
#[inline]
fn fast_db(x: f32) -> f32 {
    const DB_PER_OCTAVE: f32 = 10.0 * std::f32::consts::LOG10_2;
    const DB_PER_NEPER: f32 = 10.0 * std::f32::consts::LOG10_E;
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (0.2 + t2 * (1.0 / 7.0))));
    DB_PER_OCTAVE * e as f32 + DB_PER_NEPER * ln_m
}

/// The working-grid reduction factor for a grid of `rows × cols`.
pub fn working_factor(rows: usize, cols: usize, cfg: &MotionConfig) -> usize {
    rows.max(cols).div_ceil(cfg.max_working_side.max(8)).max(1)
}

/// Estimates the motion at the time of the last frame.
///
/// `frames`: rain rates in mm/h, oldest first, consecutive and equally spaced
/// in time, all the same shape (row 0 north, NaN = no data). Every frame is
/// used; pass the last 3 for the default behaviour. `cell_km` is the input
/// cell size (for [`MotionConfig::final_smooth_sigma_km`]).
pub fn estimate(
    frames: &[ArrayView2<f32>],
    cell_km: f32,
    cfg: &MotionConfig,
) -> Result<MotionField, MotionError> {
    if frames.len() < 2 {
        return Err(MotionError::TooFewFrames {
            needed: 2,
            got: frames.len(),
        });
    }
    let shape = frames[0].dim();
    for (index, f) in frames.iter().enumerate() {
        if f.dim() != shape {
            return Err(MotionError::ShapeMismatch {
                index,
                expected: shape,
                found: f.dim(),
            });
        }
    }
    if shape.0 == 0 || shape.1 == 0 {
        return Err(MotionError::Empty);
    }
    let factor = working_factor(shape.0, shape.1, cfg);
    // 1. dBR on the working grid.
    let work: Vec<Img> = frames
        .iter()
        .map(|f| {
            let mut img = Img::from_view(f);
            for x in img.data.iter_mut() {
                *x = to_dbr(*x, cfg.rain_threshold_mm_h, cfg.floor_dbr);
            }
            block_mean(&img, factor)
        })
        .collect();
    let last = work.len() - 1;
    // Without rain in the latest frame and in at least one other, there is
    // nothing to track.
    let has_rain = |img: &Img| img.data.iter().any(|v| *v > cfg.floor_dbr + 0.01);
    if !has_rain(&work[last]) || !work[..last].iter().any(has_rain) {
        return Ok(MotionField {
            u: Img::filled(work[last].rows, work[last].cols, 0.0),
            v: Img::filled(work[last].rows, work[last].cols, 0.0),
            factor,
            shape,
        });
    }
    // 2. Pyramids.
    let min_side = work[last].rows.min(work[last].cols);
    let mut n_levels = 1;
    while (min_side >> n_levels) >= cfg.min_level_side.max(4) {
        n_levels += 1;
    }
    let pyramids: Vec<Vec<Img>> = work
        .into_iter()
        .map(|img| {
            let mut levels = vec![img];
            for _ in 1..n_levels {
                let next = block_mean(&levels[levels.len() - 1], 2);
                levels.push(next);
            }
            levels
        })
        .collect();
    // 3. Coarse to fine.
    let coarsest = &pyramids[last][n_levels - 1];
    let mut u = Img::filled(coarsest.rows, coarsest.cols, 0.0);
    let mut v = Img::filled(coarsest.rows, coarsest.cols, 0.0);
    let mut scratch = Scratch::default();
    for level in (0..n_levels).rev() {
        let target = &pyramids[last][level];
        if u.rows != target.rows || u.cols != target.cols {
            u = upsample(&u, target.rows, target.cols, 2.0);
            v = upsample(&v, target.rows, target.cols, 2.0);
            u.data.iter_mut().for_each(|x| *x *= 2.0);
            v.data.iter_mut().for_each(|x| *x *= 2.0);
        }
        let older: Vec<(&Img, f32)> = (0..last)
            .map(|k| (&pyramids[k][level], (last - k) as f32))
            .collect();
        let (gx, gy) = gradients(target);
        for _ in 0..cfg.iterations.max(1) {
            lk_iteration(target, &gx, &gy, &older, &mut u, &mut v, cfg, &mut scratch);
        }
    }
    // 4. Final smoothing at the physical scale of rain motion.
    let work_km = (cell_km * factor as f32).max(1e-3);
    // Two box passes of radius R have σ² = ((2R+1)² − 1)/6.
    let sigma = cfg.final_smooth_sigma_km / work_km;
    let radius = (((6.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round() as usize;
    // Back to input pixels per step.
    let f = factor as f32;
    u.data.iter_mut().for_each(|x| *x *= f);
    v.data.iter_mut().for_each(|x| *x *= f);
    let mut factor = factor;
    if radius > 0 {
        let ones = Img::filled(u.rows, u.cols, 1.0);
        smooth_weighted(&mut u, &mut v, &ones, radius, 0.0, &mut scratch);
        // The smoothed field varies over σ: keep ~2 samples per σ, which makes
        // trajectory integration cheap without losing anything.
        let k = (sigma / 2.0).floor() as usize;
        if k >= 2 {
            u = block_mean(&u, k);
            v = block_mean(&v, k);
            factor *= k;
        }
    }
    Ok(MotionField {
        u,
        v,
        factor,
        shape,
    })
}

#[derive(Default)]
struct Scratch {
    j11: Vec<f32>,
    j12: Vec<f32>,
    j22: Vec<f32>,
    b1: Vec<f32>,
    b2: Vec<f32>,
    conf: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    tmp: Vec<f32>,
}

/// Central-difference gradients (dB per cell), 0 where undefined.
fn gradients(img: &Img) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (img.rows, img.cols);
    let d = &img.data;
    let mut gx = vec![0f32; rows * cols];
    let mut gy = vec![0f32; rows * cols];
    let diff = |a: f32, b: f32, span: f32| {
        if a.is_finite() && b.is_finite() {
            (b - a) / span
        } else {
            0.0
        }
    };
    for r in 0..rows {
        let up = r.saturating_sub(1);
        let dn = (r + 1).min(rows - 1);
        for c in 0..cols {
            let i = r * cols + c;
            if !d[i].is_finite() {
                continue;
            }
            let lf = c.saturating_sub(1);
            let rt = (c + 1).min(cols - 1);
            if rt > lf {
                gx[i] = diff(d[r * cols + lf], d[r * cols + rt], (rt - lf) as f32);
            }
            if dn > up {
                gy[i] = diff(d[up * cols + c], d[dn * cols + c], (dn - up) as f32);
            }
        }
    }
    (gx, gy)
}

/// One Gauss–Newton step of dense LK over all frame pairs, then smoothing.
#[allow(clippy::too_many_arguments)]
fn lk_iteration(
    target: &Img,
    gx: &[f32],
    gy: &[f32],
    older: &[(&Img, f32)],
    u: &mut Img,
    v: &mut Img,
    cfg: &MotionConfig,
    s: &mut Scratch,
) {
    let (rows, cols) = (target.rows, target.cols);
    let n = rows * cols;
    for buf in [&mut s.j11, &mut s.j12, &mut s.j22, &mut s.b1, &mut s.b2] {
        buf.clear();
        buf.resize(n, 0.0);
    }
    let inv_rob = 1.0 / (cfg.robust_db * cfg.robust_db);
    for &(img, gap) in older {
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let b = target.data[i];
                let (gxi, gyi) = (gx[i] * gap, gy[i] * gap);
                if !b.is_finite() || (gxi == 0.0 && gyi == 0.0) {
                    continue;
                }
                let aw = bilinear(
                    &img.data,
                    img.rows,
                    img.cols,
                    r as f32 - gap * v.data[i],
                    c as f32 - gap * u.data[i],
                );
                if !aw.is_finite() {
                    continue;
                }
                let it = aw - b;
                let w = 1.0 / (1.0 + it * it * inv_rob);
                s.j11[i] += w * gxi * gxi;
                s.j12[i] += w * gxi * gyi;
                s.j22[i] += w * gyi * gyi;
                s.b1[i] += w * gxi * it;
                s.b2[i] += w * gyi * it;
            }
        }
    }
    let rad = cfg.window_radius;
    let area = ((2 * rad + 1) * (2 * rad + 1)) as f32;
    for buf in [&mut s.j11, &mut s.j12, &mut s.j22, &mut s.b1, &mut s.b2] {
        s.a.clear();
        s.a.extend_from_slice(buf);
        box_sum(&s.a, buf, rows, cols, rad, &mut s.tmp);
    }
    // Tikhonov term: 0.05 dB² per cell² of mean gradient energy, i.e. weaker
    // than the texture of any real rain edge, so untextured cells keep their
    // current (smoothed) vector.
    let lambda = 0.05 * area;
    s.conf.clear();
    s.conf.resize(n, 0.0);
    let max_up = cfg.max_update;
    for i in 0..n {
        let (a, b, d) = (s.j11[i], s.j12[i], s.j22[i]);
        let (a2, d2) = (a + lambda, d + lambda);
        let det = a2 * d2 - b * b;
        if det <= 0.0 {
            continue;
        }
        let mut du = (d2 * s.b1[i] - b * s.b2[i]) / det;
        let mut dv = (a2 * s.b2[i] - b * s.b1[i]) / det;
        let norm = (du * du + dv * dv).sqrt();
        if norm > max_up {
            du *= max_up / norm;
            dv *= max_up / norm;
        }
        u.data[i] += du;
        v.data[i] += dv;
        let tr = a + d;
        let disc = ((a - d) * (a - d) + 4.0 * b * b).sqrt();
        s.conf[i] = (0.5 * (tr - disc)).max(0.0) / area;
    }
    let conf = Img {
        rows,
        cols,
        data: std::mem::take(&mut s.conf),
    };
    let mean_conf = {
        let (sum, cnt) = conf
            .data
            .iter()
            .filter(|c| **c > 0.0)
            .fold((0f64, 0usize), |(s, n), c| (s + *c as f64, n + 1));
        if cnt == 0 {
            0.0
        } else {
            (sum / cnt as f64) as f32
        }
    };
    smooth_weighted(u, v, &conf, cfg.smooth_radius, 0.02 * mean_conf, s);
    s.conf = conf.data;
}

/// Normalised convolution of `(u, v)` with weights `w` (two box passes of
/// `radius`), blended with the weighted domain mean with weight `eps` per
/// cell; where all weights are zero the field keeps its mean.
fn smooth_weighted(u: &mut Img, v: &mut Img, w: &Img, radius: usize, eps: f32, s: &mut Scratch) {
    let (rows, cols) = (u.rows, u.cols);
    let n = rows * cols;
    let (mut sw, mut su, mut sv) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let wi = w.data[i] as f64;
        sw += wi;
        su += wi * u.data[i] as f64;
        sv += wi * v.data[i] as f64;
    }
    let (gu, gv) = if sw > 0.0 {
        ((su / sw) as f32, (sv / sw) as f32)
    } else {
        (0.0, 0.0)
    };
    if sw <= 0.0 {
        u.data.iter_mut().for_each(|x| *x = gu);
        v.data.iter_mut().for_each(|x| *x = gv);
        return;
    }
    let blur2 = |src: &mut Vec<f32>, s_a: &mut Vec<f32>, tmp: &mut Vec<f32>| {
        for _ in 0..2 {
            s_a.clear();
            s_a.extend_from_slice(src);
            box_sum(s_a, src, rows, cols, radius, tmp);
        }
    };
    let mut den = w.data.clone();
    blur2(&mut den, &mut s.a, &mut s.tmp);
    let area2 = (((2 * radius + 1) * (2 * radius + 1)) as f32).powi(2);
    let eps = eps * area2;
    for (target, global) in [(u, gu), (v, gv)] {
        s.b.clear();
        s.b.extend(target.data.iter().zip(&w.data).map(|(x, wi)| x * wi));
        let mut num = std::mem::take(&mut s.b);
        blur2(&mut num, &mut s.a, &mut s.tmp);
        for i in 0..n {
            let d = den[i] + eps;
            target.data[i] = if d > 0.0 {
                (num[i] + eps * global) / d
            } else {
                global
            };
        }
        s.b = num;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{local_grid, Coverage, SynthConfig, SynthRadar};

    fn synth(
        rows: usize,
        cols: usize,
        vel: (f32, f32),
        coverage: Coverage,
        seed: u64,
    ) -> Vec<Array2<f32>> {
        let grid = local_grid(5.0, 50.0, rows, cols, 1000.0).expect("grid");
        let cfg = SynthConfig {
            seed,
            velocity_px_per_step: vel,
            cells: 25,
            lifetime_steps: (30, 60),
            coverage,
            ..SynthConfig::for_shape(rows, cols)
        };
        SynthRadar::new(grid, cfg)
            .fields(40, 3)
            .into_iter()
            .map(|f| f.rate_mm_h)
            .collect()
    }

    fn views(f: &[Array2<f32>]) -> Vec<ArrayView2<'_, f32>> {
        f.iter().map(|a| a.view()).collect()
    }

    /// Rain-weighted mean vector of the estimate.
    fn rain_mean(m: &MotionField, frame: &Array2<f32>) -> (f32, f32) {
        let (du, dv) = m.dense();
        let (mut s, mut su, mut sv) = (0.0, 0.0, 0.0);
        for ((idx, r), (u, v)) in frame.indexed_iter().zip(du.iter().zip(dv.iter())) {
            let _ = idx;
            if *r > 1.0 {
                s += 1.0;
                su += u;
                sv += v;
            }
        }
        (su / s, sv / s)
    }

    /// Largest difference between neighbouring working cells, px/step.
    fn roughness(m: &MotionField) -> f32 {
        let mut worst = 0f32;
        for img in [&m.u, &m.v] {
            for r in 0..img.rows {
                for c in 0..img.cols {
                    let x = img.data[r * img.cols + c];
                    if c + 1 < img.cols {
                        worst = worst.max((img.data[r * img.cols + c + 1] - x).abs());
                    }
                    if r + 1 < img.rows {
                        worst = worst.max((img.data[(r + 1) * img.cols + c] - x).abs());
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn fast_db_matches_libm() {
        let mut worst = 0f32;
        let mut x = 1e-4f32;
        while x < 1e5 {
            for y in [x, x * 1.0001, x * std::f32::consts::SQRT_2] {
                let err = (fast_db(y) - 10.0 * (y as f64).log10() as f32).abs();
                worst = worst.max(err);
            }
            x *= 1.013;
        }
        assert!(worst < 1e-4, "largest error {worst} dB");
        assert_eq!(to_dbr(0.05, 0.1, -15.0), -15.0);
        assert!(to_dbr(f32::NAN, 0.1, -15.0).is_nan());
        assert!((to_dbr(10.0, 0.1, -15.0) - 10.0).abs() < 1e-5);
    }

    #[test]
    fn recovers_a_known_uniform_motion() {
        for (vel, seed) in [((3.0, 1.5), 1), ((-2.0, -4.0), 2), ((7.5, 0.0), 3)] {
            let f = synth(200, 240, vel, Coverage::Full, seed);
            let m = estimate(&views(&f), 1.0, &MotionConfig::default()).expect("motion");
            let (u, v) = rain_mean(&m, &f[2]);
            // Synthetic cells grow and decay while they move, which biases
            // any brightness-constancy method a little: allow 5 % + 0.2 px.
            let tol = 0.2 + 0.05 * (vel.0 * vel.0 + vel.1 * vel.1).sqrt();
            assert!(
                (u - vel.0).abs() < tol && (v - vel.1).abs() < tol,
                "expected {vel:?}, got ({u:.2}, {v:.2})"
            );
            // Smooth: neighbouring working cells differ little (well under a
            // pixel per step, so advection cannot tear a rain cell apart; the
            // growing and decaying synthetic cells give jumps of ~0.5 px).
            let rough = roughness(&m);
            assert!(rough < 0.75, "max jump {rough} px/step between neighbours");
        }
    }

    #[test]
    fn no_rain_gives_zero_motion() {
        let z = vec![Array2::<f32>::zeros((50, 60)); 3];
        let m = estimate(&views(&z), 1.0, &MotionConfig::default()).expect("motion");
        assert_eq!(m.mean(), (0.0, 0.0));
        assert_eq!(m.max_speed(), 0.0);
    }

    #[test]
    fn all_no_data_gives_zero_motion() {
        let z = vec![Array2::<f32>::from_elem((50, 60), f32::NAN); 3];
        let m = estimate(&views(&z), 1.0, &MotionConfig::default()).expect("motion");
        assert_eq!(m.max_speed(), 0.0);
    }

    #[test]
    fn circular_coverage_and_edges() {
        let cov = Coverage::Circle {
            centre_row: 100.0,
            centre_col: 100.0,
            radius_px: 95.0,
        };
        let f = synth(200, 200, (2.5, -2.0), cov, 5);
        let m = estimate(&views(&f), 1.0, &MotionConfig::default()).expect("motion");
        let (u, v) = rain_mean(&m, &f[2]);
        assert!((u - 2.5).abs() < 0.4 && (v + 2.0).abs() < 0.4, "({u}, {v})");
        assert!(m.u.data.iter().chain(&m.v.data).all(|x| x.is_finite()));
    }

    #[test]
    fn rejects_bad_frame_lists() {
        let a = Array2::<f32>::zeros((10, 10));
        let b = Array2::<f32>::zeros((10, 11));
        assert_eq!(
            estimate(&[a.view()], 1.0, &MotionConfig::default()),
            Err(MotionError::TooFewFrames { needed: 2, got: 1 })
        );
        assert!(matches!(
            estimate(&[a.view(), b.view()], 1.0, &MotionConfig::default()),
            Err(MotionError::ShapeMismatch { index: 1, .. })
        ));
    }

    #[test]
    fn uniform_field_accessors() {
        let m = MotionField::uniform((30, 40), 1.5, -2.0);
        assert_eq!(m.at(3.0, 39.0), (1.5, -2.0));
        let (u, v) = m.dense();
        assert_eq!(u.dim(), (30, 40));
        assert!(u.iter().all(|x| *x == 1.5) && v.iter().all(|x| *x == -2.0));
    }
}
