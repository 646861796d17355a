//! Live-skill scoring benchmarks (issue 17): one lead's scoring as the
//! service does it per lead (`verify::skill_sums_of` with a streamed
//! neighbourhood probability for the nowcast and a yes/no forecast for
//! persistence) and one stored frame's decode, on the field of the
//! live-skill cost test of `raincast-nowcast` (`synth::skill_cost_field`:
//! 512 × 512, four rain cells, no data outside a 250-cell disk). Also the
//! whole-field neighbourhood probability that the nowcast service computes
//! for every lead it builds (`neighbourhood_probability_512`).
//!
//! The same three measures on a real day (`*/bom_30min`, when
//! `../shared/data` is there): the 30-minute lead of the default nowcast
//! from BOM radar 02's scans 13–15 (512 × 512, every 6 min), stored as the
//! service stores it (sparse, quantised), scored against scan 20 with
//! persistence from scan 15 and the service's radius at 30 min. The
//! synthetic field has four rain cells; this one has a real day's rain
//! area, where most of the scorer's 8-cell groups hold rain.
//!
//! `cargo bench -p raincast-algorithms --bench skill`

mod common;

use common::{data_dir, read_scan, scan_files, Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use raincast_algorithms::nowcast::{neighbourhood_probability, nowcast, NowcastConfig};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::synth::skill_cost_field;
use raincast_algorithms::verify::{skill_sums_of, Prob, SkillSpec};
use raincast_algorithms::{sparse, Grid};

/// One lead to score: the stored frame, its decoded (quantised) rate, the
/// neighbourhood radius (cells), the observation, persistence, and the
/// scores' settings.
struct Lead {
    stored: sparse::EncodedScan,
    frame: Array2<f32>,
    radius: usize,
    obs: Array2<f32>,
    persistence: Array2<f32>,
    spec: SkillSpec,
}

fn bench(c: &mut Crit) {
    bench_lead(c, |what| format!("{what}_512"), &synthetic_case());
    match bom_case() {
        Ok(lead) => bench_lead(c, |what| format!("{what}/bom_30min"), &lead),
        Err(e) => eprintln!("skipped: bom_30min: {e}"),
    }
}

/// The synthetic case: the observation at step 12, the 5-min lead issued
/// at step 11, and persistence of step 6 (a 30-min lead), on a 1-km grid.
fn synthetic_case() -> Lead {
    const N: usize = 512;
    let grid = Grid::new(
        "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
        N,
        N,
        1000.0,
        1000.0,
        -256_000.0,
        256_000.0,
    )
    .expect("grid");
    let frame = skill_cost_field(11);
    let stored = sparse::encode(
        &RainField {
            grid,
            time: chrono::DateTime::from_timestamp(0, 0).expect("time"),
            rate_mm_h: frame.clone(),
        },
        &Default::default(),
    )
    .expect("encode");
    Lead {
        stored,
        frame,
        radius: 6,
        obs: skill_cost_field(12),
        persistence: skill_cost_field(6),
        spec: SkillSpec {
            fss_threshold: 1.0,
            fss_window: 10,
            wet_mm_h: 0.1,
            prob_threshold: 0.1,
        },
    }
}

/// BOM radar 02's 30-minute case (see the module docs), with the service's
/// radius and FSS window (10 km) in cells.
fn bom_case() -> Result<Lead, String> {
    let files = scan_files(&data_dir().join("bom/02"))?;
    let field = |k: usize| match files.get(k) {
        Some(path) => read_scan(path),
        None => Err(format!("no scan {k} in bom/02")),
    };
    let inputs = [field(13)?, field(14)?, field(15)?];
    let cfg = NowcastConfig::default();
    let nc = nowcast(&inputs, &[30], &cfg).map_err(|e| e.to_string())?;
    let valid = nc.base_time + chrono::Duration::minutes(30);
    let verifying = field(20)?;
    if verifying.time != valid {
        return Err(format!("scan 20 is at {}, not {valid}", verifying.time));
    }
    let stored = sparse::encode(
        &RainField {
            grid: nc.grid.clone(),
            time: valid,
            rate_mm_h: nc.rate_mm_h[0].clone(),
        },
        &Default::default(),
    )
    .map_err(|e| e.to_string())?;
    // The scorer sees the stored (quantised) rate.
    let frame = sparse::decode_reusing(&stored.header, &stored.tiles, Vec::new())
        .map_err(|e| e.to_string())?
        .rate_mm_h;
    let [_, _, latest] = inputs;
    Ok(Lead {
        stored,
        frame,
        radius: cfg.prob_radius_cells(&nc.grid, 30),
        obs: verifying.rate_mm_h,
        persistence: latest.rate_mm_h,
        spec: SkillSpec {
            fss_threshold: 1.0,
            fss_window: ((10_000.0 / nc.grid.cell_m()).round() as usize).max(1),
            wet_mm_h: 0.1,
            prob_threshold: 0.1,
        },
    })
}

/// One lead's decode, neighbourhood probability and scoring, named by `id`.
fn bench_lead(c: &mut Crit, id: impl Fn(&str) -> String, lead: &Lead) {
    let mut buffer = Vec::new();
    c.bench_function(&id("decode_frame"), |b| {
        b.iter(|| {
            let f = sparse::decode_reusing(
                &lead.stored.header,
                black_box(&lead.stored.tiles),
                std::mem::take(&mut buffer),
            )
            .expect("decodes");
            buffer = f.rate_mm_h.into_raw_vec_and_offset().0;
        })
    });
    c.bench_function(&id("neighbourhood_probability"), |b| {
        b.iter(|| neighbourhood_probability(&black_box(&lead.frame).view(), 0.1, lead.radius))
    });
    c.bench_function(&id("score_lead"), |b| {
        b.iter(|| {
            skill_sums_of(
                &lead.obs.view(),
                &[
                    (
                        black_box(lead.frame.view()),
                        Prob::Neighbourhood(lead.radius),
                    ),
                    (lead.persistence.view(), Prob::YesNo),
                ],
                &lead.spec,
            )
            .expect("scores")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime::new())
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
