//! The sparse rain array: what Raincast stores per scan (in DynamoDB, or the
//! embedded store), and its versioned byte encoding.
//!
//! A [`RainField`] (mm/h, `NaN` = no data, `0` = no rain) becomes one
//! **header** item plus one **tile** item per non-empty tile:
//!
//! * The grid is cut into fixed square tiles of [`SparseOptions::tile_size`]
//!   cells (256 by default; tiles on the south and east edges are clipped).
//!   Only tiles with at least one rain cell are stored, and a tile stores only
//!   its rain cells: runs of rain along each row, the tile's palette of
//!   quantised values, and one predicted palette index per rain cell
//!   ([`tile`] layout). Tiles encode independently, so a point lookup reads
//!   the header and one tile ([`point_value`]).
//! * The header carries the grid (PROJ string, shape, cell size, origin), the
//!   valid time (UTC), the tile size, the list of stored tiles (so a reader
//!   knows which items to fetch, with each tile's size, rain count and CRC),
//!   the counts (rain cells, no-data cells, max rate) and the **no-data
//!   mask**: run lengths over the whole grid, deflated ([`mask`] layout). A
//!   radar's mask rarely changes, so the header also carries a stable
//!   fingerprint of it ([`HeaderInfo::mask_fingerprint`]) for stores that
//!   want to keep one copy per fingerprint.
//! * Cells that are neither rain nor no data decode as `0.0` (no rain).
//!
//! **Quantisation** ([`quant`]): rates are stored as 16-bit log-spaced codes.
//! For rates in [`QUANT_MIN_MM_H`]`..=`[`QUANT_MAX_MM_H`] (0.001 to 10 000 mm/h)
//! the decoded rate is within [`MAX_RELATIVE_ERROR`] (1.231e-4, i.e. 0.0123 %)
//! of the original; smaller positive rates decode as 0.001 mm/h (rain stays
//! rain), larger ones as 10 000 mm/h. No data and no rain are exact.
//!
//! **Bytes**: every item starts with the magic `RCSP`, a version byte (1) and
//! a kind letter (`H` header, `T` tile, `B` blob), and ends with a CRC-32 of
//! everything before it. Payloads are raw-deflated where that is smaller.
//! Decoding checks every length against the bytes present and against
//! [`MAX_SCAN_CELLS`], [`MAX_ITEM_BYTES`] and the tile geometry before it
//! allocates, so truncated, corrupt or hostile bytes give a [`SparseError`],
//! never a panic or a huge allocation.
//!
//! **Item size**: every item is at most [`MAX_ITEM_BYTES`] (300 000 bytes),
//! well under DynamoDB's 400 KB ([`DYNAMODB_ITEM_LIMIT`]) with room for keys
//! and attributes. For tiles this holds by construction: no tile is larger
//! than its plain stored form, whose worst case at the largest tile size
//! (262 943 bytes for 256 × 256) is checked at compile time. The header is
//! checked by [`encode`], which fails with [`SparseError::ItemTooLarge`] only
//! for pathological no-data masks (hundreds of thousands of isolated no-data
//! cells) or absurdly many tiles. On real scans the largest item is a few
//! tens of kilobytes (docs/PERFORMANCE.md).

mod bytes;
mod error;
mod header;
pub mod mask;
pub mod quant;
pub mod tile;

pub use error::{Part, SparseError};
pub use mask::mask_fingerprint;
pub use quant::{MAX_RELATIVE_ERROR, QUANT_MAX_MM_H, QUANT_MIN_MM_H};

use crate::prep::RainField;
use bytes::{check_prefix, put_prefix, seal, unseal, Inflater, Reader};
use chrono::{DateTime, Utc};
use header::Header;
use ndarray::Array2;
use tile::TileGeom;

/// DynamoDB's item size limit (400 KB, counted as 409 600 bytes), for
/// reference: names and values of every attribute count towards it.
pub const DYNAMODB_ITEM_LIMIT: usize = 409_600;
/// Largest encoded header or tile item, in bytes. Leaves over 100 KB under
/// [`DYNAMODB_ITEM_LIMIT`] for keys, attribute names, TTL and bookkeeping.
pub const MAX_ITEM_BYTES: usize = 300_000;
/// Smallest tile side, in cells.
pub const MIN_TILE_SIZE: usize = 16;
/// Largest tile side, in cells: the worst-case tile (every other cell rain,
/// incompressible values) still fits in [`MAX_ITEM_BYTES`].
pub const MAX_TILE_SIZE: usize = 256;
/// Default tile side, in cells.
pub const DEFAULT_TILE_SIZE: usize = 256;
/// Largest grid (rows × columns) the sparse encoding accepts: 64 M cells
/// (256 MB as dense f32), four times a 2 km continental composite's 4.2 M at
/// 1 km. Decoding a header never allocates more than this many cells.
pub const MAX_SCAN_CELLS: u64 = 64_000_000;

