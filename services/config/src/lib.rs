//! Raincast's one configuration: a TOML file, then `RAINCAST_*`
//! environment overrides, then command-line flags, parsed once into typed,
//! validated sections that every service takes: the store and source,
//! [`IngestSettings`], [`nowcast::NowcastSection`], [`api::ApiConfig`] and
//! [`notifier::NotifierSection`], and [`secrets::SecretsSection`] (where the
//! named secrets of [`secrets::Secrets`] come from). Every error is a [`ConfigError`] naming
//! the setting and where it came from (file, variable or flag).
//!
//! Every key of the `[ingest]`, `[nowcast]`, `[api]`, `[notifier]`, `[aws]`,
//! `[secrets]` and `[queue]` sections can be overridden by `RAINCAST_{SECTION}__{KEY}` (e.g.
//! `RAINCAST_NOWCAST__MAX_LEAD_MIN=60`, `RAINCAST_API__CPU_QUEUE=8`); the
//! value is read as a TOML value (a number, `true`, `["a", "b"]`, an inline
//! table), or else as a string. The older short names (`RAINCAST_STORE`,
//! `RAINCAST_BATCH_SIZE`, `RAINCAST_CORS_ORIGINS`, `RAINCAST_OUTBOX`, …)
//! still apply and win over both.
//!
//! The environment is passed in as a map ([`Config::load`]), never read
//! here, so tests build any environment without touching the process's.
//! AWS settings (credentials, region, endpoints) are not part of it: the
//! SDK reads its standard variables itself.
//!
//! ```toml
//! source = "s3://radar-raw/au"          # or a folder; RAINCAST_SOURCE
//! store = "dynamodb://raincast-"        # or "dynamodb", or a folder; RAINCAST_STORE
//! key_template = "{radar}/{yyyy}/{mm}/{dd}/{file}"
//! retention_days = 7
//! create_tables = false
//!
//! [ingest]
//! schedule = "0 * * * * *"              # cron with seconds: every minute
//! lookback_minutes = 30
//! batch_size = 50
//! backfill_hours = 2
//!
//! [[radars]]
//! id = "bom02"
//! name = "Melbourne"
//! format = "bom"                        # optional: detected from content
//! zr = { a = 200.0, b = 1.6 }           # optional
//! location = { lat = -37.855, lon = 144.755 }
//! ```

pub mod api;
pub mod layout;
pub mod notifier;
pub mod nowcast;
pub mod place;
pub mod queue;
pub mod secrets;

use crate::api::ApiConfig;
use crate::layout::{KeyTemplate, DEFAULT_TEMPLATE};
use crate::notifier::{NotifierFile, NotifierSection};
use crate::nowcast::{NowcastFile, NowcastSection};
use crate::queue::QueueFile;
pub use crate::queue::QueueSettings;
use crate::secrets::{Secrets, SecretsFile, SecretsSection};
use chrono::{DateTime, Duration, Utc};
use raincast_algorithms::scan::{Format, ZR};
use raincast_store::model::validate_radar_id;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Configuration problems, each naming the setting and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{setting} (from {origin}): {reason}")]
    Invalid {
        setting: String,
        origin: &'static str,
        reason: String,
    },
}

pub(crate) fn invalid(
    setting: &str,
    origin: &'static str,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        origin,
        reason: reason.into(),
    }
}

/// A value that must never appear in logs: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where raw scans come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `s3://BUCKET[/PREFIX]`.
    S3 { url: String },
    /// A local folder used as a bucket.
    Local { dir: PathBuf },
}

impl SourceSpec {
    /// `s3://…` or a folder (`file://` prefix optional).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty".into());
        }
        if s.starts_with("s3://") {
            raincast_store::s3::parse_s3_url(s).map_err(|e| e.to_string())?;
            return Ok(SourceSpec::S3 { url: s.to_string() });
        }
        if s.contains("://") && !s.starts_with("file://") {
            return Err(format!("{s:?}: expected s3://BUCKET[/PREFIX] or a folder"));
        }
        Ok(SourceSpec::Local {
            dir: PathBuf::from(s.trim_start_matches("file://")),
        })
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::S3 { url } => f.write_str(url),
            SourceSpec::Local { dir } => write!(f, "{}", dir.display()),
        }
    }
}

/// Where sparse scans and state go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// DynamoDB tables `{table_prefix}scans` and `{table_prefix}state`.
    Dynamo { table_prefix: String },
    /// The embedded redb file.
    Embedded { path: PathBuf },
}

/// The default DynamoDB table prefix.
pub const DEFAULT_TABLE_PREFIX: &str = "raincast-";
/// The embedded store's file name inside a store folder.
pub const EMBEDDED_FILE: &str = "raincast.redb";

impl StoreSpec {
    /// `dynamodb`, `dynamodb://PREFIX`, a folder (the file `raincast.redb`
    /// inside it) or a path ending in `.redb`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty".into());
        }
        if s == "dynamodb" || s == "dynamodb://" {
            return Ok(StoreSpec::Dynamo {
                table_prefix: DEFAULT_TABLE_PREFIX.into(),
            });
        }
        if let Some(prefix) = s.strip_prefix("dynamodb://") {
            let ok = prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !ok || prefix.len() > 200 {
                return Err(format!(
                    "{prefix:?} is not a valid DynamoDB table name prefix"
                ));
            }
            return Ok(StoreSpec::Dynamo {
                table_prefix: prefix.to_string(),
            });
        }
        if s.contains("://") && !s.starts_with("file://") {
            return Err(format!(
                "{s:?}: expected dynamodb[://TABLE_PREFIX] or a folder"
            ));
        }
        let p = PathBuf::from(s.trim_start_matches("file://"));
        let path = if p.extension().is_some_and(|e| e == "redb") {
            p
        } else {
            p.join(EMBEDDED_FILE)
        };
        Ok(StoreSpec::Embedded { path })
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Dynamo { table_prefix } => write!(f, "dynamodb://{table_prefix}"),
            StoreSpec::Embedded { path } => write!(f, "{}", path.display()),
        }
    }
}

/// A radar's location (WGS84 degrees).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// One radar.
#[derive(Debug, Clone, PartialEq)]
pub struct RadarConfig {
    /// Id used in keys and the API (`[A-Za-z0-9_.-]`, at most 64).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its own source; `None` = the global one.
    pub source: Option<SourceSpec>,
    /// Where its files sit below the source.
    pub key_template: KeyTemplate,
    /// Forced format; `None` = detected from content.
    pub format: Option<Format>,
    /// Z–R relation for reflectivity products; `None` = the product's own
    /// hint, else Marshall–Palmer.
    pub zr: Option<ZR>,
    /// Where the radar stands: the map's site marker and range rings, and
    /// the position of its legacy NEXRAD volumes when the site registry
    /// does not list it (a retired site).
    pub location: Option<Location>,
}

/// Ingest job settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    /// Cron expression with seconds (6 fields; 5-field ones get `0 ` in front).
    pub schedule: String,
    /// How far behind the checkpoint each listing starts, for late files.
    pub lookback: Duration,
    /// At most this many new scans per run and radar.
    pub batch_size: usize,
    /// Where a radar without a checkpoint starts: now minus this.
    pub backfill: Duration,
    /// Explicit start for radars without a checkpoint (`--since`).
    pub since: Option<DateTime<Utc>>,
    /// Lease length; renewed every third of it while a run works.
    pub lease_ttl: Duration,
    /// Rain threshold of the hot prep, mm/h.
    pub threshold_mm_h: f32,
    /// Speckle filter in the hot prep.
    pub speckle_filter: bool,
    /// Sparse tile side in cells.
    pub tile_size: usize,
    /// First delay after a failed run; doubles per failure up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Objects larger than this (from the listing's size) are quarantined
    /// as `too_large` without being fetched.
    pub max_file_bytes: u64,
    /// Largest declared grid a decoder accepts (rows × cols, or radials ×
    /// gates), checked before anything is allocated or inflated.
    pub max_cells: u64,
    /// Keys timed more than this ahead of now are deferred (counted, not
    /// ingested, not checkpointed) until their time comes. At most the
    /// lookback, so a deferred window never hides a later real file.
    pub future_tolerance: Duration,
    /// A file whose content is timed further than this from the time its
    /// key names (its time, else its folders' day) is quarantined as
    /// `time_mismatch`: a file put under the wrong radar or day would
    /// otherwise be stored at its content's time, as that radar's scan.
    /// Zero turns the check off.
    pub key_time_tolerance: Duration,
    /// Files of a local-folder source modified less than this ago are left
    /// for the next run (they may still be being written).
    pub settle: Duration,
    /// A file found still marked in progress this many times (its process
    /// died while decoding it) is quarantined as `crashed`.
    pub max_attempts: u32,
    /// Test hooks (`RAINCAST_FAILPOINT`), compiled into debug builds only.
    pub failpoint: Option<Failpoint>,
    /// Event-driven ingest from a queue (`[queue]`); `None` = listing only.
    /// With a queue, the listing runs on its `reconcile_schedule` instead
    /// of `schedule`.
    pub queue: Option<QueueSettings>,
}

