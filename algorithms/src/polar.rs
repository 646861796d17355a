//! Polar radar sweeps to Cartesian grids: the hot prep for single-radar
//! volume data (NEXRAD Level II today, any polar source tomorrow).
//!
//! # Method
//! * **Input**: one [`Sweep`]: radials of reflectivity gates (dBZ) at one
//!   elevation, with the gate geometry (slant range of the first gate's
//!   centre and the gate spacing, metres) and the centre azimuth of every
//!   radial (degrees clockwise from true north).
//! * **Grid**: an azimuthal equidistant projection centred on the radar,
//!   `+proj=aeqd +lat_0=<site lat> +lon_0=<site lon> +ellps=WGS84`, square,
//!   `2·ceil(max_range / cell)` cells a side (default 1 km cells out to
//!   250 km: 500 × 500). The radar sits exactly on the corner shared by the
//!   four middle cells, i.e. at the grid centre. In this projection the
//!   distance of a point from the origin *is* its geodesic ground distance
//!   from the radar and `atan2(x, y)` *is* its azimuth, so no projection
//!   call is needed per cell.
//! * **Beam model**: the 4/3 effective Earth radius model (Doviak & Zrnić,
//!   eq. 2.28): with `kₐ = 4/3 · 6 371 km`, elevation `θ` and slant range
//!   `r`, the beam height is `h = √(r² + kₐ² + 2 r kₐ sin θ) − kₐ + h₀` and
//!   the ground range `s = kₐ · asin(r cos θ / (kₐ + h − h₀))`. Inverted for a
//!   grid cell at ground range `s` (central angle `φ = s / kₐ`), the slant
//!   range is `r = kₐ sin φ / cos(θ + φ)` (law of sines in the triangle
//!   Earth centre – antenna – beam point). See [`slant_range_m`],
//!   [`ground_range_m`], [`beam_height_m`].
//! * **Mapping**: nearest gate. Every cell centre gets the gate whose slant
//!   range interval contains the cell's slant range, and an azimuth bin of
//!   0.1°. This per-cell work depends only on the site, the elevation
//!   (rounded to 0.1°), the gate geometry and the grid, so it is done once in
//!   [`PolarMapping::new`] and kept by the caller in a [`PolarGridder`]
//!   (the algorithms crate has no global state; the cache is a value).
//!   Per volume only a 3 600-entry azimuth table is rebuilt: each 0.1° bin
//!   points to the radial whose centre azimuth is nearest, if that radial is
//!   within 0.75 × the sweep's azimuth spacing (sector scans and partial
//!   sweeps leave the rest as no data). 1 km cells sample 250 m gates
//!   without averaging; at 250 km a 0.5° radial is 2.2 km wide, so every
//!   cell still gets its own gate.
//! * **Clutter and noise** (in polar space, before mapping, see
//!   [`filter_gates`]): gates below `min_dbz` (default 5 dBZ) and gates the
//!   radar flagged below its SNR threshold become *undetect* (`-inf` dBZ);
//!   range-folded gates are no data (NaN); then isolated gates (an echo whose
//!   8 neighbours along the radial and in the adjacent radials hold no echo)
//!   become undetect.
//! * **No data**: cells beyond `max_range`, beyond the last gate, inside the
//!   first gate (cone of silence) or in azimuths no radial covers are NaN.
//!
//! Output values are dBZ with `-inf` = undetect and NaN = no data, ready for
//! [`crate::prep`] (dBZ → mm/h through the scan's Z–R).

use crate::grid::{Grid, GridError, MAX_GRID_SIDE};
use chrono::{DateTime, Utc};
use ndarray::{Array2, ArrayView2, Axis, Slice};
use serde::{Deserialize, Serialize};

/// Mean Earth radius (m) used by the beam model.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;
/// Effective Earth radius factor for standard refraction (4/3).
pub const EFFECTIVE_RADIUS_FACTOR: f64 = 4.0 / 3.0;
/// Azimuth bins per degree in the mapping (0.1° bins).
pub const AZIMUTH_BINS_PER_DEG: usize = 10;
const AZIMUTH_BINS: usize = 360 * AZIMUTH_BINS_PER_DEG;
/// Mappings a [`PolarGridder`] keeps (most recently used first).
pub const MAPPING_CACHE_SIZE: usize = 4;
/// Marker for "no gate" / "no radial" in the mapping tables.
const NONE_U16: u16 = u16::MAX;
const NONE_U32: u32 = u32::MAX;

