//! Small raster kernels shared by motion, extrapolation and the nowcast:
//! a row-major `f32` image, NaN-aware block means, box sums, bilinear
//! up-sampling and the one bilinear sampler ([`bilinear`]). Internal to the
//! crate; every loop runs over contiguous slices and allocates once per call,
//! never per cell.

use ndarray::{Array2, ArrayView2};

/// A row-major `f32` raster: `data[r * cols + c]`. `NaN` = no data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Img {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Img {
    pub fn filled(rows: usize, cols: usize, value: f32) -> Self {
        Self {
            rows,
            cols,
            data: vec![value; rows * cols],
        }
    }

    /// Copies a view into a contiguous raster (any memory layout).
    pub fn from_view(a: &ArrayView2<f32>) -> Self {
        let (rows, cols) = a.dim();
        let data = match a.as_slice() {
            Some(s) => s.to_vec(),
            None => a.iter().copied().collect(),
        };
        Self { rows, cols, data }
    }

    pub fn into_array(self) -> Array2<f32> {
        // The length always equals rows * cols by construction.
        Array2::from_shape_vec((self.rows, self.cols), self.data)
            .unwrap_or_else(|_| Array2::zeros((0, 0)))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }
}

/// NaN-aware block mean by an integer factor `f` (≥ 1). Output cell `(i, j)`
/// covers input rows `i·f .. i·f+f` and columns `j·f .. j·f+f` (clipped at the
/// edges). It is the mean of the finite inputs, or `NaN` when fewer than half
/// of the block's cells inside the grid are finite.
pub(crate) fn block_mean(src: &Img, f: usize) -> Img {
    let f = f.max(1);
    if f == 1 {
        return src.clone();
    }
    let rows = src.rows.div_ceil(f);
    let cols = src.cols.div_ceil(f);
    let mut sum = vec![0f32; cols];
    let mut cnt = vec![0u32; cols];
    let mut out = Img::filled(rows, cols, f32::NAN);
    for i in 0..rows {
        sum.iter_mut().for_each(|x| *x = 0.0);
        cnt.iter_mut().for_each(|x| *x = 0);
        let r0 = i * f;
        let r1 = (r0 + f).min(src.rows);
        for r in r0..r1 {
            let row = &src.data[r * src.cols..(r + 1) * src.cols];
            for (j, chunk) in row.chunks(f).enumerate() {
                for &v in chunk {
                    if v.is_finite() {
                        sum[j] += v;
                        cnt[j] += 1;
                    }
                }
            }
        }
        let h = (r1 - r0) as u32;
        let out_row = &mut out.data[i * cols..(i + 1) * cols];
        for j in 0..cols {
            let w = ((j * f + f).min(src.cols) - j * f) as u32;
            let n = cnt[j];
            if n > 0 && 2 * n >= h * w {
                out_row[j] = sum[j] / n as f32;
            }
        }
    }
    out
}

/// Box *sum* with a square window of side `2·radius + 1`, cells outside the
/// grid counting as zero. `src` and `dst` have `rows · cols` cells; `tmp` is
/// scratch space (resized as needed). NaN inputs must be replaced by the
/// caller (they would poison the running sums). The reference that
/// `motion`'s fused multi-channel box sums are tested against, bit for bit.
#[cfg(test)]
pub(crate) fn box_sum(
    src: &[f32],
    dst: &mut [f32],
    rows: usize,
    cols: usize,
    radius: usize,
    tmp: &mut Vec<f32>,
) {
    tmp.resize(rows * cols, 0.0);
    // Horizontal pass: src -> tmp.
    for (srow, trow) in src.chunks_exact(cols).zip(tmp.chunks_exact_mut(cols)) {
        let mut acc = 0f32;
        for &v in srow.iter().take(radius.min(cols)) {
            acc += v;
        }
        for c in 0..cols {
            if c + radius < cols {
                acc += srow[c + radius];
            }
            trow[c] = acc;
            if c >= radius {
                acc -= srow[c - radius];
            }
        }
    }
    // Vertical pass: tmp -> dst, with a running vector of column sums.
    let mut acc = vec![0f32; cols];
    for r in 0..radius.min(rows) {
        for (a, v) in acc.iter_mut().zip(&tmp[r * cols..(r + 1) * cols]) {
            *a += v;
        }
    }
    for r in 0..rows {
        if r + radius < rows {
            let add = &tmp[(r + radius) * cols..(r + radius + 1) * cols];
            for (a, v) in acc.iter_mut().zip(add) {
                *a += v;
            }
        }
        dst[r * cols..(r + 1) * cols].copy_from_slice(&acc);
        if r >= radius {
            let sub = &tmp[(r - radius) * cols..(r - radius + 1) * cols];
            for (a, v) in acc.iter_mut().zip(sub) {
                *a -= v;
            }
        }
    }
}

