//! Criterion benches: decode + prep + sparse encode per format on one real
//! scan each from `../shared/data` (skipped with a message when absent), and
//! the sparse encoding alone.
//!
//! Run: `cargo bench -p raincast-algorithms --bench prep` (add a filter such
//! as `-- pipeline/bom` for one). Figures: docs/PERFORMANCE.md.
//!
//! Times are the **CPU time of the benchmarking thread** (from
//! `/proc/thread-self/schedstat`), not wall-clock: the project machine has
//! 2 cores shared by several jobs, and wall-clock would count the time spent
//! waiting for a core. Everything measured runs on one thread. Where that
//! file is missing (not Linux), wall-clock is used and the bench says so.

mod common;

use common::{data_dir, scan_files, Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use raincast_algorithms::decode;
use raincast_algorithms::prep::{self, PrepOptions, RainField};
use raincast_algorithms::sparse::{self, SparseOptions};
use raincast_algorithms::synth;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One scan per product: (bench name, folder below shared/data).
const SAMPLES: [(&str, &str); 5] = [
    ("bom_512x512", "bom/02"),
    ("opera_2200x1900", "odim/opera/20180824"),
    ("rmi_700x700", "odim/rmi/20210704"),
    ("mch_710x640", "mch/20160711"),
    ("fmi_1226x760", "fmi/20160928"),
];

/// The first file (by name) of a folder.
fn first_file(dir: &Path) -> Option<PathBuf> {
    scan_files(dir).ok()?.into_iter().next()
}

/// A synthetic radar field (moving Gaussian rain cells, see
/// `raincast_algorithms::synth`) for the sparse benches without real data.
fn synthetic(rows: usize, cols: usize) -> Option<RainField> {
    let grid = synth::local_grid(4.0, 50.0, rows, cols, 1000.0).ok()?;
    let mut cfg = synth::SynthConfig::for_shape(rows, cols);
    cfg.coverage = synth::Coverage::Circle {
        centre_row: rows as f32 / 2.0,
        centre_col: cols as f32 / 2.0,
        radius_px: rows.min(cols) as f32 / 2.0,
    };
    Some(synth::SynthRadar::new(grid, cfg).field(10))
}

fn sparse_benches(c: &mut Crit, name: &str, field: &RainField) {
    let opts = SparseOptions::default();
    let Ok(enc) = sparse::encode(field, &opts) else {
        eprintln!("skipped: {name}: sparse encode failed");
        return;
    };
    c.bench_function(&format!("sparse_encode/{name}"), |b| {
        b.iter(|| sparse::encode(black_box(field), &opts).map(|e| e.total_bytes()))
    });
    c.bench_function(&format!("sparse_decode/{name}"), |b| {
        b.iter(|| {
            sparse::decode(black_box(&enc.header), black_box(&enc.tiles)).map(|f| f.rate_mm_h.len())
        })
    });
}

fn benches(c: &mut Crit) {
    let opts = PrepOptions::default();
    let dir = data_dir();
    if !dir.is_dir() {
        eprintln!("skipped: ../shared/data not found ({})", dir.display());
    }
    for (name, folder) in SAMPLES {
        let Some(path) = first_file(&dir.join(folder)) else {
            eprintln!("skipped: {name}: no file in {folder}");
            continue;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipped: {name}: cannot read {}", path.display());
            continue;
        };
        let file_name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let file_name = file_name.as_deref();
        let scan = match decode::decode(&bytes, file_name, None) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: {name}: {e}");
                continue;
            }
        };
        c.bench_function(&format!("pipeline/{name}"), |b| {
            b.iter(|| {
                let scan = decode::decode(black_box(&bytes), file_name, None).expect("decodes");
                let field = prep::prep(&scan, &opts);
                sparse::encode(&field, &SparseOptions::default()).map(|e| e.total_bytes())
            })
        });
        c.bench_function(&format!("decode/{name}"), |b| {
            b.iter(|| decode::decode(black_box(&bytes), file_name, None).map(|s| s.values.len()))
        });
        // The decoded values' plausibility check alone (part of `decode/`).
        c.bench_function(&format!("check_values/{name}"), |b| {
            b.iter(|| raincast_algorithms::scan::check_values(black_box(&scan)).is_ok())
        });
        c.bench_function(&format!("prep/{name}"), |b| {
            b.iter(|| prep::prep(black_box(&scan), &opts).rate_mm_h.len())
        });
        sparse_benches(c, name, &prep::prep(&scan, &opts));
    }
    match synthetic(512, 512) {
        Some(field) => sparse_benches(c, "synthetic_512x512", &field),
        None => eprintln!("skipped: synthetic field: invalid grid"),
    }
}

criterion_group! {
    name = prep_benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime::new())
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(prep_benches);
