//! Tiles: the rain cells of one `tile_size × tile_size` block of the grid.
//!
//! Tile item layout (version 1, little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | prefix: `RCSP`, version 1, kind `T`, flags 0 |
//! | 2 + 2 | tile row, tile column (tile indices, not cells) |
//! | 2 | tile size in cells |
//! | 4 | rain cells in the tile (≥ 1) |
//! | 1 | payload encoding: 0 stored, 1 raw deflate |
//! | 4 | raw payload length |
//! | 4 | payload length as stored |
//! | n | payload |
//! | 4 | CRC-32 of everything before |
//!
//! Raw payload: first the runs, then the values.
//! * Runs: for each of the tile's cell rows (north to south), a varint count
//!   of rain runs, then per run a varint gap (cells since the end of the
//!   previous run of that row, or since the tile's west edge) and a varint
//!   `length − 1`. Only rain cells are in runs.
//! * Values: one 16-bit quantisation code per rain cell in run order (see
//!   [`super::quant`]), delta-coded against the previous cell's code
//!   (wrapping, zig-zag mapped), written as two byte planes: all low bytes,
//!   then all high bytes. Neighbouring rain rates are close, so deltas are
//!   small and the high plane is mostly zeros, which deflate packs well.

use super::bytes::{
    check_prefix, deflate, inflate_exact, put_prefix, put_varint, seal, unseal, Reader,
};
use super::error::{Part, SparseError};
use super::quant;
use std::borrow::Cow;

/// Bytes of a tile item other than its payload: prefix, fixed fields, CRC.
pub(crate) const TILE_OVERHEAD: usize = 8 + 2 + 2 + 2 + 4 + 1 + 4 + 4 + 4;

/// Upper bound of the raw payload of an `h × w` tile. Per row: a count
/// (≤ 5 bytes) and at most `w.div_ceil(2)` runs of two varints each (≤ 5 bytes
/// each); per rain cell two value bytes. Decoding never inflates more than this.
pub(crate) const fn max_raw_len(h: usize, w: usize) -> usize {
    h * (5 + w.div_ceil(2) * 10) + 2 * h * w
}

/// Upper bound of a stored tile item for a given tile size, in bytes. Stored
/// payloads are never larger than the raw payload, which for `w ≤ 16 383`
/// has runs whose gap and length varints take at most 2 bytes each.
pub(crate) const fn max_item_bytes(tile_size: usize) -> usize {
    let t = tile_size;
    TILE_OVERHEAD + t * (3 + t.div_ceil(2) * 4) + 2 * t * t
}

/// The cells a tile covers: first row and column, height and width (clipped
/// at the grid's south and east edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileGeom {
    pub(crate) row0: usize,
    pub(crate) col0: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl TileGeom {
    /// Geometry of tile `(tr, tc)`; `None` when the tile lies outside the grid.
    pub(crate) fn new(
        tr: u16,
        tc: u16,
        tile_size: usize,
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        let row0 = tr as usize * tile_size;
        let col0 = tc as usize * tile_size;
        if row0 >= rows || col0 >= cols {
            return None;
        }
        Some(Self {
            row0,
            col0,
            h: tile_size.min(rows - row0),
            w: tile_size.min(cols - col0),
        })
    }
}

/// One encoded tile and what the header records about it.
pub(crate) struct EncodedTileData {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rain_cells: u32,
    /// Largest *decoded* rate in the tile, mm/h.
    pub(crate) max_mm_h: f32,
}

