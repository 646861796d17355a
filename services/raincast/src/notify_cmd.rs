//! `raincast notify`: one notifier pass over the latest scans of every radar.
//!
//! For each radar (from the configuration, `--radar`, or the source's
//! folders) it loads the last hour of stored scans, builds the nowcast for the
//! latest one, evaluates the places, and posts each new event once: to X when
//! the four `RAINCAST_X_*` credentials are set (and not `--dry-run`), else to
//! the outbox folder. One JSON line per event on stdout.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use raincast_ingest::config::DEFAULT_VAR_DIR;
use raincast_ingest::{Config, Connector, Overrides, Stores};
use raincast_notifier::claims::Claims;
use raincast_notifier::gif::FrameLibrary;
use raincast_notifier::load::{load_radar_frames, LoadConfig};
use raincast_notifier::notify::{Notifier, Report};
use raincast_notifier::oauth::Credentials;
use raincast_notifier::publish::outbox::OutboxPublisher;
use raincast_notifier::publish::x::{XConfig, XPublisher};
use raincast_notifier::publish::AnyPublisher;
use raincast_notifier::{frames::jobs_for, Place};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use tracing::{debug, info};

/// Arguments of `raincast notify`.
#[derive(clap::Args, Debug)]
pub struct NotifyArgs {
    /// Run one pass and exit (required: the scheduled notifier runs under `raincast run`).
    #[arg(long)]
    once: bool,
    /// Configuration file (TOML, shared with ingest): store and radars.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store: `dynamodb[://TABLE_PREFIX]` or a folder (env RAINCAST_STORE).
    #[arg(long)]
    store: Option<String>,
    /// Only this radar.
    #[arg(long)]
    radar: Option<String>,
    /// Write to the outbox even when X credentials are set, and leave the
    /// store untouched (claims and states are kept in memory).
    #[arg(long)]
    dry_run: bool,
    /// Outbox folder (default var/outbox).
    #[arg(long, env = "RAINCAST_OUTBOX")]
    outbox: Option<PathBuf>,
    /// A place: `NAME,LAT,LON[,RADIUS_KM]` (repeatable).
    #[arg(long = "place", value_name = "NAME,LAT,LON[,RADIUS_KM]")]
    places: Vec<String>,
    /// A TOML file of places (`[[places]]` with name, lat, lon, radius_km,
    /// time_zone, thresholds, hashtags, clearing).
    #[arg(long)]
    places_file: Option<PathBuf>,
    /// IANA time zone of the `--place` places (default UTC).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Create missing DynamoDB tables.
    #[arg(long)]
    create_tables: bool,
}

#[derive(serde::Deserialize)]
struct PlacesFile {
    places: Vec<Place>,
}

fn places(args: &NotifyArgs) -> Result<Vec<Place>> {
    let mut out = Vec::new();
    for p in &args.places {
        out.push(Place::parse_arg(p)?.with_time_zone(&args.time_zone)?);
    }
    if let Some(path) = &args.places_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: PlacesFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for p in file.places {
            p.validate()?;
            out.push(p);
        }
    }
    if out.is_empty() {
        bail!("no places: pass --place NAME,LAT,LON[,RADIUS_KM] or --places-file FILE");
    }
    Ok(out)
}