fn effective_radius_m() -> f64 {
    EFFECTIVE_RADIUS_FACTOR * EARTH_RADIUS_M
}

/// Slant range (m) along a beam at `elevation_deg` to the point above ground
/// range `ground_m` (4/3 effective Earth radius model). `+inf` when the beam
/// never gets there (only for elevations near 90°).
pub fn slant_range_m(ground_m: f64, elevation_deg: f64) -> f64 {
    let ka = effective_radius_m();
    let phi = ground_m / ka;
    let c = (elevation_deg.to_radians() + phi).cos();
    if c <= 0.0 {
        return f64::INFINITY;
    }
    ka * phi.sin() / c
}

/// Ground range (m) under the point at slant range `slant_m` along a beam at
/// `elevation_deg` (4/3 effective Earth radius model).
pub fn ground_range_m(slant_m: f64, elevation_deg: f64) -> f64 {
    let ka = effective_radius_m();
    let theta = elevation_deg.to_radians();
    let centre_to_beam = (slant_m * slant_m + ka * ka + 2.0 * slant_m * ka * theta.sin()).sqrt();
    ka * (slant_m * theta.cos() / centre_to_beam).asin()
}

/// Height (m) of the beam centre above the antenna's reference level plus
/// `antenna_height_m`, at slant range `slant_m` and `elevation_deg`.
pub fn beam_height_m(slant_m: f64, elevation_deg: f64, antenna_height_m: f64) -> f64 {
    let ka = effective_radius_m();
    let theta = elevation_deg.to_radians();
    (slant_m * slant_m + ka * ka + 2.0 * slant_m * ka * theta.sin()).sqrt() - ka + antenna_height_m
}

/// Why a sweep could not be gridded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolarError {
    /// A sweep or grid parameter is unusable.
    #[error("invalid {field} = {value}: {reason}")]
    BadParameter {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The output grid could not be built.
    #[error("invalid grid: {0}")]
    Grid(#[from] GridError),
}

fn bad(field: &'static str, value: impl ToString, reason: &'static str) -> PolarError {
    // A hostile 1e300 is shown as such, not as three hundred digits.
    let value = value.to_string();
    let value = match value.parse::<f64>() {
        Ok(v) if value.len() > 12 => crate::scan::short_number(v),
        _ => value,
    };
    PolarError::BadParameter {
        field,
        value,
        reason,
    }
}

/// Where a radar stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadarSite {
    /// Station identifier (NEXRAD: 4-letter ICAO, e.g. `KATX`).
    pub id: String,
    /// WGS84 latitude, degrees north.
    pub lat_deg: f64,
    /// WGS84 longitude, degrees east.
    pub lon_deg: f64,
    /// Antenna height above mean sea level, metres (site + tower); only
    /// used for beam heights.
    pub height_m: f64,
}

/// One sweep of reflectivity: the input of the gridding.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The radar.
    pub site: RadarSite,
    /// Elevation number within the volume (1 = first cut).
    pub elevation_number: u8,
    /// Mean measured elevation angle of the radials, degrees.
    pub elevation_deg: f32,
    /// Collection time of the first radial, UTC.
    pub time: DateTime<Utc>,
    /// Slant range (m) to the centre of gate 0.
    pub first_gate_m: f64,
    /// Gate spacing (m).
    pub gate_m: f64,
    /// Centre azimuth of every radial, degrees clockwise from true north in
    /// `[0, 360)`, in collection order; `azimuth_deg[i]` goes with row `i`.
    pub azimuth_deg: Vec<f32>,
    /// Reflectivity, shape `(radials, gates)`, dBZ: `-inf` = below the
    /// radar's threshold (undetect), NaN = no data (range folded, missing).
    pub dbz: Array2<f32>,
}

