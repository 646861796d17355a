//! Synthetic rain: moving, growing and decaying rain cells on any [`Grid`].
//!
//! Used by tests (a motion with a known answer), by the demo radar of
//! `raincast run` (which writes these fields as real-format files) and by the
//! notifier's tests. Everything is a pure function of the configuration and the
//! step index, so the same seed always gives the same rain, and a long-running
//! demo can ask for step 1 000 000 without generating the steps before it.
//!
//! Model:
//! * `cells` independent *slots*. Each slot holds one rain cell at a time; when a
//!   cell's life ends, the next cell of that slot is born elsewhere. Slots are
//!   staggered so that cells are born and die at different steps.
//! * A cell is an isotropic Gaussian blob, `peak · e^(−d²/2σ²)` mm/h, with `σ`
//!   in pixels. Over its life of `L` steps its peak follows `sin(π·(age+½)/L)`:
//!   it grows, matures and decays. Its `σ` grows a little with it.
//! * Every cell moves with the same constant velocity, `velocity_px_per_step`
//!   = `(u, v)` in **pixels per step**, `u > 0` towards the east (increasing
//!   column), `v > 0` towards the **south** (increasing row). This is the
//!   convention of [`crate::motion`] too, so a motion estimate can be checked
//!   against it directly.
//! * Rates below [`SynthConfig::min_rate_mm_h`] become 0 (no rain).
//! * Optional coverage: cells outside a circle (a radar's range) are no data
//!   (`NaN`).

use crate::grid::Grid;
use crate::prep::RainField;
use chrono::{DateTime, Duration, Utc};
use ndarray::Array2;

/// A tiny, fast, well-mixed pseudo-random generator (SplitMix64, by Steele,
/// Lea and Flood). Good enough for synthetic weather; not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` (returns `lo` when `hi <= lo`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            lo
        } else {
            lo + (hi - lo) * self.next_f64()
        }
    }

    /// Mixes several words into one seed (for per-slot, per-generation streams).
    pub fn mix(words: &[u64]) -> u64 {
        let mut g = SplitMix64::new(0x243F_6A88_85A3_08D3);
        let mut acc = 0u64;
        for w in words {
            g.state ^= w.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            acc ^= g.next_u64();
        }
        acc
    }
}

/// Radar coverage: cells outside it are no data (`NaN`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coverage {
    /// Every cell has data.
    Full,
    /// A disc centred on `(centre_row, centre_col)` (fractional cell
    /// coordinates, `(0.5, 0.5)` is the centre of the first cell) with a
    /// radius in pixels, like a single radar's range.
    Circle {
        centre_row: f32,
        centre_col: f32,
        radius_px: f32,
    },
}

/// Parameters of the synthetic rain. Ranges are `(min, max)`, drawn uniformly
/// per cell.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of all random draws.
    pub seed: u64,
    /// Time of step 0 (UTC).
    pub start: DateTime<Utc>,
    /// Seconds between steps (> 0).
    pub step_s: i64,
    /// Velocity of every cell in pixels per step: `(u east, v south)`.
    pub velocity_px_per_step: (f32, f32),
    /// Number of cell slots (cells alive at once).
    pub cells: usize,
    /// Peak rain rate of a mature cell, mm/h.
    pub peak_mm_h: (f32, f32),
    /// Gaussian σ of a mature cell, pixels.
    pub sigma_px: (f32, f32),
    /// Life of a cell, steps (≥ 2).
    pub lifetime_steps: (u32, u32),
    /// Rates below this (mm/h) are set to 0.
    pub min_rate_mm_h: f32,
    /// Where the radar sees.
    pub coverage: Coverage,
}

impl SynthConfig {
    /// A reasonable default for a grid of `rows × cols`: 12 cells of 1 to 40
    /// mm/h, σ about 4 % of the grid's short side, moving east-south-east at
    /// 1 % of the long side per step, living 10 to 30 steps of 5 min.
    pub fn for_shape(rows: usize, cols: usize) -> Self {
        let short = rows.min(cols) as f32;
        let long = rows.max(cols) as f32;
        Self {
            seed: 1,
            start: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            step_s: 300,
            velocity_px_per_step: (0.01 * long, 0.004 * long),
            cells: 12,
            peak_mm_h: (1.0, 40.0),
            sigma_px: (0.025 * short, 0.06 * short),
            lifetime_steps: (10, 30),
            min_rate_mm_h: 0.1,
            coverage: Coverage::Full,
        }
    }
}

/// A deterministic synthetic radar on a grid.
#[derive(Debug, Clone)]
pub struct SynthRadar {
    grid: Grid,
    cfg: SynthConfig,
}

