//! Tests of the sparse encoding: round trips (property tests), limits and
//! malformed bytes.

#![allow(clippy::unwrap_used)]

use super::bytes::seal;
use super::*;
use crate::grid::Grid;
use proptest::prelude::*;

fn grid(rows: usize, cols: usize) -> Grid {
    Grid::new(
        "+proj=aeqd +lat_0=-37.85 +lon_0=144.75 +ellps=WGS84 +units=m",
        rows,
        cols,
        500.0,
        500.0,
        -128_000.0,
        128_000.0,
    )
    .unwrap()
}

fn field(rate: Array2<f32>) -> RainField {
    let (r, c) = rate.dim();
    RainField {
        grid: grid(r, c),
        time: DateTime::<Utc>::from_timestamp(1_529_143_200, 123_000_000).unwrap(),
        rate_mm_h: rate,
    }
}

/// A small deterministic pseudo-random generator (xorshift64*), so that
/// synthetic fields are reproducible without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A radar-like field: no data outside a circle, smooth rain cells (sums of
/// Gaussians) thresholded at 0.1 mm/h and quantised to 0.5 mm/h steps
/// like BOM's product, zero elsewhere.
fn radar_like(rows: usize, cols: usize, cells: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed | 1);
    let blobs: Vec<(f64, f64, f64, f64)> = (0..cells)
        .map(|_| {
            (
                rng.unit() * rows as f64,
                rng.unit() * cols as f64,
                5.0 + rng.unit() * rows as f64 / 12.0,
                1.0 + rng.unit() * 30.0,
            )
        })
        .collect();
    let (cr, cc, rad) = (
        rows as f64 / 2.0,
        cols as f64 / 2.0,
        rows.min(cols) as f64 / 2.0,
    );
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        let (y, x) = (r as f64 + 0.5, c as f64 + 0.5);
        if (y - cr).hypot(x - cc) > rad {
            return f32::NAN;
        }
        let v: f64 = blobs
            .iter()
            .map(|&(br, bc, s, a)| {
                a * (-((y - br).powi(2) + (x - bc).powi(2)) / (2.0 * s * s)).exp()
            })
            .sum();
        let q = (v * 2.0).round() / 2.0;
        if q < 0.1 {
            0.0
        } else {
            q as f32
        }
    })
}

/// Asserts that `back` is `orig` up to the quantisation bound, with
/// identical no-data and no-rain cells.
fn assert_round_trip(orig: &Array2<f32>, back: &Array2<f32>) {
    assert_eq!(orig.dim(), back.dim());
    for ((idx, &a), &b) in orig.indexed_iter().zip(back.iter()) {
        if a.is_nan() {
            assert!(b.is_nan(), "{idx:?}: no data became {b}");
        } else if a <= 0.0 {
            assert_eq!(b, 0.0, "{idx:?}: no rain {a} became {b}");
        } else {
            assert!(b > 0.0, "{idx:?}: rain {a} became {b}");
            let a64 = a as f64;
            let expected = a64.clamp(QUANT_MIN_MM_H as f64, QUANT_MAX_MM_H as f64);
            let rel = (b as f64 - expected).abs() / expected;
            assert!(
                rel <= MAX_RELATIVE_ERROR,
                "{idx:?}: {a} -> {b}, relative error {rel}"
            );
        }
    }
}