impl Sweep {
    /// Checks the geometry: finite site, elevation, gate geometry and
    /// azimuths, one azimuth per radial.
    pub fn validate(&self) -> Result<(), PolarError> {
        let s = &self.site;
        if !(s.lat_deg.is_finite() && (-90.0..=90.0).contains(&s.lat_deg)) {
            return Err(bad("site latitude", s.lat_deg, "must be in -90..=90"));
        }
        if !(s.lon_deg.is_finite() && (-180.0..=360.0).contains(&s.lon_deg)) {
            return Err(bad("site longitude", s.lon_deg, "must be in -180..=360"));
        }
        if !(self.elevation_deg.is_finite() && (-2.0..=60.0).contains(&self.elevation_deg)) {
            return Err(bad(
                "elevation",
                self.elevation_deg,
                "must be a finite angle in -2..=60 degrees",
            ));
        }
        if !self.first_gate_m.is_finite() || self.first_gate_m.abs() > 100_000.0 {
            return Err(bad(
                "first gate range",
                self.first_gate_m,
                "must be finite and within 100 km",
            ));
        }
        if !(self.gate_m.is_finite() && self.gate_m >= 1.0) {
            return Err(bad("gate spacing", self.gate_m, "must be at least 1 m"));
        }
        let (radials, gates) = self.dbz.dim();
        if radials == 0 || gates == 0 {
            return Err(bad(
                "sweep shape",
                format!("{radials}x{gates}"),
                "needs at least one radial and one gate",
            ));
        }
        if self.azimuth_deg.len() != radials {
            return Err(bad(
                "azimuth count",
                self.azimuth_deg.len(),
                "must equal the number of radials",
            ));
        }
        if let Some(a) = self
            .azimuth_deg
            .iter()
            .find(|a| !(a.is_finite() && (0.0..360.0).contains(*a)))
        {
            return Err(bad("azimuth", a, "must be in 0..360 degrees"));
        }
        Ok(())
    }

    /// Median spacing (degrees) between neighbouring radials in azimuth
    /// order, clamped to 0.1..=5°; 1° when there is a single radial.
    pub fn azimuth_spacing_deg(&self) -> f32 {
        let sorted = sorted_azimuths(&self.azimuth_deg);
        let mut gaps: Vec<f32> = sorted
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .filter(|g| *g > 1e-3)
            .collect();
        if gaps.is_empty() {
            return 1.0;
        }
        gaps.sort_by(f32::total_cmp);
        gaps[gaps.len() / 2].clamp(0.1, 5.0)
    }
}

/// `(radial index, azimuth)` sorted by azimuth.
fn sorted_azimuths(azimuth_deg: &[f32]) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = azimuth_deg.iter().copied().enumerate().collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v
}

/// Size and resolution of the Cartesian grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// Largest ground range gridded (m); cells beyond it are no data.
    /// Default 250 km.
    pub max_range_m: f64,
    /// Cell side (m). Default 1 km.
    pub cell_m: f64,
}

impl Default for GridSpec {
    fn default() -> Self {
        Self {
            max_range_m: 250_000.0,
            cell_m: 1_000.0,
        }
    }
}

impl GridSpec {
    /// Cells per side: `2 · ceil(max_range / cell)`.
    pub fn side(&self) -> Result<usize, PolarError> {
        if !(self.cell_m.is_finite() && self.cell_m > 0.0) {
            return Err(bad("cell size", self.cell_m, "must be positive"));
        }
        if !(self.max_range_m.is_finite() && self.max_range_m > 0.0) {
            return Err(bad("max range", self.max_range_m, "must be positive"));
        }
        let half = (self.max_range_m / self.cell_m).ceil();
        if half * 2.0 > MAX_GRID_SIDE as f64 {
            return Err(bad(
                "max range / cell size",
                half * 2.0,
                "gives more cells per side than MAX_GRID_SIDE",
            ));
        }
        Ok(2 * half as usize)
    }
}

/// Options of the gridding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolarOptions {
    /// Output grid.
    pub grid: GridSpec,
    /// Gates below this reflectivity (dBZ) become undetect. Default 5 dBZ.
    pub min_dbz: f32,
    /// Remove isolated gates (see [`filter_gates`]). Default on.
    pub remove_isolated: bool,
}

impl Default for PolarOptions {
    fn default() -> Self {
        Self {
            grid: GridSpec::default(),
            min_dbz: 5.0,
            remove_isolated: true,
        }
    }
}

/// Everything the per-cell mapping depends on: the cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct PolarGeometry {
    /// Site latitude (degrees).
    pub lat_deg: f64,
    /// Site longitude (degrees).
    pub lon_deg: f64,
    /// Elevation angle rounded to 0.1° (a 0.1° error moves a 250 km gate by
    /// under 20 m, far below the gate spacing).
    pub elevation_deg: f64,
    /// Slant range (m) of the centre of gate 0.
    pub first_gate_m: f64,
    /// Gate spacing (m).
    pub gate_m: f64,
    /// The output grid.
    pub grid: GridSpec,
}

impl PolarGeometry {
    /// The geometry of `sweep` gridded with `grid`.
    pub fn of(sweep: &Sweep, grid: GridSpec) -> Self {
        Self {
            lat_deg: sweep.site.lat_deg,
            lon_deg: sweep.site.lon_deg,
            elevation_deg: (f64::from(sweep.elevation_deg) * 10.0).round() / 10.0,
            first_gate_m: sweep.first_gate_m,
            gate_m: sweep.gate_m,
            grid,
        }
    }

