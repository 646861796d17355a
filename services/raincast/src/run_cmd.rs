//! `raincast run [--config F] [--source …] [--store …] [--radar ID] [--since T]`:
//! every ingest job until Ctrl-C. With no source configured it starts the
//! synthetic demo radar, which writes ODIM_H5 files into ./var/bucket.

use crate::ingest_cmd::{parse_rfc3339, process_env, runtime, spawn_shutdown_signal, ConfigArgs};
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use raincast_ingest::config::{IngestSettings, SourceSpec};
use raincast_ingest::connect::Connector;
use raincast_ingest::demo::{DemoOptions, DemoRadar};
use raincast_ingest::pass::default_owner;
use raincast_ingest::{DecodeProcessor, IngestMetrics, Ingester, Overrides, RadarSource};
use raincast_store::LocalSource;
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
}

pub fn run(args: RunArgs) -> Result<()> {
    let env = process_env();
    let mut cfg = args.cfg.load(
        &env,
        Overrides {
            radar: args.radar.clone(),
            since: args.since,
            ..Overrides::default()
        },
    )?;
    let demo = !cfg.source_given;
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
            let radar = DemoRadar::new(DemoOptions::new(dir.clone()))?;
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
        if let Some(e) = &stores.embedded {
            e.purge_expired(Utc::now()).await?;
        }
        let ingester = Arc::new(Ingester::new(
            stores.scans.clone(),
            stores.state.clone(),
            Arc::new(DecodeProcessor::new(&cfg.ingest)),
            cfg.ingest.clone(),
            default_owner(),
            IngestMetrics::standalone(),
            rx.clone(),
        ));
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
