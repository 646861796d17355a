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

use common::{Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use raincast_algorithms::nowcast::{neighbourhood_probability, nowcast, NowcastConfig};
use raincast_algorithms::prep::{self, RainField};
use raincast_algorithms::synth::skill_cost_field;
use raincast_algorithms::verify::{skill_sums_of, Prob, SkillSpec};
use raincast_algorithms::{decode, sparse, Grid};
use std::path::PathBuf;

fn bench(c: &mut Crit) {
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
    // The observation at step 12, the 5-min lead issued at step 11, and
    // persistence of step 6 (a 30-min lead).
    let (obs, frame, persistence) = (
        skill_cost_field(12),
        skill_cost_field(11),
        skill_cost_field(6),
    );
    let enc = sparse::encode(
        &RainField {
            grid,
            time: chrono::DateTime::from_timestamp(0, 0).expect("time"),
            rate_mm_h: frame.clone(),
        },
        &Default::default(),
    )
    .expect("encode");
    let spec = SkillSpec {
        fss_threshold: 1.0,
        fss_window: 10,
        wet_mm_h: 0.1,
        prob_threshold: 0.1,
    };
    bench_lead(c, "512", &enc, &frame, 6, &obs, &persistence, &spec);
    match bom_case() {
        Ok((enc, frame, radius, window, obs, persistence)) => {
            let spec = SkillSpec {
                fss_window: window,
                ..spec
            };
            bench_lead(
                c,
                "bom_30min",
                &enc,
                &frame,
                radius,
                &obs,
                &persistence,
                &spec,
            )
        }
        Err(e) => eprintln!("skipped: bom_30min: {e}"),
    }
}

/// BOM radar 02's 30-minute case (see the module docs): the stored frame,
/// its decoded rate, the service's radius and FSS window (10 km) in cells,
/// the observation, persistence.
#[allow(clippy::type_complexity)]
fn bom_case() -> Result<
    (
        sparse::EncodedScan,
        ndarray::Array2<f32>,
        usize,
        usize,
        ndarray::Array2<f32>,
        ndarray::Array2<f32>,
    ),
    String,
> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bom/02");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let field = |k: usize| -> Result<RainField, String> {
        let path = files
            .get(k)
            .ok_or(format!("no scan {k} in {}", dir.display()))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str());
        let scan =
            decode::decode(&bytes, name, None).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(prep::prep(&scan, &Default::default()))
    };
    let inputs = [field(13)?, field(14)?, field(15)?];
    let cfg = NowcastConfig::default();
    let nc = nowcast(&inputs, &[30], &cfg).map_err(|e| e.to_string())?;
    let stored = RainField {
        grid: nc.grid.clone(),
        time: nc.base_time + chrono::Duration::minutes(30),
        rate_mm_h: nc.rate_mm_h[0].clone(),
    };
    let enc = sparse::encode(&stored, &Default::default()).map_err(|e| e.to_string())?;
    // The scorer sees the stored (quantised) rate.
    let frame = sparse::decode_reusing(&enc.header, &enc.tiles, Vec::new())
        .map_err(|e| e.to_string())?
        .rate_mm_h;
    let radius = cfg.prob_radius_cells(&nc.grid, 30);
    let window = ((10_000.0 / nc.grid.cell_m()).round() as usize).max(1);
    let [_, _, latest] = inputs;
    let verifying = field(20)?;
    if verifying.time != stored.time {
        return Err(format!(
            "scan 20 is at {}, not 30 min after scan 15 ({})",
            verifying.time, latest.time
        ));
    }
    Ok((
        enc,
        frame,
        radius,
        window,
        verifying.rate_mm_h,
        latest.rate_mm_h,
    ))
}

/// One lead's decode, neighbourhood probability and scoring (`name`).
#[allow(clippy::too_many_arguments)]
fn bench_lead(
    c: &mut Crit,
    name: &str,
    enc: &sparse::EncodedScan,
    frame: &ndarray::Array2<f32>,
    radius: usize,
    obs: &ndarray::Array2<f32>,
    persistence: &ndarray::Array2<f32>,
    spec: &SkillSpec,
) {
    // The first case keeps the benches' earlier names.
    let id = |what: &str| match name {
        "512" => format!("{what}_512"),
        _ => format!("{what}/{name}"),
    };
    let mut buffer = Vec::new();
    c.bench_function(&id("decode_frame"), |b| {
        b.iter(|| {
            let f = sparse::decode_reusing(
                &enc.header,
                black_box(&enc.tiles),
                std::mem::take(&mut buffer),
            )
            .expect("decodes");
            buffer = f.rate_mm_h.into_raw_vec_and_offset().0;
        })
    });
    c.bench_function(&id("neighbourhood_probability"), |b| {
        b.iter(|| neighbourhood_probability(&black_box(frame).view(), 0.1, radius))
    });
    c.bench_function(&id("score_lead"), |b| {
        b.iter(|| {
            skill_sums_of(
                &obs.view(),
                &[
                    (black_box(frame.view()), Prob::Neighbourhood(radius)),
                    (persistence.view(), Prob::YesNo),
                ],
                spec,
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
