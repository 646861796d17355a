//! The mosaic of several radars, sampled on Web Mercator tiles or at a point.
//!
//! Every radar keeps its own grid and projection; the mosaic is the rule
//! that combines their fields wherever it is sampled, so a map tile and a
//! point forecast at the same place read the same value.
//!
//! # The rule
//! At a place, each radar whose grid holds it and whose field is **finite**
//! there (it sees the place: `NaN` is no data) contributes its value with
//! the weight
//!
//! ```text
//! w = 1 / (d² + D₀²),   D₀ = 10 km
//! ```
//!
//! where `d` is the distance (metres, measured in the radar's own grid) from
//! the radar's site to the place. The mosaic value is the weighted mean
//! `Σ w·v / Σ w`. So:
//!
//! * where one radar sees the place, the mosaic is that radar's value;
//! * in an overlap, the nearer radar counts more, and the weights change
//!   smoothly with the place, so two radars that see the same rain give no
//!   seam (inverse-distance weighting rather than "nearest radar", which
//!   would cut along the line of equal distance);
//! * `NaN` (no data) only where **no** radar sees the place; zero (no rain)
//!   from one radar is a measurement and does count.
//!
//! A radar without a known site (a composite) is weighted as if its site
//! were half its grid's diagonal away from every place.
//!
//! # Tiles
//! [`TileId`] is the usual XYZ scheme of Web Mercator (EPSG:3857): zoom `z`,
//! column `x` from the antimeridian eastwards, row `y` from the north. A
//! tile of `size` pixels is sampled at its pixel centres. The lon/lat →
//! grid mapping is evaluated exactly on a lattice of points at most 16 pixels apart (17 × 17 on a 256 px tile)
//! over the part of the tile that a radar's bounding box covers, and
//! interpolated in between (the lattice spacing is at most 16 pixels, and
//! below that the radar's whole box); the tests compare tiles with the exact
//! point rule pixel by pixel at zooms 7 and 8.

use crate::grid::Grid;

/// Deepest zoom level served (about 38 m per pixel at 256 px).
pub const MAX_ZOOM: u32 = 12;
/// `D₀` of the weight, metres.
pub const WEIGHT_CORE_M: f64 = 10_000.0;
/// Largest tile side in pixels.
pub const MAX_TILE_SIZE: u32 = 512;
/// Web Mercator's latitude limit, degrees.
pub const MAX_MERCATOR_LAT: f64 = 85.051_128_779_806_6;
/// Lattice spacing in pixels (see the module docs).
const LATTICE_PX: f64 = 16.0;

/// Bad tile coordinates or mosaic inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MosaicError {
    #[error("zoom {z} is outside 0..={max}", max = MAX_ZOOM)]
    Zoom { z: u32 },
    #[error("{axis} = {value} is outside 0..{n} at zoom {z}")]
    TileIndex {
        axis: &'static str,
        value: u32,
        n: u32,
        z: u32,
    },
    #[error("tile size {size} is not 256 or 512")]
    TileSize { size: u32 },
    #[error("radar {radar}: {reason}")]
    Radar { radar: String, reason: String },
    #[error("field of radar {radar} has {len} values, its grid {rows}x{cols}")]
    Shape {
        radar: String,
        len: usize,
        rows: usize,
        cols: usize,
    },
}

/// Web Mercator `y` (radians of the unit sphere) of a latitude in degrees,
/// clamped to the projection's limit.
pub fn mercator_y(lat_deg: f64) -> f64 {
    let phi = lat_deg
        .clamp(-MAX_MERCATOR_LAT, MAX_MERCATOR_LAT)
        .to_radians();
    (std::f64::consts::FRAC_PI_4 + phi / 2.0).tan().ln()
}

