//! DynamoDB (or a DynamoDB-compatible server) as [`ScanStore`] and [`StateStore`].
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
//!   ([`ScanStore::list_entries`]) project only `mt`, `rc`, `by`, `nt` (tile
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
//! `radar#{id}`/`q#{key}` (quarantine), `lease#{name}`/`lease`,
//! `claim#{key}`/`claim`, and the versioned records of the notifier and
//! others: `records`/`{key}` with `v` (text) and `ver` (version). Leases and
//! claims use conditional writes on their owner and expiry, records on
//! `ver`.

pub mod limits;

use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    parse_time_key, record_conflict, time_key, truncate_to_seconds, Checkpoint, ClaimOutcome,
    ClaimRecord, LeaseOutcome, LeaseRecord, NewScan, PutOutcome, QuarantineRecord, ScanEntry,
    ScanManifest, StoredScan, Tile, TileRef, VersionedRecord,
};
use crate::{ScanStore, StateStore};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, PutRequest, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, TimeZone, Utc};
use limits::{check_item, tile_parts, write_with_retries, Item};
use std::collections::HashMap;

const BACKEND: &str = "dynamodb";
/// The local secondary index that holds manifests only.
pub const MANIFEST_INDEX: &str = "by_time";
/// Tile count of a manifest item (what a listing shows instead of the index).
const TILE_COUNT: &str = "nt";
/// The attributes a scan listing reads (see [`entry_from_item`]); the names
/// go through `#` placeholders because `BY` and `TTL` are reserved words.
pub(crate) const ENTRY_ATTRIBUTES: [&str; 6] = ["mt", "rc", "by", TILE_COUNT, "ing", TTL_ATTRIBUTE];

/// The TTL attribute of every table.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// Settings of [`DynamoStore`].
#[derive(Debug, Clone)]
pub struct DynamoOptions {
    /// Table names are `{table_prefix}scans` and `{table_prefix}state`.
    pub table_prefix: String,
    /// Create missing tables (and enable TTL) at connect. Off in production,
    /// where CloudFormation owns the tables.
    pub create_tables: bool,
    /// How long stored scans, quarantine and claim records live.
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

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("string attribute {name} missing"),
        )),
    }
}

fn get_n(item: &Item, name: &str) -> StoreResult<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::corrupt("dynamodb item", format!("number {name} = {v:?}"))),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("number attribute {name} missing"),
        )),
    }
}

fn get_b<'a>(item: &'a Item, name: &str) -> StoreResult<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        _ => Err(StoreError::corrupt(
            "dynamodb item",
            format!("binary attribute {name} missing"),
        )),
    }
}

fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn epoch(t: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_opt(t, 0)
        .single()
        .ok_or_else(|| StoreError::corrupt("dynamodb item", format!("epoch {t}")))
}

fn epoch_ms(t: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t)
        .single()
        .ok_or_else(|| StoreError::corrupt("dynamodb item", format!("epoch ms {t}")))
}

/// Tile index in the manifest: 8 bytes per tile (row u16, col u16, len u32, LE).
fn encode_tile_index(tiles: &[TileRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tiles.len() * 8);
    for t in tiles {
        out.extend_from_slice(&t.row.to_le_bytes());
        out.extend_from_slice(&t.col.to_le_bytes());
        out.extend_from_slice(&t.len.to_le_bytes());
    }
    out
}

