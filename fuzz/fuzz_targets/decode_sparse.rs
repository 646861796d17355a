//! The sparse decoder. The first byte picks a mode:
//! * arbitrary bytes as a blob, a header or a tile;
//! * arbitrary bytes as one tile of a valid scan;
//! * a small field built from the input, encoded, checked to round-trip
//!   (values within the documented bound), then corrupted by XOR edits taken
//!   from the rest of the input and decoded again.
//!
//! cargo-fuzz builds with `--cfg fuzzing`, under which the decoder skips its
//! CRC-32 comparisons so that corrupted items reach the parsers.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use ndarray::Array2;
use raincast_algorithms::grid::Grid;
use raincast_algorithms::prep::RainField;
use raincast_algorithms::sparse::{
    self, EncodedScan, EncodedTile, SparseOptions, MAX_RELATIVE_ERROR, QUANT_MAX_MM_H,
    QUANT_MIN_MM_H,
};
use std::sync::OnceLock;

fn field(rate: Array2<f32>) -> RainField {
    let (rows, cols) = rate.dim();
    let grid = Grid::new(
        "+proj=aeqd +lat_0=50 +lon_0=4 +ellps=WGS84 +units=m",
        rows,
        cols,
        1000.0,
        1000.0,
        -50_000.0,
        50_000.0,
    )
    .expect("valid grid");
    RainField {
        grid,
        time: DateTime::<Utc>::from_timestamp(1_625_414_400, 0).expect("valid time"),
        rate_mm_h: rate,
    }
}

/// One input byte as a cell: no data, no rain, or rain from 1e-4 to 1e4 mm/h
/// (beyond the quantiser's range at both ends), or +inf.
fn cell(b: u8) -> f32 {
    match b {
        0..=49 => f32::NAN,
        50..=119 => 0.0,
        255 => f32::INFINITY,
        _ => 10f32.powf((b - 120) as f32 / 134.0 * 8.0 - 4.0),
    }
}

/// A valid scan with several tiles, built once.
fn reference() -> &'static EncodedScan {
    static SCAN: OnceLock<EncodedScan> = OnceLock::new();
    SCAN.get_or_init(|| {
        let rate = Array2::from_shape_fn((40, 40), |(r, c)| cell(((r * 7 + c * 13) % 256) as u8));
        sparse::encode(&field(rate), &SparseOptions { tile_size: 16 }).expect("encode")
    })
}

fn raw_bytes(data: &[u8]) {
    let _ = sparse::header_info(data);
    let _ = sparse::decode(data, &[]);
    let _ = sparse::point_value(data, None, 0, 0);
    if let Ok(scan) = EncodedScan::from_blob(data) {
        let _ = scan.decode();
        for t in &scan.tiles {
            let _ = sparse::point_value(
                &scan.header,
                Some(t),
                t.row as usize * 16,
                t.col as usize * 16,
            );
        }
    }
}

fn tile_against_reference(data: &[u8]) {
    let r = reference();
    for (i, t) in r.tiles.iter().enumerate() {
        let fake = EncodedTile {
            row: t.row,
            col: t.col,
            bytes: data.to_vec(),
        };
        let mut tiles = r.tiles.clone();
        tiles[i] = fake.clone();
        let _ = sparse::decode(&r.header, &tiles);
        let _ = sparse::point_value(
            &r.header,
            Some(&fake),
            t.row as usize * 16 + 3,
            t.col as usize * 16 + 5,
        );
    }
}

fn round_trip_then_corrupt(data: &[u8]) {
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let (rows, cols) = (1 + *a as usize % 48, 1 + *b as usize % 48);
    let tile_size = 16 + *c as usize % 33;
    let (cells, edits) = rest.split_at((rows * cols).min(rest.len()));
    let rate = Array2::from_shape_fn((rows, cols), |(r, c)| {
        cell(cells.get(r * cols + c).copied().unwrap_or(60))
    });
    let enc = sparse::encode(&field(rate.clone()), &SparseOptions { tile_size })
        .expect("a valid field always encodes");
    if edits.len() < 4 {
        let back = enc.decode().expect("an encoding always decodes").rate_mm_h;
        for ((idx, &v), &w) in rate.indexed_iter().zip(back.iter()) {
            if v.is_nan() {
                assert!(w.is_nan(), "{idx:?}");
            } else if v <= 0.0 {
                assert_eq!(w, 0.0, "{idx:?}");
            } else {
                let expected = v.clamp(QUANT_MIN_MM_H, QUANT_MAX_MM_H) as f64;
                let rel = (w as f64 - expected).abs() / expected;
                assert!(rel <= MAX_RELATIVE_ERROR, "{idx:?}: {v} -> {w}");
            }
        }
        // Point lookups on a sample of cells (each parses the header).
        for i in (0..rows * cols).step_by((rows * cols / 4).max(1)) {
            let (r, c) = (i / cols, i % cols);
            let (tr, tc) = sparse::tile_of(r, c, tile_size);
            let tile = enc.tiles.iter().find(|t| (t.row, t.col) == (tr, tc));
            let p = sparse::point_value(&enc.header, tile, r, c).expect("point");
            assert_eq!(p.to_bits(), back[[r, c]].to_bits(), "({r}, {c})");
        }
        let blob = enc.to_blob();
        assert_eq!(EncodedScan::from_blob(&blob).expect("blob"), enc);
        return;
    }
    let mut header = enc.header.clone();
    let mut tiles = enc.tiles.clone();
    for e in edits.chunks_exact(4) {
        let target = e[0] as usize % (tiles.len() + 1);
        let buf = if target == 0 {
            &mut header
        } else {
            &mut tiles[target - 1].bytes
        };
        let pos = u16::from_le_bytes([e[1], e[2]]) as usize % buf.len();
        buf[pos] ^= e[3];
    }
    let _ = sparse::header_info(&header);
    let _ = sparse::decode(&header, &tiles);
    for t in &tiles {
        let _ = sparse::point_value(
            &header,
            Some(t),
            t.row as usize * tile_size,
            t.col as usize * tile_size,
        );
    }
    let _ = sparse::point_value(&header, None, rows - 1, cols - 1);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => raw_bytes(rest),
        1 => tile_against_reference(rest),
        _ => round_trip_then_corrupt(rest),
    }
});