#[test]
fn round_trip_radar_like_field() {
    let rate = radar_like(300, 280, 12, 7);
    let f = field(rate.clone());
    let enc = encode(&f, &SparseOptions { tile_size: 64 }).unwrap();
    let back = decode(&enc.header, &enc.tiles).unwrap();
    assert_round_trip(&rate, &back.rate_mm_h);
    assert!(back.grid.same_geometry(&f.grid));
    assert_eq!(back.time, f.time);
    let info = enc.info().unwrap();
    assert_eq!(info.rain_cells, f.rain_cells() as u64);
    assert_eq!(info.nodata_cells, f.nodata_cells() as u64);
    assert_eq!(info.max_mm_h, back.max_mm_h());
    assert!((info.max_mm_h / f.max_mm_h() - 1.0).abs() as f64 <= MAX_RELATIVE_ERROR);
    assert_eq!(info.tile_size, 64);
    assert_eq!(info.tile_grid, (5, 5));
    assert_eq!(info.tiles.len(), enc.tiles.len());
    assert_eq!(info.mask_fingerprint, mask_fingerprint(&f.rate_mm_h.view()));
    assert_eq!(info.header_bytes, enc.header.len());
    assert_eq!(info.version, 1);
    for (t, i) in enc.tiles.iter().zip(&info.tiles) {
        assert_eq!(
            (t.row, t.col, t.bytes.len() as u32),
            (i.row, i.col, i.bytes)
        );
    }
    // Stored tiles are exactly the tiles with rain.
    let with_rain: usize = (0..5)
        .flat_map(|tr| (0..5).map(move |tc| (tr, tc)))
        .filter(|&(tr, tc)| {
            rate.indexed_iter()
                .any(|((r, c), v)| r / 64 == tr && c / 64 == tc && *v > 0.0)
        })
        .count();
    assert_eq!(enc.tiles.len(), with_rain);
    // Decoding does not depend on the order of the tiles.
    let mut reversed = enc.tiles.clone();
    reversed.reverse();
    let again = decode(&enc.header, &reversed).unwrap();
    assert_eq!(
        again
            .rate_mm_h
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        back.rate_mm_h
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
}

#[test]
fn decoding_into_a_used_buffer_gives_the_same_field() {
    let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let a = field(radar_like(120, 100, 6, 11));
    let b = field(radar_like(120, 100, 4, 12));
    let opts = SparseOptions { tile_size: 32 };
    let (ea, eb) = (encode(&a, &opts).unwrap(), encode(&b, &opts).unwrap());
    let fresh = decode(&eb.header, &eb.tiles).unwrap();
    // The storage of another field (rain, no data and zeros where `b`
    // differs), then garbage of other lengths.
    let used = decode(&ea.header, &ea.tiles).unwrap();
    assert_ne!(bits(&used.rate_mm_h), bits(&fresh.rate_mm_h));
    for buffer in [
        used.rate_mm_h.into_raw_vec_and_offset().0,
        vec![7.5f32; 50],
        vec![f32::NAN; 20_000],
    ] {
        let again = decode_reusing(&eb.header, &eb.tiles, buffer).unwrap();
        assert_eq!(bits(&again.rate_mm_h), bits(&fresh.rate_mm_h));
        assert_eq!(again.time, fresh.time);
    }
}

/// The runs written at once (`for_each_run`, the mask filling every cell)
/// give, bit for bit, the quantised field cell by cell: rain cells the code
/// of their rate, no data NaN, every other cell 0.0; on grids whose tiles
/// are clipped at the south and east edges, with runs against tile edges
/// and no data next to rain, into fresh and used buffers.
#[test]
fn runs_decode_to_the_quantised_field_bit_for_bit() {
    let expected = |rate: &Array2<f32>| -> Vec<u32> {
        rate.iter()
            .map(|&v| {
                if v.is_nan() {
                    f32::NAN.to_bits()
                } else if v > 0.0 {
                    quant::decode(quant::encode(v)).to_bits()
                } else {
                    0.0f32.to_bits()
                }
            })
            .collect()
    };
    let bits = |a: &Array2<f32>| -> Vec<u32> {
        a.iter()
            .map(|v| {
                if v.is_nan() {
                    f32::NAN.to_bits()
                } else {
                    v.to_bits()
                }
            })
            .collect()
    };
    let mut used = vec![3.25f32; 10];
    let mut checked = 0;
    for (k, &(rows, cols)) in [(37, 53), (16, 16), (1, 70), (70, 1), (33, 48), (64, 17)]
        .iter()
        .enumerate()
    {
        for (j, &(nodata, rain, sticky)) in [
            (0.0, 1.0, 0.0),
            (0.2, 0.5, 0.9),
            (0.05, 0.9, 0.97),
            (0.4, 0.3, 0.0),
            (0.0, 0.0, 0.0),
        ]
        .iter()
        .enumerate()
        {
            let rate = random_field(rows, cols, (k * 10 + j) as u64 + 7, nodata, rain, sticky);
            for tile_size in [16, 17, 32] {
                let enc = encode(&field(rate.clone()), &SparseOptions { tile_size }).unwrap();
                let fresh = decode(&enc.header, &enc.tiles).unwrap();
                assert_eq!(bits(&fresh.rate_mm_h), expected(&rate), "{rows}x{cols} {j}");
                let again = decode_reusing(&enc.header, &enc.tiles, used).unwrap();
                assert_eq!(bits(&again.rate_mm_h), expected(&rate), "{rows}x{cols} {j}");
                used = again.rate_mm_h.into_raw_vec_and_offset().0;
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 90);
}

/// A stored run over a no-data cell is an error naming that cell (the
/// first one of the run), whichever the run's position in the tile.
#[test]
fn rain_on_no_data_names_the_cell() {
    let rate = Array2::from_shape_fn((20, 40), |(r, c)| {
        if r == 5 && (10..30).contains(&c) {
            1.5 + c as f32
        } else {
            0.0
        }
    });
    let enc = encode(&field(rate.clone()), &SparseOptions { tile_size: 16 }).unwrap();
    let h = header::parse(&enc.header).unwrap();
    // The same tiles under a mask with no data at (5, 20..23): inside the
    // run that crosses the tile edge at column 16.
    let mut masked = rate.clone();
    for c in 20..23 {
        masked[(5, c)] = f32::NAN;
    }
    let mut te = tile::TileEncoder::new();
    let m = mask::encode(masked.as_slice().unwrap(), 20, 40, te.deflater());
    let header = header::write(&header::Header {
        grid: h.grid.clone(),
        time: h.time,
        tile_size: h.tile_size,
        rain_cells: h.rain_cells,
        nodata_cells: m.nodata_cells,
        max_mm_h: h.max_mm_h,
        mask_fingerprint: m.fingerprint,
        mask: &m.deflated,
        tiles: h.tiles.clone(),
    })
    .unwrap();
    match decode(&header, &enc.tiles) {
        Err(SparseError::RainOnNoData {
            row,
            col,
            cell_row,
            cell_col,
        }) => assert_eq!((row, col, cell_row, cell_col), (0, 1, 5, 20)),
        other => panic!("{other:?}"),
    }
    // The unchanged header decodes.
    assert!(decode(&enc.header, &enc.tiles).is_ok());
}

#[test]
fn blob_round_trip() {
    let f = field(radar_like(100, 120, 5, 3));
    let enc = encode(&f, &SparseOptions { tile_size: 32 }).unwrap();
    let blob = enc.to_blob();
    assert_eq!(EncodedScan::from_blob(&blob).unwrap(), enc);
    assert!(blob.len() >= enc.total_bytes());
}

#[test]
fn empty_and_all_nodata_fields() {
    let zeros = field(Array2::zeros((40, 50)));
    let enc = encode(&zeros, &SparseOptions::default()).unwrap();
    assert!(enc.tiles.is_empty());
    let back = enc.decode().unwrap();
    assert!(back.rate_mm_h.iter().all(|v| *v == 0.0));
    assert_eq!(enc.info().unwrap().max_mm_h, 0.0);
    assert_eq!(point_value(&enc.header, None, 39, 49).unwrap(), 0.0);

    let nodata = field(Array2::from_elem((40, 50), f32::NAN));
    let enc = encode(&nodata, &SparseOptions::default()).unwrap();
    assert!(enc.tiles.is_empty());
    assert!(enc.decode().unwrap().rate_mm_h.iter().all(|v| v.is_nan()));
    assert_eq!(enc.info().unwrap().nodata_cells, 2000);
    assert!(point_value(&enc.header, None, 0, 0).unwrap().is_nan());
}

#[test]
fn special_values() {
    let rate = ndarray::array![
        [f32::INFINITY, f32::NEG_INFINITY, -3.0, 1e-9],
        [f32::NAN, 0.0, 20_000.0, f32::MIN_POSITIVE],
    ];
    let enc = encode(&field(rate), &SparseOptions { tile_size: 16 }).unwrap();
    let back = enc.decode().unwrap().rate_mm_h;
    assert!(
        (back[[0, 0]] / QUANT_MAX_MM_H - 1.0).abs() < 1e-4,
        "+inf clamps"
    );
    assert_eq!(back[[0, 1]], 0.0, "-inf is no rain");
    assert_eq!(back[[0, 2]], 0.0, "negative is no rain");
    assert!(
        back[[0, 3]] > 0.0 && back[[0, 3]] <= QUANT_MIN_MM_H * 1.001,
        "tiny rain stays rain"
    );
    assert!(back[[1, 0]].is_nan());
    assert_eq!(back[[1, 1]], 0.0);
    assert!((back[[1, 2]] / QUANT_MAX_MM_H - 1.0).abs() < 1e-4);
    assert!(back[[1, 3]] > 0.0);
}

#[test]
fn mask_fingerprint_follows_the_mask_only() {
    let a = radar_like(64, 64, 3, 11);
    let b = radar_like(64, 64, 6, 99); // other rain, same circle
    assert_eq!(mask_fingerprint(&a.view()), mask_fingerprint(&b.view()));
    let ea = encode(&field(a.clone()), &SparseOptions::default()).unwrap();
    let eb = encode(&field(b), &SparseOptions::default()).unwrap();
    let (ia, ib) = (ea.info().unwrap(), eb.info().unwrap());
    assert_eq!(ia.mask_fingerprint, ib.mask_fingerprint);
    let mut c = a.clone();
    c[[32, 32]] = f32::NAN;
    assert_ne!(mask_fingerprint(&a.view()), mask_fingerprint(&c.view()));
    // Same mask pattern on another shape is another mask.
    let flat = Array2::<f32>::zeros((8, 8));
    let flat2 = Array2::<f32>::zeros((4, 16));
    assert_ne!(
        mask_fingerprint(&flat.view()),
        mask_fingerprint(&flat2.view())
    );
    // Fixed value: the fingerprint must never change for a given mask.
    assert_eq!(mask_fingerprint(&flat.view()), {
        let mut raw = b"raincast-mask-v1".to_vec();
        raw.extend_from_slice(&8u32.to_le_bytes());
        raw.extend_from_slice(&8u32.to_le_bytes());
        raw.push(64); // one data run of 64 cells
        super::bytes::fnv1a64(&[&raw])
    });
}

#[test]
fn point_values_match_decode() {
    let rate = radar_like(150, 130, 8, 5);
    let enc = encode(&field(rate), &SparseOptions { tile_size: 32 }).unwrap();
    let dense = enc.decode().unwrap().rate_mm_h;
    let info = enc.info().unwrap();
    for r in (0..150).step_by(7) {
        for c in (0..130).step_by(3) {
            let (tr, tc) = tile_of(r, c, info.tile_size);
            let tile = enc.tiles.iter().find(|t| (t.row, t.col) == (tr, tc));
            let v = point_value(&enc.header, tile, r, c).unwrap();
            assert_eq!(v.to_bits(), dense[[r, c]].to_bits(), "({r}, {c})");
        }
    }
}

#[test]
fn point_value_errors() {
    let mut rate = Array2::zeros((64, 64));
    rate[[40, 40]] = 5.0;
    let enc = encode(&field(rate), &SparseOptions { tile_size: 32 }).unwrap();
    assert_eq!(enc.tiles.len(), 1);
    let t = &enc.tiles[0];
    assert_eq!((t.row, t.col), (1, 1));
    assert!((point_value(&enc.header, Some(t), 40, 40).unwrap() - 5.0).abs() < 1e-3);
    assert_eq!(point_value(&enc.header, Some(t), 40, 41).unwrap(), 0.0);
    let e = point_value(&enc.header, None, 40, 40).unwrap_err();
    assert_eq!(e, SparseError::MissingTile { row: 1, col: 1 });
    let e = point_value(&enc.header, Some(t), 0, 0).unwrap_err();
    assert_eq!(e.code(), "wrong_tile");
    let e = point_value(&enc.header, None, 64, 0).unwrap_err();
    assert_eq!(e.code(), "out_of_grid");
    let fake = EncodedTile {
        row: 0,
        col: 0,
        bytes: t.bytes.clone(),
    };
    let e = point_value(&enc.header, Some(&fake), 0, 0).unwrap_err();
    assert_eq!(e, SparseError::UnexpectedTile { row: 0, col: 0 });
}

#[test]
fn decode_checks_the_tile_set() {
    let a = encode(
        &field(radar_like(96, 96, 6, 21)),
        &SparseOptions { tile_size: 32 },
    )
    .unwrap();
    assert!(a.tiles.len() >= 2, "{}", a.tiles.len());
    let e = decode(&a.header, &a.tiles[1..]).unwrap_err();
    assert_eq!(
        e,
        SparseError::MissingTile {
            row: a.tiles[0].row,
            col: a.tiles[0].col
        }
    );
    let mut twice = a.tiles.clone();
    twice.push(a.tiles[0].clone());
    assert_eq!(
        decode(&a.header, &twice).unwrap_err().code(),
        "duplicate_tile"
    );
    // A tile of another scan (same position) does not fit this header.
    let b = encode(
        &field(radar_like(96, 96, 6, 22)),
        &SparseOptions { tile_size: 32 },
    )
    .unwrap();
    let shared = a
        .tiles
        .iter()
        .find(|t| b.tiles.iter().any(|u| (u.row, u.col) == (t.row, t.col)))
        .unwrap();
    let mut mixed = a.tiles.clone();
    for t in mixed.iter_mut() {
        if (t.row, t.col) == (shared.row, shared.col) {
            *t = b
                .tiles
                .iter()
                .find(|u| (u.row, u.col) == (t.row, t.col))
                .unwrap()
                .clone();
        }
    }
    assert_eq!(
        decode(&a.header, &mixed).unwrap_err().code(),
        "tile_mismatch"
    );
    // A tile passed under the wrong indices.
    let mut moved = a.tiles.clone();
    moved[0].bytes = a.tiles[1].bytes.clone();
    assert_eq!(
        decode(&a.header, &moved).unwrap_err().code(),
        "tile_mismatch"
    );
    // A tile not in the header.
    let empty = encode(
        &field(Array2::zeros((96, 96))),
        &SparseOptions { tile_size: 32 },
    )
    .unwrap();
    assert_eq!(
        decode(&empty.header, &a.tiles[..1]).unwrap_err().code(),
        "unexpected_tile"
    );
}

#[test]
fn encode_rejects_bad_input() {
    let f = field(Array2::zeros((10, 10)));
    for t in [0, 15, 257, 4096] {
        let e = encode(&f, &SparseOptions { tile_size: t }).unwrap_err();
        assert_eq!(e.code(), "bad_value", "{t}");
    }
    let mut bad = f.clone();
    bad.rate_mm_h = Array2::zeros((10, 11));
    assert_eq!(
        encode(&bad, &SparseOptions::default()).unwrap_err().code(),
        "bad_value"
    );
    // A transposed (non-C-order) view still encodes correctly.
    let rate = radar_like(40, 30, 3, 4);
    let fortran = rate.clone().reversed_axes();
    let g = field(fortran.clone());
    assert!(!g.rate_mm_h.is_standard_layout());
    let back = encode(&g, &SparseOptions { tile_size: 16 })
        .unwrap()
        .decode()
        .unwrap();
    assert_round_trip(&fortran, &back.rate_mm_h);
}

#[test]
fn tile_of_maps_cells() {
    assert_eq!(tile_of(0, 0, 256), (0, 0));
    assert_eq!(tile_of(255, 256, 256), (0, 1));
    assert_eq!(tile_of(2199, 1899, 256), (8, 7));
    assert_eq!(tile_of(5, 5, 0), (5, 5));
    assert_eq!(tile_of(usize::MAX, 0, 1), (u16::MAX, 0));
}

/// The worst tile for the item limit: every other cell rain (most runs) with
/// random values (nothing to compress), at the largest tile size; and a
/// full tile of random values.
#[test]
fn worst_case_tiles_fit_the_item_limit() {
    let t = MAX_TILE_SIZE;
    let mut rng = Rng(42);
    let log_uniform = |rng: &mut Rng| (10f64.powf(-3.0 + 7.0 * rng.unit())) as f32;
    let checker = Array2::from_shape_fn((t, t), |(r, c)| {
        if (r + c) % 2 == 0 {
            log_uniform(&mut rng)
        } else {
            0.0
        }
    });
    let full = Array2::from_shape_fn((t, t), |_| log_uniform(&mut rng));
    for rate in [checker, full] {
        let enc = encode(&field(rate.clone()), &SparseOptions { tile_size: t }).unwrap();
        assert_eq!(enc.tiles.len(), 1);
        let n = enc.tiles[0].bytes.len();
        assert!(
            n <= tile::max_item_bytes(t),
            "{n} > bound {}",
            tile::max_item_bytes(t)
        );
        assert!(n <= MAX_ITEM_BYTES);
        assert_round_trip(&rate, &enc.decode().unwrap().rate_mm_h);
    }
    const { assert!(MAX_ITEM_BYTES + 100_000 <= DYNAMODB_ITEM_LIMIT) };
    // The figure quoted in the module docs.
    assert_eq!(tile::max_item_bytes(256), 262_943);
}

/// A continental OPERA-sized grid (2200 × 1900) with a lot of noisy rain:
/// several items, each well under the limit.
#[test]
fn continental_grid_is_split_into_small_items() {
    let mut rng = Rng(7);
    let rate = Array2::from_shape_fn((2200, 1900), |(r, c)| {
        let u = rng.unit();
        if (r / 300 + c / 300) % 3 == 0 {
            f32::NAN
        } else if u < 0.5 {
            (0.1 + 50.0 * rng.unit()) as f32
        } else {
            0.0
        }
    });
    let f = RainField {
        grid: Grid::new(
            "+proj=laea +lat_0=55 +lon_0=10 +x_0=1950000 +y_0=-2100000 +units=m +ellps=WGS84",
            2200,
            1900,
            2000.0,
            2000.0,
            0.0,
            0.0,
        )
        .unwrap(),
        time: DateTime::<Utc>::from_timestamp(1_535_133_600, 0).unwrap(),
        rate_mm_h: rate,
    };
    let enc = encode(&f, &SparseOptions::default()).unwrap();
    assert!(enc.tiles.len() > 40, "{}", enc.tiles.len());
    assert!(
        enc.largest_item_bytes() <= MAX_ITEM_BYTES,
        "{}",
        enc.largest_item_bytes()
    );
    assert_eq!(enc.info().unwrap().tile_grid, (9, 8));
}

/// Sizes on synthetic radar-like fields (real scans: docs/PERFORMANCE.md).
#[test]
fn radar_like_fields_are_compact() {
    for (rows, cols, blobs) in [(512, 512, 10), (512, 512, 20)] {
        let f = field(radar_like(rows, cols, blobs, 1234));
        let enc = encode(&f, &SparseOptions::default()).unwrap();
        let dense = rows * cols * 4;
        let ratio = enc.total_bytes() as f64 / dense as f64;
        eprintln!(
            "{rows}x{cols}, {blobs} rain cells: {} rain cells, {} bytes = {:.2}% of dense, {} tiles",
            f.rain_cells(),
            enc.total_bytes(),
            100.0 * ratio,
            enc.tiles.len()
        );
        assert!(ratio < 0.05, "{ratio}");
    }
}

// ----- malformed bytes -----

fn small() -> EncodedScan {
    let mut rate = Array2::zeros((20, 24));
    rate[[3, 4]] = 1.5;
    rate[[3, 5]] = 2.5;
    rate[[18, 20]] = 40.0;
    rate[[0, 23]] = f32::NAN;
    rate[[19, 0]] = f32::NAN;
    encode(&field(rate), &SparseOptions { tile_size: 16 }).unwrap()
}

/// Replaces the trailing CRC so that a deliberately edited item passes the
/// checksum and reaches the parser.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    b.truncate(b.len() - 4);
    seal(&mut b);
    b
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let enc = small();
    assert!(enc.tiles.len() == 2);
    for n in 0..enc.header.len() {
        assert!(header_info(&enc.header[..n]).is_err(), "header cut at {n}");
        assert!(
            decode(&enc.header[..n], &enc.tiles).is_err(),
            "header cut at {n}"
        );
    }
    for n in 0..enc.tiles[0].bytes.len() {
        let mut tiles = enc.tiles.clone();
        tiles[0].bytes.truncate(n);
        assert!(decode(&enc.header, &tiles).is_err(), "tile cut at {n}");
        assert!(point_value(&enc.header, Some(&tiles[0]), 3, 4).is_err());
    }
    let blob = enc.to_blob();
    for n in 0..blob.len() {
        assert!(
            EncodedScan::from_blob(&blob[..n]).is_err(),
            "blob cut at {n}"
        );
    }
}

#[test]
fn flipped_bytes_are_errors() {
    let enc = small();
    for i in 0..enc.header.len() {
        for bit in [0x01u8, 0x80] {
            let mut h = enc.header.clone();
            h[i] ^= bit;
            assert!(decode(&h, &enc.tiles).is_err(), "header byte {i}");
        }
    }
    for i in 0..enc.tiles[1].bytes.len() {
        let mut tiles = enc.tiles.clone();
        tiles[1].bytes[i] ^= 0x10;
        assert!(decode(&enc.header, &tiles).is_err(), "tile byte {i}");
    }
    let blob = enc.to_blob();
    for i in 0..blob.len() {
        let mut b = blob.clone();
        b[i] ^= 0x04;
        assert!(EncodedScan::from_blob(&b).is_err(), "blob byte {i}");
    }
}

/// Every single-byte change that passes the checksum (resealed) must still
/// give an error or a valid field, never a panic; most give an error.
#[test]
fn resealed_corruptions_never_panic() {
    let enc = small();
    let mut errors = 0;
    let mut total = 0;
    for i in 0..enc.header.len() - 4 {
        for v in [0x00u8, 0x01, 0x7f, 0x80, 0xff] {
            let mut h = enc.header.clone();
            if h[i] == v {
                continue;
            }
            h[i] = v;
            let h = reseal(h);
            total += 1;
            if decode(&h, &enc.tiles).is_err() {
                errors += 1;
            }
            let _ = point_value(&h, enc.tiles.first(), 3, 4);
            let _ = header_info(&h);
        }
    }
    for i in 0..enc.tiles[0].bytes.len() - 4 {
        for v in [0x00u8, 0x01, 0x7f, 0x80, 0xff] {
            let mut tiles = enc.tiles.clone();
            if tiles[0].bytes[i] == v {
                continue;
            }
            tiles[0].bytes[i] = v;
            tiles[0].bytes = reseal(tiles[0].bytes.clone());
            total += 1;
            // The header pins the tile's CRC, so every change is caught.
            assert!(decode(&enc.header, &tiles).is_err(), "tile byte {i} = {v}");
            errors += 1;
            let _ = point_value(&enc.header, Some(&tiles[0]), 3, 4);
        }
    }
    // Header bytes of free-valued fields (time, cell size, origin, the
    // projection text) may change into another valid header; the rest fail.
    assert!(errors * 4 >= total * 3, "{errors} errors of {total}");
}

#[test]
fn wrong_magic_kind_and_version() {
    let enc = small();
    let mut h = enc.header.clone();
    h[0] = b'X';
    let e = header_info(&reseal(h)).unwrap_err();
    assert_eq!(e.code(), "bad_magic");
    assert!(e.to_string().contains("RCSPH"), "{e}");
    // A tile is not a header.
    assert_eq!(
        header_info(&enc.tiles[0].bytes).unwrap_err().code(),
        "bad_magic"
    );
    let mut h = enc.header.clone();
    h[4] = 2;
    let e = header_info(&reseal(h)).unwrap_err();
    assert_eq!(
        e,
        SparseError::UnsupportedVersion {
            part: Part::Header,
            found: 2,
            supported: 1
        }
    );
    let mut t = enc.tiles.clone();
    t[0].bytes[4] = 9;
    t[0].bytes = reseal(t[0].bytes.clone());
    let e = tile::parse(&t[0].bytes).err().unwrap();
    assert_eq!(e.code(), "unsupported_version");
    let mut b = enc.to_blob();
    b[5] = b'Z';
    assert_eq!(
        EncodedScan::from_blob(&reseal(b)).unwrap_err().code(),
        "bad_magic"
    );
    assert_eq!(header_info(b"").unwrap_err().code(), "truncated");
    assert_eq!(
        header_info(b"GIF89a\0\0\0\0\0\0\0\0").unwrap_err().code(),
        "checksum"
    );
}

/// Offsets of header fields (see the layout in `header`).
const H_ROWS: usize = 8 + 12;
const H_PROJ_LEN: usize = H_ROWS + 8 + 32;

fn proj_len(h: &[u8]) -> usize {
    u16::from_le_bytes([h[H_PROJ_LEN], h[H_PROJ_LEN + 1]]) as usize
}

#[test]
fn absurd_lengths_are_rejected_before_allocating() {
    let enc = small();
    let put = |h: &[u8], at: usize, v: &[u8]| {
        let mut h = h.to_vec();
        h[at..at + v.len()].copy_from_slice(v);
        reseal(h)
    };
    // Grid of 20 000 x 20 000 cells (400 M) is over MAX_SCAN_CELLS.
    let h = put(&enc.header, H_ROWS, &[0x20, 0x4e, 0, 0, 0x20, 0x4e, 0, 0]);
    let e = decode(&h, &enc.tiles).unwrap_err();
    assert!(
        matches!(e, SparseError::AbsurdSize { field: "cells", .. }),
        "{e}"
    );
    // Rows beyond MAX_GRID_SIDE.
    let h = put(&enc.header, H_ROWS, &u32::MAX.to_le_bytes());
    assert!(matches!(
        header_info(&h).unwrap_err(),
        SparseError::AbsurdSize { field: "rows", .. }
    ));
    // Projection length past the end.
    let h = put(&enc.header, H_PROJ_LEN, &u16::MAX.to_le_bytes());
    assert_eq!(header_info(&h).unwrap_err().code(), "truncated");
    let after_proj = H_PROJ_LEN + 2 + proj_len(&enc.header);
    // Tile size 0 and 65535.
    for ts in [0u16, u16::MAX] {
        let h = put(&enc.header, after_proj, &ts.to_le_bytes());
        assert_eq!(header_info(&h).unwrap_err().code(), "bad_value");
    }
    // Mask length past the end (mask length sits after tile size 2,
    // quantiser 1, counts 8, max 4, fingerprint 8).
    let mask_len_at = after_proj + 2 + 1 + 8 + 4 + 8;
    let h = put(&enc.header, mask_len_at, &u32::MAX.to_le_bytes());
    assert_eq!(header_info(&h).unwrap_err().code(), "truncated");
    // Tile count of 4 G.
    let mask_len = u32::from_le_bytes(enc.header[mask_len_at..mask_len_at + 4].try_into().unwrap());
    let count_at = mask_len_at + 4 + mask_len as usize;
    let h = put(&enc.header, count_at, &u32::MAX.to_le_bytes());
    assert_eq!(header_info(&h).unwrap_err().code(), "absurd_size");
    // Blob with a tile count of 4 G.
    let mut b = enc.to_blob();
    let at = 8 + 4 + enc.header.len();
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        EncodedScan::from_blob(&reseal(b)).unwrap_err().code(),
        "truncated"
    );
    // Tile: raw length of 4 GB, payload length past the end.
    let t = &enc.tiles[0].bytes;
    let raw_len_at = 8 + 6 + 4 + 1;
    let mut bad = t.clone();
    bad[raw_len_at..raw_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let bad = reseal(bad);
    let p = tile::parse(&bad);
    let g = tile::TileGeom::new(0, 0, 16, 20, 24).unwrap();
    let e = match p {
        Ok(p) => p
            .for_each_rain(g, &mut super::bytes::Inflater::new(), |_, _, _| Ok(()))
            .unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(e.code(), "absurd_size" | "bad_value"), "{e}");
    let mut bad = t.clone();
    bad[raw_len_at + 4..raw_len_at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(tile::parse(&reseal(bad)).err().unwrap().code(), "truncated");
}

#[test]
fn errors_say_what_is_wrong() {
    let enc = small();
    let mut h = enc.header.clone();
    let n = h.len();
    h[n - 1] ^= 0xff;
    let e = header_info(&h).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sparse header: checksum mismatch"),
        "{e}"
    );
    let e = decode(&enc.header[..10], &[]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

// ----- property tests -----

/// A random field from a seed: each cell is no data, no rain or rain with
/// the given odds; with `sticky` > 0 a cell repeats its left neighbour's
/// kind that often, making runs like real rain and coverage edges. Rain
/// rates spread over and beyond the quantiser's range (1e-9 to 1e6 mm/h).
/// Built from a seed (not cell by cell by proptest) to keep cases fast.
fn random_field(
    rows: usize,
    cols: usize,
    seed: u64,
    p_nodata: f64,
    p_rain: f64,
    sticky: f64,
) -> Array2<f32> {
    let mut rng = Rng(seed | 1);
    let mut prev = 0u8;
    Array2::from_shape_fn((rows, cols), |(_, c)| {
        let kind = if c > 0 && rng.unit() < sticky {
            prev
        } else {
            let u = rng.unit();
            if u < p_nodata {
                0
            } else if u < p_nodata + (1.0 - p_nodata) * p_rain {
                2
            } else {
                1
            }
        };
        prev = kind;
        match kind {
            0 => f32::NAN,
            1 => 0.0,
            _ => {
                let v = match rng.next() % 8 {
                    0 => 10f64.powf(-9.0 + 6.0 * rng.unit()),
                    1 => 10f64.powf(4.0 + 2.0 * rng.unit()),
                    _ => 10f64.powf(-3.0 + 7.0 * rng.unit()),
                } as f32;
                v.max(f32::MIN_POSITIVE)
            }
        }
    })
}

fn rate_field() -> impl Strategy<Value = Array2<f32>> {
    (
        1usize..90,
        1usize..90,
        any::<u64>(),
        0.0f64..0.6,
        0.0f64..1.0,
        prop_oneof![Just(0.0), 0.5f64..0.98],
    )
        .prop_map(|(r, c, seed, nd, rain, sticky)| random_field(r, c, seed, nd, rain, sticky))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// decode(encode(f)) keeps no data and no rain exactly and every rain
    /// rate within the documented bound, for any tile size.
    #[test]
    fn prop_round_trip(rate in rate_field(), tile_size in MIN_TILE_SIZE..=48) {
        let f = field(rate.clone());
        let enc = encode(&f, &SparseOptions { tile_size }).unwrap();
        let back = decode(&enc.header, &enc.tiles).unwrap();
        assert_round_trip(&rate, &back.rate_mm_h);
        let info = enc.info().unwrap();
        prop_assert_eq!(info.rain_cells, f.rain_cells() as u64);
        prop_assert_eq!(info.nodata_cells, f.nodata_cells() as u64);
        prop_assert!(enc.largest_item_bytes() <= MAX_ITEM_BYTES);
        let again = EncodedScan::from_blob(&enc.to_blob()).unwrap();
        prop_assert_eq!(&again, &enc);
    }

    /// Any single cell read with point_value equals the full decode.
    #[test]
    fn prop_point_value(rate in rate_field(), tile_size in MIN_TILE_SIZE..=40, pick in 0usize..10_000) {
        let enc = encode(&field(rate.clone()), &SparseOptions { tile_size }).unwrap();
        let dense = enc.decode().unwrap().rate_mm_h;
        let (rows, cols) = rate.dim();
        let (r, c) = ((pick / cols) % rows, pick % cols);
        let (tr, tc) = tile_of(r, c, tile_size);
        let tile = enc.tiles.iter().find(|t| (t.row, t.col) == (tr, tc));
        let v = point_value(&enc.header, tile, r, c).unwrap();
        prop_assert_eq!(v.to_bits(), dense[[r, c]].to_bits());
    }

    /// Quantisation alone: the bound holds across the whole range.
    #[test]
    fn prop_quantiser_bound(r in 1e-3f32..=1e4) {
        let back = quant::decode(quant::encode(r)) as f64;
        let rel = (back - r as f64).abs() / r as f64;
        prop_assert!(rel <= MAX_RELATIVE_ERROR, "{} -> {}: {}", r, back, rel);
    }

    /// Arbitrary bytes never panic any reader.
    #[test]
    fn prop_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = header_info(&bytes);
        let _ = decode(&bytes, &[]);
        let _ = EncodedScan::from_blob(&bytes);
        let _ = tile::parse(&bytes);
        let t = EncodedTile { row: 0, col: 0, bytes: bytes.clone() };
        let _ = decode(&small().header, std::slice::from_ref(&t));
        let _ = point_value(&small().header, Some(&t), 3, 4);
    }
}

// ----- real scans -----

/// Every scan in ../shared/data: decode, prep (defaults), encode with the
/// default options, decode again. Checks the round trip, the item limit and
/// the size goals (BOM ≤ 5 %, OPERA ≤ 2 % of the dense f32 size, per file),
/// and prints the size table of docs/PERFORMANCE.md
/// (`cargo test -p raincast-algorithms --release real_scans -- --nocapture`).
#[test]
fn real_scans_round_trip_and_meet_size_goals() {
    let datasets: [(&str, &str, &str, Option<f64>); 5] = [
        ("BOM Melbourne 512×512", "bom", ".nc", Some(0.05)),
        ("OPERA 2200×1900", "odim/opera", ".hdf", Some(0.02)),
        ("RMI 700×700", "odim/rmi", ".hdf", None),
        ("MeteoSwiss 640×710", "mch", ".gif", None),
        ("FMI 1226×760", "fmi", ".pgm", None),
    ];
    eprintln!("| data set | files | dense bytes | sparse bytes mean (max) | ratio mean (max) | tiles | largest item | header |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    for (label, folder, needle, goal) in datasets {
        let Some(files) = crate::decode::shared_data_files(folder, needle) else {
            return;
        };
        assert!(!files.is_empty(), "no {needle} files in {folder}");
        let (mut sum, mut max, mut largest, mut header) = (0usize, 0usize, 0usize, 0usize);
        let (mut tiles_min, mut tiles_max) = (usize::MAX, 0usize);
        let mut dense = 0usize;
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            let name = path.file_name().and_then(|n| n.to_str());
            let scan = crate::decode::decode(&bytes, name, None).unwrap();
            let field = crate::prep::prep(&scan, &Default::default());
            let enc = encode(&field, &SparseOptions::default()).unwrap();
            let back = enc.decode().unwrap();
            assert_round_trip(&field.rate_mm_h, &back.rate_mm_h);
            let info = enc.info().unwrap();
            assert_eq!(info.rain_cells, field.rain_cells() as u64);
            assert_eq!(info.nodata_cells, field.nodata_cells() as u64);
            dense = field.rate_mm_h.len() * 4;
            let total = enc.total_bytes();
            if let Some(goal) = goal {
                let ratio = total as f64 / dense as f64;
                assert!(
                    ratio <= goal,
                    "{}: {total} bytes = {ratio:.4} of dense",
                    path.display()
                );
            }
            assert!(enc.largest_item_bytes() <= MAX_ITEM_BYTES);
            sum += total;
            max = max.max(total);
            largest = largest.max(enc.largest_item_bytes());
            header = header.max(enc.header.len());
            tiles_min = tiles_min.min(enc.tiles.len());
            tiles_max = tiles_max.max(enc.tiles.len());
        }
        let mean = sum / files.len();
        eprintln!(
            "| {label} | {} | {dense} | {mean} ({max}) | {:.2} % ({:.2} %) | {tiles_min}–{tiles_max} | {largest} | ≤ {header} |",
            files.len(),
            100.0 * mean as f64 / dense as f64,
            100.0 * max as f64 / dense as f64,
        );
    }
}

/// Experiment (branch s17-deflate, not in `main`): the forecast frames the
/// service stores, encoded at the deflate level of `RC_DEFLATE` (default
/// the crate's). Every fourth nowcast of each shared day (three scans in,
/// leads every scan interval to 60 min, as the service's defaults), each
/// lead encoded once and decoded five times. Prints, per day, the frames,
/// the mean bytes per frame and the mean encode and decode time.
///
/// `RC_DEFLATE=6 cargo test --release -p raincast-algorithms --lib experiment_forecast_frame_sizes -- --ignored --nocapture`
#[test]
#[ignore = "experiment: timing, shared data, release build"]
fn experiment_forecast_frame_sizes() {
    use std::time::Instant;
    let days = [
        ("BOM 02", "bom", ".nc"),
        ("MeteoSwiss", "mch", ".gif"),
        ("RMI", "odim/rmi", ".hdf"),
        ("FMI", "fmi", ".pgm"),
    ];
    let level = std::env::var("RC_DEFLATE").unwrap_or_else(|_| "default".into());
    eprintln!("deflate level {level}");
    eprintln!("| day | frames | bytes per frame | encode ms | decode ms |");
    eprintln!("|---|---|---|---|---|");
    for (label, folder, needle) in days {
        let Some(files) = crate::decode::shared_data_files(folder, needle) else {
            return;
        };
        let fields: Vec<crate::prep::RainField> = files
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).unwrap();
                let name = path.file_name().and_then(|n| n.to_str());
                let scan = crate::decode::decode(&bytes, name, None).unwrap();
                crate::prep::prep(&scan, &Default::default())
            })
            .collect();
        let times: Vec<_> = fields.iter().map(|f| f.time).collect();
        let step_s = crate::nowcast::modal_step(&times).unwrap();
        let step_min = ((step_s as f64 / 60.0).round() as u32).max(1);
        let leads: Vec<u32> = (1..)
            .map(|k| k * step_min)
            .take_while(|l| *l <= 60)
            .collect();
        let cfg = crate::nowcast::NowcastConfig::default();
        let (mut frames, mut bytes, mut enc_s, mut dec_s) = (0usize, 0usize, 0f64, 0f64);
        for i in (2..fields.len()).step_by(4) {
            let Ok(n) = crate::nowcast::nowcast(&fields[i - 2..=i], &leads, &cfg) else {
                continue;
            };
            for (k, rate) in n.rate_mm_h.iter().enumerate() {
                let field = crate::prep::RainField {
                    grid: n.grid.clone(),
                    time: n.valid_time(k),
                    rate_mm_h: rate.clone(),
                };
                let t = Instant::now();
                let enc = encode(&field, &SparseOptions::default()).unwrap();
                enc_s += t.elapsed().as_secs_f64();
                bytes += enc.total_bytes();
                let t = Instant::now();
                for _ in 0..5 {
                    std::hint::black_box(enc.decode().unwrap());
                }
                dec_s += t.elapsed().as_secs_f64() / 5.0;
                frames += 1;
            }
        }
        assert!(frames > 0, "{label}: no nowcast");
        eprintln!(
            "| {label} | {frames} | {} | {:.2} | {:.2} |",
            bytes / frames,
            1e3 * enc_s / frames as f64,
            1e3 * dec_s / frames as f64
        );
    }
}
