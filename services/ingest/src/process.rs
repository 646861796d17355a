//! Turning the bytes of one raw file into a sparse scan to store.
//!
//! [`ScanProcessor`] is the seam between the ingest job and the algorithms:
//! [`DecodeProcessor`] is the real one (decode → hot prep → sparse encode).

use crate::config::RadarConfig;
use chrono::{DateTime, Utc};
use raincast_store::Tile;

/// A file turned into a storable scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedScan {
    /// Scan time from the file's content (UTC).
    pub time: DateTime<Utc>,
    /// Format name (`odim`, `bom`, ...).
    pub format: String,
    /// Encoded header (opaque to the stores).
    pub header: Vec<u8>,
    /// Cells with rain.
    pub rain_cells: u64,
    /// Encoded non-empty tiles.
    pub tiles: Vec<Tile>,
}

/// Why a file cannot be stored. The file is quarantined with this reason and
/// not tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    /// Short code: the decoder's `DecodeError::code()`, or `sparse_…`.
    pub code: String,
    /// What is wrong, for operators.
    pub reason: String,
}

/// Bytes of one file → a scan to store, or a reason to quarantine it.
/// CPU-bound: the ingest job calls it on the blocking pool.
pub trait ScanProcessor: Send + Sync + 'static {
    fn process(
        &self,
        radar: &RadarConfig,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<ProcessedScan, Rejection>;
}
