//! The no-data mask: run lengths over the whole grid, deflated.
//!
//! Raw form: the cells in row-major order are cut into maximal runs that
//! alternate *data* (finite values, rain or not) and *no data* (`NaN`),
//! starting with a data run (which may be empty). Each run length is an
//! unsigned LEB128 varint; only the first run may be 0. The run lengths add up
//! to `rows × cols`. The raw bytes are stored raw-deflated in the header.
//!
//! The mask of one radar rarely changes, so its fingerprint
//! ([`mask_fingerprint`]) is stable across scans and a store may keep one copy
//! per fingerprint.

use super::bytes::{fnv1a64, put_varint, Deflater, InflateStream};
use super::error::{Part, SparseError};
use ndarray::ArrayView2;

/// The encoded mask and what the header records about it.
pub(crate) struct EncodedMask {
    /// Raw-deflated run lengths.
    pub(crate) deflated: Vec<u8>,
    /// [`fingerprint`] of the raw run lengths.
    pub(crate) fingerprint: u64,
    /// Cells with no data (`NaN`).
    pub(crate) nodata_cells: u64,
}

/// The fingerprint of a raw run-length mask: FNV-1a 64 over a domain tag, the
/// shape and the raw runs. Equal masks on equal shapes always give equal
/// fingerprints, on any machine and in any later version that keeps the
/// version-1 mask layout.
fn fingerprint(rows: usize, cols: usize, raw: &[u8]) -> u64 {
    fnv1a64(&[&fingerprint_prefix(rows, cols), raw])
}

fn fingerprint_prefix(rows: usize, cols: usize) -> Vec<u8> {
    let mut p = b"raincast-mask-v1".to_vec();
    p.extend_from_slice(&(rows as u32).to_le_bytes());
    p.extend_from_slice(&(cols as u32).to_le_bytes());
    p
}

/// The raw run lengths of a field's no-data mask (`NaN` = no data), over
/// cells in row-major order: alternating runs of data and no-data cells,
/// starting with data (a leading run of 0 when the first cell is no data).
fn runs(rate: &[f32]) -> (Vec<u8>, u64) {
    let mut raw = Vec::new();
    let mut nodata = 0u64;
    let mut in_nodata = false;
    let mut i = 0usize;
    loop {
        let len = run_len(&rate[i..], in_nodata);
        // Runs fit a u32: a scan has at most MAX_SCAN_CELLS cells.
        put_varint(&mut raw, len as u32);
        if in_nodata {
            nodata += len as u64;
        }
        i += len;
        if i >= rate.len() {
            break;
        }
        in_nodata = !in_nodata;
    }
    (raw, nodata)
}

/// The number of leading cells of `cells` whose no-data state is `nodata`.
/// Whole blocks of 16 are tested at once (branch-free, vectorised).
fn run_len(cells: &[f32], nodata: bool) -> usize {
    let mut i = 0;
    while let Some(chunk) = cells.get(i..i + 16) {
        if chunk
            .iter()
            .fold(false, |change, v| change | (v.is_nan() != nodata))
        {
            break;
        }
        i += 16;
    }
    while i < cells.len() && cells[i].is_nan() == nodata {
        i += 1;
    }
    i
}

/// Encodes the no-data mask of `rate` (row-major, `rows × cols`, `NaN` = no data).
pub(crate) fn encode(
    rate: &[f32],
    rows: usize,
    cols: usize,
    deflater: &mut Deflater,
) -> EncodedMask {
    let (raw, nodata_cells) = runs(rate);
    EncodedMask {
        deflated: deflater.deflate(&raw),
        fingerprint: fingerprint(rows, cols, &raw),
        nodata_cells,
    }
}

