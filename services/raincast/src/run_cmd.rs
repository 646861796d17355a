//! `raincast run [--config F] [--source …] [--store …] [--queue URL] [--radar ID] [--since T] [--listen ADDR]`:
//! every service until Ctrl-C: the ingest jobs, the nowcast job, the HTTP
//! API with the map page, and the notifier. With no source configured it
//! starts the synthetic demo radar, which writes ODIM_H5 files into
//! ./var/bucket, and the notifier watches a few Swiss towns, writing to
//! ./var/outbox unless X credentials are set.

use crate::cli::{
    announce_map, load_secrets, process_env, runtime, shutdown_signal, ConfigArgs, RadarArgs,
};
use anyhow::{Context, Result};
use clap::Args;
use raincast_api::{AppState, RadarInfo, WebhookPolicy};
use raincast_config::secrets::Secrets;
use raincast_config::SourceSpec;
use raincast_ingest::demo::{backfill_inside, demo_places, DemoOptions, DemoRadar};
use raincast_ingest::{
    ConnectError, Connector, IngestDeps, IngestMetrics, Overrides, RadarSource, Stores,
};
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
    let secrets = Secrets::from_env(&env);
    let notifier = NotifierSettings::from_section(
        &cfg.notifier,
        places,
        cfg.nowcast.refresh(),
        secrets.clone(),
    )?;
    // The listen address first: a port in use stops the start before the
    // store is opened or the demo writes its first files (it failed only
    // after them). The socket is closed again; the API binds it below.
    std::net::TcpListener::bind(cfg.listen.as_str())
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    runtime()?.block_on(async move {
        let ssm = load_secrets(&cfg, &secrets).await?;
        let conn = Connector::new(&cfg, &env);
        let stores = conn.stores().await?;
        let shutdown = shutdown_signal();
        let mut tasks = Vec::new();
        if let Some(ssm) = ssm {
            tasks.push(tokio::spawn(raincast_secrets::run(
                cfg.secrets.refresh,
                ssm,
                secrets,
                shutdown.clone(),
            )));
        }
        let mut listen = cfg.listen.clone();
        let radars = if demo {
            let SourceSpec::Local { dir } = &cfg.source else {
                anyhow::bail!("the demo radar needs a local folder as its source");
            };
            let pair = DemoRadar::overlapping_pair(DemoOptions {
                retention: cfg.retention,
                backfill: backfill_inside(cfg.ingest.backfill),
                ..DemoOptions::new(dir.clone())
            })?;
            let source: Arc<dyn raincast_store::ScanSource> =
                Arc::new(LocalSource::new(dir.clone()));
            tracing::info!(bucket = %dir.display(), "no source configured: starting the two overlapping synthetic demo radars");
            let mut sources = Vec::new();
            for radar in pair {
                sources.push(RadarSource {
                    radar: radar.radar_config(),
                    source: source.clone(),
                });
                tasks.push(tokio::spawn(radar.run(shutdown.clone())));
            }
            let key_file = dir.parent().unwrap_or(dir).join("demo-api-key");
            ensure_demo_key(stores.state.as_ref(), &key_file).await?;
            sources
        } else {
            match conn.radar_sources().await {
                Ok(r) => r,
                Err(ConnectError::NoRadars { .. }) => {
                    match wait_for_radars(&cfg, &conn, &stores, shutdown.clone()).await? {
                        (Some(r), addr) => {
                            // The same address (port 0 picked one).
                            listen = addr.to_string();
                            r
                        }
                        // Stopped while waiting.
                        (None, _) => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
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
            .state_store(stores.state.clone())
            .webhooks(WebhookPolicy {
                allow_private: cfg.notifier.allow_private_webhooks,
                max_per_key: cfg.notifier.max_subscriptions_per_key,
            })
            .radars(radars.iter().map(|r| RadarInfo::from(&r.radar)).collect())
            .registry(registry)
            .build()?;
        let (addr, http) = raincast_api::run(&listen, state, shutdown.clone()).await?;
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
                        location: r.radar.location.map(|l| (l.lon, l.lat)),
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
            queue: conn.queue().await?,
        };
        raincast_ingest::run(cfg.ingest.clone(), deps, shutdown).await?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

/// How often a service with no radars yet looks for the first one.
const RADAR_LOOK: std::time::Duration = std::time::Duration::from_secs(15);

/// No radar configured and none in the source yet (a new deployment's
/// empty bucket): rather than exit (and be restarted in a loop by systemd,
/// compose or the load balancer's health check), serve the API with no
/// radars (`/healthz` 200, `/readyz` 503 `no_radars`) and look again every
/// [`RADAR_LOOK`] until the first radar's folder appears. Then that API
/// stops and the caller starts every service with the radars found, on
/// the same address (returned); `None` when shutdown came first.
async fn wait_for_radars(
    cfg: &raincast_config::Config,
    conn: &Connector<'_>,
    stores: &Stores,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(Option<Vec<RadarSource>>, std::net::SocketAddr)> {
    let nowcasts = NowcastService::new(stores.scans.clone(), cfg.nowcast.settings.clone());
    let state = AppState::builder(stores.scans.clone(), nowcasts)
        .config(cfg.api.clone())
        .state_store(stores.state.clone())
        .build()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (addr, http) = raincast_api::run(&cfg.listen, state, stopped).await?;
    announce_map(addr);
    tracing::warn!(source = %cfg.source, template = %cfg.key_template.as_str(),
        every_s = RADAR_LOOK.as_secs(),
        "no radars configured and none in the source yet: serving /healthz, looking again until a radar's first scan arrives");
    let found = loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break None,
            _ = tokio::time::sleep(RADAR_LOOK) => {}
        }
        match conn.radar_sources().await {
            Ok(r) => {
                let ids: Vec<&str> = r.iter().map(|r| r.radar.id.as_str()).collect();
                tracing::info!(radars = ?ids, "radars found: starting every service");
                break Some(r);
            }
            Err(ConnectError::NoRadars { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "looking for radars failed; trying again"),
        }
    };
    let _ = stop.send(true);
    let _ = http.await;
    Ok((found, addr))
}

/// The demo's API key: kept in `file` (next to the demo bucket, readable by
/// its owner only) so that the compatible endpoint and subscriptions can be
/// tried at once; created on the first start, reused while it is valid.
/// The key itself never goes to the log.
async fn ensure_demo_key(
    state: &dyn raincast_store::StateStore,
    file: &std::path::Path,
) -> Result<()> {
    use raincast_store::keys;
    if let Ok(key) = std::fs::read_to_string(file) {
        if keys::lookup(state, key.trim())
            .await?
            .is_some_and(|k| k.is_active())
        {
            eprintln!("Demo API key: in {}", file.display());
            return Ok(());
        }
    }
    let (key, rec) = keys::create(state, "demo", chrono::Utc::now()).await?;
    // Its folder may not exist yet: the demo radars create it as they write
    // their first scans, at the same time (with `--store` elsewhere nothing
    // else does).
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    }
    crate::files::write_private(file, format!("{key}\n").as_bytes())
        .with_context(|| format!("{}: cannot write the demo API key", file.display()))?;
    tracing::info!(key_id = %rec.id, file = %file.display(), "created the demo API key");
    eprintln!("Demo API key: in {}", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ensure_demo_key;

    /// The key's folder need not exist: with `--store` elsewhere nothing
    /// but the demo radars (at the same moment) creates it, and the demo
    /// stopped on "No such file or directory (os error 2)" when it lost
    /// that race.
    #[tokio::test]
    async fn the_demo_key_is_written_into_a_folder_not_made_yet() -> anyhow::Result<()> {
        let dir = raincast_testkit::TempDir::new("demo-key");
        let store = raincast_store::EmbeddedStore::open(
            dir.path().join("store/raincast.redb"),
            chrono::Duration::days(1),
        )
        .await?;
        let file = dir.path().join("var/demo-api-key");
        ensure_demo_key(&store, &file).await?;
        let key = std::fs::read_to_string(&file)?;
        assert!(raincast_store::keys::lookup(&store, key.trim())
            .await?
            .is_some_and(|k| k.is_active()));
        // Kept at the next start.
        ensure_demo_key(&store, &file).await?;
        assert_eq!(std::fs::read_to_string(&file)?, key);
        Ok(())
    }
}