/// One cell at one step.
#[derive(Debug, Clone, Copy)]
struct CellNow {
    row: f32,
    col: f32,
    sigma: f32,
    peak: f32,
}

impl SynthRadar {
    /// A synthetic radar drawing rain on `grid`. Invalid ranges are sanitised
    /// (swapped, clamped to sensible minimums) rather than rejected.
    pub fn new(grid: Grid, mut cfg: SynthConfig) -> Self {
        fn order<T: PartialOrd + Copy>(r: (T, T)) -> (T, T) {
            if r.1 < r.0 {
                (r.1, r.0)
            } else {
                r
            }
        }
        cfg.peak_mm_h = order(cfg.peak_mm_h);
        cfg.sigma_px = order(cfg.sigma_px);
        cfg.sigma_px.0 = cfg.sigma_px.0.max(0.5);
        cfg.sigma_px.1 = cfg.sigma_px.1.max(cfg.sigma_px.0);
        cfg.lifetime_steps = order(cfg.lifetime_steps);
        cfg.lifetime_steps.0 = cfg.lifetime_steps.0.max(2);
        cfg.lifetime_steps.1 = cfg.lifetime_steps.1.max(cfg.lifetime_steps.0);
        cfg.step_s = cfg.step_s.max(1);
        Self { grid, cfg }
    }

    /// The grid the rain is drawn on.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The configuration (after sanitising).
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Valid time of `step` (step 0 is `config.start`).
    pub fn time_at(&self, step: i64) -> DateTime<Utc> {
        self.cfg.start + Duration::seconds(step.saturating_mul(self.cfg.step_s))
    }

    /// The last step whose time is at or before `time` (for a wall-clock demo).
    pub fn step_at_or_before(&self, time: DateTime<Utc>) -> i64 {
        (time - self.cfg.start)
            .num_seconds()
            .div_euclid(self.cfg.step_s)
    }

    /// The cells alive at `step`.
    fn cells_at(&self, step: i64) -> Vec<CellNow> {
        let cfg = &self.cfg;
        let (rows, cols) = (self.grid.rows as f64, self.grid.cols as f64);
        let (u, v) = (
            cfg.velocity_px_per_step.0 as f64,
            cfg.velocity_px_per_step.1 as f64,
        );
        let mut out = Vec::with_capacity(cfg.cells);
        for slot in 0..cfg.cells as u64 {
            // Per-slot life length and phase, fixed for the slot.
            let mut sg = SplitMix64::new(SplitMix64::mix(&[cfg.seed, slot, 0xA11CE]));
            let life = sg
                .uniform(
                    cfg.lifetime_steps.0 as f64,
                    cfg.lifetime_steps.1 as f64 + 1.0,
                )
                .floor()
                .max(2.0) as i64;
            let phase = (sg.next_f64() * life as f64) as i64;
            let t = step + phase;
            let generation = t.div_euclid(life);
            let age = t.rem_euclid(life) as f64;
            let mut g = SplitMix64::new(SplitMix64::mix(&[cfg.seed, slot, generation as u64]));
            // Birth place: anywhere in the grid, shifted upwind by half the
            // distance the cell travels in its life so cells cross the domain.
            let half_travel = (0.5 * u * life as f64, 0.5 * v * life as f64);
            let row0 = g.uniform(0.0, rows) - half_travel.1;
            let col0 = g.uniform(0.0, cols) - half_travel.0;
            let peak = g.uniform(cfg.peak_mm_h.0 as f64, cfg.peak_mm_h.1 as f64);
            let sigma = g.uniform(cfg.sigma_px.0 as f64, cfg.sigma_px.1 as f64);
            let envelope = (std::f64::consts::PI * (age + 0.5) / life as f64).sin();
            out.push(CellNow {
                row: (row0 + v * age) as f32,
                col: (col0 + u * age) as f32,
                sigma: (sigma * (0.7 + 0.3 * envelope)) as f32,
                peak: (peak * envelope) as f32,
            });
        }
        out
    }

