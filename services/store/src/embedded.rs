//! The embedded store: one redb file holds scans and state.
//!
//! redb is pure Rust (no C library to install), ACID with copy-on-write
//! B-trees, and a single file. A scan's tiles and manifest are committed in
//! one write transaction, so a crash leaves either the whole scan or nothing.
//! redb locks the file: one process at a time opens it, which suits the
//! single-machine default (several instances need DynamoDB).
//!
//! Every call runs on tokio's blocking pool.
//!
//! redb latches an I/O error (a full disk, a failed write): from then on
//! every call on that `Database` fails with "previous I/O error" until the
//! file is opened again. The store does that itself: a call that fails on a
//! latched database drops it, and the next call opens the file again (redb
//! repairs it from its last commit), so a service whose disk filled up and
//! was cleared goes on without a restart.

use crate::error::{StoreError, StoreResult};
use crate::model::{
    checkpoint_advances, record_conflict, truncate_to_seconds, Checkpoint, LeaseOutcome,
    LeaseRecord, NewScan, PutOutcome, QuarantineRecord, ScanEntry, ScanManifest, StoredScan, Tile,
    VersionedRecord,
};
use crate::{ScanStore, StateStore};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

const BACKEND: &str = "embedded";

/// (radar, scan time in seconds) → [`ScanManifest::to_bytes`].
const MANIFESTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("manifests");
/// (radar, scan time in seconds, row << 16 | col) → tile bytes.
const TILES: TableDefinition<(&str, i64, u32), &[u8]> = TableDefinition::new("tiles");
/// radar → JSON [`Checkpoint`].
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
/// lease name → JSON lease.
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// (radar, source key) → JSON [`QuarantineRecord`].
const QUARANTINE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("quarantine");
/// (radar, source key) → attempts begun and not ended (decodes in progress,
/// or cut short by a crash).
const ATTEMPTS: TableDefinition<(&str, &str), u32> = TableDefinition::new("attempts");
/// record key → (version, text) of [`StateStore::get_record`].
const RECORDS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("records");

/// redb's page cache. Its default (1 GiB) let the process grow with the file
/// for hours (measured by `scripts/soak.sh`); the working set of one
/// machine's radars (the last hours of scans, the state records) fits in far
/// less, and the OS page cache still holds the file.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A redb file as [`ScanStore`] and [`StateStore`]. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// The open database; `None` after an I/O error latched it (see the
    /// module's notes), until the next call opens the file again.
    db: Arc<RwLock<Option<Arc<Database>>>>,
    path: PathBuf,
    retention: Duration,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish()
    }
}

fn db_err(op: &'static str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        op,
        reason: e.into().to_string(),
    }
}

fn to_json<T: Serialize>(what: &str, v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::corrupt(what, e.to_string()))
}

fn from_json<T: DeserializeOwned>(what: &str, b: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::corrupt(what, e.to_string()))
}