/// Latitude in degrees of a Web Mercator `y` (inverse of [`mercator_y`]).
pub fn mercator_lat(y: f64) -> f64 {
    (2.0 * y.exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees()
}

/// One XYZ tile of Web Mercator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    pub z: u32,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// A tile, checked: `z ≤ MAX_ZOOM`, `x, y < 2^z`.
    pub fn new(z: u32, x: u32, y: u32) -> Result<Self, MosaicError> {
        if z > MAX_ZOOM {
            return Err(MosaicError::Zoom { z });
        }
        let n = 1u32 << z;
        for (axis, value) in [("x", x), ("y", y)] {
            if value >= n {
                return Err(MosaicError::TileIndex { axis, value, n, z });
            }
        }
        Ok(Self { z, x, y })
    }

    /// Lon/lat (degrees) of a fractional pixel position of a tile of `size`
    /// pixels: `(0, 0)` is its north-west corner, `(size, size)` its
    /// south-east corner.
    pub fn pixel_lonlat(&self, px: f64, py: f64, size: u32) -> (f64, f64) {
        let n = (1u64 << self.z) as f64;
        let u = (self.x as f64 + px / size as f64) / n;
        let v = (self.y as f64 + py / size as f64) / n;
        let lon = u * 360.0 - 180.0;
        let lat = mercator_lat(std::f64::consts::PI * (1.0 - 2.0 * v));
        (lon, lat)
    }

    /// Fractional pixel position of a lon/lat in a tile of `size` pixels
    /// (outside `0..size` when the place is outside the tile).
    pub fn lonlat_pixel(&self, lon: f64, lat: f64, size: u32) -> (f64, f64) {
        let n = (1u64 << self.z) as f64;
        let u = (lon + 180.0) / 360.0;
        let v = (1.0 - mercator_y(lat) / std::f64::consts::PI) / 2.0;
        (
            (u * n - self.x as f64) * size as f64,
            (v * n - self.y as f64) * size as f64,
        )
    }

    /// `(west, south, east, north)` in degrees.
    pub fn bounds_lonlat(&self) -> (f64, f64, f64, f64) {
        let (w, n) = self.pixel_lonlat(0.0, 0.0, 1);
        let (e, s) = self.pixel_lonlat(1.0, 1.0, 1);
        (w, s, e, n)
    }
}

/// Checks a tile size: 256 or 512 pixels.
pub fn check_tile_size(size: u32) -> Result<u32, MosaicError> {
    match size {
        256 | 512 => Ok(size),
        _ => Err(MosaicError::TileSize { size }),
    }
}

/// A radar of the mosaic: its grid, site and lon/lat box, computed once.
#[derive(Debug, Clone)]
pub struct MosaicRadar {
    pub id: String,
    pub grid: Grid,
    /// Fractional `(row, col)` of the site (or the grid's centre).
    site_rc: (f64, f64),
    /// Distance added for a radar without a site, metres (0 with one).
    far_m: f64,
    /// `(west, south, east, north)` of the grid, degrees.
    bounds: (f64, f64, f64, f64),
}

impl MosaicRadar {
    /// A radar on `grid`, standing at `site` (lon, lat in degrees) when known.
    pub fn new(id: &str, grid: Grid, site: Option<(f64, f64)>) -> Result<Self, MosaicError> {
        let bad = |reason: String| MosaicError::Radar {
            radar: id.to_string(),
            reason,
        };
        let bounds = grid.bounds_lonlat().map_err(|e| bad(e.to_string()))?;
        let centre = (grid.rows as f64 / 2.0, grid.cols as f64 / 2.0);
        let (site_rc, far_m) = match site {
            Some((lon, lat)) => match grid.lonlat_to_rowcol(lon, lat) {
                Ok(rc) if rc.0.is_finite() && rc.1.is_finite() => (rc, 0.0),
                _ => {
                    return Err(bad(format!(
                        "site {lon},{lat} cannot be placed on its grid"
                    )))
                }
            },
            None => {
                let h = grid.rows as f64 * grid.cell_y_m;
                let w = grid.cols as f64 * grid.cell_x_m;
                (centre, 0.5 * (h * h + w * w).sqrt())
            }
        };
        Ok(Self {
            id: id.to_string(),
            grid,
            site_rc,
            far_m,
            bounds,
        })
    }