    /// The PROJ string of the radar-centred azimuthal equidistant grid.
    pub fn projection(&self) -> String {
        format!(
            "+proj=aeqd +lat_0={:.6} +lon_0={:.6} +ellps=WGS84 +units=m +no_defs",
            self.lat_deg, self.lon_deg
        )
    }
}

/// The precomputed cell → (gate, azimuth bin) table for one geometry.
/// Build once per site and geometry, reuse for every volume
/// (see [`PolarGridder`]).
#[derive(Debug, Clone)]
pub struct PolarMapping {
    geometry: PolarGeometry,
    grid: Grid,
    /// Gate index per cell (C order), `u16::MAX` outside the range.
    gate: Vec<u16>,
    /// Azimuth bin (0.1°) per cell (C order).
    az_bin: Vec<u16>,
    /// Largest gate index any cell uses, + 1.
    gates_used: usize,
}

impl PolarMapping {
    /// Builds the grid and the per-cell table for `geometry`.
    pub fn new(geometry: PolarGeometry) -> Result<Self, PolarError> {
        let side = geometry.grid.side()?;
        if !(geometry.gate_m.is_finite() && geometry.gate_m >= 1.0) {
            return Err(bad("gate spacing", geometry.gate_m, "must be at least 1 m"));
        }
        if !geometry.first_gate_m.is_finite() {
            return Err(bad(
                "first gate range",
                geometry.first_gate_m,
                "must be finite",
            ));
        }
        let cell = geometry.grid.cell_m;
        let half = side as f64 / 2.0 * cell;
        let grid = Grid::new(geometry.projection(), side, side, cell, cell, -half, half)?;
        let n = side * side;
        let mut gate = vec![NONE_U16; n];
        let mut az_bin = vec![0u16; n];
        let mut gates_used = 0usize;
        let bins_per_deg = AZIMUTH_BINS_PER_DEG as f64;
        for r in 0..side {
            let y = half - (r as f64 + 0.5) * cell;
            for c in 0..side {
                let x = -half + (c as f64 + 0.5) * cell;
                let i = r * side + c;
                let az = x.atan2(y).to_degrees().rem_euclid(360.0);
                az_bin[i] = ((az * bins_per_deg) as usize % AZIMUTH_BINS) as u16;
                let ground = x.hypot(y);
                if ground > geometry.grid.max_range_m {
                    continue;
                }
                let slant = slant_range_m(ground, geometry.elevation_deg);
                let g = ((slant - geometry.first_gate_m) / geometry.gate_m).round();
                if g.is_finite() && g >= 0.0 && g < f64::from(NONE_U16) {
                    gate[i] = g as u16;
                    gates_used = gates_used.max(g as usize + 1);
                }
            }
        }
        Ok(Self {
            geometry,
            grid,
            gate,
            az_bin,
            gates_used,
        })
    }

    /// The geometry this mapping was built for.
    pub fn geometry(&self) -> &PolarGeometry {
        &self.geometry
    }

    /// The output grid (radar at the centre).
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Gates per radial the grid reaches (gates beyond are never read).
    pub fn gates_used(&self) -> usize {
        self.gates_used
    }

    /// Heap bytes held by the tables.
    pub fn heap_bytes(&self) -> usize {
        (self.gate.capacity() + self.az_bin.capacity()) * std::mem::size_of::<u16>()
    }

    /// Samples `dbz` (radials × gates, already filtered) through the table:
    /// `radial_of_bin[b]` names the radial covering azimuth bin `b`.
    fn sample(&self, dbz: ArrayView2<f32>, radial_of_bin: &[u32]) -> Array2<f32> {
        let side = self.grid.rows;
        let gates = dbz.ncols();
        let mut out = Array2::from_elem((side, side), f32::NAN);
        if let Some(out) = out.as_slice_mut() {
            for (i, v) in out.iter_mut().enumerate() {
                let g = self.gate[i];
                if g == NONE_U16 || usize::from(g) >= gates {
                    continue;
                }
                let radial = radial_of_bin[usize::from(self.az_bin[i])];
                if radial == NONE_U32 {
                    continue;
                }
                *v = dbz[[radial as usize, usize::from(g)]];
            }
        }
        out
    }
}

