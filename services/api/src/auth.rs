//! API keys on requests: checking a key against the state store (with a
//! short cache, so that a busy endpoint does not read the store per request)
//! and the per-key rate limit.
//!
//! * [`ApiKey`] is the extractor for endpoints that always need a key
//!   (`Authorization: Bearer KEY`).
//! * [`require_key_for_v1`] guards the `/v1` read endpoints when
//!   `[api] require_keys` is set.
//! * [`KeyAuth::check`] is the one check behind both, also used by the
//!   Dark Sky compatible endpoint, which takes the key in its path.
//!
//! Keys are identified in logs and errors by their public id (a prefix of
//! their hash, see [`raincast_store::keys`]), never by the key.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use raincast_store::keys::{self, ApiKeyRecord};
use raincast_store::StateStore;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most key checks remembered at once; the cache is emptied when full, so
/// random keys cannot grow it without bound.
const MAX_CACHED: usize = 10_000;

/// Why a key was refused. Each surface renders it in its own error shape.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyRefusal {
    /// No key in the request.
    Missing,
    /// The key was never created (or is malformed).
    Unknown,
    /// The key was revoked.
    Revoked,
    /// Past the per-key limit; retry after this many seconds.
    RateLimited { retry_after_s: u32 },
    /// The state store could not be read (or there is none).
    Unavailable(ApiError),
}

impl From<KeyRefusal> for ApiError {
    fn from(r: KeyRefusal) -> Self {
        let unauthorized = |code, detail: &str| ApiError::Unauthorized {
            code,
            detail: detail.to_string(),
        };
        match r {
            KeyRefusal::Missing => unauthorized(
                "missing_key",
                "this endpoint needs an API key: send `Authorization: Bearer KEY` \
                 (an operator creates keys with `raincast keys create`)",
            ),
            KeyRefusal::Unknown => unauthorized("invalid_key", "the API key is not valid"),
            KeyRefusal::Revoked => unauthorized("revoked_key", "the API key has been revoked"),
            KeyRefusal::RateLimited { retry_after_s } => {
                ApiError::TooManyRequests { retry_after_s }
            }
            KeyRefusal::Unavailable(e) => e,
        }
    }
}

type Cached = (Option<Arc<ApiKeyRecord>>, Instant);

/// The key checker shared by every handler.
pub struct KeyAuth {
    store: Option<Arc<dyn StateStore>>,
    ttl: Duration,
    /// Key hash → the record (`None`: no such key) and when it was read.
    cache: Mutex<HashMap<String, Cached>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl KeyAuth {
    /// A checker over `store` (`None`: every key is refused as unavailable),
    /// remembering answers for `ttl`, allowing `per_minute` requests a
    /// minute per key.
    pub fn new(store: Option<Arc<dyn StateStore>>, ttl: Duration, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// Checks `key` and counts the request against its limit.
    pub async fn check(&self, key: &str) -> Result<Arc<ApiKeyRecord>, KeyRefusal> {
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyRefusal::Missing);
        }
        if key.len() > keys::MAX_KEY_CHARS {
            return Err(KeyRefusal::Unknown);
        }
        let hash = keys::hash_key(key);
        let record = match self.cached(&hash) {
            Some(r) => r,
            None => {
                let store = self.store.as_ref().ok_or_else(|| {
                    KeyRefusal::Unavailable(ApiError::Internal(
                        "API keys are checked but the API has no state store".into(),
                    ))
                })?;
                let found = keys::lookup(store.as_ref(), key)
                    .await
                    .map_err(|e| KeyRefusal::Unavailable(e.into()))?
                    .map(Arc::new);
                self.remember(hash, found.clone());
                found
            }
        };
        let record = record.ok_or(KeyRefusal::Unknown)?;
        if !record.is_active() {
            return Err(KeyRefusal::Revoked);
        }
        if let Err(not_until) = self.limiter.check_key(&record.id) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after_s = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1);
            tracing::debug!(key_id = %record.id, retry_after_s, "API key over its rate limit");
            return Err(KeyRefusal::RateLimited { retry_after_s });
        }
        Ok(record)
    }

    fn cached(&self, hash: &str) -> Option<Option<Arc<ApiKeyRecord>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(r, _)| r.clone())
    }

    fn remember(&self, hash: String, record: Option<Arc<ApiKeyRecord>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(hash, (record, Instant::now()));
    }
}

