//! [`ScanStore`] on the scans table: tile parts first, the manifest last;
//! reads go through the `by_time` index for ranges and the newest scan.

use super::item::{
    entry_from_item, epoch, get_b, get_n, get_s, manifest_from_item, manifest_item, n,
    parse_tile_sk, s, tile_items, tiles_prefix, ENTRY_ATTRIBUTES,
};
use super::limits::{check_item, Item};
use super::tables::is_conditional_failure;
use super::{DynamoStore, BACKEND, MANIFEST_INDEX, TTL_ATTRIBUTE};
use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    parse_time_key, time_key, truncate_to_seconds, NewScan, PutOutcome, ScanEntry, ScanManifest,
    StoredScan, Tile,
};
use crate::ScanStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

impl DynamoStore {
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