// The largest possible tile item fits the item limit.
const _: () = assert!(tile::max_item_bytes(MAX_TILE_SIZE) <= MAX_ITEM_BYTES);

/// Encoding options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseOptions {
    /// Tile side in cells, [`MIN_TILE_SIZE`]`..=`[`MAX_TILE_SIZE`]. Default 256.
    pub tile_size: usize,
}

impl Default for SparseOptions {
    fn default() -> Self {
        Self {
            tile_size: DEFAULT_TILE_SIZE,
        }
    }
}

/// One stored tile: its tile indices (not cell indices) and its item bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedTile {
    /// Tile row: the tile covers cell rows `row * tile_size ..`.
    pub row: u16,
    /// Tile column: the tile covers cell columns `col * tile_size ..`.
    pub col: u16,
    /// The encoded tile item.
    pub bytes: Vec<u8>,
}

/// An encoded scan: the header item and the non-empty tile items, sorted by
/// `(row, col)`. Store the tiles first and the header last, so that a reader
/// who finds the header finds every tile it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedScan {
    /// The header (manifest) item.
    pub header: Vec<u8>,
    /// The stored tiles, sorted by `(row, col)`.
    pub tiles: Vec<EncodedTile>,
}

/// What the header lists about one stored tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileInfo {
    /// Tile row.
    pub row: u16,
    /// Tile column.
    pub col: u16,
    /// Size of the tile item in bytes.
    pub bytes: u32,
    /// Rain cells stored in the tile (≥ 1).
    pub rain_cells: u32,
    /// The tile item's own trailing CRC-32: ties the tile to this header.
    pub crc32: u32,
}

/// Everything the header says, without decoding any tile.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// Encoding version of the header.
    pub version: u8,
    /// The grid of the field.
    pub grid: crate::grid::Grid,
    /// Valid time of the field (UTC).
    pub time: DateTime<Utc>,
    /// Tile side in cells.
    pub tile_size: usize,
    /// Tile rows and tile columns covering the grid (stored or not).
    pub tile_grid: (usize, usize),
    /// The stored (non-empty) tiles, sorted by `(row, col)`.
    pub tiles: Vec<TileInfo>,
    /// Cells with rain.
    pub rain_cells: u64,
    /// Cells with no data.
    pub nodata_cells: u64,
    /// Largest decoded rain rate, mm/h (0 without rain).
    pub max_mm_h: f32,
    /// Stable fingerprint of the no-data mask (see [`mask_fingerprint`]).
    pub mask_fingerprint: u64,
    /// Bytes of the deflated mask inside the header.
    pub mask_bytes: usize,
    /// Bytes of the whole header item.
    pub header_bytes: usize,
}

impl EncodedScan {
    /// Header plus tile bytes.
    pub fn total_bytes(&self) -> usize {
        self.header.len() + self.tiles.iter().map(|t| t.bytes.len()).sum::<usize>()
    }

