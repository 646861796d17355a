//! `raincast run [--config F] [--source …] [--store …] [--radar ID] [--since T] [--listen ADDR]`:
//! every service until Ctrl-C: the ingest jobs, the nowcast job, the HTTP
//! API with the map page, and the notifier. With no source configured it
//! starts the synthetic demo radar, which writes ODIM_H5 files into
//! ./var/bucket, and the notifier watches a few Swiss towns, writing to
//! ./var/outbox unless X credentials are set.

use crate::cli::{announce_map, process_env, runtime, shutdown_signal, ConfigArgs, RadarArgs};
use anyhow::Result;
use clap::Args;
use raincast_api::{AppState, RadarInfo};
use raincast_config::SourceSpec;
use raincast_ingest::demo::{demo_places, DemoOptions, DemoRadar};
use raincast_ingest::{Connector, IngestDeps, IngestMetrics, Overrides, RadarSource};
use raincast_notifier::service::{NotifierDeps, NotifierSettings, RadarRef};
use raincast_nowcast::NowcastService;
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
    if demo {
        cfg.apply_demo_defaults();
    }
    let places = if demo && cfg.notifier.places.is_empty() {
        demo_places()
    } else {
        cfg.notifier.places.clone()
    };
    let notifier = NotifierSettings::from_section(&cfg.notifier, places, cfg.nowcast.refresh())?;
    runtime()?.block_on(async move {
        let conn = Connector::new(&cfg, &env);
        let stores = conn.stores().await?;
        let shutdown = shutdown_signal();
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
            tasks.push(tokio::spawn(radar.run(shutdown.clone())));
            vec![rs]
        } else {
            conn.radar_sources().await?
        };
        let ids: Vec<String> = radars.iter().map(|r| r.radar.id.clone()).collect();
        // One registry for every service: /metrics shows them all.
        let registry = prometheus::Registry::new();
        let metrics = IngestMetrics::new(&registry)?;

        let nowcasts = NowcastService::with_live_skill(
            stores.scans.clone(),
            stores.state.clone(),
            cfg.nowcast.settings.clone(),
        );
        tasks.push(tokio::spawn(raincast_nowcast::run(
            cfg.nowcast.clone(),
            nowcasts.clone(),
            ids.clone(),
            shutdown.clone(),
        )));

        let state = AppState::builder(stores.scans.clone(), nowcasts.clone())
            .config(cfg.api.clone())
            .radars(radars.iter().map(|r| RadarInfo::from(&r.radar)).collect())
            .registry(registry)
            .build()?;
        let (addr, http) = raincast_api::run(&cfg.listen, state, shutdown.clone()).await?;
        announce_map(addr);
        tasks.push(http);

        if let Some(settings) = notifier {
            let deps = NotifierDeps {
                state: stores.state.clone(),
                nowcasts: nowcasts.clone(),
                radars: radars
                    .iter()
                    .map(|r| RadarRef {
                        id: r.radar.id.clone(),
                        name: r.radar.name.clone(),
                    })
                    .collect(),
            };
            tasks.push(tokio::spawn(raincast_notifier::service::run(
                settings,
                deps,
                shutdown.clone(),
            )));
        }

        tracing::info!(source = %cfg.source, store = %stores.description, radars = ?ids,
            "raincast running; Ctrl-C to stop");
        let deps = IngestDeps {
            stores,
            radars,
            metrics,
        };
        raincast_ingest::run(cfg.ingest.clone(), deps, shutdown).await?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}
