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
//! "working" grid (cells of about [`MotionConfig::working_cell_km`], 4 km, a
//! long side of at most [`MotionConfig::max_working_side`] cells) and
//! regularised by confidence-weighted smoothing:
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
//! VET's smoothness penalty at a fraction of the cost. Working at about 4 km
//! per cell is enough: rain motion varies over tens of kilometres, showers
//! a few km across still show on such cells, and the reduced grid (at most
//! 384 cells a side) bounds the cost on any input.
//!
//! Using more than two frames ("motion from more frames") adds equations for
//! the same unknown and doubles the baseline of the oldest pair, which halves
//! the noise of the estimate for steady motion; the price is that motion
//! changing within the window is averaged. The default uses the last 3.
//!
//! # Cost
//! The time goes into the dBR conversion of the full-resolution frames and
//! the LK passes at the finest working level. The conversion is fused into
//! the block mean and vectorised; the LK equations of all frame pairs are
//! gathered in one visit per cell; the windowed sums and the normalised
//! convolution run several channels' running sums in one loop (independent
//! addition chains the CPU overlaps). Each of these gives the same bits as
//! the plain version (tests `fused_*`).
//!
//! # Smoothing scale
//! [`MotionConfig::final_smooth_sigma_km`] stays a fixed 25 km: on the four
//! shared radar days, 12.5 km helped two and hurt two, and 50 km hurt
//! three (docs/PERFORMANCE.md, "Issue 16: motion"), so neither is a
//! principled change; a scale chosen per nowcast by a one-step hold-out
//! behaved like 12.5 km (session 10), and why the S-PROG forecast does not
//! gain from the finer motion is in docs/PERFORMANCE.md, "Nowcast skill",
//! session 11.
//!
//! Degenerate inputs never panic: frames with no rain, or only no data, give a
//! zero field; rain touching the domain edge is fine because equations whose
//! warped source leaves the grid are simply left out.

use crate::raster::{bilinear, block_mean, sample_clamped, upsample, Img};
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
    /// Size of a working-grid cell, km (default 4): the input is
    /// block-averaged by `round(this / cell size)` cells, so the motion sees
    /// rain at the same physical scale on every grid: a shower a few km
    /// across still has its own gradients. Finer (3 km) lost skill on the
    /// MeteoSwiss and RMI days, coarser (5 and 7 km, what a long-side bound
    /// alone gave the 1226-cell FMI composite) lost it on FMI's showers; BOM's
    /// 500-m grid scores the same at 1, 1.5, 3 and 4 km (docs/PERFORMANCE.md,
    /// "Issue 16, session 25").
    pub working_cell_km: f32,
    /// Upper bound of the working grid's long side, cells (default 384): the
    /// cost bound, which wins over [`Self::working_cell_km`] on a very large
    /// grid (OPERA's 2200 × 1900 × 2 km works at 12 km).
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
            working_cell_km: 4.0,
            max_working_side: 384,
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
        sample_clamped(&self.u, &self.v, wr, wc)
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

/// Rain rate (mm/h) to dBR with a floor for no rain; NaN stays NaN. The
/// cell-by-cell definition, which the tests hold [`dbr_row`] to (the code
/// converts whole rows with `dbr_row`).
#[cfg(test)]
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

