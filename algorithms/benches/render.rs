//! Rendering benchmarks: an 18-frame 512×512 animation (the API's default
//! past hour + nowcast on a BOM-sized grid) and one PNG overlay.
//!
//! Also the GIF LZW step alone on a realistic frame (the first frame of that
//! animation, decoded back to palette indices): the crate's encoder against
//! the `weezl` crate's.
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
    let gif_bytes = render_animation(&grid, &frames, &opts).expect("renders");
    let size = gif_bytes.len();
    eprintln!("animation: 18 frames of {SIDE}x{SIDE}, {size} bytes");
    lzw_bench(c, &gif_bytes);
    c.bench_function("render_animation_18x512", |b| {
        b.iter(|| render_animation(&grid, &frames, &opts).expect("renders"))
    });
    c.bench_function("render_png_512", |b| {
        b.iter(|| render_png(f[5].view()).expect("renders"))
    });
}

/// The LZW encoders on the palette indices of the animation's first frame.
fn lzw_bench(c: &mut Criterion, gif_bytes: &[u8]) {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(gif_bytes).expect("a GIF");
    let frame = dec.read_next_frame().expect("decodes").expect("a frame");
    let px = frame.buffer.to_vec();
    // The animation's palette has 32 entries: 5-bit indices.
    let min_code_size = 5;
    let ours = raincast_algorithms::render::lzw::encode(&px, min_code_size);
    let theirs = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, min_code_size)
        .encode(&px)
        .expect("encodes");
    eprintln!(
        "lzw: frame {}x{} ({} px), ours {} bytes, weezl {} bytes",
        frame.width,
        frame.height,
        px.len(),
        ours.len(),
        theirs.len()
    );
    let mut g = c.benchmark_group("lzw_frame_512");
    let mut enc = raincast_algorithms::render::lzw::LzwEncoder::default();
    g.bench_function("hand_written", |b| {
        b.iter(|| enc.encode(&px, min_code_size))
    });
    let mut wz = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, min_code_size);
    g.bench_function("weezl", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(px.len() / 2);
            wz.into_vec(&mut out)
                .encode_all(&px[..])
                .status
                .expect("encodes");
            wz.reset();
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
