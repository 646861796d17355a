//! Writes rain-rate fields as FMI PGM composites (the format read by
//! [`crate::decode::fmi_pgm`]): a `P5` header with FMI's `#` metadata, one
//! byte per cell with dBZ = (pixel − 64) / 2 via FMI's Z = 223·R^1.53, 255 as
//! the missing value; optionally gzip-compressed. Bytes out, no I/O.

use crate::decode::fmi_pgm::stere_projection;
use crate::grid::{Grid, GridError};
use crate::scan::ZR;
use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::ArrayView2;
use std::io::Write;

/// Pixel written for no data; also the header's maximum value.
pub const MISSING_PIXEL: u8 = 255;

/// Why a field could not be written as an FMI PGM.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The field's shape differs from the grid's.
    #[error("fmi-pgm writer: field is {found}, grid is {expected}")]
    Shape { expected: String, found: String },
    /// The grid is not on FMI's stereographic projection.
    #[error("fmi-pgm writer: unsupported projection {projection:?}: {reason}")]
    Projection { projection: String, reason: String },
    /// A grid corner could not be converted to lon/lat.
    #[error("fmi-pgm writer: {0}")]
    Grid(#[from] GridError),
    /// gzip compression failed.
    #[error("fmi-pgm writer: gzip: {0}")]
    Gzip(String),
}

/// The pixel nearest to `rate_mm_h` in dBZ under FMI's Z–R relation:
/// NaN → 255 (missing), ≤ 0 → 0 (−32 dBZ, the lowest level), otherwise
/// `round(2·dBZ + 64)` clamped to `0..=254`. Quantisation: ±0.25 dBZ, i.e.
/// a rate factor of at most 10^(0.025/1.53) ≈ 1.038.
pub fn rate_to_pixel(rate_mm_h: f32) -> u8 {
    if rate_mm_h.is_nan() {
        return MISSING_PIXEL;
    }
    if rate_mm_h <= 0.0 {
        return 0;
    }
    let dbz = ZR::FMI.dbz(f64::from(rate_mm_h));
    (2.0 * dbz + 64.0)
        .round()
        .clamp(0.0, f64::from(MISSING_PIXEL - 1)) as u8
}

/// Value of `+key=` in a PROJ string.
fn proj_param(projection: &str, key: &str) -> Option<f64> {
    projection
        .split_whitespace()
        .find_map(|t| t.strip_prefix('+')?.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Central longitude, central latitude and true latitude of a grid drawn
/// on FMI's projection ([`stere_projection`]).
fn stere_angles(grid: &Grid) -> Result<(f64, f64, f64), EncodeError> {
    let unsupported = |reason: &str| EncodeError::Projection {
        projection: grid.projection.clone(),
        reason: reason.to_string(),
    };
    let p = grid.projection.trim();
    let angle = |key| proj_param(p, key).ok_or_else(|| unsupported(&format!("no numeric +{key}")));
    let (lon0, lat0, lat_ts) = (angle("lon_0")?, angle("lat_0")?, angle("lat_ts")?);
    if p != stere_projection(lon0, lat0, lat_ts) {
        return Err(unsupported(
            "the PGM header can only describe FMI's stereographic sphere and false origin \
             (see decode::fmi_pgm::stere_projection)",
        ));
    }
    Ok((lon0, lat0, lat_ts))
}

/// Encodes a rain-rate field (mm/h, shape `(grid.rows, grid.cols)`, row 0
/// north, NaN = no data) observed at `time` (UTC) as an FMI PGM on `grid`,
/// which must use [`stere_projection`]. With `gzip` the bytes are a gzip
/// stream, as in FMI's archive.
pub fn encode(
    rate_mm_h: ArrayView2<'_, f32>,
    grid: &Grid,
    time: DateTime<Utc>,
    gzip: bool,
) -> Result<Vec<u8>, EncodeError> {
    if rate_mm_h.dim() != grid.shape() {
        let (r, c) = rate_mm_h.dim();
        return Err(EncodeError::Shape {
            expected: format!("{} x {}", grid.rows, grid.cols),
            found: format!("{r} x {c}"),
        });
    }
    let (lon0, lat0, lat_ts) = stere_angles(grid)?;
    let (rows, cols) = (grid.rows as f64, grid.cols as f64);
    let bottom_left = grid.rowcol_to_lonlat(rows, 0.0)?;
    let top_right = grid.rowcol_to_lonlat(0.0, cols)?;
    let header = format!(
        "P5\n\
         # composite_area SYNTHETIC\n\
         # obstime {}\n\
         # producttype CAPPI\n\
         # param CorrectedReflectivity\n\
         # metersperpixel_x {}\n\
         # metersperpixel_y {}\n\
         # projection radar {{\n\
         # type stereographic\n\
         # centrallongitude {lon0}\n\
         # centrallatitude {lat0}\n\
         # truelatitude {lat_ts}\n\
         # bottomleft {:.9} {:.9}\n\
         # topright {:.9} {:.9}\n\
         # }}\n\
         {} {}\n\
         {MISSING_PIXEL}\n",
        time.format("%Y%m%d%H%M"),
        grid.cell_x_m,
        grid.cell_y_m,
        bottom_left.0,
        bottom_left.1,
        top_right.0,
        top_right.1,
        grid.cols,
        grid.rows,
    );
    let mut pgm = Vec::with_capacity(header.len() + grid.rows * grid.cols);
    pgm.extend_from_slice(header.as_bytes());
    pgm.extend(rate_mm_h.iter().map(|&v| rate_to_pixel(v)));
    if !gzip {
        return Ok(pgm);
    }
    let gz_err = |e: std::io::Error| EncodeError::Gzip(e.to_string());
    let mut encoder = GzEncoder::new(Vec::with_capacity(pgm.len() / 4), Compression::default());
    encoder.write_all(&pgm).map_err(gz_err)?;
    encoder.finish().map_err(gz_err)
}

/// FMI's archive file name for a composite at `time`, e.g.
/// `201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz`.
pub fn file_name(time: DateTime<Utc>) -> String {
    format!(
        "{}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
        time.format("%Y%m%d%H%M")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::decode::fmi_pgm::{pixel_dbz, SUOMI1};

    #[test]
    fn every_rain_pixel_maps_back_to_itself() {
        for p in 0..MISSING_PIXEL {
            let rate = ZR::FMI.rate_mm_h(f64::from(pixel_dbz(p))) as f32;
            assert_eq!(rate_to_pixel(rate), p, "pixel {p}");
        }
        assert_eq!(rate_to_pixel(f32::NAN), 255);
        assert_eq!(rate_to_pixel(0.0), 0);
        assert_eq!(rate_to_pixel(-1.0), 0);
        assert_eq!(rate_to_pixel(f32::INFINITY), 254);
    }

    #[test]
    fn rejects_other_grids_and_shapes() {
        let grid = SUOMI1.grid().unwrap();
        let t = chrono::DateTime::UNIX_EPOCH;
        let err = encode(ndarray::Array2::zeros((3, 3)).view(), &grid, t, false).unwrap_err();
        assert!(matches!(err, EncodeError::Shape { .. }), "{err}");
        let swiss = crate::decode::mch_gif::ccs4_grid().unwrap();
        let err = encode(
            ndarray::Array2::zeros(swiss.shape()).view(),
            &swiss,
            t,
            true,
        );
        assert!(
            matches!(err, Err(EncodeError::Projection { .. })),
            "{err:?}"
        );
        assert_eq!(
            file_name(t),
            "197001010000_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
        );
    }
}