/// [`to_dbr`] over a row, written without branches on the value so that
/// it vectorises (the same bits as [`to_dbr`] cell by cell: the rare rates
/// at or above the threshold that are not normal numbers, i.e. +∞ or a
/// threshold ≤ 0, are redone with the library logarithm afterwards).
///
/// Most of a radar image is dry or unknown: a group of [`DBR_GROUP`] cells
/// without rain is written as the floor or NaN after one branch-free test,
/// without the logarithm (the values the logarithm would not have been
/// used for).
pub(crate) fn dbr_row(src: &[f32], dst: &mut [f32], threshold: f32, floor: f32) {
    let mut special = 0u32;
    let mut convert = |dst: &mut [f32], src: &[f32]| {
        for (d, &x) in dst.iter_mut().zip(src) {
            let db = fast_db(x);
            let below = if x.is_nan() { f32::NAN } else { floor };
            let rain = x >= threshold;
            *d = if rain { db } else { below };
            let exp = x.to_bits() & 0x7f80_0000;
            special |= (rain & (exp == 0 || exp == 0x7f80_0000)) as u32;
        }
    };
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let mut groups = dst
        .chunks_exact_mut(DBR_GROUP)
        .zip(src.chunks_exact(DBR_GROUP));
    for (d, s) in &mut groups {
        if s.iter().fold(false, |a, &x| a | (x >= threshold)) {
            convert(d, s);
        } else {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = if x.is_nan() { f32::NAN } else { floor };
            }
        }
    }
    let tail = n - n % DBR_GROUP;
    convert(&mut dst[tail..], &src[tail..]);
    if special != 0 {
        for (d, &x) in dst.iter_mut().zip(src) {
            if x >= threshold && !x.is_normal() {
                *d = 10.0 * x.log10();
            }
        }
    }
}

/// Cells per group of [`dbr_row`]'s test for rain.
const DBR_GROUP: usize = 16;

/// `block_mean` of the dBR of a rain-rate view (see [`to_dbr`]), in one pass
/// over the input without a full-size intermediate: each input row is
/// converted into a row buffer and added into its block's sums. Same bits as
/// converting the whole field and then calling `block_mean` (the same
/// additions in the same order).
fn dbr_block_mean(view: &ArrayView2<f32>, f: usize, cfg: &MotionConfig) -> Img {
    let (rows_in, cols_in) = view.dim();
    let f = f.max(1);
    let rows = rows_in.div_ceil(f);
    let cols = cols_in.div_ceil(f);
    let mut out = Img::filled(rows, cols, f32::NAN);
    let mut sum = vec![0f32; cols];
    let mut cnt = vec![0u32; cols];
    let mut copy = vec![0f32; cols_in];
    let mut dbr = vec![0f32; cols_in];
    let (thr, floor) = (cfg.rain_threshold_mm_h, cfg.floor_dbr);
    for i in 0..rows {
        sum.iter_mut().for_each(|x| *x = 0.0);
        cnt.iter_mut().for_each(|x| *x = 0);
        let r0 = i * f;
        let r1 = (r0 + f).min(rows_in);
        for r in r0..r1 {
            let row = view.row(r);
            let src = match row.as_slice() {
                Some(s) => s,
                None => {
                    copy.iter_mut().zip(row.iter()).for_each(|(d, s)| *d = *s);
                    &copy[..]
                }
            };
            if f == 1 {
                // `block_mean` by 1 is a copy (±∞ included).
                dbr_row(src, &mut out.data[r * cols..(r + 1) * cols], thr, floor);
                continue;
            }
            dbr_row(src, &mut dbr, thr, floor);
            match f {
                2 => add_blocks::<2>(&dbr, &mut sum, &mut cnt),
                3 => add_blocks::<3>(&dbr, &mut sum, &mut cnt),
                4 => add_blocks::<4>(&dbr, &mut sum, &mut cnt),
                _ => add_blocks_of(f, &dbr, &mut sum, &mut cnt),
            }
        }
        if f == 1 {
            continue;
        }
        let h = (r1 - r0) as u32;
        let out_row = &mut out.data[i * cols..(i + 1) * cols];
        for j in 0..cols {
            let w = ((j * f + f).min(cols_in) - j * f) as u32;
            let n = cnt[j];
            if n > 0 && 2 * n >= h * w {
                out_row[j] = sum[j] / n as f32;
            }
        }
    }
    out
}

/// Adds a block's cells of a dBR row to its running sum and count of
/// finite cells, cell by cell in order. Adding 0.0 for a NaN leaves a sum
/// (never −0.0) unchanged, so the select gives the same bits as skipping.
#[inline(always)]
fn add_block(chunk: &[f32], sum: &mut f32, cnt: &mut u32) {
    for &v in chunk {
        let fin = v.is_finite();
        *sum += if fin { v } else { 0.0 };
        *cnt += fin as u32;
    }
}

