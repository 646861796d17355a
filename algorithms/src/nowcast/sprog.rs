//! The S-PROG-like part of the forecast (step 3 of the nowcast): the
//! Fourier cascade of the latest field, its AR(2) evolution per level in
//! the Lagrangian frame, and the quantile matching back onto the latest
//! observation. See the parent module for the method.

use super::fourier::{Bands, Fft2, FftScratch};
use super::NowcastConfig;
use crate::extrapolate::{warp_into, Displacement};
use crate::motion::dbr_row;
#[cfg(test)]
use crate::motion::to_dbr;
use crate::raster::{axis_weights, floor_small, value_range, Img};
use ndarray::ArrayView2;
use realfft::num_complex::Complex32;

/// Levels of the Fourier cascade, as pysteps' S-PROG has by default.
const CASCADE_LEVELS: usize = 6;

/// Cells on which a level's statistics are taken at least, unless a
/// coarser sample resolves it (`Bands::stride`): 128 × 128. Only the fine
/// levels, which no coarser sample resolves, are estimated on this many;
/// their values decorrelate within a few cells, so a sample every few
/// cells is close to independent: with every sampled cell known, a lag
/// correlation's standard error is below `1/√16384 ≈ 0.008` (fewer known
/// cells, as on a composite's partial view, raise it as `1/√n`). (2¹⁶
/// until session 34: the same skill to
/// the third decimal on every shared day and three unseen ones, 3 % less
/// time on the four smaller grids; docs/PERFORMANCE.md, "Issue 16,
/// session 34".)
const STAT_SAMPLES: usize = 1 << 14;

/// The side of the transforms' grid for a side of `n` cells: the smallest
/// multiple of 8 at least `n` whose eighth has no prime factor above 5.
pub(super) fn padded(n: usize) -> usize {
    8 * super::fourier::smooth(n.div_ceil(8))
}

/// The cascade's grid for a field of `rows × cols` cells: its cells are
/// 2 × 2 blocks of the field's (`⌈rows/2⌉ × ⌈cols/2⌉` of them, the half
/// grid), and its transforms run on the half grid [`padded`]. Returns
/// `((half rows, half cols), (padded rows, padded cols))`.
///
/// Why half the resolution: the octave of wavelengths below four cells is
/// the cascade's finest level, whose lag-1 correlation is small (0.1 on
/// BOM 02, 0.5 on MeteoSwiss), so its AR(2) part is all but gone after a
/// few steps; a forecast without it scored CSI at 1 mm/h at 30 and 60 min
/// within 0.002 of the full grid's on every shared day (lower at 5 min, by
/// up to 0.012; docs/PERFORMANCE.md, "Issue 16, session 35"), and the
/// transforms, the spectra and the level statistics cost a quarter.
pub(super) fn cascade_grid(rows: usize, cols: usize) -> ((usize, usize), (usize, usize)) {
    let (hr, hc) = (rows.div_ceil(2), cols.div_ceil(2));
    ((hr, hc), (padded(hr), padded(hc)))
}

/// The 2 × 2 block means of `data` (`rows × cols`, row-major) with each
/// cell taken as `f` of it, into `out` (`⌈rows/2⌉ × ⌈cols/2⌉`); on an odd
/// side the blocks of the last row or column take `pad` for their cells
/// beyond the grid. (With `f` the identity and `pad` NaN, a block with a
/// cell of no data, or reaching beyond the grid, is NaN.)
pub(super) fn halve_into(
    data: &[f32],
    rows: usize,
    cols: usize,
    f: impl Fn(f32) -> f32,
    pad: f32,
    out: &mut Vec<f32>,
) {
    let ((hr, hc), _) = cascade_grid(rows, cols);
    out.clear();
    out.reserve(hr * hc);
    let pad_row = vec![pad; cols];
    for i in 0..hr {
        let a = &data[2 * i * cols..(2 * i + 1) * cols];
        let b = match data.get((2 * i + 1) * cols..(2 * i + 2) * cols) {
            Some(b) => b,
            None => &pad_row,
        };
        out.extend(
            a.chunks_exact(2)
                .zip(b.chunks_exact(2))
                .map(|(p, q)| 0.25 * ((f(p[0]) + f(p[1])) + (f(q[0]) + f(q[1])))),
        );
        if cols % 2 == 1 {
            let j = cols - 1;
            out.push(0.25 * ((f(a[j]) + pad) + (f(b[j]) + pad)));
        }
    }
}

/// Which cells of the half grid are 2 × 2 blocks of cells all `true` in
/// `mask` (`rows × cols`); a block reaching beyond the grid is `false`.
fn halve_mask(mask: &[bool], rows: usize, cols: usize) -> Vec<bool> {
    let ((hr, hc), _) = cascade_grid(rows, cols);
    let mut out = Vec::with_capacity(hr * hc);
    for i in 0..hr {
        let a = &mask[2 * i * cols..(2 * i + 1) * cols];
        match mask.get((2 * i + 1) * cols..(2 * i + 2) * cols) {
            Some(b) => out.extend(
                a.chunks_exact(2)
                    .zip(b.chunks_exact(2))
                    .map(|(p, q)| p[0] && p[1] && q[0] && q[1]),
            ),
            None => out.extend(std::iter::repeat_n(false, cols / 2)),
        }
        if cols % 2 == 1 {
            out.push(false);
        }
    }
    out
}

/// No data enters the cascade as the dry floor (dBR), as in pysteps'
/// S-PROG: beyond the radar's view nothing says it rains, and the forecast
/// masks those cells again at the end (they stay unknown). An infinite
/// value, which no decoder makes but a caller's raster could hold, is
/// taken as the floor too: in a Fourier transform one cell that is not
/// finite would make every cell of every level NaN.
fn floor_no_data(v: f32, floor: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        floor
    }
}

/// [`floor_no_data`] over a whole field.
#[cfg(test)]
fn fill_no_data(img: &mut Img, floor: f32) {
    img.data
        .iter_mut()
        .for_each(|v| *v = floor_no_data(*v, floor));
}

/// The statistics of one cascade level that the AR(2) model needs, from one
/// pass over the three fields (the latest `a`, the previous advected `b`,
/// the one before `c`).
struct LevelStats {
    /// Pearson correlations of `a` with `b` (lag 1) and of `a` with `c`
    /// (lag 2) over the cells where the mask is true (`None` with fewer than
    /// 16 cells or no variance).
    corrs: (Option<f32>, Option<f32>),
    /// Mean and standard deviation of `a` over all its cells ([`mean_std`]).
    a: (f32, f32),
    /// The same for `b`.
    b: (f32, f32),
}

/// [`LevelStats`] in two passes: the masked correlation sums over `a`, `b`,
/// `c`, then the plain sums of `a` and `b` together (one pass instead of one
/// per field, four independent running sums instead of two). Every sum is
/// in f64 and in cell order, so each one has the same bits as when it is
/// computed alone ([`masked_corrs`], [`mean_std`]).
fn level_stats(a: &Img, b: &Img, c: &Img, mask: &[bool]) -> LevelStats {
    let (mut n, mut sa, mut saa) = (0f64, 0f64, 0f64);
    let (mut sb, mut sbb, mut sab) = (0f64, 0f64, 0f64);
    let (mut sc, mut scc, mut sac) = (0f64, 0f64, 0f64);
    for (((x, y), z), m) in a.data.iter().zip(&b.data).zip(&c.data).zip(mask) {
        if *m {
            let (x, y, z) = (*x as f64, *y as f64, *z as f64);
            n += 1.0;
            sa += x;
            saa += x * x;
            sb += y;
            sbb += y * y;
            sab += x * y;
            sc += z;
            scc += z * z;
            sac += x * z;
        }
    }
    // The plain sums of `a` and `b` in a second loop: four more running
    // sums in the loop above would not fit in the registers.
    let (mut ta, mut taa, mut tb, mut tbb) = (0f64, 0f64, 0f64, 0f64);
    for (x, y) in a.data.iter().zip(&b.data) {
        let (x, y) = (*x as f64, *y as f64);
        ta += x;
        taa += x * x;
        tb += y;
        tbb += y * y;
    }
    let corrs = if n < 16.0 {
        (None, None)
    } else {
        let va = saa - sa * sa / n;
        let corr = |s: f64, ss: f64, sx: f64| {
            let v = ss - s * s / n;
            if va <= 1e-9 || v <= 1e-9 {
                return None;
            }
            Some(((sx - sa * s / n) / (va * v).sqrt()) as f32)
        };
        (corr(sb, sbb, sab), corr(sc, scc, sac))
    };
    let cells = a.data.len().max(1) as f64;
    LevelStats {
        corrs,
        a: finish_mean_std(ta, taa, cells),
        b: finish_mean_std(tb, tbb, cells),
    }
}

/// Pearson correlations of `a` with `b` and of `a` with `c` over the cells
/// where `mask` is true (`None` with fewer than 16 cells or no variance).
#[cfg(test)]
fn masked_corrs(a: &Img, b: &Img, c: &Img, mask: &[bool]) -> (Option<f32>, Option<f32>) {
    level_stats(a, b, c, mask).corrs
}

