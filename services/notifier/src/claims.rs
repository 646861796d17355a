//! Exactly-once posting: every event is claimed with a conditional write in
//! the shared [`StateStore`] (its versioned records), and every publish is
//! recorded before and after it happens.
//!
//! Records (keys of [`StateStore::get_record`]):
//! * `notifier/event/{event key}`: a [`ClaimRecord`];
//! * `notifier/state/{place slug}/{radar slug}`: the [`crate::PlaceState`].
//!
//! Life of a claim:
//! ```text
//!   (absent) --create if absent--> Pending{owner, lease}
//!   Pending --renew, just before publishing--> Attempting{owner, lease, attempt_at}
//!   Attempting --publisher accepted--> Posted            (final)
//!   Attempting --failed before the post could exist--> Pending{no lease}   → retried later
//!   Attempting --failed after it may exist (cut connection)--> Attempting{no lease}
//!   Pending|Attempting --data time past expires_at--> Expired   (final)
//!   Pending|Attempting{lease run out} --compare-and-set--> same, new owner  (crashed holder)
//! ```
//! Only the instance whose conditional write succeeded publishes, and it
//! publishes only inside its lease: the claim is renewed right before the
//! publish and the publisher gives up rather than wait past the lease
//! ([`crate::publish::PublishContext`]). An instance that takes over a claim
//! found in `Attempting` first asks the publisher whether the post exists
//! (X: the account's recent posts; outbox: the record file) and records it
//! as posted instead of posting again. "Posted" is written until the store
//! accepts it.
//!
//! Dry runs ([`Claims::dry_run`]) read the store but keep their writes in
//! memory; [`Claims::in_memory`] has no store at all (previews, unit tests).
//!
//! **Cool-down across instances.** Event keys bucket the start time by the
//! place's cool-down length. Before creating a claim, the claim of the
//! previous bucket is read: if it holds an event of the same kind that
//! started less than a cool-down earlier, the new one is not posted.

use crate::events::Event;
use crate::place::Place;
use chrono::{DateTime, Duration, Utc};
use raincast_store::{lease_expired, StateStore, StoreError, VersionedRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Prefix of [`Claims::process_owner`] ids.
const OWNER_PREFIX: &str = "notify-";

/// This process: its id and start, `pid.ms` (no `-`).
fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        format!(
            "{}.{}",
            std::process::id(),
            Utc::now().timestamp_millis().unsigned_abs()
        )
    })
}

/// Key prefix of claim records.
pub const EVENT_PREFIX: &str = "notifier/event/";
/// Key prefix of place states.
pub const STATE_PREFIX: &str = "notifier/state/";

/// Records written aside (dry runs, in-memory claims); clones share them.
type Overlay = Arc<Mutex<BTreeMap<String, VersionedRecord>>>;

fn conflict(key: &str) -> StoreError {
    StoreError::Conflict {
        what: format!("record {key:?}"),
        reason: "changed meanwhile".into(),
    }
}

/// Where a claimed event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Claimed; not yet posted (in progress under a lease, or waiting for a retry).
    Pending,
    /// A publish started at `attempt_at` and its outcome is unknown (in
    /// progress, or the holder crashed or lost the answer): whoever takes it
    /// over asks the publisher before posting.
    Attempting,
    /// Posted (final).
    Posted,
    /// Not posted before it stopped being useful (final).
    Expired,
}

/// The stored claim of one event: everything needed to retry it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The event.
    pub event: Event,
    /// The place, as configured when the event was found.
    pub place: Place,
    /// The post text.
    pub text: String,
    /// Status.
    pub status: ClaimStatus,
    /// Publishing attempts so far.
    pub attempts: u32,
    /// Instance holding the lease.
    pub owner: Option<String>,
    /// Wall-clock end of the holder's lease; after it another instance may take over.
    pub lease_until: Option<DateTime<Utc>>,
    /// Last publishing error.
    pub last_error: Option<String>,
    /// Publisher that posted it (`x`, `outbox`).
    pub publisher: Option<String>,
    /// Id of the post (tweet id, outbox path).
    pub post_id: Option<String>,
    /// Wall-clock time of posting.
    pub posted_at: Option<DateTime<Utc>>,
    /// Size of the GIF posted, bytes.
    pub gif_bytes: Option<usize>,
    /// Wall-clock start of the latest publish attempt.
    #[serde(default)]
    pub attempt_at: Option<DateTime<Utc>>,
}

