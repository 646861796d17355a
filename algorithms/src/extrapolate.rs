//! Semi-Lagrangian extrapolation: a field and a motion field give the field
//! at any lead time.
//!
//! *Backward* scheme: for every target cell, follow the motion backwards for
//! `lead` steps to find where its rain is now, and interpolate the current
//! field there (bilinear). The trajectory is integrated with a midpoint rule
//! on the motion's reduced grid and **accumulated as a displacement**, so
//! every lead is interpolated from the *original* field exactly once: a
//! 60-minute forecast is not a 5-minute forecast smeared twelve times.
//!
//! Units: leads in **steps** (the interval of the motion field; fractional
//! leads are fine), displacements in input pixels. A target cell is **NaN**
//! (unknown) when its source lies outside the grid (rain that will flow in
//! from beyond the radar's view) or in no data (finite neighbours carry less
//! than half of the bilinear weight).

use crate::motion::MotionField;
use crate::raster::{
    axis_weights, bilinear, floor_small, lerp4, sample_clamped, sample_clamped_lanes, value_range,
    Img,
};
use ndarray::{Array2, ArrayView2};

/// Why an extrapolation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtrapolateError {
    /// The field and the motion are not on the same grid.
    #[error("field has shape {field:?} but the motion field was estimated on {motion:?}")]
    ShapeMismatch {
        field: (usize, usize),
        motion: (usize, usize),
    },
    /// A lead is negative or not finite.
    #[error("invalid lead {lead_steps} steps: leads must be finite and >= 0")]
    BadLead { lead_steps: f32 },
}

/// The backward displacement for one lead: the rain that will be at input
/// cell `(r, c)` after `lead_steps` is now at `(r − dv, c − du)`. Stored on
/// the motion's reduced grid, in input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Displacement {
    du: Img,
    dv: Img,
    /// Cells of the full-resolution grid per cell of the reduced grid,
    /// along each axis (fractional for [`Displacement::halved`]).
    factor: f32,
    shape: (usize, usize),
    /// The lead, in steps.
    pub lead_steps: f32,
}

impl Displacement {
    /// `(du, dv)` in input pixels at a full-resolution cell.
    pub fn at(&self, row: usize, col: usize) -> (f32, f32) {
        let f = self.factor;
        let (wr, wc) = ((row as f32 + 0.5) / f - 0.5, (col as f32 + 0.5) / f - 0.5);
        sample_clamped(&self.du, &self.dv, wr, wc)
    }

    /// Shape of the full-resolution grid.
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }

    /// The same displacement for the grid of 2 × 2 blocks of this one's
    /// cells (`⌈rows/2⌉ × ⌈cols/2⌉`): in its pixels (half the values), for
    /// its cells, whose centres lie between those of their blocks'
    /// cells (a factor half as large).
    pub(crate) fn halved(&self) -> Displacement {
        let half = |img: &Img| Img {
            rows: img.rows,
            cols: img.cols,
            data: img.data.iter().map(|v| 0.5 * v).collect(),
        };
        Displacement {
            du: half(&self.du),
            dv: half(&self.dv),
            factor: 0.5 * self.factor,
            shape: (self.shape.0.div_ceil(2), self.shape.1.div_ceil(2)),
            lead_steps: self.lead_steps,
        }
    }
}

/// Integrates the backward trajectories of every lead in `leads_steps` (any
/// order, duplicates allowed). Returns one [`Displacement`] per lead, in the
/// order given.
pub fn displacements(
    motion: &MotionField,
    leads_steps: &[f32],
) -> Result<Vec<Displacement>, ExtrapolateError> {
    for &l in leads_steps {
        if !(l.is_finite() && l >= 0.0) {
            return Err(ExtrapolateError::BadLead { lead_steps: l });
        }
    }
    let (wr, wc) = (motion.u.rows, motion.u.cols);
    let n = wr * wc;
    let mut order: Vec<usize> = (0..leads_steps.len()).collect();
    order.sort_by(|a, b| leads_steps[*a].total_cmp(&leads_steps[*b]));
    let mut out: Vec<Option<Displacement>> = vec![None; leads_steps.len()];
    let mut du = vec![0f32; n];
    let mut dv = vec![0f32; n];
    let mut done = 0u32;
    for idx in order {
        let lead = leads_steps[idx];
        let whole = lead.floor() as u32;
        while done < whole {
            advance(motion, &mut du, &mut dv, 1.0);
            done += 1;
        }
        let frac = lead - whole as f32;
        let (mut ou, mut ov) = (du.clone(), dv.clone());
        if frac > 1e-6 {
            advance(motion, &mut ou, &mut ov, frac);
        }
        out[idx] = Some(Displacement {
            du: Img {
                rows: wr,
                cols: wc,
                data: std::mem::take(&mut ou),
            },
            dv: Img {
                rows: wr,
                cols: wc,
                data: std::mem::take(&mut ov),
            },
            factor: motion.factor as f32,
            shape: motion.shape,
            lead_steps: lead,
        });
    }
    Ok(out.into_iter().flatten().collect())
}

/// Working cells [`advance`] moves together.
const STEP_LANES: usize = 8;

/// One midpoint step of `h` steps along the motion, from the displacement
/// `(du, dv)` (input pixels, one per working cell) of every working cell,
/// in place: the cell's source `p = (i − dv/f, j − du/f)` (`f` the working
/// grid's factor), the motion `m₁` there, the motion `m₂` at
/// `p − ½·h·m₁/f`, and `(du, dv) += h·m₂`. [`STEP_LANES`] cells at a time,
/// so that the arithmetic vectorises (the motion's samples are loads); each
/// cell's result is the same, bit for bit, as stepping it alone.
fn advance(motion: &MotionField, du: &mut [f32], dv: &mut [f32], h: f32) {
    const L: usize = STEP_LANES;
    let wc = motion.u.cols;
    let f = motion.factor as f32;
    for (i, (du_row, dv_row)) in du.chunks_mut(wc).zip(dv.chunks_mut(wc)).enumerate() {
        for (g, (cu, cv)) in du_row.chunks_mut(L).zip(dv_row.chunks_mut(L)).enumerate() {
            let n = cu.len();
            let (mut pr, mut pc) = ([0f32; L], [0f32; L]);
            for l in 0..n {
                pr[l] = i as f32 - cv[l] / f;
                pc[l] = (g * L + l) as f32 - cu[l] / f;
            }
            let (u1, v1) = sample_clamped_lanes(&motion.u, &motion.v, &pr, &pc);
            let (mut mr, mut mc) = ([0f32; L], [0f32; L]);
            for l in 0..L {
                mr[l] = pr[l] - 0.5 * h * v1[l] / f;
                mc[l] = pc[l] - 0.5 * h * u1[l] / f;
            }
            let (u2, v2) = sample_clamped_lanes(&motion.u, &motion.v, &mr, &mc);
            for l in 0..n {
                cu[l] += h * u2[l];
                cv[l] += h * v2[l];
            }
        }
    }
}

/// Cells of a row segment handled together.
const SEGMENT: usize = 16;

