//! Test support shared by the crate's unit tests: a processor for a text
//! format the tests write themselves (`RAINTEST <time> <cells>`), so that
//! listing, queueing, checkpoints and quarantine are checked independently
//! of the radar decoders.

#![allow(clippy::unwrap_used)]

use crate::config::RadarConfig;
use crate::process::{ProcessedScan, Rejection, ScanProcessor};
use chrono::{DateTime, Utc};
use raincast_store::Tile;

/// `RAINTEST <RFC 3339 time> <rain cells>`; `RAINTEST PANIC` panics,
/// anything else is rejected as `bad_magic`.
pub(crate) struct TextProcessor;

impl ScanProcessor for TextProcessor {
    fn process(
        &self,
        _radar: &RadarConfig,
        _file: &str,
        bytes: &[u8],
    ) -> Result<ProcessedScan, Rejection> {
        let text = std::str::from_utf8(bytes).map_err(|_| Rejection {
            code: "bad_magic".into(),
            reason: "not text".into(),
        })?;
        let mut words = text.split_whitespace();
        if words.next() != Some("RAINTEST") {
            return Err(Rejection {
                code: "bad_magic".into(),
                reason: format!(
                    "expected RAINTEST, found {:?}",
                    text.get(..8).unwrap_or(text)
                ),
            });
        }
        if words.clone().next() == Some("PANIC") {
            panic!("test processor asked to panic");
        }
        let time = words
            .next()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(|| Rejection {
                code: "bad_value".into(),
                reason: "no time".into(),
            })?
            .with_timezone(&Utc);
        let cells: u64 = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok(ProcessedScan {
            time,
            format: "raintest".into(),
            header: bytes.to_vec(),
            rain_cells: cells,
            tiles: (0..(cells.min(3) as u16))
                .map(|i| Tile {
                    row: i,
                    col: 0,
                    bytes: vec![i as u8; 100],
                })
                .collect(),
        })
    }
}
