//! The real [`ScanProcessor`]: decode, hot prep, sparse encoding.

use crate::config::{IngestSettings, RadarConfig};
use crate::process::{ProcessedScan, Rejection, ScanProcessor};
use raincast_algorithms::decode;
use raincast_algorithms::prep::{self, PrepOptions};
use raincast_algorithms::sparse::{self, SparseOptions};
use raincast_store::Tile;

/// The real processor: `decode::decode` (format forced or detected), the hot
/// prep with the radar's Z–R, then the sparse encoding.
#[derive(Debug, Clone)]
pub struct DecodeProcessor {
    prep: PrepOptions,
    sparse: SparseOptions,
}

impl DecodeProcessor {
    pub fn new(settings: &IngestSettings) -> Self {
        Self {
            prep: PrepOptions {
                zr: None,
                threshold_mm_h: settings.threshold_mm_h,
                speckle_filter: settings.speckle_filter,
            },
            sparse: SparseOptions {
                tile_size: settings.tile_size,
            },
        }
    }
}

impl ScanProcessor for DecodeProcessor {
    fn process(
        &self,
        radar: &RadarConfig,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<ProcessedScan, Rejection> {
        let scan = decode::decode(bytes, Some(file_name), radar.format).map_err(|e| Rejection {
            code: e.code().to_string(),
            reason: e.to_string(),
        })?;
        let opts = PrepOptions {
            zr: radar.zr,
            ..self.prep
        };
        let field = prep::prep(&scan, &opts);
        let rain_cells = field.rain_cells() as u64;
        let encoded = sparse::encode(&field, &self.sparse).map_err(|e| Rejection {
            code: format!("sparse_{}", e.code()),
            reason: e.to_string(),
        })?;
        Ok(ProcessedScan {
            time: field.time,
            format: scan.format.name().to_string(),
            header: encoded.header,
            rain_cells,
            tiles: encoded
                .tiles
                .into_iter()
                .map(|t| Tile {
                    row: t.row,
                    col: t.col,
                    bytes: t.bytes,
                })
                .collect(),
        })
    }
}