/// For every 0.1° azimuth bin, the radial whose centre azimuth is nearest
/// the bin centre, if within `0.75 × spacing`; `u32::MAX` otherwise.
pub fn azimuth_table(azimuth_deg: &[f32], spacing_deg: f32) -> Vec<u32> {
    let mut radial_of_bin = vec![NONE_U32; AZIMUTH_BINS];
    let mut dist = vec![f32::INFINITY; AZIMUTH_BINS];
    let reach = 0.75 * spacing_deg;
    let bins_per_deg = AZIMUTH_BINS_PER_DEG as f32;
    let reach_bins = (reach * bins_per_deg).ceil() as i64 + 1;
    for (i, &az) in azimuth_deg.iter().enumerate() {
        if !az.is_finite() {
            continue;
        }
        let centre_bin = (az * bins_per_deg).floor() as i64;
        for b in (centre_bin - reach_bins)..=(centre_bin + reach_bins) {
            let bin = b.rem_euclid(AZIMUTH_BINS as i64) as usize;
            let bin_centre = (bin as f32 + 0.5) / bins_per_deg;
            let d = (bin_centre - az).rem_euclid(360.0);
            let d = d.min(360.0 - d);
            if d <= reach && d < dist[bin] {
                dist[bin] = d;
                radial_of_bin[bin] = i as u32;
            }
        }
    }
    radial_of_bin
}

/// Clutter and noise handling on a `(radials, gates)` dBZ array, in place:
/// 1. finite values below `min_dbz` and `-inf` become `-inf` (undetect);
///    NaN stays NaN (no data);
/// 2. if `remove_isolated`, an echo (finite value) none of whose 8
///    neighbours (gate ± 1 along the radial, the same gates in the radials
///    before and after in azimuth order, wrapping round a full circle) holds
///    an echo becomes `-inf`. Single-gate echoes are mostly clutter, noise
///    or insects, and no nowcast can track them.
///
/// `azimuth_deg` gives each row's azimuth (for the neighbour order).
/// Returns the number of gates removed by step 2.
pub fn filter_gates(
    dbz: &mut Array2<f32>,
    azimuth_deg: &[f32],
    min_dbz: f32,
    remove_isolated: bool,
) -> usize {
    dbz.mapv_inplace(|v| {
        if v.is_nan() {
            v
        } else if v < min_dbz {
            f32::NEG_INFINITY
        } else {
            v
        }
    });
    if !remove_isolated {
        return 0;
    }
    let (radials, gates) = dbz.dim();
    if radials == 0 || gates == 0 || azimuth_deg.len() != radials {
        return 0;
    }
    let order = sorted_azimuths(azimuth_deg);
    let spacing = {
        let mut gaps: Vec<f32> = order
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .filter(|g| *g > 1e-3)
            .collect();
        gaps.sort_by(f32::total_cmp);
        gaps.get(gaps.len() / 2).copied().unwrap_or(1.0)
    };
    // A full circle when the largest gap (including across north) is small.
    let full_circle = order.len() > 2 && {
        let mut max_gap = 360.0 - order[order.len() - 1].1 + order[0].1;
        for w in order.windows(2) {
            max_gap = max_gap.max(w[1].1 - w[0].1);
        }
        max_gap <= 2.0 * spacing
    };
    let n = order.len();
    let echo = |v: f32| v.is_finite();
    let mut isolated = Vec::new();
    for k in 0..n {
        let row = order[k].0;
        let prev = if k > 0 {
            Some(order[k - 1].0)
        } else if full_circle {
            Some(order[n - 1].0)
        } else {
            None
        };
        let next = if k + 1 < n {
            Some(order[k + 1].0)
        } else if full_circle {
            Some(order[0].0)
        } else {
            None
        };
        for g in 0..gates {
            if !echo(dbz[[row, g]]) {
                continue;
            }
            let lo = g.saturating_sub(1);
            let hi = (g + 1).min(gates - 1);
            let mut neighbour = false;
            for gg in lo..=hi {
                if gg != g && echo(dbz[[row, gg]]) {
                    neighbour = true;
                    break;
                }
                for r in [prev, next].into_iter().flatten() {
                    if echo(dbz[[r, gg]]) {
                        neighbour = true;
                        break;
                    }
                }
                if neighbour {
                    break;
                }
            }
            if !neighbour {
                isolated.push((row, g));
            }
        }
    }
    for &(r, g) in &isolated {
        dbz[[r, g]] = f32::NEG_INFINITY;
    }
    isolated.len()
}

