//! `raincast run [--config F] [--source …] [--store …] [--radar ID] [--since T] [--listen ADDR]`:
//! every ingest job, the nowcast job and the HTTP service (map page and API)
//! until Ctrl-C. With no source configured it starts the synthetic demo
//! radar, which writes ODIM_H5 files into ./var/bucket. The notifier runs
//! after every new nowcast when places are configured (`[notifier]`), and
//! for the demo over a few Swiss towns, writing to ./var/outbox unless X
//! credentials are set.

use crate::ingest_cmd::{
    ingester, process_env, runtime, spawn_shutdown_signal, ConfigArgs, RadarArgs,
};
use crate::notify_cmd;
use crate::serve_cmd::{self, ServiceSettings};
use anyhow::Result;
use clap::Args;
use raincast_ingest::config::{IngestSettings, SourceSpec};
use raincast_ingest::connect::Connector;
use raincast_ingest::demo::{DemoOptions, DemoRadar};
use raincast_ingest::{IngestMetrics, Overrides, RadarSource};
use raincast_store::LocalSource;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    #[command(flatten)]
    pub radars: RadarArgs,
    /// HTTP listen address [env: RAINCAST_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let env = process_env();
    let overrides = Overrides {
        listen: args.listen.clone(),
        ..args.radars.overrides()
    };
    let mut cfg = args.cfg.load(&env, overrides)?;
    let demo = !cfg.source_given;
    let settings = ServiceSettings::from_config(&cfg, &env, demo)?;
    if demo {
        // Demo scans come every few seconds: ingest them as often, in
        // batches big enough for the two-hour backfill, unless configured.
        let d = IngestSettings::default();
        if cfg.ingest.schedule == d.schedule {
            cfg.ingest.schedule = "*/5 * * * * *".into();
        }
        if cfg.ingest.batch_size == d.batch_size {
            cfg.ingest.batch_size = 1000;
        }
    }
    runtime()?.block_on(async move {
        let conn = Connector::new(&cfg, &env);
        let stores = conn.stores().await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        spawn_shutdown_signal(tx);
        let mut tasks = Vec::new();
        let radars = if demo {
            let SourceSpec::Local { dir } = &cfg.source else {
                anyhow::bail!("the demo radar needs a local folder as its source");
            };
            let radar = DemoRadar::new(DemoOptions {
                retention: cfg.retention,
                ..DemoOptions::new(dir.clone())
            })?;
            let rs = RadarSource {
                radar: radar.radar_config(),
                source: Arc::new(LocalSource::new(dir.clone())),
            };
            tracing::info!(bucket = %dir.display(), "no source configured: starting the synthetic demo radar");
            tasks.push(tokio::spawn(radar.run(rx.clone())));
            vec![rs]
        } else {
            conn.radar_sources().await?
        };
        // One registry for every job: /metrics shows them all.
        let registry = prometheus::Registry::new();
        let metrics = IngestMetrics::new(&registry)?;
        let ingester = ingester(&cfg, &stores, metrics, rx.clone()).await?;
        let infos = serve_cmd::radar_infos(&radars.iter().map(|r| r.radar.clone()).collect::<Vec<_>>());
        let refresh = settings.refresh;
        let (_, nowcasts, http) =
            serve_cmd::start(settings, &stores, infos, registry, true, rx.clone()).await?;
        tasks.extend(http);
        let radar_cfgs: Vec<_> = radars.iter().map(|r| r.radar.clone()).collect();
        if let Some(plan) = notify_cmd::run_plan(&cfg, &env, &radar_cfgs, demo)? {
            tasks.push(tokio::spawn(notify_cmd::run_job(
                env.clone(),
                stores.clone(),
                plan,
                nowcasts,
                refresh,
                rx.clone(),
            )));
        }
        let ids: Vec<&str> = radars.iter().map(|r| r.radar.id.as_str()).collect();
        tracing::info!(source = %cfg.source, store = %stores.description, radars = ?ids,
            "raincast running; Ctrl-C to stop");
        raincast_ingest::run_scheduled(ingester, radars, &cfg.ingest.schedule, rx).await?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}
