//! DynamoDB (or a DynamoDB-compatible server) as [`ScanStore`](crate::ScanStore)
//! and [`StateStore`](crate::StateStore).
//!
//! Two tables, named `{prefix}scans` and `{prefix}state`
//! (see docs/ARCHITECTURE.md, "DynamoDB design"):
//!
//! **scans** — partition key `pk` = radar id, sort key `sk` = scan time plus tile:
//! * tile parts: `sk = {time}#{digest}#{row:05}.{col:05}#{part:02}`, attribute
//!   `b` (bytes, at most [`limits::MAX_TILE_PART_BYTES`]) and `np` (parts);
//! * the manifest, written last: `sk = {time}`, plus `mt = {time}` which
//!   puts it (and only it) in the local secondary index `by_time`, used for
//!   time ranges and "latest" without reading any tile. Scan listings
//!   ([`ScanStore::list_entries`](crate::ScanStore::list_entries)) project only `mt`, `rc`, `by`, `nt` (tile
//!   count), `ing` and `ttl`, not the header or the tile index.
//!
//! Every item carries `ttl` (epoch seconds) = store time + retention
//! (7 days by default), DynamoDB's TTL attribute. TTL deletes lazily, so
//! every read also drops items whose `ttl` has passed.
//!
//! The manifest put is conditional (`attribute_not_exists(pk)`): the first
//! writer of a scan wins, a repeated or concurrent put is a harmless no-op.
//! Tiles are keyed by the content digest, so two writers with different
//! encodings never mix their tiles; the losing writer's tiles expire by TTL.
//!
//! **state** — `pk`/`sk` strings: `radar#{id}`/`checkpoint`,
//! `radar#{id}`/`a#{key}` (decode attempts), `radar#{id}`/`q#{key}`
//! (quarantine), `lease#{name}`/`lease`, and the versioned records of the
//! notifier and others: `records`/`{key}` with `v` (text) and `ver`
//! (version). Leases use conditional writes on their owner and expiry,
//! records on `ver`.
//!
//! The code follows that split: `item` encodes records as attribute values
//! and back (and lays out the keys), `tables` names, creates and reads the
//! tables, `scans` and `state` implement [`ScanStore`](crate::ScanStore) and
//! [`StateStore`](crate::StateStore), [`limits`] holds DynamoDB's size and
//! batch limits.

pub mod limits;

pub(crate) mod item;
mod scans;
mod state;
mod tables;

pub use tables::{MANIFEST_INDEX, TTL_ATTRIBUTE};

use crate::error::{StoreError, StoreResult};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use chrono::Duration;

const BACKEND: &str = "dynamodb";

/// Settings of [`DynamoStore`].
#[derive(Debug, Clone)]
pub struct DynamoOptions {
    /// Table names are `{table_prefix}scans` and `{table_prefix}state`.
    pub table_prefix: String,
    /// Create missing tables (and enable TTL) at connect. Off in production,
    /// where CloudFormation owns the tables.
    pub create_tables: bool,
    /// How long stored scans, quarantine, attempt and versioned records live.
    pub retention: Duration,
}

impl Default for DynamoOptions {
    fn default() -> Self {
        Self {
            table_prefix: "raincast-".into(),
            create_tables: false,
            retention: Duration::days(7),
        }
    }
}

/// DynamoDB adapter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    scans: String,
    state: String,
    retention: Duration,
}

impl DynamoStore {
    /// Connects and, with `create_tables`, creates missing tables and waits
    /// until they are active. Without it, checks that both tables exist.
    pub async fn connect(sdk: &SdkConfig, opts: &DynamoOptions) -> StoreResult<Self> {
        if opts.retention <= Duration::zero() {
            return Err(StoreError::invalid("retention", "must be positive"));
        }
        let store = Self {
            client: Client::new(sdk),
            scans: format!("{}scans", opts.table_prefix),
            state: format!("{}state", opts.table_prefix),
            retention: opts.retention,
        };
        for (table, with_index) in [(store.scans.clone(), true), (store.state.clone(), false)] {
            if opts.create_tables {
                store.ensure_table(&table, with_index).await?;
            } else if !store.table_exists(&table).await? {
                return Err(StoreError::NotFound {
                    backend: BACKEND,
                    what: format!("table {table} (pass --create-tables or create it with the CloudFormation stack)"),
                });
            }
        }
        Ok(store)
    }

    /// The client (tests use it to inspect raw items).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