/// A sweep on the Cartesian grid.
#[derive(Debug, Clone)]
pub struct GriddedSweep {
    /// The radar-centred grid.
    pub grid: Grid,
    /// dBZ, `(rows, cols)`, row 0 north: `-inf` = undetect, NaN = no data.
    pub dbz: Array2<f32>,
    /// Gates removed as isolated echoes.
    pub isolated_removed: usize,
    /// True when the mapping came from the cache (no per-cell work).
    pub mapping_cached: bool,
}

/// Grids sweeps, keeping the mappings of the last [`MAPPING_CACHE_SIZE`]
/// geometries. Keep one per radar (or one per process: mappings of several
/// sites coexist) and reuse it for every volume.
#[derive(Debug, Clone, Default)]
pub struct PolarGridder {
    options: PolarOptions,
    /// Most recently used first.
    mappings: Vec<PolarMapping>,
    builds: usize,
}

impl PolarGridder {
    /// A gridder with an empty cache.
    pub fn new(options: PolarOptions) -> Self {
        Self {
            options,
            mappings: Vec::new(),
            builds: 0,
        }
    }

    /// The options in use.
    pub fn options(&self) -> &PolarOptions {
        &self.options
    }

    /// How many mappings were built so far (cache misses).
    pub fn mapping_builds(&self) -> usize {
        self.builds
    }

    /// Heap bytes held by the cached mappings.
    pub fn cache_bytes(&self) -> usize {
        self.mappings.iter().map(PolarMapping::heap_bytes).sum()
    }

    /// The mapping for `geometry`, built on a miss, moved to the front.
    pub fn mapping(
        &mut self,
        geometry: PolarGeometry,
    ) -> Result<(&PolarMapping, bool), PolarError> {
        let cached = match self.mappings.iter().position(|m| m.geometry == geometry) {
            Some(i) => {
                let m = self.mappings.remove(i);
                self.mappings.insert(0, m);
                true
            }
            None => {
                let m = PolarMapping::new(geometry)?;
                self.builds += 1;
                self.mappings.insert(0, m);
                self.mappings.truncate(MAPPING_CACHE_SIZE);
                false
            }
        };
        Ok((&self.mappings[0], cached))
    }

