//! Probability of rain (step 4 of the nowcast): the fraction of forecast
//! cells at or above a threshold in a square neighbourhood whose half-width
//! grows with lead.

use super::{Nowcast, NowcastConfig};
use crate::grid::Grid;
use ndarray::{Array2, ArrayView2};

/// Half-width in cells of `grid` of the probability neighbourhood at a lead:
/// `r₀ + g · lead` km, rounded (the one formula; the nowcast, the service's
/// frames, live skill and the API's spread all use it).
fn radius_cells(radius_km: f32, growth_km_per_min: f32, grid: &Grid, lead_min: u32) -> usize {
    let km = radius_km + growth_km_per_min * lead_min as f32;
    let cell_km = (grid.cell_m() / 1000.0).max(1e-3) as f32;
    (km / cell_km).round().max(0.0) as usize
}

impl NowcastConfig {
    /// Half-width of the probability neighbourhood at a lead, in cells of
    /// `grid` (what [`Nowcast::prob_radius_cells`] gives for a nowcast made
    /// with this configuration on that grid).
    pub fn prob_radius_cells(&self, grid: &Grid, lead_min: u32) -> usize {
        radius_cells(
            self.prob_radius_km,
            self.prob_radius_growth_km_per_min,
            grid,
            lead_min,
        )
    }
}

impl Nowcast {
    /// Half-width of the probability neighbourhood at a lead, in cells.
    pub fn prob_radius_cells(&self, lead_min: u32) -> usize {
        radius_cells(
            self.prob_radius_km,
            self.prob_radius_growth_km_per_min,
            &self.grid,
            lead_min,
        )
    }

    /// Probability (0..1) of rain ≥ `threshold_mm_h` per cell and lead: the
    /// fraction of forecast cells at or above the threshold among the known
    /// cells of the neighbourhood. NaN where the forecast is unknown. The
    /// leads run on the threads of the current rayon pool (each lead's field
    /// is the same on any number of threads).
    pub fn probability(&self, threshold_mm_h: f32) -> Vec<Array2<f32>> {
        use rayon::prelude::*;
        self.rate_mm_h
            .par_iter()
            .zip(&self.leads_min)
            .map(|(f, &lead)| {
                neighbourhood_probability(&f.view(), threshold_mm_h, self.prob_radius_cells(lead))
            })
            .collect()
    }
}

/// Fraction of known cells at or above `threshold` in the square window of
/// half-width `radius` around `(row, col)`.
pub(super) fn window_fraction(
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

/// Neighbourhood probability over a whole field: per cell, the fraction of
/// known cells at or above `threshold` in the square window of half-width
/// `radius`, clipped at the grid's edges; NaN where the field itself is
/// unknown. `(rows, cols)` like `f`, row 0 north.
///
/// The rows of [`NeighbourhoodRows`] collected: one implementation for the
/// nowcast service's probability frames and the live scorer. It replaced
/// integral images, at 2.7 ms against 0.9 ms per 512 × 512 field
/// (docs/PERFORMANCE.md, "Issue 17, session 17").
pub fn neighbourhood_probability(
    f: &ArrayView2<f32>,
    threshold: f32,
    radius: usize,
) -> Array2<f32> {
    let dim = f.dim();
    let flat = f.as_standard_layout();
    let mut out = Vec::with_capacity(dim.0 * dim.1);
    if let Some(mut rows) = flat
        .as_slice()
        .and_then(|s| NeighbourhoodRows::new(s, dim, threshold, radius))
    {
        while let Some(row) = rows.next_row() {
            out.extend_from_slice(row);
        }
    }
    // A standard-layout array always has a slice of `rows × cols`, so the
    // rows above are all of them.
    out.resize(dim.0 * dim.1, f32::NAN);
    Array2::from_shape_vec(dim, out).unwrap_or_else(|_| Array2::from_elem(dim, f32::NAN))
}

/// [`neighbourhood_probability`] one row at a time, top to bottom, with
/// sliding window sums: per column, the known and wet counts of the rows
/// `r − radius ..= r + radius` (updated by the row entering and the row
/// leaving the window), then per row a prefix sum over the columns. Only a
/// few rows of counts are held instead of two whole-grid integral images,
/// and only the cells within `radius` columns of a wet cell of the window's
/// rows are computed: every other known cell is `0.0`, the value `k / n`
/// with `k = 0`, without a division. The
/// counts are the same integers as the integral images', so every value is
/// the same `f32`, bit for bit (tested).
pub struct NeighbourhoodRows<'a> {
    f: &'a [f32],
    rows: usize,
    cols: usize,
    radius: usize,
    threshold: f32,
    /// Rows `top..bottom` are summed in `known` and `wet`.
    top: usize,
    bottom: usize,
    next: usize,
    known: Vec<u32>,
    wet: Vec<u32>,
    /// Per row: the span of its wet cells (`first > last` = none).
    wet_span: Vec<(usize, usize)>,
    pre_known: Vec<u32>,
    pre_wet: Vec<u32>,
    out: Vec<f32>,
}

impl<'a> NeighbourhoodRows<'a> {
    /// Over a field in standard layout, `rows × cols`; `None` when `f`'s
    /// length is not `rows × cols`.
    pub fn new(
        f: &'a [f32],
        (rows, cols): (usize, usize),
        threshold: f32,
        radius: usize,
    ) -> Option<Self> {
        if f.len() != rows.checked_mul(cols)? {
            return None;
        }
        // Found as each row enters the window.
        let wet_span = vec![(usize::MAX, 0); rows];
        Some(Self {
            f,
            rows,
            cols,
            radius,
            threshold,
            top: 0,
            bottom: 0,
            next: 0,
            known: vec![0; cols],
            wet: vec![0; cols],
            wet_span,
            pre_known: vec![0; cols + 1],
            pre_wet: vec![0; cols + 1],
            out: vec![f32::NAN; cols],
        })
    }