/// Yule–Walker parameters `(φ1, φ2)` of an AR(2) process with lag-1 and
/// lag-2 correlations `(r1, r2)`. No positive lag-1 correlation means no
/// memory; `r1` is capped at 0.999. `r2` is raised to the bound of pysteps'
/// S-PROG (`adjust_lag2_corrcoef2`), under which the process is stationary
/// and its characteristic roots are real (`φ1² + 4·φ2 ≥ 0`): each level then
/// relaxes towards its mean without overshooting, instead of extrapolating
/// its last Lagrangian change about linearly, which a coarse level with
/// correlations near 1 did for a whole hour (docs/ARCHITECTURE.md, "The
/// AR(2) and the no data of the cascade are S-PROG's").
pub(crate) fn ar2_params(r1: f32, r2: f32) -> (f32, f32) {
    if r1.is_nan() || r1 <= 0.0 {
        return (0.0, 0.0);
    }
    let r1 = (r1 as f64).min(0.999);
    let r1s = r1 * r1;
    let real_roots = (3.0 * r1s - 2.0 + 2.0 * (1.0 - r1s).powf(1.5)) / r1s;
    // NaN (no lag-2 estimate) takes the bound; `f64::max` ignores NaN.
    let r2 = (r2 as f64)
        .max(real_roots)
        .max(2.0 * r1s - 1.0 + 1e-6)
        .min(1.0 - 1e-6);
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
    /// `(table[i], table[i + 1] − table[i])` for `i < QUANTILES − 1`, and
    /// `(table[QUANTILES − 1], 0)`: a power-of-two size, so that a masked
    /// index needs no bounds check.
    steps: Box<[[f32; 2]; QUANTILES]>,
    /// Rates below this are dry.
    threshold: f32,
}

impl TargetDistribution {
    /// From the latest field: `dbr` in dBR, where `floor` marks dry cells and
    /// NaN no data, and `rates` the same cells in mm/h, in the same order.
    /// Wet values are binned finely by dBR (16 384 bins over their range, a
    /// few thousandths of a dB), and a quantile within a bin is interpolated
    /// between the smallest and the largest rate in that bin.
    ///
    /// Radar products are quantised (BOM's rates are multiples of 0.5 mm/h,
    /// MeteoSwiss' come in log-spaced classes, ODIM's in dBZ steps), so a
    /// bin often holds one rate many times over. Interpolating between the
    /// bin's *edges* spread such a class across the bin, and about half of
    /// the cells at exactly 1 mm/h came out at 0.999: below the very
    /// thresholds that users and the scores apply. Between the bin's own
    /// extreme values, every class keeps its exact rate.
    fn new(dbr: &[f32], rates: &[f32], floor: f32, threshold: f32) -> Self {
        const BINS: usize = 16_384;
        // The known count and the wet range, LANES cells at a time without
        // branches (minima and maxima do not depend on the order).
        let (mut n, mut lo, mut hi) = (0usize, f32::INFINITY, f32::NEG_INFINITY);
        {
            let (mut nl, mut lol, mut hil) = (
                [0usize; LANES],
                [f32::INFINITY; LANES],
                [f32::NEG_INFINITY; LANES],
            );
            let mut chunks = dbr.chunks_exact(LANES);
            for ch in &mut chunks {
                for k in 0..LANES {
                    let v = ch[k];
                    nl[k] += v.is_finite() as usize;
                    // `v > floor` is false for NaN.
                    let w = v > floor;
                    lol[k] = if w & (v < lol[k]) { v } else { lol[k] };
                    hil[k] = if w & (v > hil[k]) { v } else { hil[k] };
                }
            }
            n += nl.iter().sum::<usize>();
            lo = lol.iter().fold(lo, |a, b| a.min(*b));
            hi = hil.iter().fold(hi, |a, b| a.max(*b));
            for &v in chunks.remainder() {
                if v.is_finite() {
                    n += 1;
                    if v > floor {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
            }
        }
        let mut table = vec![0f32; QUANTILES];
        if n == 0 || lo > hi {
            return Self::from_table(table, threshold);
        }
        let width = ((hi - lo) / BINS as f32).max(1e-6);
        // Per bin: the count and the smallest and largest rate, side by
        // side (one cache line per cell instead of two).
        let mut bins = vec![(0u32, f32::INFINITY, f32::NEG_INFINITY); BINS];
        let mut wet = 0usize;
        // Groups of cells without a wet one (most of a radar image) are
        // passed over after one branch-free test.
        for (d, r) in dbr.chunks(4 * LANES).zip(rates.chunks(4 * LANES)) {
            if !d.iter().fold(false, |a, v| a | (*v > floor)) {
                continue;
            }
            for (&v, &r) in d.iter().zip(r) {
                if v.is_finite() && v > floor {
                    let b = &mut bins[(((v - lo) / width) as usize).min(BINS - 1)];
                    *b = (b.0 + 1, b.1.min(r), b.2.max(r));
                    wet += 1;
                }
            }
        }
        let dry = (n - wet) as f64;
        let (mut bin, mut below) = (0usize, 0f64);
        for (i, t) in table.iter_mut().enumerate() {
            let p = i as f64 / (QUANTILES - 1) as f64 * n as f64 - dry;
            if p <= 0.0 {
                continue;
            }
            while bin + 1 < BINS && (below + bins[bin].0 as f64) < p {
                below += bins[bin].0 as f64;
                bin += 1;
            }
            let (count, r0, r1) = bins[bin];
            *t = if count > 0 {
                let within = ((p - below) / count as f64).clamp(0.0, 1.0);
                (r0 as f64 + within * (r1 - r0) as f64) as f32
            } else {
                // Only past the last wet value: the top of the range.
                10f64.powf(hi as f64 / 10.0) as f32
            };
        }
        Self::from_table(table, threshold)
    }

    fn from_table(table: Vec<f32>, threshold: f32) -> Self {
        let mut steps = Box::new([[0f32; 2]; QUANTILES]);
        for (s, w) in steps.iter_mut().zip(table.windows(2)) {
            *s = [w[0], w[1] - w[0]];
        }
        steps[QUANTILES - 1] = [table[QUANTILES - 1], 0.0];
        Self {
            table,
            steps,
            threshold,
        }
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

/// Bins of the rank histogram of [`quantile_match`].
const RANK_BINS: usize = 4096;

/// Maps `values` (any monotone scale, NaN skipped) onto the target
/// distribution by rank, in place (see [`quantile_match_in`]).
#[cfg(test)]
fn quantile_match(values: &mut [f32], target: &TargetDistribution) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in values.iter() {
        // NaN fails both comparisons.
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    quantile_match_in(
        values,
        lo,
        hi,
        target,
        &mut Vec::new(),
        &mut Vec::new(),
        None,
    );
}

/// Maps `values`, whose finite values lie in `[lo, hi]`, onto the target
/// distribution by rank, in place; NaN stays NaN.
///
/// Ranks come from a [`RANK_BINS`]-bin histogram over `[lo, hi]`, with the
/// rank interpolated linearly within a bin. The cumulative counts are turned
/// once into positions in the target's quantile table, so the per-cell work
/// is one branch-free pass: bin index, interpolated table position, the
/// tabulated quantile there, the dry threshold. (Interpolating the *rates*
/// between bin edges instead would smear the jump from dry to wet across a
/// bin and change the wet area.) `counts` and `edges` are scratch buffers.
/// With `spans = Some((spans, cols))`, `values` are rows of `cols` cells
/// and only the columns `spans[r].0 ..= spans[r].1` of row `r` can be
/// finite: the passes skip the rest (which stays NaN).
#[cfg(test)]
fn quantile_match_in(
    values: &mut [f32],
    lo: f32,
    hi: f32,
    target: &TargetDistribution,
    counts: &mut Vec<u32>,
    edges: &mut Vec<[f32; 2]>,
    spans: Option<(&[(usize, usize)], usize)>,
) {
    let ranges = span_ranges(spans, values.len());
    let map = quantile_map(values, &ranges, lo, hi, target, counts, edges);
    map.apply_to(values, &ranges);
}

/// The stretches of `n` values that can hold a finite value (see
/// [`quantile_match_in`]'s `spans`).
fn span_ranges(spans: Option<(&[(usize, usize)], usize)>, n: usize) -> Vec<std::ops::Range<usize>> {
    match spans {
        Some((spans, cols)) => spans
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| a <= b)
            .map(|(r, (a, b))| {
                let start = (r * cols + a).min(n);
                start..(r * cols + b + 1).clamp(start, n)
            })
            .collect(),
        None => std::iter::once(0..n).collect(),
    }
}

/// The quantile map of [`quantile_match_in`]: from values to the target
/// distribution by their rank among `values[ranges]`.
enum QuantileMap<'a> {
    /// No finite value: nothing changes.
    Nothing,
    /// Every finite value is the same: it becomes the target's median.
    Constant(f32),
    Rank(RankMap<'a>),
}

impl QuantileMap<'_> {
    /// Sets the values in `ranges` of `values` that map to 0 (dry) for
    /// certain ([`dry_below`]) to the lowest value: they still map to 0,
    /// and a dry area is one value, which the warp copies in bulk.
    fn settle_dry(&self, values: &mut [f32], ranges: &[std::ops::Range<usize>]) {
        if let QuantileMap::Rank(map) = self {
            for range in ranges {
                values[range.clone()].iter_mut().for_each(|v| {
                    // The scaled value as `RankMap::apply` takes it (NaN
                    // fails the test).
                    let dry = (*v - map.lo) * map.scale < map.dry_below;
                    *v = if dry { map.lo } else { *v };
                });
            }
        }
    }

    /// Maps the values in `ranges` of `values` (NaN stays NaN).
    fn apply_to(&self, values: &mut [f32], ranges: &[std::ops::Range<usize>]) {
        match self {
            QuantileMap::Nothing => {}
            QuantileMap::Constant(out) => values
                .iter_mut()
                .filter(|v| v.is_finite())
                .for_each(|v| *v = *out),
            QuantileMap::Rank(map) => {
                for range in ranges {
                    let mut chunks = values[range.clone()].chunks_exact_mut(LANES);
                    for ch in &mut chunks {
                        if let Ok(vs) = <&mut [f32; LANES]>::try_from(ch) {
                            map.apply(vs);
                        }
                    }
                    let rest = chunks.into_remainder();
                    if !rest.is_empty() {
                        let mut vs = [f32::NAN; LANES];
                        vs[..rest.len()].copy_from_slice(rest);
                        map.apply(&mut vs);
                        rest.copy_from_slice(&vs[..rest.len()]);
                    }
                }
            }
        }
    }
}

/// The rank histogram of `values[ranges]` (finite values in `[lo, hi]`)
/// and the map it gives (see [`quantile_match_in`]).
fn quantile_map<'a>(
    values: &[f32],
    ranges: &[std::ops::Range<usize>],
    lo: f32,
    hi: f32,
    target: &'a TargetDistribution,
    counts: &mut Vec<u32>,
    edges: &'a mut Vec<[f32; 2]>,
) -> QuantileMap<'a> {
    if lo
        .partial_cmp(&hi)
        .is_none_or(|o| o == std::cmp::Ordering::Greater)
    {
        return QuantileMap::Nothing; // no finite value
    }
    if hi <= lo {
        return QuantileMap::Constant(target.quantile(0.5));
    }
    let scale = (RANK_BINS as f32 - 1e-3) / (hi - lo);
    let last_bin = (RANK_BINS - 1) as f32;
    // Histogram: bins of LANES cells at a time (a loop that vectorises),
    // counted into SUBS interleaved sub-histograms so that neighbouring
    // cells, which often share a bin, do not wait on each other's
    // increment; no-data cells add 0. Integer counts: the same totals.
    counts.clear();
    counts.resize(SUBS * RANK_BINS, 0);
    for range in ranges {
        let mut chunks = values[range.clone()].chunks_exact(LANES);
        for ch in &mut chunks {
            let mut b = [0usize; LANES];
            let mut w = [0u32; LANES];
            for k in 0..LANES {
                // Clamped in f32 first (NaN and +∞ clamp to the last bin;
                // values are ≥ `lo`, so the floor is never negative).
                b[k] = floor_small(((ch[k] - lo) * scale).min(last_bin)) as usize & (RANK_BINS - 1);
                w[k] = ch[k].is_finite() as u32;
            }
            for k in 0..LANES {
                counts[(k % SUBS) * RANK_BINS + b[k]] += w[k];
            }
        }
        for &v in chunks.remainder() {
            let b = floor_small(((v - lo) * scale).min(last_bin)) as usize & (RANK_BINS - 1);
            counts[b] += v.is_finite() as u32;
        }
    }
    let (total, subs) = counts.split_at_mut(RANK_BINS);
    for sub in subs.chunks_exact(RANK_BINS) {
        total.iter_mut().zip(sub).for_each(|(t, s)| *t += s);
    }
    let n: u32 = total.iter().sum();
    // Position in the quantile table of every bin edge (edge b has
    // Σ counts[..b] values below it), stored per bin as (left edge, right
    // edge − left edge): one 8-byte load per cell instead of two.
    let to_pos = (QUANTILES - 1) as f32 / n as f32;
    edges.clear();
    let (mut below, mut left) = (0u32, 0f32);
    for c in total.iter() {
        below += c;
        let right = below as f32 * to_pos;
        edges.push([left, right - left]);
        left = right;
    }
    let Ok(edges) = <&[[f32; 2]; RANK_BINS]>::try_from(&edges[..]) else {
        return QuantileMap::Nothing; // unreachable: one edge pair per bin
    };
    QuantileMap::Rank(RankMap {
        lo,
        scale,
        edges,
        steps: &target.steps,
        threshold: target.threshold,
        dry_below: dry_below(edges, &target.steps, target.threshold),
    })
}

