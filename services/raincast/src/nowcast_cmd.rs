//! `raincast nowcast FILE... [--leads 10,20,30,40,50,60] --out DIR [--json]`.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use raincast_algorithms::nowcast::{
    equally_spaced, Leads, NowcastConfig, NowcastInput, Smoothing, MIN_FRAMES,
};
use raincast_algorithms::npy;
use raincast_algorithms::scan::Format;
use serde_json::json;
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::warn;

/// How the advected field is post-processed (see `nowcast` module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmoothingArg {
    /// Plain semi-Lagrangian extrapolation.
    None,
    /// Scale-dependent smoothing (S-PROG-like) with quantile matching.
    Sprog,
}

impl From<SmoothingArg> for Smoothing {
    fn from(s: SmoothingArg) -> Self {
        match s {
            SmoothingArg::None => Smoothing::None,
            SmoothingArg::Sprog => Smoothing::Sprog,
        }
    }
}

#[derive(Args, Debug)]
pub struct NowcastArgs {
    /// Past scans of one radar, in any order (they are sorted by their scan
    /// times; at least 3). The newest and the `--frames` − 1 before it,
    /// equally spaced, are used, as the service picks them: over a missing
    /// scan the interval widens (`inputs` in `--json` lists them).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Lead times in minutes after the latest scan.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=raincast_algorithms::nowcast::MAX_LEAD_MIN as i64)
    )]
    pub leads: Vec<u32>,
    /// Output folder (created if missing): one `lead_MMM.npy` per lead,
    /// float32 mm/h on the grid of the latest scan, C order, row 0 north,
    /// NaN where unknown.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print `{"base_time", "inputs", "leads", "threads", "motion_ms", "extrapolate_ms",
    /// "extrapolate_wall_ms", "total_ms"}`: `extrapolate_ms` is the
    /// cascade's elapsed time plus the work of every lead (summed over the
    /// threads, without file writes; on one thread, all the work),
    /// `extrapolate_wall_ms` the elapsed time from the cascade to the last
    /// lead written (writes included).
    #[arg(long)]
    pub json: bool,
    /// Threads that build the motion's and the cascade's fields (one field
    /// each) and the leads (each thread one lead at a time); 0: rayon's
    /// default (`RAYON_NUM_THREADS`, else every core). The output is the
    /// same, bit for bit, with any number; each thread beyond the first
    /// cuts the wall time and holds one more lead's buffers (about 60 MB on
    /// the 2200 × 1900 OPERA grid). The default, 1, gives the single-thread
    /// figures of docs/PERFORMANCE.md. At most 1024, as `[nowcast] threads`.
    #[arg(long, default_value_t = 1, value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
            .range(0..=raincast_config::nowcast::MAX_THREADS as u64))]
    pub threads: usize,
    /// Force a decoder instead of detecting the format: odim, bom, mch-gif, fmi-pgm.
    #[arg(long, value_name = "F")]
    pub format: Option<Format>,
    /// Latest scans used for motion and smoothing (3 to 12, as `[nowcast] frames`).
    #[arg(
        long,
        default_value_t = MIN_FRAMES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(3..=12)
    )]
    pub frames: usize,
    /// Post-processing of the advected field.
    #[arg(long, value_enum, default_value_t = SmoothingArg::Sprog)]
    pub smoothing: SmoothingArg,
    /// Build (and write) the same nowcast N times in this process and
    /// report the last run's times, as a long-running service builds its
    /// nowcasts (memory and code already warm); `--json` adds `runs` and the
    /// first run's times as `first_run`. The output is the same each time.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
}

pub fn run(args: NowcastArgs) -> Result<()> {
    // Everything (decode, motion, cascade, leads) runs on the pool's
    // threads, not half on the main thread: glibc gives each thread its own
    // arena, and memory the decode frees on one thread is not reused by
    // leads built on another (OPERA, one thread: 149 MB peak this way, 218
    // MB with the leads on a worker).
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("--threads: cannot start the threads")?
        .install(|| nowcast(args))
}

