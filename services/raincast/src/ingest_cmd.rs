//! `raincast ingest [--once] [--config F] [--source …] [--store …] [--queue URL] [--radar ID] [--since T]`.

use crate::cli::{process_env, runtime, shutdown_signal, ConfigArgs, RadarArgs};
use anyhow::Result;
use clap::Args;
use raincast_ingest::{Connector, IngestDeps, IngestMetrics, Overrides};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Run one ingest pass per radar, print a JSON summary and exit (with a
    /// queue: drain the queue first, then one reconciling pass). Without it
    /// the ingest jobs (and the queue consumer) run until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub cfg: ConfigArgs,
    #[command(flatten)]
    pub radars: RadarArgs,
    /// New scans per radar and run at most [env: RAINCAST_BATCH_SIZE].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

pub fn run(args: IngestArgs) -> Result<()> {
    let env = process_env();
    let cfg = args.cfg.load(
        &env,
        Overrides {
            batch_size: args.batch_size,
            ..args.radars.overrides()
        },
    )?;
    runtime()?.block_on(async move {
        let conn = Connector::new(&cfg, &env);
        let deps = IngestDeps {
            stores: conn.stores().await?,
            radars: conn.radar_sources().await?,
            metrics: IngestMetrics::standalone(),
            queue: conn.queue().await?,
        };
        let shutdown = shutdown_signal();
        if !args.once {
            raincast_ingest::run(cfg.ingest.clone(), deps, shutdown).await?;
            return Ok(());
        }
        let radars = deps.radars.len();
        let (settle, ahead) = (cfg.ingest.settle, cfg.ingest.future_tolerance);
        let report = raincast_ingest::run_once(cfg.ingest.clone(), deps, shutdown).await?;
        println!("{}", serde_json::to_string(&report)?);
        if report.deferred > 0 {
            // Otherwise a first `--once` on files just copied into a folder
            // says only `"deferred": N`.
            tracing::info!(
                deferred = report.deferred,
                settle_seconds = settle.num_seconds(),
                future_tolerance_minutes = ahead.num_minutes(),
                "files left for a later run: modified less than settle_seconds ago (they may \
                 still be being written), or timed more than future_tolerance_minutes ahead; \
                 run again to ingest them"
            );
        }
        if let Some(q) = report.queue.as_ref().filter(|q| q.workers_gave_up > 0) {
            anyhow::bail!(
                "the queue was not read to its end: {} receives failed (the warnings above say why)",
                q.receive_failures
            );
        }
        if !report.errors.is_empty() {
            anyhow::bail!("{} of {radars} radars failed", report.errors.len());
        }
        Ok(())
    })
}