/// A test hook set by `RAINCAST_FAILPOINT`. Only debug (test) builds read
/// the variable; release builds have no failpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failpoint {
    /// `pause_after_put:N`: pause forever after storing the N-th scan,
    /// before its checkpoint, so a test can kill the process right there.
    PauseAfterPut(usize),
    /// `abort_decoding:TEXT`: `abort()` the process while decoding any file
    /// whose key contains TEXT, as an out-of-memory kill would.
    AbortDecoding(String),
}

impl Failpoint {
    /// Parses `pause_after_put:N` or `abort_decoding:TEXT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("pause_after_put:") {
            return n
                .parse()
                .map(Failpoint::PauseAfterPut)
                .map_err(|e| format!("{s:?}: {e}"));
        }
        match s.strip_prefix("abort_decoding:") {
            Some(t) if !t.is_empty() => Ok(Failpoint::AbortDecoding(t.to_string())),
            _ => Err(format!(
                "{s:?}: expected pause_after_put:N or abort_decoding:TEXT"
            )),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            schedule: "0 * * * * *".into(),
            lookback: Duration::minutes(30),
            batch_size: 50,
            backfill: Duration::hours(2),
            since: None,
            lease_ttl: Duration::seconds(60),
            threshold_mm_h: 0.1,
            speckle_filter: false,
            tile_size: 256,
            backoff_base: Duration::seconds(30),
            backoff_max: Duration::minutes(15),
            max_file_bytes: 256 * 1024 * 1024,
            max_cells: raincast_algorithms::scan::DEFAULT_MAX_CELLS,
            future_tolerance: Duration::minutes(10),
            key_time_tolerance: Duration::hours(24),
            settle: Duration::seconds(5),
            max_attempts: 2,
            failpoint: None,
            queue: None,
        }
    }
}

/// AWS-related switches that are Raincast's own (credentials, region and
/// endpoints come from the SDK's standard variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region used when the environment names none.
    pub default_region: String,
    /// Path-style S3 URLs; `None` = on when an S3 endpoint URL is set
    /// (compatible servers), off otherwise.
    pub s3_path_style: Option<bool>,
    /// Unsigned S3 requests (public buckets such as NEXRAD's): `Some(true)`
    /// always, `Some(false)` never, `None` (default) when the SDK's default
    /// chain finds no credentials.
    pub s3_anonymous: Option<bool>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: SourceSpec,
    /// False when no source was configured anywhere (flag, environment,
    /// file) and no `[[radars]]` either (a radar's own `source` counts):
    /// `raincast run` then starts the synthetic demo radars.
    pub source_given: bool,
    pub store: StoreSpec,
    /// Create missing DynamoDB tables.
    pub create_tables: bool,
    /// How long stored scans live (DynamoDB TTL; embedded purge).
    pub retention: Duration,
    /// Template of radars that set none.
    pub key_template: KeyTemplate,
    pub ingest: IngestSettings,
    /// Configured radars; empty = discovered from the source's folders.
    pub radars: Vec<RadarConfig>,
    pub aws: AwsSettings,
    /// HTTP listen address for `raincast run` (`RAINCAST_LISTEN`).
    pub listen: String,
    /// Log as JSON lines.
    pub log_json: bool,
    /// The HTTP API (`[api]`).
    pub api: ApiConfig,
    /// The nowcast service and job (`[nowcast]`).
    pub nowcast: NowcastSection,
    /// The notifier (`[notifier]`).
    pub notifier: NotifierSection,
    /// Where secrets come from (`[secrets]`).
    pub secrets: SecretsSection,
}

/// Command-line flags that override the file and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub source: Option<String>,
    pub store: Option<String>,
    /// Restrict to this radar (added ad hoc when not configured).
    pub radar: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub create_tables: Option<bool>,
    pub batch_size: Option<usize>,
    pub listen: Option<String>,
    /// `--queue URL`.
    pub queue: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    source: Option<String>,
    store: Option<String>,
    key_template: Option<String>,
    retention_days: Option<f64>,
    create_tables: Option<bool>,
    listen: Option<String>,
    log_json: Option<bool>,
    #[serde(default)]
    ingest: FileIngest,
    #[serde(default)]
    aws: FileAws,
    #[serde(default)]
    radars: Vec<FileRadar>,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    nowcast: NowcastFile,
    #[serde(default)]
    notifier: NotifierFile,
    #[serde(default)]
    secrets: SecretsFile,
    #[serde(default)]
    queue: QueueFile,
}

/// The sections whose keys `RAINCAST_{SECTION}__{KEY}` overrides.
pub const SECTIONS: [&str; 7] = [
    "ingest", "nowcast", "api", "notifier", "aws", "secrets", "queue",
];

/// The process environment as given to [`Config::load`].
pub(crate) struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A variable's trimmed value, when set and not blank.
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
}

/// Which section keys came from `RAINCAST_{SECTION}__{KEY}` variables.
#[derive(Debug, Default)]
pub(crate) struct Origins(HashMap<(String, String), String>);

impl Origins {
    /// The name to report for `section.key` and where it came from.
    pub(crate) fn of(&self, section: &str, key: &str) -> (String, &'static str) {
        match self.0.get(&(section.to_string(), key.to_string())) {
            Some(var) => (var.clone(), "environment"),
            None => (format!("{section}.{key}"), "config file"),
        }
    }
}

/// The `RAINCAST_*` variables read by their own name (the other settings
/// are `RAINCAST_{SECTION}__{KEY}`), secrets included.
pub const NAMED_ENV_VARS: &[&str] = &[
    "RAINCAST_BACKFILL_HOURS",
    "RAINCAST_BACKOFF_BASE_SECONDS",
    "RAINCAST_BACKOFF_MAX_SECONDS",
    "RAINCAST_BATCH_SIZE",
    "RAINCAST_CORS_ORIGINS",
    "RAINCAST_CREATE_TABLES",
    "RAINCAST_FAILPOINT",
    "RAINCAST_FUTURE_TOLERANCE_MINUTES",
    "RAINCAST_KEY_TEMPLATE",
    "RAINCAST_KEY_TIME_TOLERANCE_HOURS",
    "RAINCAST_LEASE_TTL_SECONDS",
    "RAINCAST_LISTEN",
    "RAINCAST_LOG",
    "RAINCAST_LOG_JSON",
    "RAINCAST_LOOKBACK_MINUTES",
    "RAINCAST_MASTODON_TOKEN",
    "RAINCAST_MAX_ATTEMPTS",
    "RAINCAST_MAX_CELLS",
    "RAINCAST_MAX_FILE_MB",
    "RAINCAST_OUTBOX",
    "RAINCAST_QUEUE_URL",
    "RAINCAST_RETENTION_DAYS",
    "RAINCAST_S3_ANONYMOUS",
    "RAINCAST_S3_PATH_STYLE",
    "RAINCAST_SCHEDULE",
    "RAINCAST_SETTLE_SECONDS",
    "RAINCAST_SHUTDOWN_GRACE_S",
    "RAINCAST_SOURCE",
    "RAINCAST_STORE",
    "RAINCAST_X_ACCESS_SECRET",
    "RAINCAST_X_ACCESS_TOKEN",
    "RAINCAST_X_API_BASE",
    "RAINCAST_X_CONSUMER_KEY",
    "RAINCAST_X_CONSUMER_SECRET",
    // Read by the test suite, .ci and the scripts, not the service.
    "RAINCAST_BIN",
    "RAINCAST_BINARY",
    "RAINCAST_BROWSER_DEPS",
    "RAINCAST_BROWSER_SKILL_WAIT_MS",
    "RAINCAST_BROWSER_TIMEOUT",
    "RAINCAST_BROWSER_WAIT_MS",
    "RAINCAST_CFCHECK_VERSION",
    "RAINCAST_DEPLOY_CACHE",
    "RAINCAST_DEPLOY_TIERS",
    "RAINCAST_DYNALITE_VERSION",
    "RAINCAST_E2E_DATASET",
    "RAINCAST_MOTO_VERSION",
    "RAINCAST_NOTIFIER_SAMPLE_DIR",
    "RAINCAST_SERVERS_DIR",
];

/// The `RAINCAST_*` variables of `env` that nothing reads: a name in no
/// [`NAMED_ENV_VARS`] and no `RAINCAST_{SECTION}__{KEY}` of a known
/// section (a key unknown in a known section is an error already). Most
/// often a typo (`RAINCAST_SOTRE`), which would otherwise be silent.
pub fn unknown_env_vars(env: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = env
        .keys()
        .filter(|k| k.starts_with("RAINCAST_"))
        .filter(|k| match k["RAINCAST_".len()..].split_once("__") {
            Some((section, _)) => !SECTIONS.contains(&section.to_ascii_lowercase().as_str()),
            None => !NAMED_ENV_VARS.contains(&k.as_str()),
        })
        .cloned()
        .collect();
    out.sort();
    out
}