impl ClaimRecord {
    /// A new pending claim held by `owner` until `lease_until`.
    pub fn new(
        event: Event,
        place: Place,
        text: String,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Self {
        Self {
            event,
            place,
            text,
            status: ClaimStatus::Pending,
            attempts: 0,
            owner: Some(owner.to_string()),
            lease_until: Some(lease_until),
            last_error: None,
            publisher: None,
            post_id: None,
            posted_at: None,
            gif_bytes: None,
            attempt_at: None,
        }
    }

    /// Not final: pending, or attempting with an unknown outcome.
    pub fn is_open(&self) -> bool {
        matches!(self.status, ClaimStatus::Pending | ClaimStatus::Attempting)
    }

    /// Whether a live lease holds it at `now`: one that has not run out,
    /// [`raincast_store::LEASE_SKEW_MARGIN`] included, since the holder's clock may be
    /// behind ours.
    fn leased_at(&self, now: DateTime<Utc>) -> bool {
        self.is_open() && self.lease_until.is_some_and(|t| !lease_expired(t, now))
    }
}

/// Outcome of [`Claims::claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This instance owns the event and must publish it; `version` is the
    /// record version to update.
    Acquired { version: u64, record: ClaimRecord },
    /// Someone already posted it, or it expired.
    Done { record: ClaimRecord },
    /// Another instance holds a live lease on it.
    Busy { record: ClaimRecord },
    /// An event of the same kind for this place started less than a
    /// cool-down earlier (claim `other_key`).
    CoolingDown { other_key: String },
}

/// Claims in the [`StateStore`], for one notifier instance. Cheap to clone.
#[derive(Clone)]
pub struct Claims {
    /// The shared store; `None` for in-memory claims.
    store: Option<Arc<dyn StateStore>>,
    /// Writes kept in memory (dry runs, in-memory claims), read first.
    overlay: Option<Overlay>,
    owner: String,
    lease: Duration,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("store", &self.store.is_some())
            .field("in_memory", &self.overlay.is_some())
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish()
    }
}

fn to_json<T: Serialize>(key: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: key.to_string(),
        reason: e.to_string(),
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: key.to_string(),
        reason: e.to_string(),
    })
}

fn lock(o: &Overlay) -> std::sync::MutexGuard<'_, BTreeMap<String, VersionedRecord>> {
    // A poisoned lock only means another thread panicked; the map is always
    // consistent (single inserts).
    o.lock().unwrap_or_else(|e| e.into_inner())
}

/// Store key of an event's claim.
pub fn claim_key(event_key: &str) -> String {
    format!("{EVENT_PREFIX}{event_key}")
}

/// Store key of a (place, radar) state.
pub fn state_key(place: &Place, radar: &str) -> String {
    format!(
        "{STATE_PREFIX}{}/{}",
        place.slug(),
        crate::place::slug(radar)
    )
}