/// Positions and weights for resampling an axis of `n_src` cells to `n_dst`
/// cells whose centres map to source coordinate `(i + 0.5) · scale − 0.5`.
/// Returns `(i0, i1, w1)` per destination index, clamped at the edges.
pub(crate) fn axis_weights(n_src: usize, n_dst: usize, scale: f32) -> Vec<(usize, usize, f32)> {
    let last = n_src.saturating_sub(1);
    (0..n_dst)
        .map(|i| {
            let x = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, last as f32);
            // x >= 0 after the clamp: truncation is floor (and avoids a libm call).
            let i0 = (x as usize).min(last);
            let i1 = (i0 + 1).min(last);
            (i0, i1, x - i0 as f32)
        })
        .collect()
}

/// Bilinear resampling of a coarse raster onto a `rows × cols` raster where
/// each coarse cell covers `factor` fine cells (factor may be fractional for
/// the last partial block; positions are clamped at the edges). NaN-aware:
/// the weights of finite neighbours are renormalised, and the result is NaN
/// when all four neighbours are NaN.
pub(crate) fn upsample(src: &Img, rows: usize, cols: usize, factor: f32) -> Img {
    let mut out = Img::filled(rows, cols, f32::NAN);
    upsample_into(src, &mut out, factor);
    out
}

/// [`upsample`] into an existing raster (its shape is kept).
pub(crate) fn upsample_into(src: &Img, out: &mut Img, factor: f32) {
    let (rows, cols) = (out.rows, out.cols);
    let scale = 1.0 / factor;
    let ry = axis_weights(src.rows, rows, scale);
    let cx = axis_weights(src.cols, cols, scale);
    let mut tmp = vec![0f32; src.cols];
    for (r, &(r0, r1, wy)) in ry.iter().enumerate() {
        let a = &src.data[r0 * src.cols..(r0 + 1) * src.cols];
        let b = &src.data[r1 * src.cols..(r1 + 1) * src.cols];
        for ((t, x), y) in tmp.iter_mut().zip(a).zip(b) {
            *t = x + wy * (y - x);
        }
        let orow = &mut out.data[r * cols..(r + 1) * cols];
        for (o, &(c0, c1, wx)) in orow.iter_mut().zip(&cx) {
            let s = tmp[c0] + wx * (tmp[c1] - tmp[c0]);
            if s.is_finite() {
                *o = s;
                continue;
            }
            // Some neighbour is no data: renormalise over the finite ones.
            let w00 = (1.0 - wy) * (1.0 - wx);
            let w01 = (1.0 - wy) * wx;
            let w10 = wy * (1.0 - wx);
            let w11 = wy * wx;
            let mut num = 0f32;
            let mut den = 0f32;
            for (v, w) in [(a[c0], w00), (a[c1], w01), (b[c0], w10), (b[c1], w11)] {
                if v.is_finite() && w > 0.0 {
                    num += v * w;
                    den += w;
                }
            }
            *o = if den > 1e-6 { num / den } else { f32::NAN };
        }
    }
}