/// The scaled value `x` below which [`RankMap::apply`] gives 0 (dry) for
/// certain, from the tables alone; 0 when no bin is known to be dry.
///
/// Why the bound holds, in f32 as `apply` computes: in bin `b` (of edges
/// `[e, de]`), `x − b` is exact and lies in `[0, 1)`, so the position
/// `e + (x − b)·de` lies between `e` and `e + de` (rounding is
/// monotone). At a table index `i` (of steps `[t, dt]`) that position
/// gives `t + (pos − i)·dt`, between `t` and `t + dt`, `pos − i` again
/// exact and in `[0, 1)` while `pos` stays below the last table index.
/// So if `t` and `t + dt` are below the threshold at every index below
/// `i_dry`, and `e` and `e + de` below `i_dry` at every bin below
/// `b_dry`, every `x` in `[0, b_dry)` maps below the threshold. (Both
/// ends are checked, so the bound does not rely on the tables rising.)
fn dry_below(edges: &[[f32; 2]; RANK_BINS], steps: &[[f32; 2]; QUANTILES], threshold: f32) -> f32 {
    let i_dry = steps[..QUANTILES - 2]
        .iter()
        .take_while(|[t, dt]| (*t < threshold) & (t + dt < threshold))
        .count();
    if i_dry == 0 {
        return 0.0;
    }
    // Positions below `i_dry` (the count: indices 0 ..= i_dry − 1) stay
    // at dry indices.
    let cut = i_dry as f32;
    let b_dry = edges[..RANK_BINS - 1]
        .iter()
        .take_while(|[e, de]| (*e < cut) & (e + de < cut))
        .count();
    b_dry as f32
}

/// The per-cell map of [`quantile_match_in`] once the histogram is known.
struct RankMap<'a> {
    lo: f32,
    scale: f32,
    edges: &'a [[f32; 2]; RANK_BINS],
    steps: &'a [[f32; 2]; QUANTILES],
    threshold: f32,
    /// Scaled values in `[0, dry_below)` map to 0 ([`dry_below`]).
    dry_below: f32,
}

impl RankMap<'_> {
    /// Maps LANES cells in phases: bins and positions (vectorised
    /// arithmetic), the two table loads, the result. Per cell: bin index,
    /// position in the quantile table interpolated between the bin's edges,
    /// the tabulated quantile interpolated there, the dry threshold; the
    /// same f32 operations in the same order as cell by cell, so the same
    /// bits. Indices are clamped in f32 first (NaN clamps to the last bin
    /// and stays NaN through the interpolations) and masked to the
    /// (power-of-two) table sizes, which leaves them unchanged and lets
    /// the compiler drop the bounds checks.
    #[inline(always)]
    fn apply(&self, vs: &mut [f32; LANES]) {
        let (last_bin, last_pos) = ((RANK_BINS - 1) as f32, (QUANTILES - 2) as f32);
        let (mut x, mut bin) = ([0f32; LANES], [0i32; LANES]);
        let (mut dry, mut unknown) = (true, true);
        for k in 0..LANES {
            // Values interpolated between values at least `lo` can round
            // to just below it: the lowest bin (NaN fails the test and
            // stays NaN).
            let s = (vs[k] - self.lo) * self.scale;
            x[k] = if s < 0.0 { 0.0 } else { s };
            bin[k] = floor_small(x[k].min(last_bin)) & (RANK_BINS as i32 - 1);
            // NaN fails both comparisons.
            dry &= (x[k] >= 0.0) & (x[k] < self.dry_below);
            unknown &= x[k].is_nan();
        }
        if dry {
            // Every lane maps below the threshold: 0, without the lookups.
            *vs = [0.0; LANES];
            return;
        }
        if unknown {
            // Every lane is no data, which stays NaN (as the lookups
            // would leave it: NaN through every interpolation).
            return;
        }
        let mut pos = [0f32; LANES];
        for k in 0..LANES {
            let [e, de] = self.edges[bin[k] as usize];
            pos[k] = e + (x[k] - bin[k] as f32) * de;
        }
        let mut i = [0i32; LANES];
        for k in 0..LANES {
            i[k] = floor_small(pos[k].min(last_pos)) & (QUANTILES as i32 - 1);
        }
        for k in 0..LANES {
            let [t, dt] = self.steps[i[k] as usize];
            let r = t + (pos[k] - i[k] as f32) * dt;
            vs[k] = if r < self.threshold { 0.0 } else { r };
        }
    }
}

/// Cells per step of [`quantile_match_in`]'s vectorised loops.
const LANES: usize = 8;

/// Interleaved sub-histograms of [`quantile_match_in`].
const SUBS: usize = 4;

// Masked table indices (see `quantile_match_in`) need power-of-two sizes.
const _: () = assert!(RANK_BINS.is_power_of_two() && QUANTILES.is_power_of_two());

/// Mean and standard deviation of a raster over all its cells (sums in f64,
/// in cell order).
#[cfg(test)]
fn mean_std(img: &Img) -> (f32, f32) {
    let (mut s, mut ss) = (0f64, 0f64);
    for &v in &img.data {
        s += v as f64;
        ss += v as f64 * v as f64;
    }
    finish_mean_std(s, ss, img.data.len().max(1) as f64)
}

/// Mean and standard deviation from the sum and the sum of squares of `n`
/// values.
fn finish_mean_std(s: f64, ss: f64, n: f64) -> (f32, f32) {
    let m = s / n;
    (m as f32, ((ss / n - m * m).max(0.0)).sqrt() as f32)
}

/// `(α, β)` such that the AR(2) process `z(n+1) = φ1·z(n) + φ2·z(n−1)`
/// started from `z(0)` and `z(−1)` has `z(n) = α·z(0) + β·z(−1)`. By
/// linearity this is the same recursion on the scalars (from `(1, 0)` and
/// `(0, 1)`), so a lead costs no field updates at all. A fractional lead
/// interpolates linearly between its two neighbouring steps.
pub(crate) fn ar2_coefficients(phi: (f32, f32), lead_steps: f32) -> (f32, f32) {
    let (p1, p2) = phi;
    let lead = lead_steps.max(0.0);
    let whole = lead.floor() as u32;
    // (z(n), z(n−1)) as coefficient pairs.
    let (mut cur, mut prev) = ((1f32, 0f32), (0f32, 1f32));
    for _ in 0..whole {
        let next = (p1 * cur.0 + p2 * prev.0, p1 * cur.1 + p2 * prev.1);
        prev = cur;
        cur = next;
    }
    let frac = lead - whole as f32;
    if frac > 1e-6 {
        let next = (p1 * cur.0 + p2 * prev.0, p1 * cur.1 + p2 * prev.1);
        (
            cur.0 + frac * (next.0 - cur.0),
            cur.1 + frac * (next.1 - cur.1),
        )
    } else {
        cur
    }
}

