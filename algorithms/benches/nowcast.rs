//! Criterion benches of the nowcast: motion estimation alone, motion plus 6
//! extrapolation steps (the speed target) with the default S-PROG
//! smoothing and as plain semi-Lagrangian extrapolation (`_plain`), and the
//! whole default nowcast (every scan step to 60 min), on three consecutive real scans from
//! `../shared/data` (each product: BOM 512 × 512, the OPERA 2200 × 1900
//! composite, RMI, MeteoSwiss, FMI), and
//! on a synthetic 512 × 512 field that needs no data.
//!
//! Per-stage figures of the default forecast (`stage_*`, every scan step to
//! 60 min): `stage_displacements` (the backward trajectories of every lead
//! and of lags 1 and 2), `stage_cascade` (the lag fields advected onto the
//! latest, three spectra, correlations), `stage_lead` (one lead's
//! recomposition and quantile matching, the per-lead loop without the
//! warp) and `stage_warp` (one lead's advection of a rain field); motion is
//! `motion/`. `floor_forward` and `floor_inverse` are one forward and one
//! inverse transform of the cascade's padded half grid alone: the S-PROG layer
//! makes three forward and one inverse per lead, so with the motion and one
//! warp per lead (the plain extrapolation) they are the least this method
//! can cost on these transforms (docs/PERFORMANCE.md, "Issue 16, session
//! 34").
//!
//! Run: `cargo bench -p raincast-algorithms --bench nowcast` (add a filter
//! such as `-- bom` for one). Figures: docs/PERFORMANCE.md. Times are the
//! CPU time of the benchmarking thread (see `common`); everything measured
//! runs on that one thread (rayon's global pool is this thread alone).

mod common;

use common::{data_dir, read_scan, scan_files, Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use raincast_algorithms::extrapolate::warp;
use raincast_algorithms::nowcast::{nowcast, stages, NowcastConfig, NowcastInput, Smoothing};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::synth;
use std::path::Path;
use std::time::Duration;

/// (bench name, folder below shared/data).
const SAMPLES: [(&str, &str); 5] = [
    ("bom_512x512", "bom/02"),
    ("opera_2200x1900", "odim/opera/20180824"),
    ("rmi_700x700", "odim/rmi/20210704"),
    ("mch_710x640", "mch/20160711"),
    ("fmi_1226x760", "fmi/20160928"),
];

/// The first three scans (by file name) of a folder, decoded and prepared.
fn three_scans(dir: &Path) -> Result<Vec<RainField>, String> {
    scan_files(dir)?
        .iter()
        .take(3)
        .map(|p| read_scan(p))
        .collect()
}

/// Three consecutive 512 × 512 synthetic fields (moving rain cells).
fn synthetic() -> Option<Vec<RainField>> {
    let grid = synth::local_grid(4.0, 50.0, 512, 512, 1000.0).ok()?;
    let cfg = synth::SynthConfig::for_shape(512, 512);
    Some(synth::SynthRadar::new(grid, cfg).fields(10, 3))
}

fn bench_case(c: &mut Crit, name: &str, fields: &[RainField]) {
    let cfg = NowcastConfig::default();
    let step_min = ((fields[2].time - fields[1].time).num_seconds() / 60).max(1) as u32;
    let six: Vec<u32> = (1..=6).map(|k| k * step_min).collect();
    let hour: Vec<u32> = (1..=60 / step_min).map(|k| k * step_min).collect();
    if let Err(e) = nowcast(fields, &six, &cfg) {
        eprintln!("skipped: {name}: {e}");
        return;
    }
    c.bench_function(&format!("motion/{name}"), |b| {
        b.iter(|| {
            NowcastInput::new(black_box(fields), &cfg)
                .and_then(|i| i.motion())
                .map(|m| m.shape)
        })
    });
    c.bench_function(&format!("motion_6_steps/{name}"), |b| {
        b.iter(|| nowcast(black_box(fields), &six, &cfg).map(|n| n.rate_mm_h.len()))
    });
    let plain = NowcastConfig {
        smoothing: Smoothing::None,
        ..cfg
    };
    c.bench_function(&format!("motion_6_steps_plain/{name}"), |b| {
        b.iter(|| nowcast(black_box(fields), &six, &plain).map(|n| n.rate_mm_h.len()))
    });
    c.bench_function(&format!("nowcast_60_min/{name}"), |b| {
        b.iter(|| nowcast(black_box(fields), &hour, &cfg).map(|n| n.rate_mm_h.len()))
    });
    bench_stages(c, name, fields, &hour);
}

/// The stages of the default forecast (see the module docs).
fn bench_stages(c: &mut Crit, name: &str, fields: &[RainField], hour: &[u32]) {
    let cfg = NowcastConfig::default();
    let Ok(input) = NowcastInput::new(fields, &cfg) else {
        return;
    };
    let Ok(motion) = input.motion() else {
        return;
    };
    let step_min = input.step_s() as f32 / 60.0;
    let mut steps: Vec<f32> = hour.iter().map(|l| *l as f32 / step_min).collect();
    steps.extend([1.0, 2.0]);
    c.bench_function(&format!("stage_displacements/{name}"), |b| {
        b.iter(|| stages::lead_displacements(black_box(&motion), &steps).map(|d| d.len()))
    });
    let Ok(disp) = stages::lead_displacements(&motion, &steps) else {
        return;
    };
    let lags = &disp[disp.len() - 2..];
    c.bench_function(&format!("stage_cascade/{name}"), |b| {
        b.iter(|| stages::cascade(black_box(&input), lags))
    });
    let cascade = stages::cascade(&input, lags);
    let mut scratch = stages::Scratch::default();
    let last = steps[steps.len() - 3];
    let d = &disp[disp.len() - 3];
    c.bench_function(&format!("stage_lead/{name}"), |b| {
        b.iter(|| cascade.lead(black_box(last), d, &mut scratch))
    });
    let latest = input.latest().rate_mm_h.view();
    c.bench_function(&format!("stage_warp/{name}"), |b| {
        b.iter(|| warp(black_box(&latest), d).map(|a| a.len()))
    });
    // The floor of the S-PROG layer: its Fourier transforms alone (three
    // forward, one inverse per lead), with no other work.
    let mut t = stages::Transforms::new(&latest);
    c.bench_function(&format!("floor_forward/{name}"), |b| {
        b.iter(|| black_box(t.forward()))
    });
    c.bench_function(&format!("floor_inverse/{name}"), |b| {
        b.iter(|| black_box(t.inverse()))
    });
}

fn benches(c: &mut Crit) {
    // The nowcast builds its leads on rayon's pool; a one-thread pool of
    // this very thread keeps all the work here, where the measurement (this
    // thread's CPU time) sees it.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build_global()
    {
        eprintln!("cannot run the leads on this thread ({e}): figures would miss them");
        return;
    }
    let dir = data_dir();
    if !dir.is_dir() {
        eprintln!("skipped: ../shared/data not found ({})", dir.display());
    } else {
        for (name, folder) in SAMPLES {
            match three_scans(&dir.join(folder)) {
                Ok(fields) if fields.len() == 3 => bench_case(c, name, &fields),
                Ok(_) => eprintln!("skipped: {name}: fewer than 3 scans in {folder}"),
                Err(e) => eprintln!("skipped: {name}: {e}"),
            }
        }
    }
    match synthetic() {
        Some(fields) => bench_case(c, "synthetic_512x512", &fields),
        None => eprintln!("skipped: synthetic grid"),
    }
}

criterion_group! {
    name = nowcast_benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime::new())
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(nowcast_benches);
