//! From configuration to live adapters: sources, stores, radars.

use crate::config::{Config, RadarConfig, SourceSpec, StoreSpec};
use crate::pass::RadarSource;
use aws_config::SdkConfig;
use raincast_store::aws::{s3_sdk_config_from_env, sdk_config_from_env};
use raincast_store::{
    DynamoOptions, DynamoStore, EmbeddedStore, LocalSource, S3Source, ScanSource, ScanStore,
    SqsQueue, StateStore, StoreError,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Longest wait for SQS's answer about the queue at start.
const QUEUE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A source, store or radar list could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("store {spec}: {source}")]
    Store {
        spec: String,
        #[source]
        source: StoreError,
    },
    #[error("source {spec}: {source}")]
    Source {
        spec: String,
        #[source]
        source: StoreError,
    },
    #[error("queue {url}: {source}")]
    Queue {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "[queue] url {url}: the queue's notifications name S3 objects, but the source {source_desc} \
         is a folder (set --source or RAINCAST_SOURCE to the bucket, s3://BUCKET/PREFIX)"
    )]
    QueueWithoutS3 { url: String, source_desc: String },
    #[error(
        "no store at {path}: nothing was ever written there (check --store or RAINCAST_STORE)"
    )]
    NoStore { path: String },
    #[error("no radars configured, and none found in {source_desc} (expected folders named after radars under {template})")]
    NoRadars {
        source_desc: String,
        template: String,
    },
}

/// The scan and state stores (one backend serves both).
#[derive(Clone)]
pub struct Stores {
    pub scans: Arc<dyn ScanStore>,
    pub state: Arc<dyn StateStore>,
    /// Set for the embedded store, which can purge expired scans itself.
    pub embedded: Option<EmbeddedStore>,
    /// What it is, for logs.
    pub description: String,
}

/// Opens sources and stores for one configuration, loading the AWS SDK
/// configuration once and only when something needs it.
pub struct Connector<'a> {
    cfg: &'a Config,
    env: &'a HashMap<String, String>,
    s3_sdk: OnceCell<SdkConfig>,
    dynamo_sdk: OnceCell<SdkConfig>,
}

impl<'a> Connector<'a> {
    /// `env` is the process environment (for the endpoint check that picks
    /// path-style S3 URLs); the SDK itself reads its standard variables.
    pub fn new(cfg: &'a Config, env: &'a HashMap<String, String>) -> Self {
        Self {
            cfg,
            env,
            s3_sdk: OnceCell::new(),
            dynamo_sdk: OnceCell::new(),
        }
    }

    async fn s3_sdk(&self) -> &SdkConfig {
        let (region, anonymous) = (
            self.cfg.aws.default_region.clone(),
            self.cfg.aws.s3_anonymous,
        );
        self.s3_sdk
            .get_or_init(|| async move {
                let (cfg, unsigned) = s3_sdk_config_from_env(&region, anonymous).await;
                if unsigned {
                    tracing::info!(
                        explicit = anonymous.is_some(),
                        "S3 source: sending unsigned requests (public bucket; no AWS credentials \
                         configured or s3_anonymous set)"
                    );
                }
                cfg
            })
            .await
    }

    async fn dynamo_sdk(&self) -> &SdkConfig {
        let region = self.cfg.aws.default_region.clone();
        self.dynamo_sdk
            .get_or_init(|| async move { sdk_config_from_env(&region, false).await })
            .await
    }

    /// Opens the configured store.
    /// [`Self::stores`] for a command that only reads: an embedded store
    /// must exist already (a mistyped `--store` is an error, not a new
    /// empty store that answers "nothing").
    pub async fn existing_stores(&self) -> Result<Stores, ConnectError> {
        if let StoreSpec::Embedded { path } = &self.cfg.store {
            if !path.exists() {
                return Err(ConnectError::NoStore {
                    path: path.display().to_string(),
                });
            }
        }
        self.stores().await
    }

    pub async fn stores(&self) -> Result<Stores, ConnectError> {
        let spec = &self.cfg.store;
        let err = |source| ConnectError::Store {
            spec: spec.to_string(),
            source,
        };
        match spec {
            StoreSpec::Embedded { path } => {
                let store = EmbeddedStore::open(path.clone(), self.cfg.retention)
                    .await
                    .map_err(err)?;
                Ok(Stores {
                    scans: Arc::new(store.clone()),
                    state: Arc::new(store.clone()),
                    embedded: Some(store),
                    description: format!("embedded {}", path.display()),
                })
            }
            StoreSpec::Dynamo { table_prefix } => {
                let sdk = self.dynamo_sdk().await;
                let store = DynamoStore::connect(
                    sdk,
                    &DynamoOptions {
                        table_prefix: table_prefix.clone(),
                        create_tables: self.cfg.create_tables,
                        retention: self.cfg.retention,
                    },
                )
                .await
                .map_err(err)?;
                let (a, b) = store.table_names();
                let description = format!("dynamodb tables {a}, {b}");
                Ok(Stores {
                    scans: Arc::new(store.clone()),
                    state: Arc::new(store),
                    embedded: None,
                    description,
                })
            }
        }
    }