    /// Size of the largest item (header or tile), in bytes.
    pub fn largest_item_bytes(&self) -> usize {
        self.tiles
            .iter()
            .map(|t| t.bytes.len())
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0)
    }

    /// What the header says.
    pub fn info(&self) -> Result<HeaderInfo, SparseError> {
        header_info(&self.header)
    }

    /// Decodes the whole field.
    pub fn decode(&self) -> Result<RainField, SparseError> {
        decode(&self.header, &self.tiles)
    }

    /// One byte string holding the header and every tile, for files and
    /// caches. Layout: prefix (`RCSP`, 1, `B`, flags 0), header length (u32)
    /// and bytes, tile count (u32), per tile its row (u16), column (u16),
    /// length (u32) and bytes, then a CRC-32 of everything before.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_bytes() + 24 + 8 * self.tiles.len());
        put_prefix(&mut out, b'B');
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&(self.tiles.len() as u32).to_le_bytes());
        for t in &self.tiles {
            out.extend_from_slice(&t.row.to_le_bytes());
            out.extend_from_slice(&t.col.to_le_bytes());
            out.extend_from_slice(&(t.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&t.bytes);
        }
        seal(&mut out);
        out
    }

    /// Splits a blob made by [`Self::to_blob`] back into its items. Checks the
    /// framing and the blob's checksum; the items themselves are checked when
    /// they are decoded.
    pub fn from_blob(blob: &[u8]) -> Result<Self, SparseError> {
        let body = unseal(Part::Blob, blob)?;
        let mut r = Reader::new(Part::Blob, body);
        check_prefix(&mut r, b'B')?;
        let header_len = r.u32("header length")? as usize;
        let header = r.take(header_len, "header")?.to_vec();
        let count = r.u32("tile count")? as usize;
        // Each tile takes at least 8 framing bytes: bound the allocation.
        if count > r.remaining() / 8 {
            return Err(SparseError::Truncated {
                part: Part::Blob,
                what: "tile list",
                needed: count.saturating_mul(8),
                available: r.remaining(),
            });
        }
        let mut tiles = Vec::with_capacity(count);
        for _ in 0..count {
            let row = r.u16("tile row")?;
            let col = r.u16("tile column")?;
            let len = r.u32("tile length")? as usize;
            let bytes = r.take(len, "tile")?.to_vec();
            tiles.push(EncodedTile { row, col, bytes });
        }
        r.finish()?;
        Ok(Self { header, tiles })
    }
}

/// The tile `(tile_row, tile_col)` holding cell `(row, col)` for tiles of
/// `tile_size` cells (a `tile_size` of 0 is taken as 1). Indices beyond
/// `u16::MAX` saturate; no valid grid has them.
pub fn tile_of(row: usize, col: usize, tile_size: usize) -> (u16, u16) {
    let t = tile_size.max(1);
    let sat = |v: usize| u16::try_from(v / t).unwrap_or(u16::MAX);
    (sat(row), sat(col))
}

/// Encodes a rain field. Rain cells are those with a finite rate `> 0` (and
/// `+inf`, stored as [`QUANT_MAX_MM_H`]); `NaN` cells go into the no-data
/// mask; every other cell (zero, negative, `-inf`) decodes as `0.0`.
pub fn encode(field: &RainField, opts: &SparseOptions) -> Result<EncodedScan, SparseError> {
    let t = opts.tile_size;
    if !(MIN_TILE_SIZE..=MAX_TILE_SIZE).contains(&t) {
        return Err(SparseError::BadValue {
            part: Part::Input,
            field: "tile size",
            value: t.to_string(),
            reason: "outside MIN_TILE_SIZE..=MAX_TILE_SIZE",
        });
    }
    let (rows, cols) = field.grid.shape();
    if field.rate_mm_h.dim() != (rows, cols) {
        return Err(SparseError::BadValue {
            part: Part::Input,
            field: "field shape",
            value: format!("{:?}", field.rate_mm_h.dim()),
            reason: "differs from the grid's shape",
        });
    }
    let cells = rows as u64 * cols as u64;
    if cells > MAX_SCAN_CELLS {
        return Err(SparseError::AbsurdSize {
            part: Part::Input,
            field: "cells",
            value: cells,
            limit: MAX_SCAN_CELLS,
        });
    }
    let standard = field.rate_mm_h.as_standard_layout();
    // A standard-layout array always has a contiguous slice.
    let Some(rate) = standard.as_slice() else {
        return Err(SparseError::BadValue {
            part: Part::Input,
            field: "field layout",
            value: "non-contiguous".into(),
            reason: "expected a C-order array",
        });
    };
    let mut tile_encoder = tile::TileEncoder::new();
    let mask = mask::encode(rate, rows, cols, tile_encoder.deflater());
    let (tile_rows, tile_cols) = (rows.div_ceil(t), cols.div_ceil(t));
    let mut tiles = Vec::new();
    let mut infos = Vec::new();
    let mut rain_cells = 0u64;
    let mut max_mm_h = 0.0f32;
    for tr in 0..tile_rows as u16 {
        for tc in 0..tile_cols as u16 {
            let Some(enc) = tile::encode(&mut tile_encoder, rate, rows, cols, tr, tc, t) else {
                continue;
            };
            check_item_size(Part::Tile, enc.bytes.len())?;
            let n = enc.bytes.len();
            let crc = u32::from_le_bytes([
                enc.bytes[n - 4],
                enc.bytes[n - 3],
                enc.bytes[n - 2],
                enc.bytes[n - 1],
            ]);
            infos.push(TileInfo {
                row: tr,
                col: tc,
                bytes: n as u32,
                rain_cells: enc.rain_cells,
                crc32: crc,
            });
            rain_cells += enc.rain_cells as u64;
            max_mm_h = max_mm_h.max(enc.max_mm_h);
            tiles.push(EncodedTile {
                row: tr,
                col: tc,
                bytes: enc.bytes,
            });
        }
    }
    let header = header::write(&Header {
        grid: field.grid.clone(),
        time: field.time,
        tile_size: t,
        rain_cells,
        nodata_cells: mask.nodata_cells,
        max_mm_h,
        mask_fingerprint: mask.fingerprint,
        mask: &mask.deflated,
        tiles: infos,
    })?;
    check_item_size(Part::Header, header.len())?;
    Ok(EncodedScan { header, tiles })
}

