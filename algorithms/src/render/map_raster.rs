//! Resampling a field onto a raster that web maps can place with a lon/lat
//! box.
//!
//! Web maps (Leaflet `ImageOverlay`, MapLibre image sources) stretch an
//! image linearly between a west/east longitude and, vertically, between two
//! latitudes in **Web Mercator** (EPSG:3857) space. A radar grid in its own
//! projection (Albers, LAEA, stereographic ...) is neither axis-aligned in
//! lon/lat nor Mercator-spaced, so placing its pixels directly would shift
//! rain by kilometres at the edges. A [`MapRaster`] is the pixel → cell
//! lookup, built once per grid, that makes a field map-ready: pixel columns
//! are equally spaced in longitude, rows equally spaced in Mercator `y`,
//! each pixel takes the value of the grid cell under its centre (nearest
//! neighbour), and pixels outside the grid are `NaN` (no data).

use super::RenderError;
use crate::grid::Grid;
use crate::mosaic::{mercator_lat as merc_lat, mercator_y as merc_y};
use ndarray::{Array2, ArrayView2};

/// Largest width or height of a map raster in pixels.
pub const MAX_MAP_SIDE_PX: usize = 4096;
const NONE: u32 = u32::MAX;
/// The exact transform is evaluated every `LATTICE` pixels; rows and columns
/// in between are interpolated (sub-metre error at radar scales).
const LATTICE: usize = 8;

/// A pixel → grid-cell lookup for one grid (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct MapRaster {
    /// West edge of the raster, degrees longitude.
    pub west: f64,
    /// South edge, degrees latitude.
    pub south: f64,
    /// East edge, degrees longitude.
    pub east: f64,
    /// North edge, degrees latitude.
    pub north: f64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Grid shape the lookup was built for.
    shape: (usize, usize),
    /// `row * cols + col` of the cell under each pixel, row-major; `NONE` outside.
    index: Vec<u32>,
}

impl MapRaster {
    /// Builds the lookup for `grid`, with about one pixel per grid cell and
    /// neither side above `max_side_px` (clamped to `16..=MAX_MAP_SIDE_PX`).
    pub fn for_grid(grid: &Grid, max_side_px: usize) -> Result<Self, RenderError> {
        let transform_err = |e: crate::grid::GridError| RenderError::Projection {
            reason: e.to_string(),
        };
        let (west, south, east, north) = grid.bounds_lonlat().map_err(transform_err)?;
        if !(west < east && south < north) {
            return Err(RenderError::Projection {
                reason: format!("degenerate bounds {west},{south},{east},{north}"),
            });
        }
        let max_side = max_side_px.clamp(16, MAX_MAP_SIDE_PX) as f64;
        let x_extent = (east - west).to_radians();
        let y_extent = merc_y(north) - merc_y(south);
        let aspect = x_extent / y_extent;
        let cells = (grid.rows * grid.cols) as f64;
        let mut width = (cells * aspect).sqrt();
        let mut height = width / aspect;
        let shrink = (max_side / width).min(max_side / height).min(1.0);
        width = (width * shrink).round().max(1.0);
        height = (height * shrink).round().max(1.0);
        let (w, h) = (width as usize, height as usize);

        // Exact (row, col) on a coarse lattice, then bilinear in between.
        let (ny, nx) = (h.div_ceil(LATTICE) + 1, w.div_ceil(LATTICE) + 1);
        let (ym_n, ym_s) = (merc_y(north), merc_y(south));
        let mut lattice = vec![(f64::NAN, f64::NAN); ny * nx];
        for j in 0..ny {
            let py = (j * LATTICE) as f64;
            let lat = merc_lat(ym_n - py / height * (ym_n - ym_s));
            for i in 0..nx {
                let px = (i * LATTICE) as f64;
                let lon = west + px / width * (east - west);
                if let Ok(rc) = grid.lonlat_to_rowcol(lon, lat) {
                    lattice[j * nx + i] = rc;
                }
            }
        }
        let mut index = vec![NONE; w * h];
        for y in 0..h {
            let fy = (y as f64 + 0.5) / LATTICE as f64;
            let j0 = (fy.floor() as usize).min(ny - 2);
            let ty = fy - j0 as f64;
            for x in 0..w {
                let fx = (x as f64 + 0.5) / LATTICE as f64;
                let i0 = (fx.floor() as usize).min(nx - 2);
                let tx = fx - i0 as f64;
                let at = |j: usize, i: usize| lattice[j * nx + i];
                let (a, b, c, d) = (
                    at(j0, i0),
                    at(j0, i0 + 1),
                    at(j0 + 1, i0),
                    at(j0 + 1, i0 + 1),
                );
                let lerp = |p: f64, q: f64, r: f64, s: f64| {
                    (p * (1.0 - tx) + q * tx) * (1.0 - ty) + (r * (1.0 - tx) + s * tx) * ty
                };
                let row = lerp(a.0, b.0, c.0, d.0);
                let col = lerp(a.1, b.1, c.1, d.1);
                if row >= 0.0 && col >= 0.0 && row < grid.rows as f64 && col < grid.cols as f64 {
                    index[y * w + x] = (row as usize * grid.cols + col as usize) as u32;
                }
            }
        }
        Ok(Self {
            west,
            south,
            east,
            north,
            width: w,
            height: h,
            shape: grid.shape(),
            index,
        })
    }

