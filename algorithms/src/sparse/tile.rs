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
//! | 1 | payload encoding: bit 0 = raw deflate, bit 1 = palette layout |
//! | 4 | raw payload length |
//! | 4 | payload length as stored |
//! | n | payload |
//! | 4 | CRC-32 of everything before |
//!
//! Raw payload, **palette layout** (the usual one):
//! 1. Palette: a varint count, then the tile's distinct quantisation codes
//!    ([`super::quant`]) in increasing order, each as a varint gap from the
//!    previous one (the first from 0). Codes are 16-bit but real scans use a
//!    few dozen to a few thousand of them, so a palette index is small.
//! 2. Runs: for each of the tile's cell rows (north to south), a varint count
//!    of rain runs, then per run a varint gap (cells since the end of the
//!    previous run of that row, or since the tile's west edge) and a varint
//!    `length − 1`. Only rain cells are in runs.
//! 3. Values: per rain cell in run order, its palette index minus a
//!    prediction, zig-zag mapped (16-bit wrapping), written as one byte when
//!    below 255 and as `0xFF` plus two little-endian bytes otherwise. The
//!    prediction is LOCO-I's median edge detector over the indices of the
//!    left, upper and upper-left neighbours where all three hold rain, their
//!    mean with only left and upper, the one present with one, and otherwise
//!    the previous rain cell's index (0 at the start). Rain fields are
//!    smooth, so residuals are mostly 0 or ±1, which deflate packs well.
//!
//! **Plain layout** (bit 1 clear), a fallback for noise-like tiles: the runs,
//! then each rain cell's 16-bit code, little-endian. The encoder keeps the
//! smallest of palette + deflate, palette stored, and plain stored, so no
//! tile is ever larger than its plain stored form (`max_item_bytes`).

use super::bytes::{
    check_prefix, put_prefix, put_varint, seal, unseal, Deflater, Inflater, Reader,
};
use super::error::{Part, SparseError};
use super::quant;
use std::borrow::Cow;

/// Bytes of a tile item other than its payload: prefix, fixed fields, CRC.
pub(crate) const TILE_OVERHEAD: usize = 8 + 2 + 2 + 2 + 4 + 1 + 4 + 4 + 4;
/// Encoding bit: the payload is raw-deflated.
const DEFLATED: u8 = 1;
/// Encoding bit: palette layout (else plain layout).
const PALETTE: u8 = 2;
/// "No rain here" in the predictor's row buffers.
const NONE: u32 = u32::MAX;

/// Upper bound of the raw payload of an `h × w` tile in any layout: palette
/// (count + one entry per cell, ≤ 5 bytes each), runs (per row a count and at
/// most `w.div_ceil(2)` runs of two varints, ≤ 5 bytes each) and values
/// (≤ 3 bytes per cell). Decoding never inflates more than this.
pub(crate) const fn max_raw_len(h: usize, w: usize) -> usize {
    5 + 5 * h * w + h * (5 + w.div_ceil(2) * 10) + 3 * h * w
}

/// Upper bound of a tile item for a given tile size, in bytes: the plain
/// stored form, which the encoder never exceeds. For `tile_size ≤ 16 383`
/// every run varint takes at most 2 bytes: per row a count and at most
/// `tile_size.div_ceil(2)` runs (gap and length), then 2 bytes per cell.
pub(crate) const fn max_item_bytes(tile_size: usize) -> usize {
    let t = tile_size;
    TILE_OVERHEAD + t * (3 + t.div_ceil(2) * 4) + 2 * t * t
}

/// The palette-index predictor (see the module docs). `a` left, `b` upper,
/// `c` upper-left neighbour's index or [`NONE`]; `prev` the previous rain
/// cell's index. The result is one of, or lies between, the indices given.
#[inline]
fn predict(a: u32, b: u32, c: u32, prev: u32) -> u32 {
    match (a != NONE, b != NONE) {
        (true, true) if c != NONE => {
            let (lo, hi) = (a.min(b), a.max(b));
            if c >= hi {
                lo
            } else if c <= lo {
                hi
            } else {
                // lo < c < hi, so lo < a + b - c < hi: no overflow.
                a + b - c
            }
        }
        (true, true) => (a + b) / 2,
        (true, false) => a,
        (false, true) => b,
        (false, false) => prev,
    }
}

#[inline]
fn zigzag(d: i16) -> u16 {
    ((d << 1) ^ (d >> 15)) as u16
}

#[inline]
fn unzigzag(z: u16) -> i16 {
    ((z >> 1) as i16) ^ -((z & 1) as i16)
}

/// Row buffers of palette indices for the predictor: the previous and the
/// current cell row of a tile, [`NONE`] where there is no rain.
struct Rows {
    prev: Vec<u32>,
    cur: Vec<u32>,
    row: Option<usize>,
}