    /// `(west, south, east, north)` of the radar's grid, degrees.
    pub fn bounds_lonlat(&self) -> (f64, f64, f64, f64) {
        self.bounds
    }

    /// The mosaic weight of the radar at a fractional `(row, col)` of its
    /// grid: `1 / (d² + D₀²)` with distances in km.
    #[inline]
    pub fn weight_at(&self, row: f64, col: f64) -> f64 {
        let dy = (row - self.site_rc.0) * self.grid.cell_y_m / 1000.0;
        let dx = (col - self.site_rc.1) * self.grid.cell_x_m / 1000.0;
        let d2 = if self.far_m > 0.0 {
            (self.far_m / 1000.0).powi(2)
        } else {
            dx * dx + dy * dy
        };
        1.0 / (d2 + (WEIGHT_CORE_M / 1000.0).powi(2))
    }

    /// [`MosaicRadar::weight_at`] in `f32`, for tiles.
    #[inline]
    fn weight_at_f32(&self, row: f32, col: f32) -> f32 {
        if self.far_m > 0.0 {
            return self.weight_at(row as f64, col as f64) as f32;
        }
        let dy = (row - self.site_rc.0 as f32) * (self.grid.cell_y_m / 1000.0) as f32;
        let dx = (col - self.site_rc.1 as f32) * (self.grid.cell_x_m / 1000.0) as f32;
        1.0 / (dx * dx + dy * dy + (WEIGHT_CORE_M / 1000.0).powi(2) as f32)
    }
}

/// One radar's field taking part in a mosaic: rates in mm/h (or any
/// quantity the rule may average, such as a probability), row-major on the
/// radar's grid, `NaN` = no data.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub radar: &'a MosaicRadar,
    pub values: &'a [f32],
}

impl<'a> Layer<'a> {
    /// A layer, checking that the values fill the radar's grid.
    pub fn new(radar: &'a MosaicRadar, values: &'a [f32]) -> Result<Self, MosaicError> {
        let (rows, cols) = radar.grid.shape();
        if values.len() != rows * cols {
            return Err(MosaicError::Shape {
                radar: radar.id.clone(),
                len: values.len(),
                rows,
                cols,
            });
        }
        Ok(Self { radar, values })
    }

    /// The value at a fractional `(row, col)`: the cell under it (`smooth`
    /// false) or the NaN-aware bilinear interpolation of the cell centres
    /// around it; `NaN` outside the grid.
    #[inline]
    fn value_at(&self, row: f64, col: f64, smooth: bool) -> f32 {
        let g = &self.radar.grid;
        if !(row >= 0.0 && col >= 0.0 && row < g.rows as f64 && col < g.cols as f64) {
            return f32::NAN;
        }
        if smooth {
            crate::raster::bilinear(
                self.values,
                g.rows,
                g.cols,
                (row - 0.5) as f32,
                (col - 0.5) as f32,
            )
        } else {
            self.values[row as usize * g.cols + col as usize]
        }
    }
}

/// A mosaic value at one place and who made it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointMix {
    /// The mosaic value (`NaN` when no radar sees the place).
    pub value: f32,
    /// `(index into the layers, normalised weight)` of each contributing layer.
    pub weights: Vec<(usize, f64)>,
}

