//! Raincast storage.
//!
//! Three small traits, each with a cloud adapter and an embedded one:
//!
//! | trait | cloud | embedded |
//! |---|---|---|
//! | [`ScanSource`]: list and fetch raw radar files | [`S3Source`] (aws-sdk-s3) | [`LocalSource`] (a folder) |
//! | [`ScanStore`]: sparse scans (header + tiles + manifest) | [`DynamoStore`] (aws-sdk-dynamodb) | [`EmbeddedStore`] (redb) |
//! | [`StateStore`]: checkpoints, leases, quarantine, decode attempts, versioned records | [`DynamoStore`] | [`EmbeddedStore`] |
//!
//! A fourth, [`MessageQueue`] (receive, delete, extend the visibility of
//! notification messages), has a cloud adapter only: [`SqsQueue`]
//! (aws-sdk-sqs). Without a queue, ingest lists its source instead.
//!
//! Scan payloads are opaque bytes: the stores never decode them. The
//! conformance suites in [`conformance`] run against every adapter.

pub mod aws;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dynamo;
pub mod embedded;
pub mod error;
pub mod keys;
pub mod local;
pub mod model;
pub mod radars;
pub mod s3;
pub mod sqs;
pub mod subscriptions;

pub use dynamo::{DynamoOptions, DynamoStore};
pub use embedded::EmbeddedStore;
pub use error::{StoreError, StoreResult};
pub use local::{files_below, LocalSource};
pub use model::{
    lease_expired, Checkpoint, LeaseOutcome, LeasePredecessor, NewScan, PutOutcome,
    QuarantineRecord, ScanEntry, ScanManifest, SourceObject, StoredScan, Tile, TileRef,
    VersionedRecord, LEASE_SKEW_MARGIN, MAX_CLOCK_SKEW,
};
pub use s3::S3Source;
pub use sqs::SqsQueue;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

/// Where raw radar files come from. Keys are relative to the source root
/// (the bucket prefix or the folder) and use `/` separators. Raw files are
/// only ever read.
#[async_trait]
pub trait ScanSource: Send + Sync {
    /// Every object whose key starts with `prefix` and sorts after
    /// `start_after` (S3 `StartAfter` semantics), in key order, following
    /// pagination to the end.
    async fn list(&self, prefix: &str, start_after: Option<&str>)
        -> StoreResult<Vec<SourceObject>>;

    /// The "sub-folders" directly below `prefix` (which should end in `/`),
    /// each returned as a full prefix ending in `/` (S3 `CommonPrefixes` with
    /// delimiter `/`), in key order.
    async fn list_dirs(&self, prefix: &str) -> StoreResult<Vec<String>>;

    /// The bytes of one object, or [`StoreError::TooLarge`] when it holds
    /// more than `max_bytes` bytes: the size is checked before the body is
    /// read (S3's `Content-Length`, the file's length), and the read itself
    /// stops past `max_bytes`, so an object that grew since it was listed,
    /// or whose notification carried no size, never costs more memory than
    /// the limit.
    async fn fetch(&self, key: &str, max_bytes: u64) -> StoreResult<Vec<u8>>;

    /// A short description for logs (`s3://bucket/prefix`, `/var/bucket`).
    fn describe(&self) -> String;

    /// True when a listed object may still be being written (a file in a
    /// folder), so that readers should wait until its modification time is
    /// a little in the past. S3 objects appear whole: false.
    fn needs_settling(&self) -> bool {
        false
    }

    /// The source-relative key of object `key` in bucket `bucket` (as an
    /// S3 event notification names them), or `None` when that object lies
    /// outside this source (another bucket or prefix; any folder source).
    fn relative_key(&self, bucket: &str, key: &str) -> Option<String> {
        let _ = (bucket, key);
        None
    }
}

/// One message received from a [`MessageQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id of the message (for logs).
    pub id: String,
    /// The handle of this receipt, for [`MessageQueue::delete`] and
    /// [`MessageQueue::extend`].
    pub receipt: String,
    /// The body, as sent.
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// A queue of notification messages (S3 event notifications). A received
/// message is hidden from other receivers for its visibility timeout; it
/// comes back when it is neither deleted nor extended in time, and the
/// queue's own redrive policy moves it to a dead-letter queue after
/// `maxReceiveCount` receipts.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Up to `max` messages (at most 10), waiting up to `wait` (at most 20 s)
    /// for the first, each hidden from other receivers for `visibility`.
    async fn receive(
        &self,
        max: u32,
        wait: std::time::Duration,
        visibility: std::time::Duration,
    ) -> StoreResult<Vec<QueueMessage>>;

    /// Deletes the message of this receipt.
    async fn delete(&self, receipt: &str) -> StoreResult<()>;

    /// Hides the message of this receipt for `visibility` from now on.
    async fn extend(&self, receipt: &str, visibility: std::time::Duration) -> StoreResult<()>;

    /// Sends a message (tests, benchmarks).
    async fn send(&self, body: &str) -> StoreResult<()>;

    /// The queue, for logs (its URL).
    fn describe(&self) -> String;
}