impl Rows {
    fn new(w: usize) -> Self {
        Self {
            prev: vec![NONE; w],
            cur: vec![NONE; w],
            row: None,
        }
    }

    /// Moves to cell row `row` (rows only increase).
    fn goto(&mut self, row: usize) {
        match self.row {
            Some(r) if r == row => return,
            Some(r) if r + 1 == row => std::mem::swap(&mut self.prev, &mut self.cur),
            _ => self.prev.fill(NONE),
        }
        self.cur.fill(NONE);
        self.row = Some(row);
    }

    /// The prediction for column `col` of the current row.
    fn predict(&self, col: usize, last: u32) -> u32 {
        let a = if col > 0 { self.cur[col - 1] } else { NONE };
        let b = self.prev[col];
        let c = if col > 0 { self.prev[col - 1] } else { NONE };
        predict(a, b, c, last)
    }
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

/// State reused from one tile to the next while encoding a scan.
pub(crate) struct TileEncoder {
    deflater: Deflater,
    /// Palette index of each code, valid for the codes of the current palette.
    index_of: Vec<u16>,
    /// Memo of [`quant::encode`]: (f32 bits, code), direct-mapped by a hash
    /// of the bits. Radar products carry few distinct values (an 8-bit
    /// scan at most 256), so nearly every cell hits and skips the logarithm.
    /// Bits 0 (a rate of 0.0, never rain) mark an empty slot.
    codes_memo: Vec<(u32, u16)>,
    /// The codes present in the current tile, one bit per code.
    present: Vec<u64>,
    /// Code of every cell of the current tile (0 = no rain), reused.
    cell_codes: Vec<u16>,
}

/// Slots of [`TileEncoder::codes_memo`] (a power of two).
const MEMO_SLOTS: usize = 4096;

impl TileEncoder {
    pub(crate) fn new() -> Self {
        Self {
            deflater: Deflater::new(),
            index_of: vec![0u16; quant::MAX_CODE as usize + 1],
            codes_memo: vec![(0, 0); MEMO_SLOTS],
            present: vec![0; (quant::MAX_CODE as usize + 1) / 64],
            cell_codes: Vec::new(),
        }
    }

    /// [`quant::encode`] of a rain rate (`> 0`), through the memo.
    #[inline]
    fn code_of(&mut self, rate_mm_h: f32) -> u16 {
        let bits = rate_mm_h.to_bits();
        let slot = (bits.wrapping_mul(0x9E37_79B1) >> 20) as usize & (MEMO_SLOTS - 1);
        let (k, code) = self.codes_memo[slot];
        if k == bits {
            return code;
        }
        let code = quant::encode(rate_mm_h);
        self.codes_memo[slot] = (bits, code);
        code
    }