/// [`add_block`] for each block of `f` cells of a dBR row.
fn add_blocks_of(f: usize, dbr: &[f32], sum: &mut [f32], cnt: &mut [u32]) {
    for ((chunk, s), n) in dbr.chunks(f).zip(sum.iter_mut()).zip(cnt.iter_mut()) {
        add_block(chunk, s, n);
    }
}

/// [`add_blocks_of`] for a block width known at compile time (the working
/// factors of most radar grids): the same additions in the same order, in
/// a loop over the blocks that vectorises.
fn add_blocks<const F: usize>(dbr: &[f32], sum: &mut [f32], cnt: &mut [u32]) {
    let whole = dbr.chunks_exact(F);
    let (rest, n) = (whole.remainder(), dbr.len() / F);
    for ((chunk, s), k) in whole.zip(sum.iter_mut()).zip(cnt.iter_mut()) {
        add_block(chunk, s, k);
    }
    if let (Some(s), Some(k)) = (sum.get_mut(n..), cnt.get_mut(n..)) {
        add_blocks_of(F, rest, s, k);
    }
}

/// The working-grid reduction factor for a grid of `rows × cols` cells of
/// `cell_km`: cells of about [`MotionConfig::working_cell_km`], unless the
/// long side would then exceed [`MotionConfig::max_working_side`].
pub fn working_factor(rows: usize, cols: usize, cell_km: f32, cfg: &MotionConfig) -> usize {
    let ratio = cfg.working_cell_km / cell_km;
    // A NaN, infinite or non-positive size falls back to the cost bound
    // (the float-to-integer cast saturates).
    let by_scale = if ratio.is_finite() && ratio >= 1.0 {
        ratio.round() as usize
    } else {
        1
    };
    let by_cost = rows.max(cols).div_ceil(cfg.max_working_side.max(8));
    by_scale.max(by_cost).max(1)
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
    let factor = working_factor(shape.0, shape.1, cell_km, cfg);
    // 1. dBR on the working grid: the one full-resolution pass over each
    // frame, so the frames go to the threads of the current rayon pool (in
    // turn on one thread; the same bits).
    let work: Vec<Img> = {
        use rayon::prelude::*;
        frames
            .par_iter()
            .map(|f| dbr_block_mean(f, factor, cfg))
            .collect()
    };
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
        let ones = vec![1f32; u.len()];
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
    den: Vec<f32>,
    num_u: Vec<f32>,
    num_v: Vec<f32>,
    tmp: Vec<f32>,
    acc: Vec<f32>,
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

/// In-place box *sums* of `N` rasters of `rows × cols` cells with a square
/// window of side `2·radius + 1`, cells outside the grid counting as zero;
/// the same additions in the same order as `raster::box_sum`, so the same
/// bits. The horizontal running sum is a chain of dependent additions; doing
/// `N` channels in one loop gives the CPU `N` independent chains to overlap
/// (and the copy `box_sum` needs for in-place use is gone). The vertical pass
/// runs over whole rows and vectorises.
fn box_sums_inplace<const N: usize>(
    bufs: [&mut [f32]; N],
    rows: usize,
    cols: usize,
    radius: usize,
    tmp: &mut Vec<f32>,
    acc: &mut Vec<f32>,
) {
    let n = rows * cols;
    tmp.clear();
    tmp.resize(N * n, 0.0);
    // Horizontal pass: bufs -> tmp (channel k at k·n).
    {
        let mut outs = tmp.chunks_exact_mut(n.max(1));
        let mut touts: [&mut [f32]; N] = std::array::from_fn(|_| outs.next().unwrap_or_default());
        let head = radius.min(cols);
        // A cell enters the window at column c while c + radius < cols, and
        // one leaves from c ≥ radius: the columns fall into three runs with
        // fixed enter/leave flags, so the loops have no per-cell conditions.
        let enter_end = cols.saturating_sub(radius);
        for r in 0..rows {
            let base = r * cols;
            let src: [&[f32]; N] = std::array::from_fn(|k| &bufs[k][base..base + cols]);
            let mut dst: [&mut [f32]; N] = {
                let mut it = touts.iter_mut();
                std::array::from_fn(|_| match it.next() {
                    Some(t) => &mut t[base..base + cols],
                    None => &mut [][..],
                })
            };
            let mut a = [0f32; N];
            for (ak, sk) in a.iter_mut().zip(&src) {
                for &v in &sk[..head] {
                    *ak += v;
                }
            }
            if radius <= enter_end {
                box_run::<N, true, false>(&mut a, &src, &mut dst, 0..radius, radius);
                box_run::<N, true, true>(&mut a, &src, &mut dst, radius..enter_end, radius);
                box_run::<N, false, true>(&mut a, &src, &mut dst, enter_end..cols, radius);
            } else {
                let mid = radius.min(cols);
                box_run::<N, true, false>(&mut a, &src, &mut dst, 0..enter_end, radius);
                box_run::<N, false, false>(&mut a, &src, &mut dst, enter_end..mid, radius);
                box_run::<N, false, true>(&mut a, &src, &mut dst, mid..cols, radius);
            }
        }
    }
    // Vertical pass: tmp -> bufs, with a running vector of column sums.
    for (k, dst) in bufs.into_iter().enumerate() {
        let t = &tmp[k * n..(k + 1) * n];
        acc.clear();
        acc.resize(cols, 0.0);
        for r in 0..radius.min(rows) {
            for (a, v) in acc.iter_mut().zip(&t[r * cols..(r + 1) * cols]) {
                *a += v;
            }
        }
        for r in 0..rows {
            if r + radius < rows {
                let add = &t[(r + radius) * cols..(r + radius + 1) * cols];
                for (a, v) in acc.iter_mut().zip(add) {
                    *a += v;
                }
            }
            dst[r * cols..(r + 1) * cols].copy_from_slice(acc);
            if r >= radius {
                let sub = &t[(r - radius) * cols..(r - radius + 1) * cols];
                for (a, v) in acc.iter_mut().zip(sub) {
                    *a -= v;
                }
            }
        }
    }
}

/// The running sums of [`box_sums_inplace`] over columns `c0..c1` of one
/// row (for each column: add the entering cell, store, subtract the leaving
/// one, as `raster::box_sum` does).
#[inline(always)]
fn box_run<const N: usize, const ENTERS: bool, const LEAVES: bool>(
    a: &mut [f32; N],
    src: &[&[f32]; N],
    dst: &mut [&mut [f32]; N],
    cs: std::ops::Range<usize>,
    radius: usize,
) {
    for c in cs {
        for k in 0..N {
            if ENTERS {
                a[k] += src[k][c + radius];
            }
            dst[k][c] = a[k];
            if LEAVES {
                a[k] -= src[k][c - radius];
            }
        }
    }
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
    // Every frame pair's equations for a cell in one visit (the sums per
    // cell are added frame by frame, in the order of `older`).
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let b = target.data[i];
            if !b.is_finite() || (gx[i] == 0.0 && gy[i] == 0.0) {
                continue;
            }
            let (mut j11, mut j12, mut j22, mut b1, mut b2) = (0f32, 0f32, 0f32, 0f32, 0f32);
            for &(img, gap) in older {
                let (gxi, gyi) = (gx[i] * gap, gy[i] * gap);
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
                j11 += w * gxi * gxi;
                j12 += w * gxi * gyi;
                j22 += w * gyi * gyi;
                b1 += w * gxi * it;
                b2 += w * gyi * it;
            }
            s.j11[i] = j11;
            s.j12[i] = j12;
            s.j22[i] = j22;
            s.b1[i] = b1;
            s.b2[i] = b2;
        }
    }
    let rad = cfg.window_radius;
    let area = ((2 * rad + 1) * (2 * rad + 1)) as f32;
    box_sums_inplace(
        [
            &mut s.j11[..],
            &mut s.j12[..],
            &mut s.j22[..],
            &mut s.b1[..],
            &mut s.b2[..],
        ],
        rows,
        cols,
        rad,
        &mut s.tmp,
        &mut s.acc,
    );
    // Tikhonov term: 0.05 dB² per cell² of mean gradient energy, i.e. weaker
    // than the texture of any real rain edge, so untextured cells keep their
    // current (smoothed) vector.
    let lambda = 0.05 * area;
    s.conf.clear();
    s.conf.resize(n, 0.0);
    let max_up = cfg.max_update;
    // Without branches (selects instead), so that the loop vectorises.
    for i in 0..n {
        let (a, b, d) = (s.j11[i], s.j12[i], s.j22[i]);
        let (a2, d2) = (a + lambda, d + lambda);
        let det = a2 * d2 - b * b;
        let ok = det > 0.0;
        let mut du = (d2 * s.b1[i] - b * s.b2[i]) / det;
        let mut dv = (a2 * s.b2[i] - b * s.b1[i]) / det;
        let norm = (du * du + dv * dv).sqrt();
        let big = norm > max_up;
        let shrink = max_up / norm;
        du = if big { du * shrink } else { du };
        dv = if big { dv * shrink } else { dv };
        let (ui, vi) = (u.data[i], v.data[i]);
        u.data[i] = if ok { ui + du } else { ui };
        v.data[i] = if ok { vi + dv } else { vi };
        let tr = a + d;
        let disc = ((a - d) * (a - d) + 4.0 * b * b).sqrt();
        let conf = (0.5 * (tr - disc)).max(0.0) / area;
        s.conf[i] = if ok { conf } else { 0.0 };
    }
    let conf = std::mem::take(&mut s.conf);
    let mean_conf = {
        let (sum, cnt) = conf
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
    s.conf = conf;
}

