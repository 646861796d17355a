//! Pure radar algorithms for Raincast.
//!
//! This crate does no I/O: no file system, no network, no async runtime.
//! Bytes come in, fields come out. Services on top of it (ingest, nowcast,
//! API, notifier) handle storage and scheduling.
//!
//! Conventions used throughout:
//! * 2-D fields are `ndarray::Array2<f32>` in C (row-major) order with
//!   **row 0 at the north edge** and column 0 at the west edge.
//! * Rain rates are in **mm/h**, reflectivities in **dBZ**, accumulations in
//!   **mm**; times are UTC (`chrono::DateTime<Utc>`).
//! * `NaN` means **no data** (outside coverage, not scanned). It is never the
//!   same as zero rain ("undetect": measured, no echo).

pub mod basemap;
pub mod decode;
pub mod encode;
pub mod export;
pub mod extrapolate;
pub mod grid;
pub mod mosaic;
pub mod motion;
pub mod nowcast;
pub mod npy;
pub mod polar;
pub mod prep;
mod raster;
pub mod render;
pub mod scan;
pub mod sparse;
pub mod synth;
pub mod verify;

pub use grid::{Grid, GridError};
pub use scan::{DecodeError, Format, Quantity, RadarScan};
