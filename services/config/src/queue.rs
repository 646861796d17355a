//! The `[queue]` section: event-driven ingest from S3 event notifications
//! delivered to an SQS queue, with the listing kept as the reconciler.
//!
//! ```toml
//! [queue]
//! url = "https://sqs.us-east-1.amazonaws.com/123456789012/raincast-raw"  # RAINCAST_QUEUE_URL, --queue
//! reconcile_schedule = "0 */15 * * * *" # the listing pass while a queue is set
//! workers = 4                           # consumers per process; default: the number of cores
//! all_radars = false                    # true: take keys of radars that are not configured
//! visibility_timeout_seconds = 60       # hidden while processed, extended every third of it
//! wait_seconds = 20                     # long poll, 0..=20
//! reconcile_grace_seconds = 300         # the reconciler leaves objects younger than this to the queue
//! ```
//!
//! Every key can be set by `RAINCAST_QUEUE__{KEY}`; the URL also by
//! `RAINCAST_QUEUE_URL` and the `--queue` flag, which win.

use crate::{invalid, normalise_schedule, ConfigError, Origins};
use serde::Deserialize;
use std::time::Duration;

/// The reconciler's default schedule: every 15 minutes.
pub const DEFAULT_RECONCILE_SCHEDULE: &str = "0 */15 * * * *";

/// The validated `[queue]` section (present when a URL is configured).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// The SQS queue URL.
    pub url: String,
    /// Cron (6 fields) of the listing pass, which reconciles what the queue missed.
    pub reconcile_schedule: String,
    /// Consumers per process, each long-polling the queue.
    pub workers: usize,
    /// Take keys of radars that are not configured (the radar id from the
    /// key template's `{radar}`/`{RADAR}` folder) instead of skipping them.
    pub all_radars: bool,
    /// How long a received message stays hidden; extended every third of
    /// it while its files are processed.
    pub visibility_timeout: Duration,
    /// Long-poll wait of one `ReceiveMessage`.
    pub wait: Duration,
    /// The reconciler leaves objects modified less than this ago to the
    /// queue (their notification may still be on its way).
    pub reconcile_grace: chrono::Duration,
}

/// The `[queue]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QueueFile {
    url: Option<String>,
    reconcile_schedule: Option<String>,
    workers: Option<usize>,
    all_radars: Option<bool>,
    visibility_timeout_seconds: Option<u64>,
    wait_seconds: Option<u64>,
    reconcile_grace_seconds: Option<u64>,
}

/// The number of cores (at least 1).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl QueueSettings {
    /// `url` is a URL given by a flag or a short variable, with the
    /// setting's name and origin, which wins over the section's; `None` =
    /// the section's `url`, and without one no queue.
    pub(crate) fn build(
        f: &QueueFile,
        url: Option<(String, String, &'static str)>,
        origins: &Origins,
    ) -> Result<Option<Self>, ConfigError> {
        let at = |key: &str| origins.of("queue", key);
        let (url, url_setting, url_origin) = match url {
            Some(u) => u,
            None => match &f.url {
                Some(u) if !u.trim().is_empty() => {
                    let (setting, origin) = at("url");
                    (u.trim().to_string(), setting, origin)
                }
                _ => return Ok(None),
            },
        };
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let path_ok = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .is_some_and(|(host, path)| !host.is_empty() && !path.trim_matches('/').is_empty());
        if !(scheme_ok && path_ok) {
            return Err(invalid(
                &url_setting,
                url_origin,
                format!(
                    "{url:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
                ),
            ));
        }
        let reconcile_schedule = match &f.reconcile_schedule {
            None => DEFAULT_RECONCILE_SCHEDULE.to_string(),
            Some(s) => normalise_schedule(s).map_err(|e| {
                let (setting, origin) = at("reconcile_schedule");
                invalid(&setting, origin, e)
            })?,
        };
        let ranged =
            |key: &str, v: Option<u64>, default: u64, range: std::ops::RangeInclusive<u64>| {
                let v = v.unwrap_or(default);
                if range.contains(&v) {
                    Ok(v)
                } else {
                    let (setting, origin) = at(key);
                    Err(invalid(
                        &setting,
                        origin,
                        format!("{v} is not in {}..={}", range.start(), range.end()),
                    ))
                }
            };
        let workers = ranged(
            "workers",
            f.workers.map(|w| w as u64),
            default_workers() as u64,
            1..=256,
        )? as usize;
        let visibility = ranged(
            "visibility_timeout_seconds",
            f.visibility_timeout_seconds,
            60,
            3..=43_200,
        )?;
        let wait = ranged("wait_seconds", f.wait_seconds, 20, 0..=20)?;
        let grace = ranged(
            "reconcile_grace_seconds",
            f.reconcile_grace_seconds,
            300,
            0..=86_400,
        )?;
        Ok(Some(QueueSettings {
            url,
            reconcile_schedule,
            workers,
            all_radars: f.all_radars.unwrap_or(false),
            visibility_timeout: Duration::from_secs(visibility),
            wait: Duration::from_secs(wait),
            reconcile_grace: chrono::Duration::seconds(grace as i64),
        }))
    }
}
