//! NEXRAD Level II: decode + gridding of one volume to the default 500 × 500
//! km grid (1 km cells), with the polar → grid mapping cached as a service
//! keeps it, plus the pieces on their own.
//!
//! `cargo bench -p raincast-algorithms --bench nexrad`
//!
//! Times are the benchmark thread's **CPU time** (Linux
//! `/proc/thread-self/schedstat`), not wall time: the project machine has 2
//! cores shared by several builds, and wall time there mostly measures the
//! run queue. CPU time of the one thread is what "single thread" costs.
//!
//! Inputs (from ../shared/data/nexrad; the bench prints a notice and does
//! nothing without them):
//! * `msg1_full_volume`: the whole legacy KLOT 2003 volume (whole-file
//!   bzip2, 122 KB → 6.25 MB, every sweep read: no coverage pattern message);
//! * `msg31_excerpt`: the 120-radial KATX 2013 excerpt (2 LDM records);
//! * `msg31_full_volume`: a full-size modern volume built here from the
//!   excerpt: its radial record copied six times with the azimuths turned by
//!   60° each (a complete 720-radial lowest sweep, status "end of elevation"
//!   on the last radial), then 90 more records of a higher cut, so the file
//!   has the ~100 records and ~11 MB of a real VCP 11 volume. Only the lowest
//!   sweep's records are decompressed.

mod common;

use common::{data_dir, Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use raincast_algorithms::decode::nexrad::{self, NexradOptions};
use raincast_algorithms::polar::{PolarGeometry, PolarGridder, PolarMapping, PolarOptions};
use std::io::{Read, Write};

fn read_sample(name: &str) -> Option<Vec<u8>> {
    let path = data_dir().join("nexrad").join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipped: {} not found", path.display());
            None
        }
    }
}

/// The LDM records (size prefix stripped, still bzip2) after the header.
fn ldm_records(file: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 4 <= file.len() {
        let size = i32::from_be_bytes([file[pos], file[pos + 1], file[pos + 2], file[pos + 3]])
            .unsigned_abs() as usize;
        out.push(file[pos + 4..pos + 4 + size].to_vec());
        pos += 4 + size;
    }
    out
}

fn bunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("bzip2");
    out
}

fn bzip(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(data).expect("bzip2");
    enc.finish().expect("bzip2")
}

/// Rewrites every message-31 radial of a decompressed record: azimuth +
/// `turn_deg`, elevation number, and status 2 on the last one if asked.
fn patch_radials(record: &[u8], turn_deg: f32, elevation: u8, end_sweep: bool) -> Vec<u8> {
    let mut out = record.to_vec();
    let offsets: Vec<usize> = nexrad_decode::iter_messages(record)
        .filter_map(Result::ok)
        .filter(|m| {
            matches!(
                m.contents(),
                nexrad_decode::MessageContents::DigitalRadarData(_)
            )
        })
        .map(|m| m.offset_bytes())
        .collect();
    for (k, &at) in offsets.iter().enumerate() {
        let body = at + 28;
        let az_at = body + 12;
        let az = f32::from_be_bytes(out[az_at..az_at + 4].try_into().expect("4 bytes"));
        let az = (az + turn_deg).rem_euclid(360.0);
        out[az_at..az_at + 4].copy_from_slice(&az.to_be_bytes());
        out[body + 22] = elevation;
        if end_sweep && k + 1 == offsets.len() {
            out[body + 21] = 2;
        }
    }
    out
}

fn full_modern_volume(excerpt: &[u8]) -> Vec<u8> {
    let records = ldm_records(excerpt);
    let radials = bunzip(&records[1]);
    let mut out = excerpt[..24].to_vec();
    let mut push = |compressed: &[u8]| {
        out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
        out.extend_from_slice(compressed);
    };
    push(&records[0]);
    for k in 0..6 {
        push(&bzip(&patch_radials(&radials, 60.0 * k as f32, 1, k == 5)));
    }
    let higher = bzip(&patch_radials(&radials, 0.0, 2, false));
    for _ in 0..90 {
        push(&higher);
    }
    out
}

fn bench(c: &mut Crit) {
    let (Some(msg1), Some(msg31)) = (
        read_sample("example_nexrad_archive_msg1.bz2"),
        read_sample("example_nexrad_archive_msg31_compressed.ar2v"),
    ) else {
        return;
    };
    let klot = NexradOptions {
        site: Some("KLOT".into()),
        ..NexradOptions::default()
    };
    let full = full_modern_volume(&msg31);
    eprintln!("synthetic full modern volume: {} bytes", full.len());
    let defaults = NexradOptions::default();

    let mut g = c.benchmark_group("nexrad");
    for (name, bytes, opts) in [
        ("msg1_full_volume", &msg1, &klot),
        ("msg31_excerpt", &msg31, &defaults),
        ("msg31_full_volume", &full, &defaults),
    ] {
        let mut gridder = PolarGridder::new(PolarOptions::default());
        nexrad::decode_with(bytes, None, opts, &mut gridder).expect("decodes");
        g.bench_function(format!("{name}/decode_and_grid_cached"), |b| {
            b.iter(|| {
                nexrad::decode_with(black_box(bytes), None, opts, &mut gridder).expect("decodes")
            })
        });
        g.bench_function(format!("{name}/read_sweep"), |b| {
            b.iter(|| nexrad::read_sweep(black_box(bytes), None, opts).expect("decodes"))
        });
    }
    let sweep = nexrad::read_sweep(&msg31, None, &defaults)
        .expect("decodes")
        .sweep;
    let mut gridder = PolarGridder::new(PolarOptions::default());
    g.bench_function("grid_only_cached", |b| {
        b.iter(|| gridder.grid(black_box(&sweep)).expect("grids"))
    });
    g.bench_function("mapping_build_500x500", |b| {
        b.iter(|| {
            PolarMapping::new(PolarGeometry::of(
                black_box(&sweep),
                PolarOptions::default().grid,
            ))
            .expect("mapping")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::new()).sample_size(20);
    targets = bench
}
criterion_main!(benches);
