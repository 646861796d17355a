//! Live-skill scoring benchmarks (issue 17): one lead's scoring as the
//! service does it per lead (`verify::skill_sums_of` with a streamed
//! neighbourhood probability for the nowcast and a yes/no forecast for
//! persistence) and one stored frame's decode, on the field of the
//! live-skill cost test of `raincast-nowcast` (`synth::skill_cost_field`:
//! 512 × 512, four rain cells, no data outside a 250-cell disk). Also the
//! whole-field neighbourhood probability that the nowcast service computes
//! for every lead it builds (`neighbourhood_probability_512`).
//!
//! `cargo bench -p raincast-algorithms --bench skill`

mod common;

use common::{Crit, ThreadCpuTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use raincast_algorithms::nowcast::neighbourhood_probability;
use raincast_algorithms::prep::RainField;
use raincast_algorithms::synth::skill_cost_field;
use raincast_algorithms::verify::{skill_sums_of, Prob, SkillSpec};
use raincast_algorithms::{sparse, Grid};

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
    let mut buffer = Vec::new();
    c.bench_function("decode_frame_512", |b| {
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
    c.bench_function("neighbourhood_probability_512", |b| {
        b.iter(|| neighbourhood_probability(&black_box(&frame).view(), 0.1, 6))
    });
    c.bench_function("score_lead_512", |b| {
        b.iter(|| {
            skill_sums_of(
                &obs.view(),
                &[
                    (black_box(frame.view()), Prob::Neighbourhood(6)),
                    (persistence.view(), Prob::YesNo),
                ],
                &spec,
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