/// The JSON line printed per event.
#[derive(serde::Serialize)]
struct Line<'a> {
    key: &'a str,
    kind: &'a str,
    place: &'a str,
    text: &'a str,
    gif_bytes: usize,
    status: raincast_notifier::ReportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn print(reports: &[Report]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for r in reports {
        let line = Line {
            key: &r.key,
            kind: r.kind.as_str(),
            place: &r.place,
            text: &r.text,
            gif_bytes: r.gif_bytes,
            status: r.status,
            post_id: r.post_id.as_deref(),
            error: r.error.as_deref(),
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(())
}

/// The claim lease of a notifier: long enough for one post with a
/// rate-limit wait (X: up to 15 minutes) and its requests.
pub const CLAIM_LEASE_MIN: i64 = 20;

/// Runs `raincast notify`.
pub fn run(args: NotifyArgs) -> Result<()> {
    if !args.once {
        bail!(
            "only --once is supported here; `raincast run` runs the notifier after every nowcast"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: NotifyArgs) -> Result<()> {
    let places = places(&args)?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = Config::load(
        args.config.as_deref(),
        &env,
        &Overrides {
            store: args.store.clone(),
            radar: args.radar.clone(),
            create_tables: args.create_tables.then_some(true),
            ..Overrides::default()
        },
    )?;
    let connector = Connector::new(&cfg, &env);
    let stores = connector.stores().await?;
    info!(store = %stores.description, "notifier store");
    let radars: Vec<(String, String)> = if cfg.radars.is_empty() {
        connector
            .radar_sources()
            .await?
            .into_iter()
            .map(|r| (r.radar.id, r.radar.name))
            .collect()
    } else {
        cfg.radars
            .iter()
            .map(|r| (r.id.clone(), r.name.clone()))
            .collect()
    };
    let plan = NotifyPlan {
        places,
        radars,
        dry_run: args.dry_run,
        outbox: args
            .outbox
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_VAR_DIR).join("outbox")),
    };
    let reports = notify_pass(&env, &stores, &plan, Utc::now(), None).await?;
    print(&reports)?;
    info!(
        events = reports.len(),
        radars = plan.radars.len(),
        places = plan.places.len(),
        "notify pass done"
    );
    Ok(())
}

/// What one notifier pass works on, besides the stores.
#[derive(Debug, Clone)]
pub struct NotifyPlan {
    pub places: Vec<Place>,
    /// (id, name) of each radar.
    pub radars: Vec<(String, String)>,
    /// Outbox even with X credentials, and claims kept in memory only.
    pub dry_run: bool,
    pub outbox: PathBuf,
}

/// One notifier pass: loads the last hour of every radar, builds its
/// nowcast, evaluates the places and posts each new event once, to X when
/// the `RAINCAST_X_*` credentials are in `env` (and not a dry run), else to
/// the outbox. Shared by `raincast notify --once` and `raincast run`.
pub async fn notify_pass(
    env: &HashMap<String, String>,
    stores: &Stores,
    plan: &NotifyPlan,
    now: chrono::DateTime<Utc>,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Vec<Report>> {
    let mut gifs = FrameLibrary::new();
    let mut jobs = Vec::new();
    for (id, name) in &plan.radars {
        match load_radar_frames(stores.scans.as_ref(), id, name, now, &LoadConfig::default())
            .await?
        {
            Some(frames) => {
                jobs.extend(jobs_for(&frames, &plan.places));
                gifs.insert(frames);
            }
            None => info!(radar = %id, "no stored scans"),
        }
    }

    let creds = Credentials::from_lookup(|k| env.get(k).cloned())?;
    let publisher = match creds {
        Some(c) if !plan.dry_run => {
            let x = XPublisher::new(c, XConfig::from_lookup(|k| env.get(k).cloned()))?;
            info!(base = %x.config().base_url, "posting to X");
            AnyPublisher::X(Box::new(x))
        }
        _ => {
            debug!(outbox = %plan.outbox.display(), dry_run = plan.dry_run, "writing to the outbox");
            AnyPublisher::Outbox(OutboxPublisher::new(plan.outbox.clone()))
        }
    };

    let owner = format!(
        "notify-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    let lease = chrono::Duration::minutes(CLAIM_LEASE_MIN);
    // Claims and posting records live in the one state store; a dry run
    // reads it and keeps its writes in memory.
    let claims = if plan.dry_run {
        Claims::dry_run(stores.state.clone(), owner, lease)
    } else {
        Claims::new(stores.state.clone(), owner, lease)
    };
    let mut notifier = Notifier::new(claims, publisher);
    if let Some(rx) = shutdown {
        notifier = notifier.with_shutdown(rx);
    }
    Ok(notifier.run_once(&jobs, &gifs, Utc::now()).await?)
}

/// The `[notifier]` table of the configuration file, read by `raincast run`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierTable {
    /// Run the notifier after every nowcast (default: on when places are
    /// configured, and for the demo radar).
    pub enabled: Option<bool>,
    /// Outbox folder (default var/outbox; `RAINCAST_OUTBOX` overrides).
    pub outbox: Option<PathBuf>,
    /// Only ever write to the outbox, even with X credentials set.
    pub dry_run: bool,
    /// The places, as in `raincast notify --places-file`.
    pub places: Vec<Place>,
}

/// Places in the path of the demo radar's rain (it stands in Zürich and
/// covers 256 × 256 km), so that `raincast run` fills the outbox.
pub fn demo_places() -> Result<Vec<Place>> {
    [
        ("Zürich", 47.377, 8.540),
        ("Winterthur", 47.500, 8.724),
        ("Lucerne", 47.050, 8.309),
        ("Aarau", 47.392, 8.044),
    ]
    .into_iter()
    .map(|(name, lat, lon)| Ok(Place::new(name, lat, lon).with_time_zone("Europe/Zurich")?))
    .collect()
}

/// The notifier's plan under `raincast run`, or None when it is off.
pub fn run_plan(
    cfg: &Config,
    env: &HashMap<String, String>,
    radars: &[raincast_ingest::RadarConfig],
    demo: bool,
) -> Result<Option<NotifyPlan>> {
    let t: NotifierTable = toml::Value::Table(cfg.notifier.clone())
        .try_into()
        .context("invalid [notifier] table")?;
    for p in &t.places {
        p.validate()?;
    }
    let places = if t.places.is_empty() && demo {
        demo_places()?
    } else {
        t.places
    };
    if !t.enabled.unwrap_or(!places.is_empty()) {
        return Ok(None);
    }
    if places.is_empty() {
        bail!("[notifier] is enabled but has no places: add [[notifier.places]] tables");
    }
    let outbox = env
        .get("RAINCAST_OUTBOX")
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from)
        .or(t.outbox)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VAR_DIR).join("outbox"));
    Ok(Some(NotifyPlan {
        places,
        radars: radars
            .iter()
            .map(|r| (r.id.clone(), r.name.clone()))
            .collect(),
        dry_run: t.dry_run,
        outbox,
    }))
}