/// The crate's one NaN-aware bilinear sampler: the value of `data` (a
/// row-major `rows × cols` raster, any quantity and unit, NaN = no data) at
/// the fractional position `(r, c)` in **cells**, cell-centre coordinates
/// (cell `(i, j)` has its centre at `(i, j)`, row 0 north). Result in the
/// unit of `data`:
/// * NaN when the point lies more than half a cell outside the grid; within
///   that half cell the edge cells extend outwards;
/// * the plain bilinear value when all four neighbours are finite;
/// * otherwise the weights of the finite neighbours are renormalised, and the
///   result is NaN when they carry less than half of the weight.
///
/// Used by the warp's hot loop (extrapolation) and by motion estimation.
#[inline]
pub(crate) fn bilinear(data: &[f32], rows: usize, cols: usize, sr: f32, sc: f32) -> f32 {
    if !(sr >= -0.5 && sc >= -0.5 && sr <= rows as f32 - 0.5 && sc <= cols as f32 - 0.5) {
        return f32::NAN;
    }
    // sr + 1 ≥ 0.5, so truncation is floor, and the i32 conversion is cheap
    // and exact in range. Indices k − 1 and k are the two neighbours, clamped
    // into the grid (edge cells extend by half a cell).
    let (fr, fc) = (sr + 1.0, sc + 1.0);
    let (kr, kc) = (fr as i32, fc as i32);
    let (ty, tx) = (fr - kr as f32, fc - kc as f32);
    let r0 = (kr - 1).max(0) as usize;
    let c0 = (kc - 1).max(0) as usize;
    let r1 = (kr as usize).min(rows - 1);
    let c1 = (kc as usize).min(cols - 1);
    let (v00, v01) = (data[r0 * cols + c0], data[r0 * cols + c1]);
    let (v10, v11) = (data[r1 * cols + c0], data[r1 * cols + c1]);
    let s = lerp4([v00, v01, v10, v11], tx, ty);
    if s.is_finite() {
        return s;
    }
    // Some neighbours are no data: renormalise over the finite ones.
    let w = [
        (1.0 - ty) * (1.0 - tx),
        (1.0 - ty) * tx,
        ty * (1.0 - tx),
        ty * tx,
    ];
    let (mut num, mut den) = (0f32, 0f32);
    for (v, w) in [v00, v01, v10, v11].into_iter().zip(w) {
        if v.is_finite() {
            num += v * w;
            den += w;
        }
    }
    if den >= 0.5 {
        num / den
    } else {
        f32::NAN
    }
}

/// Bilinear interpolation between the neighbours `[v00, v01, v10, v11]`
/// (row, column) at fractions `tx` along the row and `ty` down the column:
/// the first step of [`bilinear`], and the warp's per-cell path.
#[inline(always)]
pub(crate) fn lerp4([v00, v01, v10, v11]: [f32; 4], tx: f32, ty: f32) -> f32 {
    let top = v00 + tx * (v01 - v00);
    let bot = v10 + tx * (v11 - v10);
    top + ty * (bot - top)
}

/// Like [`bilinear`] but clamps the position into the grid (for smooth fields
/// such as motion vectors, which extend their edge values outwards) and treats
/// every value as finite; samples two rasters of one shape (the `u` and `v`
/// of a motion or displacement field) at once, so that the position's
/// indices and weights are computed once for both (each value is the same,
/// bit for bit, as sampling its raster alone).
#[inline]
pub(crate) fn sample_clamped(a: &Img, b: &Img, r: f32, c: f32) -> (f32, f32) {
    let ([u], [v]) = sample_clamped_lanes(a, b, &[r], &[c]);
    (u, v)
}

/// [`sample_clamped`] at `L` positions: the clamps, indices and weights in
/// lanes (a loop that vectorises), then the loads.
#[inline(always)]
pub(crate) fn sample_clamped_lanes<const L: usize>(
    a: &Img,
    b: &Img,
    r: &[f32; L],
    c: &[f32; L],
) -> ([f32; L], [f32; L]) {
    debug_assert_eq!((a.rows, a.cols), (b.rows, b.cols));
    let (rows, cols) = (a.rows, a.cols);
    let (rmax, cmax) = ((rows - 1) as f32, (cols - 1) as f32);
    let (mut i00, mut i01, mut i10, mut i11) = ([0usize; L], [0usize; L], [0usize; L], [0usize; L]);
    let (mut wy, mut wx) = ([0f32; L], [0f32; L]);
    for l in 0..L {
        let (rr, cc) = (r[l].clamp(0.0, rmax), c[l].clamp(0.0, cmax));
        // Within [0, rows − 1] the floor is the truncation; a NaN position
        // lands on some cell and stays NaN through the weights.
        let r0 = (floor_small(rr).max(0) as usize).min(rows - 1);
        let c0 = (floor_small(cc).max(0) as usize).min(cols - 1);
        let (r1, c1) = ((r0 + 1).min(rows - 1), (c0 + 1).min(cols - 1));
        (wy[l], wx[l]) = (rr - r0 as f32, cc - c0 as f32);
        (i00[l], i01[l]) = (r0 * cols + c0, r0 * cols + c1);
        (i10[l], i11[l]) = (r1 * cols + c0, r1 * cols + c1);
    }
    let sample = |d: &[f32]| {
        let mut out = [0f32; L];
        for l in 0..L {
            let top = d[i00[l]] + wx[l] * (d[i01[l]] - d[i00[l]]);
            let bot = d[i10[l]] + wx[l] * (d[i11[l]] - d[i10[l]]);
            out[l] = top + wy[l] * (bot - top);
        }
        out
    };
    (sample(&a.data), sample(&b.data))
}

