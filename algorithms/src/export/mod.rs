//! GIS exports of fields on a [`Grid`]: a tiled GeoTIFF of one field
//! ([`geotiff`]) and a CF-1.8 netCDF of a whole nowcast ([`netcdf`]), with
//! the grid's CRS described for both ([`crs`]). Bytes out, no I/O: the
//! containers are written by crates (`tiff-writer`, `netcdf-writer`) into
//! memory.

pub mod crs;
pub mod geotiff;
pub mod netcdf;

pub use crs::{Crs, CrsError};
pub use geotiff::{encode_geotiff, BandInfo};
pub use netcdf::{encode_nowcast_netcdf, NetcdfStream, NowcastFile};

use crate::Grid;

/// Why an export could not be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// The grid's projection has no GeoTIFF / CF description.
    #[error("projection: {0}")]
    Crs(#[from] CrsError),
    /// A field does not have the grid's shape (or leads and fields differ).
    #[error("shape: {0}")]
    Shape(String),
    /// The TIFF writer failed.
    #[error("GeoTIFF: {0}")]
    Tiff(String),
    /// The netCDF writer failed.
    #[error("netCDF: {0}")]
    NetCdf(String),
}

fn check_shape(grid: &Grid, dim: (usize, usize)) -> Result<(), ExportError> {
    if dim != grid.shape() {
        return Err(ExportError::Shape(format!(
            "field is {} x {}, the grid {} x {}",
            dim.0, dim.1, grid.rows, grid.cols
        )));
    }
    Ok(())
}