/// Encodes the rain cells (finite, `> 0`) of tile `(tr, tc)`; `None` when the
/// tile has none. `rate` is the whole field in row-major order, `rows × cols`
/// cells, mm/h.
pub(crate) fn encode(
    rate: &[f32],
    rows: usize,
    cols: usize,
    tr: u16,
    tc: u16,
    tile_size: usize,
) -> Option<EncodedTileData> {
    let g = TileGeom::new(tr, tc, tile_size, rows, cols)?;
    let mut runs = Vec::new();
    let mut codes: Vec<u16> = Vec::new();
    let mut row_runs: Vec<(u32, u32)> = Vec::new();
    for r in g.row0..g.row0 + g.h {
        let start_of_row = r * cols + g.col0;
        let row = &rate[start_of_row..start_of_row + g.w];
        row_runs.clear();
        let mut end = 0usize; // end of the previous run, tile-local column
        let mut c = 0usize;
        while c < g.w {
            if row[c] > 0.0 {
                let start = c;
                while c < g.w && row[c] > 0.0 {
                    codes.push(quant::encode(row[c]));
                    c += 1;
                }
                row_runs.push(((start - end) as u32, (c - start - 1) as u32));
                end = c;
            } else {
                c += 1;
            }
        }
        put_varint(&mut runs, row_runs.len() as u32);
        for &(gap, len_m1) in &row_runs {
            put_varint(&mut runs, gap);
            put_varint(&mut runs, len_m1);
        }
    }
    if codes.is_empty() {
        return None;
    }
    let max_code = codes.iter().copied().max().unwrap_or(0);
    let mut raw = runs;
    put_values(&codes, &mut raw);
    let deflated = deflate(&raw);
    let raw_len = raw.len();
    let (encoding, payload) = if deflated.len() < raw.len() {
        (1u8, deflated)
    } else {
        (0u8, raw)
    };
    let mut out = Vec::with_capacity(TILE_OVERHEAD + payload.len());
    put_prefix(&mut out, b'T');
    out.extend_from_slice(&tr.to_le_bytes());
    out.extend_from_slice(&tc.to_le_bytes());
    out.extend_from_slice(&(tile_size as u16).to_le_bytes());
    out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
    out.push(encoding);
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    seal(&mut out);
    Some(EncodedTileData {
        bytes: out,
        rain_cells: codes.len() as u32,
        max_mm_h: quant::decode(max_code),
    })
}

/// Delta + zig-zag + byte planes (see the module docs).
fn put_values(codes: &[u16], out: &mut Vec<u8>) {
    let n = codes.len();
    let base = out.len();
    out.resize(base + 2 * n, 0);
    let mut prev = 0u16;
    for (i, &c) in codes.iter().enumerate() {
        let d = c.wrapping_sub(prev) as i16;
        let z = ((d << 1) ^ (d >> 15)) as u16;
        out[base + i] = z as u8;
        out[base + n + i] = (z >> 8) as u8;
        prev = c;
    }
}

/// A tile item whose prefix, fields and checksum have been checked.
pub(crate) struct ParsedTile<'a> {
    pub(crate) tr: u16,
    pub(crate) tc: u16,
    pub(crate) tile_size: u16,
    pub(crate) rain_cells: u32,
    encoding: u8,
    raw_len: usize,
    payload: &'a [u8],
}

/// Parses a tile item: checksum, prefix, fixed fields and lengths.
pub(crate) fn parse(bytes: &[u8]) -> Result<ParsedTile<'_>, SparseError> {
    let body = unseal(Part::Tile, bytes)?;
    let mut r = Reader::new(Part::Tile, body);
    check_prefix(&mut r, b'T')?;
    let tr = r.u16("tile row")?;
    let tc = r.u16("tile column")?;
    let tile_size = r.u16("tile size")?;
    let rain_cells = r.u32("rain cells")?;
    let encoding = r.u8("encoding")?;
    let raw_len = r.u32("raw length")? as usize;
    let payload_len = r.u32("payload length")? as usize;
    let payload = r.take(payload_len, "payload")?;
    r.finish()?;
    if encoding > 1 {
        return Err(bad(
            "encoding",
            encoding.to_string(),
            "expected 0 (stored) or 1 (deflate)",
        ));
    }
    if encoding == 0 && payload_len != raw_len {
        return Err(bad(
            "raw length",
            raw_len.to_string(),
            "differs from the stored payload length",
        ));
    }
    Ok(ParsedTile {
        tr,
        tc,
        tile_size,
        rain_cells,
        encoding,
        raw_len,
        payload,
    })
}