    /// Opens one source.
    pub async fn source(&self, spec: &SourceSpec) -> Result<Arc<dyn ScanSource>, ConnectError> {
        match spec {
            SourceSpec::Local { dir } => Ok(Arc::new(LocalSource::new(dir.clone()))),
            SourceSpec::S3 { url } => {
                let sdk = self.s3_sdk().await;
                let path_style = self.cfg.aws.s3_path_style.unwrap_or_else(|| {
                    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                        .iter()
                        .any(|k| self.env.get(*k).is_some_and(|v| !v.is_empty()))
                });
                let s3 = S3Source::from_url(sdk, url, path_style).map_err(|source| {
                    ConnectError::Source {
                        spec: url.clone(),
                        source,
                    }
                })?;
                Ok(Arc::new(s3))
            }
        }
    }

    /// The notification queue of `[queue]`, with the global source and
    /// template, or `None` without a queue. The SDK's standard variables
    /// apply (`AWS_ENDPOINT_URL_SQS` points it at a compatible server).
    pub async fn queue(&self) -> Result<Option<crate::queue::QueueDeps>, ConnectError> {
        let Some(q) = &self.cfg.ingest.queue else {
            return Ok(None);
        };
        // Notifications name S3 objects: with only folder sources every one
        // would be deleted as outside the source.
        let s3 = std::iter::once(&self.cfg.source)
            .chain(self.cfg.radars.iter().map(|r| self.cfg.source_of(r)))
            .any(|s| matches!(s, SourceSpec::S3 { .. }));
        if !s3 {
            return Err(ConnectError::QueueWithoutS3 {
                url: q.url.clone(),
                source_desc: self.cfg.source.to_string(),
            });
        }
        let sdk = self.dynamo_sdk().await;
        let queue = SqsQueue::new(sdk, &q.url).map_err(|source| ConnectError::Queue {
            url: q.url.clone(),
            source,
        })?;
        // A queue that does not exist stops the start (it would otherwise
        // be retried for ever, leaving everything to the reconciler); SQS
        // not answering now (or within 10 s: the start must not wait on a
        // hung endpoint) does not: the consumer keeps trying.
        match tokio::time::timeout(QUEUE_CHECK_TIMEOUT, queue.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(source @ StoreError::NotFound { .. })) => {
                return Err(ConnectError::Queue {
                    url: q.url.clone(),
                    source,
                })
            }
            Ok(Err(e)) => tracing::warn!(queue = %q.url, error = %e,
                "cannot ask SQS about the queue now; the consumer keeps trying"),
            Err(_) => tracing::warn!(queue = %q.url, timeout_s = QUEUE_CHECK_TIMEOUT.as_secs(),
                "cannot ask SQS about the queue now (no answer); the consumer keeps trying"),
        }
        Ok(Some(crate::queue::QueueDeps {
            queue: Arc::new(queue),
            source: self.source(&self.cfg.source).await?,
            key_template: self.cfg.key_template.clone(),
        }))
    }

    /// Every configured radar with its source. Without configured radars,
    /// and with a template whose first folder is `{radar}`, the radars are
    /// the folders at the top of the source.
    pub async fn radar_sources(&self) -> Result<Vec<RadarSource>, ConnectError> {
        let mut radars = self.cfg.radars.clone();
        if radars.is_empty() {
            let source = self.source(&self.cfg.source).await?;
            radars = discover_radars(source.as_ref(), self.cfg)
                .await
                .map_err(|e| ConnectError::Source {
                    spec: self.cfg.source.to_string(),
                    source: e,
                })?;
            let all_radars = self.cfg.ingest.queue.as_ref().is_some_and(|q| q.all_radars);
            if radars.is_empty() && !all_radars {
                return Err(ConnectError::NoRadars {
                    source_desc: source.describe(),
                    template: self.cfg.key_template.as_str().to_string(),
                });
            }
        }
        let mut out = Vec::with_capacity(radars.len());
        for r in radars {
            let source = self.source(self.cfg.source_of(&r)).await?;
            out.push(RadarSource { radar: r, source });
        }
        Ok(out)
    }
}

/// Radars named by the top folders of a `{radar}/...` layout.
async fn discover_radars(
    source: &dyn ScanSource,
    cfg: &Config,
) -> Result<Vec<RadarConfig>, StoreError> {
    if !cfg.key_template.as_str().starts_with("{radar}/") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for dir in source.list_dirs("").await? {
        let id = dir.trim_end_matches('/');
        if raincast_store::model::validate_radar_id(id).is_ok() {
            out.push(RadarConfig::ad_hoc(id, &cfg.key_template));
        }
    }
    Ok(out)
}
