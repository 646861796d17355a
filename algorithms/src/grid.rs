//! Georeferenced regular grids.
//!
//! A [`Grid`] describes where the cells of a 2-D field sit on the Earth: a
//! PROJ.4 projection string, the projected coordinates of the grid's
//! north-west outer corner, the cell size and the shape. Row 0 is the
//! northern-most row, column 0 the western-most column; projected `y`
//! therefore *decreases* with the row index.
//!
//! Coordinates:
//! * projected `x`/`y` are in metres of the projection;
//! * `lon`/`lat` are WGS84 degrees;
//! * `(row, col)` may be fractional: `(0.0, 0.0)` is the north-west *corner*
//!   of the first cell, `(0.5, 0.5)` its centre.

use proj4rs::Proj;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Errors raised when a grid cannot be built or a coordinate cannot be mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    /// The PROJ string could not be parsed or is unsupported by `proj4rs`.
    #[error("invalid projection {projection:?}: {reason}")]
    BadProjection { projection: String, reason: String },
    /// A grid parameter is not usable (zero size, non-finite, negative cell size...).
    #[error("invalid grid parameter {field}: {value}")]
    BadParameter { field: &'static str, value: String },
    /// A coordinate could not be transformed (outside the projection's domain).
    #[error("cannot transform coordinate ({x}, {y}): {reason}")]
    Transform { x: f64, y: f64, reason: String },
}

/// Largest number of rows or columns accepted for any grid. Guards against
/// absurd sizes declared in corrupt files (65 536 × 65 536 f32 = 16 GiB).
pub const MAX_GRID_SIDE: usize = 20_000;

/// A regular grid in a map projection.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grid {
    /// PROJ.4 string of the projection, e.g. `+proj=laea +lat_0=55 ...`.
    pub projection: String,
    /// Number of rows (north → south).
    pub rows: usize,
    /// Number of columns (west → east).
    pub cols: usize,
    /// Cell width in projected metres (positive).
    pub cell_x_m: f64,
    /// Cell height in projected metres (positive).
    pub cell_y_m: f64,
    /// Projected x (m) of the west edge of column 0.
    pub x_west_m: f64,
    /// Projected y (m) of the north edge of row 0.
    pub y_north_m: f64,
    #[serde(skip)]
    proj: Option<Proj>,
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("projection", &self.projection)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("cell_x_m", &self.cell_x_m)
            .field("cell_y_m", &self.cell_y_m)
            .field("x_west_m", &self.x_west_m)
            .field("y_north_m", &self.y_north_m)
            .finish()
    }
}

impl PartialEq for Grid {
    fn eq(&self, other: &Self) -> bool {
        self.same_geometry(other)
    }
}

fn wgs84() -> Proj {
    // A fixed, valid string: parsing cannot fail.
    #[allow(clippy::unwrap_used)]
    Proj::from_proj_string("+proj=longlat +datum=WGS84 +no_defs").unwrap()
}