/// The name of the variable overriding `section.key`.
pub fn env_var_for(section: &str, key: &str) -> String {
    format!(
        "RAINCAST_{}__{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// A variable's value as TOML: a number, boolean, array or inline table
/// when it parses as one, else the text itself.
fn toml_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Applies the `RAINCAST_{SECTION}__{KEY}` variables to the file's table,
/// one at a time (sorted by name), so that a value that does not fit names
/// its variable.
fn overlay_env(
    mut table: toml::Table,
    env: &HashMap<String, String>,
) -> Result<(toml::Table, Origins), ConfigError> {
    let mut origins = Origins::default();
    let mut vars: Vec<(&String, &String)> = env.iter().collect();
    vars.sort();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix("RAINCAST_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) || raw.trim().is_empty() {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let mut next = table.clone();
        let entry = next
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = entry.as_table_mut() else {
            return Err(invalid(
                var,
                "environment",
                format!("[{section}] is not a table"),
            ));
        };
        t.insert(key.clone(), toml_value(raw.trim()));
        toml::Value::Table(next.clone())
            .try_into::<FileConfig>()
            .map_err(|e| invalid(var, "environment", e.message().to_string()))?;
        table = next;
        origins.0.insert((section, key), var.clone());
    }
    Ok((table, origins))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIngest {
    schedule: Option<String>,
    lookback_minutes: Option<f64>,
    batch_size: Option<usize>,
    backfill_hours: Option<f64>,
    lease_ttl_seconds: Option<f64>,
    threshold_mm_h: Option<f32>,
    speckle_filter: Option<bool>,
    tile_size: Option<usize>,
    backoff_base_seconds: Option<f64>,
    backoff_max_seconds: Option<f64>,
    max_file_mb: Option<f64>,
    max_cells: Option<u64>,
    future_tolerance_minutes: Option<f64>,
    key_time_tolerance_hours: Option<f64>,
    settle_seconds: Option<f64>,
    max_attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAws {
    default_region: Option<String>,
    s3_path_style: Option<bool>,
    s3_anonymous: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRadar {
    id: String,
    name: Option<String>,
    source: Option<String>,
    key_template: Option<String>,
    format: Option<String>,
    zr: Option<ZR>,
    location: Option<Location>,
}

/// `RAINCAST_FAILPOINT`: read by debug (test) builds only, so a release
/// binary has no way to be made to pause or abort.
#[cfg(debug_assertions)]
fn failpoint_from(env: &HashMap<String, String>) -> Result<Option<Failpoint>, ConfigError> {
    match env.get("RAINCAST_FAILPOINT").map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(fp) => Failpoint::parse(fp)
            .map(Some)
            .map_err(|e| invalid("RAINCAST_FAILPOINT", "environment", e)),
    }
}

#[cfg(not(debug_assertions))]
fn failpoint_from(_env: &HashMap<String, String>) -> Result<Option<Failpoint>, ConfigError> {
    Ok(None)
}

/// Where the embedded default keeps its files.
pub const DEFAULT_VAR_DIR: &str = "var";

fn env_parse<T: std::str::FromStr>(
    env: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e| invalid(key, "environment", format!("{v:?}: {e}"))),
    }
}

fn env_bool(env: &HashMap<String, String>, key: &str) -> Result<Option<bool>, ConfigError> {
    match env.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(Some(true)),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(Some(false)),
        Some(v) => Err(invalid(
            key,
            "environment",
            format!("{v:?} is not a boolean"),
        )),
    }
}

/// A number from `env_key` (first), else from the file, else `default`,
/// checked to lie in `range`; an error names the setting where it came from.
fn ranged<T>(
    env: &HashMap<String, String>,
    env_key: &'static str,
    file: Option<T>,
    default: T,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let (v, setting, origin) = match env_parse::<T>(env, env_key)? {
        Some(v) => (v, env_key, "environment"),
        None => (file.unwrap_or(default), name, "config file"),
    };
    if !range.contains(&v) {
        return Err(invalid(
            setting,
            origin,
            format!("{v} is not in {}..={}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

/// A duration from a number of units, checked finite and in range.
fn duration(
    setting: &str,
    origin: &'static str,
    v: f64,
    unit_s: f64,
    min_s: f64,
) -> Result<Duration, ConfigError> {
    let secs = v * unit_s;
    if !secs.is_finite() || secs < min_s || secs > 3.2e9 {
        return Err(invalid(
            setting,
            origin,
            format!(
                "{v} is out of range: from {} to {:.0}",
                min_s / unit_s,
                3.2e9 / unit_s
            ),
        ));
    }
    Ok(Duration::milliseconds((secs * 1000.0).round() as i64))
}

/// Normalises a cron expression to 6 fields (with seconds) and checks it.
pub fn normalise_schedule(s: &str) -> Result<String, String> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    // The cron parser accepts an empty list element ("0 , * * * *") as a
    // field that matches nothing, and the scheduler then searches years
    // ahead for a next run that never comes.
    if let Some((i, f)) = fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.split(',').any(str::is_empty))
    {
        return Err(format!(
            "{s:?}: field {} ({f:?}) has an empty list element",
            i + 1
        ));
    }
    let six = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "{s:?} has {n} fields; expected a cron expression with 5 or 6 fields"
            ))
        }
    };
    tokio_cron_scheduler::Job::new_async(six.as_str(), |_, _| Box::pin(async {})).map_err(|e| {
        format!(
            "{s:?} is not a cron expression the scheduler reads ({e}): fields are \
                 [seconds] minutes hours day-of-month month day-of-week, e.g. \"0 * * * * *\" \
                 (every minute)"
        )
    })?;
    Ok(six)
}

