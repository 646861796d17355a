//! Webhook subscriptions: one versioned record per subscription in the state
//! store, `subscription/{key id}/{subscription id}`, so that every instance
//! (API and notifier, embedded store on one host or DynamoDB in a fleet)
//! sees the same subscriptions, and a key lists only its own.
//!
//! **The signing secret is stored.** A subscription's secret signs every
//! delivery (HMAC-SHA256, Standard Webhooks), and an HMAC needs the secret
//! itself at signing time, so unlike an API key it cannot be kept as a hash.
//! It is returned once, by [`create`]; listings ([`Subscription::public`])
//! never carry it. Whoever can read the state store can read the secrets:
//! protect the store (file permissions of the embedded store, IAM on the
//! DynamoDB table) as the credential store it is.
//!
//! **One subscription per key, URL and place.** Two subscriptions of one
//! key with the same URL, point and radius would post every event twice
//! to the same endpoint (a client that retries a create whose answer it
//! lost makes exactly that). A target record per key, URL and place,
//! `subscription-target/{key id}/{digest}`, written create-only before the
//! subscription, names the subscription that holds it; a second create
//! meets it and is refused ([`SubscriptionError::Exists`], naming the
//! first, also while the first is being written). Deleting the
//! subscription empties its target; a target whose subscription was never
//! written (a crash between the two writes) is taken over after a minute.
//!
//! **The per-key limit** is kept by a count record per key,
//! `subscription-count/{key id}`, updated with a compare-and-set before the
//! subscription is written: two instances creating at once cannot both take
//! the last place.

use crate::{StateStore, StoreError, StoreResult};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Key prefix of subscription records.
pub const PREFIX: &str = "subscription/";
/// Key prefix of the per-key count records.
pub const COUNT_PREFIX: &str = "subscription-count/";
/// Key prefix of the target records (one per key, URL and place).
pub const TARGET_PREFIX: &str = "subscription-target/";
/// Prefix of a subscription id.
pub const ID_PREFIX: &str = "sub_";
/// Prefix of a signing secret (Standard Webhooks: `whsec_` + base64 of the key bytes).
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a signing secret.
pub const SECRET_BYTES: usize = 24;

/// A stored subscription.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// `sub_` + 16 hex digits.
    pub id: String,
    /// Public id of the API key that owns it ([`crate::keys::ApiKeyRecord::id`]).
    pub key_id: String,
    /// Display name (texts, the webhook body's `place`).
    pub name: String,
    /// WGS84 degrees.
    pub lat: f64,
    pub lon: f64,
    /// Radius of the disk around the point, km.
    pub radius_km: f64,
    /// Where deliveries go.
    pub url: String,
    /// Event kinds delivered (`rain_expected`, `rain_started`, `heavy_rain`, `clearing`).
    pub events: Vec<String>,
    /// Signing secret, `whsec_…` (see the module docs).
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .field("lat", &self.lat)
            .field("lon", &self.lon)
            .field("radius_km", &self.radius_km)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"***")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What a new subscription asks for (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
    pub url: String,
    pub events: Vec<String>,
}

/// A subscription without its secret, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicSubscription<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
    pub url: &'a str,
    pub events: &'a [String],
    pub created_at: DateTime<Utc>,
}

