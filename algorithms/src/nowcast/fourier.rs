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
/// wavenumbers (the rest follow by Hermitian symmetry), stored column by
/// column: entry `j · rows + i` is horizontal wavenumber `j` and vertical
/// wavenumber `i` (`i − rows` above `rows / 2`). The inverse is not
/// normalised: `inverse(forward(x)) = rows · cols · x`.
pub(crate) struct Fft2 {
    rows: usize,
    cols: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
}

/// Buffers of [`Fft2`], kept from one transform to the next.
#[derive(Default)]
pub(crate) struct FftScratch {
    row_in: Vec<f32>,
    row_out: Vec<Complex32>,
    real_scratch: Vec<Complex32>,
    col_scratch: Vec<Complex32>,
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

    /// Entries of the spectrum: `(cols / 2 + 1) · rows`.
    pub(crate) fn spectrum_len(&self) -> usize {
        (self.cols / 2 + 1) * self.rows
    }

    fn prepare(&self, s: &mut FftScratch) {
        let h = self.cols / 2 + 1;
        s.row_in.resize(self.cols, 0.0);
        s.row_out.resize(h, Complex32::default());
        let real = self
            .r2c
            .get_scratch_len()
            .max(self.c2r.get_scratch_len());
        s.real_scratch.resize(real, Complex32::default());
        let col = self
            .col_fwd
            .get_inplace_scratch_len()
            .max(self.col_inv.get_inplace_scratch_len());
        s.col_scratch.resize(col, Complex32::default());
    }

    /// The spectrum of `x` (`rows · cols` finite values) into `spec`.
    pub(crate) fn forward(&self, x: &[f32], spec: &mut Vec<Complex32>, s: &mut FftScratch) {
        let (rows, cols) = (self.rows, self.cols);
        self.prepare(s);
        spec.clear();
        spec.resize(self.spectrum_len(), Complex32::default());
        for (r, row) in x.chunks_exact(cols).take(rows).enumerate() {
            s.row_in.copy_from_slice(row);
            // The lengths are the plan's own: the transform cannot fail.
            let ok = self
                .r2c
                .process_with_scratch(&mut s.row_in, &mut s.row_out, &mut s.real_scratch);
            debug_assert!(ok.is_ok());
            for (j, v) in s.row_out.iter().enumerate() {
                spec[j * rows + r] = *v;
            }
        }
        self.col_fwd.process_with_scratch(spec, &mut s.col_scratch);
    }

    /// The grid of the spectrum `spec` (overwritten) into `out`
    /// (`rows · cols`), not normalised.
    pub(crate) fn inverse(&self, spec: &mut [Complex32], out: &mut Vec<f32>, s: &mut FftScratch) {
        let (rows, cols) = (self.rows, self.cols);
        self.prepare(s);
        out.clear();
        out.resize(rows * cols, 0.0);
        self.col_inv.process_with_scratch(spec, &mut s.col_scratch);
        let h = cols / 2 + 1;
        for (r, row) in out.chunks_exact_mut(cols).enumerate() {
            for (j, v) in s.row_out.iter_mut().enumerate() {
                *v = spec[j * rows + r];
            }
            // The spectrum of a real field has real entries at horizontal
            // wavenumber 0 (and cols / 2 when even); rounding leaves a
            // trace of an imaginary part, which the real transform refuses.
            s.row_out[0].im = 0.0;
            if cols % 2 == 0 {
                s.row_out[h - 1].im = 0.0;
            }
            let ok = self
                .c2r
                .process_with_scratch(&mut s.row_out, row, &mut s.real_scratch);
            debug_assert!(ok.is_ok());
        }
    }
}

/// Table entries per unit of wavenumber in [`Bands`]' radial tables.
const PER_WAVENUMBER: f32 = 8.0;

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
    levels: usize,
    /// `weights[k][t]`: level `k`'s weight at radius `t / PER_WAVENUMBER`.
    weights: Vec<Vec<f32>>,
    /// Per spectrum entry ([`Fft2`]'s order), its index in the tables.
    index: Vec<u32>,
}

impl Bands {
    pub(crate) fn new(rows: usize, cols: usize, levels: usize) -> Self {
        let levels = levels.max(1);
        let l = rows.max(cols) as f32;
        let h = cols / 2 + 1;
        let (sy, sx) = (l / rows as f32, l / cols as f32);
        let mut index = Vec::with_capacity(h * rows);
        let mut longest = 0u32;
        for j in 0..h {
            let kx = j as f32 * sx;
            for i in 0..rows {
                let ky = if i <= rows / 2 {
                    i as f32
                } else {
                    i as f32 - rows as f32
                } * sy;
                let t = ((kx * kx + ky * ky).sqrt() * PER_WAVENUMBER).round() as u32;
                longest = longest.max(t);
                index.push(t);
            }
        }
        let n = longest as usize + 1;
        let q = (0.5 * l).max(1.5).powf(1.0 / levels as f32);
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
        Self {
            levels,
            weights,
            index,
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
            let got = spec[j * rows + i];
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