/// Nowcasts older than this (base time before now minus it) give no alerts
/// under `raincast run`, minutes.
pub const MAX_ALERT_AGE_MIN: i64 = 30;

/// The notifier job of `raincast run`: a pass whenever a radar's nowcast
/// is newer than at the last pass, until `shutdown`.
pub async fn run_job(
    env: HashMap<String, String>,
    stores: Stores,
    plan: NotifyPlan,
    nowcasts: raincast_nowcast::NowcastService,
    interval: std::time::Duration,
    shutdown_rx: tokio::sync::watch::Receiver<bool>,
) {
    info!(places = plan.places.len(), outbox = %plan.outbox.display(),
        "notifier runs after every nowcast");
    let mut stop = shutdown_rx.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(shutdown);
    let mut seen: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        // Only nowcasts of current scans give alerts: while a backlog (or
        // the demo's two-hour backfill) is ingested, old rain is history.
        let current = Utc::now() - chrono::Duration::minutes(MAX_ALERT_AGE_MIN);
        let mut fresh = false;
        for (id, _) in &plan.radars {
            if let Some(n) = nowcasts.latest(id).filter(|n| n.base_time >= current) {
                if seen.insert(id.clone(), n.base_time) != Some(n.base_time) {
                    fresh = true;
                }
            }
        }
        if !fresh {
            continue;
        }
        // Publishing sees the shutdown signal: a stopping process ends
        // between posts (or during a wait), never in the middle of one.
        match notify_pass(&env, &stores, &plan, Utc::now(), Some(shutdown_rx.clone())).await {
            Ok(reports) => {
                for r in &reports {
                    info!(key = %r.key, kind = r.kind.as_str(), place = %r.place,
                        status = ?r.status, gif_bytes = r.gif_bytes, text = %r.text, "notifier event");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "notifier pass failed"),
        }
    }
}
