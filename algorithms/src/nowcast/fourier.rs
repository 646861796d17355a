//! The Fourier cascade of the S-PROG-like forecast: a 2-D real FFT of the
//! grid and a bank of Gaussian band-pass filters in log wavenumber, as in
//! pysteps' `filter_gaussian` (Pulkkinen et al. 2019), whose weights sum to
//! one at every wavenumber so that the levels add up to the field exactly.

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// A 2-D real FFT of a `rows × cols` grid (row-major `f32`).
///
/// The spectrum holds the `h = cols / 2 + 1` non-negative horizontal
/// wavenumbers (the rest follow by Hermitian symmetry), row-major: entry
/// `i · h + j` is vertical wavenumber `i` (`i − rows` above `rows / 2`) and
/// horizontal wavenumber `j`. The row transforms work in place; the column
/// transforms go through blocks of [`BLOCK`] columns copied out and back,
/// so a transform needs no second buffer of the grid's size. The inverse is
/// not normalised: `inverse(forward(x)) = rows · cols · x`.
pub(crate) struct Fft2 {
    rows: usize,
    cols: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
}

/// Columns per block of [`Fft2`]'s column transforms.
const BLOCK: usize = 16;

/// Buffers of [`Fft2`], kept from one transform to the next.
#[derive(Default)]
pub(crate) struct FftScratch {
    row_in: Vec<f32>,
    real_scratch: Vec<Complex32>,
    col_scratch: Vec<Complex32>,
    /// A block of columns, each contiguous.
    block: Vec<Complex32>,
}

impl Fft2 {
    pub(crate) fn new(rows: usize, cols: usize) -> Self {
        let mut real = RealFftPlanner::<f32>::new();
        let mut complex = FftPlanner::<f32>::new();
        Self {
            rows,
            cols,
            r2c: real.plan_fft_forward(cols),
            c2r: real.plan_fft_inverse(cols),
            col_fwd: complex.plan_fft_forward(rows),
            col_inv: complex.plan_fft_inverse(rows),
        }
    }

    /// Entries of the spectrum: `rows · (cols / 2 + 1)`.
    pub(crate) fn spectrum_len(&self) -> usize {
        (self.cols / 2 + 1) * self.rows
    }

    fn prepare(&self, s: &mut FftScratch) {
        s.row_in.resize(self.cols, 0.0);
        let real = self.r2c.get_scratch_len().max(self.c2r.get_scratch_len());
        s.real_scratch.resize(real, Complex32::default());
        let col = self
            .col_fwd
            .get_inplace_scratch_len()
            .max(self.col_inv.get_inplace_scratch_len());
        s.col_scratch.resize(col, Complex32::default());
        s.block.resize(BLOCK * self.rows, Complex32::default());
    }

    /// The column transforms of a row-major spectrum, in place: blocks of
    /// [`BLOCK`] columns are copied out into contiguous columns (a block of
    /// rows at a time, so that both sides stay in cache), transformed, and
    /// copied back.
    fn columns(&self, spec: &mut [Complex32], fft: &dyn Fft<f32>, s: &mut FftScratch) {
        const ROWS: usize = 64;
        let (rows, h) = (self.rows, self.cols / 2 + 1);
        for j0 in (0..h).step_by(BLOCK) {
            let b = BLOCK.min(h - j0);
            let block = &mut s.block[..b * rows];
            for i0 in (0..rows).step_by(ROWS) {
                let n = ROWS.min(rows - i0);
                for (t, col) in block.chunks_exact_mut(rows).enumerate() {
                    let dst = &mut col[i0..i0 + n];
                    for (d, row) in dst.iter_mut().zip(spec[i0 * h..].chunks_exact(h)) {
                        *d = row[j0 + t];
                    }
                }
            }
            fft.process_with_scratch(block, &mut s.col_scratch);
            for i0 in (0..rows).step_by(ROWS) {
                let n = ROWS.min(rows - i0);
                for (t, col) in block.chunks_exact(rows).enumerate() {
                    let src = &col[i0..i0 + n];
                    for (v, row) in src.iter().zip(spec[i0 * h..].chunks_exact_mut(h)) {
                        row[j0 + t] = *v;
                    }
                }
            }
        }
    }