fn tile_id(row: u16, col: u16) -> u32 {
    ((row as u32) << 16) | col as u32
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path`; parent folders are
    /// created. Scans are kept for `retention` after they are stored.
    pub async fn open(path: impl Into<PathBuf>, retention: Duration) -> StoreResult<Self> {
        let path = path.into();
        let p = path.clone();
        let db = tokio::task::spawn_blocking(move || {
            let db = Self::open_blocking(&p, false)?;
            Self::release_dead_leases(&db)?;
            Ok::<_, StoreError>(db)
        })
        .await
        .map_err(join_err)??;
        Ok(Self {
            db: Arc::new(RwLock::new(Some(Arc::new(db)))),
            path,
            retention,
        })
    }

    /// Releases every lease found when the file is opened: only one process
    /// at a time can open it, so they are a process's that ended without
    /// releasing them (a crash, a `kill -9`, an out-of-memory kill), and
    /// the restarted service need not wait them out (it waited a lease's
    /// TTL, about a minute, per radar, and `ingest --once` meanwhile
    /// reported the radars as held by another instance). Not on a re-open
    /// after an I/O error: those leases are this process's own.
    fn release_dead_leases(db: &Database) -> StoreResult<()> {
        let txn = db.begin_write().map_err(|e| db_err("lease", e))?;
        let mut released = Vec::new();
        {
            let mut table = txn.open_table(LEASES).map_err(|e| db_err("lease", e))?;
            let mut held = Vec::new();
            for entry in table.iter().map_err(|e| db_err("lease", e))? {
                let (k, v) = entry.map_err(|e| db_err("lease", e))?;
                let rec: LeaseRecord = from_json("lease", v.value())?;
                if !rec.released {
                    held.push((k.value().to_string(), rec));
                }
            }
            for (name, mut rec) in held {
                rec.released = true;
                table
                    .insert(name.as_str(), to_json("lease", &rec)?.as_slice())
                    .map_err(|e| db_err("lease", e))?;
                released.push(format!("{name} ({})", rec.owner));
            }
        }
        txn.commit().map_err(|e| db_err("lease", e))?;
        if !released.is_empty() {
            tracing::info!(leases = ?released,
                "leases of a process that ended without releasing them are released (one process at a time opens the embedded store)");
        }
        Ok(())
    }

    /// The open database, opened again first if an I/O error latched the
    /// previous one. Blocking.
    fn database(slot: &RwLock<Option<Arc<Database>>>, path: &Path) -> StoreResult<Arc<Database>> {
        if let Some(db) = slot.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        let mut slot = slot.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        // Fails (and the next call tries again) while the disk is still
        // full, or while a call still holds the latched database.
        let db = Arc::new(Self::open_blocking(path, true)?);
        tracing::info!(path = %path.display(), "embedded store opened again after an I/O error");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Opens the file; `again` after an I/O error latched this process's
    /// previous `Database` on it.
    fn open_blocking(path: &Path, again: bool) -> StoreResult<Database> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend {
                backend: BACKEND,
                op: "create folder",
                reason: format!("{}: {e}", parent.display()),
            })?;
        }
        // A new file is readable by its owner only: it holds the webhook
        // subscriptions' signing secrets and the API keys' hashes. redb
        // initialises an empty file as a new database.
        #[cfg(unix)]
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                // Another process made it meanwhile: redb decides below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Backend {
                        backend: BACKEND,
                        op: "create",
                        reason: format!("{}: {e}", path.display()),
                    })
                }
            }
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                op: "open",
                reason: match e {
                    // A call of this process still holds the latched one.
                    redb::DatabaseError::DatabaseAlreadyOpen if again => format!(
                        "{}: not opened again yet after an I/O error (a call still holds \
                         it); tried again at the next call",
                        path.display()
                    ),
                    // Another process (a running `raincast run`) holds it.
                    redb::DatabaseError::DatabaseAlreadyOpen => format!(
                        "{}: in use by another process; the embedded store serves one \
                         process at a time (stop the other, or read through its HTTP API)",
                        path.display()
                    ),
                    e => format!("{}: {e}", path.display()),
                },
            })?;
        let txn = db.begin_write().map_err(|e| db_err("open", e))?;
        {
            txn.open_table(MANIFESTS).map_err(|e| db_err("open", e))?;
            txn.open_table(TILES).map_err(|e| db_err("open", e))?;
            txn.open_table(CHECKPOINTS).map_err(|e| db_err("open", e))?;
            txn.open_table(LEASES).map_err(|e| db_err("open", e))?;
            txn.open_table(QUARANTINE).map_err(|e| db_err("open", e))?;
            txn.open_table(ATTEMPTS).map_err(|e| db_err("open", e))?;
            txn.open_table(RECORDS).map_err(|e| db_err("open", e))?;
        }
        txn.commit().map_err(|e| db_err("open", e))?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (slot, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let db = Self::database(&slot, &path)?;
            let out = f(&db);
            // `try_begin_write` reports a latched I/O error before anything
            // else, and does not wait for another writer.
            let latched = out.is_err()
                && matches!(
                    db.try_begin_write(),
                    Err(redb::TransactionError::Storage(
                        redb::StorageError::PreviousIo
                    ))
                );
            if latched {
                let mut slot = slot.write().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, &db)) {
                    tracing::warn!(path = %path.display(),
                        "embedded store: an I/O error (a full disk?) stopped the database; \
                         opening it again at the next call");
                    *slot = None;
                }
            }
            out
        })
        .await
        .map_err(join_err)?
    }

    /// Purges expired scans now and then every `every` until `shutdown`
    /// turns true: the embedded store's TTL (DynamoDB's runs by itself).
    /// A failed purge is logged and tried again at the next tick.
    pub fn spawn_purger(
        &self,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                match store.purge_expired(Utc::now()).await {
                    Ok(0) => tracing::debug!("retention purge: nothing expired"),
                    Ok(n) => tracing::info!(purged = n, "deleted scans past their retention"),
                    Err(e) => {
                        tracing::warn!(error = %e, "retention purge failed; retrying at the next tick")
                    }
                }
            }
        })
    }

    /// Manifests in the file, expired or not (for tests of the purge).
    #[cfg(test)]
    pub(crate) async fn stored_manifests(&self) -> StoreResult<u64> {
        self.table_len(MANIFESTS).await
    }

    /// Quarantine records in the file, expired or not (for tests of the purge).
    #[cfg(test)]
    pub(crate) async fn stored_quarantine_records(&self) -> StoreResult<u64> {
        self.table_len(QUARANTINE).await
    }

    /// Entries of `table`, expired or not.
    #[cfg(test)]
    async fn table_len<K: redb::Key + Send + 'static, V: redb::Value + Send + 'static>(
        &self,
        table: TableDefinition<'static, K, V>,
    ) -> StoreResult<u64> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("count", e))?;
            let t = txn.open_table(table).map_err(|e| db_err("count", e))?;
            redb::ReadableTableMetadata::len(&t).map_err(|e| db_err("count", e))
        })
        .await
    }

    /// Deletes scans whose retention has run out (TTL), and quarantine
    /// records recorded longer than the retention ago (DynamoDB's TTL drops
    /// those too; kept, they would pile up for ever and be read by every
    /// ingest run). Returns how many scans.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> StoreResult<usize> {
        let retention = self.retention;
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("purge", e))?;
            let mut expired: Vec<(String, i64)> = Vec::new();
            {
                let manifests = txn.open_table(MANIFESTS).map_err(|e| db_err("purge", e))?;
                for entry in manifests.iter().map_err(|e| db_err("purge", e))? {
                    let (k, v) = entry.map_err(|e| db_err("purge", e))?;
                    let m = ScanManifest::from_bytes(v.value())?;
                    if m.is_expired(now) {
                        let (radar, t) = k.value();
                        expired.push((radar.to_string(), t));
                    }
                }
            }
            {
                let mut manifests = txn.open_table(MANIFESTS).map_err(|e| db_err("purge", e))?;
                let mut tiles = txn.open_table(TILES).map_err(|e| db_err("purge", e))?;
                for (radar, t) in &expired {
                    manifests
                        .remove((radar.as_str(), *t))
                        .map_err(|e| db_err("purge", e))?;
                    tiles
                        .retain_in(
                            (radar.as_str(), *t, 0u32)..=(radar.as_str(), *t, u32::MAX),
                            |_, _| false,
                        )
                        .map_err(|e| db_err("purge", e))?;
                }
            }
            {
                let mut quarantine = txn.open_table(QUARANTINE).map_err(|e| db_err("purge", e))?;
                quarantine
                    .retain(|_, v| {
                        // An unreadable record is kept (and reported by the reader).
                        serde_json::from_slice::<QuarantineRecord>(v)
                            .map_or(true, |q| q.recorded_at + retention > now)
                    })
                    .map_err(|e| db_err("purge", e))?;
            }
            txn.commit().map_err(|e| db_err("purge", e))?;
            Ok(expired.len())
        })
        .await
    }

    fn read_manifest(
        db: &Database,
        radar: &str,
        t: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ScanManifest>> {
        let txn = db.begin_read().map_err(|e| db_err("get", e))?;
        let table = txn.open_table(MANIFESTS).map_err(|e| db_err("get", e))?;
        let Some(v) = table.get((radar, t)).map_err(|e| db_err("get", e))? else {
            return Ok(None);
        };
        let m = ScanManifest::from_bytes(v.value())?;
        Ok((!m.is_expired(now)).then_some(m))
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        op: "blocking task",
        reason: e.to_string(),
    }
}

impl EmbeddedStore {
    /// The first `limit` unexpired manifests with `from <= time <= to`, oldest first.
    async fn list_manifests(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanManifest>> {
        let radar = radar.to_string();
        let (a, b) = (from.timestamp(), to.timestamp());
        if a > b || limit == 0 {
            return Ok(Vec::new());
        }
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("list", e))?;
            let table = txn.open_table(MANIFESTS).map_err(|e| db_err("list", e))?;
            let mut out = Vec::new();
            for entry in table
                .range((radar.as_str(), a)..=(radar.as_str(), b))
                .map_err(|e| db_err("list", e))?
            {
                let (_, v) = entry.map_err(|e| db_err("list", e))?;
                let m = ScanManifest::from_bytes(v.value())?;
                if !m.is_expired(now) {
                    out.push(m);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl ScanStore for EmbeddedStore {
    async fn put_scan(&self, scan: &NewScan, now: DateTime<Utc>) -> StoreResult<PutOutcome> {
        scan.validate()?;
        let manifest = scan.manifest(now, now + self.retention);
        let bytes = manifest.to_bytes()?;
        let scan = scan.clone();
        self.run(move |db| {
            let t = manifest.time.timestamp();
            let radar = scan.radar.as_str();
            let txn = db.begin_write().map_err(|e| db_err("put", e))?;
            {
                let mut manifests = txn.open_table(MANIFESTS).map_err(|e| db_err("put", e))?;
                if let Some(existing) = manifests.get((radar, t)).map_err(|e| db_err("put", e))? {
                    let old = ScanManifest::from_bytes(existing.value())?;
                    if !old.is_expired(now) {
                        return Ok(PutOutcome::AlreadyStored);
                    }
                }
                let mut tiles = txn.open_table(TILES).map_err(|e| db_err("put", e))?;
                // Drop any tiles of an expired predecessor, then write ours.
                tiles
                    .retain_in((radar, t, 0u32)..=(radar, t, u32::MAX), |_, _| false)
                    .map_err(|e| db_err("put", e))?;
                for tile in &scan.tiles {
                    tiles
                        .insert(
                            (radar, t, tile_id(tile.row, tile.col)),
                            tile.bytes.as_slice(),
                        )
                        .map_err(|e| db_err("put", e))?;
                }
                manifests
                    .insert((radar, t), bytes.as_slice())
                    .map_err(|e| db_err("put", e))?;
            }
            txn.commit().map_err(|e| db_err("put", e))?;
            Ok(PutOutcome::Stored)
        })
        .await
    }

    async fn get_manifest(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ScanManifest>> {
        let radar = radar.to_string();
        let t = truncate_to_seconds(time).timestamp();
        self.run(move |db| Self::read_manifest(db, &radar, t, now))
            .await
    }

    async fn get_scan(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StoredScan>> {
        let radar = radar.to_string();
        let t = truncate_to_seconds(time).timestamp();
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("get", e))?;
            let manifests = txn.open_table(MANIFESTS).map_err(|e| db_err("get", e))?;
            let Some(v) = manifests
                .get((radar.as_str(), t))
                .map_err(|e| db_err("get", e))?
            else {
                return Ok(None);
            };
            let manifest = ScanManifest::from_bytes(v.value())?;
            if manifest.is_expired(now) {
                return Ok(None);
            }
            let table = txn.open_table(TILES).map_err(|e| db_err("get", e))?;
            let mut tiles = Vec::with_capacity(manifest.tiles.len());
            for r in &manifest.tiles {
                let b = table
                    .get((radar.as_str(), t, tile_id(r.row, r.col)))
                    .map_err(|e| db_err("get", e))?
                    .ok_or_else(|| {
                        StoreError::corrupt(
                            format!("scan {radar} {t}"),
                            format!(
                                "tile ({}, {}) listed in the manifest is missing",
                                r.row, r.col
                            ),
                        )
                    })?;
                tiles.push(Tile {
                    row: r.row,
                    col: r.col,
                    bytes: b.value().to_vec(),
                });
            }
            Ok(Some(StoredScan { manifest, tiles }))
        })
        .await
    }

    async fn list_scans(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanManifest>> {
        self.list_manifests(radar, from, to, usize::MAX, now).await
    }

    async fn list_entries(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanEntry>> {
        let listed = self.list_manifests(radar, from, to, limit, now).await?;
        Ok(listed.iter().map(ScanEntry::from).collect())
    }

    async fn latest(&self, radar: &str, now: DateTime<Utc>) -> StoreResult<Option<ScanManifest>> {
        let radar = radar.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("latest", e))?;
            let table = txn.open_table(MANIFESTS).map_err(|e| db_err("latest", e))?;
            let range = table
                .range((radar.as_str(), i64::MIN)..=(radar.as_str(), i64::MAX))
                .map_err(|e| db_err("latest", e))?;
            for entry in range.rev() {
                let (_, v) = entry.map_err(|e| db_err("latest", e))?;
                let m = ScanManifest::from_bytes(v.value())?;
                if !m.is_expired(now) {
                    return Ok(Some(m));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn get_tile(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        row: u16,
        col: u16,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<u8>>> {
        let radar = radar.to_string();
        let t = truncate_to_seconds(time).timestamp();
        self.run(move |db| {
            if Self::read_manifest(db, &radar, t, now)?.is_none() {
                return Ok(None);
            }
            let txn = db.begin_read().map_err(|e| db_err("get tile", e))?;
            let table = txn.open_table(TILES).map_err(|e| db_err("get tile", e))?;
            let v = table
                .get((radar.as_str(), t, tile_id(row, col)))
                .map_err(|e| db_err("get tile", e))?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    fn single_process(&self) -> bool {
        true
    }

    async fn get_checkpoint(&self, radar: &str) -> StoreResult<Option<Checkpoint>> {
        let radar = radar.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("checkpoint", e))?;
            let table = txn
                .open_table(CHECKPOINTS)
                .map_err(|e| db_err("checkpoint", e))?;
            let v = table
                .get(radar.as_str())
                .map_err(|e| db_err("checkpoint", e))?;
            v.map(|v| from_json("checkpoint", v.value())).transpose()
        })
        .await
    }

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool> {
        let cp = checkpoint.clone();
        let bytes = to_json("checkpoint", &cp)?;
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("checkpoint", e))?;
            let written = {
                let mut table = txn
                    .open_table(CHECKPOINTS)
                    .map_err(|e| db_err("checkpoint", e))?;
                let old: Option<Checkpoint> = table
                    .get(cp.radar.as_str())
                    .map_err(|e| db_err("checkpoint", e))?
                    .map(|v| from_json("checkpoint", v.value()))
                    .transpose()?;
                if checkpoint_advances(old.as_ref(), &cp) {
                    table
                        .insert(cp.radar.as_str(), bytes.as_slice())
                        .map_err(|e| db_err("checkpoint", e))?;
                    true
                } else {
                    false
                }
            };
            txn.commit().map_err(|e| db_err("checkpoint", e))?;
            Ok(written)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<LeaseOutcome> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("lease", e))?;
            let outcome = {
                let mut table = txn.open_table(LEASES).map_err(|e| db_err("lease", e))?;
                let current: Option<LeaseRecord> = table
                    .get(name.as_str())
                    .map_err(|e| db_err("lease", e))?
                    .map(|v| from_json("lease", v.value()))
                    .transpose()?;
                match LeaseRecord::predecessor_for(current.as_ref(), &owner, now) {
                    Err((holder, until)) => LeaseOutcome::Held {
                        owner: holder,
                        until,
                    },
                    Ok(predecessor) => {
                        let rec = LeaseRecord {
                            owner: owner.clone(),
                            until: now + ttl,
                            released: false,
                        };
                        table
                            .insert(name.as_str(), to_json("lease", &rec)?.as_slice())
                            .map_err(|e| db_err("lease", e))?;
                        LeaseOutcome::Acquired {
                            until: rec.until,
                            predecessor,
                        }
                    }
                }
            };
            txn.commit().map_err(|e| db_err("lease", e))?;
            Ok(outcome)
        })
        .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.run(move |db| {
            update_lease(db, &name, |l| {
                if l.owner == owner && !l.released {
                    l.until = now + ttl;
                    true
                } else {
                    false
                }
            })
        })
        .await
    }

    async fn release_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.run(move |db| {
            update_lease(db, &name, |l| {
                if l.owner == owner && !l.released {
                    l.released = true;
                    l.until = now;
                    true
                } else {
                    false
                }
            })
        })
        .await
    }

    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        _owner: &str,
        _now: DateTime<Utc>,
    ) -> StoreResult<u32> {
        let (radar, key) = (radar.to_string(), key.to_string());
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("attempt", e))?;
            let earlier = {
                let mut table = txn.open_table(ATTEMPTS).map_err(|e| db_err("attempt", e))?;
                let k = (radar.as_str(), key.as_str());
                let earlier = table
                    .get(k)
                    .map_err(|e| db_err("attempt", e))?
                    .map(|v| v.value())
                    .unwrap_or(0);
                table
                    .insert(k, earlier.saturating_add(1))
                    .map_err(|e| db_err("attempt", e))?;
                earlier
            };
            // Durable before decoding starts: a crash must leave the mark.
            txn.commit().map_err(|e| db_err("attempt", e))?;
            Ok(earlier)
        })
        .await
    }

    async fn end_attempt(&self, radar: &str, key: &str) -> StoreResult<()> {
        let (radar, key) = (radar.to_string(), key.to_string());
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("attempt", e))?;
            {
                let mut table = txn.open_table(ATTEMPTS).map_err(|e| db_err("attempt", e))?;
                table
                    .remove((radar.as_str(), key.as_str()))
                    .map_err(|e| db_err("attempt", e))?;
            }
            txn.commit().map_err(|e| db_err("attempt", e))?;
            Ok(())
        })
        .await
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> StoreResult<()> {
        let rec = record.clone();
        let bytes = to_json("quarantine", &rec)?;
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("quarantine", e))?;
            {
                let mut table = txn
                    .open_table(QUARANTINE)
                    .map_err(|e| db_err("quarantine", e))?;
                table
                    .insert((rec.radar.as_str(), rec.key.as_str()), bytes.as_slice())
                    .map_err(|e| db_err("quarantine", e))?;
            }
            txn.commit().map_err(|e| db_err("quarantine", e))?;
            Ok(())
        })
        .await
    }

    async fn get_quarantined(
        &self,
        radar: &str,
        key: &str,
    ) -> StoreResult<Option<QuarantineRecord>> {
        let (radar, key) = (radar.to_string(), key.to_string());
        // A record past the retention is hidden, as in the listing.
        let oldest = Utc::now() - self.retention;
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("quarantine", e))?;
            let table = txn
                .open_table(QUARANTINE)
                .map_err(|e| db_err("quarantine", e))?;
            let Some(v) = table
                .get((radar.as_str(), key.as_str()))
                .map_err(|e| db_err("quarantine", e))?
            else {
                return Ok(None);
            };
            let rec: QuarantineRecord = from_json("quarantine", v.value())?;
            Ok((rec.recorded_at > oldest).then_some(rec))
        })
        .await
    }

    async fn list_quarantined(&self, radar: &str) -> StoreResult<Vec<QuarantineRecord>> {
        let radar = radar.to_string();
        // Records past the retention are hidden until the purge deletes them.
        let oldest = Utc::now() - self.retention;
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("quarantine", e))?;
            let table = txn
                .open_table(QUARANTINE)
                .map_err(|e| db_err("quarantine", e))?;
            let mut out = Vec::new();
            // Every key of this radar sorts between ("radar", "") and the next radar.
            for entry in table
                .range((radar.as_str(), "")..)
                .map_err(|e| db_err("quarantine", e))?
            {
                let (k, v) = entry.map_err(|e| db_err("quarantine", e))?;
                if k.value().0 != radar {
                    break;
                }
                let rec: QuarantineRecord = from_json("quarantine", v.value())?;
                if rec.recorded_at > oldest {
                    out.push(rec);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_record(&self, key: &str) -> StoreResult<Option<VersionedRecord>> {
        let key = key.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("record", e))?;
            let table = txn.open_table(RECORDS).map_err(|e| db_err("record", e))?;
            let got = table.get(key.as_str()).map_err(|e| db_err("record", e))?;
            Ok(got.map(|g| record_of(g.value())))
        })
        .await
    }

    async fn put_record(&self, key: &str, value: &str, expected: Option<u64>) -> StoreResult<u64> {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("record", e))?;
            let version = {
                let mut table = txn.open_table(RECORDS).map_err(|e| db_err("record", e))?;
                let current = table
                    .get(key.as_str())
                    .map_err(|e| db_err("record", e))?
                    .map(|g| g.value().0);
                if current != expected {
                    return Err(record_conflict(&key, expected));
                }
                let version = current.unwrap_or(0) + 1;
                table
                    .insert(key.as_str(), (version, value.as_bytes()))
                    .map_err(|e| db_err("record", e))?;
                version
            };
            txn.commit().map_err(|e| db_err("record", e))?;
            Ok(version)
        })
        .await
    }

    async fn list_records(&self, prefix: &str) -> StoreResult<Vec<(String, VersionedRecord)>> {
        let prefix = prefix.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("record", e))?;
            let table = txn.open_table(RECORDS).map_err(|e| db_err("record", e))?;
            let mut out = Vec::new();
            for entry in table
                .range(prefix.as_str()..)
                .map_err(|e| db_err("record", e))?
            {
                let (k, v) = entry.map_err(|e| db_err("record", e))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                out.push((k.value().to_string(), record_of(v.value())));
            }
            Ok(out)
        })
        .await
    }
}

fn record_of((version, bytes): (u64, &[u8])) -> VersionedRecord {
    VersionedRecord {
        value: String::from_utf8_lossy(bytes).into_owned(),
        version,
    }
}

/// Applies `f` to a stored lease in one transaction; commits only when `f`
/// returns true. Returns what `f` returned (false for a missing lease).
fn update_lease(
    db: &Database,
    name: &str,
    f: impl FnOnce(&mut LeaseRecord) -> bool,
) -> StoreResult<bool> {
    let txn = db.begin_write().map_err(|e| db_err("lease", e))?;
    let changed = {
        let mut table = txn.open_table(LEASES).map_err(|e| db_err("lease", e))?;
        let current: Option<LeaseRecord> = table
            .get(name)
            .map_err(|e| db_err("lease", e))?
            .map(|v| from_json("lease", v.value()))
            .transpose()?;
        match current {
            Some(mut l) => {
                let changed = f(&mut l);
                if changed {
                    table
                        .insert(name, to_json("lease", &l)?.as_slice())
                        .map_err(|e| db_err("lease", e))?;
                }
                changed
            }
            None => false,
        }
    };
    txn.commit().map_err(|e| db_err("lease", e))?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_store_held_by_another_opener_says_so() {
        let dir = raincast_testkit::TempDir::new("held-store");
        let path = dir.path().join("raincast.redb");
        let held = EmbeddedStore::open(&path, Duration::days(1)).await.unwrap();
        let err = EmbeddedStore::open(&path, Duration::days(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("in use by another process"),
            "{err}"
        );
        drop(held);
        EmbeddedStore::open(&path, Duration::days(1)).await.unwrap();
    }

    /// A lease left by a process that ended without releasing it is
    /// released when the file is opened again (only one process opens it):
    /// the next process takes it at once instead of after its TTL. Leases
    /// taken after the opening are kept as ever.
    #[tokio::test]
    async fn a_dead_processs_lease_is_released_when_the_store_is_opened_again() {
        let dir = raincast_testkit::TempDir::new("dead-lease");
        let path = dir.path().join("raincast.redb");
        let now = Utc::now();
        let ttl = Duration::minutes(10);
        let first = EmbeddedStore::open(&path, Duration::days(1)).await.unwrap();
        assert!(matches!(
            first
                .acquire_lease("ingest:r1", "dead", ttl, now)
                .await
                .unwrap(),
            LeaseOutcome::Acquired { .. }
        ));
        drop(first);
        let second = EmbeddedStore::open(&path, Duration::days(1)).await.unwrap();
        match second
            .acquire_lease("ingest:r1", "new", ttl, now)
            .await
            .unwrap()
        {
            LeaseOutcome::Acquired {
                predecessor: crate::LeasePredecessor::Released { owner },
                ..
            } => assert_eq!(owner, "dead"),
            other => panic!("the dead process's lease was not released: {other:?}"),
        }
        assert!(matches!(
            second
                .acquire_lease("ingest:r1", "other", ttl, now)
                .await
                .unwrap(),
            LeaseOutcome::Held { .. }
        ));
    }

    /// A new store file is its owner's alone (signing secrets, key hashes).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_store_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = raincast_testkit::TempDir::new("store-mode");
        let path = dir.path().join("raincast.redb");
        let store = EmbeddedStore::open(&path, Duration::days(1)).await.unwrap();
        store.put_record("k", "v", None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