    /// The compressor, for the other parts of the scan.
    pub(crate) fn deflater(&mut self) -> &mut Deflater {
        &mut self.deflater
    }
}

/// The index of the first rain cell (`> 0`) of `row` at or after `from`, or
/// `row.len()`. Dry stretches are skipped 16 cells at a time (a branch-free
/// test the compiler vectorises): most of a radar grid is dry.
fn next_rain(row: &[f32], from: usize) -> usize {
    let mut c = from;
    while let Some(chunk) = row.get(c..c + 16) {
        if chunk.iter().fold(false, |any, v| any | (*v > 0.0)) {
            break;
        }
        c += 16;
    }
    while c < row.len() && (row[c].is_nan() || row[c] <= 0.0) {
        c += 1;
    }
    c
}

/// Encodes the rain cells (finite, `> 0`) of tile `(tr, tc)`; `None` when the
/// tile has none. `rate` is the whole field in row-major order, `rows × cols`
/// cells, mm/h.
pub(crate) fn encode(
    enc: &mut TileEncoder,
    rate: &[f32],
    rows: usize,
    cols: usize,
    tr: u16,
    tc: u16,
    tile_size: usize,
) -> Option<EncodedTileData> {
    let g = TileGeom::new(tr, tc, tile_size, rows, cols)?;
    // Pass 1: runs, and the code of every cell (0 = no rain), tile-local.
    let mut runs = Vec::new();
    let mut cell_codes = std::mem::take(&mut enc.cell_codes);
    cell_codes.clear();
    cell_codes.resize(g.h * g.w, 0);
    let mut codes: Vec<u16> = Vec::new();
    let mut row_runs: Vec<(u32, u32)> = Vec::new();
    for r in 0..g.h {
        let start_of_row = (g.row0 + r) * cols + g.col0;
        let row = &rate[start_of_row..start_of_row + g.w];
        row_runs.clear();
        let mut end = 0usize; // end of the previous run, tile-local column
        let mut c = 0usize;
        loop {
            c = next_rain(row, c);
            if c >= g.w {
                break;
            }
            let start = c;
            while c < g.w && row[c] > 0.0 {
                let code = enc.code_of(row[c]);
                cell_codes[r * g.w + c] = code;
                codes.push(code);
                c += 1;
            }
            row_runs.push(((start - end) as u32, (c - start - 1) as u32));
            end = c;
        }
        put_varint(&mut runs, row_runs.len() as u32);
        for &(gap, len_m1) in &row_runs {
            put_varint(&mut runs, gap);
            put_varint(&mut runs, len_m1);
        }
    }
    if codes.is_empty() {
        enc.cell_codes = cell_codes;
        return None;
    }
    let n = codes.len();

    // Palette layout: the distinct codes in increasing order, from a bit
    // set (far cheaper than sorting every cell's code).
    for &code in &codes {
        enc.present[code as usize / 64] |= 1 << (code % 64);
    }
    let mut palette: Vec<u16> = Vec::new();
    for (w, word) in enc.present.iter_mut().enumerate() {
        let mut bits = std::mem::take(word);
        while bits != 0 {
            palette.push((w * 64) as u16 + bits.trailing_zeros() as u16);
            bits &= bits - 1;
        }
    }
    let max_code = palette.last().copied().unwrap_or(0);
    let index_of = &mut enc.index_of;
    let mut pal_raw = Vec::with_capacity(runs.len() + palette.len() + n + 8);
    put_varint(&mut pal_raw, palette.len() as u32);
    let mut prev_code = 0u16;
    for (i, &code) in palette.iter().enumerate() {
        put_varint(&mut pal_raw, (code - prev_code) as u32);
        prev_code = code;
        // At most 65 535 distinct codes: the index fits a u16.
        index_of[code as usize] = i as u16;
    }
    pal_raw.extend_from_slice(&runs);
    let mut rows_buf = Rows::new(g.w);
    let mut last = 0u32;
    for r in 0..g.h {
        rows_buf.goto(r);
        for c in 0..g.w {
            let code = cell_codes[r * g.w + c];
            if code == 0 {
                continue;
            }
            let idx = index_of[code as usize] as u32;
            let pred = rows_buf.predict(c, last);
            let z = zigzag((idx as u16).wrapping_sub(pred as u16) as i16);
            if z < 0xff {
                pal_raw.push(z as u8);
            } else {
                pal_raw.push(0xff);
                pal_raw.extend_from_slice(&z.to_le_bytes());
            }
            rows_buf.cur[c] = idx;
            last = idx;
        }
    }
    enc.cell_codes = cell_codes;
    let plain_len = runs.len() + 2 * n;
    let deflated = enc.deflater.deflate(&pal_raw);
    let (encoding, raw_len, payload) = if deflated.len() <= pal_raw.len().min(plain_len) {
        (PALETTE | DEFLATED, pal_raw.len(), deflated)
    } else if pal_raw.len() <= plain_len {
        (PALETTE, pal_raw.len(), pal_raw)
    } else {
        let mut plain = runs;
        for code in &codes {
            plain.extend_from_slice(&code.to_le_bytes());
        }
        (0, plain.len(), plain)
    };
    let mut out = Vec::with_capacity(TILE_OVERHEAD + payload.len());
    put_prefix(&mut out, b'T');
    out.extend_from_slice(&tr.to_le_bytes());
    out.extend_from_slice(&tc.to_le_bytes());
    out.extend_from_slice(&(tile_size as u16).to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.push(encoding);
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    seal(&mut out);
    Some(EncodedTileData {
        bytes: out,
        rain_cells: n as u32,
        max_mm_h: quant::decode(max_code),
    })
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
    if encoding > (PALETTE | DEFLATED) {
        return Err(bad(
            "encoding",
            encoding.to_string(),
            "expected 0 to 3 (bit 0 deflate, bit 1 palette)",
        ));
    }
    if encoding & DEFLATED == 0 && payload_len != raw_len {
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
    /// Validates every run, the cell count and the value count. A run's
    /// values are all decoded (and checked) before `f` sees its first cell
    /// ([`Self::for_each_run`]).
    pub(crate) fn for_each_rain(
        &self,
        g: TileGeom,
        inflater: &mut Inflater,
        mut f: impl FnMut(usize, usize, f32) -> Result<(), SparseError>,
    ) -> Result<(), SparseError> {
        self.for_each_run(g, inflater, |row, col, rates| {
            for (c, v) in (col..).zip(rates) {
                f(row, c, *v)?;
            }
            Ok(())
        })
    }

    /// Walks the rain runs of this tile (geometry `g`), calling
    /// `f(tile_row, first_tile_col, rates_mm_h)` once per run, in row-major
    /// order, with the decoded rate of each cell of the run. Validates every
    /// run, the cell count and the value count. The palette's codes are
    /// turned into rates once per tile, and a caller writes a run at once
    /// instead of cell by cell.
    pub(crate) fn for_each_run(
        &self,
        g: TileGeom,
        inflater: &mut Inflater,
        mut f: impl FnMut(usize, usize, &[f32]) -> Result<(), SparseError>,
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
        let raw: Cow<'_, [u8]> = if self.encoding & DEFLATED == 0 {
            Cow::Borrowed(self.payload)
        } else {
            Cow::Owned(inflater.inflate_exact(Part::Tile, self.payload, self.raw_len)?)
        };
        let n = self.rain_cells as usize;
        let mut r = Reader::new(Part::Tile, &raw);
        // The rate of each palette entry (every entry is a code ≥ 1).
        let palette: Option<Vec<f32>> = if self.encoding & PALETTE != 0 {
            Some(
                read_palette(&mut r, n)?
                    .into_iter()
                    .map(quant::decode)
                    .collect(),
            )
        } else {
            None
        };
        let runs = read_runs(&mut r, g, n)?;
        let mut rows = Rows::new(g.w);
        let mut last = 0u32;
        let mut rates = Vec::with_capacity(g.w);
        for &(row, col, len) in &runs {
            let (row, col, len) = (row as usize, col as usize, len as usize);
            rows.goto(row);
            rates.clear();
            for c in col..col + len {
                let rate = match &palette {
                    Some(p) => {
                        let z = match r.u8("value")? {
                            0xff => r.u16("escaped value")?,
                            b => b as u16,
                        };
                        let pred = rows.predict(c, last);
                        let idx = (pred as u16).wrapping_add(unzigzag(z) as u16) as u32;
                        let Some(&rate) = p.get(idx as usize) else {
                            return Err(bad(
                                "palette index",
                                idx.to_string(),
                                "past the end of the palette",
                            ));
                        };
                        rows.cur[c] = idx;
                        last = idx;
                        rate
                    }
                    None => {
                        let code = r.u16("value")?;
                        if code == 0 {
                            return Err(bad("value code", "0".into(), "code 0 is not rain"));
                        }
                        quant::decode(code)
                    }
                };
                rates.push(rate);
            }
            f(row, col, &rates)?;
        }
        r.finish()
    }
}

/// Reads the palette: at most `n` strictly increasing codes in `1..=MAX_CODE`.
fn read_palette(r: &mut Reader<'_>, n: usize) -> Result<Vec<u16>, SparseError> {
    let count = r.varint("palette size")? as usize;
    // Every entry takes at least one byte: bound the allocation by the input.
    let limit = n.min(quant::MAX_CODE as usize).min(r.remaining());
    if count == 0 || count > limit {
        return Err(SparseError::AbsurdSize {
            part: Part::Tile,
            field: "palette size",
            value: count as u64,
            limit: limit as u64,
        });
    }
    let mut palette = Vec::with_capacity(count);
    let mut code = 0u32;
    for _ in 0..count {
        let gap = r.varint("palette entry")?;
        code = code.saturating_add(gap);
        if gap == 0 || code > quant::MAX_CODE as u32 {
            return Err(bad(
                "palette entry",
                code.to_string(),
                "codes must increase and stay within 1..=65535",
            ));
        }
        palette.push(code as u16);
    }
    Ok(palette)
}

/// Reads the runs of a `g.h × g.w` tile holding `n` rain cells, as
/// `(row, column, length)` in tile-local cells, checking that runs stay
/// inside the tile, do not touch or overlap, and hold exactly `n` cells.
fn read_runs(
    r: &mut Reader<'_>,
    g: TileGeom,
    n: usize,
) -> Result<Vec<(u16, u16, u16)>, SparseError> {
    let mut runs = Vec::new();
    let mut cells = 0usize;
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
                    format!(
                        "row {row}, column {}, length {len}",
                        col.saturating_add(gap)
                    ),
                    "runs past the tile's east edge",
                ));
            }
            if len > n - cells {
                return Err(bad(
                    "run length",
                    len.to_string(),
                    "more rain cells than declared",
                ));
            }
            col += gap;
            // Tile sides are at most MAX_TILE_SIZE (256): these fit u16.
            runs.push((row as u16, col as u16, len as u16));
            col += len;
            cells += len;
        }
    }
    if cells != n {
        return Err(bad(
            "rain cells",
            n.to_string(),
            "differs from the cells in the runs",
        ));
    }
    Ok(runs)
}

fn bad(field: &'static str, value: String, reason: &'static str) -> SparseError {
    SparseError::BadValue {
        part: Part::Tile,
        field,
        value,
        reason,
    }
}
