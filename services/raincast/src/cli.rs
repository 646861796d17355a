//! What every command shares: the configuration flags, the runtime, the
//! process environment and the shutdown signal. No command logic.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use raincast_config::secrets::Secrets;
use raincast_config::{Config, Overrides};
use std::collections::HashMap;
use std::path::PathBuf;

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
        let cfg = Config::load(self.config.as_deref(), env, &overrides)?;
        for var in raincast_config::unknown_env_vars(env) {
            tracing::warn!(%var, "environment variable not read by any setting (a typo?); see docs/OPERATIONS.md for the names");
        }
        Ok(cfg)
    }
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
    /// SQS queue of S3 event notifications to ingest from; the listing then
    /// reconciles on [queue] reconcile_schedule [env: RAINCAST_QUEUE_URL].
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
}

impl RadarArgs {
    /// As configuration overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            radar: self.radar.clone(),
            since: self.since,
            queue: self.queue.clone(),
            ..Overrides::default()
        }
    }
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

/// The process's secrets: the environment's, and when `[secrets]
/// ssm_prefix` is set the SSM parameters below it, read now (a failure
/// stops the start). The posting credentials (X or Mastodon) are then
/// checked to be complete.
/// Returns the SSM reader for `raincast_secrets::run` (refreshes).
pub async fn load_secrets(
    cfg: &Config,
    secrets: &Secrets,
) -> Result<Option<raincast_secrets::SsmSecrets>> {
    let ssm = match &cfg.secrets.ssm_prefix {
        Some(_) => {
            let sdk =
                raincast_store::aws::sdk_config_from_env(&cfg.aws.default_region, false).await;
            raincast_secrets::load(&cfg.secrets, &sdk, secrets).await?
        }
        None => None,
    };
    let mastodon = cfg.notifier.mastodon.as_ref().map(|m| m.base_url.as_str());
    raincast_config::notifier::posting_account(mastodon, secrets)?;
    Ok(ssm)
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Seconds a graceful shutdown may take before the process exits anyway
/// (`RAINCAST_SHUTDOWN_GRACE_S`): below systemd's `TimeoutStopSec=30s` of
/// the packaged unit, so that the exit is the service's own, logged, and
/// not a SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 25;

/// The shutdown grace from `RAINCAST_SHUTDOWN_GRACE_S` (whole seconds, at
/// least 1), else [`DEFAULT_SHUTDOWN_GRACE_S`].
fn shutdown_grace() -> std::time::Duration {
    let s = match std::env::var("RAINCAST_SHUTDOWN_GRACE_S") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                tracing::warn!(value = %v, default = DEFAULT_SHUTDOWN_GRACE_S,
                    "RAINCAST_SHUTDOWN_GRACE_S is not a whole number of seconds >= 1; using the default");
                DEFAULT_SHUTDOWN_GRACE_S
            }
        },
        Err(_) => DEFAULT_SHUTDOWN_GRACE_S,
    };
    std::time::Duration::from_secs(s)
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A shutdown flag that turns true on Ctrl-C or SIGTERM. The services then
/// stop between steps and drain; a request to a store or queue that hangs
/// (a server that accepts connections and never answers: the SDK waits up
/// to 3 attempts of 30 s) could hold that for minutes, so the process exits
/// with status 1 once the grace ([`DEFAULT_SHUTDOWN_GRACE_S`],
/// `RAINCAST_SHUTDOWN_GRACE_S`) has passed, or at a second signal, saying
/// so in the log. Work cut short that way is what a crash leaves, which the
/// services are built to survive (leases run out, messages come back).
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let grace = shutdown_grace();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!(grace_s = grace.as_secs(), "shutdown requested");
        tx.send_replace(true);
        tokio::select! {
            _ = tokio::time::sleep(grace) => {
                tracing::error!(grace_s = grace.as_secs(),
                    "shutdown did not finish within the grace (a store or queue request hanging?); exiting now");
            }
            _ = stop_signal() => {
                tracing::warn!("a second stop signal; exiting now");
            }
        }
        std::process::exit(1);
    });
    rx
}

/// Tells the operator where the map is.
pub fn announce_map(addr: std::net::SocketAddr) {
    tracing::info!("map and API at http://{addr}/ (OpenAPI: http://{addr}/openapi.json)");
    eprintln!("Raincast map: http://{addr}/");
}