impl Claims {
    /// Claims for instance `owner` with leases of `lease`, in `store`.
    pub fn new(store: Arc<dyn StateStore>, owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            store: Some(store),
            overlay: None,
            owner: owner.into(),
            lease,
        }
    }

    /// Claims that read `store` but keep every write in memory: a dry run
    /// sees the real state and changes nothing in it.
    pub fn dry_run(store: Arc<dyn StateStore>, owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            overlay: Some(Overlay::default()),
            ..Self::new(store, owner, lease)
        }
    }

    /// Claims in memory only.
    pub fn in_memory(owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            store: None,
            overlay: Some(Overlay::default()),
            owner: owner.into(),
            lease,
        }
    }

    /// The owner id of a notifier pass of this process:
    /// `notify-{process}-{ms}`, where `{process}` is the process id and its
    /// start (`pid.ms`: a restarted container's process 1 differs from the
    /// one before) and `{ms}` the pass's start ([`Self::held_by_the_dead`]
    /// reads it back).
    pub fn process_owner() -> String {
        format!(
            "{OWNER_PREFIX}{}-{}",
            process_token(),
            Utc::now().timestamp_millis()
        )
    }

    /// Whether `record`'s lease is held by a process that no longer runs:
    /// on a store only one process can open ([`StateStore::single_process`]),
    /// an owner of [`Self::process_owner`]'s form from another process. Its
    /// claims are taken over at once instead of after the lease (20 min), so
    /// a crash or a `kill -9` delays no alert.
    fn held_by_the_dead(&self, record: &ClaimRecord) -> bool {
        let single = self.store.as_ref().is_some_and(|s| s.single_process());
        let process = record
            .owner
            .as_deref()
            .and_then(|o| o.strip_prefix(OWNER_PREFIX))
            .and_then(|rest| rest.split('-').next());
        single && process.is_some_and(|p| p != process_token())
    }

    /// Another instance `owner` over the same records (and memory).
    pub fn for_owner(&self, owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            ..self.clone()
        }
    }

    /// This instance's id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    async fn get_raw(&self, key: &str) -> Result<Option<VersionedRecord>, StoreError> {
        if let Some(v) = self
            .overlay
            .as_ref()
            .and_then(|o| lock(o).get(key).cloned())
        {
            return Ok(Some(v));
        }
        match &self.store {
            Some(s) => s.get_record(key).await,
            None => Ok(None),
        }
    }

    async fn put_raw(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let Some(overlay) = &self.overlay else {
            return match &self.store {
                Some(s) => s.put_record(key, value, expected).await,
                None => Err(conflict(key)),
            };
        };
        // First write of a key in memory: compare with the store's version.
        let in_memory = lock(overlay).get(key).map(|v| v.version);
        let current = match in_memory {
            Some(v) => Some(v),
            None => self.get_raw(key).await?.map(|v| v.version),
        };
        let mut map = lock(overlay);
        let now_current = map.get(key).map(|v| v.version).or(current);
        if now_current != expected {
            return Err(conflict(key));
        }
        let version = expected.unwrap_or(0) + 1;
        map.insert(
            key.to_string(),
            VersionedRecord {
                value: value.to_string(),
                version,
            },
        );
        Ok(version)
    }

    async fn list_raw(&self, prefix: &str) -> Result<Vec<(String, VersionedRecord)>, StoreError> {
        let mut merged: BTreeMap<String, VersionedRecord> = match &self.store {
            Some(s) => s.list_records(prefix).await?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        if let Some(o) = &self.overlay {
            let map = lock(o);
            merged.extend(
                map.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        Ok(merged.into_iter().collect())
    }

    /// Reads a claim.
    pub async fn get(&self, event_key: &str) -> Result<Option<(ClaimRecord, u64)>, StoreError> {
        let key = claim_key(event_key);
        match self.get_raw(&key).await? {
            Some(v) => Ok(Some((from_json(&key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    /// Tries to claim a new event at wall time `now`.
    pub async fn claim(
        &self,
        event: &Event,
        place: &Place,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        // Cross-instance cool-down: the previous bucket's claim.
        let cooldown = Duration::minutes(i64::from(place.thresholds.cooldown_min));
        let prev_key =
            crate::events::event_key(place, event.kind, &event.radar, event.start_time - cooldown);
        if prev_key != event.key {
            if let Some((prev, _)) = self.get(&prev_key).await? {
                let recent = event.start_time - prev.event.start_time < cooldown;
                if recent && prev.status != ClaimStatus::Expired {
                    return Ok(ClaimOutcome::CoolingDown {
                        other_key: prev_key,
                    });
                }
            }
        }
        let key = claim_key(&event.key);
        let record = ClaimRecord::new(
            event.clone(),
            place.clone(),
            text.to_string(),
            &self.owner,
            now + self.lease,
        );
        match self.put_raw(&key, &to_json(&key, &record)?, None).await {
            Ok(version) => Ok(ClaimOutcome::Acquired { version, record }),
            Err(StoreError::Conflict { .. }) => match self.get(&event.key).await? {
                Some((existing, version)) => self.take_over(existing, version, now).await,
                None => Err(StoreError::Conflict {
                    what: key,
                    reason: "record vanished after a conflict".into(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Takes over an existing pending claim whose lease has run out.
    async fn take_over(
        &self,
        existing: ClaimRecord,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        match existing.status {
            ClaimStatus::Posted | ClaimStatus::Expired => {
                return Ok(ClaimOutcome::Done { record: existing })
            }
            ClaimStatus::Pending | ClaimStatus::Attempting
                if existing.leased_at(now) && !self.held_by_the_dead(&existing) =>
            {
                return Ok(ClaimOutcome::Busy { record: existing })
            }
            ClaimStatus::Pending | ClaimStatus::Attempting => {}
        }
        let key = claim_key(&existing.event.key);
        let mut record = existing.clone();
        record.owner = Some(self.owner.clone());
        record.lease_until = Some(now + self.lease);
        match self
            .put_raw(&key, &to_json(&key, &record)?, Some(version))
            .await
        {
            Ok(version) => Ok(ClaimOutcome::Acquired { version, record }),
            Err(StoreError::Conflict { .. }) => Ok(ClaimOutcome::Busy { record: existing }),
            Err(e) => Err(e),
        }
    }

    /// Open claims (pending or attempting) nobody holds a live lease on at `now`, oldest scan first.
    pub async fn retryable(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ClaimRecord, u64)>, StoreError> {
        let mut out = Vec::new();
        for (key, v) in self.list_raw(EVENT_PREFIX).await? {
            let record: ClaimRecord = from_json(&key, &v.value)?;
            if record.is_open() && (!record.leased_at(now) || self.held_by_the_dead(&record)) {
                out.push((record, v.version));
            }
        }
        out.sort_by_key(|(r, _)| (r.event.scan_time, r.event.key.clone()));
        Ok(out)
    }

    /// Acquires a retryable claim (compare-and-set on `version`).
    pub async fn acquire(
        &self,
        record: ClaimRecord,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        self.take_over(record, version, now).await
    }

    /// Writes the final or retry state of a claim this instance holds.
    /// [`StoreError::Conflict`] means the lease was lost meanwhile.
    pub async fn update(&self, record: &ClaimRecord, version: u64) -> Result<u64, StoreError> {
        let key = claim_key(&record.event.key);
        self.put_raw(&key, &to_json(&key, record)?, Some(version))
            .await
    }

    /// Checks and renews a held claim right before publishing it: records
    /// `Attempting` with the attempt time, this owner and a fresh lease
    /// (compare-and-set on `version`, so a claim taken over meanwhile gives
    /// [`StoreError::Conflict`] and must not be published). Returns the new
    /// version; `record` is updated.
    pub async fn begin_attempt(
        &self,
        record: &mut ClaimRecord,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut next = record.clone();
        next.status = ClaimStatus::Attempting;
        next.attempt_at = Some(now);
        next.attempts += 1;
        next.owner = Some(self.owner.clone());
        next.lease_until = Some(now + self.lease);
        let v = self.update(&next, version).await?;
        *record = next;
        Ok(v)
    }

    /// Every claim (for reports and tests), ordered by key.
    pub async fn all(&self) -> Result<Vec<ClaimRecord>, StoreError> {
        let mut out = Vec::new();
        for (key, v) in self.list_raw(EVENT_PREFIX).await? {
            out.push(from_json(&key, &v.value)?);
        }
        Ok(out)
    }

    /// The stored state of a (place, radar) pair and its version.
    pub async fn load_state(
        &self,
        place: &Place,
        radar: &str,
    ) -> Result<(crate::PlaceState, Option<u64>), StoreError> {
        let key = state_key(place, radar);
        match self.get_raw(&key).await? {
            Some(v) => Ok((from_json(&key, &v.value)?, Some(v.version))),
            None => Ok((crate::PlaceState::default(), None)),
        }
    }

    /// Stores a state with a compare-and-set on `expected`.
    pub async fn save_state(
        &self,
        place: &Place,
        radar: &str,
        state: &crate::PlaceState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = state_key(place, radar);
        self.put_raw(&key, &to_json(&key, state)?, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{evaluate, tests::shower_outlook, PlaceState};
    use raincast_store::{LEASE_SKEW_MARGIN, MAX_CLOCK_SKEW};

    fn first_event() -> (Event, Place) {
        let place = Place::new("Brussels", 50.85, 4.35);
        let ev = evaluate(&place, &PlaceState::default(), &shower_outlook(0));
        (ev.events[0].clone(), place)
    }

    fn now() -> DateTime<Utc> {
        crate::events::tests::t0()
    }

    #[tokio::test]
    async fn in_memory_records_compare_and_set() {
        let c = Claims::in_memory("a", Duration::minutes(10));
        let conflict = |r: Result<u64, StoreError>| matches!(r, Err(StoreError::Conflict { .. }));
        assert_eq!(c.put_raw("a", "1", None).await, Ok(1));
        assert!(conflict(c.put_raw("a", "2", None).await));
        assert!(conflict(c.put_raw("a", "2", Some(7)).await));
        assert_eq!(c.for_owner("b").put_raw("a", "2", Some(1)).await, Ok(2));
        assert_eq!(
            c.get_raw("a").await.expect("get").map(|v| v.value),
            Some("2".into())
        );
        for (k, v) in [("b/1", "x"), ("b/2", "y"), ("c", "z")] {
            c.put_raw(k, v, None).await.expect("put");
        }
        let keys: Vec<String> = c
            .list_raw("b/")
            .await
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["b/1", "b/2"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dry_run_reads_the_store_and_writes_aside() {
        let dir = raincast_testkit::TempDir::new("notifier-dry-run");
        let store: Arc<dyn StateStore> = Arc::new(
            raincast_store::EmbeddedStore::open(dir.path().join("s.redb"), Duration::days(7))
                .await
                .expect("store"),
        );
        store.put_record("k", "base", None).await.expect("put");
        let o = Claims::dry_run(store.clone(), "a", Duration::minutes(10));
        assert_eq!(
            o.get_raw("k").await.expect("get").map(|v| v.version),
            Some(1)
        );
        assert!(matches!(
            o.put_raw("k", "x", None).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(o.put_raw("k", "over", Some(1)).await, Ok(2));
        assert_eq!(o.put_raw("new", "n", None).await, Ok(1));
        assert_eq!(
            o.get_raw("k").await.expect("get").map(|v| v.value),
            Some("over".into())
        );
        let base = store.get_record("k").await.expect("get").expect("kept");
        assert_eq!((base.value.as_str(), base.version), ("base", 1));
        assert!(store.get_record("new").await.expect("get").is_none());
        assert_eq!(o.list_raw("").await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn one_claim_wins_and_leases_expire() {
        let a = Claims::in_memory("a", Duration::minutes(10));
        let b = a.for_owner("b");
        let (event, place) = first_event();
        let got_a = a.claim(&event, &place, "text", now()).await.expect("claim");
        let ClaimOutcome::Acquired {
            version,
            mut record,
        } = got_a
        else {
            panic!("a should acquire: {got_a:?}");
        };
        // b meets a's live lease.
        assert!(matches!(
            b.claim(&event, &place, "text", now()).await.expect("claim"),
            ClaimOutcome::Busy { .. }
        ));
        // a fails to publish: releases the lease, pending.
        record.attempts += 1;
        record.lease_until = None;
        record.last_error = Some("network".into());
        let version = a.update(&record, version).await.expect("update");
        let retry = b.retryable(now()).await.expect("list");
        assert_eq!(retry.len(), 1);
        let (rec, v) = retry.into_iter().next().expect("one");
        let ClaimOutcome::Acquired {
            version: vb,
            mut record,
        } = b.acquire(rec, v, now()).await.expect("acquire")
        else {
            panic!("b should acquire the released claim");
        };
        assert_eq!(record.owner.as_deref(), Some("b"));
        // a's stale version can no longer write.
        assert!(matches!(
            a.update(&record, version).await,
            Err(StoreError::Conflict { .. })
        ));
        record.status = ClaimStatus::Posted;
        b.update(&record, vb).await.expect("posted");
        assert!(matches!(
            a.claim(&event, &place, "text", now()).await.expect("claim"),
            ClaimOutcome::Done { .. }
        ));
        assert!(b.retryable(now()).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn crashed_holder_is_taken_over_after_its_lease() {
        let a = Claims::in_memory("a", Duration::minutes(10));
        let b = a.for_owner("b");
        let (event, place) = first_event();
        assert!(matches!(
            a.claim(&event, &place, "t", now()).await.expect("claim"),
            ClaimOutcome::Acquired { .. }
        ));
        // a "crashes". Before its lease ends, nothing to retry; after, b takes over.
        assert!(b
            .retryable(now() + Duration::minutes(5))
            .await
            .expect("list")
            .is_empty());
        // a's clock may be behind b's: b waits LEASE_SKEW_MARGIN past the lease.
        let within = now() + Duration::minutes(10) + MAX_CLOCK_SKEW * 2 - Duration::milliseconds(1);
        assert!(b.retryable(within).await.expect("list").is_empty());
        assert!(matches!(
            b.claim(&event, &place, "t", within).await.expect("claim"),
            ClaimOutcome::Busy { .. }
        ));
        let later = now() + Duration::minutes(10) + LEASE_SKEW_MARGIN;
        assert_eq!(b.retryable(later).await.expect("list").len(), 1);
        assert!(matches!(
            b.claim(&event, &place, "t", later).await.expect("claim"),
            ClaimOutcome::Acquired { .. }
        ));
    }

    /// On a store one process at a time can open (the embedded store), a
    /// claim leased by a notifier of another process (crashed: it is not
    /// running, or the store would not have opened) is taken over at once;
    /// this process's own, and leases of other owner forms, are waited out.
    #[tokio::test]
    async fn a_dead_processs_claim_on_the_embedded_store_is_taken_over_at_once() {
        let (event, place) = first_event();
        for (owner, dead) in [
            ("notify-99999999.1-1".to_string(), true),
            (Claims::process_owner(), false),
            ("instance-a".to_string(), false),
        ] {
            let dir = raincast_testkit::TempDir::new("claims-dead");
            let store: Arc<dyn StateStore> = Arc::new(
                raincast_store::EmbeddedStore::open(dir.path().join("s.redb"), Duration::days(7))
                    .await
                    .expect("store"),
            );
            let mine = Claims::new(store, Claims::process_owner(), Duration::minutes(20));
            let holder = mine.for_owner(owner.clone());
            assert!(matches!(
                holder
                    .claim(&event, &place, "t", now())
                    .await
                    .expect("claim"),
                ClaimOutcome::Acquired { .. }
            ));
            let soon = now() + Duration::minutes(1);
            let open = mine.retryable(soon).await.expect("list");
            assert_eq!(open.len(), usize::from(dead), "{owner}");
            let got = mine.claim(&event, &place, "t", soon).await.expect("claim");
            assert_eq!(
                matches!(got, ClaimOutcome::Acquired { .. }),
                dead,
                "{owner}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn previous_bucket_enforces_the_cool_down() {
        let c = Claims::in_memory("a", Duration::minutes(10));
        let (event, place) = first_event();
        let ClaimOutcome::Acquired { .. } =
            c.claim(&event, &place, "t", now()).await.expect("claim")
        else {
            panic!("acquire");
        };
        // The same kind starting 90 min later falls in the next 120-min bucket
        // but within the cool-down of the first.
        let mut later = event.clone();
        later.start_time = event.start_time + Duration::minutes(90);
        later.key = crate::events::event_key(&place, later.kind, &later.radar, later.start_time);
        assert_ne!(later.key, event.key);
        assert!(matches!(
            c.claim(&later, &place, "t", now()).await.expect("claim"),
            ClaimOutcome::CoolingDown { .. }
        ));
        // 130 min later it is a new event.
        let mut much_later = event.clone();
        much_later.start_time = event.start_time + Duration::minutes(130);
        much_later.key =
            crate::events::event_key(&place, later.kind, &later.radar, much_later.start_time);
        assert!(matches!(
            c.claim(&much_later, &place, "t", now())
                .await
                .expect("claim"),
            ClaimOutcome::Acquired { .. }
        ));
    }

    #[tokio::test]
    async fn state_round_trip_with_compare_and_set() {
        let c = Claims::in_memory("a", Duration::minutes(10));
        let place = Place::new("Brussels", 50.85, 4.35);
        let (s, v) = c.load_state(&place, "be-rmi").await.expect("load");
        assert_eq!((s, v), (PlaceState::default(), None));
        let st = PlaceState {
            raining: true,
            ..PlaceState::default()
        };
        let v1 = c
            .save_state(&place, "be-rmi", &st, None)
            .await
            .expect("save");
        assert!(c.save_state(&place, "be-rmi", &st, None).await.is_err());
        let (back, v) = c.load_state(&place, "be-rmi").await.expect("load");
        assert!(back.raining);
        assert_eq!(v, Some(v1));
    }
}