    /// The spectrum of `x` (`rows · cols` finite values) into `spec`.
    #[cfg(test)]
    pub(crate) fn forward(&self, x: &[f32], spec: &mut Vec<Complex32>, s: &mut FftScratch) {
        self.forward_padded(x, self.cols, 0.0, |v| v, spec, s);
    }

    /// The spectrum into `spec` of the field `x` (row-major, `x_cols`
    /// columns, at most this transform's rows and columns) with every value
    /// passed through `map`, padded with `pad` to the transform's size. The
    /// padding and `map` are applied as each row is copied into the row
    /// transform's input: no padded copy of the field is made.
    pub(crate) fn forward_padded(
        &self,
        x: &[f32],
        x_cols: usize,
        pad: f32,
        map: impl Fn(f32) -> f32,
        spec: &mut Vec<Complex32>,
        s: &mut FftScratch,
    ) {
        let h = self.cols / 2 + 1;
        debug_assert!(x_cols <= self.cols && x.len() <= x_cols * self.rows);
        let x_cols = x_cols.clamp(1, self.cols.max(1));
        self.prepare(s);
        spec.clear();
        spec.resize(self.spectrum_len(), Complex32::default());
        let mut rows = x.chunks_exact(x_cols);
        for out in spec.chunks_exact_mut(h) {
            match rows.next() {
                Some(row) => {
                    let (head, tail) = s.row_in.split_at_mut(x_cols);
                    head.iter_mut().zip(row).for_each(|(d, v)| *d = map(*v));
                    tail.fill(pad);
                }
                None => s.row_in.fill(pad),
            }
            // The lengths are the plan's own: the transform cannot fail.
            let ok = self
                .r2c
                .process_with_scratch(&mut s.row_in, out, &mut s.real_scratch);
            debug_assert!(ok.is_ok());
        }
        self.columns(spec, &*self.col_fwd, s);
    }

    /// The grid of the spectrum `spec` (overwritten) into `out`
    /// (`rows · cols`), not normalised.
    pub(crate) fn inverse(&self, spec: &mut [Complex32], out: &mut Vec<f32>, s: &mut FftScratch) {
        self.inverse_part(spec, (self.rows, self.cols), out, s);
    }

    /// As [`Fft2::inverse`], but only the first `part.0` rows and
    /// `part.1` columns of the grid, row-major into `out` (the rows
    /// below are not transformed).
    pub(crate) fn inverse_part(
        &self,
        spec: &mut [Complex32],
        part: (usize, usize),
        out: &mut Vec<f32>,
        s: &mut FftScratch,
    ) {
        self.inverse_part_with(spec, part, out, s, |_, _| {});
    }

