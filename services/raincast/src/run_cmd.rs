//! `raincast run [--config F] [--source …] [--store …] [--radar ID] [--since T] [--listen ADDR]`:
//! every job plus the HTTP service, until Ctrl-C or SIGTERM.
//!
//! With no source configured anywhere (no `--config`, `--source` or
//! `RAINCAST_SOURCE`), it runs the embedded default: a local folder
//! (`./var/bucket`) as the bucket, the embedded store (`./var/store`) as the
//! table, and the synthetic demo radar writing real ODIM_H5 files into the
//! bucket.

use crate::demo::{DemoRadar, DemoSettings, DEMO_RADAR};
use crate::ingest_cmd::{parse_rfc3339, process_env, runtime, spawn_shutdown_signal, ConfigArgs};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use raincast_ingest::config::SourceSpec;
use raincast_ingest::connect::Connector;
use raincast_ingest::pass::default_owner;
use raincast_ingest::{DecodeProcessor, IngestMetrics, Ingester, Overrides};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Only this radar.
    #[arg(long, value_name = "ID")]
    pub radar: Option<String>,
    /// Where a radar without a checkpoint starts (RFC 3339). Default: now
    /// minus the backfill (2 h).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub since: Option<DateTime<Utc>>,
    /// HTTP listen address [env: RAINCAST_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Demo radar: seconds between synthetic scans [env: RAINCAST_DEMO_STEP_S].
    #[arg(
        long,
        value_name = "S",
        default_value_t = 30,
        env = "RAINCAST_DEMO_STEP_S"
    )]
    pub demo_step_s: i64,
}

pub fn run(args: RunArgs) -> Result<()> {
    let env = process_env();
    let demo = args.cfg.config.is_none()
        && args.cfg.source.is_none()
        && env
            .get("RAINCAST_SOURCE")
            .is_none_or(|s| s.trim().is_empty());
    let mut cfg = args.cfg.load(
        &env,
        Overrides {
            radar: args.radar.clone().or(demo.then(|| DEMO_RADAR.to_string())),
            since: args.since,
            listen: args.listen.clone(),
            ..Overrides::default()
        },
    )?;
    if demo && env.get("RAINCAST_SCHEDULE").is_none() {
        // The demo radar writes a scan every few seconds: ingest every 10 s.
        cfg.ingest.schedule = "*/10 * * * * *".to_string();
    }
    runtime()?.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        spawn_shutdown_signal(tx);
        let mut tasks = tokio::task::JoinSet::new();

        if demo {
            let SourceSpec::Local { dir } = &cfg.source else {
                anyhow::bail!("the demo radar needs a local folder as its source");
            };
            let radar = DemoRadar::new(DemoSettings {
                bucket: dir.clone(),
                step_s: args.demo_step_s.max(5),
                backfill: cfg.ingest.backfill,
            })?;
            let written = radar.backfill(Utc::now())?;
            tracing::info!(
                bucket = %dir.display(),
                written,
                step_s = args.demo_step_s,
                "demo radar: synthetic rain cells written as ODIM_H5 scans (two-hour backfill)"
            );
            tasks.spawn(radar.run(rx.clone()));
        }

        let conn = Connector::new(&cfg, &env);
        let stores = conn.stores().await.context("opening the store")?;
        let radars = conn.radar_sources().await.context("opening the source")?;
        let ingester = Arc::new(Ingester::new(
            stores.scans.clone(),
            stores.state.clone(),
            Arc::new(DecodeProcessor::new(&cfg.ingest)),
            cfg.ingest.clone(),
            default_owner(),
            IngestMetrics::standalone(),
            rx.clone(),
        ));
        tracing::info!(store = %stores.description, radars = radars.len(), owner = ingester.owner(),
            schedule = %cfg.ingest.schedule, "raincast run: starting jobs");
        let schedule = cfg.ingest.schedule.clone();
        let rx_jobs = rx.clone();
        tasks.spawn(async move {
            if let Err(e) =
                raincast_ingest::run_scheduled(ingester, radars, &schedule, rx_jobs).await
            {
                tracing::error!(error = %e, "ingest jobs stopped");
            }
        });

        while tasks.join_next().await.is_some() {}
        Ok(())
    })
}