/// One level of the cascade in the AR(2) model: its parameters, and the
/// gain that rescales the previous field's level to the latest field's
/// standard deviation (S-PROG standardises each level of each field and
/// recomposes with the latest field's statistics).
struct Level {
    phi: (f32, f32),
    gain: f32,
}

/// Everything the S-PROG-like forecast needs, computed once per nowcast.
///
/// As in pysteps' S-PROG (Seed 2003): every level of the cascade (Gaussian
/// band passes in the Fourier domain, [`Bands`]) is standardised and
/// evolves as an AR(2) process in the Lagrangian frame,
/// `z(n+1) = φ1·z(n) + φ2·z(n−1)`, starting from the latest field and the
/// previous one advected onto it. Levels with short memory (small scales)
/// decay within a few steps; large, persistent levels keep their structure
/// and also continue their recent Lagrangian trend, which carries growth
/// and decay. The recomposed field is advected and quantile-matched to the
/// latest observation.
///
/// The recomposition is linear in the two fields, and the filters depend
/// on the wavenumber alone, so a lead is one filter applied to each of the
/// two spectra and one inverse FFT: `x(n) = mean + F⁻¹(Hα(n)·X0 + Hβ(n)·X1)`
/// with `Hα(n) = Σ_k α_k(n)·W_k` and `Hβ(n) = Σ_k β_k(n)·g_k·W_k`, the
/// AR(2) coefficients of [`ar2_coefficients`] and the gains `g_k`.
pub(super) struct Sprog {
    rows: usize,
    cols: usize,
    /// The half grid ([`cascade_grid`]): the cascade's cells.
    half: (usize, usize),
    /// The grid of the transforms ([`cascade_grid`]).
    padded: (usize, usize),
    /// Per row and per column of the field, the two half-grid rows
    /// (columns) between whose centres it lies and its weight toward the
    /// second (`raster::axis_weights`): the bilinear interpolation of a
    /// recomposed lead back to the field's cells.
    up_rows: Vec<(usize, usize, f32)>,
    up_cols: Vec<(usize, usize, f32)>,
    fft: Fft2,
    bands: Bands,
    /// The spectra of the latest field and of the previous one advected
    /// onto it (dBR, no data as the floor, on the half grid), without
    /// their means.
    x0: Vec<Complex32>,
    x1: Vec<Complex32>,
    levels: Vec<Level>,
    /// Mean of the latest field (dBR, no data as the floor).
    mean: f32,
    /// The latest field's no-data cells (`None` when every cell is known):
    /// a lead is no data there.
    nodata: Option<Vec<bool>>,
    /// Per row of the grid, the columns `first ..= last` between the
    /// latest field's first and last known cell (`first > last`: none);
    /// `None` when every cell is known. Outside them a lead is no data:
    /// its quantile matching skips those cells.
    spans: Option<Vec<(usize, usize)>>,
    /// Lag-1 and lag-2 correlation per level, finest first (diagnostics).
    pub(super) rho: Vec<(f32, f32)>,
    target: TargetDistribution,
}

impl Sprog {
    pub(super) fn new(
        latest: &ArrayView2<f32>,
        prev1: &ArrayView2<f32>,
        prev2: &ArrayView2<f32>,
        d1: &Displacement,
        d2: &Displacement,
        cfg: &NowcastConfig,
    ) -> Self {
        let (thr, floor) = (cfg.rain_threshold_mm_h, cfg.motion.floor_dbr);
        let (rows, cols) = latest.dim();
        // dBR in one pass from the view into `out` (reused).
        // (`dbr_row` is `to_dbr` in a loop the compiler vectorises.)
        let dbr_into = |a: &ArrayView2<f32>, out: &mut Vec<f32>| {
            out.clear();
            out.resize(rows * cols, 0.0);
            match a.as_slice() {
                Some(s) => dbr_row(s, out, thr, floor),
                None => {
                    let mut row = vec![0f32; cols];
                    for (src, dst) in a.rows().into_iter().zip(out.chunks_exact_mut(cols)) {
                        row.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
                        dbr_row(&row, dst, thr, floor);
                    }
                }
            }
        };
        // The latest field in dBR and the previous two advected onto its
        // time (Lagrangian frame): independent, so on the threads of the
        // current rayon pool (one thread runs them in turn; the same bits).
        // Advected on the half grid ([`cascade_grid`]): the block means
        // (a block with a cell of no data is no data, and so is a block
        // reaching beyond the grid) warped by the displacement halved.
        let ((hr, hc), (pr, pc)) = cascade_grid(rows, cols);
        let advected = |prev: &ArrayView2<f32>, d: &Displacement| {
            let mut tmp = Vec::new();
            dbr_into(prev, &mut tmp);
            let mut half = Vec::new();
            halve_into(&tmp, rows, cols, |v| v, f32::NAN, &mut half);
            drop(tmp);
            let src = Img {
                rows: hr,
                cols: hc,
                data: half,
            };
            let mut data = Vec::new();
            warp_into(&src, &d.halved(), None, &mut data);
            Img {
                rows: hr,
                cols: hc,
                data,
            }
        };
        let latest_dbr = || {
            let mut x0 = Img {
                rows,
                cols,
                data: Vec::new(),
            };
            dbr_into(latest, &mut x0.data);
            // Allocated before the advected fields (on one thread): made
            // after them, it left the heap in pieces that cost OPERA's
            // one-thread nowcast 26 MB more peak memory.
            let nodata: Vec<bool> = x0.data.iter().map(|v| v.is_nan()).collect();
            let rates = latest.as_standard_layout();
            let target = TargetDistribution::new(
                &x0.data,
                // A standard-layout array is always one slice.
                rates.as_slice().unwrap_or(&[]),
                floor,
                thr,
            );
            (x0, nodata, target)
        };
        let ((x0, nodata, target), (x1, x2)) = rayon::join(latest_dbr, || {
            rayon::join(|| advected(prev1, d1), || advected(prev2, d2))
        });
        let any_nodata = nodata.iter().any(|x| *x);
        let spans = any_nodata.then(|| {
            nodata
                .chunks_exact(cols.max(1))
                .map(
                    |row| match (row.iter().position(|n| !n), row.iter().rposition(|n| !n)) {
                        (Some(a), Some(b)) => (a, b),
                        _ => (usize::MAX, 0),
                    },
                )
                .collect()
        });
        // Correlations over the cells of the half grid known in all three
        // fields: the latest field's blocks of four known cells.
        let known: Vec<bool> = nodata.iter().map(|n| !n).collect();
        let mask: Vec<bool> = halve_mask(&known, rows, cols)
            .into_iter()
            .zip(&x1.data)
            .zip(&x2.data)
            .map(|((a, b), c)| a && b.is_finite() && c.is_finite())
            .collect();
        drop(known);
        // The transforms run on the half grid padded with the floor to
        // sides that are multiples of 8 with small factors (fast
        // transforms). The levels are the field's bands (the octaves
        // counted from the field's resolution), the finest of them mostly
        // beyond the half grid's reach.
        let fft = Fft2::new(pr, pc);
        let bands = Bands::new_scaled(pr, pc, CASCADE_LEVELS, 2.0);
        // No data becomes the floor, and the padding is the floor, as each
        // row enters the transform.
        let spectrum = |half: &[f32]| {
            let mut spec = Vec::new();
            fft.forward_padded(
                half,
                hc,
                floor,
                |v| floor_no_data(v, floor),
                &mut spec,
                &mut FftScratch::default(),
            );
            spec
        };
        let latest_half = |x0: Img| {
            let mut half = Vec::new();
            halve_into(
                &x0.data,
                rows,
                cols,
                |v| floor_no_data(v, floor),
                floor,
                &mut half,
            );
            drop(x0);
            spectrum(&half)
        };
        // The three spectra are independent (on one thread, one after the
        // other).
        let (mut s0, (mut s1, s2)) = rayon::join(
            || latest_half(x0),
            || rayon::join(|| spectrum(&x1.data), || spectrum(&x2.data)),
        );
        drop((x1, x2));
        let n = (pr * pc) as f32;
        let mut levels = Vec::with_capacity(bands.levels());
        let mut rho = Vec::with_capacity(bands.levels());
        // Per stride (several levels share one): the transform of the
        // sampled grid (`None`: the full grid's) and the mask on it, made
        // once.
        let mut per_stride: Vec<(usize, Option<Fft2>, Vec<bool>)> = Vec::new();
        for k in 0..bands.levels() {
            // Each level's statistics on every `stride`-th cell of the
            // grid (Bands::stride): the cells of the unpadded grid there.
            let stride = bands.stride(k, STAT_SAMPLES);
            let at = match per_stride.iter().position(|(s, _, _)| *s == stride) {
                Some(at) => at,
                None => {
                    let small = (stride > 1).then(|| Fft2::new(pr / stride, pc / stride));
                    let sampled: Vec<bool> = mask
                        .chunks(hc.max(1))
                        .step_by(stride)
                        .flat_map(|row| row.iter().step_by(stride).copied())
                        .collect();
                    per_stride.push((stride, small, sampled));
                    per_stride.len() - 1
                }
            };
            let (_, small, mask_k) = &per_stride[at];
            let fft_k = small.as_ref().unwrap_or(&fft);
            let part = (hr.div_ceil(stride), hc.div_ceil(stride));
            let sampled = |spec: &[Complex32]| {
                let (mut lv, mut data) = (Vec::new(), Vec::new());
                bands.fold(k, spec, stride, 1.0 / n, &mut lv);
                fft_k.inverse_part(&mut lv, part, &mut data, &mut FftScratch::default());
                Img {
                    rows: part.0,
                    cols: part.1,
                    data,
                }
            };
            let (a, (b, c)) = rayon::join(
                || sampled(&s0),
                || rayon::join(|| sampled(&s1), || sampled(&s2)),
            );
            let stats = level_stats(&a, &b, &c, mask_k);
            let (r1, r2) = stats.corrs;
            let (r1, r2) = (r1.unwrap_or(0.0), r2.unwrap_or(0.0));
            rho.push((r1, r2));
            let ((_, sd0), (_, sd1)) = (stats.a, stats.b);
            levels.push(Level {
                phi: ar2_params(r1, r2),
                gain: if sd1 > 1e-6 { sd0 / sd1 } else { 0.0 },
            });
        }
        drop(s2);
        // Finest first, as the diagnostics have always been.
        rho.reverse();
        // The mean is level 0's alone, and the recomposition adds it back.
        let mean = s0.first().map_or(0.0, |v| v.re / n);
        for s in [&mut s0, &mut s1] {
            if let Some(dc) = s.first_mut() {
                *dc = Complex32::default();
            }
        }
        Self {
            rows,
            cols,
            half: (hr, hc),
            padded: (pr, pc),
            up_rows: axis_weights(hr, rows, 0.5),
            up_cols: axis_weights(hc, cols, 0.5),
            fft,
            bands,
            x0: s0,
            x1: s1,
            levels,
            mean,
            nodata: any_nodata.then_some(nodata),
            spans,
            rho,
            target,
        }
    }