impl Subscription {
    /// The listing form: everything but the secret.
    pub fn public(&self) -> PublicSubscription<'_> {
        PublicSubscription {
            id: &self.id,
            name: &self.name,
            lat: self.lat,
            lon: self.lon,
            radius_km: self.radius_km,
            url: &self.url,
            events: &self.events,
            created_at: self.created_at,
        }
    }

    /// The HMAC key: the base64 after `whsec_`.
    pub fn secret_bytes(&self) -> Option<Vec<u8>> {
        let b64 = self.secret.strip_prefix(SECRET_PREFIX)?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// Why a subscription could not be created or removed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("this key already has {max} subscriptions, the most allowed")]
    TooMany { max: usize },
    #[error("no subscription {0:?} for this key")]
    Unknown(String),
    #[error("subscription {id} of this key already posts to this URL for this place")]
    Exists { id: String },
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn record_key(key_id: &str, id: &str) -> String {
    format!("{PREFIX}{key_id}/{id}")
}

/// The target record of a key's subscriptions to `url` for the disk of
/// `radius_km` around `(lat, lon)`: a digest of the three (SHA-256, hex;
/// the URL may be long and hold any character).
fn target_key(key_id: &str, url: &str, lat: f64, lon: f64, radius_km: f64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(url.as_bytes());
    h.update([0u8]);
    for v in [lat, lon, radius_km] {
        h.update(v.to_le_bytes());
    }
    format!("{TARGET_PREFIX}{key_id}/{}", hex::encode(h.finalize()))
}

/// How long a target record may name a subscription that is not written
/// yet: a create writes the subscription right after its target, so a
/// target older than this whose subscription is missing was left by a
/// crash between the two writes and is taken over.
const TARGET_IN_FLIGHT_S: i64 = 60;

/// Takes the target record `at` for subscription `id` (the record holds
/// `{id} {time}`): create-only, or over a target whose subscription is gone
/// (deleted, or never written and older than [`TARGET_IN_FLIGHT_S`]).
/// `Err(Exists)` names the subscription that holds it (live, or being
/// created).
async fn take_target(
    state: &dyn StateStore,
    key_id: &str,
    at: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), SubscriptionError> {
    let value = format!("{id} {}", now.to_rfc3339());
    loop {
        let version = match state.get_record(at).await? {
            None => None,
            Some(r) => {
                let mut parts = r.value.split_whitespace();
                if let Some(holder) = parts.next() {
                    let since = parts
                        .next()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc));
                    let in_flight =
                        since.is_some_and(|t| (now - t).num_seconds() < TARGET_IN_FLIGHT_S);
                    let written = state.get_record(&record_key(key_id, holder)).await?;
                    let live = match written {
                        Some(s) => !s.value.is_empty(),
                        None => in_flight,
                    };
                    if live {
                        return Err(SubscriptionError::Exists {
                            id: holder.to_owned(),
                        });
                    }
                }
                Some(r.version)
            }
        };
        match state.put_record(at, &value, version).await {
            Ok(_) => return Ok(()),
            // Another create (or a delete) got there first: look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Empties target record `at` if subscription `id` holds it.
async fn release_target(state: &dyn StateStore, at: &str, id: &str) -> StoreResult<()> {
    if let Some(r) = state.get_record(at).await? {
        if r.value.split_whitespace().next() == Some(id) {
            match state.put_record(at, "", Some(r.version)).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn count_key(key_id: &str) -> String {
    format!("{COUNT_PREFIX}{key_id}")
}

fn random(n: usize) -> Result<Vec<u8>, SubscriptionError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| SubscriptionError::Random(e.to_string()))?;
    Ok(b)
}

fn corrupt(key: &str, e: serde_json::Error) -> StoreError {
    StoreError::corrupt(key, e.to_string())
}

/// Adds `delta` to the key's count with a compare-and-set, refusing to go
/// above `max`. Retries on conflicts.
async fn bump_count(
    state: &dyn StateStore,
    key_id: &str,
    delta: i64,
    max: usize,
) -> Result<(), SubscriptionError> {
    let at = count_key(key_id);
    loop {
        let current = state.get_record(&at).await?;
        let (count, version) = match &current {
            Some(r) => (
                r.value
                    .trim()
                    .parse::<i64>()
                    .map_err(|e| StoreError::corrupt(&at, format!("count {:?}: {e}", r.value)))?,
                Some(r.version),
            ),
            None => (0, None),
        };
        let next = (count + delta).max(0);
        if delta > 0 && next > max as i64 {
            return Err(SubscriptionError::TooMany { max });
        }
        match state.put_record(&at, &next.to_string(), version).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates a subscription for key `key_id` (at most `max` per key) with a
/// new id and secret. Returns the record, secret included (show it once).
pub async fn create(
    state: &dyn StateStore,
    key_id: &str,
    new: NewSubscription,
    max: usize,
    now: DateTime<Utc>,
) -> Result<Subscription, SubscriptionError> {
    let id = format!("{ID_PREFIX}{}", hex::encode(random(8)?));
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(random(SECRET_BYTES)?)
    );
    let target = target_key(key_id, &new.url, new.lat, new.lon, new.radius_km);
    take_target(state, key_id, &target, &id, now).await?;
    if let Err(e) = bump_count(state, key_id, 1, max).await {
        let _ = release_target(state, &target, &id).await;
        return Err(e);
    }
    let sub = Subscription {
        id,
        key_id: key_id.to_owned(),
        name: new.name,
        lat: new.lat,
        lon: new.lon,
        radius_km: new.radius_km,
        url: new.url,
        events: new.events,
        secret,
        created_at: now,
    };
    let at = record_key(key_id, &sub.id);
    let value = serde_json::to_string(&sub).map_err(|e| corrupt(&at, e))?;
    if let Err(e) = state.put_record(&at, &value, None).await {
        // Give the place and the target back; the subscription was not written.
        let _ = bump_count(state, key_id, -1, max).await;
        let _ = release_target(state, &target, &sub.id).await;
        return Err(e.into());
    }
    Ok(sub)
}

fn parse_all(records: Vec<(String, crate::VersionedRecord)>) -> Vec<Subscription> {
    let mut out = Vec::new();
    for (at, r) in records {
        if r.value.is_empty() {
            continue; // deleted
        }
        match serde_json::from_str::<Subscription>(&r.value) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!(record = %at, error = %e, "subscription record does not parse; skipped")
            }
        }
    }
    out
}

/// The subscriptions of key `key_id`, in id order.
pub async fn list_for_key(state: &dyn StateStore, key_id: &str) -> StoreResult<Vec<Subscription>> {
    Ok(parse_all(
        state.list_records(&format!("{PREFIX}{key_id}/")).await?,
    ))
}

/// Every subscription (the notifier's view), in key and id order.
pub async fn list_all(state: &dyn StateStore) -> StoreResult<Vec<Subscription>> {
    Ok(parse_all(state.list_records(PREFIX).await?))
}

/// Removes subscription `id` of key `key_id`. The state store has no
/// delete, so the record is emptied (versioned like any write) and
/// listings skip it.
pub async fn delete(
    state: &dyn StateStore,
    key_id: &str,
    id: &str,
) -> Result<(), SubscriptionError> {
    let at = record_key(key_id, id);
    let unknown = || SubscriptionError::Unknown(id.chars().take(40).collect());
    if id.contains('/') {
        return Err(unknown());
    }
    let Some(r) = state.get_record(&at).await? else {
        return Err(unknown());
    };
    if r.value.is_empty() {
        return Err(unknown());
    }
    // (A record that does not parse is removed all the same; its target,
    // if any, is taken over by the next create to it.)
    let sub = serde_json::from_str::<Subscription>(&r.value).ok();
    match state.put_record(&at, "", Some(r.version)).await {
        Ok(_) => {}
        // Removed by a concurrent request: gone either way.
        Err(StoreError::Conflict { .. }) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    }
    bump_count(state, key_id, -1, usize::MAX).await?;
    // A failure here leaves a target naming a deleted subscription, which
    // the next create takes over.
    if let Some(sub) = sub {
        release_target(
            state,
            &target_key(key_id, &sub.url, sub.lat, sub.lon, sub.radius_km),
            id,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    fn new(name: &str) -> NewSubscription {
        NewSubscription {
            name: name.into(),
            lat: 50.85,
            lon: 4.35,
            radius_km: 10.0,
            url: format!("https://example.org/hook/{name}"),
            events: vec!["rain_expected".into()],
        }
    }

    #[tokio::test]
    async fn a_second_subscription_to_the_same_url_and_place_is_refused() {
        let dir = raincast_testkit::TempDir::new("raincast-subs");
        let s = EmbeddedStore::open(dir.path().join("s.redb"), chrono::Duration::days(1))
            .await
            .expect("store");
        let now = Utc::now();
        let a = create(&s, "keya", new("one"), 10, now)
            .await
            .expect("create");
        // The same URL and place, even under another name or for other
        // events: refused, naming the first; nothing written or counted.
        let mut again = new("one");
        again.name = "renamed".into();
        again.events = vec!["heavy_rain".into()];
        match create(&s, "keya", again, 10, now).await {
            Err(SubscriptionError::Exists { id }) => assert_eq!(id, a.id),
            other => panic!("a duplicate was not refused: {other:?}"),
        }
        assert_eq!(list_for_key(&s, "keya").await.expect("list").len(), 1);
        // Another radius, another URL or another key is another target.
        let mut wider = new("one");
        wider.radius_km = 20.0;
        create(&s, "keya", wider, 10, now)
            .await
            .expect("another radius");
        create(&s, "keya", new("two"), 10, now)
            .await
            .expect("another url");
        create(&s, "keyb", new("one"), 10, now)
            .await
            .expect("another key");
        // Two creates of one target at once: exactly one is stored.
        let (x, y) = tokio::join!(
            create(&s, "keyc", new("same"), 10, now),
            create(&s, "keyc", new("same"), 10, now)
        );
        assert!(x.is_ok() != y.is_ok(), "{x:?} {y:?}");
        assert_eq!(list_for_key(&s, "keyc").await.expect("list").len(), 1);
        // Deleted, the target is free again, and the count allows it.
        delete(&s, "keya", &a.id).await.expect("delete");
        let b = create(&s, "keya", new("one"), 3, now)
            .await
            .expect("re-create");
        assert_ne!(b.id, a.id);
        // A target whose subscription was never written (a crash between
        // the two writes) is taken over.
        let at = target_key("keyd", "https://example.org/hook/one", 50.85, 4.35, 10.0);
        s.put_record(&at, "sub_0000000000000000", None)
            .await
            .expect("put");
        create(&s, "keyd", new("one"), 10, now)
            .await
            .expect("taken over");
    }

    #[tokio::test]
    async fn create_list_delete_and_the_per_key_limit() {
        let dir = raincast_testkit::TempDir::new("raincast-subs");
        let s = EmbeddedStore::open(dir.path().join("s.redb"), chrono::Duration::days(1))
            .await
            .expect("store");
        let now = Utc::now();
        let a = create(&s, "keya", new("one"), 2, now)
            .await
            .expect("create");
        assert!(a.id.starts_with(ID_PREFIX) && a.secret.starts_with(SECRET_PREFIX));
        assert_eq!(a.secret_bytes().map(|b| b.len()), Some(SECRET_BYTES));
        assert!(
            !format!("{a:?}").contains(&a.secret),
            "Debug shows the secret"
        );
        let b = create(&s, "keya", new("two"), 2, now)
            .await
            .expect("create");
        assert_ne!(a.secret, b.secret);
        assert!(matches!(
            create(&s, "keya", new("three"), 2, now).await,
            Err(SubscriptionError::TooMany { max: 2 })
        ));
        // Another key has its own limit and its own list.
        create(&s, "keyb", new("x"), 2, now).await.expect("create");
        assert_eq!(list_for_key(&s, "keya").await.expect("list").len(), 2);
        assert_eq!(list_all(&s).await.expect("list").len(), 3);
        // A key cannot delete another key's subscription.
        assert!(matches!(
            delete(&s, "keyb", &a.id).await,
            Err(SubscriptionError::Unknown(_))
        ));
        delete(&s, "keya", &a.id).await.expect("delete");
        assert!(matches!(
            delete(&s, "keya", &a.id).await,
            Err(SubscriptionError::Unknown(_))
        ));
        let left = list_for_key(&s, "keya").await.expect("list");
        assert_eq!(left, vec![b]);
        // The freed place can be taken again.
        create(&s, "keya", new("four"), 2, now)
            .await
            .expect("create");
    }
}
