//! The scan header (manifest) item.
//!
//! Layout (version 1, little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | prefix: `RCSP`, version 1, kind `H`, flags 0 |
//! | 8 + 4 | valid time: Unix seconds (i64), nanoseconds (u32), UTC |
//! | 4 + 4 | grid rows, columns |
//! | 8 × 4 | cell width, cell height, x of the west edge, y of the north edge (m, f64) |
//! | 2 + n | PROJ string: length, UTF-8 bytes |
//! | 2 | tile size in cells |
//! | 1 | quantiser: 1 = log-spaced u16 codes of version 1 ([`super::quant`]) |
//! | 4 + 4 | rain cells, no-data cells |
//! | 4 | largest decoded rain rate, mm/h (f32; 0 without rain) |
//! | 8 | fingerprint of the no-data mask |
//! | 4 + n | no-data mask: length, raw-deflated run lengths ([`super::mask`]) |
//! | 4 | number of stored (non-empty) tiles |
//! | 16 each | per tile, sorted by (row, column): tile row (u16), tile column (u16), item bytes (u32), rain cells (u32), the tile item's own CRC-32 (u32) |
//! | 4 | CRC-32 of everything before |

use super::bytes::{check_prefix, put_prefix, seal, unseal, Reader};
use super::error::{Part, SparseError};
use super::{TileInfo, MAX_ITEM_BYTES, MAX_SCAN_CELLS, MAX_TILE_SIZE, MIN_TILE_SIZE};
use crate::grid::{Grid, MAX_GRID_SIDE};
use chrono::{DateTime, Utc};

/// Quantiser id written in version-1 headers.
pub(crate) const QUANTISER_LOG_U16: u8 = 1;
/// Bytes per tile entry.
const ENTRY_LEN: usize = 16;

/// A parsed header; `mask` borrows from the header bytes.
#[derive(Debug, Clone)]
pub(crate) struct Header<'a> {
    pub(crate) grid: Grid,
    pub(crate) time: DateTime<Utc>,
    pub(crate) tile_size: usize,
    pub(crate) rain_cells: u64,
    pub(crate) nodata_cells: u64,
    pub(crate) max_mm_h: f32,
    pub(crate) mask_fingerprint: u64,
    pub(crate) mask: &'a [u8],
    pub(crate) tiles: Vec<TileInfo>,
}

impl Header<'_> {
    /// Number of tile rows and tile columns covering the grid.
    pub(crate) fn tile_grid(&self) -> (usize, usize) {
        (
            self.grid.rows.div_ceil(self.tile_size),
            self.grid.cols.div_ceil(self.tile_size),
        )
    }

    /// Index of tile `(row, col)` in `tiles`, if stored.
    pub(crate) fn find(&self, row: u16, col: u16) -> Option<usize> {
        self.tiles
            .binary_search_by_key(&(row, col), |t| (t.row, t.col))
            .ok()
    }
}

/// Writes a header item.
pub(crate) fn write(h: &Header<'_>) -> Result<Vec<u8>, SparseError> {
    let proj = h.grid.projection.as_bytes();
    if proj.len() > u16::MAX as usize {
        return Err(SparseError::AbsurdSize {
            part: Part::Input,
            field: "projection length",
            value: proj.len() as u64,
            limit: u16::MAX as u64,
        });
    }
    let mut out = Vec::with_capacity(128 + proj.len() + h.mask.len() + ENTRY_LEN * h.tiles.len());
    put_prefix(&mut out, b'H');
    out.extend_from_slice(&h.time.timestamp().to_le_bytes());
    // A leap second (nanos >= 1e9) is stored as the last nanosecond before it.
    let nanos = h.time.timestamp_subsec_nanos().min(999_999_999);
    out.extend_from_slice(&nanos.to_le_bytes());
    out.extend_from_slice(&(h.grid.rows as u32).to_le_bytes());
    out.extend_from_slice(&(h.grid.cols as u32).to_le_bytes());
    for v in [
        h.grid.cell_x_m,
        h.grid.cell_y_m,
        h.grid.x_west_m,
        h.grid.y_north_m,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(proj.len() as u16).to_le_bytes());
    out.extend_from_slice(proj);
    out.extend_from_slice(&(h.tile_size as u16).to_le_bytes());
    out.push(QUANTISER_LOG_U16);
    out.extend_from_slice(&(h.rain_cells as u32).to_le_bytes());
    out.extend_from_slice(&(h.nodata_cells as u32).to_le_bytes());
    out.extend_from_slice(&h.max_mm_h.to_le_bytes());
    out.extend_from_slice(&h.mask_fingerprint.to_le_bytes());
    out.extend_from_slice(&(h.mask.len() as u32).to_le_bytes());
    out.extend_from_slice(h.mask);
    out.extend_from_slice(&(h.tiles.len() as u32).to_le_bytes());
    for t in &h.tiles {
        out.extend_from_slice(&t.row.to_le_bytes());
        out.extend_from_slice(&t.col.to_le_bytes());
        out.extend_from_slice(&t.bytes.to_le_bytes());
        out.extend_from_slice(&t.rain_cells.to_le_bytes());
        out.extend_from_slice(&t.crc32.to_le_bytes());
    }
    seal(&mut out);
    Ok(out)
}

