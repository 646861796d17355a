//! `raincast notify --once`: one notifier pass over the latest nowcast of
//! every radar.
//!
//! The radars come from `--radar`, the configuration, or else the store's
//! registry of radars (ingest registers every radar it ingests), so a store
//! alone is enough. Each nowcast is built (or loaded from stored frames)
//! through the nowcast service with the `[nowcast]` settings: the same
//! nowcast `raincast run` and the API serve. Each new event is posted once:
//! to X when the four `RAINCAST_X_*` credentials are set (and not
//! `--dry-run`), else to the outbox. One JSON line per event on stdout.

use crate::cli::{load_secrets, process_env, runtime};
use anyhow::{bail, Context, Result};
use chrono::Utc;
use raincast_config::place::Place;
use raincast_config::secrets::Secrets;
use raincast_config::{Config, Overrides};
use raincast_ingest::Connector;
use raincast_notifier::notify::Report;
use raincast_notifier::service::{self, NotifierDeps, NotifierSettings, RadarRef};
use raincast_nowcast::NowcastService;
use std::io::Write;
use std::path::PathBuf;
use tracing::info;

/// Arguments of `raincast notify`.
#[derive(clap::Args, Debug)]
pub struct NotifyArgs {
    /// Run one pass and exit (required: the scheduled notifier runs under `raincast run`).
    #[arg(long)]
    once: bool,
    /// Configuration file (TOML, shared with every command).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store: `dynamodb[://TABLE_PREFIX]` or a folder [env: RAINCAST_STORE].
    #[arg(long)]
    store: Option<String>,
    /// Only this radar (default: the configured radars, else every radar
    /// registered in the store).
    #[arg(long)]
    radar: Option<String>,
    /// Write to the outbox even when X credentials are set, and leave the
    /// store untouched (claims, states and nowcast frames kept in memory).
    #[arg(long)]
    dry_run: bool,
    /// Outbox folder [env: RAINCAST_OUTBOX] [default: var/outbox].
    #[arg(long)]
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

/// The places of the flags, else those of `[notifier]`.
fn places(args: &NotifyArgs, cfg: &Config) -> Result<Vec<Place>> {
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
            p.validate()
                .with_context(|| format!("in {}", path.display()))?;
            out.push(p);
        }
    }
    if out.is_empty() {
        out = cfg.notifier.places.clone();
    }
    raincast_config::place::check_unique(&out)?;
    if out.is_empty() {
        info!(
            "no places (--place, --places-file or [[notifier.places]]): webhook subscriptions only"
        );
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

/// Runs `raincast notify`.
pub fn run(args: NotifyArgs) -> Result<()> {
    if !args.once {
        bail!(
            "only --once is supported here; `raincast run` runs the notifier after every nowcast"
        );
    }
    let env = process_env();
    let mut cfg = Config::load(
        args.config.as_deref(),
        &env,
        &Overrides {
            store: args.store.clone(),
            radar: args.radar.clone(),
            create_tables: args.create_tables.then_some(true),
            ..Overrides::default()
        },
    )?;
    if let Some(dir) = &args.outbox {
        cfg.notifier.outbox = dir.clone();
    }
    cfg.notifier.dry_run |= args.dry_run;
    // A dry run leaves the store untouched, nowcast frames included.
    cfg.nowcast.settings.store_frames &= !cfg.notifier.dry_run;
    let places = places(&args, &cfg)?;
    cfg.notifier.enabled = Some(true);
    let secrets = Secrets::from_env(&env);
    let settings = NotifierSettings::from_section(
        &cfg.notifier,
        places,
        cfg.nowcast.refresh(),
        secrets.clone(),
    )?
    .context("the notifier is off")?;
    runtime()?.block_on(async move {
        load_secrets(&cfg, &secrets).await?;
        let stores = Connector::new(&cfg, &env).stores().await?;
        info!(store = %stores.description, "notifier store");
        let radars: Vec<RadarRef> = if cfg.radars.is_empty() {
            raincast_store::radars::registered(stores.state.as_ref())
                .await?
                .into_iter()
                .map(|r| RadarRef {
                    id: r.id,
                    name: r.name,
                    location: None,
                })
                .collect()
        } else {
            cfg.radars
                .iter()
                .map(|r| RadarRef {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    location: r.location.map(|l| (l.lon, l.lat)),
                })
                .collect()
        };
        if radars.is_empty() {
            bail!(
                "no radars: the store at {} has none registered (ingest registers every radar it ingests); pass --radar ID",
                stores.description
            );
        }
        let deps = NotifierDeps {
            state: stores.state.clone(),
            nowcasts: NowcastService::new(stores.scans.clone(), cfg.nowcast.settings.clone()),
            radars,
        };
        // As under `run`: only a nowcast of a scan less than
        // `max_alert_age` old gives alerts (a store holding an old day would
        // otherwise post its rain as news), told from the wall clock. A dry
        // run posts nothing, so it previews any day's alerts as of its scans.
        let now = Utc::now();
        let not_before = (!settings.dry_run).then(|| now - settings.max_alert_age);
        let reports = service::pass(&settings, &deps, now, not_before, None).await?;
        print(&reports)?;
        info!(
            events = reports.len(),
            radars = deps.radars.len(),
            places = settings.places.len(),
            "notify pass done"
        );
        Ok(())
    })
}