    /// [`Self::inverse_part`], handing each output row to `finish` (its
    /// index and values) as soon as it is transformed, while it is still
    /// in the cache: a pass over the rows there instead of over the whole
    /// field afterwards.
    pub(crate) fn inverse_part_with(
        &self,
        spec: &mut [Complex32],
        part: (usize, usize),
        out: &mut Vec<f32>,
        s: &mut FftScratch,
        mut finish: impl FnMut(usize, &mut [f32]),
    ) {
        let (rows, cols) = (self.rows, self.cols);
        let (out_rows, out_cols) = (part.0.min(rows), part.1.min(cols));
        self.prepare(s);
        // Every value is written below: a buffer kept from the previous
        // lead is not cleared first (a pass of its size less).
        out.truncate(out_rows * out_cols);
        out.resize(out_rows * out_cols, 0.0);
        self.columns(spec, &*self.col_inv, s);
        let h = cols / 2 + 1;
        for (r, (row, input)) in out
            .chunks_exact_mut(out_cols.max(1))
            .zip(spec.chunks_exact_mut(h))
            .enumerate()
        {
            // The spectrum of a real field has real entries at horizontal
            // wavenumber 0 (and cols / 2 when even); rounding leaves a
            // trace of an imaginary part, which the real transform refuses.
            input[0].im = 0.0;
            if cols % 2 == 0 {
                input[h - 1].im = 0.0;
            }
            // The lengths are the plan's own: the transform cannot fail.
            let ok = if out_cols == cols {
                self.c2r
                    .process_with_scratch(input, row, &mut s.real_scratch)
            } else {
                let ok = self
                    .c2r
                    .process_with_scratch(input, &mut s.row_in, &mut s.real_scratch);
                row.copy_from_slice(&s.row_in[..out_cols]);
                ok
            };
            debug_assert!(ok.is_ok());
            finish(r, row);
        }
    }
}

/// Table entries per unit of wavenumber in [`Bands`]' radial tables.
const PER_WAVENUMBER: f32 = 8.0;

/// A level's weight below which [`Bands::stride`] and [`Bands::fold`] leave
/// a wavenumber out of its reach.
const NEGLIGIBLE: f32 = 1e-3;