    /// Recomposes the field at `lead_steps` into `scratch.field` (dBR, NaN
    /// where the latest field has no data): the lead's filters as radial
    /// tables, applied to the two spectra, one inverse FFT of the half
    /// grid, the mean, and bilinear interpolation between the half grid's
    /// cell centres back to the field's cells.
    /// Returns the range `(lo, hi)` of the finite values (NaN-free `lo > hi`
    /// when there are none).
    fn recompose(&self, lead_steps: f32, scratch: &mut LeadScratch) -> (f32, f32) {
        let n = (self.padded.0 * self.padded.1) as f32;
        let coef: Vec<(f32, f32)> = self
            .levels
            .iter()
            .map(|l| {
                let (a, b) = ar2_coefficients(l.phi, lead_steps);
                (a / n, b * l.gain / n)
            })
            .collect();
        let LeadScratch {
            field,
            spec,
            table,
            fft,
            half,
            row: tmp,
            ..
        } = scratch;
        table.clear();
        table.extend((0..self.bands.table_len()).map(|t| {
            let mut h = [0f32; 2];
            for (k, (a, b)) in coef.iter().enumerate() {
                let w = self.bands.weight(k, t);
                h[0] += a * w;
                h[1] += b * w;
            }
            h
        }));
        spec.clear();
        spec.extend(
            self.x0
                .iter()
                .zip(&self.x1)
                .zip(self.bands.index())
                .map(|((a, b), t)| {
                    let h = table[*t as usize];
                    a * h[0] + b * h[1]
                }),
        );
        let (mean, cols) = (self.mean, self.cols);
        let (hr, hc) = self.half;
        self.fft
            .inverse_part_with(spec, (hr, hc), half, fft, |_, row| {
                row.iter_mut().for_each(|v| *v += mean)
            });
        // Each row of the field: between two rows of the half grid, then
        // between two of its columns; no data masked again, and its range
        // (NaN skipped) folded into the field's.
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        field.data.clear();
        field.data.resize(self.rows * cols, 0.0);
        tmp.clear();
        tmp.resize(hc, 0.0);
        for (r, (&(i0, i1, w), out)) in self
            .up_rows
            .iter()
            .zip(field.data.chunks_exact_mut(cols.max(1)))
            .enumerate()
        {
            let (a, b) = (&half[i0 * hc..(i0 + 1) * hc], &half[i1 * hc..(i1 + 1) * hc]);
            for ((t, a), b) in tmp.iter_mut().zip(a).zip(b) {
                *t = a + w * (b - a);
            }
            // Columns 2m and 2m + 1 lie a quarter of a half cell either
            // side of half column m: weights 0.75 and 0.25 (`up_cols`'
            // own, exactly), a loop over pairs that vectorises; the
            // clamped edges by the table.
            let mut next = 2;
            for (o, t) in out[2.min(cols)..].chunks_exact_mut(2).zip(tmp.windows(3)) {
                o[0] = t[0] + 0.75 * (t[1] - t[0]);
                o[1] = t[1] + 0.25 * (t[2] - t[1]);
                next += 2;
            }
            for j in (0..2.min(cols)).chain(next..cols) {
                let (j0, j1, t) = self.up_cols[j];
                out[j] = tmp[j0] + t * (tmp[j1] - tmp[j0]);
            }
            if let Some(nodata) = &self.nodata {
                let nodata = &nodata[r * cols..(r + 1) * cols];
                out.iter_mut().zip(nodata).for_each(|(v, nd)| {
                    *v = if *nd { f32::NAN } else { *v };
                });
            }
            let (l, h) = value_range(out);
            lo = if l < lo { l } else { lo };
            hi = if h > hi { h } else { hi };
        }
        (field.rows, field.cols) = (self.rows, self.cols);
        (lo, hi)
    }

    /// The lead at `lead_steps`, advected by `d` (its displacement on the
    /// field's grid), into `out` (mm/h, NaN unknown): recomposed, its
    /// quantile map to the latest observation taken from its ranks in the
    /// Lagrangian frame (as pysteps matches), advected, and then mapped, so
    /// that the jump from dry to wet and the observation's rate classes
    /// are not smoothed by the advection's interpolation. Before the
    /// advection, the cells certain to map to dry are set to one value
    /// ([`QuantileMap::settle_dry`]), which the warp copies in bulk.
    pub(super) fn lead_into(
        &self,
        lead_steps: f32,
        d: &Displacement,
        scratch: &mut LeadScratch,
        out: &mut Vec<f32>,
    ) {
        let (lo, hi) = self.recompose(lead_steps, scratch);
        let LeadScratch {
            field,
            counts,
            edges,
            ..
        } = scratch;
        let cols = field.cols;
        let ranges = span_ranges(self.spans.as_deref().map(|s| (s, cols)), field.data.len());
        let map = quantile_map(&field.data, &ranges, lo, hi, &self.target, counts, edges);
        map.settle_dry(&mut field.data, &ranges);
        warp_into(field, d, None, out);
        let all = span_ranges(None, out.len());
        map.apply_to(out, &all);
    }

    /// The lead's field recomposed and quantile-matched before advection
    /// (the tests' view of the map in the Lagrangian frame): recomposed and quantile-matched to
    /// the latest observation, in mm/h (in the Lagrangian frame, as pysteps
    /// does; dry areas are then exactly zero, which the warp copies in bulk).
    /// Lives in `scratch`.
    #[cfg(test)]
    pub(super) fn matched<'s>(&self, lead_steps: f32, scratch: &'s mut LeadScratch) -> &'s Img {
        let (lo, hi) = self.recompose(lead_steps, scratch);
        let field = &mut scratch.field;
        let cols = field.cols;
        quantile_match_in(
            &mut field.data,
            lo,
            hi,
            &self.target,
            &mut scratch.counts,
            &mut scratch.edges,
            self.spans.as_deref().map(|s| (s, cols)),
        );
        field
    }
}

/// Buffers of the per-lead work, kept from one lead to the next.
pub(super) struct LeadScratch {
    field: Img,
    /// The recomposed lead on the half grid, and one of its rows.
    half: Vec<f32>,
    row: Vec<f32>,
    spec: Vec<Complex32>,
    table: Vec<[f32; 2]>,
    fft: FftScratch,
    counts: Vec<u32>,
    edges: Vec<[f32; 2]>,
}

