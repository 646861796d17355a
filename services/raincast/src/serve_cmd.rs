//! The HTTP service and the nowcast job, for `raincast run`, and
//! `raincast api` (the HTTP service alone, reading the store).
//!
//! Configuration: the `[api]` table of the configuration file is
//! raincast-api's `ApiConfig` (CORS origins, request, header-read and idle
//! timeouts, connection cap, CPU workers and queue, body limit, readiness
//! age, caches), with `RAINCAST_CORS_ORIGINS` (comma-separated) overriding
//! `cors_origins`; the `[nowcast]` table is [`NowcastTable`]. The listen
//! address is `--listen`, else `RAINCAST_LISTEN`, else `listen` in the file,
//! else 127.0.0.1:8080.

use crate::ingest_cmd::{process_env, runtime, spawn_shutdown_signal, ConfigArgs};
use anyhow::{Context, Result};
use clap::Args;
use raincast_algorithms::nowcast::Smoothing;
use raincast_api::{ApiConfig, AppState, RadarInfo};
use raincast_ingest::config::Config;
use raincast_ingest::{Overrides, RadarConfig, Stores};
use raincast_nowcast::{NowcastService, NowcastSettings};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The `[nowcast]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NowcastTable {
    /// Longest lead, minutes (default 120).
    pub max_lead_min: Option<u32>,
    /// Interval between leads, minutes (default: the scan interval; 5 for the demo radar).
    pub lead_step_min: Option<u32>,
    /// Input scans per nowcast (default 3).
    pub frames: Option<usize>,
    /// Threshold of the forecast probability, mm/h (default 0.1).
    pub probability_threshold_mm_h: Option<f32>,
    /// Store the frames of every nowcast (default true under `run`).
    pub store_frames: Option<bool>,
    /// How often the nowcast job looks for new scans, seconds (default 15).
    pub refresh_seconds: Option<f64>,
    /// `"sprog"` (default: scale-dependent smoothing, more skill at longer
    /// leads) or `"none"` (plain extrapolation, about 3 times faster).
    pub smoothing: Option<String>,
}

/// Settings of the HTTP service and the nowcast job.
pub struct ServiceSettings {
    pub listen: String,
    pub api: ApiConfig,
    pub nowcast: NowcastSettings,
    pub refresh: std::time::Duration,
}

impl ServiceSettings {
    /// Reads the `[api]` and `[nowcast]` tables and their environment overrides.
    pub fn from_config(cfg: &Config, env: &HashMap<String, String>, demo: bool) -> Result<Self> {
        let mut api: ApiConfig = toml::Value::Table(cfg.api.clone())
            .try_into()
            .context("invalid [api] table")?;
        if let Some(o) = env
            .get("RAINCAST_CORS_ORIGINS")
            .filter(|v| !v.trim().is_empty())
        {
            api.cors_origins = o
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        api.validate()?;
        let t: NowcastTable = toml::Value::Table(cfg.nowcast.clone())
            .try_into()
            .context("invalid [nowcast] table")?;
        let mut nowcast = NowcastSettings::default();
        if let Some(v) = t.max_lead_min {
            anyhow::ensure!(
                (1..=360).contains(&v),
                "nowcast.max_lead_min must be in 1..=360"
            );
            nowcast.max_lead_min = v;
        }
        nowcast.lead_step_min = t.lead_step_min.or(demo.then_some(5));
        if let Some(v) = t.frames {
            anyhow::ensure!((3..=12).contains(&v), "nowcast.frames must be in 3..=12");
            nowcast.config.frames = v;
        }
        match t.smoothing.as_deref() {
            None => {}
            Some("sprog") => nowcast.config.smoothing = Smoothing::Sprog,
            Some("none") => nowcast.config.smoothing = Smoothing::None,
            Some(other) => {
                anyhow::bail!("nowcast.smoothing must be \"sprog\" or \"none\", got {other:?}")
            }
        }
        if let Some(v) = t.probability_threshold_mm_h {
            anyhow::ensure!(
                v.is_finite() && v > 0.0,
                "nowcast.probability_threshold_mm_h must be positive"
            );
            nowcast.probability_threshold_mm_h = v;
        }
        api.forecast_threshold_mm_h = nowcast.probability_threshold_mm_h;
        if let Some(v) = t.store_frames {
            nowcast.store_frames = v;
        }
        nowcast.tile_size = cfg.ingest.tile_size;
        let refresh_s = t.refresh_seconds.unwrap_or(if demo { 5.0 } else { 15.0 });
        anyhow::ensure!(
            refresh_s.is_finite() && refresh_s >= 1.0,
            "nowcast.refresh_seconds must be at least 1"
        );
        Ok(Self {
            listen: cfg.listen.clone(),
            api,
            nowcast,
            refresh: std::time::Duration::from_secs_f64(refresh_s),
        })
    }
}

/// API radar entries for configured radars.
pub fn radar_infos(radars: &[RadarConfig]) -> Vec<RadarInfo> {
    radars
        .iter()
        .map(|r| RadarInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            location: r.location.map(|l| (l.lon, l.lat)),
        })
        .collect()
}

/// Starts the nowcast job (when `nowcast_job`) and the HTTP service; both
/// stop when `shutdown` turns true (the HTTP service drains first).
/// Returns the bound address, the nowcast service and the tasks.
pub async fn start(
    settings: ServiceSettings,
    stores: &Stores,
    radars: Vec<RadarInfo>,
    registry: prometheus::Registry,
    nowcast_job: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, NowcastService, Vec<JoinHandle<()>>)> {
    let nowcasts = NowcastService::new(stores.scans.clone(), settings.nowcast.clone());
    let mut tasks = Vec::new();
    if nowcast_job {
        let ids: Vec<String> = radars.iter().map(|r| r.id.clone()).collect();
        let job = nowcasts
            .clone()
            .run_periodic(ids, settings.refresh, until(shutdown.clone()));
        tasks.push(tokio::spawn(job));
    }
    let state = AppState::builder(stores.scans.clone(), nowcasts.clone())
        .config(settings.api)
        .radars(radars)
        .registry(registry)
        .build()?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!("map and API at http://{addr}/ (OpenAPI: http://{addr}/openapi.json)");
    eprintln!("Raincast map: http://{addr}/");
    tasks.push(tokio::spawn(async move {
        if let Err(e) = raincast_api::serve(listener, state, until(shutdown)).await {
            tracing::error!(error = %e, "HTTP service failed");
        }
    }));
    Ok((addr, nowcasts, tasks))
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
pub async fn until(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

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

/// `raincast api`: the HTTP service alone over an existing store. Nowcasts
/// are loaded from stored frames, or computed on first use, in memory.
pub fn run(args: ApiArgs) -> Result<()> {
    let env = process_env();
    let cfg = args.cfg.load(
        &env,
        Overrides {
            radar: args.radar.clone(),
            listen: args.listen.clone(),
            ..Overrides::default()
        },
    )?;
    let mut settings = ServiceSettings::from_config(&cfg, &env, false)?;
    settings.nowcast.store_frames = false;
    runtime()?.block_on(async move {
        let conn = raincast_ingest::Connector::new(&cfg, &env);
        let stores = conn.stores().await?;
        let radars = if cfg.radars.is_empty() {
            radar_infos(
                &conn
                    .radar_sources()
                    .await?
                    .into_iter()
                    .map(|r| r.radar)
                    .collect::<Vec<_>>(),
            )
        } else {
            radar_infos(&cfg.radars)
        };
        let (tx, rx) = watch::channel(false);
        spawn_shutdown_signal(tx);
        let (_, _, tasks) = start(
            settings,
            &stores,
            radars,
            prometheus::Registry::new(),
            false,
            rx,
        )
        .await?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_overrides() -> Result<()> {
        let env: HashMap<String, String> = HashMap::new();
        let mut cfg = Config::load(None, &env, &Overrides::default())?;
        let s = ServiceSettings::from_config(&cfg, &env, true)?;
        assert_eq!(s.nowcast.lead_step_min, Some(5));
        assert!(s.api.cors_origins.is_empty());
        cfg.api = toml::from_str("cors_origins = [\"*\"]\nready_max_age_s = 60")?;
        cfg.nowcast = toml::from_str("max_lead_min = 60\nlead_step_min = 10")?;
        let env: HashMap<String, String> = [(
            "RAINCAST_CORS_ORIGINS".to_string(),
            "https://a.example, https://b.example".to_string(),
        )]
        .into();
        let s = ServiceSettings::from_config(&cfg, &env, false)?;
        assert_eq!(
            s.api.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(s.api.ready_max_age_s, 60);
        assert_eq!(
            (s.nowcast.max_lead_min, s.nowcast.lead_step_min),
            (60, Some(10))
        );
        cfg.api = toml::from_str("no_such_setting = 1")?;
        assert!(ServiceSettings::from_config(&cfg, &env, false).is_err());
        cfg.api =
            toml::from_str("header_read_timeout_s = 2.5\nmax_connections = 64\ncpu_queue = 8")?;
        let s = ServiceSettings::from_config(&cfg, &env, false)?;
        assert_eq!(
            (
                s.api.header_read_timeout_s,
                s.api.max_connections,
                s.api.cpu_queue
            ),
            (2.5, 64, 8)
        );
        cfg.api = toml::from_str("max_connections = 0")?;
        let Err(err) = ServiceSettings::from_config(&cfg, &env, false) else {
            panic!("max_connections = 0 must be refused");
        };
        assert!(err.to_string().contains("api.max_connections"), "{err}");
        cfg.api = toml::Table::new();
        cfg.nowcast = toml::from_str("max_lead_min = 9999")?;
        assert!(ServiceSettings::from_config(&cfg, &env, false).is_err());
        cfg.nowcast = toml::from_str("smoothing = \"none\"")?;
        let s = ServiceSettings::from_config(&cfg, &env, false)?;
        assert_eq!(s.nowcast.config.smoothing, Smoothing::None);
        cfg.nowcast = toml::from_str("smoothing = \"fancy\"")?;
        let Err(err) = ServiceSettings::from_config(&cfg, &env, false) else {
            panic!("an unknown smoothing must be refused");
        };
        assert!(err.to_string().contains("nowcast.smoothing"), "{err}");
        Ok(())
    }
}