impl Config {
    /// Reads `file` (if any), applies `env` (`RAINCAST_*`) and `cli`, and
    /// validates everything once.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let fc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                Self::parse_file(&text).map_err(|reason| ConfigError::Parse {
                    path: path.to_path_buf(),
                    reason,
                })?
            }
            None => toml::Table::new(),
        };
        Self::build(fc, env, cli)
    }

    /// Like [`Config::load`] with the file's text given.
    pub fn from_toml(
        text: &str,
        env: &HashMap<String, String>,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let fc = Self::parse_file(text).map_err(|reason| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            reason,
        })?;
        Self::build(fc, env, cli)
    }

    /// The file's table, checked against the schema (unknown keys, types).
    fn parse_file(text: &str) -> Result<toml::Table, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        toml::Value::Table(table.clone())
            .try_into::<FileConfig>()
            .map_err(|e| e.to_string())?;
        Ok(table)
    }

    fn build(
        table: toml::Table,
        env: &HashMap<String, String>,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let (table, origins) = overlay_env(table, env)?;
        // A file setting that a `RAINCAST_{SECTION}__{KEY}` variable
        // replaced is reported under the variable's name.
        Self::build_sections(table, env, cli, &origins).map_err(|e| match e {
            ConfigError::Invalid {
                setting,
                origin: origin @ ("config file" | "config"),
                reason,
            } => {
                let (setting, origin) = match setting.split_once('.') {
                    Some((section, key)) => match origins.of(section, key) {
                        (var, "environment") => (var, "environment"),
                        _ => (setting, origin),
                    },
                    None => (setting, origin),
                };
                ConfigError::Invalid {
                    setting,
                    origin,
                    reason,
                }
            }
            other => other,
        })
    }

    fn build_sections(
        table: toml::Table,
        env: &HashMap<String, String>,
        cli: &Overrides,
        origins: &Origins,
    ) -> Result<Config, ConfigError> {
        let d = IngestSettings::default();
        let fc: FileConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid("configuration", "environment", e.message()))?;

        // source / store: flag > env > file > embedded default.
        let (source_text, origin) = pick(&cli.source, env.get("RAINCAST_SOURCE"), &fc.source);
        let source_given = source_text.is_some();
        let source = match source_text {
            Some(s) => SourceSpec::parse(&s).map_err(|e| invalid("source", origin, e))?,
            None => SourceSpec::Local {
                dir: Path::new(DEFAULT_VAR_DIR).join("bucket"),
            },
        };
        let (store_text, origin) = pick(&cli.store, env.get("RAINCAST_STORE"), &fc.store);
        let store = match store_text {
            Some(s) => StoreSpec::parse(&s).map_err(|e| invalid("store", origin, e))?,
            None => StoreSpec::Embedded {
                path: Path::new(DEFAULT_VAR_DIR).join("store").join(EMBEDDED_FILE),
            },
        };

        let (tpl, origin) = pick(&None, env.get("RAINCAST_KEY_TEMPLATE"), &fc.key_template);
        let key_template = KeyTemplate::parse(tpl.as_deref().unwrap_or(DEFAULT_TEMPLATE))
            .map_err(|e| invalid("key_template", origin, e.to_string()))?;

        let create_tables = cli
            .create_tables
            .or(env_bool(env, "RAINCAST_CREATE_TABLES")?)
            .or(fc.create_tables)
            .unwrap_or(false);
        let retention = match env_parse::<f64>(env, "RAINCAST_RETENTION_DAYS")? {
            Some(v) => duration("RAINCAST_RETENTION_DAYS", "environment", v, 86_400.0, 60.0)?,
            None => match fc.retention_days {
                Some(v) => duration("retention_days", "config file", v, 86_400.0, 60.0)?,
                None => Duration::days(7),
            },
        };

        let fi = &fc.ingest;
        // Named as the operator wrote it (there is no flag for it).
        let (schedule_text, origin) = pick(&None, env.get("RAINCAST_SCHEDULE"), &fi.schedule);
        let setting = match origin {
            "environment" => "RAINCAST_SCHEDULE",
            _ => "ingest.schedule",
        };
        let schedule_text = schedule_text.unwrap_or_else(|| d.schedule.clone());
        let schedule =
            normalise_schedule(&schedule_text).map_err(|e| invalid(setting, origin, e))?;

        let minutes = |env_key: &str,
                       file: Option<f64>,
                       default: Duration,
                       unit: f64,
                       min: f64,
                       name: &str| {
            match env_parse::<f64>(env, env_key)? {
                Some(v) => duration(env_key, "environment", v, unit, min),
                None => match file {
                    Some(v) => duration(name, "config file", v, unit, min),
                    None => Ok(default),
                },
            }
        };
        let lookback = minutes(
            "RAINCAST_LOOKBACK_MINUTES",
            fi.lookback_minutes,
            d.lookback,
            60.0,
            0.0,
            "ingest.lookback_minutes",
        )?;
        let backfill = minutes(
            "RAINCAST_BACKFILL_HOURS",
            fi.backfill_hours,
            d.backfill,
            3600.0,
            0.0,
            "ingest.backfill_hours",
        )?;
        let lease_ttl = minutes(
            "RAINCAST_LEASE_TTL_SECONDS",
            fi.lease_ttl_seconds,
            d.lease_ttl,
            1.0,
            1.0,
            "ingest.lease_ttl_seconds",
        )?;
        let backoff_base = minutes(
            "RAINCAST_BACKOFF_BASE_SECONDS",
            fi.backoff_base_seconds,
            d.backoff_base,
            1.0,
            0.0,
            "ingest.backoff_base_seconds",
        )?;
        let backoff_max = minutes(
            "RAINCAST_BACKOFF_MAX_SECONDS",
            fi.backoff_max_seconds,
            d.backoff_max,
            1.0,
            0.0,
            "ingest.backoff_max_seconds",
        )?;
        // A check across two settings names the one it reports as its
        // origin says (each may come from the file or the environment).
        let from = |var: &str| {
            if env.get(var).is_some_and(|v| !v.trim().is_empty()) {
                (var.to_string(), "environment")
            } else {
                (String::new(), "config file")
            }
        };
        if backoff_max < backoff_base {
            let (var, origin) = from("RAINCAST_BACKOFF_MAX_SECONDS");
            let setting = if var.is_empty() {
                "ingest.backoff_max_seconds".to_string()
            } else {
                var
            };
            return Err(invalid(
                &setting,
                origin,
                format!(
                    "{} s is below backoff_base_seconds ({} s)",
                    backoff_max.num_seconds(),
                    backoff_base.num_seconds()
                ),
            ));
        }

        // flag > environment > file, named as the operator wrote it.
        let (batch_size, setting, origin) = match (
            cli.batch_size,
            env_parse(env, "RAINCAST_BATCH_SIZE")?,
            fi.batch_size,
        ) {
            (Some(v), _, _) => (v, "--batch-size", "command line"),
            (None, Some(v), _) => (v, "RAINCAST_BATCH_SIZE", "environment"),
            (None, None, Some(v)) => (v, "ingest.batch_size", "config file"),
            (None, None, None) => (d.batch_size, "ingest.batch_size", "config"),
        };
        if !(1..=100_000).contains(&batch_size) {
            return Err(invalid(
                setting,
                origin,
                format!("{batch_size} is not in 1..=100000"),
            ));
        }
        let threshold_mm_h = fi.threshold_mm_h.unwrap_or(d.threshold_mm_h);
        if !(threshold_mm_h.is_finite() && threshold_mm_h >= 0.0) {
            return Err(invalid(
                "ingest.threshold_mm_h",
                "config file",
                "must be a finite number >= 0",
            ));
        }
        let tile_size = fi.tile_size.unwrap_or(d.tile_size);
        if !(16..=256).contains(&tile_size) {
            return Err(invalid(
                "ingest.tile_size",
                "config file",
                format!("{tile_size} is not in 16..=256"),
            ));
        }
        let failpoint = failpoint_from(env)?;
        let max_file_mb = ranged(
            env,
            "RAINCAST_MAX_FILE_MB",
            fi.max_file_mb,
            d.max_file_bytes as f64 / 1048576.0,
            "ingest.max_file_mb",
            // (A readable lower bound: the message prints it.)
            0.000001..=65536.0,
        )?;
        let max_file_bytes = (max_file_mb * 1048576.0).round() as u64;
        let max_cells = ranged(
            env,
            "RAINCAST_MAX_CELLS",
            fi.max_cells,
            d.max_cells,
            "ingest.max_cells",
            1..=raincast_algorithms::scan::MAX_CELLS,
        )?;
        let future_tolerance = minutes(
            "RAINCAST_FUTURE_TOLERANCE_MINUTES",
            fi.future_tolerance_minutes,
            d.future_tolerance,
            60.0,
            0.0,
            "ingest.future_tolerance_minutes",
        )?;
        if future_tolerance > lookback {
            let (var, origin) = from("RAINCAST_FUTURE_TOLERANCE_MINUTES");
            let setting = if var.is_empty() {
                "ingest.future_tolerance_minutes".to_string()
            } else {
                var
            };
            return Err(invalid(
                &setting,
                origin,
                format!(
                    "{} min is above lookback_minutes ({} min): a file that far ahead could \
                     move the checkpoint past real files that arrive later",
                    future_tolerance.num_minutes(),
                    lookback.num_minutes()
                ),
            ));
        }
        let key_time_tolerance = minutes(
            "RAINCAST_KEY_TIME_TOLERANCE_HOURS",
            fi.key_time_tolerance_hours,
            d.key_time_tolerance,
            3600.0,
            0.0,
            "ingest.key_time_tolerance_hours",
        )?;
        let settle = minutes(
            "RAINCAST_SETTLE_SECONDS",
            fi.settle_seconds,
            d.settle,
            1.0,
            0.0,
            "ingest.settle_seconds",
        )?;
        let max_attempts = ranged(
            env,
            "RAINCAST_MAX_ATTEMPTS",
            fi.max_attempts,
            d.max_attempts,
            "ingest.max_attempts",
            1..=100,
        )?;
        let ingest = IngestSettings {
            schedule,
            lookback,
            batch_size,
            backfill,
            since: cli.since,
            lease_ttl,
            threshold_mm_h,
            speckle_filter: fi.speckle_filter.unwrap_or(d.speckle_filter),
            tile_size,
            backoff_base,
            backoff_max,
            max_file_bytes,
            max_cells,
            future_tolerance,
            key_time_tolerance,
            settle,
            max_attempts,
            failpoint,
            queue: None,
        };

        let queue_url = match (&cli.queue, Env(env).text("RAINCAST_QUEUE_URL")) {
            (Some(u), _) => Some((u.trim().to_string(), "--queue".into(), "command line")),
            (None, Some(u)) => Some((u, "RAINCAST_QUEUE_URL".into(), "environment")),
            (None, None) => None,
        };
        let mut ingest = ingest;
        ingest.queue = QueueSettings::build(&fc.queue, queue_url, origins)?;

        let mut radars = Vec::new();
        for (i, r) in fc.radars.iter().enumerate() {
            let at = |field: &str| format!("radars[{i}].{field}");
            validate_radar_id(&r.id)
                .map_err(|e| invalid(&at("id"), "config file", e.to_string()))?;
            if radars.iter().any(|x: &RadarConfig| x.id == r.id) {
                return Err(invalid(
                    &at("id"),
                    "config file",
                    format!("{:?} appears twice", r.id),
                ));
            }
            let source = r
                .source
                .as_deref()
                .map(SourceSpec::parse)
                .transpose()
                .map_err(|e| invalid(&at("source"), "config file", e))?;
            let key_template = match &r.key_template {
                Some(t) => KeyTemplate::parse(t)
                    .map_err(|e| invalid(&at("key_template"), "config file", e.to_string()))?,
                None => key_template.clone(),
            };
            let format = r
                .format
                .as_deref()
                .filter(|f| !f.eq_ignore_ascii_case("auto"))
                .map(str::parse::<Format>)
                .transpose()
                .map_err(|e| invalid(&at("format"), "config file", e.to_string()))?;
            if let Some(zr) = r.zr {
                if !(zr.a.is_finite() && zr.a > 0.0 && zr.b.is_finite() && zr.b > 0.0) {
                    return Err(invalid(
                        &at("zr"),
                        "config file",
                        "a and b must be positive",
                    ));
                }
            }
            if let Some(l) = r.location {
                if !((-90.0..=90.0).contains(&l.lat) && (-180.0..=180.0).contains(&l.lon)) {
                    return Err(invalid(
                        &at("location"),
                        "config file",
                        format!("({}, {}) is not a lat/lon", l.lat, l.lon),
                    ));
                }
            }
            radars.push(RadarConfig {
                id: r.id.clone(),
                name: r.name.clone().unwrap_or_else(|| r.id.clone()),
                source,
                key_template,
                format,
                zr: r.zr,
                location: r.location,
            });
        }
        // --radar: restrict to it, or add it ad hoc.
        if let Some(id) = cli.radar.as_deref() {
            validate_radar_id(id).map_err(|e| invalid("--radar", "command line", e.to_string()))?;
            radars.retain(|r| r.id == id);
            if radars.is_empty() {
                radars.push(RadarConfig::ad_hoc(id, &key_template));
            }
        }

        let env_listen = env
            .get("RAINCAST_LISTEN")
            .cloned()
            .filter(|s| !s.trim().is_empty());
        let (listen, listen_origin) = match (&cli.listen, env_listen, &fc.listen) {
            (Some(v), _, _) => (v.clone(), "--listen"),
            (None, Some(v), _) => (v, "RAINCAST_LISTEN"),
            (None, None, Some(v)) => (v.clone(), "config"),
            (None, None, None) => ("127.0.0.1:8080".to_string(), "default"),
        };
        listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("listen", listen_origin, format!("{listen:?}: {e}")))?;

        let aws = AwsSettings {
            default_region: fc
                .aws
                .default_region
                .clone()
                .unwrap_or_else(|| "us-east-1".into()),
            s3_path_style: env_bool(env, "RAINCAST_S3_PATH_STYLE")?.or(fc.aws.s3_path_style),
            s3_anonymous: env_bool(env, "RAINCAST_S3_ANONYMOUS")?.or(fc.aws.s3_anonymous),
        };
        let log_json = env_bool(env, "RAINCAST_LOG_JSON")?
            .or(fc.log_json)
            .unwrap_or(false);

        let mut api = fc.api.clone();
        if let Some(o) = Env(env).text("RAINCAST_CORS_ORIGINS") {
            api.cors_origins = o
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let mut nowcast = NowcastSection::build(&fc.nowcast, ingest.tile_size, origins)?;
        // A replay from `--since` is nowcast (and scored) from there on.
        nowcast.settings.catch_up_since = ingest.since;
        // `/v1/forecast` gives the nowcast's probability.
        api.forecast_threshold_mm_h = nowcast.settings.probability_threshold_mm_h;
        api.validate().map_err(|e| {
            let (setting, origin) = match e.field {
                "cors_origins" if Env(env).text("RAINCAST_CORS_ORIGINS").is_some() => {
                    ("RAINCAST_CORS_ORIGINS".to_string(), "environment")
                }
                field => (format!("api.{field}"), "config file"),
            };
            invalid(&setting, origin, e.reason)
        })?;
        let notifier = NotifierSection::build(&fc.notifier, &Env(env), origins)?;
        let secrets = SecretsSection::build(&fc.secrets, origins)?;
        // Without SSM the environment holds every secret: check the X
        // credentials now (with SSM, the binary checks after the first read).
        if secrets.ssm_prefix.is_none() {
            notifier::posting_account(
                notifier.mastodon.as_ref().map(|m| m.base_url.as_str()),
                &Secrets::from_env(env),
            )?;
        }

        Ok(Config {
            source,
            // Configured radars are never replaced by the demo's, whether
            // they name their own sources or use the default folder.
            source_given: source_given || !radars.is_empty(),
            store,
            create_tables,
            retention,
            key_template,
            ingest,
            radars,
            aws,
            listen,
            log_json,
            api,
            nowcast,
            notifier,
            secrets,
        })
    }

    /// Settings for the synthetic demo radar, which scans every few seconds:
    /// ingest every 5 s in batches big enough for its two-hour backfill,
    /// leads every 5 min and a nowcast refresh every 5 s, unless configured.
    pub fn apply_demo_defaults(&mut self) {
        let d = IngestSettings::default();
        if self.ingest.schedule == d.schedule {
            self.ingest.schedule = "*/5 * * * * *".into();
        }
        if self.ingest.batch_size == d.batch_size {
            self.ingest.batch_size = 1000;
        }
        let n = &mut self.nowcast;
        n.settings.lead_step_min = n.settings.lead_step_min.or(Some(5));
        n.refresh = n.refresh.or(Some(std::time::Duration::from_secs(5)));
    }

    /// The source of a radar (its own, or the global one).
    pub fn source_of<'a>(&'a self, radar: &'a RadarConfig) -> &'a SourceSpec {
        radar.source.as_ref().unwrap_or(&self.source)
    }
}