    /// The rain field at `step`: mm/h on the grid, row 0 north, `NaN`
    /// outside the coverage.
    pub fn field(&self, step: i64) -> RainField {
        let (rows, cols) = self.grid.shape();
        let mut rate = Array2::<f32>::zeros((rows, cols));
        if let Some(buf) = rate.as_slice_mut() {
            for cell in self.cells_at(step) {
                add_blob(buf, rows, cols, cell);
            }
            let min = self.cfg.min_rate_mm_h;
            for x in buf.iter_mut() {
                if *x < min {
                    *x = 0.0;
                }
            }
            if let Coverage::Circle {
                centre_row,
                centre_col,
                radius_px,
            } = self.cfg.coverage
            {
                let r2 = radius_px * radius_px;
                for (r, row) in buf.chunks_exact_mut(cols).enumerate() {
                    let dr = r as f32 + 0.5 - centre_row;
                    for (c, x) in row.iter_mut().enumerate() {
                        let dc = c as f32 + 0.5 - centre_col;
                        if dr * dr + dc * dc > r2 {
                            *x = f32::NAN;
                        }
                    }
                }
            }
        }
        RainField {
            grid: self.grid.clone(),
            time: self.time_at(step),
            rate_mm_h: rate,
        }
    }

    /// `n` consecutive fields starting at step `first`, oldest first.
    pub fn fields(&self, first: i64, n: usize) -> Vec<RainField> {
        (0..n as i64).map(|i| self.field(first + i)).collect()
    }
}

/// Adds one Gaussian blob to a row-major buffer, touching only its ±4σ box.
fn add_blob(buf: &mut [f32], rows: usize, cols: usize, cell: CellNow) {
    if !(cell.peak > 0.0 && cell.sigma > 0.0) {
        return;
    }
    let reach = 4.0 * cell.sigma;
    // Cell centres sit at (r + 0.5, c + 0.5).
    let r_lo = (cell.row - reach - 0.5).floor().max(0.0);
    let r_hi = (cell.row + reach - 0.5).ceil().min(rows as f32 - 1.0);
    let c_lo = (cell.col - reach - 0.5).floor().max(0.0);
    let c_hi = (cell.col + reach - 0.5).ceil().min(cols as f32 - 1.0);
    if r_hi < r_lo || c_hi < c_lo {
        return;
    }
    let inv = -0.5 / (cell.sigma * cell.sigma);
    let (r_lo, r_hi, c_lo, c_hi) = (r_lo as usize, r_hi as usize, c_lo as usize, c_hi as usize);
    // Separable: exp(a + b) = exp(a)·exp(b).
    let col_w: Vec<f32> = (c_lo..=c_hi)
        .map(|c| {
            let d = c as f32 + 0.5 - cell.col;
            (d * d * inv).exp()
        })
        .collect();
    for r in r_lo..=r_hi {
        let d = r as f32 + 0.5 - cell.row;
        let wr = cell.peak * (d * d * inv).exp();
        let row = &mut buf[r * cols + c_lo..=r * cols + c_hi];
        for (x, wc) in row.iter_mut().zip(&col_w) {
            *x += wr * wc;
        }
    }
}

/// The rain of the live-skill cost benchmarks (issue 17, docs/PERFORMANCE.md
/// "Live skill cost"): 512 × 512 cells, four Gaussian rain cells (peaks of
/// 15 mm/h) drifting 3 columns east and 1 row north per step `k`, no rain
/// below 0.1 mm/h, no data outside a disk of 250 cells around the centre.
pub fn skill_cost_field(k: usize) -> Array2<f32> {
    const N: usize = 512;
    Array2::from_shape_fn((N, N), |(r, c)| {
        let (y, x) = (r as f32 - 256.0, c as f32 - 256.0);
        if x * x + y * y > 250.0 * 250.0 {
            return f32::NAN;
        }
        let mut v = 0.0f32;
        for (i, (cy, cx)) in [
            (200.0, 100.0),
            (300.0, 150.0),
            (260.0, 300.0),
            (150.0, 250.0),
        ]
        .into_iter()
        .enumerate()
        {
            let (cy, cx) = (cy - 1.0 * k as f32, cx + 3.0 * k as f32 + i as f32);
            let d2 = ((r as f32 - cy).powi(2) + (c as f32 - cx).powi(2)) / 900.0;
            v += 15.0 * (-d2).exp();
        }
        if v < 0.1 {
            0.0
        } else {
            v
        }
    })
}