/// The mosaic value at a lon/lat (nearest cell of each radar), with the
/// weights of the radars that see it.
pub fn sample_point(layers: &[Layer], lon: f64, lat: f64) -> PointMix {
    let mut parts = Vec::new();
    let (mut num, mut den) = (0f64, 0f64);
    for (i, l) in layers.iter().enumerate() {
        let Ok((row, col)) = l.radar.grid.lonlat_to_rowcol(lon, lat) else {
            continue;
        };
        let v = l.value_at(row, col, false);
        if v.is_finite() {
            let w = l.radar.weight_at(row, col);
            num += w * v as f64;
            den += w;
            parts.push((i, w));
        }
    }
    if den == 0.0 {
        return PointMix {
            value: f32::NAN,
            weights: Vec::new(),
        };
    }
    PointMix {
        value: (num / den) as f32,
        weights: parts.into_iter().map(|(i, w)| (i, w / den)).collect(),
    }
}

/// The mosaic on one tile: `size × size` values, row-major, row 0 north,
/// `NaN` where no radar sees the pixel's centre. `smooth` interpolates each
/// radar's field bilinearly instead of taking the cell under the pixel.
pub fn sample_tile(layers: &[Layer], tile: TileId, size: u32, smooth: bool) -> Vec<f32> {
    let n = size as usize;
    let mut num = vec![0f32; n * n];
    let mut den = vec![0f32; n * n];
    let (tw, ts, te, tn) = tile.bounds_lonlat();
    for l in layers {
        let (w, s, e, nn) = l.radar.bounds;
        if e <= tw || w >= te || nn <= ts || s >= tn {
            continue;
        }
        // The radar's box in the tile's pixels, widened by a pixel.
        let (x0, y0) = tile.lonlat_pixel(w.max(tw), nn.min(tn), size);
        let (x1, y1) = tile.lonlat_pixel(e.min(te), s.max(ts), size);
        let px0 = (x0.floor() - 1.0).clamp(0.0, n as f64) as usize;
        let py0 = (y0.floor() - 1.0).clamp(0.0, n as f64) as usize;
        let px1 = (x1.ceil() + 1.0).clamp(0.0, n as f64) as usize;
        let py1 = (y1.ceil() + 1.0).clamp(0.0, n as f64) as usize;
        if px1 <= px0 || py1 <= py0 {
            continue;
        }
        let lattice = Lattice::new(l.radar, tile, size, (px0, py0, px1, py1));
        let mut line = vec![(f32::NAN, f32::NAN); px1 - px0];
        for py in py0..py1 {
            lattice.row(py, &mut line);
            let row_out = &mut num[py * n + px0..py * n + px1];
            let row_den = &mut den[py * n + px0..py * n + px1];
            for ((&(r, c), o), d) in line.iter().zip(row_out).zip(row_den) {
                let v = l.value_at(r as f64, c as f64, smooth);
                if v.is_finite() {
                    let wgt = l.radar.weight_at_f32(r, c);
                    *o += wgt * v;
                    *d += wgt;
                }
            }
        }
    }
    for (v, d) in num.iter_mut().zip(&den) {
        *v = if *d > 0.0 { *v / *d } else { f32::NAN };
    }
    num
}

/// Exact `(row, col)` of a radar's grid on a coarse lattice of pixel
/// positions over a window of a tile, interpolated bilinearly in between.
struct Lattice {
    y0: f64,
    step_x: f64,
    step_y: f64,
    nx: usize,
    ny: usize,
    rc: Vec<(f64, f64)>,
}

impl Lattice {
    fn new(
        radar: &MosaicRadar,
        tile: TileId,
        size: u32,
        (px0, py0, px1, py1): (usize, usize, usize, usize),
    ) -> Self {
        let (wx, wy) = ((px1 - px0) as f64, (py1 - py0) as f64);
        let nx = ((wx / LATTICE_PX).ceil() as usize).max(1);
        let ny = ((wy / LATTICE_PX).ceil() as usize).max(1);
        let (step_x, step_y) = (wx / nx as f64, wy / ny as f64);
        let mut lonlat = Vec::with_capacity((nx + 1) * (ny + 1));
        for j in 0..=ny {
            let py = py0 as f64 + j as f64 * step_y;
            for i in 0..=nx {
                let px = px0 as f64 + i as f64 * step_x;
                lonlat.push(tile.pixel_lonlat(px, py, size));
            }
        }
        let rc = radar.grid.lonlat_to_rowcol_many(&lonlat);
        Self {
            y0: py0 as f64,
            step_x,
            step_y,
            nx,
            ny,
            rc,
        }
    }

