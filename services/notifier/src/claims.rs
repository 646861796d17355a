//! At-most-once posting: every event is claimed with a conditional write.
//!
//! The notifier needs very little from a state store: versioned JSON records
//! with a compare-and-set write and a prefix listing ([`RecordStore`]). That
//! maps onto DynamoDB (`ConditionExpression` on a version attribute) and onto
//! any embedded store with transactions; [`MemoryStore`] is the in-process
//! implementation (tests, dry runs) and [`OverlayStore`] reads through to a
//! real store while keeping writes in memory (dry runs leave no trace).
//!
//! Records (keys):
//! * `notifier/event/{event key}`: a [`ClaimRecord`];
//! * `notifier/state/{place slug}/{radar slug}`: the [`crate::PlaceState`].
//!
//! Life of a claim:
//! ```text
//!   (absent) --create if absent--> Pending{owner, lease}
//!   Pending --publish ok--> Posted            (final)
//!   Pending --publish failed--> Pending{no lease, attempts+1}  → retried on a later run
//!   Pending --data time past expires_at--> Expired   (final)
//!   Pending{lease run out} --compare-and-set--> Pending{new owner}  (crashed holder)
//! ```
//! Only the instance whose conditional write succeeded publishes, so two
//! notifiers never post the same event twice. A holder that crashes after X
//! accepted the post but before recording it leaves a Pending claim; the
//! retry then meets X's duplicate-content refusal, which the X publisher
//! reports as already posted (see [`crate::publish::x`]).
//!
//! **Cool-down across instances.** Event keys bucket the start time by the
//! place's cool-down length. Before creating a claim, the claim of the
//! previous bucket is read: if it holds an event of the same kind that
//! started less than a cool-down earlier, the new one is not posted.

use crate::events::Event;
use crate::place::Place;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Key prefix of claim records.
pub const EVENT_PREFIX: &str = "notifier/event/";
/// Key prefix of place states.
pub const STATE_PREFIX: &str = "notifier/state/";

/// Errors of a [`RecordStore`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The conditional write failed: the record changed (or exists) meanwhile.
    #[error("conditional write failed for {key}")]
    Conflict { key: String },
    /// The backend failed (network, I/O, throttling...).
    #[error("state store error on {key}: {message}")]
    Backend { key: String, message: String },
    /// A stored record is not valid JSON of the expected shape.
    #[error("corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
}

/// A stored value and its version (incremented by every write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// JSON text.
    pub value: String,
    /// Version, 1 for a new record.
    pub version: u64,
}

/// Versioned records with conditional writes: what the notifier needs from
/// the state store.
pub trait RecordStore: Send + Sync {
    /// The record at `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Writes `value` if the record's current version is `expected`
    /// (`None`: only if the key is absent). Returns the new version, or
    /// [`StoreError::Conflict`].
    fn put(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every record whose key starts with `prefix`, ordered by key.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, Versioned)>, StoreError>> + Send;
}

/// In-process [`RecordStore`]; clones share the same records.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<String, Versioned>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Versioned>> {
        // A poisoned lock only means another thread panicked mid-test; the
        // map itself is always consistent (single inserts).
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_sync(&self, key: &str) -> Option<Versioned> {
        self.lock().get(key).cloned()
    }

    fn put_sync(&self, key: &str, value: &str, expected: Option<u64>) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let current = map.get(key).map(|v| v.version);
        if current != expected {
            return Err(StoreError::Conflict {
                key: key.to_string(),
            });
        }
        let version = current.unwrap_or(0) + 1;
        map.insert(
            key.to_string(),
            Versioned {
                value: value.to_string(),
                version,
            },
        );
        Ok(version)
    }

    fn list_sync(&self, prefix: &str) -> Vec<(String, Versioned)> {
        self.lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl RecordStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.get_sync(key))
    }

    async fn put(&self, key: &str, value: &str, expected: Option<u64>) -> Result<u64, StoreError> {
        self.put_sync(key, value, expected)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        Ok(self.list_sync(prefix))
    }
}

/// Reads from `base` until a key is written; writes stay in memory. Used for
/// dry runs: they see the real state but change nothing in it.
#[derive(Debug, Clone)]
pub struct OverlayStore<S> {
    base: S,
    overlay: MemoryStore,
}

impl<S: RecordStore> OverlayStore<S> {
    /// An overlay over `base`.
    pub fn new(base: S) -> Self {
        Self {
            base,
            overlay: MemoryStore::new(),
        }
    }
}

impl<S: RecordStore> RecordStore for OverlayStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.overlay.get_sync(key) {
            Some(v) => Ok(Some(v)),
            None => self.base.get(key).await,
        }
    }

    async fn put(&self, key: &str, value: &str, expected: Option<u64>) -> Result<u64, StoreError> {
        if self.overlay.get_sync(key).is_none() {
            // First write of this key in the overlay: check against the base,
            // then seed the overlay with the base's version.
            let base = self.base.get(key).await?;
            let current = base.as_ref().map(|v| v.version);
            if current != expected {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                });
            }
            if let Some(b) = base {
                let mut map = self.overlay.lock();
                map.entry(key.to_string()).or_insert(b);
            }
        }
        self.overlay.put_sync(key, value, expected)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let mut merged: BTreeMap<String, Versioned> =
            self.base.list(prefix).await?.into_iter().collect();
        merged.extend(self.overlay.list_sync(prefix));
        Ok(merged.into_iter().collect())
    }
}