/// A small grid in a local azimuthal equidistant projection, for tests,
/// benches and the demo radar: `rows × cols` cells of `cell_m` metres centred
/// on `(lon, lat)`.
pub fn local_grid(
    lon: f64,
    lat: f64,
    rows: usize,
    cols: usize,
    cell_m: f64,
) -> Result<Grid, crate::grid::GridError> {
    Grid::new(
        format!("+proj=aeqd +lat_0={lat} +lon_0={lon} +ellps=WGS84 +units=m"),
        rows,
        cols,
        cell_m,
        cell_m,
        -(cols as f64) * cell_m / 2.0,
        rows as f64 * cell_m / 2.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn radar(rows: usize, cols: usize) -> SynthRadar {
        let grid = local_grid(4.4, 50.8, rows, cols, 1000.0).expect("grid");
        SynthRadar::new(grid, SynthConfig::for_shape(rows, cols))
    }

    #[test]
    fn splitmix_is_deterministic_and_uniform() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // Known first output of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut g = SplitMix64::new(7);
        let n = 20_000;
        let mean = (0..n).map(|_| g.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn same_seed_same_rain_and_steps_are_independent() {
        let r = radar(64, 80);
        let a = r.field(17);
        let b = r.field(17);
        assert_eq!(a.rate_mm_h, b.rate_mm_h);
        assert!(a.rain_cells() > 0, "some rain");
        assert_eq!(a.nodata_cells(), 0);
        let seq = r.fields(15, 3);
        assert_eq!(seq[2].rate_mm_h, a.rate_mm_h);
        assert_eq!(seq[1].time - seq[0].time, Duration::seconds(300));
        let mut cfg = r.config().clone();
        cfg.seed = 2;
        let other = SynthRadar::new(r.grid().clone(), cfg).field(17);
        assert_ne!(other.rate_mm_h, a.rate_mm_h);
    }

    #[test]
    fn a_single_cell_moves_with_the_given_velocity() {
        let grid = local_grid(0.0, 45.0, 100, 120, 1000.0).expect("grid");
        let cfg = SynthConfig {
            velocity_px_per_step: (2.0, -1.0),
            cells: 1,
            peak_mm_h: (20.0, 20.0),
            sigma_px: (5.0, 5.0),
            lifetime_steps: (1000, 1000),
            ..SynthConfig::for_shape(100, 120)
        };
        let r = SynthRadar::new(grid, cfg);
        let centroid = |f: &RainField| {
            let (mut s, mut sr, mut sc) = (0.0f64, 0.0f64, 0.0f64);
            for ((row, col), v) in f.rate_mm_h.indexed_iter() {
                s += *v as f64;
                sr += *v as f64 * row as f64;
                sc += *v as f64 * col as f64;
            }
            (sr / s, sc / s)
        };
        // Find a step where the cell is well inside the grid.
        let step = (0..1000)
            .find(|&s| {
                let f = r.field(s);
                let g = r.field(s + 3);
                let (a, b) = (centroid(&f), centroid(&g));
                f.rain_cells() > 50
                    && [a.0, b.0].iter().all(|x| (25.0..75.0).contains(x))
                    && [a.1, b.1].iter().all(|x| (25.0..95.0).contains(x))
            })
            .expect("cell inside the grid at some step");
        let (r0, c0) = centroid(&r.field(step));
        let (r3, c3) = centroid(&r.field(step + 3));
        assert!((c3 - c0 - 6.0).abs() < 0.2, "east shift {}", c3 - c0);
        assert!((r3 - r0 + 3.0).abs() < 0.2, "south shift {}", r3 - r0);
    }

    #[test]
    fn circular_coverage_is_nodata_outside() {
        let grid = local_grid(0.0, 45.0, 50, 50, 1000.0).expect("grid");
        let cfg = SynthConfig {
            coverage: Coverage::Circle {
                centre_row: 25.0,
                centre_col: 25.0,
                radius_px: 20.0,
            },
            ..SynthConfig::for_shape(50, 50)
        };
        let f = SynthRadar::new(grid, cfg).field(3);
        assert!(f.rate_mm_h[[0, 0]].is_nan());
        assert!(f.rate_mm_h[[25, 25]].is_finite());
        let expected = (0..50)
            .flat_map(|r| (0..50).map(move |c| (r, c)))
            .filter(|(r, c)| {
                let (dr, dc) = (*r as f32 + 0.5 - 25.0, *c as f32 + 0.5 - 25.0);
                dr * dr + dc * dc > 400.0
            })
            .count();
        assert_eq!(f.nodata_cells(), expected);
    }

    #[test]
    fn cells_grow_and_decay() {
        let grid = local_grid(0.0, 45.0, 60, 60, 1000.0).expect("grid");
        let cfg = SynthConfig {
            velocity_px_per_step: (0.0, 0.0),
            cells: 1,
            lifetime_steps: (20, 20),
            ..SynthConfig::for_shape(60, 60)
        };
        let r = SynthRadar::new(grid, cfg);
        let maxes: Vec<f32> = (0..20).map(|s| r.field(s).max_mm_h()).collect();
        // One full life spans 20 steps: somewhere the peak rises, somewhere it falls.
        assert!(maxes.windows(2).any(|w| w[1] > w[0] + 0.01), "{maxes:?}");
        assert!(maxes.windows(2).any(|w| w[1] + 0.01 < w[0]), "{maxes:?}");
    }
}
