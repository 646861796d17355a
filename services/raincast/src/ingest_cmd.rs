//! `raincast ingest [--once] [--config F] [--source …] [--store …] [--radar ID] [--since T]`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use raincast_ingest::connect::Connector;
use raincast_ingest::pass::default_owner;
use raincast_ingest::{
    Config, DecodeProcessor, IngestMetrics, Ingester, Overrides, PassSummary, Stores,
};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Flags shared by the commands that read configuration.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (see docs/ARCHITECTURE.md). Without one the
    /// embedded default applies: ./var/bucket as the source, ./var/store as
    /// the store.
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// Raw scans: s3://BUCKET[/PREFIX] or a folder, with keys
    /// {radar}/{yyyy}/{mm}/{dd}/{file} below it [env: RAINCAST_SOURCE].
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]|DIR")]
    pub source: Option<String>,
    /// Sparse scans and state: dynamodb[://TABLE_PREFIX] or a folder for the
    /// embedded store [env: RAINCAST_STORE].
    #[arg(long, value_name = "dynamodb[://PREFIX]|DIR")]
    pub store: Option<String>,
    /// Create missing DynamoDB tables [env: RAINCAST_CREATE_TABLES].
    #[arg(long)]
    pub create_tables: bool,
}

impl ConfigArgs {
    /// Loads and validates the configuration: file, then `RAINCAST_*`
    /// variables, then these flags.
    pub fn load(&self, env: &HashMap<String, String>, extra: Overrides) -> Result<Config> {
        let overrides = Overrides {
            source: self.source.clone(),
            store: self.store.clone(),
            create_tables: self.create_tables.then_some(true),
            ..extra
        };
        Ok(Config::load(self.config.as_deref(), env, &overrides)?)
    }
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Run one ingest pass per radar, print a JSON summary and exit. Without
    /// it the ingest jobs run on their schedule until Ctrl-C.
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

/// Which radars, from when: shared by `ingest` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RadarArgs {
    /// Only this radar (added ad hoc, format detected, when not configured).
    #[arg(long, value_name = "ID")]
    pub radar: Option<String>,
    /// Where a radar without a checkpoint starts (RFC 3339, e.g.
    /// 2018-06-16T00:00:00Z). Default: now minus the backfill (2 h).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub since: Option<DateTime<Utc>>,
}

impl RadarArgs {
    /// As configuration overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            radar: self.radar.clone(),
            since: self.since,
            ..Overrides::default()
        }
    }
}

/// How often the embedded store drops expired scans.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The ingester for a configuration and its stores, stopping when
/// `shutdown` turns true, recording into `metrics` (whose registry `raincast
/// run` shares with the HTTP service's `/metrics`). An embedded store is
/// purged of expired scans now and every hour until shutdown.
pub async fn ingester(
    cfg: &Config,
    stores: &Stores,
    metrics: IngestMetrics,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<Ingester>> {
    if let Some(e) = &stores.embedded {
        let purged = e.purge_expired(Utc::now()).await?;
        if purged > 0 {
            tracing::info!(purged, "deleted scans past their retention");
        }
        e.spawn_purger(PURGE_EVERY, shutdown.clone());
    }
    Ok(Arc::new(Ingester::new(
        stores.scans.clone(),
        stores.state.clone(),
        Arc::new(DecodeProcessor::new(&cfg.ingest)),
        cfg.ingest.clone(),
        default_owner(),
        metrics,
        shutdown,
    )))
}

/// Parses an RFC 3339 time into UTC.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2018-06-16T10:00:00Z): {e}"))
}

/// The process environment as a map (read once, passed down).
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Turns `tx` true on Ctrl-C or SIGTERM.
pub fn spawn_shutdown_signal(tx: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        tx.send_replace(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested");
        tx.send_replace(true);
    });
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
        let stores = conn.stores().await?;
        let radars = conn.radar_sources().await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        spawn_shutdown_signal(tx);
        let ingester = ingester(&cfg, &stores, IngestMetrics::standalone(), rx.clone()).await?;
        tracing::info!(store = %stores.description, radars = radars.len(), owner = ingester.owner(), "ingest starting");
        if !args.once {
            raincast_ingest::run_scheduled(ingester, radars, &cfg.ingest.schedule, rx).await?;
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut summaries: Vec<PassSummary> = Vec::new();
        let mut errors = Vec::new();
        for rs in &radars {
            match ingester.run_once(rs).await {
                Ok(s) => summaries.push(s),
                Err(e) => {
                    tracing::error!(radar = %rs.radar.id, error = %e, "ingest run failed");
                    errors.push(json!({"radar": rs.radar.id, "error": e.to_string()}));
                }
            }
        }
        let total = |f: fn(&PassSummary) -> usize| summaries.iter().map(f).sum::<usize>();
        let summary = json!({
            "listed": total(|s| s.listed),
            "ingested": total(|s| s.ingested),
            "skipped": total(|s| s.skipped),
            "quarantined": total(|s| s.quarantined),
            "remaining": total(|s| s.remaining),
            "deferred": total(|s| s.deferred),
            "leases_held": summaries.iter().filter(|s| s.lease_held_by.is_some()).count(),
            "duration": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "radars": summaries,
            "errors": errors,
        });
        println!("{summary}");
        if !errors.is_empty() {
            anyhow::bail!("{} of {} radars failed", errors.len(), radars.len());
        }
        Ok(())
    })
}