fn decode_tile_index(b: &[u8]) -> StoreResult<Vec<TileRef>> {
    if !b.len().is_multiple_of(8) {
        return Err(StoreError::corrupt(
            "manifest",
            "tile index length not a multiple of 8",
        ));
    }
    Ok(b.chunks_exact(8)
        .map(|c| TileRef {
            row: u16::from_le_bytes([c[0], c[1]]),
            col: u16::from_le_bytes([c[2], c[3]]),
            len: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The sort-key prefix of every tile part of one stored scan.
fn tiles_prefix(time: DateTime<Utc>, digest: &str) -> String {
    format!("{}#{digest}#", time_key(time))
}

fn tile_sk(time: DateTime<Utc>, digest: &str, row: u16, col: u16, part: usize) -> String {
    format!("{}{row:05}.{col:05}#{part:02}", tiles_prefix(time, digest))
}

/// Parses `...#{row}.{col}#{part}` at the end of a tile sort key.
fn parse_tile_sk(sk: &str) -> StoreResult<(u16, u16, usize)> {
    let bad = || StoreError::corrupt("tile key", sk.to_string());
    let mut it = sk.rsplit('#');
    let part = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let (r, c) = it.next().ok_or_else(bad)?.split_once('.').ok_or_else(bad)?;
    Ok((
        r.parse().map_err(|_| bad())?,
        c.parse().map_err(|_| bad())?,
        part,
    ))
}

fn manifest_item(m: &ScanManifest) -> Item {
    let tk = time_key(m.time);
    let mut it = Item::new();
    it.insert("pk".into(), s(&m.radar));
    it.insert("sk".into(), s(&tk));
    it.insert("mt".into(), s(&tk));
    it.insert("src".into(), s(&m.source_key));
    it.insert("fmt".into(), s(&m.format));
    it.insert("dg".into(), s(&m.digest));
    it.insert("hdr".into(), AttributeValue::B(Blob::new(m.header.clone())));
    it.insert("rc".into(), n(m.rain_cells as i64));
    it.insert(
        "tl".into(),
        AttributeValue::B(Blob::new(encode_tile_index(&m.tiles))),
    );
    it.insert("by".into(), n(m.bytes as i64));
    it.insert(TILE_COUNT.into(), n(m.tiles.len() as i64));
    it.insert("ing".into(), n(m.ingested_at.timestamp()));
    it.insert(TTL_ATTRIBUTE.into(), n(m.expires_at.timestamp()));
    it
}

fn manifest_from_item(it: &Item) -> StoreResult<ScanManifest> {
    Ok(ScanManifest {
        radar: get_s(it, "pk")?.to_string(),
        time: parse_time_key(get_s(it, "mt")?)?,
        source_key: get_s(it, "src")?.to_string(),
        format: get_s(it, "fmt")?.to_string(),
        digest: get_s(it, "dg")?.to_string(),
        header: get_b(it, "hdr")?.to_vec(),
        rain_cells: get_n(it, "rc")?.max(0) as u64,
        tiles: decode_tile_index(get_b(it, "tl")?)?,
        bytes: get_n(it, "by")?.max(0) as u64,
        ingested_at: epoch(get_n(it, "ing")?)?,
        expires_at: epoch(get_n(it, TTL_ATTRIBUTE)?)?,
    })
}

/// A listing entry from a manifest item read with [`ENTRY_ATTRIBUTES`];
/// `None` for a manifest written before items carried their tile count.
fn entry_from_item(it: &Item) -> StoreResult<Option<ScanEntry>> {
    if !it.contains_key(TILE_COUNT) {
        return Ok(None);
    }
    Ok(Some(ScanEntry {
        time: parse_time_key(get_s(it, "mt")?)?,
        rain_cells: get_n(it, "rc")?.max(0) as u64,
        bytes: get_n(it, "by")?.max(0) as u64,
        tiles: get_n(it, TILE_COUNT)?.max(0) as usize,
        ingested_at: epoch(get_n(it, "ing")?)?,
        expires_at: epoch(get_n(it, TTL_ATTRIBUTE)?)?,
    }))
}

/// Every item (one per tile part) that stores the tiles of `scan`.
pub(crate) fn tile_items(
    scan: &NewScan,
    digest: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<Vec<Item>> {
    let time = truncate_to_seconds(scan.time);
    let mut out = Vec::new();
    for tile in &scan.tiles {
        let parts = tile_parts(&tile.bytes);
        for (i, part) in parts.iter().enumerate() {
            let mut it = Item::new();
            it.insert("pk".into(), s(&scan.radar));
            it.insert("sk".into(), s(tile_sk(time, digest, tile.row, tile.col, i)));
            it.insert("b".into(), AttributeValue::B(Blob::new(part.to_vec())));
            it.insert("np".into(), n(parts.len() as i64));
            it.insert(TTL_ATTRIBUTE.into(), n(expires_at.timestamp()));
            check_item(&format!("tile ({}, {}) part {i}", tile.row, tile.col), &it)?;
            out.push(it);
        }
    }
    Ok(out)
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
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

    /// The table names (scans, state).
    pub fn table_names(&self) -> (&str, &str) {
        (&self.scans, &self.state)
    }

    /// The client (tests use it to inspect raw items).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn table_status(&self, table: &str) -> StoreResult<Option<TableStatus>> {
        match self.client.describe_table().table_name(table).send().await {
            Ok(resp) => Ok(resp.table().and_then(|t| t.table_status().cloned())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(BACKEND, "DescribeTable", e)),
        }
    }

    async fn table_exists(&self, table: &str) -> StoreResult<bool> {
        Ok(self.table_status(table).await?.is_some())
    }

    async fn ensure_table(&self, table: &str, with_index: bool) -> StoreResult<()> {
        if self.table_status(table).await?.is_none() {
            self.create_table(table, with_index).await?;
        }
        // Wait until ACTIVE (servers keep new tables CREATING for a while).
        let mut waited = std::time::Duration::ZERO;
        loop {
            match self.table_status(table).await? {
                Some(TableStatus::Active) => break,
                _ if waited > std::time::Duration::from_secs(120) => {
                    return Err(StoreError::Unavailable {
                        backend: BACKEND,
                        op: "CreateTable",
                        reason: format!("table {table} not active after 120 s"),
                    })
                }
                _ => {
                    let step = std::time::Duration::from_millis(200);
                    tokio::time::sleep(step).await;
                    waited += step;
                }
            }
        }
        let ttl = self
            .client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(|e| StoreError::invalid("ttl", e.to_string()))?,
            )
            .send()
            .await;
        if let Err(e) = ttl {
            // Already enabled, or a server without TTL support (dynalite):
            // readers filter expired items anyway.
            tracing::debug!(table, error = %crate::aws::error_chain(&e), "TTL not enabled");
        }
        Ok(())
    }

    async fn create_table(&self, table: &str, with_index: bool) -> StoreResult<()> {
        let key = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(|e| StoreError::invalid("key schema", e.to_string()))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::invalid("attribute definition", e.to_string()))
        };
        let mut req = self
            .client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?);
        if with_index {
            req = req
                .attribute_definitions(attr("mt")?)
                .local_secondary_indexes(
                    LocalSecondaryIndex::builder()
                        .index_name(MANIFEST_INDEX)
                        .key_schema(key("pk", KeyType::Hash)?)
                        .key_schema(key("mt", KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| StoreError::invalid("index", e.to_string()))?,
                );
        }
        match req.send().await {
            Ok(_) => {
                tracing::info!(table, "created DynamoDB table");
                Ok(())
            }
            // Another instance created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(BACKEND, "CreateTable", e)),
        }
    }

    async fn get_item(&self, table: &str, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "GetItem", e))?;
        Ok(resp.item().cloned())
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`.
    async fn query_prefix(&self, table: &str, pk: &str, prefix: &str) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(BACKEND, "Query", e))?;
            out.extend(resp.items().iter().cloned());
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Manifests of `radar` with time in `[from, to]` from the `by_time`
    /// index, oldest first (or newest first with `newest_first`), stopping
    /// after `limit` unexpired ones.
    async fn query_manifests(
        &self,
        radar: &str,
        from: &str,
        to: &str,
        newest_first: bool,
        limit: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanManifest>> {
        let items = self
            .query_index(radar, (from, to), newest_first, limit, false, now)
            .await?;
        items.iter().map(manifest_from_item).collect()
    }

    /// The unexpired manifest items of `radar` with time in `range` from the
    /// `by_time` index, at most `limit`; with `entries_only`, only
    /// [`ENTRY_ATTRIBUTES`] are read.
    pub(crate) async fn query_index(
        &self,
        radar: &str,
        (from, to): (&str, &str),
        newest_first: bool,
        limit: usize,
        entries_only: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        if limit == 0 {
            return Ok(out);
        }
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.scans)
                .index_name(MANIFEST_INDEX)
                .key_condition_expression("pk = :pk AND mt BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(radar))
                .expression_attribute_values(":a", s(from))
                .expression_attribute_values(":b", s(to))
                .scan_index_forward(!newest_first)
                .consistent_read(true);
            if entries_only {
                let names: Vec<String> = ENTRY_ATTRIBUTES.iter().map(|a| format!("#{a}")).collect();
                q = q.projection_expression(names.join(", "));
                for a in ENTRY_ATTRIBUTES {
                    q = q.expression_attribute_names(format!("#{a}"), a);
                }
                // "mt" is also in the key condition: it takes the same placeholder.
                q = q.key_condition_expression("pk = :pk AND #mt BETWEEN :a AND :b");
            }
            let page = if entries_only { 1000 } else { 100 };
            let resp = q
                .limit(limit.clamp(1, page) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(BACKEND, "Query", e))?;
            for it in resp.items() {
                if epoch(get_n(it, TTL_ATTRIBUTE)?)? > now {
                    out.push(it.clone());
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes items with BatchWriteItem: at most 25 per call, unprocessed
    /// items retried with backoff. Public so that the limit tests can drive
    /// it against a real server.
    pub async fn batch_put(&self, table: &str, items: Vec<Item>) -> StoreResult<u32> {
        for it in &items {
            check_item("item", it)?;
        }
        let mut requests = Vec::with_capacity(items.len());
        for it in items {
            let put = PutRequest::builder()
                .set_item(Some(it))
                .build()
                .map_err(|e| StoreError::invalid("put request", e.to_string()))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let client = self.client.clone();
        let table = table.to_string();
        write_with_retries(requests, move |batch| {
            let client = client.clone();
            let table = table.clone();
            async move {
                let resp = client
                    .batch_write_item()
                    .request_items(&table, batch)
                    .send()
                    .await
                    .map_err(|e| sdk_error(BACKEND, "BatchWriteItem", e))?;
                Ok(resp
                    .unprocessed_items()
                    .and_then(|m| m.get(&table))
                    .cloned()
                    .unwrap_or_default())
            }
        })
        .await
    }

    /// Writes the tiles of a scan without its manifest: what a crash between
    /// the two leaves behind. Tests use it to check that such leftovers are
    /// invisible and harmless.
    pub async fn put_tiles_only(&self, scan: &NewScan, now: DateTime<Utc>) -> StoreResult<()> {
        scan.validate()?;
        let items = tile_items(scan, &scan.digest(), now + self.retention)?;
        self.batch_put(&self.scans, items).await.map(|_| ())
    }

    async fn read_tiles(&self, m: &ScanManifest) -> StoreResult<Vec<Tile>> {
        let items = self
            .query_prefix(&self.scans, &m.radar, &tiles_prefix(m.time, &m.digest))
            .await?;
        // (row, col) -> parts in order (sort keys sort by row, col, part).
        let mut parts: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
        for it in &items {
            let (row, col, _) = parse_tile_sk(get_s(it, "sk")?)?;
            parts
                .entry((row, col))
                .or_default()
                .extend_from_slice(get_b(it, "b")?);
        }
        m.tiles
            .iter()
            .map(|r| {
                let bytes = parts.remove(&(r.row, r.col)).ok_or_else(|| {
                    StoreError::corrupt(
                        format!("scan {} {}", m.radar, time_key(m.time)),
                        format!("tile ({}, {}) missing", r.row, r.col),
                    )
                })?;
                if bytes.len() != r.len as usize {
                    return Err(StoreError::corrupt(
                        format!("scan {} {}", m.radar, time_key(m.time)),
                        format!(
                            "tile ({}, {}) has {} bytes, manifest says {}",
                            r.row,
                            r.col,
                            bytes.len(),
                            r.len
                        ),
                    ));
                }
                Ok(Tile {
                    row: r.row,
                    col: r.col,
                    bytes,
                })
            })
            .collect()
    }

    fn radar_pk(radar: &str) -> String {
        format!("radar#{radar}")
    }

    fn ttl_from(&self, now: DateTime<Utc>) -> i64 {
        (now + self.retention).timestamp()
    }
}

#[async_trait]
impl ScanStore for DynamoStore {
    async fn put_scan(&self, scan: &NewScan, now: DateTime<Utc>) -> StoreResult<PutOutcome> {
        scan.validate()?;
        let manifest = scan.manifest(now, now + self.retention);
        let m_item = manifest_item(&manifest);
        check_item("manifest", &m_item)?;
        // Cheap check first: a re-run skips the tile writes entirely.
        if self
            .get_manifest(&scan.radar, manifest.time, now)
            .await?
            .is_some()
        {
            return Ok(PutOutcome::AlreadyStored);
        }
        let tiles = tile_items(scan, &manifest.digest, manifest.expires_at)?;
        self.batch_put(&self.scans, tiles).await?;
        // The manifest last, and only if no unexpired one exists.
        let put = self
            .client
            .put_item()
            .table_name(&self.scans)
            .set_item(Some(m_item))
            .condition_expression("attribute_not_exists(pk) OR #t <= :now")
            .expression_attribute_names("#t", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(PutOutcome::Stored),
            Err(e) if is_conditional_failure(&e) => Ok(PutOutcome::AlreadyStored),
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn get_manifest(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ScanManifest>> {
        let sk = time_key(truncate_to_seconds(time));
        let Some(it) = self.get_item(&self.scans, radar, &sk).await? else {
            return Ok(None);
        };
        let m = manifest_from_item(&it)?;
        Ok((!m.is_expired(now)).then_some(m))
    }

    async fn get_scan(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StoredScan>> {
        let Some(manifest) = self.get_manifest(radar, time, now).await? else {
            return Ok(None);
        };
        let tiles = self.read_tiles(&manifest).await?;
        Ok(Some(StoredScan { manifest, tiles }))
    }

    async fn list_scans(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanManifest>> {
        if from > to {
            return Ok(Vec::new());
        }
        let (a, b) = (
            time_key(truncate_to_seconds(from)),
            time_key(truncate_to_seconds(to)),
        );
        self.query_manifests(radar, &a, &b, false, usize::MAX, now)
            .await
    }

    async fn list_entries(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanEntry>> {
        if from > to {
            return Ok(Vec::new());
        }
        let (a, b) = (
            time_key(truncate_to_seconds(from)),
            time_key(truncate_to_seconds(to)),
        );
        let items = self
            .query_index(radar, (&a, &b), false, limit, true, now)
            .await?;
        let mut out = Vec::with_capacity(items.len());
        for it in &items {
            match entry_from_item(it)? {
                Some(e) => out.push(e),
                // Written before manifests carried their tile count: read it whole.
                None => {
                    let time = parse_time_key(get_s(it, "mt")?)?;
                    if let Some(m) = self.get_manifest(radar, time, now).await? {
                        out.push(ScanEntry::from(&m));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn latest(&self, radar: &str, now: DateTime<Utc>) -> StoreResult<Option<ScanManifest>> {
        // Time keys are RFC 3339 strings: "0" sorts below and "9" above all of them.
        let found = self.query_manifests(radar, "0", "9", true, 1, now).await?;
        Ok(found.into_iter().next())
    }

    async fn get_tile(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        row: u16,
        col: u16,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<u8>>> {
        let Some(m) = self.get_manifest(radar, time, now).await? else {
            return Ok(None);
        };
        let Some(r) = m.tiles.iter().find(|t| t.row == row && t.col == col) else {
            return Ok(None);
        };
        let prefix = format!("{}{row:05}.{col:05}#", tiles_prefix(m.time, &m.digest));
        let items = self.query_prefix(&self.scans, radar, &prefix).await?;
        let mut bytes = Vec::with_capacity(r.len as usize);
        for it in &items {
            bytes.extend_from_slice(get_b(it, "b")?);
        }
        if bytes.len() != r.len as usize {
            return Err(StoreError::corrupt(
                format!("tile ({row}, {col}) of {radar} {}", time_key(m.time)),
                format!("{} bytes stored, manifest says {}", bytes.len(), r.len),
            ));
        }
        Ok(Some(bytes))
    }
}

fn lease_from_item(it: &Item) -> StoreResult<LeaseRecord> {
    Ok(LeaseRecord {
        owner: get_s(it, "owner")?.to_string(),
        until: epoch_ms(get_n(it, "until")?)?,
        released: get_bool(it, "released"),
    })
}

/// Partition of every versioned record in the state table (one partition,
/// so that a prefix listing is one `Query`).
const RECORDS_PK: &str = "records";

/// A record item, or `None` once its TTL has passed (DynamoDB deletes lazily).
fn record_from_item(it: &Item, now: DateTime<Utc>) -> StoreResult<Option<VersionedRecord>> {
    if get_n(it, TTL_ATTRIBUTE).is_ok_and(|t| t <= now.timestamp()) {
        return Ok(None);
    }
    Ok(Some(VersionedRecord {
        value: get_s(it, "v")?.to_string(),
        version: u64::try_from(get_n(it, "ver")?)
            .map_err(|_| StoreError::corrupt("record", "negative version"))?,
    }))
}

fn claim_from_item(it: &Item) -> StoreResult<ClaimRecord> {
    Ok(ClaimRecord {
        owner: get_s(it, "owner")?.to_string(),
        until: epoch_ms(get_n(it, "until")?)?,
        done: get_bool(it, "done"),
    })
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn get_checkpoint(&self, radar: &str) -> StoreResult<Option<Checkpoint>> {
        let Some(it) = self
            .get_item(&self.state, &Self::radar_pk(radar), "checkpoint")
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            radar: radar.to_string(),
            last_time: parse_time_key(get_s(&it, "t")?)?,
            last_key: get_s(&it, "k")?.to_string(),
            updated_at: epoch(get_n(&it, "up")?)?,
        }))
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> StoreResult<bool> {
        let tk = time_key(truncate_to_seconds(cp.last_time));
        let req = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(Self::radar_pk(&cp.radar)))
            .item("sk", s("checkpoint"))
            .item("t", s(&tk))
            .item("k", s(&cp.last_key))
            .item("up", n(cp.updated_at.timestamp()))
            .condition_expression("attribute_not_exists(pk) OR #t < :t OR (#t = :t AND #k <= :k)")
            .expression_attribute_names("#t", "t")
            .expression_attribute_names("#k", "k")
            .expression_attribute_values(":t", s(&tk))
            .expression_attribute_values(":k", s(&cp.last_key));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<LeaseOutcome> {
        let pk = format!("lease#{name}");
        let until = now + ttl;
        let put = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(&pk))
            .item("sk", s("lease"))
            .item("owner", s(owner))
            .item("until", n(until.timestamp_millis()))
            .item("released", AttributeValue::Bool(false))
            .condition_expression("attribute_not_exists(pk) OR #o = :me OR #r = :t OR #u <= :now")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#r", "released")
            .expression_attribute_names("#u", "until")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(resp) => {
                let old = resp
                    .attributes()
                    .filter(|a| !a.is_empty())
                    .map(lease_from_item)
                    .transpose()?;
                let predecessor = LeaseRecord::predecessor_for(old.as_ref(), owner, now).map_err(
                    |(holder, _)| StoreError::Conflict {
                        what: format!("lease {name}"),
                        reason: format!("server accepted the put but {holder} held it"),
                    },
                )?;
                Ok(LeaseOutcome::Acquired { until, predecessor })
            }
            Err(e) if is_conditional_failure(&e) => {
                let current = self.get_item(&self.state, &pk, "lease").await?;
                match current.as_ref().map(lease_from_item).transpose()? {
                    Some(l) => Ok(LeaseOutcome::Held {
                        owner: l.owner,
                        until: l.until,
                    }),
                    // Released and deleted in between: try once more later.
                    None => Ok(LeaseOutcome::Held {
                        owner: "unknown".into(),
                        until: now,
                    }),
                }
            }
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(format!("lease#{name}")))
            .key("sk", s("lease"))
            .update_expression("SET #u = :u")
            .condition_expression("#o = :me AND #r = :f")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#r", "released")
            .expression_attribute_values(":u", n((now + ttl).timestamp_millis()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error(BACKEND, "UpdateItem", e)),
        }
    }

    async fn release_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(format!("lease#{name}")))
            .key("sk", s("lease"))
            .update_expression("SET #u = :now, #r = :t")
            .condition_expression("#o = :me AND #r = :f")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#r", "released")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error(BACKEND, "UpdateItem", e)),
        }
    }

    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u32> {
        // ADD is atomic: the old count comes back with the write.
        let out = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(Self::radar_pk(radar)))
            .key("sk", s(format!("a#{key}")))
            .update_expression("ADD #n :one SET #o = :o, #at = :at, #ttl = :ttl")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":at", n(now.timestamp()))
            .expression_attribute_values(":ttl", n(self.ttl_from(now)))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "UpdateItem", e))?;
        let earlier = match out.attributes() {
            Some(old) if old.contains_key("n") => get_n(old, "n")?,
            _ => 0,
        };
        Ok(u32::try_from(earlier.max(0)).unwrap_or(u32::MAX))
    }

    async fn end_attempt(&self, radar: &str, key: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.state)
            .key("pk", s(Self::radar_pk(radar)))
            .key("sk", s(format!("a#{key}")))
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "DeleteItem", e))?;
        Ok(())
    }

    async fn quarantine(&self, rec: &QuarantineRecord) -> StoreResult<()> {
        let mut it = Item::new();
        it.insert("pk".into(), s(Self::radar_pk(&rec.radar)));
        it.insert("sk".into(), s(format!("q#{}", rec.key)));
        it.insert("key".into(), s(&rec.key));
        it.insert("code".into(), s(&rec.reason_code));
        it.insert("reason".into(), s(&rec.reason));
        if let Some(t) = rec.time {
            it.insert("t".into(), s(time_key(t)));
        }
        it.insert("at".into(), n(rec.recorded_at.timestamp()));
        it.insert(TTL_ATTRIBUTE.into(), n(self.ttl_from(rec.recorded_at)));
        check_item("quarantine record", &it)?;
        self.client
            .put_item()
            .table_name(&self.state)
            .set_item(Some(it))
            .send()
            .await
            .map_err(|e| sdk_error(BACKEND, "PutItem", e))?;
        Ok(())
    }

    async fn list_quarantined(&self, radar: &str) -> StoreResult<Vec<QuarantineRecord>> {
        let items = self
            .query_prefix(&self.state, &Self::radar_pk(radar), "q#")
            .await?;
        let now = Utc::now().timestamp();
        let mut out = Vec::with_capacity(items.len());
        for it in &items {
            if get_n(it, TTL_ATTRIBUTE).is_ok_and(|t| t <= now) {
                continue;
            }
            out.push(QuarantineRecord {
                radar: radar.to_string(),
                key: get_s(it, "key")?.to_string(),
                reason_code: get_s(it, "code")?.to_string(),
                reason: get_s(it, "reason")?.to_string(),
                time: it
                    .get("t")
                    .and_then(|v| v.as_s().ok())
                    .map(|t| parse_time_key(t))
                    .transpose()?,
                recorded_at: epoch(get_n(it, "at")?)?,
            });
        }
        Ok(out)
    }

    async fn claim(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<ClaimOutcome> {
        let pk = format!("claim#{key}");
        let put = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(&pk))
            .item("sk", s("claim"))
            .item("owner", s(owner))
            .item("until", n((now + ttl).timestamp_millis()))
            .item("done", AttributeValue::Bool(false))
            .item(TTL_ATTRIBUTE, n(self.ttl_from(now)))
            .condition_expression(
                "attribute_not_exists(pk) OR (#d = :f AND (#u <= :now OR #o = :me))",
            )
            .expression_attribute_names("#d", "done")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        match put {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(e) if is_conditional_failure(&e) => {
                let current = self.get_item(&self.state, &pk, "claim").await?;
                let rec = current.as_ref().map(claim_from_item).transpose()?;
                Ok(
                    ClaimRecord::blocks(rec.as_ref(), owner, now).unwrap_or(ClaimOutcome::HeldBy {
                        owner: "unknown".into(),
                        until: now,
                    }),
                )
            }
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn mark_done(&self, key: &str, owner: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let r = self
            .client
            .update_item()
            .table_name(&self.state)
            .key("pk", s(format!("claim#{key}")))
            .key("sk", s("claim"))
            .update_expression("SET #d = :t, #x = :ttl")
            .condition_expression("attribute_exists(pk) AND (#o = :me OR #d = :t)")
            .expression_attribute_names("#d", "done")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#x", TTL_ATTRIBUTE)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":ttl", n(self.ttl_from(now)))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::Conflict {
                what: format!("claim {key:?}"),
                reason: "never claimed, or held by another owner".into(),
            }),
            Err(e) => Err(sdk_error(BACKEND, "UpdateItem", e)),
        }
    }
    async fn get_record(&self, key: &str) -> StoreResult<Option<VersionedRecord>> {
        match self.get_item(&self.state, RECORDS_PK, key).await? {
            Some(it) => record_from_item(&it, Utc::now()),
            None => Ok(None),
        }
    }

    async fn put_record(&self, key: &str, value: &str, expected: Option<u64>) -> StoreResult<u64> {
        let version = expected.unwrap_or(0) + 1;
        let now = Utc::now();
        let req = self
            .client
            .put_item()
            .table_name(&self.state)
            .item("pk", s(RECORDS_PK))
            .item("sk", s(key))
            .item("v", s(value))
            .item("ver", n(version as i64))
            .item(TTL_ATTRIBUTE, n(self.ttl_from(now)));
        // An item past its TTL counts as absent, like on read.
        let req = match expected {
            None => req
                .condition_expression("attribute_not_exists(pk) OR #x <= :now")
                .expression_attribute_names("#x", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(now.timestamp())),
            Some(v) => req
                .condition_expression("#ver = :expected AND #x > :now")
                .expression_attribute_names("#ver", "ver")
                .expression_attribute_names("#x", TTL_ATTRIBUTE)
                .expression_attribute_values(":expected", n(v as i64))
                .expression_attribute_values(":now", n(now.timestamp())),
        };
        match req.send().await {
            Ok(_) => Ok(version),
            Err(e) if is_conditional_failure(&e) => Err(record_conflict(key, expected)),
            Err(e) => Err(sdk_error(BACKEND, "PutItem", e)),
        }
    }

    async fn list_records(&self, prefix: &str) -> StoreResult<Vec<(String, VersionedRecord)>> {
        let now = Utc::now();
        let mut out = Vec::new();
        for it in self.query_prefix(&self.state, RECORDS_PK, prefix).await? {
            if let Some(r) = record_from_item(&it, now)? {
                out.push((get_s(&it, "sk")?.to_string(), r));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tile_keys_round_trip_and_sort() {
        let t = Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap();
        let a = tile_sk(t, "00ff", 3, 12, 0);
        assert_eq!(a, "2018-06-16T10:00:00Z#00ff#00003.00012#00");
        assert_eq!(parse_tile_sk(&a).unwrap(), (3, 12, 0));
        assert!(tile_sk(t, "00ff", 3, 12, 1) > a);
        assert!(tile_sk(t, "00ff", 3, 13, 0) > tile_sk(t, "00ff", 3, 12, 9));
        // The manifest key sorts before the tiles of its scan and after the
        // previous scan's.
        assert!(time_key(t) < a);
        assert!(parse_tile_sk("nonsense").is_err());
    }

    #[test]
    fn tile_index_round_trips() {
        let tiles = vec![
            TileRef {
                row: 1,
                col: 2,
                len: 300,
            },
            TileRef {
                row: 65535,
                col: 0,
                len: 0,
            },
        ];
        assert_eq!(
            decode_tile_index(&encode_tile_index(&tiles)).unwrap(),
            tiles
        );
        assert!(decode_tile_index(&[1, 2, 3]).is_err());
    }

    #[test]
    fn manifest_items_round_trip() {
        let scan = NewScan {
            radar: "bom02".into(),
            time: Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap(),
            source_key: "k".into(),
            format: "bom".into(),
            header: vec![1, 2],
            rain_cells: 3,
            tiles: vec![Tile {
                row: 0,
                col: 1,
                bytes: vec![5; 4],
            }],
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = scan.manifest(now, now + Duration::days(7));
        assert_eq!(manifest_from_item(&manifest_item(&m)).unwrap(), m);
        // A listing reads only the entry's attributes.
        let mut projected = manifest_item(&m);
        projected.retain(|k, _| ENTRY_ATTRIBUTES.contains(&k.as_str()));
        assert_eq!(
            entry_from_item(&projected).unwrap(),
            Some(ScanEntry::from(&m))
        );
        projected.remove(TILE_COUNT);
        assert_eq!(entry_from_item(&projected).unwrap(), None);
    }

    #[test]
    fn big_tiles_become_several_items_under_the_limit() {
        let scan = NewScan {
            radar: "opera".into(),
            time: Utc.with_ymd_and_hms(2018, 8, 24, 18, 0, 0).unwrap(),
            source_key: "k".into(),
            format: "odim".into(),
            header: vec![],
            rain_cells: 1,
            tiles: vec![
                Tile {
                    row: 0,
                    col: 0,
                    bytes: vec![1; limits::MAX_TILE_PART_BYTES * 2 + 1],
                },
                Tile {
                    row: 0,
                    col: 1,
                    bytes: vec![2; 10],
                },
            ],
        };
        let items = tile_items(&scan, "d", Utc::now()).unwrap();
        assert_eq!(items.len(), 4);
        assert!(items
            .iter()
            .all(|i| limits::item_size(i) < limits::MAX_ITEM_BYTES));
    }
}
