//! GIS export benchmarks: a whole nowcast (12 leads of 512 × 512, the
//! issue's target size) as CF netCDF, and one lead as a tiled GeoTIFF with
//! overviews.
//!
//! `cargo bench -p raincast-algorithms --bench export`

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use raincast_algorithms::export::{encode_geotiff, encode_nowcast_netcdf, BandInfo, NowcastFile};
use raincast_algorithms::Grid;

const SIDE: usize = 512;
const LEADS: usize = 12;

/// A rain cell drifting east inside a circular coverage (NaN outside),
/// mostly dry like a real field.
fn field(k: usize) -> Array2<f32> {
    Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
        let (dx, dy) = (c as f32 - 256.0, r as f32 - 256.0);
        if dx * dx + dy * dy > 250.0 * 250.0 {
            return f32::NAN;
        }
        let x = 150.0 + 8.0 * k as f32;
        let d2 = ((r as f32 - 220.0).powi(2) + (c as f32 - x).powi(2)) / 2500.0;
        let v = 30.0 * (-d2).exp();
        if v < 0.1 {
            0.0
        } else {
            v
        }
    })
}

fn bench(c: &mut Crit) {
    let grid = Grid::new(
        "+proj=aea +lat_1=-18 +lat_2=-36 +lat_0=-37.852 +lon_0=144.752 +ellps=GRS80 +units=m",
        SIDE,
        SIDE,
        500.0,
        500.0,
        -128_000.0,
        128_000.0,
    )
    .expect("valid grid");
    let rates: Vec<Array2<f32>> = (0..LEADS).map(field).collect();
    let leads: Vec<u32> = (1..=LEADS as u32).map(|k| 5 * k).collect();
    let issued = Utc
        .with_ymd_and_hms(2018, 6, 16, 10, 0, 0)
        .single()
        .expect("valid time");
    let file = NowcastFile {
        grid: &grid,
        radar: "bench",
        radar_name: "Bench",
        issued,
        leads_min: &leads,
        rate_mm_h: &rates,
        created: issued + Duration::seconds(5),
        source: "Raincast bench",
    };
    let nc = encode_nowcast_netcdf(&file).expect("encodes");
    eprintln!("netcdf: {LEADS} leads of {SIDE}x{SIDE}, {} bytes", nc.len());
    let info = BandInfo {
        unit: "mm/h".into(),
        description: "rain rate".into(),
        items: vec![],
    };
    let tif = encode_geotiff(&grid, rates[5].view(), &info).expect("encodes");
    eprintln!("geotiff: one lead of {SIDE}x{SIDE}, {} bytes", tif.len());
    c.bench_function("netcdf_nowcast_512_12_leads", |b| {
        b.iter(|| encode_nowcast_netcdf(black_box(&file)).expect("encodes"))
    });
    c.bench_function("geotiff_lead_512", |b| {
        b.iter(|| encode_geotiff(&grid, black_box(rates[5].view()), &info).expect("encodes"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime::new())
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
