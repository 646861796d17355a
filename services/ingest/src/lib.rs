//! Raincast ingest: raw radar files in a bucket become sparse scans in a store.
//!
//! * [`config`]: TOML + `RAINCAST_*` environment + flags, validated once.
//! * [`layout`]: key templates (`{radar}/{yyyy}/{mm}/{dd}/{file}`) and times from keys.
//! * [`pass`]: one run for one radar (lease, list, fetch, process, store,
//!   checkpoint, quarantine).
//! * [`jobs`]: the cron job per radar with backoff and graceful shutdown.
//! * [`process`]: the bytes → sparse scan seam ([`process::ScanProcessor`]).
//! * [`queue`]: the queue consumer (S3 event notifications through SQS).
//! * [`metrics`]: Prometheus counters, gauges and histograms.
//! * [`connect`]: configuration → S3/local sources and DynamoDB/embedded stores.
//! * [`service`]: `run(settings, dependencies, shutdown)`: the scheduled jobs, or one pass.

pub use raincast_config as config;
pub mod connect;
pub mod decode_processor;
pub mod demo;
pub mod jobs;
pub use raincast_config::layout;
pub mod metrics;
pub mod pass;
pub mod process;
pub mod queue;
pub mod service;
#[cfg(test)]
mod test_support;

pub use config::{Config, ConfigError, Overrides, RadarConfig};
pub use connect::{ConnectError, Connector, Stores};
pub use decode_processor::DecodeProcessor;
pub use jobs::run_scheduled;
pub use metrics::IngestMetrics;
pub use pass::{IngestError, Ingester, PassSummary, RadarSource};
pub use process::{ProcessedScan, Rejection, ScanProcessor};
pub use queue::{QueueConsumer, QueueDeps, QueueSummary};
pub use service::{run, run_once, IngestDeps, OnceReport};