    /// `(row, col)` under the centres of the pixels `x0..x0 + out.len()` of
    /// row `py` (NaN where the projection failed nearby): the lattice rows
    /// around `py` interpolated, then stepped linearly along each lattice cell.
    fn row(&self, py: usize, out: &mut [(f32, f32)]) {
        let fy = (py as f64 + 0.5 - self.y0) / self.step_y;
        let j = (fy.floor().max(0.0) as usize).min(self.ny - 1);
        let ty = fy - j as f64;
        let w = self.nx + 1;
        let at = |i: usize| {
            let (a, b) = (self.rc[j * w + i], self.rc[(j + 1) * w + i]);
            (a.0 + (b.0 - a.0) * ty, a.1 + (b.1 - a.1) * ty)
        };
        let mut left = at(0);
        let mut k = 0;
        for i in 0..self.nx {
            let right = at(i + 1);
            // Pixels whose centres fall in lattice column i (the last
            // column takes the rest).
            let end = if i + 1 == self.nx {
                out.len()
            } else {
                (((i + 1) as f64 * self.step_x - 0.5).ceil().max(0.0) as usize).min(out.len())
            };
            let dr = (right.0 - left.0) / self.step_x;
            let dc = (right.1 - left.1) / self.step_x;
            while k < end {
                let t = k as f64 + 0.5 - i as f64 * self.step_x;
                out[k] = ((left.0 + dr * t) as f32, (left.1 + dc * t) as f32);
                k += 1;
            }
            left = right;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::synth::local_grid;

    fn radar(id: &str, lon: f64, lat: f64, side: usize) -> MosaicRadar {
        let g = local_grid(lon, lat, side, side, 1000.0).unwrap();
        MosaicRadar::new(id, g, Some((lon, lat))).unwrap()
    }

    /// A field that is `value` inside a disc of `radius` cells, NaN outside.
    fn disc(side: usize, radius: f64, value: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let c = side as f64 / 2.0;
        (0..side * side)
            .map(|i| {
                let (r, col) = (i / side, i % side);
                let d = ((r as f64 + 0.5 - c).powi(2) + (col as f64 + 0.5 - c).powi(2)).sqrt();
                if d <= radius {
                    value(r, col)
                } else {
                    f32::NAN
                }
            })
            .collect()
    }

    #[test]
    fn tile_math_bounds_and_round_trip() {
        assert!(TileId::new(0, 0, 0).is_ok());
        assert!(TileId::new(12, 4095, 4095).is_ok());
        assert_eq!(TileId::new(13, 0, 0), Err(MosaicError::Zoom { z: 13 }));
        assert!(matches!(
            TileId::new(3, 8, 0),
            Err(MosaicError::TileIndex { axis: "x", .. })
        ));
        assert!(matches!(
            TileId::new(3, 0, 8),
            Err(MosaicError::TileIndex { axis: "y", .. })
        ));
        assert!(check_tile_size(256).is_ok() && check_tile_size(512).is_ok());
        assert_eq!(
            check_tile_size(300),
            Err(MosaicError::TileSize { size: 300 })
        );
        let (w, s, e, n) = TileId::new(0, 0, 0).unwrap().bounds_lonlat();
        assert!((w + 180.0).abs() < 1e-9 && (e - 180.0).abs() < 1e-9);
        assert!((n - MAX_MERCATOR_LAT).abs() < 1e-6 && (s + MAX_MERCATOR_LAT).abs() < 1e-6);
        // Zürich at zoom 8 is tile (134, 89) (the usual slippy-map formula).
        let t = TileId::new(8, 134, 89).unwrap();
        let (px, py) = t.lonlat_pixel(8.54, 47.37, 256);
        assert!((0.0..256.0).contains(&px) && (0.0..256.0).contains(&py));
        let (lon, lat) = t.pixel_lonlat(px, py, 256);
        assert!((lon - 8.54).abs() < 1e-9 && (lat - 47.37).abs() < 1e-9);
        // Neighbouring tiles share edges.
        let right = TileId::new(8, 135, 89).unwrap();
        assert!((t.bounds_lonlat().2 - right.bounds_lonlat().0).abs() < 1e-12);
    }

    #[test]
    fn one_radar_alone_is_its_own_value_and_nan_outside() {
        let a = radar("a", 8.54, 47.37, 128);
        let va = disc(128, 60.0, |_, _| 3.0);
        let layers = [Layer::new(&a, &va).unwrap()];
        let p = sample_point(&layers, 8.54, 47.37);
        assert_eq!(p.value, 3.0);
        assert_eq!(p.weights, vec![(0, 1.0)]);
        // 100 km east: outside the disc, no data.
        assert!(sample_point(&layers, 9.87, 47.37).value.is_nan());
        // A tile far away is all NaN: transparent.
        let far = TileId::new(8, 10, 10).unwrap();
        assert!(sample_tile(&layers, far, 256, false)
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn overlap_weights_by_distance_and_no_data_only_where_no_radar_sees() {
        // Two radars 60 km apart, each seeing 50 km around it.
        let a = radar("a", 8.0, 47.0, 128);
        let b = radar("b", 8.79, 47.0, 128);
        let va = disc(128, 50.0, |_, _| 2.0);
        let vb = disc(128, 50.0, |_, _| 6.0);
        let layers = [Layer::new(&a, &va).unwrap(), Layer::new(&b, &vb).unwrap()];
        // Half-way: equal weights.
        let mid = sample_point(&layers, 8.395, 47.0);
        assert_eq!(mid.weights.len(), 2);
        assert!((mid.value - 4.0).abs() < 0.05, "{}", mid.value);
        // Nearer a: mostly a's value, but both contribute.
        let near_a = sample_point(&layers, 8.2, 47.0);
        assert!(near_a.value > 2.0 && near_a.value < 4.0, "{}", near_a.value);
        assert!(near_a.weights[0].1 > near_a.weights[1].1);
        // Only a sees 40 km west of a.
        let west = sample_point(&layers, 7.47, 47.0);
        assert_eq!(west.value, 2.0);
        assert_eq!(west.weights.len(), 1);
        // A tile over both: finite exactly where at least one radar is
        // finite, checked pixel by pixel against the point rule.
        let z = 8;
        let (x, y) = {
            let t0 = TileId::new(z, 0, 0).unwrap();
            let (px, py) = t0.lonlat_pixel(8.4, 47.0, 256);
            ((px / 256.0) as u32, (py / 256.0) as u32)
        };
        let t = TileId::new(z, x, y).unwrap();
        let tile = sample_tile(&layers, t, 256, false);
        // The lattice may round a pixel onto the other side of a disc's edge.
        let near_edge = |lon: f64, lat: f64| {
            [&a, &b].iter().any(|r| {
                let (rr, cc) = r.grid.lonlat_to_rowcol(lon, lat).unwrap();
                let d = ((rr - 64.0).powi(2) + (cc - 64.0).powi(2)).sqrt();
                (d - 50.0).abs() < 1.5
            })
        };
        let mut finite = 0;
        for py in (0..256).step_by(7) {
            for px in (0..256).step_by(7) {
                let (lon, lat) = t.pixel_lonlat(px as f64 + 0.5, py as f64 + 0.5, 256);
                let exact = sample_point(&layers, lon, lat);
                let got = tile[py * 256 + px];
                if exact.value.is_nan() {
                    assert!(
                        got.is_nan() || near_edge(lon, lat),
                        "{px},{py}: {got} where no radar sees"
                    );
                } else if got.is_nan() {
                    assert!(
                        near_edge(lon, lat),
                        "{px},{py}: no data where {} radars see",
                        exact.weights.len()
                    );
                } else {
                    finite += 1;
                    assert!(
                        (got - exact.value).abs() < 0.2,
                        "{px},{py}: {got} vs {}",
                        exact.value
                    );
                }
            }
        }
        assert!(finite > 100, "{finite}");
    }

    #[test]
    fn a_missing_radar_leaves_no_gap_where_another_sees() {
        let a = radar("a", 8.0, 47.0, 128);
        let b = radar("b", 8.79, 47.0, 128);
        let va = disc(128, 50.0, |_, _| 2.0);
        let vb = disc(128, 50.0, |_, _| 6.0);
        let both = [Layer::new(&a, &va).unwrap(), Layer::new(&b, &vb).unwrap()];
        let only_a = [Layer::new(&a, &va).unwrap()];
        let t = {
            let t0 = TileId::new(7, 0, 0).unwrap();
            let (px, py) = t0.lonlat_pixel(8.4, 47.0, 256);
            TileId::new(7, (px / 256.0) as u32, (py / 256.0) as u32).unwrap()
        };
        let with_b = sample_tile(&both, t, 256, false);
        let without_b = sample_tile(&only_a, t, 256, false);
        for (i, (w, wo)) in with_b.iter().zip(&without_b).enumerate() {
            let (lon, lat) = t.pixel_lonlat((i % 256) as f64 + 0.5, (i / 256) as f64 + 0.5, 256);
            if sample_point(&only_a, lon, lat).value.is_finite() && wo.is_finite() {
                // Where a sees, the mosaic still has a value without b: no gap.
                assert!(w.is_finite());
                assert_eq!(*wo, 2.0);
            }
        }
        assert!(without_b.iter().filter(|v| v.is_finite()).count() > 50);
        assert!(
            with_b.iter().filter(|v| v.is_finite()).count()
                > without_b.iter().filter(|v| v.is_finite()).count()
        );
    }

    #[test]
    fn zero_rain_counts_and_smooth_interpolates() {
        let a = radar("a", 8.0, 47.0, 64);
        let b = radar("b", 8.3, 47.0, 64);
        let va = disc(64, 30.0, |_, _| 0.0);
        let vb = disc(64, 30.0, |_, c| c as f32);
        let layers = [Layer::new(&a, &va).unwrap(), Layer::new(&b, &vb).unwrap()];
        // Dry from a is a measurement: it pulls the mean down.
        let p = sample_point(&layers, 8.15, 47.0);
        let only_b = sample_point(&layers[1..], 8.15, 47.0);
        assert!(p.value < only_b.value && p.value > 0.0);
        // Smooth sampling of a ramp is monotone along the row.
        let t = {
            let t0 = TileId::new(10, 0, 0).unwrap();
            let (px, py) = t0.lonlat_pixel(8.3, 47.0, 256);
            TileId::new(10, (px / 256.0) as u32, (py / 256.0) as u32).unwrap()
        };
        let s = sample_tile(&layers[1..], t, 256, true);
        let row: Vec<f32> = s[128 * 256..129 * 256]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        assert!(row.len() > 100);
        assert!(row.windows(2).all(|w| w[1] >= w[0] - 1e-4));
        let distinct = row
            .windows(2)
            .filter(|w| (w[1] - w[0]).abs() > 1e-6)
            .count();
        // Nearest-neighbour steps once per cell; smooth changes every pixel.
        assert!(distinct > row.len() / 2, "{distinct} of {}", row.len());
        assert!(Layer::new(&a, &vb[..10]).is_err());
    }
}