/// Normalised convolution of `(u, v)` with weights `w` (two box passes of
/// `radius`), blended with the weighted domain mean with weight `eps` per
/// cell; where all weights are zero the field keeps its mean.
fn smooth_weighted(u: &mut Img, v: &mut Img, w: &[f32], radius: usize, eps: f32, s: &mut Scratch) {
    let (rows, cols) = (u.rows, u.cols);
    let (mut sw, mut su, mut sv) = (0f64, 0f64, 0f64);
    for ((&wi, &ui), &vi) in w.iter().zip(&u.data).zip(&v.data) {
        let wi = wi as f64;
        sw += wi;
        su += wi * ui as f64;
        sv += wi * vi as f64;
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
    s.den.clear();
    s.den.extend_from_slice(w);
    s.num_u.clear();
    s.num_u.extend(u.data.iter().zip(w).map(|(x, wi)| x * wi));
    s.num_v.clear();
    s.num_v.extend(v.data.iter().zip(w).map(|(x, wi)| x * wi));
    for _ in 0..2 {
        box_sums_inplace(
            [&mut s.den[..], &mut s.num_u[..], &mut s.num_v[..]],
            rows,
            cols,
            radius,
            &mut s.tmp,
            &mut s.acc,
        );
    }
    let area2 = (((2 * radius + 1) * (2 * radius + 1)) as f32).powi(2);
    let eps = eps * area2;
    for (target, num, global) in [(&mut u.data, &s.num_u, gu), (&mut v.data, &s.num_v, gv)] {
        for ((t, &nu), &dn) in target.iter_mut().zip(num.iter()).zip(&s.den) {
            let d = dn + eps;
            let q = (nu + eps * global) / d;
            *t = if d > 0.0 { q } else { global };
        }
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

    /// The working grid has cells of about 4 km whatever the grid's extent
    /// (a long-side bound alone gave FMI's 1226-cell composite 7-km cells,
    /// too coarse for its showers); only the cost bound makes a very large
    /// grid coarser.
    #[test]
    fn working_cells_are_about_four_km_on_every_grid() {
        let cfg = MotionConfig::default();
        let km = |rows, cols, cell_km| {
            let f = working_factor(rows, cols, cell_km, &cfg);
            (f, f as f32 * cell_km)
        };
        // BOM 512 × 512 × 500 m, MeteoSwiss, RMI, FMI (its cells are 999.65 m).
        assert_eq!(km(512, 512, 0.5), (8, 4.0));
        assert_eq!(km(640, 710, 1.0), (4, 4.0));
        assert_eq!(km(700, 700, 1.0), (4, 4.0));
        assert_eq!(km(1226, 760, 0.99965).0, 4);
        // A 1.5-km grid: the nearest whole factor (3: 4.5 km).
        assert_eq!(km(400, 400, 1.5).0, 3);
        // Cells already coarser than 4 km are used as they are.
        assert_eq!(km(300, 300, 5.0), (1, 5.0));
        // OPERA 2200 × 1900 × 2 km: the cost bound (long side ≤ 384) wins.
        assert_eq!(km(2200, 1900, 2.0), (6, 12.0));
        assert!(2200usize.div_ceil(6) <= cfg.max_working_side);
        // A size that says nothing falls back to the cost bound.
        for bad in [f32::NAN, 0.0, -1.0, f32::INFINITY] {
            assert_eq!(working_factor(512, 512, bad, &cfg), 2, "cell_km {bad}");
        }
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

    /// Bit for bit the plain per-channel box sum of `raster`, whatever the
    /// radius (inside, equal to and beyond the grid) and shape.
    #[test]
    fn fused_box_sums_match_box_sum_bitwise() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 20.0 - 7.0
        };
        for (rows, cols) in [(1, 1), (5, 9), (17, 13), (40, 3)] {
            for radius in [0, 1, 2, 3, 6, 12, 50] {
                let chans: Vec<Vec<f32>> = (0..3)
                    .map(|_| (0..rows * cols).map(|_| next()).collect())
                    .collect();
                let mut tmp = Vec::new();
                let want: Vec<Vec<f32>> = chans
                    .iter()
                    .map(|c| {
                        let mut out = vec![0f32; rows * cols];
                        crate::raster::box_sum(c, &mut out, rows, cols, radius, &mut tmp);
                        out
                    })
                    .collect();
                let mut got = chans.clone();
                let (mut t2, mut acc) = (Vec::new(), Vec::new());
                let [a, b, c] = &mut got[..] else {
                    unreachable!()
                };
                box_sums_inplace([a, b, c], rows, cols, radius, &mut t2, &mut acc);
                for (g, w) in got.iter().zip(&want) {
                    let same = g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{rows}x{cols} radius {radius}: {g:?} != {w:?}");
                }
            }
        }
    }

    /// `dbr_row` gives `to_dbr`'s bits cell by cell, on rows whose groups
    /// are all dry, all unknown, mixed or rainy, with rates that are not
    /// normal numbers, and tails shorter than a group.
    #[test]
    fn dbr_row_is_to_dbr_cell_by_cell() {
        let value = |i: usize, pattern: usize| -> f32 {
            match (pattern, i % 37) {
                (0, _) => 0.0,
                (1, _) => f32::NAN,
                (2, k) if k < 30 => [0.0, 0.05, f32::NAN][k % 3],
                (_, 0) => f32::INFINITY,
                (_, 1) => f32::MIN_POSITIVE / 4.0,
                (_, 2) => 0.1,
                (_, k) => 0.01 * k as f32 * (1.0 + i as f32 / 50.0),
            }
        };
        for len in [0, 1, 15, 16, 17, 48, 100, 257] {
            for pattern in 0..4 {
                for threshold in [0.1, 0.0] {
                    let src: Vec<f32> = (0..len).map(|i| value(i, pattern)).collect();
                    let mut got = vec![7.0f32; len];
                    dbr_row(&src, &mut got, threshold, -15.0);
                    for (i, (g, x)) in got.iter().zip(&src).enumerate() {
                        let want = to_dbr(*x, threshold, -15.0);
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "len {len}, pattern {pattern}, threshold {threshold}, cell {i}: {x}"
                        );
                    }
                }
            }
        }
    }

    /// The fused conversion + block mean gives the bits of converting the
    /// whole field with `to_dbr` and then `block_mean`, for NaN (no data),
    /// +∞, rates below the threshold, partial edge blocks and a view that
    /// is not contiguous.
    #[test]
    fn fused_dbr_block_mean_matches_two_passes() {
        let (rows, cols) = (23, 31);
        let a = Array2::from_shape_fn((rows, cols), |(r, c)| match (r * 7 + c * 3) % 11 {
            0 => f32::NAN,
            1 => 0.0,
            2 => 0.05,
            3 if r == 4 => f32::INFINITY,
            k => 0.1 + (k as f32) * 1.7 * (1.0 + r as f32 / 10.0),
        });
        let t = a.t().to_owned();
        let at = a.t();
        for cfg in [
            MotionConfig::default(),
            MotionConfig {
                rain_threshold_mm_h: 0.0,
                ..MotionConfig::default()
            },
        ] {
            for f in [1, 2, 3, 4, 5, 40] {
                for (view, owned) in [(a.view(), &a), (at, &t)] {
                    let mut img = Img::from_view(&owned.view());
                    for x in img.data.iter_mut() {
                        *x = to_dbr(*x, cfg.rain_threshold_mm_h, cfg.floor_dbr);
                    }
                    let want = block_mean(&img, f);
                    let got = dbr_block_mean(&view, f, &cfg);
                    assert_eq!((got.rows, got.cols), (want.rows, want.cols));
                    let same = got
                        .data
                        .iter()
                        .zip(&want.data)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "factor {f}: {:?} != {:?}", got.data, want.data);
                }
            }
        }
    }

    /// A textured rain field turning about the domain centre (solid-body
    /// rotation, 0.02 rad per step): the estimate follows the spatially
    /// varying vectors, not just their mean (which is about zero here).
    #[test]
    fn recovers_a_rotation() {
        let n = 240usize;
        let centre = (n as f32 - 1.0) / 2.0;
        let omega = 0.02f32;
        // 60 Gaussian blobs, positions and sizes from a fixed LCG.
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let blobs: Vec<(f32, f32, f32, f32)> = (0..60)
            .map(|_| {
                let x = rnd() * n as f32;
                let y = rnd() * n as f32;
                (x, y, 5.0 + 8.0 * rnd(), 2.0 + 18.0 * rnd())
            })
            .collect();
        let rain = |x: f32, y: f32| -> f32 {
            blobs
                .iter()
                .map(|(bx, by, s, a)| {
                    let d2 = (x - bx).powi(2) + (y - by).powi(2);
                    a * (-d2 / (2.0 * s * s)).exp()
                })
                .sum()
        };
        // Rain now at p was at c + R(−ω·j)(p − c) j steps ago, so the field
        // j steps back is F(c + R(ω·j)(q − c)).
        let frame = |j: f32| {
            let (sn, cs) = (omega * j).sin_cos();
            Array2::from_shape_fn((n, n), |(r, c)| {
                let (x, y) = (c as f32 - centre, r as f32 - centre);
                rain(centre + cs * x - sn * y, centre + sn * x + cs * y)
            })
        };
        let f = vec![frame(2.0), frame(1.0), frame(0.0)];
        let m = estimate(&views(&f), 1.0, &MotionConfig::default()).expect("motion");
        let (du, dv) = m.dense();
        let (sn, cs) = (-omega).sin_cos();
        let (mut err2, mut speed2, mut cnt) = (0f32, 0f32, 0f32);
        for r in 0..n {
            for c in 0..n {
                let (x, y) = (c as f32 - centre, r as f32 - centre);
                if x * x + y * y > 90.0 * 90.0 || f[2][[r, c]] < 1.0 {
                    continue;
                }
                // True displacement over one step: p − (c + R(−ω)(p − c)).
                let (tu, tv) = (x - (cs * x - sn * y), y - (sn * x + cs * y));
                err2 += (du[[r, c]] - tu).powi(2) + (dv[[r, c]] - tv).powi(2);
                speed2 += tu * tu + tv * tv;
                cnt += 1.0;
            }
        }
        assert!(cnt > 5000.0, "too little rain in the test field: {cnt}");
        let (rms_err, rms_speed) = ((err2 / cnt).sqrt(), (speed2 / cnt).sqrt());
        eprintln!("rotation: rms error {rms_err:.3} px/step, rms speed {rms_speed:.3}");
        assert!(
            rms_err < 0.25 * rms_speed,
            "rms error {rms_err:.3} px/step against rms speed {rms_speed:.3}"
        );
    }
}