/// The stable fingerprint of a field's no-data mask, as stored in the header
/// ([`super::HeaderInfo::mask_fingerprint`]). `rate` is `(rows, cols)` in
/// mm/h with `NaN` for no data; only where the `NaN`s are matters.
pub fn mask_fingerprint(rate: &ArrayView2<'_, f32>) -> u64 {
    let (rows, cols) = rate.dim();
    let standard = rate.as_standard_layout();
    match standard.as_slice() {
        Some(cells) => fingerprint(rows, cols, &runs(cells).0),
        // A standard-layout array is contiguous; copy if that ever changes.
        None => fingerprint(
            rows,
            cols,
            &runs(&rate.iter().copied().collect::<Vec<_>>()).0,
        ),
    }
}

/// Decodes the mask into `out` (row-major, `rows × cols` cells), writing
/// `NaN` on no-data cells and `0.0` (no rain) on every other cell, so `out`
/// need not be cleared first. Checks that the runs cover the grid exactly,
/// the no-data count and the fingerprint (on an error, `out` is partly
/// written).
pub(crate) fn decode_into(
    deflated: &[u8],
    rows: usize,
    cols: usize,
    expected_nodata: u64,
    expected_fingerprint: u64,
    out: &mut [f32],
) -> Result<(), SparseError> {
    let cells = rows as u64 * cols as u64;
    debug_assert_eq!(out.len() as u64, cells);
    let seed = fnv1a64(&[&fingerprint_prefix(rows, cols)]);
    let mut s = InflateStream::seeded(Part::Mask, deflated, seed);
    let mut pos: u64 = 0;
    let mut nodata = 0u64;
    let mut in_nodata = false;
    let mut first = true;
    while pos < cells {
        let run = s.varint("run length")? as u64;
        if run == 0 && !first {
            return Err(bad("run length", "0", "only the first run may be empty"));
        }
        if run > cells - pos {
            return Err(SparseError::AbsurdSize {
                part: Part::Mask,
                field: "run length",
                value: run,
                limit: cells - pos,
            });
        }
        // In range: pos + run <= cells = out.len().
        let cells_of_run = &mut out[pos as usize..(pos + run) as usize];
        if in_nodata {
            cells_of_run.fill(f32::NAN);
            nodata += run;
        } else {
            cells_of_run.fill(0.0);
        }
        pos += run;
        in_nodata = !in_nodata;
        first = false;
    }
    if s.next_byte()?.is_some() {
        return Err(SparseError::TrailingBytes {
            part: Part::Mask,
            bytes: 1,
        });
    }
    if nodata != expected_nodata {
        return Err(bad(
            "no-data cells",
            &nodata.to_string(),
            "differs from the header's count",
        ));
    }
    let got = s.hash();
    if got != expected_fingerprint && !cfg!(fuzzing) {
        return Err(bad(
            "fingerprint",
            &format!("{got:016x}"),
            "differs from the header's fingerprint",
        ));
    }
    Ok(())
}

/// Whether cell `index` (row-major) is no data, reading only the runs before it.
pub(crate) fn is_nodata(deflated: &[u8], cells: u64, index: u64) -> Result<bool, SparseError> {
    let mut s = InflateStream::new(Part::Mask, deflated);
    let mut pos: u64 = 0;
    let mut in_nodata = false;
    loop {
        let run = s.varint("run length")? as u64;
        if run > cells - pos {
            return Err(SparseError::AbsurdSize {
                part: Part::Mask,
                field: "run length",
                value: run,
                limit: cells - pos,
            });
        }
        pos += run;
        if index < pos {
            return Ok(in_nodata);
        }
        if pos == cells {
            // Runs cover the grid and `index < cells`, so this cannot happen
            // unless the caller passed an index outside the grid.
            return Err(bad("cell index", &index.to_string(), "outside the mask"));
        }
        in_nodata = !in_nodata;
    }
}

fn bad(field: &'static str, value: &str, reason: &'static str) -> SparseError {
    SparseError::BadValue {
        part: Part::Mask,
        field,
        value: value.to_string(),
        reason,
    }
}