impl RadarConfig {
    /// A radar known only by its id: auto-detected format, default Z–R.
    pub fn ad_hoc(id: &str, template: &KeyTemplate) -> Self {
        RadarConfig {
            id: id.to_string(),
            name: id.to_string(),
            source: None,
            key_template: template.clone(),
            format: None,
            zr: None,
            location: None,
        }
    }
}

/// flag > environment > file, with where the value came from.
fn pick(
    cli: &Option<String>,
    env: Option<&String>,
    file: &Option<String>,
) -> (Option<String>, &'static str) {
    if let Some(v) = cli {
        return (Some(v.clone()), "command line");
    }
    if let Some(v) = env.filter(|v| !v.trim().is_empty()) {
        return (Some(v.clone()), "environment");
    }
    if let Some(v) = file {
        return (Some(v.clone()), "config file");
    }
    (None, "default")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const FULL: &str = r#"
source = "s3://radar-raw/au"
store = "dynamodb://prod-"
retention_days = 3
create_tables = true

[ingest]
schedule = "*/5 * * * *"
lookback_minutes = 45
batch_size = 20
backfill_hours = 6

[aws]
s3_anonymous = false

[[radars]]
id = "bom02"
name = "Melbourne"
format = "bom"
zr = { a = 300.0, b = 1.4 }
location = { lat = -37.855, lon = 144.755 }

[[radars]]
id = "katx"
source = "s3://noaa-nexrad-level2"
key_template = "{yyyy}/{mm}/{dd}/{RADAR}/{RADAR}{yyyy}{mm}{dd}_{HH}{MM}{SS}{*}"
"#;

    #[test]
    fn no_config_is_the_embedded_default() {
        let c = Config::load(None, &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(
            c.source,
            SourceSpec::Local {
                dir: PathBuf::from("var/bucket")
            }
        );
        assert_eq!(
            c.store,
            StoreSpec::Embedded {
                path: PathBuf::from("var/store/raincast.redb")
            }
        );
        assert_eq!(c.ingest, IngestSettings::default());
        assert_eq!(c.retention, Duration::days(7));
        assert!(c.radars.is_empty());
        assert!(!c.source_given);
        assert_eq!(c.listen, "127.0.0.1:8080");
    }

    #[test]
    fn file_then_env_then_flags() {
        let c = Config::from_toml(FULL, &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(
            c.source,
            SourceSpec::S3 {
                url: "s3://radar-raw/au".into()
            }
        );
        assert_eq!(
            c.store,
            StoreSpec::Dynamo {
                table_prefix: "prod-".into()
            }
        );
        assert!(c.create_tables);
        assert_eq!(c.retention, Duration::days(3));
        assert_eq!(c.ingest.schedule, "0 */5 * * * *");
        assert_eq!(c.ingest.lookback, Duration::minutes(45));
        assert_eq!(c.ingest.batch_size, 20);
        assert_eq!(c.radars.len(), 2);
        assert_eq!(c.radars[0].format, Some(Format::Bom));
        assert_eq!(c.radars[0].zr, Some(ZR { a: 300.0, b: 1.4 }));
        assert_eq!(c.radars[1].name, "katx");
        assert!(c.radars[1].key_template.time_in_key());
        assert_eq!(c.source_of(&c.radars[0]).to_string(), "s3://radar-raw/au");
        assert_eq!(
            c.source_of(&c.radars[1]).to_string(),
            "s3://noaa-nexrad-level2"
        );

        let e = env(&[
            ("RAINCAST_SOURCE", "/data/bucket"),
            ("RAINCAST_STORE", "dynamodb"),
            ("RAINCAST_BATCH_SIZE", "7"),
            ("RAINCAST_LOOKBACK_MINUTES", "10"),
            ("RAINCAST_CREATE_TABLES", "false"),
            ("RAINCAST_LISTEN", "0.0.0.0:9000"),
        ]);
        let c = Config::from_toml(FULL, &e, &Overrides::default()).unwrap();
        assert_eq!(
            c.source,
            SourceSpec::Local {
                dir: PathBuf::from("/data/bucket")
            }
        );
        assert_eq!(
            c.store,
            StoreSpec::Dynamo {
                table_prefix: "raincast-".into()
            }
        );
        assert_eq!(c.ingest.batch_size, 7);
        assert_eq!(c.ingest.lookback, Duration::minutes(10));
        assert!(!c.create_tables);
        assert_eq!(c.listen, "0.0.0.0:9000");

        let since = Utc::now();
        let cli = Overrides {
            source: Some("s3://other".into()),
            store: Some("/tmp/st".into()),
            radar: Some("katx".into()),
            since: Some(since),
            batch_size: Some(3),
            ..Default::default()
        };
        let c = Config::from_toml(FULL, &e, &cli).unwrap();
        assert_eq!(c.source.to_string(), "s3://other");
        assert_eq!(
            c.store,
            StoreSpec::Embedded {
                path: PathBuf::from("/tmp/st/raincast.redb")
            }
        );
        assert_eq!(c.ingest.batch_size, 3);
        assert_eq!(c.ingest.since, Some(since));
        assert_eq!(c.nowcast.settings.catch_up_since, Some(since));
        assert_eq!(c.radars.len(), 1);
        assert_eq!(c.radars[0].id, "katx");
    }

    #[test]
    fn an_unknown_radar_flag_adds_it_ad_hoc() {
        let cli = Overrides {
            radar: Some("fmi".into()),
            ..Default::default()
        };
        let c = Config::from_toml(FULL, &HashMap::new(), &cli).unwrap();
        assert_eq!(c.radars.len(), 1);
        assert_eq!(c.radars[0].format, None);
        assert_eq!(c.radars[0].key_template.as_str(), DEFAULT_TEMPLATE);
    }

    /// Two `[[notifier.places]]` with one id are refused at start-up (one
    /// place's alerts would be lost: their events share keys).
    #[test]
    fn places_with_one_id_are_refused() {
        let toml = "[[notifier.places]]\nname = \"Zürich\"\nlat = 47.37\nlon = 8.54\n\n\
                    [[notifier.places]]\nname = \"Zurich\"\nlat = 47.5\nlon = 8.7\n";
        let e = Config::from_toml(toml, &HashMap::new(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("notifier.places"), "{e}");
        assert!(e.to_string().contains("same id"), "{e}");
    }

    #[test]
    fn unknown_raincast_variables_are_listed() {
        let env: HashMap<String, String> = [
            "RAINCAST_SOTRE",
            "RAINCAST_BOGUS__X",
            "RAINCAST_RADARS",
            "RAINCAST_STORE",
            "RAINCAST_NOWCAST__FRAMES",
            "RAINCAST_X_CONSUMER_KEY",
            "HOME",
        ]
        .iter()
        .map(|k| (k.to_string(), "1".to_string()))
        .collect();
        assert_eq!(
            unknown_env_vars(&env),
            ["RAINCAST_BOGUS__X", "RAINCAST_RADARS", "RAINCAST_SOTRE"]
        );
    }

    /// Every `"RAINCAST_…"` name the code reads by its own name is in
    /// [`NAMED_ENV_VARS`], so the start-up warning never names a variable
    /// that something does read.
    #[test]
    fn every_named_variable_in_the_code_is_known() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() && !p.ends_with("target") {
                    rust_files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["services", "algorithms"] {
            rust_files(&root.join(dir), &mut files);
        }
        assert!(
            files.len() > 50,
            "{} files under {}",
            files.len(),
            root.display()
        );
        let mut unknown = std::collections::BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, _) in text.match_indices("\"RAINCAST_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let whole = text[i + 1 + name.len()..].starts_with('"');
                // The typos of `unknown_raincast_variables_are_listed`.
                let typo = ["RAINCAST_SOTRE", "RAINCAST_RADARS"].contains(&name.as_str());
                if whole
                    && !typo
                    && !name.contains("__")
                    && !name.ends_with('_')
                    && !NAMED_ENV_VARS.contains(&name.as_str())
                {
                    unknown.insert(name);
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "read by the code, not in NAMED_ENV_VARS: {unknown:?}"
        );
    }

    /// `raincast run` starts the demo radars only when nothing is
    /// configured: radars with their own sources, or on the default folder,
    /// are never replaced by it.
    #[test]
    fn configured_radars_are_not_the_demo() {
        let none = Config::from_toml("", &HashMap::new(), &Overrides::default()).unwrap();
        assert!(!none.source_given);
        for toml in [
            "[[radars]]\nid = \"katx\"\nsource = \"s3://unidata-nexrad-level2\"\nformat = \"nexrad\"\n",
            "[[radars]]\nid = \"bom02\"\n",
        ] {
            let c = Config::from_toml(toml, &HashMap::new(), &Overrides::default()).unwrap();
            assert!(c.source_given, "{toml}");
        }
    }

    /// (TOML text, environment, expected part of the error).
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

    #[test]
    fn invalid_settings_name_the_setting_and_origin() {
        let cases: Vec<Case> = vec![
            ("source = \"ftp://x\"", vec![], "source (from config file)"),
            (
                "",
                vec![("RAINCAST_STORE", "dynamodb://bad prefix")],
                "store (from environment)",
            ),
            (
                "",
                vec![("RAINCAST_BATCH_SIZE", "lots")],
                "RAINCAST_BATCH_SIZE",
            ),
            // Checks across two settings name the one that comes from the
            // environment as such (they said "from config" for both).
            (
                "",
                vec![("RAINCAST_FUTURE_TOLERANCE_MINUTES", "45")],
                "RAINCAST_FUTURE_TOLERANCE_MINUTES (from environment): 45 min is above lookback_minutes",
            ),
            (
                "[ingest]\nbackoff_base_seconds = 60\nbackoff_max_seconds = 30",
                vec![],
                "ingest.backoff_max_seconds (from config file): 30 s is below backoff_base_seconds (60 s)",
            ),
            (
                "[ingest]\nbackoff_base_seconds = 60",
                vec![("RAINCAST_BACKOFF_MAX_SECONDS", "30")],
                "RAINCAST_BACKOFF_MAX_SECONDS (from environment): 30 s is below",
            ),
            ("[ingest]\nbatch_size = 0", vec![], "batch_size"),
            ("[ingest]\nschedule = \"every minute\"", vec![], "schedule"),
            (
                "[ingest]\nlookback_minutes = -5",
                vec![],
                "lookback_minutes",
            ),
            ("[[radars]]\nid = \"a/b\"", vec![], "radars[0].id"),
            (
                "[[radars]]\nid = \"a\"\n[[radars]]\nid = \"a\"",
                vec![],
                "appears twice",
            ),
            (
                "[[radars]]\nid = \"a\"\nformat = \"tiff\"",
                vec![],
                "radars[0].format",
            ),
            (
                "[[radars]]\nid = \"a\"\nzr = { a = 0.0, b = 1.6 }",
                vec![],
                "radars[0].zr",
            ),
            (
                "[[radars]]\nid = \"a\"\nlocation = { lat = 95.0, lon = 0.0 }",
                vec![],
                "radars[0].location",
            ),
            (
                "[[radars]]\nid = \"a\"\nkey_template = \"{nope}\"",
                vec![],
                "key_template",
            ),
            ("listen = \"nowhere\"", vec![], "listen (from config)"),
            (
                "listen = \"127.0.0.1:1\"",
                vec![("RAINCAST_LISTEN", "nowhere")],
                "listen (from RAINCAST_LISTEN)",
            ),
            ("unknown_key = 1", vec![], "unknown"),
            (
                "",
                vec![("RAINCAST_FAILPOINT", "explode")],
                "RAINCAST_FAILPOINT",
            ),
            (
                "",
                vec![("RAINCAST_CREATE_TABLES", "maybe")],
                "RAINCAST_CREATE_TABLES",
            ),
        ];
        for (toml, e, want) in cases {
            let err = Config::from_toml(toml, &env(&e), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{toml:?} {e:?}: {err}");
        }
    }

    #[test]
    fn store_and_source_specs() {
        assert_eq!(
            StoreSpec::parse("x/y.redb").unwrap(),
            StoreSpec::Embedded {
                path: PathBuf::from("x/y.redb")
            }
        );
        assert_eq!(
            StoreSpec::parse("dynamodb://").unwrap(),
            StoreSpec::Dynamo {
                table_prefix: DEFAULT_TABLE_PREFIX.into()
            }
        );
        assert!(StoreSpec::parse("postgres://x").is_err());
        assert_eq!(
            SourceSpec::parse("file:///data").unwrap(),
            SourceSpec::Local {
                dir: PathBuf::from("/data")
            }
        );
        assert!(SourceSpec::parse("s3://").is_err());
        assert!(SourceSpec::parse("http://x").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn empty_cron_list_elements_are_refused() {
        // Found by the ingest_config fuzz target: "0 , * * * *" (no minute
        // at all) kept the scheduler searching for a next run (a timeout).
        for (schedule, field) in [
            ("0 , * * * *", 2),
            (", * * * * *", 1),
            ("0 0 1,,2 * * *", 3),
            ("0 0 0 1, * *", 4),
        ] {
            let text = format!("[ingest]\nschedule = {schedule:?}\n");
            let err = Config::from_toml(&text, &env(&[]), &Overrides::default()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("ingest.schedule (from config file)"),
                "{msg}"
            );
            assert!(msg.contains(&format!("field {field} ")), "{msg}");
        }
        assert_eq!(normalise_schedule("0 1,2 * * *").unwrap(), "0 0 1,2 * * *");
    }

    #[test]
    fn failpoint_and_schedule_from_env() {
        let e = env(&[
            ("RAINCAST_FAILPOINT", "pause_after_put:3"),
            ("RAINCAST_SCHEDULE", "*/2 * * * * *"),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.ingest.failpoint, Some(Failpoint::PauseAfterPut(3)));
        assert_eq!(c.ingest.schedule, "*/2 * * * * *");
        let e = env(&[("RAINCAST_FAILPOINT", "abort_decoding:poison")]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(
            c.ingest.failpoint,
            Some(Failpoint::AbortDecoding("poison".into()))
        );
    }

    #[test]
    fn reliability_limits_from_file_and_env() {
        let d = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(d.ingest.max_file_bytes, 256 << 20);
        assert_eq!(d.ingest.max_cells, 25_000_000);
        assert_eq!(d.ingest.future_tolerance, Duration::minutes(10));
        assert_eq!(d.ingest.settle, Duration::seconds(5));
        assert_eq!(d.ingest.max_attempts, 2);
        assert_eq!(d.ingest.key_time_tolerance, Duration::hours(24));
        let c = Config::from_toml(
            "[ingest]\nmax_file_mb = 1.5\nmax_cells = 1000\nfuture_tolerance_minutes = 2\n\
             settle_seconds = 0\nmax_attempts = 3\nkey_time_tolerance_hours = 0",
            &env(&[("RAINCAST_MAX_CELLS", "2000")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.ingest.max_file_bytes, 1_572_864);
        assert_eq!(c.ingest.max_cells, 2000, "the environment wins");
        assert_eq!(c.ingest.future_tolerance, Duration::minutes(2));
        assert_eq!(c.ingest.settle, Duration::zero());
        assert_eq!(c.ingest.max_attempts, 3);
        assert_eq!(c.ingest.key_time_tolerance, Duration::zero());
        let e = env(&[("RAINCAST_KEY_TIME_TOLERANCE_HOURS", "1.5")]);
        let c = Config::from_toml("", &e, &Overrides::default()).unwrap();
        assert_eq!(c.ingest.key_time_tolerance, Duration::minutes(90));
        for (toml, e, want) in [
            ("[ingest]\nmax_cells = 0", vec![], "ingest.max_cells"),
            (
                "",
                vec![("RAINCAST_MAX_CELLS", "500000001")],
                "RAINCAST_MAX_CELLS",
            ),
            ("[ingest]\nmax_file_mb = -1", vec![], "ingest.max_file_mb"),
            ("[ingest]\nmax_attempts = 0", vec![], "ingest.max_attempts"),
            (
                "[ingest]\nkey_time_tolerance_hours = -1",
                vec![],
                "ingest.key_time_tolerance_hours",
            ),
            (
                "[ingest]\nlookback_minutes = 5\nfuture_tolerance_minutes = 6",
                vec![],
                "ingest.future_tolerance_minutes",
            ),
        ] {
            let err = Config::from_toml(toml, &env(&e), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{toml:?} {e:?}: {err}");
        }
    }

    #[test]
    fn typed_sections_from_file_and_environment() {
        let d = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert!(d.api.cors_origins.is_empty());
        assert_eq!(d.nowcast.settings, nowcast::NowcastSettings::default());
        assert_eq!(d.nowcast.refresh(), std::time::Duration::from_secs(15));
        assert_eq!(d.notifier.outbox, Path::new("var").join("outbox"));
        assert!(d.notifier.places.is_empty());
        let mut demo = d.clone();
        demo.apply_demo_defaults();
        assert_eq!(demo.nowcast.settings.lead_step_min, Some(5));
        assert_eq!(demo.nowcast.refresh(), std::time::Duration::from_secs(5));
        assert_eq!(demo.ingest.schedule, "*/5 * * * * *");

        let text = r#"
            [api]
            cors_origins = ["*"]
            ready_max_age_s = 60
            [nowcast]
            max_lead_min = 60
            lead_step_min = 10
            smoothing = "none"
            probability_threshold_mm_h = 0.5
            [notifier]
            outbox = "/tmp/out"
            [[notifier.places]]
            name = "Zürich"
            lat = 47.377
            lon = 8.54
            time_zone = "Europe/Zurich"
        "#;
        let e = env(&[
            (
                "RAINCAST_CORS_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("RAINCAST_NOWCAST__FRAMES", "4"),
            ("RAINCAST_NOWCAST__THREADS", "2"),
            ("RAINCAST_NOWCAST__CATCH_UP_MINUTES", "1440"),
            ("RAINCAST_NOWCAST__PERSISTENCE_CACHE_MB", "64"),
            ("RAINCAST_API__CPU_QUEUE", "8"),
            ("RAINCAST_API__TILE_CACHE_MB", "16"),
            ("RAINCAST_API__PUBLIC_URL", "https://rain.example"),
            ("RAINCAST_NOTIFIER__DRY_RUN", "true"),
            ("RAINCAST_INGEST__BATCH_SIZE", "7"),
            ("RAINCAST_OUTBOX", "/tmp/env-out"),
        ]);
        let c = Config::from_toml(text, &e, &Overrides::default()).unwrap();
        assert_eq!(
            c.api.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!((c.api.ready_max_age_s, c.api.cpu_queue), (60, 8));
        assert_eq!(c.api.tile_cache_mb, 16);
        assert_eq!(c.api.public_url.as_deref(), Some("https://rain.example"));
        let n = &c.nowcast.settings;
        assert_eq!((n.max_lead_min, n.lead_step_min), (60, Some(10)));
        assert_eq!(n.config.frames, 4);
        assert_eq!(n.threads, 2);
        assert_eq!(n.catch_up_min, 1440);
        assert_eq!(n.persistence_cache_mb, 64);
        assert_eq!(
            n.config.smoothing,
            raincast_algorithms::nowcast::Smoothing::None
        );
        // `/v1/forecast` gives the nowcast's probability.
        assert_eq!(c.api.forecast_threshold_mm_h, 0.5);
        assert_eq!(c.ingest.batch_size, 7);
        assert!(c.notifier.dry_run);
        assert_eq!(c.notifier.outbox, PathBuf::from("/tmp/env-out"));
        assert_eq!(c.notifier.places[0].name, "Zürich");

        // Every bad value names its setting and where it came from.
        for (text, vars, want) in [
            ("[api]\nno_such_setting = 1", vec![], "no_such_setting"),
            (
                "[api]\nmax_connections = 0",
                vec![],
                "api.max_connections (from config file)",
            ),
            (
                "[api]\nbasemap_url = \"https://tiles.example/{zoom}/{x}/{y}.png\"",
                vec![],
                "api.basemap_url (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_API__MAX_CONNECTIONS", "0")],
                "RAINCAST_API__MAX_CONNECTIONS (from environment)",
            ),
            (
                "",
                vec![("RAINCAST_API__MAX_CONNECTIONS", "many")],
                "RAINCAST_API__MAX_CONNECTIONS (from environment)",
            ),
            (
                "[nowcast]\nmax_lead_min = 9999",
                vec![],
                "nowcast.max_lead_min (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_NOWCAST__FRAMES", "99")],
                "RAINCAST_NOWCAST__FRAMES (from environment)",
            ),
            (
                "[nowcast]\nthreads = 5000",
                vec![],
                "nowcast.threads (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_NOWCAST__CATCH_UP_MINUTES", "20000")],
                "RAINCAST_NOWCAST__CATCH_UP_MINUTES (from environment)",
            ),
            (
                "[nowcast]\npersistence_cache_mb = 9999999",
                vec![],
                "nowcast.persistence_cache_mb (from config file)",
            ),
            ("[nowcast]\nsmoothing = \"fancy\"", vec![], "smoothing"),
            (
                "",
                vec![("RAINCAST_INGEST__TILE_SIZE", "3")],
                "RAINCAST_INGEST__TILE_SIZE (from environment)",
            ),
            (
                "",
                vec![("RAINCAST_NOTIFIER__NO_SUCH", "1")],
                "RAINCAST_NOTIFIER__NO_SUCH (from environment)",
            ),
            (
                "[[notifier.places]]\nname = \"x\"\nlat = 99.0\nlon = 0.0",
                vec![],
                "notifier.places[0] (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_X_CONSUMER_KEY", "k")],
                "RAINCAST_X_CONSUMER_SECRET (from environment or SSM)",
            ),
            (
                "",
                vec![("RAINCAST_X_API_BASE", "ftp://x")],
                "RAINCAST_X_API_BASE (from environment)",
            ),
        ] {
            let err = Config::from_toml(text, &env(&vars), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?} {vars:?}: {err}");
        }
    }

    #[test]
    fn x_credentials_are_no_file_setting_and_never_print() {
        let vars: Vec<(&str, &str)> = notifier::X_CREDENTIAL_VARS
            .iter()
            .map(|k| (*k, "s3cr3t-value"))
            .collect();
        let c = Config::from_toml("", &env(&vars), &Overrides::default()).unwrap();
        let x = notifier::x_secrets(&Secrets::from_env(&env(&vars)))
            .unwrap()
            .expect("credentials");
        assert_eq!(x.access_secret.expose(), "s3cr3t-value");
        assert!(!format!("{c:?} {x:?}").contains("s3cr3t"));
        // Not a file setting.
        let err = Config::from_toml(
            "[notifier]\nconsumer_key = \"k\"",
            &env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("consumer_key"), "{err}");
    }
    #[test]
    fn the_queue_section_from_file_environment_and_flag() {
        let none = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(none.ingest.queue, None);

        let file = "[queue]\nurl = \"https://sqs.eu-west-1.amazonaws.com/1/file\"\n\
                    workers = 3\nall_radars = true\nreconcile_schedule = \"*/5 * * * *\"";
        let q = Config::from_toml(file, &env(&[]), &Overrides::default())
            .unwrap()
            .ingest
            .queue
            .unwrap();
        assert_eq!(q.url, "https://sqs.eu-west-1.amazonaws.com/1/file");
        assert_eq!(q.workers, 3);
        assert!(q.all_radars);
        assert_eq!(q.reconcile_schedule, "0 */5 * * * *");
        assert_eq!(q.visibility_timeout, std::time::Duration::from_secs(60));
        assert_eq!(q.wait, std::time::Duration::from_secs(20));

        // Defaults: every 15 minutes, one worker per core.
        let vars = [("RAINCAST_QUEUE_URL", "http://127.0.0.1:5000/1/short")];
        let q = Config::from_toml("", &env(&vars), &Overrides::default())
            .unwrap()
            .ingest
            .queue
            .unwrap();
        assert_eq!(q.url, "http://127.0.0.1:5000/1/short");
        assert_eq!(q.reconcile_schedule, queue::DEFAULT_RECONCILE_SCHEDULE);
        assert_eq!(q.workers, queue::default_workers());
        assert!(!q.all_radars);

        // flag > RAINCAST_QUEUE_URL > RAINCAST_QUEUE__URL > file.
        let vars = [
            ("RAINCAST_QUEUE__URL", "http://h/1/section-var"),
            ("RAINCAST_QUEUE__WORKERS", "7"),
        ];
        let q = Config::from_toml(file, &env(&vars), &Overrides::default())
            .unwrap()
            .ingest
            .queue
            .unwrap();
        assert_eq!((q.url.as_str(), q.workers), ("http://h/1/section-var", 7));
        let vars = [
            ("RAINCAST_QUEUE__URL", "http://h/1/section-var"),
            ("RAINCAST_QUEUE_URL", "http://h/1/short"),
        ];
        let c = Config::from_toml(file, &env(&vars), &Overrides::default()).unwrap();
        assert_eq!(c.ingest.queue.unwrap().url, "http://h/1/short");
        let cli = Overrides {
            queue: Some("http://h/1/flag".into()),
            ..Default::default()
        };
        let c = Config::from_toml(file, &env(&vars), &cli).unwrap();
        assert_eq!(c.ingest.queue.unwrap().url, "http://h/1/flag");

        // Errors name the setting and where it came from.
        let cases: Vec<Case> = vec![
            (
                "[queue]\nurl = \"sqs-queue\"",
                vec![],
                "queue.url (from config file)",
            ),
            (
                "",
                vec![("RAINCAST_QUEUE_URL", "ftp://x/y")],
                "RAINCAST_QUEUE_URL (from environment)",
            ),
            (
                "",
                vec![("RAINCAST_QUEUE__URL", "https://host")],
                "RAINCAST_QUEUE__URL (from environment)",
            ),
            (
                "[queue]\nurl = \"http://h/1/q\"\nworkers = 0",
                vec![],
                "queue.workers (from config file)",
            ),
            (
                "[queue]\nurl = \"http://h/1/q\"",
                vec![("RAINCAST_QUEUE__WAIT_SECONDS", "21")],
                "RAINCAST_QUEUE__WAIT_SECONDS (from environment)",
            ),
            (
                "[queue]\nurl = \"http://h/1/q\"\nreconcile_schedule = \"soon\"",
                vec![],
                "queue.reconcile_schedule (from config file)",
            ),
            ("[queue]\nlisting = true", vec![], "unknown field"),
        ];
        for (text, vars, want) in cases {
            let err = Config::from_toml(text, &env(&vars), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?} {vars:?}: {err}");
        }
        let cli = Overrides {
            queue: Some("queue".into()),
            ..Default::default()
        };
        let err = Config::from_toml("", &env(&[]), &cli)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--queue (from command line)"), "{err}");
    }

    /// The message of the error that `toml`, the environment `pairs` and
    /// the flags `cli` give.
    fn config_error(toml: &str, pairs: &[(&str, &str)], cli: &Overrides) -> String {
        Config::from_toml(toml, &env(pairs), cli)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_bad_schedule_or_file_limit_is_named_as_it_was_given() {
        let err = config_error(
            "",
            &[("RAINCAST_SCHEDULE", "garbage")],
            &Overrides::default(),
        );
        assert!(
            err.starts_with("RAINCAST_SCHEDULE (from environment): "),
            "{err}"
        );
        let err = config_error(
            "[ingest]\nschedule = \"garbage\"\n",
            &[],
            &Overrides::default(),
        );
        assert!(
            err.starts_with("ingest.schedule (from config file): "),
            "{err}"
        );
        // Six fields the parser refuses: it says only "ParseSchedule"; the
        // message says what a cron expression is.
        let err = config_error(
            "[ingest]\nschedule = \"0 0 25 * * *\"\n",
            &[],
            &Overrides::default(),
        );
        assert!(
            err.contains("is not a cron expression") && err.contains("e.g. \"0 * * * * *\""),
            "{err}"
        );
        // A duration out of range says the range.
        let err = config_error(
            "",
            &[("RAINCAST_LOOKBACK_MINUTES", "-5")],
            &Overrides::default(),
        );
        assert!(
            err.starts_with(
                "RAINCAST_LOOKBACK_MINUTES (from environment): -5 is out of range: from "
            ),
            "{err}"
        );
        let err = config_error("", &[("RAINCAST_MAX_FILE_MB", "0")], &Overrides::default());
        assert_eq!(
            err,
            "RAINCAST_MAX_FILE_MB (from environment): 0 is not in 0.000001..=65536"
        );
    }

    #[test]
    fn a_bad_batch_size_is_named_as_it_was_given() {
        let cli = Overrides {
            batch_size: Some(0),
            ..Default::default()
        };
        let err = config_error("", &[], &cli);
        assert!(
            err.starts_with("--batch-size (from command line): 0 "),
            "{err}"
        );
        let err = config_error("", &[("RAINCAST_BATCH_SIZE", "0")], &Overrides::default());
        assert!(
            err.starts_with("RAINCAST_BATCH_SIZE (from environment): 0 "),
            "{err}"
        );
        let err = config_error("[ingest]\nbatch_size = 0\n", &[], &Overrides::default());
        assert!(
            err.starts_with("ingest.batch_size (from config file): 0 "),
            "{err}"
        );
    }

    #[test]
    fn one_section_variable_alone_overrides_its_key() {
        // Regression: the overrides rebuild the whole file; a section the
        // file does not have must still default (it once failed with
        // "missing field `queue`" for any RAINCAST_{SECTION}__{KEY}).
        let vars = [("RAINCAST_NOTIFIER__ALLOW_PRIVATE_WEBHOOKS", "true")];
        let c = Config::from_toml("", &env(&vars), &Overrides::default()).unwrap();
        assert!(c.notifier.allow_private_webhooks);
        let vars = [("RAINCAST_SECRETS__REFRESH_SECONDS", "60")];
        let c = Config::from_toml("", &env(&vars), &Overrides::default()).unwrap();
        assert_eq!(c.secrets.refresh, std::time::Duration::from_secs(60));
    }

    #[test]
    fn webhook_and_mastodon_settings() {
        let d = Config::from_toml("", &env(&[]), &Overrides::default()).unwrap();
        assert!(!d.notifier.allow_private_webhooks);
        assert_eq!(d.notifier.max_subscriptions_per_key, 100);
        assert!(d.notifier.mastodon.is_none() && d.notifier.public_url.is_none());
        let text = "[notifier]\nallow_private_webhooks = true\nmax_subscriptions_per_key = 3\n\
                    public_url = \"https://rain.example.org/\"\n\
                    [notifier.mastodon]\nbase_url = \"https://m.example.org/\"";
        let vars = [(notifier::MASTODON_TOKEN_VAR, "t0k3n-value")];
        let c = Config::from_toml(text, &env(&vars), &Overrides::default()).unwrap();
        assert!(c.notifier.allow_private_webhooks);
        assert_eq!(c.notifier.max_subscriptions_per_key, 3);
        assert_eq!(
            c.notifier.public_url.as_deref(),
            Some("https://rain.example.org")
        );
        let m = c.notifier.mastodon.as_ref().expect("mastodon");
        assert_eq!(m.base_url, "https://m.example.org");
        match notifier::posting_account(Some(&m.base_url), &Secrets::from_env(&env(&vars))).unwrap()
        {
            notifier::PostingAccount::Mastodon { base_url, token } => {
                assert_eq!(base_url, "https://m.example.org");
                assert_eq!(token.expose(), "t0k3n-value");
            }
            other => panic!("not Mastodon: {other:?}"),
        }
        assert!(!format!("{c:?}").contains("t0k3n"), "the token printed");
        // A token without the table, the table without a token, both
        // accounts, and a zero limit are errors naming the setting.
        for (text, vars, want) in [
            (
                "",
                vec![(notifier::MASTODON_TOKEN_VAR, "t")],
                "RAINCAST_MASTODON_TOKEN",
            ),
            (
                "[notifier.mastodon]\nbase_url = \"https://m.example.org\"",
                vec![],
                "RAINCAST_MASTODON_TOKEN",
            ),
            (
                "[notifier.mastodon]\nbase_url = \"ftp://m\"",
                vec![(notifier::MASTODON_TOKEN_VAR, "t")],
                "notifier.mastodon.base_url",
            ),
            (
                "[notifier]\nmax_subscriptions_per_key = 0",
                vec![],
                "notifier.max_subscriptions_per_key",
            ),
        ] {
            let err = Config::from_toml(text, &env(&vars), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let mut both: Vec<(&str, &str)> = notifier::X_CREDENTIAL_VARS
            .iter()
            .map(|k| (*k, "v"))
            .collect();
        both.push((notifier::MASTODON_TOKEN_VAR, "t"));
        let err = Config::from_toml(
            "[notifier.mastodon]\nbase_url = \"https://m.example.org\"",
            &env(&both),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("posts to one"), "{err}");
    }
}