/// The key a request was made with (`Authorization: Bearer KEY`), checked
/// and counted against its rate limit. Rejects with 401 or 429.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Public id of the key (a prefix of its hash).
    pub id: String,
    /// The key's name.
    pub name: String,
}

/// The bearer token of a request, if any (`None` also for other schemes).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts).ok_or(KeyRefusal::Missing)?;
        let record = s.keys().check(key).await?;
        Ok(ApiKey {
            id: record.id.clone(),
            name: record.name.clone(),
        })
    }
}

/// Middleware: with `[api] require_keys`, every `/v1` request needs a valid
/// key. Other paths (health, metrics, the map page's assets) stay open.
pub async fn require_key_for_v1(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.config().require_keys || !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    match ApiKey::from_request_parts(&mut parts, &s).await {
        Ok(_) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raincast_store::EmbeddedStore;

    async fn store() -> (raincast_testkit::TempDir, Arc<dyn StateStore>) {
        let dir = raincast_testkit::TempDir::new("raincast-auth");
        let s = EmbeddedStore::open(dir.path().join("s.redb"), chrono::Duration::days(1))
            .await
            .expect("store");
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn valid_unknown_revoked_and_missing_keys() {
        let (_d, s) = store().await;
        let (key, rec) = keys::create(s.as_ref(), "t", chrono::Utc::now())
            .await
            .expect("create");
        let auth = KeyAuth::new(Some(s.clone()), Duration::ZERO, 100);
        assert_eq!(auth.check(&key).await.expect("valid").id, rec.id);
        assert_eq!(auth.check("rc_0000").await, Err(KeyRefusal::Unknown));
        assert_eq!(auth.check("  ").await, Err(KeyRefusal::Missing));
        assert_eq!(
            auth.check(&"k".repeat(10_000)).await,
            Err(KeyRefusal::Unknown)
        );
        keys::revoke(s.as_ref(), &rec.id, chrono::Utc::now())
            .await
            .expect("revoke");
        assert_eq!(auth.check(&key).await, Err(KeyRefusal::Revoked));
    }

    #[tokio::test]
    async fn a_cached_check_outlives_revocation_only_for_the_ttl() {
        let (_d, s) = store().await;
        let (key, rec) = keys::create(s.as_ref(), "t", chrono::Utc::now())
            .await
            .expect("create");
        let auth = KeyAuth::new(Some(s.clone()), Duration::from_millis(200), 100);
        auth.check(&key).await.expect("valid");
        keys::revoke(s.as_ref(), &rec.id, chrono::Utc::now())
            .await
            .expect("revoke");
        // Within the TTL the cached answer stands (that is the documented
        // trade-off); after it the revocation is seen.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match auth.check(&key).await {
                Err(KeyRefusal::Revoked) => break,
                Ok(_) => assert!(Instant::now() < deadline, "revocation never seen"),
                other => panic!("unexpected {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn random_keys_cannot_grow_the_cache_past_its_cap() {
        let (_d, s) = store().await;
        let auth = KeyAuth::new(Some(s), Duration::from_secs(3600), 100);
        // Every unknown key's answer is remembered too ("no such key"), so a
        // client sending random keys fills the map: at the cap it is emptied.
        for i in 0..=MAX_CACHED {
            assert_eq!(
                auth.check(&format!("rc_{i:040x}")).await,
                Err(KeyRefusal::Unknown)
            );
            let len = auth.cache.lock().expect("cache").len();
            assert!(len <= MAX_CACHED, "{len} entries after {} keys", i + 1);
        }
        assert_eq!(auth.cache.lock().expect("cache").len(), 1);
    }

    #[tokio::test]
    async fn the_rate_limit_holds_per_key() {
        let (_d, s) = store().await;
        let now = chrono::Utc::now();
        let (a, _) = keys::create(s.as_ref(), "a", now).await.expect("create");
        let (b, _) = keys::create(s.as_ref(), "b", now).await.expect("create");
        let auth = KeyAuth::new(Some(s.clone()), Duration::from_secs(30), 5);
        for _ in 0..5 {
            auth.check(&a).await.expect("within the limit");
        }
        match auth.check(&a).await {
            Err(KeyRefusal::RateLimited { retry_after_s }) => {
                assert!((1..=60).contains(&retry_after_s), "{retry_after_s}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        auth.check(&b).await.expect("another key has its own limit");
    }
}