fn check_item_size(part: Part, bytes: usize) -> Result<(), SparseError> {
    if bytes > MAX_ITEM_BYTES {
        return Err(SparseError::ItemTooLarge {
            part,
            bytes,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// Reads the header without decoding the mask or any tile.
pub fn header_info(header: &[u8]) -> Result<HeaderInfo, SparseError> {
    let h = header::parse(header)?;
    Ok(HeaderInfo {
        version: bytes::VERSION,
        tile_grid: h.tile_grid(),
        grid: h.grid,
        time: h.time,
        tile_size: h.tile_size,
        tiles: h.tiles,
        rain_cells: h.rain_cells,
        nodata_cells: h.nodata_cells,
        max_mm_h: h.max_mm_h,
        mask_fingerprint: h.mask_fingerprint,
        mask_bytes: h.mask.len(),
        header_bytes: header.len(),
    })
}

/// Parses `tile` and checks that it is the tile the header lists at `entry`.
fn check_tile<'a>(
    h: &Header<'_>,
    entry: &TileInfo,
    t: &'a EncodedTile,
) -> Result<(tile::ParsedTile<'a>, TileGeom), SparseError> {
    let p = tile::parse(&t.bytes)?;
    let mismatch = |field: &'static str, tile: u64, header: u64| {
        if tile == header {
            Ok(())
        } else {
            Err(SparseError::TileMismatch {
                row: t.row,
                col: t.col,
                field,
                tile,
                header,
            })
        }
    };
    mismatch("tile row", p.tr as u64, entry.row as u64)?;
    mismatch("tile column", p.tc as u64, entry.col as u64)?;
    mismatch("tile size", p.tile_size as u64, h.tile_size as u64)?;
    mismatch("bytes", t.bytes.len() as u64, entry.bytes as u64)?;
    mismatch("rain cells", p.rain_cells as u64, entry.rain_cells as u64)?;
    let n = t.bytes.len();
    // parse() succeeded, so the item holds at least its 4-byte CRC.
    let crc = u32::from_le_bytes([
        t.bytes[n - 4],
        t.bytes[n - 3],
        t.bytes[n - 2],
        t.bytes[n - 1],
    ]);
    mismatch("checksum", crc as u64, entry.crc32 as u64)?;
    let g = TileGeom::new(entry.row, entry.col, h.tile_size, h.grid.rows, h.grid.cols).ok_or(
        SparseError::UnexpectedTile {
            row: entry.row,
            col: entry.col,
        },
    )?;
    Ok((p, g))
}

/// Decodes a scan from its header and its stored tiles (in any order). Every
/// tile the header lists must be supplied ([`SparseError::MissingTile`]
/// otherwise); tiles it does not list hold no rain and are never stored.
/// Cells outside the stored tiles' rain runs are `0.0` (no rain) or `NaN`
/// (no data, from the mask).
pub fn decode(header: &[u8], tiles: &[EncodedTile]) -> Result<RainField, SparseError> {
    decode_reusing(header, tiles, Vec::new())
}

/// [`decode`] into the allocation of `buffer` (its contents are
/// overwritten): a caller decoding many scans of one grid in turn hands
/// back each field's storage (`rate_mm_h.into_raw_vec_and_offset().0`)
/// instead of allocating (and the kernel zeroing) a fresh grid each time.
pub fn decode_reusing(
    header: &[u8],
    tiles: &[EncodedTile],
    buffer: Vec<f32>,
) -> Result<RainField, SparseError> {
    let h = header::parse(header)?;
    let (rows, cols) = h.grid.shape();
    // rows * cols <= MAX_SCAN_CELLS, checked by the header parser.
    // The mask writes every cell (no rain or no data): no zeroing first.
    let mut data = buffer;
    data.truncate(rows * cols);
    data.resize(rows * cols, 0.0);
    mask::decode_into(
        h.mask,
        rows,
        cols,
        h.nodata_cells,
        h.mask_fingerprint,
        &mut data,
    )?;
    let mut seen = vec![false; h.tiles.len()];
    let mut inflater = Inflater::new();
    for t in tiles {
        let Some(i) = h.find(t.row, t.col) else {
            return Err(SparseError::UnexpectedTile {
                row: t.row,
                col: t.col,
            });
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(SparseError::DuplicateTile {
                row: t.row,
                col: t.col,
            });
        }
        let (p, g) = check_tile(&h, &h.tiles[i], t)?;
        p.for_each_run(g, &mut inflater, |r, c, rates| {
            let (cell_row, cell_col) = (g.row0 + r, g.col0 + c);
            let start = cell_row * cols + cell_col;
            // In range: runs stay inside the tile, checked by the walker.
            let cells = &mut data[start..start + rates.len()];
            if let Some(k) = cells.iter().position(|x| x.is_nan()) {
                return Err(SparseError::RainOnNoData {
                    row: t.row,
                    col: t.col,
                    cell_row,
                    cell_col: cell_col + k,
                });
            }
            cells.copy_from_slice(rates);
            Ok(())
        })?;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(SparseError::MissingTile {
            row: h.tiles[i].row,
            col: h.tiles[i].col,
        });
    }
    // `data` has exactly rows * cols cells: this cannot fail.
    let rate_mm_h =
        Array2::from_shape_vec((rows, cols), data).map_err(|_| SparseError::BadValue {
            part: Part::Header,
            field: "shape",
            value: format!("{rows}x{cols}"),
            reason: "inconsistent with the cells decoded",
        })?;
    Ok(RainField {
        grid: h.grid,
        time: h.time,
        rate_mm_h,
    })
}

/// The rate (mm/h) of one cell, reading the header and at most one tile:
/// `NaN` for no data, `0.0` for no rain. `tile` must be the stored tile
/// holding the cell (see [`tile_of`] and [`HeaderInfo::tiles`]) when the
/// header lists it, and may be `None` otherwise. Reads the mask only when the
/// cell holds no rain, and only up to the cell.
pub fn point_value(
    header: &[u8],
    tile: Option<&EncodedTile>,
    row: usize,
    col: usize,
) -> Result<f32, SparseError> {
    let h = header::parse(header)?;
    let (rows, cols) = h.grid.shape();
    if row >= rows || col >= cols {
        return Err(SparseError::OutOfGrid {
            row,
            col,
            rows,
            cols,
        });
    }
    let (tr, tc) = tile_of(row, col, h.tile_size);
    if let Some(t) = tile {
        if (t.row, t.col) != (tr, tc) {
            return Err(SparseError::WrongTile {
                row: t.row,
                col: t.col,
                expected_row: tr,
                expected_col: tc,
            });
        }
    }
    match (h.find(tr, tc), tile) {
        (Some(_), None) => return Err(SparseError::MissingTile { row: tr, col: tc }),
        (None, Some(t)) => {
            return Err(SparseError::UnexpectedTile {
                row: t.row,
                col: t.col,
            })
        }
        (Some(i), Some(t)) => {
            let (p, g) = check_tile(&h, &h.tiles[i], t)?;
            let (lr, lc) = (row - g.row0, col - g.col0);
            let mut found = None;
            p.for_each_rain(g, &mut Inflater::new(), |r, c, v| {
                if (r, c) == (lr, lc) {
                    found = Some(v);
                }
                Ok(())
            })?;
            if let Some(v) = found {
                return Ok(v);
            }
        }
        (None, None) => {}
    }
    let nodata = mask::is_nodata(h.mask, rows as u64 * cols as u64, (row * cols + col) as u64)?;
    Ok(if nodata { f32::NAN } else { 0.0 })
}

#[cfg(test)]
mod tests;