/// Where a claimed event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Claimed; not yet posted (in progress under a lease, or waiting for a retry).
    Pending,
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
        }
    }

    fn leased_at(&self, now: DateTime<Utc>) -> bool {
        self.status == ClaimStatus::Pending && self.lease_until.is_some_and(|t| t > now)
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

/// Claims over a [`RecordStore`], for one notifier instance.
#[derive(Debug, Clone)]
pub struct Claims<S> {
    store: S,
    owner: String,
    lease: Duration,
}

fn to_json<T: Serialize>(key: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
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

impl<S: RecordStore> Claims<S> {
    /// Claims for instance `owner` with leases of `lease`.
    pub fn new(store: S, owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            store,
            owner: owner.into(),
            lease,
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// This instance's id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Reads a claim.
    pub async fn get(&self, event_key: &str) -> Result<Option<(ClaimRecord, u64)>, StoreError> {
        let key = claim_key(event_key);
        match self.store.get(&key).await? {
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
        match self.store.put(&key, &to_json(&key, &record)?, None).await {
            Ok(version) => Ok(ClaimOutcome::Acquired { version, record }),
            Err(StoreError::Conflict { .. }) => match self.get(&event.key).await? {
                Some((existing, version)) => self.take_over(existing, version, now).await,
                None => Err(StoreError::Backend {
                    key,
                    message: "record vanished after a conflict".into(),
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
            ClaimStatus::Pending if existing.leased_at(now) => {
                return Ok(ClaimOutcome::Busy { record: existing })
            }
            ClaimStatus::Pending => {}
        }
        let key = claim_key(&existing.event.key);
        let mut record = existing.clone();
        record.owner = Some(self.owner.clone());
        record.lease_until = Some(now + self.lease);
        match self
            .store
            .put(&key, &to_json(&key, &record)?, Some(version))
            .await
        {
            Ok(version) => Ok(ClaimOutcome::Acquired { version, record }),
            Err(StoreError::Conflict { .. }) => Ok(ClaimOutcome::Busy { record: existing }),
            Err(e) => Err(e),
        }
    }

    /// Pending claims nobody holds a live lease on at `now`, oldest scan first.
    pub async fn retryable(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ClaimRecord, u64)>, StoreError> {
        let mut out = Vec::new();
        for (key, v) in self.store.list(EVENT_PREFIX).await? {
            let record: ClaimRecord = from_json(&key, &v.value)?;
            if record.status == ClaimStatus::Pending && !record.leased_at(now) {
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
        self.store
            .put(&key, &to_json(&key, record)?, Some(version))
            .await
    }

    /// Every claim (for reports and tests), ordered by key.
    pub async fn all(&self) -> Result<Vec<ClaimRecord>, StoreError> {
        let mut out = Vec::new();
        for (key, v) in self.store.list(EVENT_PREFIX).await? {
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
        match self.store.get(&key).await? {
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
        self.store.put(&key, &to_json(&key, state)?, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{evaluate, tests::shower_outlook, PlaceState};

    fn first_event() -> (Event, Place) {
        let place = Place::new("Brussels", 50.85, 4.35);
        let ev = evaluate(&place, &PlaceState::default(), &shower_outlook(0));
        (ev.events[0].clone(), place)
    }

    fn now() -> DateTime<Utc> {
        crate::events::tests::t0()
    }

    #[tokio::test]
    async fn memory_store_compare_and_set() {
        let s = MemoryStore::new();
        assert_eq!(s.put("a", "1", None).await, Ok(1));
        assert!(matches!(
            s.put("a", "2", None).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.put("a", "2", Some(7)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(s.put("a", "2", Some(1)).await, Ok(2));
        assert_eq!(
            s.get("a").await.expect("get").map(|v| v.value),
            Some("2".into())
        );
        s.put("b/1", "x", None).await.expect("put");
        s.put("b/2", "y", None).await.expect("put");
        s.put("c", "z", None).await.expect("put");
        let keys: Vec<String> = s
            .list("b/")
            .await
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["b/1", "b/2"]);
    }

    #[tokio::test]
    async fn overlay_reads_through_and_writes_aside() {
        let base = MemoryStore::new();
        base.put("k", "base", None).await.expect("put");
        let o = OverlayStore::new(base.clone());
        assert_eq!(o.get("k").await.expect("get").map(|v| v.version), Some(1));
        assert!(matches!(
            o.put("k", "x", None).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(o.put("k", "over", Some(1)).await, Ok(2));
        assert_eq!(o.put("new", "n", None).await, Ok(1));
        assert_eq!(
            o.get("k").await.expect("get").map(|v| v.value),
            Some("over".into())
        );
        assert_eq!(
            base.get("k").await.expect("get").map(|v| v.value),
            Some("base".into())
        );
        assert!(base.get("new").await.expect("get").is_none());
        assert_eq!(o.list("").await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn one_claim_wins_and_leases_expire() {
        let store = MemoryStore::new();
        let a = Claims::new(store.clone(), "a", Duration::minutes(10));
        let b = Claims::new(store.clone(), "b", Duration::minutes(10));
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
        let store = MemoryStore::new();
        let a = Claims::new(store.clone(), "a", Duration::minutes(10));
        let b = Claims::new(store.clone(), "b", Duration::minutes(10));
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
        let later = now() + Duration::minutes(11);
        assert!(matches!(
            b.claim(&event, &place, "t", later).await.expect("claim"),
            ClaimOutcome::Acquired { .. }
        ));
    }

    #[tokio::test]
    async fn previous_bucket_enforces_the_cool_down() {
        let store = MemoryStore::new();
        let c = Claims::new(store, "a", Duration::minutes(10));
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
        let c = Claims::new(MemoryStore::new(), "a", Duration::minutes(10));
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