fn nowcast(mut args: NowcastArgs) -> Result<()> {
    let started = Instant::now();
    if let Some(dir) = args.files.iter().find(|p| p.is_dir()) {
        bail!(
            "{}: a folder; nowcast takes scan files, e.g. {}/* (raincast verify takes a folder)",
            dir.display(),
            dir.display()
        );
    }
    // A lead asked twice is written once.
    let mut seen = std::collections::BTreeSet::new();
    args.leads.retain(|l| seen.insert(*l));
    if args.files.len() < MIN_FRAMES {
        bail!(
            "a nowcast needs at least {MIN_FRAMES} consecutive scans, got {}",
            args.files.len()
        );
    }
    // Each scan's time, its field dropped once read (a day of a large
    // composite given as `day/*.hdf` is never held whole); the scans used
    // are decoded again below.
    let mut timed = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let time = crate::files::load_field(path, args.format)?.time;
        timed.push((time, path));
    }
    // By scan time, whatever order the file names came in (stable: two
    // scans of one time stay in the order given, and the nowcast names them).
    timed.sort_by_key(|(t, _)| *t);
    let cfg = NowcastConfig {
        frames: args.frames,
        smoothing: args.smoothing.into(),
        ..Default::default()
    };
    // The scans the service would use: the newest and the ones before it
    // equally spaced, bridging a missing scan (`equally_spaced`); without
    // such, all of them, and the nowcast names what is wrong.
    let times: Vec<_> = timed.iter().map(|(t, _)| *t).collect();
    let need = cfg.frames.max(MIN_FRAMES);
    let picked = equally_spaced(&times, times.len() - 1, need, cfg.step_tolerance)
        .unwrap_or_else(|| (0..times.len()).collect());
    let mut fields = Vec::with_capacity(picked.len());
    for (_, path) in picked.iter().map(|i| timed[*i]) {
        fields.push(crate::files::load_field(path, args.format)?);
    }
    if args.frames > fields.len() {
        warn!(
            frames = args.frames,
            used = fields.len(),
            "fewer equally spaced scans than --frames: the nowcast uses those there are"
        );
    }
    let inputs: Vec<String> = fields
        .iter()
        .rev()
        .take(need)
        .rev()
        .map(|f| f.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    let input = NowcastInput::new(&fields, &cfg).context("cannot nowcast these scans")?;
    let base_time = input.latest().time;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    // `--repeat`: the same nowcast built and written again in this process;
    // the first run's times are kept as the cold ones.
    let mut cold: Option<Run> = None;
    for _ in 1..args.repeat {
        let run = finish(start(&input, &args)?, &args)?;
        cold.get_or_insert(run);
    }
    let started_run = start(&input, &args)?;
    // The inputs are not needed by the leads: one lead's field per thread
    // in memory at a time.
    drop(fields);
    let run = finish(started_run, &args)?;
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let base_time = base_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if args.json {
        let mut doc = json!({
            "base_time": base_time,
            "inputs": inputs,
            "leads": args.leads,
            "threads": rayon::current_num_threads(),
            "motion_ms": round1(run.motion_ms),
            "extrapolate_ms": round1(run.extrapolate_ms),
            "extrapolate_wall_ms": round1(run.extrapolate_wall_ms),
            "total_ms": round1(total_ms),
        });
        if let Some(c) = cold {
            doc["runs"] = json!(args.repeat);
            doc["first_run"] = json!({
                "motion_ms": round1(c.motion_ms),
                "extrapolate_ms": round1(c.extrapolate_ms),
                "extrapolate_wall_ms": round1(c.extrapolate_wall_ms),
            });
        }
        println!("{doc}");
    } else {
        let (u, v) = run.mean_motion;
        println!(
            "nowcast from {base_time}: {} leads written to {} (mean motion u={u:.2} v={v:.2} px/step; motion {:.0} ms, extrapolation {:.0} ms, total {total_ms:.0} ms)",
            args.leads.len(),
            args.out.display(),
            run.motion_ms,
            run.extrapolate_ms,
        );
    }
    Ok(())
}

/// The times of one build of the nowcast.
struct Run {
    motion_ms: f64,
    extrapolate_ms: f64,
    extrapolate_wall_ms: f64,
    /// Mean motion, pixels per step.
    mean_motion: (f32, f32),
}

/// A build under way: the motion done and the cascade built.
struct Started {
    motion_ms: f64,
    mean_motion: (f32, f32),
    t_extra: Instant,
    cascade: std::time::Duration,
    leads: Leads,
}

/// The motion and everything the leads share (the cascade).
fn start(input: &NowcastInput, args: &NowcastArgs) -> Result<Started> {
    let t_motion = Instant::now();
    let motion = input.motion()?;
    let motion_ms = t_motion.elapsed().as_secs_f64() * 1e3;
    let t_extra = Instant::now();
    let leads = input.leads(&motion, &args.leads)?;
    let cascade = t_extra.elapsed();
    Ok(Started {
        motion_ms,
        mean_motion: motion.mean(),
        t_extra,
        cascade,
        leads,
    })
}

/// Each lead built, written (into the existing `--out`) and dropped on one
/// of the threads.
fn finish(s: Started, args: &NowcastArgs) -> Result<Run> {
    // Lead build time summed over the threads, ns, without the writes: on
    // each thread, from the loop's start or the end of its previous write
    // to the lead handed over (a thread builds one lead at a time).
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    let built_ns = AtomicU64::new(0);
    let loop_start = Instant::now();
    s.leads.try_for_each_parallel(|i, field| -> Result<()> {
        let since = LAST
            .with(|l| l.get())
            .filter(|t| *t > loop_start)
            .unwrap_or(loop_start);
        built_ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let path = args.out.join(format!("lead_{:03}.npy", args.leads[i]));
        let written = crate::files::write_atomically(&path, &npy::encode_f32(&field))
            .with_context(|| format!("{}: cannot write", path.display()));
        LAST.with(|l| l.set(Some(Instant::now())));
        written
    })?;
    Ok(Run {
        motion_ms: s.motion_ms,
        extrapolate_ms: (s.cascade.as_secs_f64() + built_ns.into_inner() as f64 * 1e-9) * 1e3,
        extrapolate_wall_ms: s.t_extra.elapsed().as_secs_f64() * 1e3,
        mean_motion: s.mean_motion,
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