/// The smallest `n' ≥ n` whose only prime factors are 2, 3 and 5 (fast
/// transform sizes).
pub(crate) fn smooth(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5] {
            while r.is_multiple_of(p) {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// The band-pass filters of the cascade: `levels` Gaussian weights in log
/// wavenumber, with central wavenumbers `c_k = (q^(k−1) + q^k) / 2` for
/// `k = 1 ..= levels`, `q = (L / 2)^(1 / levels)`, `L = max(rows, cols)`, a
/// standard deviation of half a factor `q`, normalised to sum to one at
/// every wavenumber; the mean (wavenumber 0) is in level 0 alone. As in
/// pysteps' `filter_gaussian`, except that the wavenumber of an entry is
/// taken in cycles per `L` cells along both axes (pysteps counts the
/// cycles per side of each axis, which differs on a grid that is not
/// square).
///
/// The weights depend on the wavenumber's magnitude only, so they are kept
/// as radial tables (`PER_WAVENUMBER` entries per unit) and every spectrum
/// entry as its index into them.
pub(crate) struct Bands {
    rows: usize,
    cols: usize,
    levels: usize,
    /// Per level, the largest wavenumber (cycles per `L` cells) where its
    /// weight is at least [`NEGLIGIBLE`].
    reach: Vec<f32>,
    /// `weights[k][t]`: level `k`'s weight at radius `t / PER_WAVENUMBER`.
    weights: Vec<Vec<f32>>,
    /// Per spectrum entry ([`Fft2`]'s order), its index in the tables.
    index: Vec<u32>,
}

impl Bands {
    #[cfg(test)]
    pub(crate) fn new(rows: usize, cols: usize, levels: usize) -> Self {
        Self::new_scaled(rows, cols, levels, 1.0)
    }

    /// The bands of a field whose cells are `1 / scale` of this grid's
    /// (`scale = 2`: the grid's cells are 2 × 2 blocks of the field's):
    /// the same wavenumbers, in cycles per `L` of this grid's cells, but
    /// `q = (scale · L / 2)^(1 / levels)`, so that the levels are the
    /// field's octaves; those finer than this grid resolves are cut off at
    /// its Nyquist wavenumber.
    pub(crate) fn new_scaled(rows: usize, cols: usize, levels: usize, scale: f32) -> Self {
        let levels = levels.max(1);
        let l = rows.max(cols) as f32;
        let h = cols / 2 + 1;
        let (sy, sx) = (l / rows as f32, l / cols as f32);
        // Row `i` holds the wavenumbers `ky = i` up to `rows / 2` and
        // `ky = i − rows` beyond: row `rows − i` has the same `ky²` (the
        // same f32, as `i − rows` is an exact integer) and so the same
        // indices, copied. The index is the radius in table units rounded
        // half away from zero, `⌊v + 0.5⌋` in f64 (exact for an f32 `v ≥
        // 0`): `f32::round` is a library call per entry on x86-64's
        // baseline (about a fifth of the cascade set-up's own time on BOM
        // before this).
        let kx2: Vec<f32> = (0..h)
            .map(|j| {
                let kx = j as f32 * sx;
                kx * kx
            })
            .collect();
        let mut index = vec![0u32; h * rows];
        let upper = rows / 2 + 1;
        for (i, row) in index.chunks_exact_mut(h.max(1)).take(upper).enumerate() {
            let ky = i as f32 * sy;
            let ky2 = ky * ky;
            for (t, kx2) in row.iter_mut().zip(&kx2) {
                let v = (kx2 + ky2).sqrt() * PER_WAVENUMBER;
                *t = (v as f64 + 0.5) as u32;
            }
        }
        for i in upper..rows {
            index.copy_within((rows - i) * h..(rows - i + 1) * h, i * h);
        }
        let longest = index.iter().copied().max().unwrap_or(0);
        let n = longest as usize + 1;
        let q = (0.5 * scale * l).max(1.5).powf(1.0 / levels as f32);
        let ln_q = q.ln();
        let centres: Vec<f32> = (1..=levels as i32)
            .map(|k| 0.5 * (q.powi(k - 1) + q.powi(k)))
            .collect();
        let mut weights = vec![vec![0f32; n]; levels];
        for t in 0..n {
            if t == 0 {
                weights[0][0] = 1.0;
                continue;
            }
            let r = t as f32 / PER_WAVENUMBER;
            let x = r.ln() / ln_q;
            let mut sum = 0f32;
            for (k, c) in centres.iter().enumerate() {
                let d = x - c.ln() / ln_q;
                let w = (-d * d / (2.0 * 0.5 * 0.5)).exp();
                weights[k][t] = w;
                sum += w;
            }
            for w in weights.iter_mut() {
                w[t] = if sum > 0.0 { w[t] / sum } else { 0.0 };
            }
            // Far beyond the last centre every Gaussian underflows: the
            // finest level takes it all.
            if sum <= 0.0 {
                weights[levels - 1][t] = 1.0;
            }
        }
        let reach = weights
            .iter()
            .map(|w| {
                let t = w.iter().rposition(|v| *v >= NEGLIGIBLE).unwrap_or(0);
                t as f32 / PER_WAVENUMBER
            })
            .collect();
        Self {
            rows,
            cols,
            levels,
            reach,
            weights,
            index,
        }
    }

    /// The sampling stride of level `k`'s statistics: the largest `s`
    /// dividing both sides of the grid such that the grid of every `s`-th
    /// row and column either still resolves the level (more than twice its
    /// reach along each axis: then sums of products of two levels over it
    /// equal the full grid's, their spectra cannot alias onto the mean, up
    /// to the weights below [`NEGLIGIBLE`] left out; with the correlations'
    /// mask, a regular sample of it) or holds at least `min_samples` cells (a regular sample of
    /// the level's own values, the same estimator on fewer cells).
    pub(crate) fn stride(&self, k: usize, min_samples: usize) -> usize {
        let l = self.rows.max(self.cols) as f32;
        let reach = self.reach[k];
        let (mut best, mut s) = (1, 2);
        while self.rows.is_multiple_of(s) && self.cols.is_multiple_of(s) {
            let (r, c) = (self.rows / s, self.cols / s);
            let resolved = (r as f32) > 2.0 * reach * self.rows as f32 / l
                && (c as f32) > 2.0 * reach * self.cols as f32 / l;
            if resolved || r * c >= min_samples {
                best = s;
            } else {
                break;
            }
            s *= 2;
        }
        best
    }

    /// Level `k` of the spectrum `spec`, times `scale`, sampled at every
    /// `stride`-th row and column, as the spectrum (in [`Fft2`]'s order)
    /// of that grid of `rows / stride × cols / stride` cells: the sum of
    /// the level's entries that alias onto each of its wavenumbers. Only
    /// the box of wavenumbers within the level's reach is visited.
    pub(crate) fn fold(
        &self,
        k: usize,
        spec: &[Complex32],
        stride: usize,
        scale: f32,
        out: &mut Vec<Complex32>,
    ) {
        let (pr, pc) = (self.rows, self.cols);
        let (r, c) = (pr / stride, pc / stride);
        let hc = c / 2 + 1;
        out.clear();
        out.resize(hc * r, Complex32::default());
        let w = &self.weights[k];
        let l = pr.max(pc) as f32;
        let reach = self.reach[k];
        // Rows and columns of the full spectrum within the reach.
        let ry = ((reach * pr as f32 / l).ceil() as usize).min(pr / 2);
        let rx = ((reach * pc as f32 / l).ceil() as usize).min(pc / 2);
        let h = pc / 2 + 1;
        // The rows within the reach, as two runs (non-negative and
        // negative wavenumbers); row i lands on row i mod r, its mirror on
        // −i mod r (r divides pr).
        for run in [0..ry + 1, (pr - ry).max(ry + 1)..pr] {
            for i in run {
                let u = i % r;
                let um = (r - u) % r;
                let row = &spec[i * h..i * h + rx + 1];
                let index = &self.index[i * h..i * h + rx + 1];
                // Column j lands on column j mod c, its mirror on −j mod c,
                // kept as counters rather than divisions.
                let (mut v, mut vm) = (0, 0);
                for (j, (x, t)) in row.iter().zip(index).enumerate() {
                    let x = x * (w[*t as usize] * scale);
                    if v < hc {
                        out[u * hc + v] += x;
                    }
                    // The entry (i, j) stands for itself and, but in
                    // columns 0 and pc / 2, for its conjugate at (−i, −j).
                    if j != 0 && 2 * j != pc && vm < hc {
                        out[um * hc + vm] += x.conj();
                    }
                    v = if v + 1 == c { 0 } else { v + 1 };
                    vm = if vm == 0 { c - 1 } else { vm - 1 };
                }
            }
        }
    }

    pub(crate) fn levels(&self) -> usize {
        self.levels
    }

    /// Entries of each radial table.
    pub(crate) fn table_len(&self) -> usize {
        self.weights[0].len()
    }

    /// Level `k`'s weight at table entry `t`.
    pub(crate) fn weight(&self, k: usize, t: usize) -> f32 {
        self.weights[k][t]
    }

    /// Each spectrum entry's index in the radial tables.
    pub(crate) fn index(&self) -> &[u32] {
        &self.index
    }

    /// Level `k` of the spectrum `spec` into `out`, times `scale`.
    #[cfg(test)]
    pub(crate) fn level(&self, k: usize, spec: &[Complex32], scale: f32, out: &mut Vec<Complex32>) {
        let w = &self.weights[k];
        out.clear();
        out.extend(
            spec.iter()
                .zip(&self.index)
                .map(|(v, t)| v * (w[*t as usize] * scale)),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                (r * 0.31).sin() * 5.0 + (c * 0.07 + r * 0.02).cos() * 3.0 + (i % 7) as f32 * 0.1
            })
            .collect()
    }

    #[test]
    fn each_entry_indexes_its_rounded_radius() {
        // The mirrored rows and the rounding without `f32::round` give the
        // index of the plain formula, entry by entry, on odd and even sides
        // and on square and oblong grids.
        for (rows, cols) in [
            (1, 1),
            (1, 2),
            (2, 1),
            (3, 4),
            (17, 24),
            (24, 17),
            (120, 128),
        ] {
            let b = Bands::new(rows, cols, 6);
            let l = rows.max(cols) as f32;
            let (sy, sx) = (l / rows as f32, l / cols as f32);
            let h = cols / 2 + 1;
            for i in 0..rows {
                let ky = if i <= rows / 2 {
                    i as f32
                } else {
                    i as f32 - rows as f32
                } * sy;
                for j in 0..h {
                    let kx = j as f32 * sx;
                    let want = ((kx * kx + ky * ky).sqrt() * PER_WAVENUMBER).round() as u32;
                    assert_eq!(b.index()[i * h + j], want, "{rows}x{cols} ({i}, {j})");
                }
            }
        }
        // Half-way radii round away from zero, as `f32::round` does.
        for v in [0.5f32, 1.5, 2.5, 8.5, 1e6 + 0.5, 0.49999997] {
            assert_eq!((v as f64 + 0.5) as u32, v.round() as u32, "{v}");
        }
    }

    #[test]
    fn a_reused_output_buffer_is_overwritten_entirely() {
        // The per-lead buffer is not cleared between leads: whatever it
        // held (here NaN, of the right size and of a larger one), the
        // inverse writes every value.
        let (rows, cols) = (17, 24);
        let fft = Fft2::new(rows, cols);
        let x = field(rows, cols);
        let (mut spec, mut s) = (Vec::new(), FftScratch::default());
        fft.forward(&x, &mut spec, &mut s);
        let mut fresh = Vec::new();
        fft.inverse_part(&mut spec.clone(), (rows, 20), &mut fresh, &mut s);
        for len in [rows * 20, rows * cols + 5] {
            let mut reused = vec![f32::NAN; len];
            fft.inverse_part(&mut spec.clone(), (rows, 20), &mut reused, &mut s);
            assert_eq!(reused.len(), fresh.len());
            assert!(reused
                .iter()
                .zip(&fresh)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn inverse_of_forward_is_the_field() {
        for (rows, cols) in [(32, 32), (17, 24), (24, 17), (1, 8), (9, 1)] {
            let fft = Fft2::new(rows, cols);
            let x = field(rows, cols);
            let (mut spec, mut out, mut s) = (Vec::new(), Vec::new(), FftScratch::default());
            fft.forward(&x, &mut spec, &mut s);
            fft.inverse(&mut spec, &mut out, &mut s);
            let n = (rows * cols) as f32;
            let worst = x
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b / n).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{rows}x{cols}: {worst}");
        }
    }

    #[test]
    fn forward_is_the_discrete_fourier_transform() {
        // Against the textbook sum at a few entries.
        let (rows, cols) = (6, 10);
        let x = field(rows, cols);
        let fft = Fft2::new(rows, cols);
        let (mut spec, mut s) = (Vec::new(), FftScratch::default());
        fft.forward(&x, &mut spec, &mut s);
        for (i, j) in [(0, 0), (1, 0), (0, 3), (4, 5), (5, 2)] {
            let mut want = (0f64, 0f64);
            for r in 0..rows {
                for c in 0..cols {
                    let a = -2.0
                        * std::f64::consts::PI
                        * (i as f64 * r as f64 / rows as f64 + j as f64 * c as f64 / cols as f64);
                    let v = x[r * cols + c] as f64;
                    want.0 += v * a.cos();
                    want.1 += v * a.sin();
                }
            }
            let got = spec[i * (cols / 2 + 1) + j];
            assert!(
                (got.re as f64 - want.0).abs() < 1e-3 && (got.im as f64 - want.1).abs() < 1e-3,
                "({i}, {j}): {got} against {want:?}"
            );
        }
    }

    #[test]
    fn levels_add_up_to_the_field_and_only_level_0_has_its_mean() {
        let (rows, cols) = (40, 56);
        let x = field(rows, cols);
        let fft = Fft2::new(rows, cols);
        let bands = Bands::new(rows, cols, 6);
        let (mut spec, mut s) = (Vec::new(), FftScratch::default());
        fft.forward(&x, &mut spec, &mut s);
        let n = (rows * cols) as f32;
        let mut sum = vec![0f32; rows * cols];
        let (mut lv, mut out) = (Vec::new(), Vec::new());
        for k in 0..bands.levels() {
            bands.level(k, &spec, 1.0 / n, &mut lv);
            fft.inverse(&mut lv, &mut out, &mut s);
            let mean = out.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
            if k > 0 {
                assert!(mean.abs() < 1e-4, "level {k} mean {mean}");
            }
            sum.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        let worst = x
            .iter()
            .zip(&sum)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{worst}");
    }

    #[test]
    fn a_folded_level_is_the_level_sampled_at_every_stride_th_cell() {
        // Odd and even quotients, a square and an oblong grid.
        for (rows, cols, stride) in [(96, 120, 2), (96, 120, 4), (40, 40, 8), (48, 30, 3)] {
            let x = field(rows, cols);
            let fft = Fft2::new(rows, cols);
            let bands = Bands::new(rows, cols, 6);
            let (mut sx, mut s) = (Vec::new(), FftScratch::default());
            fft.forward(&x, &mut sx, &mut s);
            let n = (rows * cols) as f32;
            let small = Fft2::new(rows / stride, cols / stride);
            for k in 0..bands.levels() {
                let (mut lv, mut full, mut sampled) = (Vec::new(), Vec::new(), Vec::new());
                bands.level(k, &sx, 1.0 / n, &mut lv);
                fft.inverse(&mut lv, &mut full, &mut s);
                bands.fold(k, &sx, stride, 1.0 / n, &mut lv);
                small.inverse(&mut lv, &mut sampled, &mut s);
                let sc = cols / stride;
                let worst = sampled
                    .iter()
                    .enumerate()
                    .map(|(m, v)| (v - full[(m / sc) * stride * cols + (m % sc) * stride]).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-3, "{rows}x{cols}/{stride}, level {k}: {worst}");
            }
        }
    }

    #[test]
    fn statistics_strides_resolve_coarse_levels_and_keep_enough_cells() {
        let bands = Bands::new(512, 512, 6);
        let strides: Vec<usize> = (0..6).map(|k| bands.stride(k, 1 << 16)).collect();
        // The coarsest level is resolved on a few hundred cells; the
        // finest is sampled on at least 2^16 cells; strides divide the grid.
        assert!(strides[0] >= 16, "{strides:?}");
        assert_eq!(strides[5], 2, "{strides:?}");
        assert!(strides.windows(2).all(|s| s[0] >= s[1]), "{strides:?}");
        assert_eq!(Bands::new(45, 40, 6).stride(5, 1 << 16), 1);
        assert_eq!(smooth(97), 100);
        assert_eq!(smooth(1), 1);
    }

    #[test]
    fn each_level_peaks_at_its_own_scale() {
        // A wave of wavenumber c_k (cycles per grid) lands mostly in level
        // k, and the levels' peaks rise with k.
        let (rows, cols) = (128, 128);
        let bands = Bands::new(rows, cols, 6);
        let mut peaks = Vec::new();
        for k in 0..bands.levels() {
            let peak = (1..bands.table_len())
                .max_by(|a, b| bands.weight(k, *a).total_cmp(&bands.weight(k, *b)))
                .unwrap();
            peaks.push(peak);
        }
        assert!(peaks.windows(2).all(|p| p[0] < p[1]), "{peaks:?}");
        for t in 0..bands.table_len() {
            let s: f32 = (0..bands.levels()).map(|k| bands.weight(k, t)).sum();
            assert!((s - 1.0).abs() < 1e-5, "{t}: {s}");
        }
    }
}
