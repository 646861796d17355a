//! One uncached 256 px mosaic tile from two overlapping radars: sampling
//! (the lattice projection, the weighting of both fields) and the PNG, as
//! the API renders a tile that is not in its cache. The radars are the
//! demo's: 256 × 256 km at 1 km, 128 km apart; the tile (zoom 8) lies in
//! their overlap.
//!
//! `cargo bench -p raincast-algorithms --bench tiles`

use criterion::{criterion_group, criterion_main, Criterion};
use raincast_algorithms::mosaic::{sample_tile, Layer, MosaicRadar, TileId};
use raincast_algorithms::render::tiles::{render_tile_png, TileScheme};
use raincast_algorithms::synth::local_grid;
use std::hint::black_box;

const SIDE: usize = 256;

/// A rain field with several cells inside a disc of 0.48 side, NaN outside.
fn field(shift: f32) -> Vec<f32> {
    let c = SIDE as f32 / 2.0;
    (0..SIDE * SIDE)
        .map(|i| {
            let (r, col) = ((i / SIDE) as f32 + 0.5, (i % SIDE) as f32 + 0.5);
            if (r - c).powi(2) + (col - c).powi(2) > (0.48 * SIDE as f32).powi(2) {
                return f32::NAN;
            }
            let mut v = 0.0f32;
            for (cy, cx, amp) in [
                (100.0, 60.0 + shift, 30.0),
                (150.0, 180.0 - shift, 6.0),
                (60.0, 200.0, 1.5f32),
            ] {
                v += amp * (-((r - cy).powi(2) + (col - cx).powi(2)) / 400.0).exp();
            }
            if v < 0.1 {
                0.0
            } else {
                v
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let a = MosaicRadar::new(
        "demo",
        local_grid(8.54, 47.37, SIDE, SIDE, 1000.0).expect("grid"),
        Some((8.54, 47.37)),
    )
    .expect("radar");
    let b = MosaicRadar::new(
        "demo2",
        local_grid(10.24, 47.37, SIDE, SIDE, 1000.0).expect("grid"),
        Some((10.24, 47.37)),
    )
    .expect("radar");
    let (fa, fb) = (field(0.0), field(128.0));
    let layers = [
        Layer::new(&a, &fa).expect("layer"),
        Layer::new(&b, &fb).expect("layer"),
    ];
    // Zoom 8 tile over the overlap (9.4 E, 47.4 N).
    let (px, py) = TileId::new(8, 0, 0)
        .expect("tile")
        .lonlat_pixel(9.4, 47.4, 256);
    let tile = TileId::new(8, (px / 256.0) as u32, (py / 256.0) as u32).expect("tile");
    let values = sample_tile(&layers, tile, 256, false);
    assert!(values.iter().filter(|v| v.is_finite()).count() > 256 * 200);
    let mut g = c.benchmark_group("tile");
    g.bench_function("mosaic_256_two_radars", |bch| {
        bch.iter(|| {
            let v = sample_tile(black_box(&layers), tile, 256, false);
            render_tile_png(&v, 256, TileScheme::Raincast).expect("png")
        })
    });
    g.bench_function("mosaic_256_two_radars_smooth", |bch| {
        bch.iter(|| {
            let v = sample_tile(black_box(&layers), tile, 256, true);
            render_tile_png(&v, 256, TileScheme::Raincast).expect("png")
        })
    });
    g.bench_function("sample_only_256", |bch| {
        bch.iter(|| sample_tile(black_box(&layers), tile, 256, false))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
