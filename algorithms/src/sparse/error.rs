//! Errors of the sparse encoding.

use crate::grid::GridError;
use std::fmt;

/// Which encoded object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The scan header (manifest) item.
    Header,
    /// The run-length no-data mask inside the header.
    Mask,
    /// A tile item.
    Tile,
    /// The single-byte-string form of a whole scan ([`super::EncodedScan::to_blob`]).
    Blob,
    /// The field or options given to the encoder.
    Input,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Mask => "no-data mask",
            Part::Tile => "tile",
            Part::Blob => "blob",
            Part::Input => "input",
        })
    }
}

/// Why a sparse scan could not be encoded or decoded. Decoding never panics
/// and never allocates more than the validated grid needs: every length read
/// from the bytes is checked against the bytes that are actually there and
/// against the limits in [`super`] before it is used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SparseError {
    /// The bytes end before a structure is complete.
    #[error("sparse {part}: truncated: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        part: Part,
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// The bytes do not start with the sparse magic number and the right kind letter.
    #[error("sparse {part}: wrong magic number: expected {expected:?}, found {found:?}")]
    BadMagic {
        part: Part,
        expected: String,
        found: String,
    },
    /// The encoding version is not one this build reads.
    #[error("sparse {part}: unsupported version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        part: Part,
        found: u8,
        supported: u8,
    },
    /// The stored CRC-32 does not match the bytes: corruption or a torn write.
    #[error("sparse {part}: checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        part: Part,
        stored: u32,
        computed: u32,
    },
    /// A field holds a value that cannot be right.
    #[error("sparse {part}: invalid {field} = {value}: {reason}")]
    BadValue {
        part: Part,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A declared size or count is beyond what this format allows.
    #[error("sparse {part}: absurd {field} = {value} (limit {limit})")]
    AbsurdSize {
        part: Part,
        field: &'static str,
        value: u64,
        limit: u64,
    },
    /// Bytes remain after the end of a complete structure.
    #[error("sparse {part}: {bytes} unexpected trailing bytes")]
    TrailingBytes { part: Part, bytes: usize },
    /// A deflate stream is corrupt or inflates to the wrong length.
    #[error("sparse {part}: bad deflate stream: {reason}")]
    Deflate { part: Part, reason: String },
    /// The header lists a tile that was not supplied.
    #[error("sparse: tile ({row}, {col}) is listed in the header but was not supplied")]
    MissingTile { row: u16, col: u16 },
    /// A supplied tile is not listed in the header (empty tiles are never stored).
    #[error("sparse: tile ({row}, {col}) is not listed in the header")]
    UnexpectedTile { row: u16, col: u16 },
    /// The supplied tile is not the one that holds the requested cell.
    #[error("sparse: cell is in tile ({expected_row}, {expected_col}) but tile ({row}, {col}) was supplied")]
    WrongTile {
        row: u16,
        col: u16,
        expected_row: u16,
        expected_col: u16,
    },
    /// The same tile was supplied twice.
    #[error("sparse: tile ({row}, {col}) supplied twice")]
    DuplicateTile { row: u16, col: u16 },
    /// A tile does not belong to this header (another scan, or a torn write).
    #[error("sparse: tile ({row}, {col}) does not match the header: {field} is {tile} in the tile, {header} in the header")]
    TileMismatch {
        row: u16,
        col: u16,
        field: &'static str,
        tile: u64,
        header: u64,
    },
    /// Rain is stored for a cell the mask marks as no data.
    #[error("sparse: tile ({row}, {col}) stores rain at no-data cell ({cell_row}, {cell_col})")]
    RainOnNoData {
        row: u16,
        col: u16,
        cell_row: usize,
        cell_col: usize,
    },
    /// An encoded item would exceed the per-item size limit ([`super::MAX_ITEM_BYTES`]).
    #[error("sparse {part}: encoded item is {bytes} bytes, over the {limit}-byte item limit")]
    ItemTooLarge {
        part: Part,
        bytes: usize,
        limit: usize,
    },
    /// A requested cell lies outside the grid.
    #[error("sparse: cell ({row}, {col}) is outside the {rows}x{cols} grid")]
    OutOfGrid {
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    },
    /// The grid stored in (or given to) the encoding is invalid.
    #[error("sparse {part}: invalid grid: {source}")]
    Grid {
        part: Part,
        #[source]
        source: GridError,
    },
}

impl SparseError {
    /// A short machine-readable reason code for metrics labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            SparseError::Truncated { .. } => "truncated",
            SparseError::BadMagic { .. } => "bad_magic",
            SparseError::UnsupportedVersion { .. } => "unsupported_version",
            SparseError::Checksum { .. } => "checksum",
            SparseError::BadValue { .. } => "bad_value",
            SparseError::AbsurdSize { .. } => "absurd_size",
            SparseError::TrailingBytes { .. } => "trailing_bytes",
            SparseError::Deflate { .. } => "deflate",
            SparseError::MissingTile { .. } => "missing_tile",
            SparseError::UnexpectedTile { .. } => "unexpected_tile",
            SparseError::WrongTile { .. } => "wrong_tile",
            SparseError::DuplicateTile { .. } => "duplicate_tile",
            SparseError::TileMismatch { .. } => "tile_mismatch",
            SparseError::RainOnNoData { .. } => "rain_on_nodata",
            SparseError::ItemTooLarge { .. } => "item_too_large",
            SparseError::OutOfGrid { .. } => "out_of_grid",
            SparseError::Grid { .. } => "grid",
        }
    }
}