    /// Filters (see [`filter_gates`]) and grids one sweep.
    pub fn grid(&mut self, sweep: &Sweep) -> Result<GriddedSweep, PolarError> {
        sweep.validate()?;
        let options = self.options;
        let spacing = sweep.azimuth_spacing_deg();
        let (mapping, mapping_cached) = self.mapping(PolarGeometry::of(sweep, options.grid))?;
        let gates = sweep.dbz.ncols().min(mapping.gates_used().max(1));
        // Only the gates the grid reaches are filtered (one spare gate keeps
        // the isolated-gate test at the edge the same as on the full sweep).
        let keep = (gates + 1).min(sweep.dbz.ncols());
        let mut dbz = sweep
            .dbz
            .slice_axis(Axis(1), Slice::from(..keep))
            .to_owned();
        let isolated_removed = filter_gates(
            &mut dbz,
            &sweep.azimuth_deg,
            options.min_dbz,
            options.remove_isolated,
        );
        let table = azimuth_table(&sweep.azimuth_deg, spacing);
        let out = mapping.sample(dbz.slice_axis(Axis(1), Slice::from(..gates)), &table);
        Ok(GriddedSweep {
            grid: mapping.grid().clone(),
            dbz: out,
            isolated_removed,
            mapping_cached,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn site() -> RadarSite {
        RadarSite {
            id: "KTST".into(),
            lat_deg: 47.68,
            lon_deg: -122.5,
            height_m: 200.0,
        }
    }

    /// A full-circle sweep of `radials` radials, `gates` gates of `gate_m`,
    /// all undetect.
    pub(crate) fn empty_sweep(radials: usize, gates: usize, gate_m: f64) -> Sweep {
        let spacing = 360.0 / radials as f32;
        Sweep {
            site: site(),
            elevation_number: 1,
            elevation_deg: 0.5,
            time: DateTime::<Utc>::from_timestamp(1_373_990_000, 0).expect("time"),
            first_gate_m: 2_125.0,
            gate_m,
            azimuth_deg: (0..radials).map(|i| (i as f32 + 0.5) * spacing).collect(),
            dbz: Array2::from_elem((radials, gates), f32::NEG_INFINITY),
        }
    }

    #[test]
    fn beam_model_round_trips_and_matches_known_values() {
        for elev in [0.0, 0.5, 1.5, 10.0] {
            for ground in [1_000.0, 50_000.0, 250_000.0] {
                let r = slant_range_m(ground, elev);
                let back = ground_range_m(r, elev);
                assert!((back - ground).abs() < 1e-3, "{elev} {ground} {back}");
                assert!(r >= ground - 1e-6, "slant range is never shorter");
            }
        }
        // 0.5° beam at 100 km slant: h ≈ r sin θ + r²/(2 kₐ) ≈ 872.7 + 588.6 m.
        let h = beam_height_m(100_000.0, 0.5, 0.0);
        assert!((h - 1_461.3).abs() < 2.0, "{h}");
        // At 250 km ground range the 0.5° slant range exceeds it by ~150 m.
        let extra = slant_range_m(250_000.0, 0.5) - 250_000.0;
        assert!((100.0..200.0).contains(&extra), "{extra}");
    }

    #[test]
    fn grid_is_centred_on_the_radar() {
        let m = PolarMapping::new(PolarGeometry::of(
            &empty_sweep(360, 100, 1000.0),
            GridSpec::default(),
        ))
        .expect("mapping");
        let g = m.grid();
        assert_eq!(g.shape(), (500, 500));
        let (lon, lat) = g.rowcol_to_lonlat(250.0, 250.0).expect("centre");
        assert!(
            (lon - -122.5).abs() < 1e-9 && (lat - 47.68).abs() < 1e-9,
            "{lon} {lat}"
        );
    }

    #[test]
    fn single_echo_lands_in_the_right_cell() {
        // 720 radials of 0.5°, 250 m gates, one echo at 100 km slant range,
        // azimuth 60.25°: 7 gates (1.75 km) × 3 radials (2.6 km at 100 km), so
        // that the 1 km cell containing its centre is sampled wherever it falls.
        let mut sweep = empty_sweep(720, 1200, 250.0);
        let radial = 120; // centre azimuth 60.25°
        let gate = 391; // 2125 + 391 × 250 = 99 875 m
        for r in radial - 1..=radial + 1 {
            for g in gate - 3..=gate + 3 {
                sweep.dbz[[r, g]] = 42.0;
            }
        }
        let mut gridder = PolarGridder::new(PolarOptions::default());
        let out = gridder.grid(&sweep).expect("grid");
        assert_eq!(out.isolated_removed, 0);
        // Expected cell, by hand: ground range of the gate centre, then x/y.
        let slant = 2_125.0 + 391.0 * 250.0;
        let ground = ground_range_m(slant, 0.5);
        assert!((ground - 99_856.4).abs() < 1.0, "{ground}");
        let az = 60.25f64.to_radians();
        let (x, y) = (ground * az.sin(), ground * az.cos());
        // 500 × 500 grid, radar at the centre: row = 250 − y/1000, col = 250 + x/1000.
        let (row, col) = ((250.0 - y / 1000.0) as usize, (250.0 + x / 1000.0) as usize);
        assert_eq!((row, col), (200, 336));
        assert_eq!(out.dbz[[row, col]], 42.0);
        for ((r, c), v) in out.dbz.indexed_iter() {
            if v.is_finite() {
                assert!(
                    r.abs_diff(row) <= 2 && c.abs_diff(col) <= 2,
                    "echo at {r} {c}"
                );
            }
        }
        // No data beyond the max range (grid corners) and inside the first gate.
        assert!(out.dbz[[0, 0]].is_nan());
        assert!(out.dbz[[249, 249]].is_nan(), "cone of silence");
        assert_eq!(
            out.dbz[[250, 260]],
            f32::NEG_INFINITY,
            "10 km east: undetect"
        );
        // Without the isolated-gate filter a lone gate survives; with it, it goes.
        let mut lone = empty_sweep(720, 1200, 250.0);
        for g in gate - 3..=gate + 3 {
            lone.dbz[[radial, g]] = f32::NEG_INFINITY;
        }
        lone.dbz[[radial, gate]] = 42.0;
        let kept = PolarGridder::new(PolarOptions {
            remove_isolated: false,
            ..PolarOptions::default()
        })
        .grid(&lone)
        .expect("grid");
        assert!(kept.dbz.iter().filter(|v| **v == 42.0).count() <= 1);
        let removed = gridder.grid(&lone).expect("grid");
        assert_eq!(removed.isolated_removed, 1);
        assert!(removed.dbz.iter().all(|v| *v != 42.0));
    }

    #[test]
    fn mapping_is_cached_per_geometry() {
        let sweep = empty_sweep(360, 500, 1000.0);
        let mut gridder = PolarGridder::new(PolarOptions::default());
        assert!(!gridder.grid(&sweep).expect("grid").mapping_cached);
        assert!(gridder.grid(&sweep).expect("grid").mapping_cached);
        let mut other = sweep.clone();
        other.elevation_deg = 1.5;
        assert!(!gridder.grid(&other).expect("grid").mapping_cached);
        assert!(gridder.grid(&sweep).expect("grid").mapping_cached);
        assert_eq!(gridder.mapping_builds(), 2);
        assert!(gridder.cache_bytes() >= 2 * 500 * 500 * 4);
    }

    #[test]
    fn filter_thresholds_and_removes_isolated_gates() {
        let az: Vec<f32> = (0..8).map(|i| i as f32 * 45.0 + 1.0).collect();
        let mut dbz = Array2::from_elem((8, 6), f32::NEG_INFINITY);
        dbz[[0, 3]] = 30.0; // isolated
        dbz[[2, 1]] = 3.0; // below 5 dBZ
        dbz[[4, 2]] = 25.0; // pair along the radial
        dbz[[4, 3]] = 26.0;
        dbz[[7, 5]] = 30.0; // pairs with radial 0 across north (full circle)
        dbz[[0, 4]] = 31.0;
        dbz[[6, 0]] = f32::NAN;
        let removed = filter_gates(&mut dbz, &az, 5.0, true);
        assert_eq!(dbz[[2, 1]], f32::NEG_INFINITY);
        assert_eq!(dbz[[4, 2]], 25.0);
        assert_eq!(dbz[[7, 5]], 30.0, "kept: neighbour across north");
        assert_eq!(dbz[[0, 3]], 30.0, "kept: neighbour gate 4");
        assert!(dbz[[6, 0]].is_nan());
        assert_eq!(removed, 0);
        dbz[[0, 4]] = f32::NEG_INFINITY;
        dbz[[7, 5]] = f32::NEG_INFINITY;
        assert_eq!(filter_gates(&mut dbz, &az, 5.0, true), 1);
        assert_eq!(dbz[[0, 3]], f32::NEG_INFINITY);
    }

    #[test]
    fn partial_sector_leaves_other_azimuths_without_data() {
        // 120 radials of 0.5° from 10° to 70°.
        let mut sweep = empty_sweep(120, 400, 250.0);
        sweep.azimuth_deg = (0..120).map(|i| 10.25 + i as f32 * 0.5).collect();
        let out = PolarGridder::new(PolarOptions::default())
            .grid(&sweep)
            .expect("grid");
        let at = |az: f64, ground: f64| {
            let a = az.to_radians();
            let (r, c) = out.grid.xy_to_rowcol(ground * a.sin(), ground * a.cos());
            out.dbz[[r as usize, c as usize]]
        };
        assert_eq!(at(40.0, 50_000.0), f32::NEG_INFINITY);
        assert!(at(90.0, 50_000.0).is_nan());
        assert!(at(300.0, 50_000.0).is_nan());
        // Beyond the last gate (2.1 + 400 × 0.25 = 102 km): no data.
        assert!(at(40.0, 150_000.0).is_nan());
    }

    #[test]
    fn rejects_bad_sweeps_and_grids() {
        let mut gridder = PolarGridder::new(PolarOptions::default());
        let mut s = empty_sweep(10, 10, 250.0);
        s.azimuth_deg[3] = f32::NAN;
        assert!(matches!(
            gridder.grid(&s),
            Err(PolarError::BadParameter { .. })
        ));
        let mut s = empty_sweep(10, 10, 250.0);
        s.gate_m = 0.0;
        assert!(gridder.grid(&s).is_err());
        let mut s = empty_sweep(10, 10, 250.0);
        s.azimuth_deg.pop();
        assert!(gridder.grid(&s).is_err());
        let mut s = empty_sweep(10, 10, 250.0);
        s.site.lat_deg = 91.0;
        assert!(gridder.grid(&s).is_err());
        // A hostile 1e300 is named short, not in three hundred digits.
        let mut s = empty_sweep(10, 10, 250.0);
        s.first_gate_m = 1e300;
        let err = gridder.grid(&s).expect_err("1e300 m").to_string();
        assert!(err.contains("first gate range = 1e300:"), "{err}");
        let mut huge = PolarGridder::new(PolarOptions {
            grid: GridSpec {
                max_range_m: 1e9,
                cell_m: 1.0,
            },
            ..PolarOptions::default()
        });
        assert!(huge.grid(&empty_sweep(10, 10, 250.0)).is_err());
    }
}