/// Sparse scans, keyed by radar and time.
#[async_trait]
pub trait ScanStore: Send + Sync {
    /// Stores a scan: every tile first, the manifest last, so a scan is
    /// visible only when complete. Idempotent: a second put for the same
    /// radar and time changes nothing and returns [`PutOutcome::AlreadyStored`].
    async fn put_scan(&self, scan: &NewScan, now: DateTime<Utc>) -> StoreResult<PutOutcome>;

    /// The manifest of one scan (expired scans are not returned).
    async fn get_manifest(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ScanManifest>>;

    /// One scan with all its tiles.
    async fn get_scan(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StoredScan>>;

    /// Manifests with `from <= time <= to`, oldest first, expired ones left out.
    async fn list_scans(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanManifest>>;

    /// The first `limit` entries with `from <= time <= to`, oldest first,
    /// expired ones left out: a page of a scan listing. Adapters read only
    /// what an entry holds where they can (DynamoDB: a projection); the
    /// default takes them from [`ScanStore::list_scans`].
    async fn list_entries(
        &self,
        radar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ScanEntry>> {
        let listed = self.list_scans(radar, from, to, now).await?;
        Ok(listed.iter().take(limit).map(ScanEntry::from).collect())
    }

    /// The newest unexpired manifest.
    async fn latest(&self, radar: &str, now: DateTime<Utc>) -> StoreResult<Option<ScanManifest>>;

    /// The bytes of one tile of one scan; `None` when the scan is not stored
    /// (or expired) or has no such tile (an empty tile).
    async fn get_tile(
        &self,
        radar: &str,
        time: DateTime<Utc>,
        row: u16,
        col: u16,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<u8>>>;
}

/// Small coordination records shared by every Raincast instance.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Whether only one process at a time can open this store (the embedded
    /// store locks its file): then a lease held by another process is a
    /// dead process's, and need not be waited out.
    fn single_process(&self) -> bool {
        false
    }

    /// The ingest checkpoint of a radar.
    async fn get_checkpoint(&self, radar: &str) -> StoreResult<Option<Checkpoint>>;

    /// Writes a checkpoint unless a newer one (later `last_time`, or the same
    /// time and a greater key) is stored: a checkpoint never moves backwards.
    /// Returns false when the stored one was newer and was kept.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool>;

    /// Takes the lease `name` for `owner` until `now + ttl` if it is free,
    /// expired, released or already the caller's.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<LeaseOutcome>;

    /// Extends a lease the caller still holds. False when it was lost
    /// (taken over by another owner or released).
    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Releases a lease the caller holds so the next owner need not wait for
    /// it to run out. False when the caller did not hold it.
    async fn release_lease(&self, name: &str, owner: &str, now: DateTime<Utc>)
        -> StoreResult<bool>;

    /// Records (or overwrites) a quarantined source object.
    async fn quarantine(&self, record: &QuarantineRecord) -> StoreResult<()>;

    /// Every quarantine record of a radar, in key order.
    async fn list_quarantined(&self, radar: &str) -> StoreResult<Vec<QuarantineRecord>>;

    /// The quarantine record of one source object of a radar, if any (one
    /// read: the queue path asks this for every notified file).
    async fn get_quarantined(
        &self,
        radar: &str,
        key: &str,
    ) -> StoreResult<Option<QuarantineRecord>>;

    /// Marks the source object `key` of `radar` as being decoded by `owner`
    /// from `now`, and returns how many earlier attempts at it were marked
    /// and never ended: each is a process that died while decoding it. The
    /// ingest pass quarantines a file as `crashed` once that count reaches
    /// its limit, instead of crashing again. Atomic: two callers never read
    /// the same count.
    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u32>;

    /// Ends an attempt: decoding finished (with a scan or a rejection), so
    /// the count starts again from zero.
    async fn end_attempt(&self, radar: &str, key: &str) -> StoreResult<()>;

    /// The versioned record at `key`, if any. Records are small JSON texts
    /// that a service updates with compare-and-set (the notifier's claims,
    /// posting records and place states); keys are namespaced by the caller
    /// (`notifier/event/…`) and may hold any character.
    async fn get_record(&self, key: &str) -> StoreResult<Option<VersionedRecord>>;

    /// Writes `value` at `key` when the stored version is `expected`
    /// (`None`: only when the key is absent). Returns the new version (1 for
    /// a new record, then +1 per write), or [`StoreError::Conflict`] when the
    /// record changed (or appeared) meanwhile: exactly one of two concurrent
    /// writers with the same `expected` wins.
    async fn put_record(&self, key: &str, value: &str, expected: Option<u64>) -> StoreResult<u64>;

    /// Every record whose key starts with `prefix`, in key order.
    async fn list_records(&self, prefix: &str) -> StoreResult<Vec<(String, VersionedRecord)>>;
}

#[cfg(test)]
mod adapter_tests;