/// Largest spread (pixels) of the displacement within a segment for the
/// segment to be shifted as a block; the position error is then at most half
/// of it, far below what the bilinear interpolation itself smooths.
const SHIFT_EPS: f32 = 0.02;

/// Side of the source tiles whose value range is summarised.
const TILE: usize = 16;

/// Rows and columns of the warp's blocks: a block whose every cell's
/// source lies inside the grid, in source tiles that all hold one and the
/// same value, is filled with it at once (the value each of its segments
/// would find on its own), and one whose sources all lie beyond an edge of
/// the grid or on no data only is left unknown ([`Block`]).
const BLOCK_ROWS: usize = 16;
const BLOCK_COLS: usize = 4 * SEGMENT;

/// Relative spread below which a source region counts as constant (a few
/// units in the last place: it absorbs rounding noise only, so results are
/// the same as interpolating cell by cell).
const CONST_TOL: f32 = 1e-6;

/// Per-tile summary of the source: min and max of the finite values and
/// whether the tile has NaN (no data) cells, or only NaN cells.
struct Tiles {
    cols: usize,
    min: Vec<f32>,
    max: Vec<f32>,
    any_nan: Vec<bool>,
    all_nan: Vec<bool>,
}

impl Tiles {
    /// Summaries of `data` (`rows × cols`, row-major). Each tile row's
    /// full tiles keep [`TILE`] lanes of minimum, maximum and NaN count,
    /// one lane per column of the tile, updated row by row (a loop that
    /// vectorises) and reduced once per tile; a narrower last tile column
    /// is summed cell by cell. Minimum and maximum of a set of finite
    /// values do not depend on the order they are taken in (but for the
    /// sign of a zero), so the summaries are those of a cell-by-cell pass
    /// (test `lane_tiles_equal_cell_by_cell_tiles`); before, the
    /// cell-by-cell pass was a fifth of the warp (docs/PERFORMANCE.md,
    /// "Issue 16, session 30").
    fn new(data: &[f32], rows: usize, cols: usize) -> Self {
        let (tr, tc) = (rows.div_ceil(TILE), cols.div_ceil(TILE));
        let mut t = Tiles {
            cols: tc,
            min: vec![f32::INFINITY; tr * tc],
            max: vec![f32::NEG_INFINITY; tr * tc],
            any_nan: vec![false; tr * tc],
            all_nan: vec![true; tr * tc],
        };
        let full = cols / TILE;
        let mut lo = vec![[f32::INFINITY; TILE]; full];
        let mut hi = vec![[f32::NEG_INFINITY; TILE]; full];
        let mut nan = vec![[0u32; TILE]; full];
        for (band, band_rows) in data.chunks(TILE * cols).take(tr).enumerate() {
            let base = band * tc;
            let height = band_rows.len() / cols;
            lo.iter_mut().for_each(|l| *l = [f32::INFINITY; TILE]);
            hi.iter_mut().for_each(|h| *h = [f32::NEG_INFINITY; TILE]);
            nan.iter_mut().for_each(|n| *n = [0; TILE]);
            for row in band_rows.chunks_exact(cols) {
                for (j, chunk) in row.chunks_exact(TILE).enumerate() {
                    let (Ok(vs), Some(l), Some(h), Some(n)) = (
                        <&[f32; TILE]>::try_from(chunk),
                        lo.get_mut(j),
                        hi.get_mut(j),
                        nan.get_mut(j),
                    ) else {
                        continue; // unreachable: `full` chunks of TILE
                    };
                    // Plain comparisons (NaN fails both, as f32::min
                    // ignores NaN) so that the loop vectorises.
                    for k in 0..TILE {
                        let v = vs[k];
                        l[k] = if v < l[k] { v } else { l[k] };
                        h[k] = if v > h[k] { v } else { h[k] };
                        n[k] += v.is_nan() as u32;
                    }
                }
                if full < tc {
                    let (mut l, mut h, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
                    let tail = &row[full * TILE..];
                    for &v in tail {
                        l = if v < l { v } else { l };
                        h = if v > h { v } else { h };
                        n += v.is_nan() as usize;
                    }
                    let k = base + full;
                    t.min[k] = t.min[k].min(l);
                    t.max[k] = t.max[k].max(h);
                    t.any_nan[k] |= n > 0;
                    t.all_nan[k] &= n == tail.len();
                }
            }
            for (j, ((l, h), n)) in lo.iter().zip(&hi).zip(&nan).enumerate() {
                let k = base + j;
                for i in 0..TILE {
                    t.min[k] = if l[i] < t.min[k] { l[i] } else { t.min[k] };
                    t.max[k] = if h[i] > t.max[k] { h[i] } else { t.max[k] };
                }
                let n: usize = n.iter().map(|&x| x as usize).sum();
                t.any_nan[k] = n > 0;
                t.all_nan[k] = n == height * TILE;
            }
        }
        t
    }

    /// The common value of every source cell in rows `r0..=r1`, columns
    /// `c0..=c1` when they are all finite and equal within [`CONST_TOL`]
    /// (relative): then any interpolation there gives that value.
    fn constant(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> Option<f32> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for tr in r0 / TILE..=r1 / TILE {
            for tc in c0 / TILE..=c1 / TILE {
                let k = tr * self.cols + tc;
                if self.any_nan[k] {
                    return None;
                }
                lo = lo.min(self.min[k]);
                hi = hi.max(self.max[k]);
                if hi - lo > CONST_TOL * lo.abs().max(hi.abs()) {
                    return None;
                }
            }
        }
        Some(lo)
    }

    /// The value of every source cell in rows `r0..=r1`, columns `c0..=c1`
    /// when each of their tiles has no NaN and the same bits as its minimum
    /// and maximum, the same in every tile: then [`Self::constant`] of any
    /// range within it is that value, to the bit.
    fn uniform(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> Option<f32> {
        let k0 = (r0 / TILE) * self.cols + c0 / TILE;
        let v = self.min[k0].to_bits();
        for tr in r0 / TILE..=r1 / TILE {
            for tc in c0 / TILE..=c1 / TILE {
                let k = tr * self.cols + tc;
                if self.any_nan[k] || self.min[k].to_bits() != v || self.max[k].to_bits() != v {
                    return None;
                }
            }
        }
        Some(f32::from_bits(v))
    }

    /// True when every source cell in the range is NaN.
    fn all_nan(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> bool {
        (r0 / TILE..=r1 / TILE)
            .all(|tr| (c0 / TILE..=c1 / TILE).all(|tc| self.all_nan[tr * self.cols + tc]))
    }
}

/// Warps `src` (row-major, `d.shape()`) by a displacement into `out`
/// (resized): bilinear, NaN outside the grid or in no data. With
/// `dry_below = Some(t)`, values below `t` become 0 as each row is finished
/// (the nowcast's rain threshold, without a second pass over the field).
///
/// Speed: the displacement is smooth, so each row is cut into segments of
/// [`SEGMENT`] cells; where the displacement varies by less than
/// [`SHIFT_EPS`] px within a segment and its source lies inside the grid, the
/// segment is one shifted block with constant bilinear weights (a loop the
/// compiler vectorises). Other cells take the general per-cell path.
pub(crate) fn warp_into(src: &Img, d: &Displacement, dry_below: Option<f32>, out: &mut Vec<f32>) {
    let (rows, cols) = d.shape;
    out.clear();
    out.resize(rows * cols, f32::NAN);
    let f = d.factor;
    let (wr, wc) = (d.du.rows, d.du.cols);
    let ry = axis_weights(wr, rows, 1.0 / f);
    let cx = axis_weights(wc, cols, 1.0 / f);
    // Each coarse row interpolated to full width once.
    // (Written once, so not zero-filled first.)
    let widen = |img: &Img| -> Vec<f32> {
        let mut w = Vec::with_capacity(wr * cols);
        for row in img.data.chunks_exact(wc).take(wr) {
            w.extend(
                cx.iter()
                    .map(|&(j0, j1, t)| row[j0] + t * (row[j1] - row[j0])),
            );
        }
        w
    };
    let (wu, wv) = (widen(&d.du), widen(&d.dv));
    let mut du = vec![0f32; cols];
    let mut dv = vec![0f32; cols];
    let data = &src.data;
    let tiles = Tiles::new(data, rows, cols);
    let has_nan = tiles.any_nan.iter().any(|x| *x);
    // Grids whose positions `floor_small` covers (all real radar grids).
    let small = rows.max(cols) < 1 << 21;
    let blocks = cols.div_ceil(BLOCK_COLS);
    let mut filled = vec![Block::Segments; blocks];
    for (r, &(i0, i1, wy)) in ry.iter().enumerate() {
        if r % BLOCK_ROWS == 0 {
            uniform_blocks(
                &tiles,
                &wu,
                &wv,
                &ry[r..(r + BLOCK_ROWS).min(rows)],
                r,
                (rows, cols),
                &mut filled,
            );
        }
        let orow = &mut out[r * cols..(r + 1) * cols];
        let (u0, u1) = (
            &wu[i0 * cols..(i0 + 1) * cols],
            &wu[i1 * cols..(i1 + 1) * cols],
        );
        let (v0, v1) = (
            &wv[i0 * cols..(i0 + 1) * cols],
            &wv[i1 * cols..(i1 + 1) * cols],
        );
        let mut start = 0;
        while start < cols {
            if start % BLOCK_COLS == 0 {
                let end = (start + BLOCK_COLS).min(cols);
                match filled[start / BLOCK_COLS] {
                    Block::Segments => {
                        // The block's displacements, only where its
                        // segments need them (a row of filled or unknown
                        // blocks takes none; two plain loops over
                        // equal-length slices: they vectorise, one loop
                        // zipping all six did not).
                        let b = start..end;
                        lerp_into(&mut du[b.clone()], &u0[b.clone()], &u1[b.clone()], wy);
                        lerp_into(&mut dv[b.clone()], &v0[b.clone()], &v1[b], wy);
                    }
                    Block::Fill(v) => {
                        orow[start..end].iter_mut().for_each(|o| *o = v);
                        start = end;
                        continue;
                    }
                    Block::Unknown => {
                        // Already NaN.
                        start = end;
                        continue;
                    }
                }
            }
            let end = (start + SEGMENT).min(cols);
            let (su, sv) = (&du[start..end], &dv[start..end]);
            // Displacements are always finite: the exact minimum and maximum
            // in any order (eight lanes, so the reductions vectorise).
            let (umin, umax) = span(su);
            let (vmin, vmax) = span(sv);
            let mut done = false;
            // Source rows and columns the segment can touch.
            let (sr_lo, sr_hi) = (r as f32 - vmax, r as f32 - vmin);
            let (sc_lo, sc_hi) = (start as f32 - umax, (end - 1) as f32 - umin);
            let (rmax, cmax) = (rows as f32 - 0.5, cols as f32 - 0.5);
            if sr_hi < -0.5 || sc_hi < -0.5 || sr_lo > rmax || sc_lo > cmax {
                // Entirely outside the grid: unknown (already NaN).
                start = end;
                continue;
            }
            let clamp_r = |x: f32| clamp_index(x, rows);
            let clamp_c = |x: f32| clamp_index(x, cols);
            let (r0, r1) = (clamp_r(sr_lo), clamp_r(sr_hi + 1.0));
            let (c0, c1) = (clamp_c(sc_lo), clamp_c(sc_hi + 1.0));
            let inside = sr_lo >= -0.5 && sc_lo >= -0.5 && sr_hi <= rmax && sc_hi <= cmax;
            if inside {
                if let Some(v) = tiles.constant(r0, r1, c0, c1) {
                    orow[start..end].iter_mut().for_each(|o| *o = v);
                    start = end;
                    continue;
                }
            }
            if tiles.all_nan(r0, r1, c0, c1) {
                start = end;
                continue;
            }
            if umax - umin < SHIFT_EPS && vmax - vmin < SHIFT_EPS {
                // Source of cell c is (r − v, c − u): rows r0, r0+1 and
                // columns c + k, c + k + 1 with constant weights.
                let (sr, sc) = (r as f32 - 0.5 * (vmin + vmax), -0.5 * (umin + umax));
                let (fr, fc) = (sr.floor(), sc.floor());
                let (r0, k) = (fr as i64, fc as i64);
                let lo = start as i64 + k;
                let hi = end as i64 + k; // index of the last cell's right neighbour
                if r0 >= 0 && r0 + 1 < rows as i64 && lo >= 0 && hi < cols as i64 {
                    let (ty, tx) = (sr - fr, sc - fc);
                    let (r0, lo, n) = (r0 as usize, lo as usize, end - start);
                    let a = &data[r0 * cols + lo..r0 * cols + lo + n + 1];
                    let b = &data[(r0 + 1) * cols + lo..(r0 + 1) * cols + lo + n + 1];
                    let seg = &mut orow[start..end];
                    for ((o, (a0, a1)), (b0, b1)) in seg
                        .iter_mut()
                        .zip(a.iter().zip(&a[1..]))
                        .zip(b.iter().zip(&b[1..]))
                    {
                        let top = a0 + tx * (a1 - a0);
                        let bot = b0 + tx * (b1 - b0);
                        *o = top + ty * (bot - top);
                    }
                    if has_nan {
                        for (i, o) in seg.iter_mut().enumerate() {
                            if o.is_nan() {
                                let c = start + i;
                                *o = bilinear(data, rows, cols, r as f32 - dv[c], c as f32 - du[c]);
                            }
                        }
                    }
                    done = true;
                }
            }
            if !done && inside && small {
                // Every source position is inside the grid: compute indices and
                // weights in one branch-free pass (vectorisable), then gather.
                // Inside, `fr` and `fc` are ≥ 0.5 (and below 2²¹ on a small
                // grid), so `floor_small` is the truncation `as i32` was,
                // without its per-lane range fix-ups.
                let n = end - start;
                let (mut kr, mut kc) = ([0i32; SEGMENT], [0i32; SEGMENT]);
                let (mut ty, mut tx) = ([0f32; SEGMENT], [0f32; SEGMENT]);
                // A whole segment in a loop of fixed length (it vectorises;
                // the column `start + i` is exact in f32 on a small grid
                // either way); a short last segment cell by cell.
                let (rf, cf) = (r as f32, start as f32);
                match (
                    <&[f32; SEGMENT]>::try_from(&du[start..end]),
                    <&[f32; SEGMENT]>::try_from(&dv[start..end]),
                ) {
                    (Ok(su), Ok(sv)) => {
                        for i in 0..SEGMENT {
                            let fr = rf - sv[i] + 1.0;
                            let fc = (cf + i as f32) - su[i] + 1.0;
                            kr[i] = floor_small(fr);
                            kc[i] = floor_small(fc);
                            ty[i] = fr - kr[i] as f32;
                            tx[i] = fc - kc[i] as f32;
                        }
                    }
                    _ => {
                        for i in 0..n {
                            let fr = rf - dv[start + i] + 1.0;
                            let fc = (start + i) as f32 - du[start + i] + 1.0;
                            kr[i] = floor_small(fr);
                            kc[i] = floor_small(fc);
                            ty[i] = fr - kr[i] as f32;
                            tx[i] = fc - kc[i] as f32;
                        }
                    }
                }
                let (last_r, last_c) = (rows as i32 - 1, cols as i32 - 1);
                // Every source position at least one cell inside the grid's
                // edges (for each cell, `r − dv` lies between `sr_lo` and
                // `sr_hi` in f32 too, rounding being monotone; the same for
                // columns): the four neighbours of every cell are `k, k + 1,
                // k + cols, k + cols + 1` from `k = (kr − 1)·cols + kc − 1`,
                // which the clamps of the general loop leave as they are.
                // Two bounds checks per cell instead of four, and no clamps.
                // (Two loops, sharing only `gathered`: one loop testing this
                // per cell, or the whole loop bodies as closures, was slower.)
                let interior = sr_lo >= 0.0
                    && sc_lo >= 0.0
                    && sr_hi + 1.0 < rows as f32
                    && sc_hi + 1.0 < cols as f32;
                if interior {
                    for i in 0..n {
                        // kr, kc ≥ 1 here.
                        let k = (kr[i] - 1) as usize * cols + (kc[i] - 1) as usize;
                        let (v00, v01) = (data[k], data[k + 1]);
                        let (v10, v11) = (data[k + cols], data[k + cols + 1]);
                        let c = start + i;
                        orow[c] = gathered([v00, v01, v10, v11], tx[i], ty[i], || {
                            bilinear(data, rows, cols, r as f32 - dv[c], c as f32 - du[c])
                        });
                    }
                } else {
                    for i in 0..n {
                        let r0 = (kr[i] - 1).clamp(0, last_r) as usize;
                        let r1 = kr[i].clamp(0, last_r) as usize;
                        let c0 = (kc[i] - 1).clamp(0, last_c) as usize;
                        let c1 = kc[i].clamp(0, last_c) as usize;
                        let (v00, v01) = (data[r0 * cols + c0], data[r0 * cols + c1]);
                        let (v10, v11) = (data[r1 * cols + c0], data[r1 * cols + c1]);
                        let c = start + i;
                        orow[c] = gathered([v00, v01, v10, v11], tx[i], ty[i], || {
                            bilinear(data, rows, cols, r as f32 - dv[c], c as f32 - du[c])
                        });
                    }
                }
                done = true;
            }
            if !done {
                for c in start..end {
                    orow[c] = bilinear(data, rows, cols, r as f32 - dv[c], c as f32 - du[c]);
                }
            }
            start = end;
        }
        if let Some(t) = dry_below {
            // NaN fails the comparison and stays NaN.
            orow.iter_mut()
                .for_each(|v| *v = if *v < t { 0.0 } else { *v });
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Blocks filled with one value and blocks left unknown, on this
    /// thread, so that tests can tell that they took those paths.
    static BLOCKS_TAKEN: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// What the warp does with a block of [`BLOCK_ROWS`] × [`BLOCK_COLS`]
/// cells.
#[derive(Clone, Copy)]
enum Block {
    /// Segment by segment.
    Segments,
    /// Every segment would take the constant path with this value.
    Fill(f32),
    /// Every segment's source lies outside the grid or on no data only:
    /// every cell is unknown (NaN).
    Unknown,
}

/// For the block row starting at row `r_first` (the rows' weights `ry`
/// over the widened displacement rows `wu`, `wv`, `cols` wide), what the
/// warp does with each block of [`BLOCK_COLS`] columns ([`Block`]).
///
/// A cell's displacement is `a + w·(b − a)`, `0 ≤ w ≤ 1`, between two
/// widened rows, so it lies within their range over the block's columns
/// (widened by a margin for the f32 rounding); the block's source region
/// then holds every segment's (clamping is monotone). Where the block's
/// region lies inside the grid, in tiles of one value
/// ([`Tiles::uniform`]), each segment would find that value in its own
/// tiles; where the region lies beyond an edge of the grid, so does each
/// segment's; where it holds only no data, so does each segment's.
fn uniform_blocks(
    tiles: &Tiles,
    wu: &[f32],
    wv: &[f32],
    ry: &[(usize, usize, f32)],
    r_first: usize,
    (rows, cols): (usize, usize),
    filled: &mut [Block],
) {
    let (imin, imax) = ry.iter().fold((usize::MAX, 0), |(a, b), &(i0, i1, _)| {
        (a.min(i0).min(i1), b.max(i0).max(i1))
    });
    let r_last = r_first + ry.len() - 1;
    let (rmax, cmax) = (rows as f32 - 0.5, cols as f32 - 0.5);
    for (b, fill) in filled.iter_mut().enumerate() {
        *fill = Block::Segments;
        let (c_first, c_end) = (b * BLOCK_COLS, ((b + 1) * BLOCK_COLS).min(cols));
        let (mut umin, mut umax) = (f32::INFINITY, f32::NEG_INFINITY);
        let (mut vmin, mut vmax) = (f32::INFINITY, f32::NEG_INFINITY);
        for i in imin..=imax {
            let (lo, hi) = value_range(&wu[i * cols + c_first..i * cols + c_end]);
            (umin, umax) = (umin.min(lo), umax.max(hi));
            let (lo, hi) = value_range(&wv[i * cols + c_first..i * cols + c_end]);
            (vmin, vmax) = (vmin.min(lo), vmax.max(hi));
        }
        let margin = 1e-3 * (1.0 + umin.abs().max(umax.abs()).max(vmin.abs()).max(vmax.abs()));
        let (umin, umax, vmin, vmax) = (umin - margin, umax + margin, vmin - margin, vmax + margin);
        let (sr_lo, sr_hi) = (r_first as f32 - vmax, r_last as f32 - vmin);
        let (sc_lo, sc_hi) = (c_first as f32 - umax, (c_end - 1) as f32 - umin);
        if sr_hi < -0.5 || sc_hi < -0.5 || sr_lo > rmax || sc_lo > cmax {
            *fill = Block::Unknown;
            continue;
        }
        let (r0, r1) = (clamp_index(sr_lo, rows), clamp_index(sr_hi + 1.0, rows));
        let (c0, c1) = (clamp_index(sc_lo, cols), clamp_index(sc_hi + 1.0, cols));
        let inside = sr_lo >= -0.5 && sc_lo >= -0.5 && sr_hi <= rmax && sc_hi <= cmax;
        if let Some(v) = inside.then(|| tiles.uniform(r0, r1, c0, c1)).flatten() {
            *fill = Block::Fill(v);
        } else if tiles.all_nan(r0, r1, c0, c1) {
            *fill = Block::Unknown;
        }
    }
    #[cfg(test)]
    for fill in filled.iter() {
        BLOCKS_TAKEN.with(|b| {
            let (f, u) = b.get();
            match fill {
                Block::Segments => {}
                Block::Fill(_) => b.set((f + 1, u)),
                Block::Unknown => b.set((f, u + 1)),
            }
        });
    }
}

/// A per-cell gather's value from its four neighbours `v` and fractions:
/// the bilinear value where all four are known, NaN where none is
/// (`bilinear`'s renormalisation has no weight there), else `renormalised`
/// (`bilinear` at the cell's position, which weighs the known ones).
#[inline(always)]
fn gathered(v: [f32; 4], tx: f32, ty: f32, renormalised: impl FnOnce() -> f32) -> f32 {
    let s = lerp4(v, tx, ty);
    if s.is_finite() {
        s
    } else if v.iter().all(|x| x.is_nan()) {
        f32::NAN
    } else {
        renormalised()
    }
}

/// Minimum and maximum of a segment of finite values: exact in any order,
/// so a full segment is reduced in eight lanes (it vectorises; a fold over
/// the cells is one dependent chain of comparisons).
#[inline(always)]
fn span(xs: &[f32]) -> (f32, f32) {
    const H: usize = SEGMENT / 2;
    let Ok(a) = <&[f32; SEGMENT]>::try_from(xs) else {
        return value_range(xs);
    };
    let (mut lo, mut hi) = ([0f32; H], [0f32; H]);
    for k in 0..H {
        let (x, y) = (a[k], a[k + H]);
        lo[k] = if y < x { y } else { x };
        hi[k] = if y > x { y } else { x };
    }
    let mut w = H;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            lo[k] = if lo[k + w] < lo[k] { lo[k + w] } else { lo[k] };
            hi[k] = if hi[k + w] > hi[k] { hi[k + w] } else { hi[k] };
        }
    }
    (lo[0], hi[0])
}

/// `(x.max(0.0) as usize).min(n − 1)`, the index of a position clamped
/// into `0..n`; for `n < 2²¹` without the float-to-usize conversion's range
/// fix-ups (the same value).
#[inline(always)]
fn clamp_index(x: f32, n: usize) -> usize {
    if n < 1 << 21 {
        floor_small(x.max(0.0).min((n - 1) as f32)) as usize
    } else {
        (x.max(0.0) as usize).min(n - 1)
    }
}

/// `out[c] = a[c] + w·(b[c] − a[c])` over equal-length rows.
fn lerp_into(out: &mut [f32], a: &[f32], b: &[f32], w: f32) {
    let n = out.len();
    let (a, b) = (&a[..n], &b[..n]);
    for c in 0..n {
        out[c] = a[c] + w * (b[c] - a[c]);
    }
}

/// Warps a field by one displacement (see `warp_into`).
pub fn warp(src: &ArrayView2<f32>, d: &Displacement) -> Result<Array2<f32>, ExtrapolateError> {
    if src.dim() != d.shape {
        return Err(ExtrapolateError::ShapeMismatch {
            field: src.dim(),
            motion: d.shape,
        });
    }
    let img = Img::from_view(src);
    let mut out = Vec::new();
    warp_into(&img, d, None, &mut out);
    Ok(Img {
        rows: d.shape.0,
        cols: d.shape.1,
        data: out,
    }
    .into_array())
}

/// Extrapolates `field` (any quantity; typically mm/h, NaN = no data) to each
/// lead in `leads_steps`, in the order given.
pub fn extrapolate(
    field: &ArrayView2<f32>,
    motion: &MotionField,
    leads_steps: &[f32],
) -> Result<Vec<Array2<f32>>, ExtrapolateError> {
    if field.dim() != motion.shape {
        return Err(ExtrapolateError::ShapeMismatch {
            field: field.dim(),
            motion: motion.shape,
        });
    }
    let img = Img::from_view(field);
    displacements(motion, leads_steps)?
        .iter()
        .map(|d| {
            let mut out = Vec::new();
            warp_into(&img, d, None, &mut out);
            Ok(Img {
                rows: d.shape.0,
                cols: d.shape.1,
                data: out,
            }
            .into_array())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::Img;

    /// The tile summaries of a plain cell-by-cell pass over every cell of
    /// each tile, in row order: `(min, max, any NaN, all NaN)` per tile.
    fn tiles_cell_by_cell(data: &[f32], rows: usize, cols: usize) -> Vec<(f32, f32, bool, bool)> {
        let (tr, tc) = (rows.div_ceil(TILE), cols.div_ceil(TILE));
        let mut out = Vec::new();
        for a in 0..tr {
            for b in 0..tc {
                let (mut lo, mut hi, mut nan, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0, 0);
                for r in a * TILE..((a + 1) * TILE).min(rows) {
                    for c in b * TILE..((b + 1) * TILE).min(cols) {
                        let v = data[r * cols + c];
                        lo = lo.min(v);
                        hi = hi.max(v);
                        nan += v.is_nan() as usize;
                        n += 1;
                    }
                }
                out.push((lo, hi, nan > 0, nan == n));
            }
        }
        out
    }

    #[test]
    fn lane_tiles_equal_cell_by_cell_tiles() {
        // Grids with and without a narrow last tile row and column, tiles
        // all NaN, partly NaN, constant, with ±∞, and random values.
        let mut seed = 11u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for (rows, cols) in [(1, 1), (5, 7), (16, 16), (17, 33), (64, 48), (100, 131)] {
            for kind in 0..4 {
                let data: Vec<f32> = (0..rows * cols)
                    .map(|i| {
                        let x = rnd();
                        match kind {
                            0 => x * 100.0 - 50.0,
                            1 if x < 0.3 => f32::NAN,
                            1 => x,
                            2 if (i / cols) % 32 < 16 => f32::NAN,
                            2 => 2.5,
                            _ if x < 0.05 => f32::INFINITY,
                            _ if x < 0.1 => f32::NEG_INFINITY,
                            _ if x < 0.4 => f32::NAN,
                            _ => (x * 8.0).floor(),
                        }
                    })
                    .collect();
                let t = Tiles::new(&data, rows, cols);
                let lanes: Vec<(f32, f32, bool, bool)> = (0..t.min.len())
                    .map(|k| (t.min[k], t.max[k], t.any_nan[k], t.all_nan[k]))
                    .collect();
                let want = tiles_cell_by_cell(&data, rows, cols);
                assert_eq!(lanes.len(), want.len());
                for (k, (got, want)) in lanes.iter().zip(&want).enumerate() {
                    // Bits of the minimum and maximum, so that a constant
                    // block is filled with the very same value.
                    let bits =
                        |x: &(f32, f32, bool, bool)| (x.0.to_bits(), x.1.to_bits(), x.2, x.3);
                    assert_eq!(
                        bits(got),
                        bits(want),
                        "{rows}×{cols}, kind {kind}, tile {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn segment_helpers_equal_their_plain_forms() {
        // `span`: the fold over the cells the warp used until issue 16's
        // fifth pass (full and short segments, signed zeros, ties).
        let fold = |xs: &[f32]| {
            xs.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| {
                (if x < lo { x } else { lo }, if x > hi { x } else { hi })
            })
        };
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 40.0
        };
        for len in [1, 5, SEGMENT - 1, SEGMENT, SEGMENT, SEGMENT] {
            for _ in 0..200 {
                let xs: Vec<f32> = (0..len).map(|_| rnd()).collect();
                assert_eq!(span(&xs), fold(&xs), "{xs:?}");
            }
        }
        let zeros = [0.0f32, -0.0, 0.0, 3.0, -0.0, 1.0, 1.0, -2.0];
        let (lo, hi) = span(&[zeros, zeros].concat());
        assert_eq!((lo, hi), (-2.0, 3.0));
        // `clamp_index`: the saturating conversion, on grids small and huge.
        for n in [1usize, 2, 512, 2200, 1 << 21, 1 << 22] {
            for x in [
                -1e9f32,
                -3.5,
                -0.5,
                -0.0,
                0.0,
                0.49,
                0.5,
                1.0,
                1.999,
                510.7,
                511.0,
                511.5,
                2199.9,
                4.0e6,
                1e12,
                f32::NAN,
            ] {
                assert_eq!(
                    clamp_index(x, n),
                    (x.max(0.0) as usize).min(n - 1),
                    "{x} {n}"
                );
            }
        }
    }

    /// Every path of the warp but the constant shift (the interior and
    /// the general per-cell gather, sources partly or wholly outside, no
    /// data, constant and all-NaN tiles) gives, cell by cell and bit for
    /// bit, `bilinear` at the cell's displaced position, with the
    /// displacement interpolated as the warp does (along the row from the
    /// coarse grid, then down the column). Rotations, so that the
    /// displacement varies within every segment (the constant shift, which
    /// uses the segment's mean, never applies).
    #[test]
    fn warp_is_bilinear_at_each_displaced_position() {
        let (rows, cols, factor) = (70usize, 90usize, 4usize);
        let mut rng = crate::synth::SplitMix64::new(5);
        let data: Vec<f32> = (0..rows * cols)
            .map(|k| {
                let (r, c) = (k / cols, k % cols);
                match (r, c) {
                    (10..=40, 60..=89) => f32::NAN, // all-NaN tiles, at an edge
                    (50..=53, 20..=23) => f32::NAN, // a hole inside
                    (0..=33, 0..=33) => 4.5,        // constant tiles
                    _ => rng.uniform(0.0, 20.0) as f32,
                }
            })
            .collect();
        let src = Img { rows, cols, data };
        let (rc, cc) = (rows as f32 / 2.0, cols as f32 / 2.0);
        for (omega, shift) in [
            (0.05f32, (3.3f32, -2.1f32)),
            (0.2, (0.0, 0.0)),
            (0.01, (-0.4, 0.7)),
        ] {
            // Rotation about the grid's centre.
            let d = coarse_displacement((rows, cols), factor, |k, r, c| match k {
                0 => shift.0 - omega * (r - rc),
                _ => shift.1 + omega * (c - cc),
            });
            assert_bilinear(&src, &d, &format!("omega {omega}"));
        }
    }

    /// A displacement on the coarse grid of `factor` for a grid of `shape`:
    /// component `k` (0: `du`, 1: `dv`) at each coarse cell is `f(k, r, c)`
    /// of the cell's centre in full-resolution pixels (all of `du` first).
    fn coarse_displacement(
        shape: (usize, usize),
        factor: usize,
        mut f: impl FnMut(usize, f32, f32) -> f32,
    ) -> Displacement {
        let (wr, wc) = (shape.0.div_ceil(factor), shape.1.div_ceil(factor));
        let centre = |i: usize| (i as f32 + 0.5) * factor as f32 - 0.5;
        let mut component = |k: usize| Img {
            rows: wr,
            cols: wc,
            data: (0..wr * wc)
                .map(|i| f(k, centre(i / wc), centre(i % wc)))
                .collect(),
        };
        Displacement {
            du: component(0),
            dv: component(1),
            factor: factor as f32,
            shape,
            lead_steps: 1.0,
        }
    }

    /// Asserts that [`warp_into`] gives, at every cell, the bits of
    /// `bilinear` at the cell's displaced position (NaN for NaN).
    fn assert_bilinear(src: &Img, d: &Displacement, case: &str) {
        let (rows, cols) = (src.rows, src.cols);
        let (wr, wc, factor) = (d.du.rows, d.du.cols, d.factor);
        let mut out = Vec::new();
        warp_into(src, d, None, &mut out);
        let ry = axis_weights(wr, rows, 1.0 / factor);
        let cx = axis_weights(wc, cols, 1.0 / factor);
        let along = |img: &Img, i: usize, c: usize| {
            let (j0, j1, t) = cx[c];
            let row = &img.data[i * wc..(i + 1) * wc];
            row[j0] + t * (row[j1] - row[j0])
        };
        for r in 0..rows {
            let (i0, i1, wy) = ry[r];
            for c in 0..cols {
                let down = |img: &Img| {
                    let (a, b) = (along(img, i0, c), along(img, i1, c));
                    a + wy * (b - a)
                };
                let (du, dv) = (down(&d.du), down(&d.dv));
                let want = bilinear(&src.data, rows, cols, r as f32 - dv, c as f32 - du);
                let got = out[r * cols + c];
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{case}, cell ({r}, {c}): {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn whole_blocks_equal_the_cell_by_cell_warp() {
        // Blocks of one dry or one rainy value, of no data only, and blocks
        // whose source lies beyond an edge of the grid (the block paths),
        // beside noise and edges (the segments); a dry field with rain
        // dots on a lattice, where a block's source region drawn too small
        // would miss a dot; and bands of whole rows of one value. Motions:
        // shifts, rotations, divergences and noise on the coarse grid,
        // large enough to move blocks' sources across all of them.
        let (rows, cols, factor) = (112usize, 300usize, 4usize);
        let mut rng = crate::synth::SplitMix64::new(11);
        let regions: Vec<f32> = (0..rows * cols)
            .map(|k| match (k / cols, k % cols) {
                (0..=70, 0..=140) => 0.0,
                (0..=50, 141..=229) => 7.25,
                (60..=111, 200..=299) => f32::NAN,
                (90..=111, 0..=60) => rng.uniform(0.0, 20.0) as f32,
                (r, c) if (r + c) % 37 == 0 => 1.5,
                _ => 0.0,
            })
            .collect();
        let dots: Vec<f32> = (0..rows * cols)
            .map(|k| match (k / cols % 48, k % cols % 80) {
                // On the first and the last row and column of a tile.
                (32, 48) | (15, 15) => 2.0,
                _ => 0.0,
            })
            .collect();
        // Bands of whole rows of one value (dry, rain, no data): rows whose
        // blocks are all filled or unknown, which take no displacement.
        let bands: Vec<f32> = (0..rows * cols)
            .map(|k| match k / cols {
                0..=47 => 0.0,
                48..=79 => 3.5,
                _ => f32::NAN,
            })
            .collect();
        let (rc, cc) = (rows as f32 / 2.0, cols as f32 / 2.0);
        let before = BLOCKS_TAKEN.with(|b| b.get());
        for case in 0..40 {
            // (rotation, divergence, shift, noise)
            let (omega, div, shift, noise) = match case {
                0 => (0.0f32, 0.0f32, (5.5f32, 3.25f32), 0.0f32),
                1 => (0.0, 0.0, (-40.0, 12.0), 0.0),
                2 => (0.0, 0.0, (130.0, -70.0), 0.0),
                3 => (0.01, 0.0, (0.0, 0.0), 0.0),
                4 => (0.03, 0.0, (-20.0, 9.0), 0.0),
                _ => (
                    rng.uniform(-0.05, 0.05) as f32,
                    rng.uniform(-0.4, 0.4) as f32,
                    (
                        rng.uniform(-30.0, 30.0) as f32,
                        rng.uniform(-30.0, 30.0) as f32,
                    ),
                    rng.uniform(0.0, 3.0) as f32,
                ),
            };
            let d = coarse_displacement((rows, cols), factor, |k, r, c| {
                let jitter = noise * rng.uniform(-1.0, 1.0) as f32;
                jitter
                    + match k {
                        0 => shift.0 - omega * (r - rc) + div * (c - cc),
                        _ => shift.1 + omega * (c - cc) + div * (r - rc),
                    }
            });
            for (name, data) in [("regions", &regions), ("dots", &dots), ("bands", &bands)] {
                let src = Img {
                    rows,
                    cols,
                    data: data.clone(),
                };
                let what = format!(
                    "{name}: rotation {omega}, divergence {div}, shift {shift:?}, noise {noise}"
                );
                assert_bilinear(&src, &d, &what);
            }
        }
        let (filled, unknown) = BLOCKS_TAKEN.with(|b| b.get());
        assert!(
            filled > before.0 + 10 && unknown > before.1 + 10,
            "the block paths were not taken: {filled} filled, {unknown} unknown"
        );
    }

    #[test]
    fn unknown_rows_after_rain_are_unknown() {
        // Rows whose cells are unknown right after rows of rain (a warp
        // that made each row in one reused buffer would have to write
        // their NaN itself; docs/PERFORMANCE.md, "Issue 16, session 34").
        // No data from a block row's first row (32) and from a row inside
        // a block row (40), and sources beyond the grid's southern edge:
        // the segments' all-no-data and outside paths; whole unknown
        // blocks further down.
        let (rows, cols, factor) = (80usize, 200usize, 4usize);
        let mut rng = crate::synth::SplitMix64::new(5);
        let before = BLOCKS_TAKEN.with(|b| b.get());
        for first_unknown in [32usize, 40] {
            let data: Vec<f32> = (0..rows * cols)
                .map(|k| {
                    if k / cols >= first_unknown {
                        f32::NAN
                    } else {
                        rng.uniform(0.5, 20.0) as f32
                    }
                })
                .collect();
            let src = Img { rows, cols, data };
            for shift in [(0.0f32, 0.0f32), (0.5, 0.25), (-2.5, 1.75), (0.0, -60.0)] {
                let d = coarse_displacement((rows, cols), factor, |k, _, _| match k {
                    0 => shift.0,
                    _ => shift.1,
                });
                let case = format!("no data from row {first_unknown}, shift {shift:?}");
                assert_bilinear(&src, &d, &case);
            }
        }
        // Rain everywhere, and from row 32 down sources beyond the southern
        // edge (the displacement jumps between two rows of its coarse
        // grid): the rows just above are rain.
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| rng.uniform(0.5, 20.0) as f32)
            .collect();
        let src = Img { rows, cols, data };
        let d = coarse_displacement((rows, cols), factor, |k, r, _| {
            if k == 1 && r > 31.5 {
                -100.0
            } else {
                0.0
            }
        });
        assert_bilinear(&src, &d, "sources beyond the edge from row 32");
        let (_, unknown) = BLOCKS_TAKEN.with(|b| b.get());
        assert!(unknown > before.1, "no block was left unknown");
    }

    fn blob(rows: usize, cols: usize, r0: f32, c0: f32, sigma: f32) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            let d2 = (r as f32 - r0).powi(2) + (c as f32 - c0).powi(2);
            10.0 * (-d2 / (2.0 * sigma * sigma)).exp()
        })
    }

    fn centroid(a: &Array2<f32>) -> (f32, f32) {
        let (mut s, mut sr, mut sc) = (0.0, 0.0, 0.0);
        for ((r, c), v) in a.indexed_iter() {
            if v.is_finite() {
                s += v;
                sr += v * r as f32;
                sc += v * c as f32;
            }
        }
        (sr / s, sc / s)
    }

    #[test]
    fn a_halved_displacement_is_the_same_motion_on_the_grid_of_blocks() {
        // A displacement linear in the position (which the bilinear
        // interpolation between coarse cells reproduces exactly away from
        // the edges), on a grid of 90 × 70 cells with coarse cells of 6.
        // On the grid of 2 × 2 blocks (45 × 35), a block's centre lies at
        // the full grid's (2i + 1/2, 2j + 1/2): its displacement is half
        // the full grid's there, in block pixels.
        let (rows, cols, factor) = (90usize, 70usize, 6usize);
        let u = |r: f32, c: f32| 3.0 + 0.05 * r - 0.02 * c;
        let v = |r: f32, c: f32| -1.5 + 0.01 * r + 0.04 * c;
        let d = coarse_displacement(
            (rows, cols),
            factor,
            |k, r, c| {
                if k == 0 {
                    u(r, c)
                } else {
                    v(r, c)
                }
            },
        );
        let h = d.halved();
        assert_eq!(h.shape(), (45, 35));
        for i in 2..43 {
            for j in 2..33 {
                let (r, c) = (2.0 * i as f32 + 0.5, 2.0 * j as f32 + 0.5);
                let (hu, hv) = h.at(i, j);
                assert!((hu - 0.5 * u(r, c)).abs() < 1e-4, "({i}, {j}): du {hu}");
                assert!((hv - 0.5 * v(r, c)).abs() < 1e-4, "({i}, {j}): dv {hv}");
            }
        }
    }

    #[test]
    fn uniform_motion_moves_a_blob_exactly() {
        let f = blob(80, 100, 30.0, 20.0, 4.0);
        let m = MotionField::uniform((80, 100), 3.0, 1.0);
        let out = extrapolate(&f.view(), &m, &[0.0, 2.0, 5.0, 2.5]).expect("extrapolate");
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], f, "lead 0 is the field itself");
        // Integer shifts are exact copies.
        assert_eq!(out[1][[32, 26]], f[[30, 20]]);
        assert_eq!(out[2][[35, 35]], f[[30, 20]]);
        let (r, c) = centroid(&out[3]);
        assert!(
            (r - 32.5).abs() < 0.05 && (c - 27.5).abs() < 0.05,
            "({r}, {c})"
        );
    }

    #[test]
    fn inflow_and_nodata_become_nan() {
        let mut f = Array2::<f32>::from_elem((20, 20), 1.0);
        f[[10, 10]] = f32::NAN;
        let m = MotionField::uniform((20, 20), 2.0, 0.0);
        let out = extrapolate(&f.view(), &m, &[3.0]).expect("extrapolate");
        let o = &out[0];
        // 3 steps of 2 px: columns 0..=5 draw from beyond the west edge.
        assert!(o[[5, 0]].is_nan() && o[[5, 5]].is_nan());
        assert_eq!(o[[5, 6]], 1.0, "source col 0 is inside");
        assert!(o[[10, 16]].is_nan(), "no data moved along");
        assert_eq!(o[[10, 17]], 1.0);
        assert_eq!(o[[11, 16]], 1.0);
    }

    #[test]
    fn many_steps_do_not_smear() {
        // A sharp 1-px line moved by a fractional speed: interpolating once
        // keeps its peak; repeated step-by-step interpolation would flatten it.
        let mut f = Array2::<f32>::zeros((10, 200));
        for r in 0..10 {
            f[[r, 20]] = 8.0;
        }
        let m = MotionField::uniform((10, 200), 1.5, 0.0);
        let out = extrapolate(&f.view(), &m, &[10.0, 11.0]).expect("extrapolate");
        assert_eq!(out[0][[5, 35]], 8.0, "10 × 1.5 = 15 px, exact");
        let peak = out[1].row(5).iter().copied().fold(0.0, f32::max);
        assert!(
            (peak - 4.0).abs() < 1e-4,
            "one interpolation halves a line once: {peak}"
        );
    }

    #[test]
    fn lane_steps_equal_cell_by_cell_steps() {
        // A 13 × 21 working grid (two whole lanes of 8 and a short one),
        // factor 3, a rotating flow with a jet strong enough to carry
        // sources beyond every edge (where the samples clamp).
        let (rows, cols, factor) = (13usize, 21usize, 3usize);
        let (mut u, mut v) = (Img::filled(rows, cols, 0.0), Img::filled(rows, cols, 0.0));
        for r in 0..rows {
            for c in 0..cols {
                let (y, x) = (r as f32 - 6.3, c as f32 - 9.7);
                u.data[r * cols + c] = -0.9 * y + 7.0 * (0.37 * r as f32).sin();
                v.data[r * cols + c] = 0.8 * x - 5.0 * (0.23 * c as f32).cos();
            }
        }
        let m = MotionField {
            u,
            v,
            factor,
            shape: (rows * factor, cols * factor),
        };
        let f = factor as f32;
        // The midpoint step of one cell, written out as it was before the
        // lanes.
        let step = |i: usize, j: usize, du: f32, dv: f32, h: f32| -> (f32, f32) {
            let (pr, pc) = (i as f32 - dv / f, j as f32 - du / f);
            let (u1, v1) = sample_clamped(&m.u, &m.v, pr, pc);
            let (mr, mc) = (pr - 0.5 * h * v1 / f, pc - 0.5 * h * u1 / f);
            let (u2, v2) = sample_clamped(&m.u, &m.v, mr, mc);
            (h * u2, h * v2)
        };
        let (mut du, mut dv) = (vec![0f32; rows * cols], vec![0f32; rows * cols]);
        let (mut eu, mut ev) = (du.clone(), dv.clone());
        let mut clamped = 0;
        for h in [1.0, 1.0, 0.37, 1.0, 1.0, 1.0] {
            advance(&m, &mut du, &mut dv, h);
            for i in 0..rows {
                for j in 0..cols {
                    let k = i * cols + j;
                    let (a, b) = step(i, j, eu[k], ev[k], h);
                    eu[k] += a;
                    ev[k] += b;
                    let (sr, sc) = (i as f32 - ev[k] / f, j as f32 - eu[k] / f);
                    clamped += usize::from(
                        sr < 0.0 || sc < 0.0 || sr > (rows - 1) as f32 || sc > (cols - 1) as f32,
                    );
                }
            }
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&du), bits(&eu), "h {h}");
            assert_eq!(bits(&dv), bits(&ev), "h {h}");
        }
        assert!(clamped > 20, "sources beyond the edges: {clamped}");
    }

    #[test]
    fn rotating_motion_follows_curved_trajectories() {
        // Solid rotation about the centre: 0.05 rad per step.
        let (rows, cols) = (64, 64);
        let w = 0.05f32;
        let mut u = Img::filled(rows, cols, 0.0);
        let mut v = Img::filled(rows, cols, 0.0);
        for r in 0..rows {
            for c in 0..cols {
                let (y, x) = (r as f32 + 0.5 - 32.0, c as f32 + 0.5 - 32.0);
                u.data[r * cols + c] = -w * y;
                v.data[r * cols + c] = w * x;
            }
        }
        let m = MotionField {
            u,
            v,
            factor: 1,
            shape: (rows, cols),
        };
        let f = blob(rows, cols, 31.5, 51.5, 2.0); // 20 px east of the centre
        let out = extrapolate(&f.view(), &m, &[10.0]).expect("extrapolate");
        let (r, c) = centroid(&out[0]);
        // After 0.5 rad: x = 20 cos 0.5, y = 20 sin 0.5.
        let (er, ec) = (31.5 + 20.0 * 0.5f32.sin(), 31.5 + 20.0 * 0.5f32.cos());
        assert!(
            (r - er).abs() < 0.5 && (c - ec).abs() < 0.5,
            "({r}, {c}) vs ({er}, {ec})"
        );
    }

    #[test]
    fn dry_below_equals_a_threshold_pass_after_the_warp() {
        // Fractional motion smears rain edges into small values; the fused
        // threshold gives the bits of a separate pass, NaN kept.
        let mut f = blob(60, 70, 25.0, 30.0, 5.0);
        f[[10, 10]] = f32::NAN;
        let m = MotionField::uniform((60, 70), 1.3, -0.7);
        let d = displacements(&m, &[2.5]).expect("displacements");
        let img = Img::from_view(&f.view());
        let (mut plain, mut fused) = (Vec::new(), Vec::new());
        warp_into(&img, &d[0], None, &mut plain);
        warp_into(&img, &d[0], Some(0.1), &mut fused);
        assert!(plain.iter().any(|v| *v > 0.0 && *v < 0.1), "edges to clip");
        assert!(plain.iter().any(|v| v.is_nan()));
        for (p, q) in plain.iter().zip(&fused) {
            let want = if *p < 0.1 { 0.0 } else { *p };
            assert_eq!(want.to_bits(), q.to_bits());
        }
    }

    #[test]
    fn bad_requests_are_errors() {
        let f = Array2::<f32>::zeros((5, 5));
        let m = MotionField::zero((5, 6));
        assert!(matches!(
            extrapolate(&f.view(), &m, &[1.0]),
            Err(ExtrapolateError::ShapeMismatch { .. })
        ));
        let m = MotionField::zero((5, 5));
        assert!(matches!(
            extrapolate(&f.view(), &m, &[f32::NAN]),
            Err(ExtrapolateError::BadLead { .. })
        ));
        assert!(matches!(
            extrapolate(&f.view(), &m, &[-1.0]),
            Err(ExtrapolateError::BadLead { .. })
        ));
    }
}