impl Default for LeadScratch {
    fn default() -> Self {
        Self {
            field: Img::filled(0, 0, 0.0),
            half: Vec::new(),
            row: Vec::new(),
            spec: Vec::new(),
            table: Vec::new(),
            fft: FftScratch::default(),
            counts: Vec::new(),
            edges: Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ar2_of_a_coarse_level_relaxes_instead_of_extrapolating_its_trend() {
        // The coarse levels' correlations on the shared radar days are about
        // (0.995–0.999, 0.983–0.996). Raised only to the stationary bound,
        // r2 made the AR(2) nearly a linear extrapolation of the last
        // Lagrangian change over 12 steps (one hour at 5 min): about
        // z(0) + 12·(z(0) − z(−1)), coefficients (12.85, −12.0). With
        // pysteps' real-root bound the trend is damped to about (7.6, −6.7).
        let (a, b) = ar2_coefficients(ar2_params(0.999, 0.995), 12.0);
        assert!((a - 7.6).abs() < 0.1 && (b + 6.7).abs() < 0.1, "{a} {b}");
        // And the weight of the trend stops growing: the coefficients of
        // an AR(2) with real roots approach a steady split (they no longer
        // grow with the lead as they did, by about one per step).
        let (a24, b24) = ar2_coefficients(ar2_params(0.999, 0.995), 24.0);
        assert!(a24 < a + 3.0 && a24 + b24 <= a + b + 1e-3, "{a24} {b24}");
        // A fine level with the correlations of an AR(1) forgets: 0.5^12.
        let (a, b) = ar2_coefficients(ar2_params(0.5, 0.25), 12.0);
        assert!(a.abs() < 1e-3 && b.abs() < 1e-3, "{a} {b}");
    }

    #[test]
    fn ar2_yule_walker() {
        // Correlations within the bounds are kept: the AR(2) recursion
        // reproduces both.
        let (p1, p2) = ar2_params(0.9, 0.8);
        assert!((p1 * 0.9 + p2 - 0.8).abs() < 1e-5, "{p1} {p2}");
        assert!((p1 + p2 * 0.9 - 0.9).abs() < 1e-5);
        // r2 = r1² is an AR(1).
        let (p1, p2) = ar2_params(0.5, 0.25);
        assert!((p1 - 0.5).abs() < 1e-6 && p2.abs() < 1e-6);
        // No correlation, no memory.
        assert_eq!(ar2_params(-0.3, 0.2), (0.0, 0.0));
        assert_eq!(ar2_params(f32::NAN, 0.2), (0.0, 0.0));
    }

    #[test]
    fn ar2_roots_are_real_and_stationary_for_any_correlations() {
        // pysteps' adjust_lag2_corrcoef2: whatever the measured pair, the
        // process has real characteristic roots (φ1² + 4·φ2 ≥ 0, no
        // oscillation) and is stationary (|φ2| < 1, φ1 + φ2 < 1,
        // φ2 − φ1 < 1). The stationary bound alone, as before session 15,
        // gives complex roots for r1 near 1 (e.g. (0.999, 0.995)).
        for i in 1..=100 {
            let r1 = i as f32 / 100.0;
            for j in -100..=100 {
                let r2 = j as f32 / 100.0;
                let (p1, p2) = ar2_params(r1, r2);
                let (p1, p2) = (p1 as f64, p2 as f64);
                assert!(p1 * p1 + 4.0 * p2 >= -1e-4, "({r1}, {r2}): {p1} {p2}");
                assert!(
                    p2.abs() < 1.0 && p1 + p2 < 1.0 && p2 - p1 < 1.0,
                    "({r1}, {r2}): {p1} {p2}"
                );
            }
            let (p1, p2) = ar2_params(r1, f32::NAN);
            assert!(p1.is_finite() && p2.is_finite(), "({r1}, NaN)");
        }
    }

    /// The cascade of three fields (oldest first) with no motion, so the
    /// previous two need no advection.
    fn at_rest(fields: [&ndarray::Array2<f32>; 3], cfg: &NowcastConfig) -> Sprog {
        use crate::extrapolate::displacements;
        use crate::motion::MotionField;
        let d = displacements(&MotionField::zero(fields[2].dim()), &[1.0, 2.0]).unwrap();
        Sprog::new(
            &fields[2].view(),
            &fields[1].view(),
            &fields[0].view(),
            &d[0],
            &d[1],
            cfg,
        )
    }

    #[test]
    fn no_data_enters_the_cascade_as_the_dry_floor() {
        // As in pysteps' S-PROG: a no-data cell is the floor, whatever rain
        // lies next to it (an interpolation would carry the rain on beyond
        // the radar's view); known cells are untouched.
        let mut img = Img {
            rows: 2,
            cols: 3,
            data: vec![10.0, f32::NAN, 12.0, f32::NAN, 11.0, -15.0],
        };
        fill_no_data(&mut img, -15.0);
        assert_eq!(img.data, vec![10.0, -15.0, 12.0, -15.0, 11.0, -15.0]);
        // And through the cascade: rain leaving a radar's circular view
        // (no data outside it), on a grid of 118 × 125 cells, whose half
        // grid of 59 × 63 block means the transforms pad to 64 × 64. The
        // spectra are those of the floor-filled field's block means padded
        // with the floor (its mean is the cascade's), and at lead 0 the
        // cascade gives back, where the latest field is known, the block
        // means interpolated bilinearly between their centres, and no data
        // elsewhere.
        use crate::synth::Coverage;
        let cov = Coverage::Circle {
            centre_row: 60.0,
            centre_col: 64.0,
            radius_px: 58.0,
        };
        let f = crate::nowcast::tests::radar(118, 125, (2.5, -1.0), cov).fields(30, 3);
        let latest = &f[2].rate_mm_h;
        assert!(latest.iter().any(|v| v.is_nan()) && latest.iter().any(|v| *v >= 1.0));
        let cfg = NowcastConfig::default();
        let sp = at_rest([&f[0].rate_mm_h, &f[1].rate_mm_h, latest], &cfg);
        let (thr, floor) = (cfg.rain_threshold_mm_h, cfg.motion.floor_dbr);
        let (rows, cols) = latest.dim();
        assert_eq!((sp.half, sp.padded), ((59, 63), (64, 64)));
        let mut x0 = Img {
            rows,
            cols,
            data: latest.iter().map(|r| to_dbr(*r, thr, floor)).collect(),
        };
        fill_no_data(&mut x0, floor);
        // Block means by hand: the last column's blocks are half beyond
        // the grid, and take the floor there.
        let at = |r: usize, c: usize| {
            if r < rows && c < cols {
                x0.data[r * cols + c] as f64
            } else {
                floor as f64
            }
        };
        let half: Vec<f64> = (0..59 * 63)
            .map(|k| {
                let (r, c) = (2 * (k / 63), 2 * (k % 63));
                0.25 * (at(r, c) + at(r, c + 1) + at(r + 1, c) + at(r + 1, c + 1))
            })
            .collect();
        let pad_cells = (64 * 64 - 59 * 63) as f64;
        let mean = (half.iter().sum::<f64>() + pad_cells * floor as f64) / (64.0 * 64.0);
        assert!((sp.mean as f64 - mean).abs() < 1e-3, "{} {mean}", sp.mean);
        let mut scratch = LeadScratch::default();
        sp.recompose(0.0, &mut scratch);
        let got = &scratch.field.data;
        // A cell's centre lies at (r/2 − 1/4, c/2 − 1/4) on the half grid.
        let position = |x: usize, n: usize| {
            let p = (x as f64 / 2.0 - 0.25).clamp(0.0, (n - 1) as f64);
            let i = (p.floor() as usize).min(n - 1);
            (i, (i + 1).min(n - 1), p - i as f64)
        };
        for r in 0..rows {
            let (i0, i1, wy) = position(r, 59);
            for c in 0..cols {
                let g = got[r * cols + c];
                if latest[[r, c]].is_nan() {
                    assert!(g.is_nan(), "({r}, {c})");
                    continue;
                }
                let (j0, j1, wx) = position(c, 63);
                let v = |i: usize, j: usize| half[i * 63 + j];
                let top = v(i0, j0) + wx * (v(i0, j1) - v(i0, j0));
                let bot = v(i1, j0) + wx * (v(i1, j1) - v(i1, j0));
                let want = top + wy * (bot - top);
                assert!(
                    (g as f64 - want).abs() < 1e-3,
                    "({r}, {c}): {g} against {want}"
                );
            }
        }
    }

    #[test]
    fn the_half_grid_holds_block_means_and_wholly_known_blocks() {
        // 3 × 5 cells: the last row's and the last column's blocks reach
        // beyond the grid; their cells there are the floor, and such a
        // block is not known.
        let nan = f32::NAN;
        #[rustfmt::skip]
        let data = [
            1.0, 2.0, 3.0, 4.0, 5.0,
            5.0, 6.0, nan, 8.0, 9.0,
            -1.0, 1.0, 2.0, 2.0, 4.0,
        ];
        let mut half = Vec::new();
        halve_into(&data, 3, 5, |v| floor_no_data(v, -10.0), -10.0, &mut half);
        let want = [
            3.5,
            (3.0 - 10.0 + 4.0 + 8.0) / 4.0,
            (5.0 + 9.0 - 20.0) / 4.0,
            (-1.0 + 1.0 - 20.0) / 4.0,
            (2.0 + 2.0 - 20.0) / 4.0,
            (4.0 - 30.0) / 4.0,
        ];
        assert_eq!(half, want);
        let mask: Vec<bool> = data.iter().map(|v| v.is_finite()).collect();
        assert_eq!(
            halve_mask(&mask, 3, 5),
            [true, false, false, false, false, false]
        );
        assert_eq!(cascade_grid(3, 5), ((2, 3), (8, 8)));
    }

    #[test]
    fn an_infinite_cell_does_not_spread_through_the_spectrum() {
        let f = crate::nowcast::tests::radar(64, 72, (1.5, 0.5), crate::synth::Coverage::Full)
            .fields(30, 3);
        let mut latest = f[2].rate_mm_h.clone();
        latest[[10, 20]] = f32::INFINITY;
        let cfg = NowcastConfig::default();
        let sp = at_rest([&f[0].rate_mm_h, &f[1].rate_mm_h, &latest], &cfg);
        let mut scratch = LeadScratch::default();
        for lead in [0.0, 1.0, 6.0] {
            sp.recompose(lead, &mut scratch);
            let finite = scratch.field.data.iter().filter(|v| v.is_finite()).count();
            assert_eq!(finite, 64 * 72, "lead {lead}");
        }
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
        let t = TargetDistribution::new(&dbr, &target_rates, -15.0, 0.1);
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
    fn quantile_matching_keeps_the_classes_of_a_quantised_product() {
        // A product in rate classes, as BOM and MeteoSwiss send them: a
        // fifth of the cells at exactly 1 mm/h. The forecast, matched onto
        // it, has as many cells at ≥ 1 mm/h (and at ≥ 5 mm/h) as the
        // observation, up to the cells of one table step at each class
        // boundary, and its values are the classes themselves.
        let classes = [0.0f32, 0.5, 1.0, 2.5, 5.0, 8.0];
        let weights = [50usize, 15, 20, 8, 5, 2];
        let rates: Vec<f32> = (0..100_000)
            .map(|i| {
                let mut k = (i * 7919) % 100;
                let mut c = 0;
                while k >= weights[c] {
                    k -= weights[c];
                    c += 1;
                }
                classes[c]
            })
            .collect();
        let dbr: Vec<f32> = rates.iter().map(|r| to_dbr(*r, 0.1, -15.0)).collect();
        let t = TargetDistribution::new(&dbr, &rates, -15.0, 0.1);
        let mut rnd = uniform(7);
        let mut v: Vec<f32> = (0..rates.len()).map(|_| 30.0 * rnd() - 15.0).collect();
        quantile_match(&mut v, &t);
        let slack = rates.len() / (QUANTILES - 1) + 2; // one table step
        for thr in [0.5f32, 1.0, 2.5, 5.0] {
            let want = rates.iter().filter(|r| **r >= thr).count();
            let got = v.iter().filter(|r| **r >= thr).count();
            assert!(
                want.abs_diff(got) <= slack,
                "≥ {thr} mm/h: {got} cells, observed {want}"
            );
        }
        let off_class = v.iter().filter(|r| !classes.contains(r)).count();
        assert!(
            off_class <= 5 * slack,
            "{off_class} values between the classes"
        );
    }

    #[test]
    fn the_cascade_forecast_keeps_the_classes_of_a_quantised_product() {
        // The same through `Sprog`, as the nowcast calls it: three frames of
        // a synthetic radar in BOM's classes (multiples of 0.5 mm/h), no
        // motion. Before advection, every lead has as many cells at or above
        // each class as the latest observation, up to one table step and one
        // rank bin's share of the cells (the forecast's ranks are
        // interpolated within each of the `RANK_BINS` bins).
        let frames = crate::nowcast::tests::frames();
        let classed: Vec<ndarray::Array2<f32>> = frames
            .iter()
            .map(|f| f.rate_mm_h.mapv(|r| (r * 2.0).floor() / 2.0))
            .collect();
        let latest = &classed[2];
        let sp = at_rest(
            [&classed[0], &classed[1], latest],
            &NowcastConfig::default(),
        );
        let slack = latest.len() / (QUANTILES - 1) + latest.len() / RANK_BINS + 2;
        let mut scratch = LeadScratch::default();
        for lead in [1.0f32, 6.0] {
            let field = sp.matched(lead, &mut scratch);
            for k in 1..=12 {
                let thr = k as f32 * 0.5;
                let want = latest.iter().filter(|r| **r >= thr).count();
                let got = field.data.iter().filter(|r| **r >= thr).count();
                assert!(
                    want.abs_diff(got) <= slack,
                    "lead {lead}: ≥ {thr} mm/h: {got} cells, observed {want}"
                );
            }
        }
    }

    #[test]
    fn an_advected_lead_keeps_the_classes_of_a_quantised_product() {
        // The lead as the nowcast makes it ([`Sprog::lead_into`]), advected
        // by a motion of fractions of a cell: mapped after the advection,
        // its rain keeps the observation's classes (multiples of 0.5 mm/h)
        // but for the cells whose rank falls within a step of the quantile
        // table where the class changes (107 of 3137 wet cells at lead 1
        // here). Mapped before it (until session 36), the advection's
        // interpolation put 3616 of 3691 wet cells between classes.
        use crate::extrapolate::displacements;
        use crate::motion::MotionField;
        let frames = crate::nowcast::tests::frames();
        let classed: Vec<ndarray::Array2<f32>> = frames
            .iter()
            .map(|f| f.rate_mm_h.mapv(|r| (r * 2.0).floor() / 2.0))
            .collect();
        let latest = &classed[2];
        let sp = at_rest(
            [&classed[0], &classed[1], latest],
            &NowcastConfig::default(),
        );
        let motion = MotionField::uniform(latest.dim(), 1.3, -0.7);
        let (mut scratch, mut out) = (LeadScratch::default(), Vec::new());
        for lead in [1.0f32, 6.0] {
            let d = &displacements(&motion, &[lead]).unwrap()[0];
            sp.lead_into(lead, d, &mut scratch, &mut out);
            let wet = out.iter().filter(|r| **r > 0.0).count();
            let between = out
                .iter()
                .filter(|r| **r > 0.0 && (**r * 2.0).fract() != 0.0)
                .count();
            assert!(wet > 1000, "lead {lead}: {wet} wet cells");
            assert!(
                between * 20 <= wet,
                "lead {lead}: {between} of {wet} wet cells between classes"
            );
        }
    }

    #[test]
    fn settling_certain_dry_cells_keeps_their_value_and_the_map() {
        // The cells set to the lowest value before the advection map to 0
        // as they did, and every other cell is left as it was; values
        // rounded just below the lowest take the lowest bin (not the top,
        // which a negative index masked to the table's size would be).
        let mut rnd = uniform(7);
        let rates: Vec<f32> = (0..20_000)
            .map(|i| {
                if i % 2 == 0 {
                    0.0
                } else {
                    (4.0 * rnd() - 2.0).exp()
                }
            })
            .collect();
        let dbr: Vec<f32> = rates.iter().map(|r| to_dbr(*r, 0.1, -15.0)).collect();
        let t = TargetDistribution::new(&dbr, &rates, -15.0, 0.1);
        // No data, a spread of values, and a fifth at the top (a full top
        // bin: a value taken to the wrong bin would land far from 0).
        let values: Vec<f32> = (0..30_000)
            .map(|i| match i % 5 {
                0 => f32::NAN,
                1 => 15.0,
                _ => 30.0 * rnd() - 15.0,
            })
            .collect();
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let lo = finite.clone().fold(f32::INFINITY, f32::min);
        let hi = finite.fold(f32::NEG_INFINITY, f32::max);
        let all = span_ranges(None, values.len());
        let (mut c, mut e) = (Vec::new(), Vec::new());
        let map = quantile_map(&values, &all, lo, hi, &t, &mut c, &mut e);
        let mut settled = values.clone();
        map.settle_dry(&mut settled, &all);
        let (mut mapped, mut mapped_settled) = (values.clone(), settled.clone());
        map.apply_to(&mut mapped, &all);
        map.apply_to(&mut mapped_settled, &all);
        let mut moved = 0;
        for ((v, s), (m, ms)) in values
            .iter()
            .zip(&settled)
            .zip(mapped.iter().zip(&mapped_settled))
        {
            assert_eq!(m.to_bits(), ms.to_bits(), "{v} settled to {s}");
            if v.to_bits() != s.to_bits() {
                moved += 1;
                assert_eq!((*s, *m), (lo, 0.0), "{v} settled");
            }
        }
        assert!(moved > 1000, "{moved} cells settled");
        // Just below the lowest, as rounding leaves it, and further.
        let mut below: Vec<f32> = [1e-6f32, 1e-4, 1e-2, 0.1]
            .iter()
            .map(|e| lo - e * lo.abs().max(1.0))
            .chain([lo, f32::NAN])
            .collect();
        let n = below.len();
        map.apply_to(&mut below, &span_ranges(None, n));
        for v in &below[..n - 2] {
            assert_eq!(v.to_bits(), below[n - 2].to_bits(), "{below:?}");
        }
        assert!(below[n - 1].is_nan());
    }

    /// The previous quantile matching (until issue 16): a rank per cell from
    /// the histogram, then a lookup of the quantile function per cell.
    fn quantile_match_reference(values: &mut [f32], target: &TargetDistribution) {
        const BINS: usize = 4096;
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let scale = (BINS as f32 - 1e-3) / (hi - lo);
        let mut counts = vec![0u32; BINS];
        for v in &finite {
            counts[((v - lo) * scale) as usize] += 1;
        }
        let mut below = vec![0u32; BINS];
        let mut acc = 0;
        for (b, c) in below.iter_mut().zip(&counts) {
            *b = acc;
            acc += c;
        }
        for v in values.iter_mut().filter(|v| v.is_finite()) {
            let x = (*v - lo) * scale;
            let bin = x as usize;
            let rank = below[bin] as f32 + (x - bin as f32) * counts[bin] as f32;
            *v = target.quantile(rank / finite.len() as f32);
        }
    }

    /// A reproducible uniform generator on [0, 1) (an LCG).
    fn uniform(mut seed: u64) -> impl FnMut() -> f32 {
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// [`quantile_match_in`] as it was until issue 16's fifth pass: one
    /// histogram, and the map cell by cell.
    fn quantile_match_in_cell_by_cell(
        values: &mut [f32],
        lo: f32,
        hi: f32,
        target: &TargetDistribution,
        counts: &mut Vec<u32>,
        edges: &mut Vec<[f32; 2]>,
    ) {
        if lo
            .partial_cmp(&hi)
            .is_none_or(|o| o == std::cmp::Ordering::Greater)
        {
            return; // no finite value
        }
        if hi <= lo {
            let out = target.quantile(0.5);
            values
                .iter_mut()
                .filter(|v| v.is_finite())
                .for_each(|v| *v = out);
            return;
        }
        let scale = (RANK_BINS as f32 - 1e-3) / (hi - lo);
        counts.clear();
        counts.resize(RANK_BINS, 0);
        let mut n = 0u32;
        let last_bin = (RANK_BINS - 1) as f32;
        for &v in values.iter() {
            if v.is_finite() {
                counts[((v - lo) * scale).min(last_bin) as i32 as usize] += 1;
                n += 1;
            }
        }
        // Position in the quantile table of every bin edge (edge b has
        // Σ counts[..b] values below it), stored per bin as (left edge, right
        // edge − left edge): one 8-byte load per cell instead of two.
        let to_pos = (QUANTILES - 1) as f32 / n as f32;
        edges.clear();
        let (mut below, mut left) = (0u32, 0f32);
        for c in counts.iter() {
            below += c;
            let right = below as f32 * to_pos;
            edges.push([left, right - left]);
            left = right;
        }
        let (steps, thr) = (&target.steps, target.threshold);
        let (last_bin, last_pos) = ((RANK_BINS - 1) as f32, (QUANTILES - 2) as f32);
        for v in values.iter_mut() {
            // Clamped in f32 first, so the integer conversions are in range (a
            // cheap i32 truncation); NaN converts to 0 and the interpolations
            // stay NaN. The same arithmetic as interpolating between
            // `edge[bin]`, `edge[bin + 1]` and `table[i]`, `table[i + 1]`.
            let x = (*v - lo) * scale;
            let bin = x.min(last_bin) as i32 as usize;
            let [e, de] = edges[bin];
            let pos = e + (x - bin as f32) * de;
            let i = pos.min(last_pos) as i32 as usize;
            let [t, dt] = steps[i];
            let r = t + (pos - i as f32) * dt;
            *v = if r < thr { 0.0 } else { r };
        }
    }

    #[test]
    fn vectorised_quantile_map_equals_the_cell_by_cell_one() {
        // Bit for bit, on lengths around the lane count, with no data, ties,
        // a long tail, a constant field and values at both ends of the range.
        let mut rnd = uniform(99);
        let rates: Vec<f32> = (0..50_000)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    (5.0 * rnd() - 2.0).exp()
                }
            })
            .collect();
        let dbr: Vec<f32> = rates.iter().map(|r| to_dbr(*r, 0.1, -15.0)).collect();
        let t = TargetDistribution::new(&dbr, &rates, -15.0, 0.1);
        let range = |v: &[f32]| {
            let finite = v.iter().copied().filter(|x| x.is_finite());
            let lo = finite.clone().fold(f32::INFINITY, f32::min);
            (lo, finite.fold(f32::NEG_INFINITY, f32::max))
        };
        let mut cases: Vec<Vec<f32>> = Vec::new();
        for n in [1usize, 7, 8, 9, 17, 1000, 262_147] {
            cases.push(
                (0..n)
                    .map(|i| match i % 11 {
                        0 => f32::NAN,
                        1 | 2 => -15.0,
                        3 => 4.25,
                        _ => 40.0 * rnd().powi(3) - 15.0,
                    })
                    .collect(),
            );
        }
        cases.push(vec![3.0; 20]);
        cases.push(vec![f32::NAN; 12]);
        // One value per bin.
        cases.push((0..4099).map(|i| i as f32).collect());
        // Long dry stretches (whole groups of cells that map to 0) next to
        // wet ones, and the same values sorted: the dry groups' shortcut
        // and the groups where dry turns wet.
        let stretches: Vec<f32> = (0..20_000)
            .map(|i| match (i / 40) % 3 {
                0 => -15.0 + rnd(),
                1 => 40.0 * rnd().powi(3) - 15.0,
                _ => {
                    if i % 17 == 0 {
                        f32::NAN
                    } else {
                        -14.0 + 3.0 * rnd()
                    }
                }
            })
            .collect();
        let mut sorted: Vec<f32> = stretches
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f32::total_cmp);
        cases.push(stretches);
        cases.push(sorted);
        // Stretches of no data longer than a group of lanes amid rain: the
        // groups wholly unknown, which stay NaN without the lookups.
        cases.push(
            (0..5000)
                .map(|i| match (i / 24) % 4 {
                    1 => f32::NAN,
                    _ => 40.0 * rnd().powi(3) - 15.0,
                })
                .collect(),
        );
        for case in &cases {
            let (lo, hi) = range(case);
            let (mut new, mut old) = (case.clone(), case.clone());
            let (mut c, mut e) = (Vec::new(), Vec::new());
            quantile_match_in(&mut new, lo, hi, &t, &mut c, &mut e, None);
            quantile_match_in_cell_by_cell(&mut old, lo, hi, &t, &mut c, &mut e);
            // Skipping what lies outside each row's finite cells changes
            // no bit (rows of 13 cells; the last one may be short).
            let cols = 13;
            let spans: Vec<(usize, usize)> = case
                .chunks(cols)
                .map(|row| {
                    match (
                        row.iter().position(|v| v.is_finite()),
                        row.iter().rposition(|v| v.is_finite()),
                    ) {
                        (Some(a), Some(b)) => (a, b),
                        _ => (usize::MAX, 0),
                    }
                })
                .collect();
            let mut skipped = case.clone();
            quantile_match_in(
                &mut skipped,
                lo,
                hi,
                &t,
                &mut c,
                &mut e,
                Some((&spans, cols)),
            );
            for (k, (a, b)) in skipped.iter().zip(&new).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "spans, cell {k}");
            }
            for (k, (a, b)) in new.iter().zip(&old).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "n = {}, cell {k}: {a} vs {b}",
                    case.len()
                );
            }
            assert!(new.iter().zip(case).all(|(a, x)| a.is_nan() == x.is_nan()));
        }
    }

    #[test]
    fn one_pass_quantile_map_matches_the_per_cell_lookup() {
        // A realistic target (40 % dry, log-normal-ish wet rates, no data) and
        // a smooth forecast field with ties, no data and a long tail.
        let n = 200_000;
        let mut rnd = uniform(12345);
        let rates: Vec<f32> = (0..n)
            .map(|i| match i % 10 {
                0..=3 => 0.0,
                4 if i % 7 == 0 => f32::NAN,
                _ => (4.0 * rnd() - 1.0).exp(),
            })
            .collect();
        let dbr: Vec<f32> = rates.iter().map(|r| to_dbr(*r, 0.1, -15.0)).collect();
        let t = TargetDistribution::new(&dbr, &rates, -15.0, 0.1);
        let field: Vec<f32> = (0..n)
            .map(|i| match i % 13 {
                0 => f32::NAN,
                1 => -15.0,
                _ => 30.0 * rnd().powi(3) - 10.0,
            })
            .collect();
        let (mut new, mut old) = (field.clone(), field.clone());
        quantile_match(&mut new, &t);
        quantile_match_reference(&mut old, &t);
        let mut worst = 0f32;
        for ((a, b), x) in new.iter().zip(&old).zip(&field) {
            assert_eq!(a.is_nan(), b.is_nan());
            assert_eq!(a.is_nan(), x.is_nan(), "no data stays exactly no data");
            if a.is_finite() {
                // The same up to f32 rounding of the ranks.
                worst = worst.max((a - b).abs() / b.max(0.1));
            }
        }
        assert!(worst < 1e-3, "largest relative difference {worst}");
        let dry = |v: &[f32]| v.iter().filter(|x| **x == 0.0).count() as i64;
        assert!((dry(&new) - dry(&old)).abs() <= 2, "same dry area");
    }

    #[test]
    fn ar2_coefficients_equal_stepping_the_fields() {
        // Two arbitrary "fields" z(0), z(−1) stepped with the recursion, as
        // the forecast did before; the coefficients reproduce every lead.
        let (z0, zm1) = ([0.3f32, -1.2, 2.0], [0.1f32, 0.4, -0.7]);
        for phi in [ar2_params(0.9, 0.75), ar2_params(0.5, 0.1), (0.0, 0.0)] {
            let (mut cur, mut prev) = (z0, zm1);
            for n in 0..12 {
                let (a, b) = ar2_coefficients(phi, n as f32);
                for i in 0..3 {
                    let want = cur[i];
                    let got = a * z0[i] + b * zm1[i];
                    assert!((got - want).abs() < 1e-5, "lead {n}: {got} vs {want}");
                }
                // Halfway to the next step: linear between the two.
                let (a, b) = ar2_coefficients(phi, n as f32 + 0.5);
                let next: Vec<f32> = (0..3).map(|i| phi.0 * cur[i] + phi.1 * prev[i]).collect();
                for i in 0..3 {
                    let want = 0.5 * (cur[i] + next[i]);
                    assert!((a * z0[i] + b * zm1[i] - want).abs() < 1e-5);
                }
                prev = cur;
                cur = [next[0], next[1], next[2]];
            }
        }
    }

    #[test]
    fn fused_correlations_match_pearson() {
        let n = 400;
        let img = |f: &dyn Fn(f32) -> f32| Img {
            rows: 20,
            cols: 20,
            data: (0..n).map(|i| f(i as f32)).collect(),
        };
        let a = img(&|x| (x * 0.37).sin());
        let b = img(&|x| (x * 0.37).sin() * 2.0 + 1.0); // r = 1
        let c = img(&|x| -(x * 0.37).sin()); // r = −1
        let mut mask = vec![true; n];
        mask[5] = false;
        let (r1, r2) = masked_corrs(&a, &b, &c, &mask);
        assert!((r1.unwrap() - 1.0).abs() < 1e-5 && (r2.unwrap() + 1.0).abs() < 1e-5);
        let flat = Img::filled(20, 20, 3.0);
        assert_eq!(masked_corrs(&a, &flat, &b, &mask).0, None, "no variance");
        let few = vec![false; n];
        assert_eq!(
            masked_corrs(&a, &b, &c, &few),
            (None, None),
            "too few cells"
        );
    }

    #[test]
    fn level_stats_equal_each_statistic_alone() {
        // The fused pass gives each sum the bits of the pass that computes
        // it alone: the means and deviations over all cells (mask or not),
        // and correlations over the masked cells only.
        let img = |seed: f32| Img {
            rows: 17,
            cols: 23,
            data: (0..17 * 23)
                .map(|i| ((i as f32 * seed).sin() * 7.0 + (i as f32 * 0.01)).exp2())
                .collect(),
        };
        let (a, b, c) = (img(0.37), img(0.41), img(0.53));
        let mask: Vec<bool> = (0..17 * 23).map(|i| i % 7 != 3).collect();
        let st = level_stats(&a, &b, &c, &mask);
        let bits = |(m, s): (f32, f32)| (m.to_bits(), s.to_bits());
        assert_eq!(bits(st.a), bits(mean_std(&a)));
        assert_eq!(bits(st.b), bits(mean_std(&b)));
        // Correlations over the masked cells: the same as over a copy
        // holding only those cells.
        let keep = |x: &Img| Img {
            rows: 1,
            cols: mask.iter().filter(|m| **m).count(),
            data: x
                .data
                .iter()
                .zip(&mask)
                .filter(|(_, m)| **m)
                .map(|(v, _)| *v)
                .collect(),
        };
        let all = vec![true; keep(&a).data.len()];
        let alone = level_stats(&keep(&a), &keep(&b), &keep(&c), &all).corrs;
        assert!(st.corrs.0.is_some() && st.corrs.1.is_some());
        assert_eq!(st.corrs, alone);
    }
}