impl ParsedTile<'_> {
    /// Walks the rain cells of this tile (geometry `g`), calling
    /// `f(tile_row, tile_col, rate_mm_h)` for each, in row-major order.
    /// Validates every run, the cell count and the value count.
    pub(crate) fn for_each_rain(
        &self,
        g: TileGeom,
        mut f: impl FnMut(usize, usize, f32) -> Result<(), SparseError>,
    ) -> Result<(), SparseError> {
        let limit = max_raw_len(g.h, g.w);
        if self.raw_len > limit {
            return Err(SparseError::AbsurdSize {
                part: Part::Tile,
                field: "raw length",
                value: self.raw_len as u64,
                limit: limit as u64,
            });
        }
        if self.rain_cells == 0 || self.rain_cells as usize > g.h * g.w {
            return Err(SparseError::AbsurdSize {
                part: Part::Tile,
                field: "rain cells",
                value: self.rain_cells as u64,
                limit: (g.h * g.w) as u64,
            });
        }
        let raw: Cow<'_, [u8]> = match self.encoding {
            0 => Cow::Borrowed(self.payload),
            _ => Cow::Owned(inflate_exact(Part::Tile, self.payload, self.raw_len)?),
        };
        let n = self.rain_cells as usize;
        // The runs come first; the values are the last 2n bytes.
        if raw.len() < 2 * n {
            return Err(SparseError::Truncated {
                part: Part::Tile,
                what: "values",
                needed: 2 * n,
                available: raw.len(),
            });
        }
        let (run_bytes, values) = raw.split_at(raw.len() - 2 * n);
        let (lo, hi) = values.split_at(n);
        let mut r = Reader::new(Part::Tile, run_bytes);
        let mut i = 0usize;
        let mut prev = 0u16;
        for row in 0..g.h {
            let nruns = r.varint("run count")? as usize;
            if nruns > g.w.div_ceil(2) {
                return Err(SparseError::AbsurdSize {
                    part: Part::Tile,
                    field: "run count",
                    value: nruns as u64,
                    limit: g.w.div_ceil(2) as u64,
                });
            }
            let mut col = 0usize;
            for k in 0..nruns {
                let gap = r.varint("run gap")? as usize;
                let len = r.varint("run length")? as usize + 1;
                if k > 0 && gap == 0 {
                    return Err(bad("run gap", "0".into(), "runs of one row must not touch"));
                }
                if gap > g.w - col || len > g.w - col - gap {
                    return Err(bad(
                        "run",
                        format!("row {row}, column {}, length {len}", col + gap),
                        "runs past the tile's east edge",
                    ));
                }
                if len > n - i {
                    return Err(bad(
                        "run length",
                        len.to_string(),
                        "more rain cells than declared",
                    ));
                }
                col += gap;
                for c in col..col + len {
                    let z = u16::from_le_bytes([lo[i], hi[i]]);
                    let d = ((z >> 1) as i16) ^ -((z & 1) as i16);
                    let code = prev.wrapping_add(d as u16);
                    if code == 0 {
                        return Err(bad("value code", "0".into(), "code 0 is not rain"));
                    }
                    f(row, c, quant::decode(code))?;
                    prev = code;
                    i += 1;
                }
                col += len;
            }
        }
        r.finish()?;
        if i != n {
            return Err(bad(
                "rain cells",
                self.rain_cells.to_string(),
                "differs from the cells in the runs",
            ));
        }
        Ok(())
    }
}

fn bad(field: &'static str, value: String, reason: &'static str) -> SparseError {
    SparseError::BadValue {
        part: Part::Tile,
        field,
        value,
        reason,
    }
}