/// Smallest and largest non-NaN value of `xs` (`(∞, −∞)` when there is
/// none). Eight independent lanes of plain comparisons (NaN fails both), so
/// the loop vectorises without fast-math; the lanes are merged at the end.
pub(crate) fn value_range(xs: &[f32]) -> (f32, f32) {
    const L: usize = 8;
    let (mut lo, mut hi) = ([f32::INFINITY; L], [f32::NEG_INFINITY; L]);
    let mut chunks = xs.chunks_exact(L);
    for ch in &mut chunks {
        for k in 0..L {
            let v = ch[k];
            lo[k] = if v < lo[k] { v } else { lo[k] };
            hi[k] = if v > hi[k] { v } else { hi[k] };
        }
    }
    let (mut l, mut h) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in lo.iter().chain(chunks.remainder()) {
        l = if v < l { v } else { l };
    }
    for &v in hi.iter().chain(chunks.remainder()) {
        h = if v > h { v } else { h };
    }
    (l, h)
}

/// `⌊y⌋` for `0 ≤ y < 2²²`, without Rust's saturating float-to-integer
/// conversion (its NaN and range fix-ups are per lane, so a loop with it
/// does not vectorise): `y + 2²³` rounds `y` to the nearest integer, which
/// is then the low mantissa bits; one less if that rounded up.
#[inline(always)]
pub(crate) fn floor_small(y: f32) -> i32 {
    const MAGIC: f32 = 8_388_608.0; // 2²³
    let n = (y + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32;
    n - ((n as f32) > y) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_small_is_truncation() {
        // Every integer below 2^13 (the table sizes) and its two float
        // neighbours, and a stride through every f32 bit pattern in
        // [0, 2^22).
        let mut ys: Vec<f32> = Vec::new();
        for k in 0..=8192u32 {
            let f = k as f32;
            ys.extend([f, f.next_up(), f.next_down().max(0.0)]);
        }
        ys.extend([0.0, -0.0, 0.49999997, 0.5, 0.50000006, 1.5, 2.5, 4194303.8]);
        let top = 4_194_304f32.to_bits();
        ys.extend((0..top).step_by(997).map(f32::from_bits));
        for y in ys {
            assert_eq!(floor_small(y), y as i32, "{y}");
        }
    }

    #[test]
    fn block_mean_is_nan_aware() {
        let src = Img {
            rows: 3,
            cols: 4,
            data: vec![
                1.0,
                3.0,
                f32::NAN,
                f32::NAN, //
                5.0,
                7.0,
                f32::NAN,
                2.0, //
                9.0,
                f32::NAN,
                f32::NAN,
                f32::NAN,
            ],
        };
        let m = block_mean(&src, 2);
        assert_eq!((m.rows, m.cols), (2, 2));
        assert_eq!(m.data[0], 4.0);
        assert!(m.data[1].is_nan(), "1 of 4 finite");
        assert_eq!(m.data[2], 9.0, "1 of 2 cells in the partial block");
        assert!(m.data[3].is_nan());
    }

    #[test]
    fn box_sum_matches_brute_force() {
        let (rows, cols, rad) = (7, 9, 2);
        let src: Vec<f32> = (0..rows * cols).map(|i| ((i * 37) % 11) as f32).collect();
        let mut dst = vec![0f32; rows * cols];
        let mut tmp = Vec::new();
        box_sum(&src, &mut dst, rows, cols, rad, &mut tmp);
        for r in 0..rows {
            for c in 0..cols {
                let mut s = 0.0;
                for rr in r.saturating_sub(rad)..=(r + rad).min(rows - 1) {
                    for cc in c.saturating_sub(rad)..=(c + rad).min(cols - 1) {
                        s += src[rr * cols + cc];
                    }
                }
                assert_eq!(dst[r * cols + c], s, "({r},{c})");
            }
        }
    }

    #[test]
    fn value_range_skips_nan_in_every_lane() {
        // Lengths around the lane width, NaN and the extremes in every position.
        for n in [0usize, 1, 7, 8, 9, 17, 40] {
            for at in 0..n {
                let mut xs: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
                xs[at] = f32::NAN;
                xs[(at + 3) % n] = -9.0;
                xs[(at + 5) % n] = 11.0;
                let finite: Vec<f32> = xs.iter().copied().filter(|v| !v.is_nan()).collect();
                let want = (
                    finite.iter().copied().fold(f32::INFINITY, f32::min),
                    finite.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                );
                assert_eq!(value_range(&xs), want, "n {n}, NaN at {at}");
            }
        }
        assert_eq!(
            value_range(&[f32::NAN; 9]),
            (f32::INFINITY, f32::NEG_INFINITY)
        );
    }

    #[test]
    fn sampling_and_upsampling() {
        let img = Img {
            rows: 2,
            cols: 2,
            data: vec![0.0, 1.0, 2.0, f32::NAN],
        };
        let sample = |img: &Img, r: f32, c: f32| bilinear(&img.data, img.rows, img.cols, r, c);
        assert_eq!(sample(&img, 0.0, 0.5), 0.5);
        assert_eq!(sample(&img, 0.5, 0.0), 1.0);
        assert!(sample(&img, 0.9, 0.9).is_nan(), "mostly no data");
        assert!(sample(&img, -0.6, 0.0).is_nan(), "outside");
        assert_eq!(sample(&img, -0.4, 0.0), 0.0, "clamped within half a cell");
        let up = upsample(&img, 4, 4, 2.0);
        assert_eq!(up.data[0], 0.0);
        assert!(up.data[..12].iter().all(|v| v.is_finite()));
        assert!(up.data[15].is_nan(), "only the no-data corner");
        let (a, b) = (Img::filled(3, 3, 2.5), Img::filled(3, 3, -1.0));
        assert_eq!(sample_clamped(&a, &b, 10.0, -4.0), (2.5, -1.0));
    }

    #[test]
    fn clamped_samples_in_lanes_equal_the_plain_formula() {
        // The plain formula: truncating casts, one raster at a time.
        let plain = |img: &Img, r: f32, c: f32| -> f32 {
            let (rows, cols) = (img.rows, img.cols);
            let (r, c) = (
                r.clamp(0.0, (rows - 1) as f32),
                c.clamp(0.0, (cols - 1) as f32),
            );
            let (r0, c0) = ((r as usize).min(rows - 1), (c as usize).min(cols - 1));
            let (r1, c1) = ((r0 + 1).min(rows - 1), (c0 + 1).min(cols - 1));
            let (wy, wx, d) = (r - r0 as f32, c - c0 as f32, &img.data);
            let top = d[r0 * cols + c0] + wx * (d[r0 * cols + c1] - d[r0 * cols + c0]);
            let bot = d[r1 * cols + c0] + wx * (d[r1 * cols + c1] - d[r1 * cols + c0]);
            top + wy * (bot - top)
        };
        let (rows, cols) = (7, 11);
        let mut a = Img::filled(rows, cols, 0.0);
        let mut b = Img::filled(rows, cols, 0.0);
        for (k, (x, y)) in a.data.iter_mut().zip(b.data.iter_mut()).enumerate() {
            (*x, *y) = (
                (k as f32 * 0.731).sin() * 9.0,
                (k as f32 * 1.37).cos() * 4.0,
            );
        }
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 5.0
        };
        for _ in 0..200 {
            let (mut r, mut c) = ([0f32; 8], [0f32; 8]);
            for l in 0..8 {
                (r[l], c[l]) = (next(), next());
            }
            // Whole and half cells, edges, and beyond them.
            (r[0], c[0], r[1], c[1]) = (3.0, 10.0, 6.0, 0.5);
            let (u, v) = sample_clamped_lanes(&a, &b, &r, &c);
            for l in 0..8 {
                let want = (plain(&a, r[l], c[l]), plain(&b, r[l], c[l]));
                let got = (u[l].to_bits(), v[l].to_bits());
                assert_eq!(
                    got,
                    (want.0.to_bits(), want.1.to_bits()),
                    "{} {}",
                    r[l],
                    c[l]
                );
            }
        }
    }
}
