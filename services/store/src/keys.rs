//! API keys: one versioned record per key in the state store
//! (`apikey/{sha256 of the key, hex}`), so every instance sees the same keys
//! (embedded store on one host, DynamoDB in a fleet).
//!
//! Only the SHA-256 of a key is stored; the key itself is shown once, when it
//! is created. A key has a short public id (the first [`ID_LEN`] hex digits of
//! its hash) that appears in listings, logs and metrics instead of the key.
//! Keys are 160 random bits, so a plain (unsalted) hash is enough: there is
//! no dictionary to attack.

use crate::{StateStore, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Key prefix of the key records.
pub const PREFIX: &str = "apikey/";
/// Length of a key's public id, hex digits of its hash.
pub const ID_LEN: usize = 12;
/// Every key starts with this, so that a leaked key is easy to recognise.
pub const KEY_PREFIX: &str = "rc_";
/// Longest accepted key, characters: longer input is refused before hashing.
pub const MAX_KEY_CHARS: usize = 128;
/// Longest key name, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id: the first [`ID_LEN`] hex digits of the key's hash.
    pub id: String,
    /// Who or what the key is for.
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Set when the key was revoked; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The public id of a key (see [`ID_LEN`]).
pub fn key_id(key: &str) -> String {
    hash_key(key)[..ID_LEN].to_owned()
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key name must be 1 to {MAX_NAME_CHARS} printable characters, got {0:?}")]
    BadName(String),
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    #[error("no key with id or name {0:?}")]
    Unknown(String),
    #[error("{0:?} names {1} keys; revoke by id")]
    Ambiguous(String, usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn corrupt(key: &str, e: serde_json::Error) -> StoreError {
    StoreError::corrupt(key, e.to_string())
}

/// Creates a key named `name` and stores its hash. Returns the key (to show
/// once) and its record.
pub async fn create(
    state: &dyn StateStore,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(String, ApiKeyRecord), KeyError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(|c| c.is_control())
    {
        return Err(KeyError::BadName(name.chars().take(80).collect()));
    }
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let hash = hash_key(&key);
    let record = ApiKeyRecord {
        id: hash[..ID_LEN].to_owned(),
        name: name.to_owned(),
        created_at: now,
        revoked_at: None,
    };
    let at = format!("{PREFIX}{hash}");
    let value = serde_json::to_string(&record).map_err(|e| corrupt(&at, e))?;
    state.put_record(&at, &value, None).await?;
    Ok((key, record))
}

/// The record of `key`, if it was ever created (revoked or not). Input that
/// cannot be a key (too long) is `None` without touching the store.
pub async fn lookup(state: &dyn StateStore, key: &str) -> StoreResult<Option<ApiKeyRecord>> {
    if key.is_empty() || key.len() > MAX_KEY_CHARS {
        return Ok(None);
    }
    let at = format!("{PREFIX}{}", hash_key(key));
    match state.get_record(&at).await? {
        Some(r) => serde_json::from_str(&r.value)
            .map(Some)
            .map_err(|e| corrupt(&at, e)),
        None => Ok(None),
    }
}

/// Every key record, in hash order. Records that do not parse are skipped
/// with a warning.
pub async fn list(state: &dyn StateStore) -> StoreResult<Vec<ApiKeyRecord>> {
    let mut out = Vec::new();
    for (at, r) in state.list_records(PREFIX).await? {
        match serde_json::from_str::<ApiKeyRecord>(&r.value) {
            Ok(k) => out.push(k),
            Err(e) => {
                tracing::warn!(record = %at, error = %e, "key record does not parse; skipped")
            }
        }
    }
    Ok(out)
}

/// Revokes the key whose id (or, when unique, name) is `which`. Returns its
/// record; revoking a revoked key keeps the first revocation time.
pub async fn revoke(
    state: &dyn StateStore,
    which: &str,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, KeyError> {
    let records = state.list_records(PREFIX).await?;
    let mut matches = Vec::new();
    for (at, r) in records {
        let Ok(k) = serde_json::from_str::<ApiKeyRecord>(&r.value) else {
            continue;
        };
        if k.id == which {
            matches = vec![(at, r.version, k)];
            break;
        }
        if k.name == which {
            matches.push((at, r.version, k));
        }
    }
    let (at, version, mut k) = match matches.len() {
        0 => return Err(KeyError::Unknown(which.chars().take(80).collect())),
        1 => matches.remove(0),
        n => return Err(KeyError::Ambiguous(which.chars().take(80).collect(), n)),
    };
    if k.revoked_at.is_some() {
        return Ok(k);
    }
    k.revoked_at = Some(now);
    let value = serde_json::to_string(&k).map_err(|e| corrupt(&at, e))?;
    state.put_record(&at, &value, Some(version)).await?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    async fn store() -> (raincast_testkit::TempDir, EmbeddedStore) {
        let dir = raincast_testkit::TempDir::new("raincast-keys");
        let store = EmbeddedStore::open(dir.path().join("s.redb"), chrono::Duration::days(1))
            .await
            .expect("store");
        (dir, store)
    }

    #[tokio::test]
    async fn only_the_hash_is_stored_and_lookup_finds_the_key() {
        let (_d, s) = store().await;
        let now = Utc::now();
        let (key, rec) = create(&s, "app one", now).await.expect("create");
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 40);
        assert_eq!(rec.id, key_id(&key));
        let stored = s.list_records(PREFIX).await.expect("list");
        assert_eq!(stored.len(), 1);
        let (at, r) = &stored[0];
        assert!(
            !at.contains(&key) && !r.value.contains(&key),
            "the key itself is stored"
        );
        assert!(at.ends_with(&hash_key(&key)));
        assert_eq!(lookup(&s, &key).await.expect("lookup"), Some(rec.clone()));
        assert_eq!(lookup(&s, "rc_nope").await.expect("lookup"), None);
        assert_eq!(lookup(&s, &"x".repeat(10_000)).await.expect("lookup"), None);
        let (key2, _) = create(&s, "app two", now).await.expect("create");
        assert_ne!(key, key2);
        assert_eq!(list(&s).await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn revoke_by_id_or_unique_name() {
        let (_d, s) = store().await;
        let now = Utc::now();
        let (k1, r1) = create(&s, "a", now).await.expect("create");
        let (_k2, _) = create(&s, "b", now).await.expect("create");
        let (_k3, _) = create(&s, "b", now).await.expect("create");
        assert!(matches!(
            revoke(&s, "b", now).await,
            Err(KeyError::Ambiguous(_, 2))
        ));
        assert!(matches!(
            revoke(&s, "zz", now).await,
            Err(KeyError::Unknown(_))
        ));
        let gone = revoke(&s, &r1.id, now).await.expect("revoke");
        assert_eq!(gone.revoked_at, Some(now));
        let again = revoke(&s, "a", now + chrono::Duration::hours(1))
            .await
            .expect("revoke again");
        assert_eq!(again.revoked_at, Some(now), "first revocation time kept");
        let rec = lookup(&s, &k1).await.expect("lookup").expect("record");
        assert!(!rec.is_active());
    }

    #[tokio::test]
    async fn bad_names_are_refused() {
        let (_d, s) = store().await;
        for bad in ["", "   ", "a\nb", &"n".repeat(65)] {
            assert!(matches!(
                create(&s, bad, Utc::now()).await,
                Err(KeyError::BadName(_))
            ));
        }
    }
}
