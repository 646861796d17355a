//! `raincast api`: the HTTP service alone over an existing store (no
//! ingest, no nowcast job). Its radars are the configured ones, else the
//! source's folders (when a source is given), else those registered in the
//! store. Nowcasts are loaded from stored frames, or
//! computed on first use, in memory only.
//!
//! Configuration: the `[api]` section (raincast-config's `ApiConfig`) and
//! `[nowcast]`; the listen address is `--listen`, else `RAINCAST_LISTEN`,
//! else `listen` in the file, else 127.0.0.1:8080.

use crate::cli::{announce_map, process_env, runtime, shutdown_signal, ConfigArgs};
use anyhow::Result;
use clap::Args;
use raincast_api::{AppState, RadarInfo, WebhookPolicy};
use raincast_ingest::{Connector, Overrides};
use raincast_nowcast::NowcastService;

#[derive(Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Serve only this radar.
    #[arg(long, value_name = "ID")]
    pub radar: Option<String>,
    /// Listen address [env: RAINCAST_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub fn run(args: ApiArgs) -> Result<()> {
    let env = process_env();
    let mut cfg = args.cfg.load(
        &env,
        Overrides {
            radar: args.radar.clone(),
            listen: args.listen.clone(),
            ..Overrides::default()
        },
    )?;
    // A reader: it never writes nowcast frames into the store.
    cfg.nowcast.settings.store_frames = false;
    runtime()?.block_on(async move {
        let conn = Connector::new(&cfg, &env);
        let stores = conn.existing_stores().await?;
        // Configured radars, else the source's folders, else the radars
        // ingest registered in the store.
        let radars: Vec<RadarInfo> = if !cfg.radars.is_empty() {
            cfg.radars.iter().map(RadarInfo::from).collect()
        } else if cfg.source_given {
            conn.radar_sources()
                .await?
                .iter()
                .map(|r| RadarInfo::from(&r.radar))
                .collect()
        } else {
            raincast_store::radars::registered(stores.state.as_ref())
                .await?
                .into_iter()
                .map(|r| RadarInfo {
                    id: r.id,
                    name: r.name,
                    location: None,
                })
                .collect()
        };
        let shutdown = shutdown_signal();
        let nowcasts = NowcastService::with_live_skill(
            stores.scans.clone(),
            stores.state.clone(),
            cfg.nowcast.settings.clone(),
        );
        let state = AppState::builder(stores.scans.clone(), nowcasts)
            .config(cfg.api.clone())
            .state_store(stores.state.clone())
            .webhooks(WebhookPolicy {
                allow_private: cfg.notifier.allow_private_webhooks,
                max_per_key: cfg.notifier.max_subscriptions_per_key,
            })
            .radars(radars)
            .build()?;
        let (addr, http) = raincast_api::run(&cfg.listen, state, shutdown).await?;
        announce_map(addr);
        http.await?;
        Ok(())
    })
}