    fn add_row(&mut self, r: usize, sign: bool) {
        let row = &self.f[r * self.cols..(r + 1) * self.cols];
        for (k, v) in self.known.iter_mut().zip(row) {
            let x = v.is_finite() as u32;
            *k = if sign { *k + x } else { *k - x };
        }
        if sign {
            self.wet_span[r] = wet_span(row, self.threshold);
        }
        let (a, b) = self.wet_span[r];
        if a <= b {
            for (w, v) in self.wet[a..=b].iter_mut().zip(&row[a..=b]) {
                let x = (*v >= self.threshold) as u32;
                *w = if sign { *w + x } else { *w - x };
            }
        }
    }

    /// The next row of probabilities (rows in order from 0); `None` after
    /// the last row.
    pub fn next_row(&mut self) -> Option<&[f32]> {
        let r = self.next;
        if r >= self.rows {
            return None;
        }
        self.next += 1;
        let want_bottom = (r + self.radius + 1).min(self.rows);
        while self.bottom < want_bottom {
            self.add_row(self.bottom, true);
            self.bottom += 1;
        }
        let want_top = r.saturating_sub(self.radius);
        while self.top < want_top {
            self.add_row(self.top, false);
            self.top += 1;
        }
        let cols = self.cols;
        let src = &self.f[r * cols..(r + 1) * cols];
        // Cells farther than `radius` columns from every wet cell of the
        // window's rows have k = 0: 0.0 where known.
        for (o, v) in self.out.iter_mut().zip(src) {
            *o = if v.is_finite() { 0.0 } else { f32::NAN };
        }
        let (a, b) = self.wet_span[self.top..self.bottom]
            .iter()
            .fold((usize::MAX, 0), |h, s| (h.0.min(s.0), h.1.max(s.1)));
        if a > b {
            return Some(&self.out);
        }
        let (first, last) = (
            a.saturating_sub(self.radius),
            (b + self.radius).min(cols - 1),
        );
        let (p0, p1) = (
            first.saturating_sub(self.radius),
            (last + self.radius + 1).min(cols),
        );
        // Running sums in registers, not loads of the previous entries.
        let (mut kn, mut wt) = (0, 0);
        self.pre_known[p0] = 0;
        self.pre_wet[p0] = 0;
        for (((pk, pw), k), w) in self.pre_known[p0 + 1..=p1]
            .iter_mut()
            .zip(&mut self.pre_wet[p0 + 1..=p1])
            .zip(&self.known[p0..p1])
            .zip(&self.wet[p0..p1])
        {
            kn += k;
            wt += w;
            (*pk, *pw) = (kn, wt);
        }
        // The cells whose window lies inside the row, in simple loops over
        // slices (the window of cell `c` is the columns `c − radius ..=
        // c + radius`), and the few cells at the row's ends one by one.
        let radius = self.radius;
        let (inner0, inner1) = (first.max(radius), last.min(cols.saturating_sub(radius + 1)));
        let value = |v: f32, n: u32, k: u32| {
            // A known cell counts itself (n ≥ 1); NaN elsewhere. Without
            // branches, so that the loop below runs on several cells at once.
            let q = k as i32 as f32 / n.max(1) as i32 as f32;
            if v.is_finite() & (n > 0) {
                q
            } else {
                f32::NAN
            }
        };
        if inner0 <= inner1 {
            let span = inner1 + 1 - inner0;
            let (lo, hi) = (inner0 - radius, inner0 + radius + 1);
            for ((((o, v), (n1, n0)), k1), k0) in self.out[inner0..=inner1]
                .iter_mut()
                .zip(&src[inner0..=inner1])
                .zip(
                    self.pre_known[hi..hi + span]
                        .iter()
                        .zip(&self.pre_known[lo..lo + span]),
                )
                .zip(&self.pre_wet[hi..hi + span])
                .zip(&self.pre_wet[lo..lo + span])
            {
                *o = value(*v, n1 - n0, k1 - k0);
            }
        }
        for c in (first..=last).filter(|c| !(inner0..=inner1).contains(c)) {
            let (c0, c1) = (c.saturating_sub(radius), (c + radius + 1).min(cols));
            self.out[c] = value(
                src[c],
                self.pre_known[c1] - self.pre_known[c0],
                self.pre_wet[c1] - self.pre_wet[c0],
            );
        }
        Some(&self.out)
    }
}

/// A span `(first, last)` of the row's cells at or above `threshold`
/// (`(usize::MAX, 0)`: none), found by groups of 8 cells: it may reach a
/// few cells past the outermost ones.
fn wet_span(row: &[f32], threshold: f32) -> (usize, usize) {
    const G: usize = 8;
    let wet = |g: &[f32]| g.iter().fold(false, |a, v| a | (*v >= threshold));
    let groups = row.len().div_ceil(G);
    let group = |i: usize| &row[i * G..((i + 1) * G).min(row.len())];
    match (0..groups).find(|i| wet(group(*i))) {
        Some(a) => {
            let b = (a..groups).rev().find(|i| wet(group(*i))).unwrap_or(a);
            (a * G, ((b + 1) * G).min(row.len()) - 1)
        }
        None => (usize::MAX, 0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::nowcast::tests::frames;
    use crate::nowcast::{nowcast, NowcastConfig};

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
}