impl Grid {
    /// Builds and validates a grid. The projection string is parsed once here.
    pub fn new(
        projection: impl Into<String>,
        rows: usize,
        cols: usize,
        cell_x_m: f64,
        cell_y_m: f64,
        x_west_m: f64,
        y_north_m: f64,
    ) -> Result<Self, GridError> {
        let projection = projection.into();
        for (field, v) in [("rows", rows), ("cols", cols)] {
            if v == 0 || v > MAX_GRID_SIDE {
                return Err(GridError::BadParameter {
                    field,
                    value: v.to_string(),
                });
            }
        }
        for (field, v) in [("cell_x_m", cell_x_m), ("cell_y_m", cell_y_m)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(GridError::BadParameter {
                    field,
                    value: v.to_string(),
                });
            }
        }
        for (field, v) in [("x_west_m", x_west_m), ("y_north_m", y_north_m)] {
            if !v.is_finite() {
                return Err(GridError::BadParameter {
                    field,
                    value: v.to_string(),
                });
            }
        }
        let proj =
            Proj::from_proj_string(projection.trim()).map_err(|e| GridError::BadProjection {
                projection: projection.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            projection,
            rows,
            cols,
            cell_x_m,
            cell_y_m,
            x_west_m,
            y_north_m,
            proj: Some(proj),
        })
    }

    /// Re-parses the projection after deserialisation (serde skips the parsed form).
    pub fn revalidate(self) -> Result<Self, GridError> {
        Self::new(
            self.projection,
            self.rows,
            self.cols,
            self.cell_x_m,
            self.cell_y_m,
            self.x_west_m,
            self.y_north_m,
        )
    }

    fn proj(&self) -> Result<Proj, GridError> {
        match &self.proj {
            Some(p) => Ok(p.clone()),
            None => Proj::from_proj_string(self.projection.trim()).map_err(|e| {
                GridError::BadProjection {
                    projection: self.projection.clone(),
                    reason: e.to_string(),
                }
            }),
        }
    }

    /// `(rows, cols)`, the shape of fields on this grid.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Mean cell size in metres (the two sides are equal for every supported product).
    pub fn cell_m(&self) -> f64 {
        0.5 * (self.cell_x_m + self.cell_y_m)
    }

    /// True when both grids place the same cells at the same places
    /// (same projection text, shape, cell size and origin within 1 mm).
    pub fn same_geometry(&self, other: &Grid) -> bool {
        self.projection.trim() == other.projection.trim()
            && self.rows == other.rows
            && self.cols == other.cols
            && (self.cell_x_m - other.cell_x_m).abs() < 1e-3
            && (self.cell_y_m - other.cell_y_m).abs() < 1e-3
            && (self.x_west_m - other.x_west_m).abs() < 1e-3
            && (self.y_north_m - other.y_north_m).abs() < 1e-3
    }

    /// Projected `(x, y)` in metres of a fractional `(row, col)` position.
    pub fn rowcol_to_xy(&self, row: f64, col: f64) -> (f64, f64) {
        (
            self.x_west_m + col * self.cell_x_m,
            self.y_north_m - row * self.cell_y_m,
        )
    }

    /// Fractional `(row, col)` of a projected `(x, y)` in metres.
    pub fn xy_to_rowcol(&self, x: f64, y: f64) -> (f64, f64) {
        (
            (self.y_north_m - y) / self.cell_y_m,
            (x - self.x_west_m) / self.cell_x_m,
        )
    }

    /// Projects WGS84 lon/lat (degrees) to projected metres.
    pub fn lonlat_to_xy(&self, lon: f64, lat: f64) -> Result<(f64, f64), GridError> {
        let proj = self.proj()?;
        let mut p = (lon.to_radians(), lat.to_radians(), 0.0);
        proj4rs::transform::transform(&wgs84(), &proj, &mut p).map_err(|e| {
            GridError::Transform {
                x: lon,
                y: lat,
                reason: e.to_string(),
            }
        })?;
        Ok((p.0, p.1))
    }

    /// Inverse-projects metres to WGS84 lon/lat (degrees).
    pub fn xy_to_lonlat(&self, x: f64, y: f64) -> Result<(f64, f64), GridError> {
        let proj = self.proj()?;
        let mut p = (x, y, 0.0);
        proj4rs::transform::transform(&proj, &wgs84(), &mut p).map_err(|e| {
            GridError::Transform {
                x,
                y,
                reason: e.to_string(),
            }
        })?;
        Ok((p.0.to_degrees(), p.1.to_degrees()))
    }

    /// Fractional `(row, col)` of a WGS84 lon/lat; may lie outside the grid.
    pub fn lonlat_to_rowcol(&self, lon: f64, lat: f64) -> Result<(f64, f64), GridError> {
        let (x, y) = self.lonlat_to_xy(lon, lat)?;
        Ok(self.xy_to_rowcol(x, y))
    }

    /// Fractional `(row, col)` of many WGS84 lon/lat points at once (the
    /// projections are set up once, not per point); `(NaN, NaN)` where a
    /// point cannot be transformed.
    pub fn lonlat_to_rowcol_many(&self, lonlat: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let Ok(proj) = self.proj() else {
            return vec![(f64::NAN, f64::NAN); lonlat.len()];
        };
        let src = wgs84();
        lonlat
            .iter()
            .map(|&(lon, lat)| {
                let mut p = (lon.to_radians(), lat.to_radians(), 0.0);
                match proj4rs::transform::transform(&src, &proj, &mut p) {
                    Ok(()) => self.xy_to_rowcol(p.0, p.1),
                    Err(_) => (f64::NAN, f64::NAN),
                }
            })
            .collect()
    }

    /// The cell `(row, col)` containing a lon/lat, or `None` outside the grid.
    pub fn cell_at_lonlat(&self, lon: f64, lat: f64) -> Option<(usize, usize)> {
        let (r, c) = self.lonlat_to_rowcol(lon, lat).ok()?;
        if r >= 0.0 && c >= 0.0 && r < self.rows as f64 && c < self.cols as f64 {
            Some((r as usize, c as usize))
        } else {
            None
        }
    }

    /// WGS84 lon/lat of a fractional `(row, col)` position.
    pub fn rowcol_to_lonlat(&self, row: f64, col: f64) -> Result<(f64, f64), GridError> {
        let (x, y) = self.rowcol_to_xy(row, col);
        self.xy_to_lonlat(x, y)
    }

    /// Lon/lat of the four *outer* corners: upper-left, upper-right,
    /// lower-right, lower-left.
    pub fn corners_lonlat(&self) -> Result<[(f64, f64); 4], GridError> {
        let (r, c) = (self.rows as f64, self.cols as f64);
        Ok([
            self.rowcol_to_lonlat(0.0, 0.0)?,
            self.rowcol_to_lonlat(0.0, c)?,
            self.rowcol_to_lonlat(r, c)?,
            self.rowcol_to_lonlat(r, 0.0)?,
        ])
    }

    /// Lon/lat bounding box `(west, south, east, north)` of the grid, sampled
    /// along its edges (projected grids are not lon/lat rectangles).
    pub fn bounds_lonlat(&self) -> Result<(f64, f64, f64, f64), GridError> {
        let (mut w, mut s, mut e, mut n) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        let steps = 32;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (r, c) = (self.rows as f64, self.cols as f64);
            for (row, col) in [(0.0, t * c), (r, t * c), (t * r, 0.0), (t * r, c)] {
                let (lon, lat) = self.rowcol_to_lonlat(row, col)?;
                w = w.min(lon);
                e = e.max(lon);
                s = s.min(lat);
                n = n.max(lat);
            }
        }
        Ok((w, s, e, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swiss() -> Grid {
        Grid::new(
            "+proj=somerc +lon_0=7.43958333333333 +lat_0=46.9524055555556 +k_0=1 +x_0=600000 +y_0=200000 +ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0 +units=m",
            640,
            710,
            1000.0,
            1000.0,
            255_000.0,
            480_000.0,
        )
        .expect("valid grid")
    }

    #[test]
    fn rowcol_xy_round_trip() {
        let g = swiss();
        let (x, y) = g.rowcol_to_xy(10.5, 20.25);
        let (r, c) = g.xy_to_rowcol(x, y);
        assert!((r - 10.5).abs() < 1e-9 && (c - 20.25).abs() < 1e-9);
        assert_eq!(g.rowcol_to_xy(0.0, 0.0), (255_000.0, 480_000.0));
    }

    #[test]
    fn lonlat_round_trip_and_known_point() {
        let g = swiss();
        // Bern observatory, origin of LV03: x=600000, y=200000.
        let (x, y) = g.lonlat_to_xy(7.438_632, 46.951_083).expect("transform");
        assert!((x - 600_000.0).abs() < 100.0, "x {x}");
        assert!((y - 200_000.0).abs() < 100.0, "y {y}");
        let (lon, lat) = g.rowcol_to_lonlat(100.5, 300.5).expect("inverse");
        let (r, c) = g.lonlat_to_rowcol(lon, lat).expect("forward");
        assert!(
            (r - 100.5).abs() < 1e-3 && (c - 300.5).abs() < 1e-3,
            "{r} {c}"
        );
        assert_eq!(g.cell_at_lonlat(lon, lat), Some((100, 300)));
    }

    #[test]
    fn many_points_at_once_equal_one_at_a_time() {
        let g = swiss();
        let pts = [(7.44, 46.95), (8.54, 47.37), (6.1, 46.2), (f64::NAN, 1.0)];
        let many = g.lonlat_to_rowcol_many(&pts);
        for (p, m) in pts.iter().zip(&many).take(3) {
            let one = g.lonlat_to_rowcol(p.0, p.1).expect("transform");
            assert!((one.0 - m.0).abs() < 1e-12 && (one.1 - m.1).abs() < 1e-12);
        }
        assert!(many[3].0.is_nan() || many[3].1.is_nan());
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            Grid::new("+proj=longlat", 0, 5, 1.0, 1.0, 0.0, 0.0),
            Err(GridError::BadParameter { field: "rows", .. })
        ));
        assert!(matches!(
            Grid::new("+proj=longlat", 5, 5, f64::NAN, 1.0, 0.0, 0.0),
            Err(GridError::BadParameter {
                field: "cell_x_m",
                ..
            })
        ));
        assert!(matches!(
            Grid::new("+proj=nonsense +x=1", 5, 5, 1.0, 1.0, 0.0, 0.0),
            Err(GridError::BadProjection { .. })
        ));
        assert!(matches!(
            Grid::new("+proj=longlat", 5, MAX_GRID_SIDE + 1, 1.0, 1.0, 0.0, 0.0),
            Err(GridError::BadParameter { field: "cols", .. })
        ));
    }

    #[test]
    fn serde_round_trip_revalidates() {
        let g = swiss();
        let json = serde_json::to_string(&g).expect("serialise");
        let back: Grid = serde_json::from_str(&json).expect("deserialise");
        let back = back.revalidate().expect("valid");
        assert!(back.same_geometry(&g));
        assert!(back.lonlat_to_xy(8.0, 47.0).is_ok());
    }
}
