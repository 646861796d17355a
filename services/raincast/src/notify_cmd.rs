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
use raincast_ingest::{Config, Connector, Overrides};
use raincast_notifier::claims::{Claims, OverlayStore, RecordStore};
use raincast_notifier::gif::FrameLibrary;
use raincast_notifier::load::{load_radar_frames, LoadConfig};
use raincast_notifier::notify::{Job, Notifier, Report};
use raincast_notifier::oauth::Credentials;
use raincast_notifier::publish::outbox::OutboxPublisher;
use raincast_notifier::publish::x::{XConfig, XPublisher};
use raincast_notifier::publish::AnyPublisher;
use raincast_notifier::stores::{DynamoRecords, RedbRecords};
use raincast_notifier::{frames::jobs_for, Place};
use raincast_store::DynamoStore;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use tracing::info;

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

async fn pass<S: RecordStore>(
    records: S,
    publisher: AnyPublisher,
    jobs: &[Job],
    gifs: &FrameLibrary,
) -> Result<Vec<Report>> {
    let owner = format!(
        "notify-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    let notifier = Notifier::new(
        Claims::new(records, owner, chrono::Duration::minutes(20)),
        publisher,
    );
    Ok(notifier.run_once(jobs, gifs, Utc::now()).await?)
}

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

    let now = Utc::now();
    let mut gifs = FrameLibrary::new();
    let mut jobs = Vec::new();
    for (id, name) in &radars {
        match load_radar_frames(stores.scans.as_ref(), id, name, now, &LoadConfig::default())
            .await?
        {
            Some(frames) => {
                jobs.extend(jobs_for(&frames, &places));
                gifs.insert(frames);
            }
            None => info!(radar = %id, "no stored scans"),
        }
    }

    let creds = Credentials::from_lookup(|k| env.get(k).cloned())?;
    let publisher = match creds {
        Some(c) if !args.dry_run => {
            let x = XPublisher::new(c, XConfig::from_lookup(|k| env.get(k).cloned()))?;
            info!(base = %x.config().base_url, "posting to X");
            AnyPublisher::X(Box::new(x))
        }
        _ => {
            let dir = args
                .outbox
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_VAR_DIR).join("outbox"));
            info!(outbox = %dir.display(), dry_run = args.dry_run, "writing to the outbox");
            AnyPublisher::Outbox(OutboxPublisher::new(dir))
        }
    };

    let reports = match &stores.embedded {
        Some(embedded) => {
            let path = embedded.path().with_file_name("notifier.redb");
            let records = RedbRecords::open(&path)?;
            if args.dry_run {
                pass(OverlayStore::new(records), publisher, &jobs, &gifs).await?
            } else {
                pass(records, publisher, &jobs, &gifs).await?
            }
        }
        None => {
            let store: DynamoStore = match &cfg.store {
                raincast_ingest::config::StoreSpec::Dynamo { table_prefix } => {
                    let sdk =
                        raincast_store::aws::sdk_config_from_env(&cfg.aws.default_region, false)
                            .await;
                    DynamoStore::connect(
                        &sdk,
                        &raincast_store::DynamoOptions {
                            table_prefix: table_prefix.clone(),
                            create_tables: cfg.create_tables,
                            retention: cfg.retention,
                        },
                    )
                    .await?
                }
                other => bail!("unexpected store {other}"),
            };
            let records = DynamoRecords::new(&store);
            if args.dry_run {
                pass(OverlayStore::new(records), publisher, &jobs, &gifs).await?
            } else {
                pass(records, publisher, &jobs, &gifs).await?
            }
        }
    };
    print(&reports)?;
    info!(
        events = reports.len(),
        radars = radars.len(),
        places = places.len(),
        "notify pass done"
    );
    Ok(())
}