/// Parses and validates a header item (everything but the mask's content,
/// which [`super::mask`] checks when it is read).
pub(crate) fn parse(bytes: &[u8]) -> Result<Header<'_>, SparseError> {
    let body = unseal(Part::Header, bytes)?;
    let mut r = Reader::new(Part::Header, body);
    check_prefix(&mut r, b'H')?;
    let secs = r.i64("time seconds")?;
    let nanos = r.u32("time nanoseconds")?;
    let time = DateTime::<Utc>::from_timestamp(secs, nanos)
        .filter(|_| nanos < 1_000_000_000)
        .ok_or_else(|| {
            bad(
                "time",
                format!("{secs} s + {nanos} ns"),
                "not a valid UTC time",
            )
        })?;
    let rows = r.u32("rows")? as usize;
    let cols = r.u32("columns")? as usize;
    for (field, v) in [("rows", rows), ("columns", cols)] {
        if v == 0 || v > MAX_GRID_SIDE {
            return Err(SparseError::AbsurdSize {
                part: Part::Header,
                field,
                value: v as u64,
                limit: MAX_GRID_SIDE as u64,
            });
        }
    }
    let cells = rows as u64 * cols as u64;
    if cells > MAX_SCAN_CELLS {
        return Err(SparseError::AbsurdSize {
            part: Part::Header,
            field: "cells",
            value: cells,
            limit: MAX_SCAN_CELLS,
        });
    }
    let cell_x = r.f64("cell width")?;
    let cell_y = r.f64("cell height")?;
    let x_west = r.f64("west x")?;
    let y_north = r.f64("north y")?;
    let proj_len = r.u16("projection length")? as usize;
    let proj = std::str::from_utf8(r.take(proj_len, "projection")?)
        .map_err(|e| bad("projection", e.to_string(), "not UTF-8"))?;
    let grid = Grid::new(proj, rows, cols, cell_x, cell_y, x_west, y_north).map_err(|source| {
        SparseError::Grid {
            part: Part::Header,
            source,
        }
    })?;
    let tile_size = r.u16("tile size")? as usize;
    if !(MIN_TILE_SIZE..=MAX_TILE_SIZE).contains(&tile_size) {
        return Err(bad(
            "tile size",
            tile_size.to_string(),
            "outside MIN_TILE_SIZE..=MAX_TILE_SIZE",
        ));
    }
    let quantiser = r.u8("quantiser")?;
    if quantiser != QUANTISER_LOG_U16 {
        return Err(bad(
            "quantiser",
            quantiser.to_string(),
            "version 1 knows quantiser 1 only",
        ));
    }
    let rain_cells = r.u32("rain cells")? as u64;
    let nodata_cells = r.u32("no-data cells")? as u64;
    if nodata_cells > cells || rain_cells > cells - nodata_cells {
        return Err(bad(
            "cell counts",
            format!("{rain_cells} rain + {nodata_cells} no data"),
            "more than the grid's cells",
        ));
    }
    let max_mm_h = r.f32("max rate")?;
    if !(max_mm_h.is_finite() && max_mm_h >= 0.0) || (max_mm_h > 0.0) != (rain_cells > 0) {
        return Err(bad(
            "max rate",
            max_mm_h.to_string(),
            "must be > 0 exactly when there is rain",
        ));
    }
    let mask_fingerprint = r.u64("mask fingerprint")?;
    let mask_len = r.u32("mask length")? as usize;
    let mask = r.take(mask_len, "mask")?;
    let tile_count = r.u32("tile count")? as usize;
    let (tile_rows, tile_cols) = (rows.div_ceil(tile_size), cols.div_ceil(tile_size));
    if tile_count > tile_rows * tile_cols {
        return Err(SparseError::AbsurdSize {
            part: Part::Header,
            field: "tile count",
            value: tile_count as u64,
            limit: (tile_rows * tile_cols) as u64,
        });
    }
    // Checked before allocating: the entries must be there.
    if tile_count * ENTRY_LEN > r.remaining() {
        return Err(SparseError::Truncated {
            part: Part::Header,
            what: "tile list",
            needed: tile_count * ENTRY_LEN,
            available: r.remaining(),
        });
    }
    let mut tiles = Vec::with_capacity(tile_count);
    let mut total_rain = 0u64;
    for _ in 0..tile_count {
        let t = TileInfo {
            row: r.u16("tile row")?,
            col: r.u16("tile column")?,
            bytes: r.u32("tile bytes")?,
            rain_cells: r.u32("tile rain cells")?,
            crc32: r.u32("tile checksum")?,
        };
        let where_ = || format!("tile ({}, {})", t.row, t.col);
        if t.row as usize >= tile_rows || t.col as usize >= tile_cols {
            return Err(bad("tile index", where_(), "outside the grid"));
        }
        if let Some(prev) = tiles.last().map(|p: &TileInfo| (p.row, p.col)) {
            if prev >= (t.row, t.col) {
                return Err(bad(
                    "tile index",
                    where_(),
                    "tiles must be sorted and unique",
                ));
            }
        }
        let cells_in_tile = tile_size * tile_size;
        if t.rain_cells == 0 || t.rain_cells as usize > cells_in_tile {
            return Err(bad(
                "tile rain cells",
                t.rain_cells.to_string(),
                "must be 1..=tile cells",
            ));
        }
        if (t.bytes as usize) < super::tile::TILE_OVERHEAD || t.bytes as usize > MAX_ITEM_BYTES {
            return Err(bad(
                "tile bytes",
                t.bytes.to_string(),
                "outside the possible item sizes",
            ));
        }
        total_rain += t.rain_cells as u64;
        tiles.push(t);
    }
    r.finish()?;
    if total_rain != rain_cells {
        return Err(bad(
            "rain cells",
            rain_cells.to_string(),
            "differs from the sum over the tile list",
        ));
    }
    Ok(Header {
        grid,
        time,
        tile_size,
        rain_cells,
        nodata_cells,
        max_mm_h,
        mask_fingerprint,
        mask,
        tiles,
    })
}

fn bad(field: &'static str, value: String, reason: &'static str) -> SparseError {
    SparseError::BadValue {
        part: Part::Header,
        field,
        value,
        reason,
    }
}