    /// Grid shape `(rows, cols)` this raster reads.
    pub fn grid_shape(&self) -> (usize, usize) {
        self.shape
    }

    /// The grid cell `(row, col)` under pixel `(x, y)`, if any.
    pub fn cell_at(&self, x: usize, y: usize) -> Option<(usize, usize)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = self.index[y * self.width + x];
        (i != NONE).then(|| (i as usize / self.shape.1, i as usize % self.shape.1))
    }

    /// The field resampled onto the raster: `(height, width)`, mm/h, row 0
    /// north, `NaN` outside the grid. The field must have the grid's shape.
    pub fn resample(&self, field: ArrayView2<f32>) -> Result<Array2<f32>, RenderError> {
        let (rows, cols) = field.dim();
        if (rows, cols) != self.shape {
            return Err(RenderError::ShapeMismatch {
                index: 0,
                rows,
                cols,
                grid_rows: self.shape.0,
                grid_cols: self.shape.1,
            });
        }
        let standard = field.as_standard_layout();
        let flat = standard.as_slice().unwrap_or(&[]);
        let data: Vec<f32> = self
            .index
            .iter()
            .map(|&i| {
                if i == NONE {
                    f32::NAN
                } else {
                    flat.get(i as usize).copied().unwrap_or(f32::NAN)
                }
            })
            .collect();
        Array2::from_shape_vec((self.height, self.width), data).map_err(|e| RenderError::Encode {
            format: "map raster",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn albers() -> Grid {
        // BOM-like Albers grid around Melbourne, 512 x 512, 500 m.
        Grid::new(
            "+proj=aea +lat_1=-18 +lat_2=-36 +lat_0=-37.852 +lon_0=144.752 +ellps=GRS80 +units=m",
            512,
            512,
            500.0,
            500.0,
            -128_000.0,
            128_000.0,
        )
        .unwrap()
    }

    #[test]
    fn pixels_land_on_the_cell_under_them() {
        let g = albers();
        let m = MapRaster::for_grid(&g, 1024).unwrap();
        assert!(m.width > 400 && m.width < 700 && m.height > 400 && m.height < 700);
        let (ym_n, ym_s) = (merc_y(m.north), merc_y(m.south));
        let mut checked = 0;
        for (x, y) in [
            (10, 10),
            (100, 300),
            (m.width / 2, m.height / 2),
            (m.width - 3, m.height - 7),
            (333, 77),
        ] {
            let lon = m.west + (x as f64 + 0.5) / m.width as f64 * (m.east - m.west);
            let lat = merc_lat(ym_n - (y as f64 + 0.5) / m.height as f64 * (ym_n - ym_s));
            let exact = g.cell_at_lonlat(lon, lat);
            let got = m.cell_at(x, y);
            match (exact, got) {
                (Some((r, c)), Some((r2, c2))) => {
                    // Interpolation may cross a cell boundary: at most one cell off.
                    assert!(
                        r.abs_diff(r2) <= 1 && c.abs_diff(c2) <= 1,
                        "{x},{y}: {r},{c} vs {r2},{c2}"
                    );
                    checked += 1;
                }
                (None, None) => {}
                (e, g2) => {
                    // Only near the grid edge may the two disagree.
                    let cell = e.or(g2).unwrap();
                    assert!(
                        cell.0 < 2 || cell.1 < 2 || cell.0 > 509 || cell.1 > 509,
                        "{x},{y}: {e:?} vs {g2:?}"
                    );
                }
            }
        }
        assert!(checked >= 3);
        // The rotated grid leaves corners of the lon/lat box outside it.
        let outside = (0..m.width).filter(|&x| m.cell_at(x, 0).is_none()).count();
        assert!(outside > 0);
    }

    #[test]
    fn resample_copies_values_and_nan_outside() {
        let g = albers();
        let m = MapRaster::for_grid(&g, 256).unwrap();
        assert!(m.width <= 256 && m.height <= 256);
        let field = Array2::from_shape_fn((512, 512), |(r, c)| (r * 512 + c) as f32);
        let out = m.resample(field.view()).unwrap();
        assert_eq!(out.dim(), (m.height, m.width));
        for y in (0..m.height).step_by(17) {
            for x in (0..m.width).step_by(13) {
                match m.cell_at(x, y) {
                    Some((r, c)) => assert_eq!(out[[y, x]], (r * 512 + c) as f32),
                    None => assert!(out[[y, x]].is_nan()),
                }
            }
        }
        let wrong = Array2::<f32>::zeros((10, 10));
        assert!(matches!(
            m.resample(wrong.view()),
            Err(RenderError::ShapeMismatch { .. })
        ));
    }
}
