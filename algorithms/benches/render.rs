//! Rendering benchmarks: an 18-frame 512×512 animation (the API's default
//! past hour + nowcast on a BOM-sized grid) and one PNG overlay.
//!
//! `cargo bench -p raincast-algorithms --bench render`

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use raincast_algorithms::render::{
    render_animation, render_png, AnimationFrame, AnimationOptions, FrameKind, Marker, RangeRings,
};
use raincast_algorithms::Grid;

const SIDE: usize = 512;

/// Three rain cells drifting east inside a circular coverage (NaN outside).
fn fields(n: usize) -> Vec<Array2<f32>> {
    (0..n)
        .map(|k| {
            Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
                let (dx, dy) = (c as f32 - 256.0, r as f32 - 256.0);
                if dx * dx + dy * dy > 250.0 * 250.0 {
                    return f32::NAN;
                }
                let mut v = 0.0f32;
                for (cy, cx, amp) in [
                    (200.0, 100.0, 60.0),
                    (300.0, 180.0, 8.0),
                    (150.0, 250.0, 2.0f32),
                ] {
                    let x = cx + 6.0 * k as f32;
                    let d2 = ((r as f32 - cy).powi(2) + (c as f32 - x).powi(2)) / 1600.0;
                    v += amp
                        * (-d2).exp()
                        * (1.0 + 0.3 * (r as f32 * 0.1).sin() * (c as f32 * 0.13).cos());
                }
                if v < 0.1 {
                    0.0
                } else {
                    v
                }
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let grid = Grid::new(
        "+proj=aeqd +lat_0=-37.85 +lon_0=144.75 +ellps=GRS80 +units=m",
        SIDE,
        SIDE,
        500.0,
        500.0,
        -128_000.0,
        128_000.0,
    )
    .expect("valid grid");
    let f = fields(18);
    let t0 = Utc
        .with_ymd_and_hms(2018, 6, 16, 10, 0, 0)
        .single()
        .expect("valid time");
    let frames: Vec<_> = f
        .iter()
        .enumerate()
        .map(|(k, a)| AnimationFrame {
            rate_mm_h: a.view(),
            time: t0 + Duration::minutes(5 * k as i64),
            kind: if k < 12 {
                FrameKind::Observed
            } else {
                FrameKind::Forecast {
                    lead_min: 5 * (k as u32 - 11),
                }
            },
        })
        .collect();
    let opts = AnimationOptions {
        title: Some("MELBOURNE".into()),
        marker: Some(Marker {
            lon: 144.96,
            lat: -37.81,
            name: "Melbourne".into(),
        }),
        rings: Some(RangeRings {
            lon: 144.75,
            lat: -37.85,
            step_km: 50.0,
            count: 3,
        }),
        ..AnimationOptions::default()
    };
    let size = render_animation(&grid, &frames, &opts)
        .expect("renders")
        .len();
    eprintln!("animation: 18 frames of {SIDE}x{SIDE}, {size} bytes");
    c.bench_function("render_animation_18x512", |b| {
        b.iter(|| render_animation(&grid, &frames, &opts).expect("renders"))
    });
    c.bench_function("render_png_512", |b| {
        b.iter(|| render_png(f[5].view()).expect("renders"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
