//! Webhook deliveries, after the Standard Webhooks convention.
//!
//! A subscription's event, once claimed like any post (see
//! [`crate::publish::webhook`]), becomes a **delivery record** in the state
//! store, `notifier/webhook/{subscription id}/{event key}`, created if
//! absent: the exact body, its `webhook-id`, the attempt count and the time
//! of the next attempt. [`Deliverer::run_due`] sends the deliveries that are
//! due, so a restart (or another instance) continues where the last attempt
//! left off, with the same `webhook-id` and body.
//!
//! Each attempt is a `POST` of the JSON body with the headers
//! * `webhook-id`: `msg_` + 32 hex digits, the same on every attempt;
//! * `webhook-timestamp`: the attempt's time, UNIX seconds;
//! * `webhook-signature`: `v1,` + base64 HMAC-SHA256 of
//!   `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64-decoded
//!   part of the subscription's `whsec_…` secret.
//!
//! A 2xx answer delivers it. Anything else (network error, timeout, any
//! other status) is retried with exponential backoff: by default after 15 s,
//! 30 s, 1, 2, 4, 8, 16 and 32 min, 9 attempts over 64 minutes; then the
//! delivery is marked failed. The URL is checked again before every attempt
//! ([`crate::ssrf`]); a refused address fails the delivery at once.
//!
//! An attempt is taken with a compare-and-set lease on the record, so two
//! instances never send the same attempt; a crash mid-attempt means the
//! attempt is sent again after the lease (receivers deduplicate by
//! `webhook-id`, as the convention asks).

use crate::events::{Event, EventKind};
use crate::ssrf;
use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use raincast_store::subscriptions::Subscription;
use raincast_store::{StateStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tracing::{info, warn};

/// Key prefix of delivery records.
pub const DELIVERY_PREFIX: &str = "notifier/webhook/";

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Lift the SSRF address and scheme rules (`[notifier] allow_private_webhooks`).
    pub allow_private: bool,
    /// Attempts before a delivery fails (default 9).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles for each later one (default 15 s).
    pub first_retry: Duration,
    /// Lease of one attempt (default 2 min; an attempt lasts at most 10 s).
    pub lease: Duration,
    /// Base URL of the links in bodies (`[notifier] public_url`); `None`: paths.
    pub public_url: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            max_attempts: 9,
            first_retry: Duration::seconds(15),
            lease: Duration::minutes(2),
            public_url: None,
        }
    }
}

impl WebhookSettings {
    /// Delay after attempt number `attempts` (1-based) failed.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1i32 << attempts.saturating_sub(1).min(20);
        self.first_retry * factor
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received (final).
    Delivered,
    /// Out of attempts, refused, or the subscription is gone (final).
    Failed,
}

/// The stored state of one (subscription, event) delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `webhook-id`, the same on every attempt.
    pub webhook_id: String,
    /// Subscription id.
    pub subscription: String,
    /// API key owning the subscription.
    pub key_id: String,
    /// Event key.
    pub event_key: String,
    /// The exact body sent on every attempt.
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Wall-clock time of the next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// Instance holding the current attempt, and until when.
    pub owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// HTTP status of the last answer.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The place a subscription watches: its point and radius, default
/// thresholds, and its id as the place's identity (event keys, states).
pub fn subscription_place(sub: &Subscription) -> crate::Place {
    let mut place = crate::Place::new(sub.name.clone(), sub.lat, sub.lon);
    place.radius_km = sub.radius_km;
    place.id = Some(sub.id.clone());
    place.clearing = sub.events.iter().any(|e| e == EventKind::Clearing.as_str());
    place
}

/// The kinds a subscription asked for (names it does not know are ignored).
pub fn subscription_kinds(sub: &Subscription) -> std::collections::BTreeSet<EventKind> {
    sub.events
        .iter()
        .filter_map(|e| EventKind::parse(e))
        .collect()
}

/// Store key of a delivery.
pub fn delivery_key(subscription: &str, event_key: &str) -> String {
    format!("{DELIVERY_PREFIX}{subscription}/{event_key}")
}

/// The `webhook-id` of a (subscription, event) pair: derived from both, so
/// every instance and every attempt agree on it.
pub fn webhook_id(subscription: &str, event_key: &str) -> String {
    let h = Sha256::digest(format!("{subscription}\n{event_key}").as_bytes());
    format!("msg_{}", hex_lower(&h[..16]))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` with `key`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `v` rounded to 0.1 as an `f64` (rounding in `f32` would print as
/// 1.7000000476837158).
fn tenths(v: f32) -> f64 {
    (f64::from(v) * 10.0).round() / 10.0
}

/// The JSON body of `event` for `sub`, with the event's `summary` text.
pub fn body(event: &Event, sub: &Subscription, summary: &str, public_url: Option<&str>) -> String {
    let base = public_url.unwrap_or("");
    let v = json!({
        "type": event.kind.as_str(),
        "timestamp": rfc3339(event.scan_time),
        "key": event.key,
        "data": {
            "subscription": sub.id,
            "kind": event.kind.as_str(),
            "place": {
                "name": sub.name,
                "lat": sub.lat,
                "lon": sub.lon,
                "radius_km": sub.radius_km,
            },
            "radar": event.radar,
            "scan_time": rfc3339(event.scan_time),
            "start_time": rfc3339(event.start_time),
            "lead_min": event.lead_min,
            "expires_at": rfc3339(event.expires_at),
            "rate_mm_h": tenths(event.rate_mm_h),
            "peak_mm_h": tenths(event.peak_mm_h),
            // The word the summary tells (the peak's, for expected rain).
            "intensity": crate::text::told_intensity(event),
            "summary": summary,
            "links": {
                "gif": format!("{base}/v1/radars/{}/animation.gif", event.radar),
                "forecast": format!(
                    "{base}/v1/forecast?lat={}&lon={}&radar={}",
                    sub.lat, sub.lon, event.radar
                ),
            },
        },
    });
    v.to_string()
}

fn to_json(key: &str, d: &Delivery) -> Result<String, StoreError> {
    serde_json::to_string(d).map_err(|e| StoreError::Corrupt {
        what: key.into(),
        reason: e.to_string(),
    })
}

fn from_json(key: &str, text: &str) -> Result<Delivery, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: key.into(),
        reason: e.to_string(),
    })
}

/// Creates the delivery of `event` to `sub` unless it exists. Returns the
/// record and whether this call created it.
pub async fn enqueue(
    store: &dyn StateStore,
    sub: &Subscription,
    event: &Event,
    summary: &str,
    settings: &WebhookSettings,
    now: DateTime<Utc>,
) -> Result<(Delivery, bool), StoreError> {
    let key = delivery_key(&sub.id, &event.key);
    let d = Delivery {
        webhook_id: webhook_id(&sub.id, &event.key),
        subscription: sub.id.clone(),
        key_id: sub.key_id.clone(),
        event_key: event.key.clone(),
        body: body(event, sub, summary, settings.public_url.as_deref()),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        owner: None,
        lease_until: None,
        last_status: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    };
    match store.put_record(&key, &to_json(&key, &d)?, None).await {
        Ok(_) => Ok((d, true)),
        Err(StoreError::Conflict { .. }) => match store.get_record(&key).await? {
            Some(r) => Ok((from_json(&key, &r.value)?, false)),
            None => Err(StoreError::Conflict {
                what: key,
                reason: "record vanished after a conflict".into(),
            }),
        },
        Err(e) => Err(e),
    }
}

/// The stored delivery of `event_key` to `subscription`.
pub async fn get(
    store: &dyn StateStore,
    subscription: &str,
    event_key: &str,
) -> Result<Option<Delivery>, StoreError> {
    let key = delivery_key(subscription, event_key);
    match store.get_record(&key).await? {
        Some(r) => Ok(Some(from_json(&key, &r.value)?)),
        None => Ok(None),
    }
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReport {
    pub webhook_id: String,
    pub subscription: String,
    pub event_key: String,
    pub attempt: u32,
    pub status: DeliveryStatus,
    /// HTTP status of the answer, if any.
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// Outcome of one attempt.
enum Outcome {
    Delivered(u16),
    /// Try again later (unless out of attempts).
    Retry(Option<u16>, String),
    /// Final failure.
    Fail(String),
}

/// Attempts of one [`Deliverer::run_due`] in flight at once.
pub const CONCURRENT_DELIVERIES: usize = 16;

/// Sends due deliveries, one instance among many.
#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn StateStore>,
    settings: WebhookSettings,
    owner: String,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("settings", &self.settings)
            .field("owner", &self.owner)
            .finish()
    }
}

impl Deliverer {
    /// Deliveries in `store`, sent by instance `owner`.
    pub fn new(
        store: Arc<dyn StateStore>,
        settings: WebhookSettings,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            store,
            settings,
            owner: owner.into(),
        }
    }

    /// Makes one attempt of every pending delivery due at `now` that no
    /// other instance holds, up to [`CONCURRENT_DELIVERIES`] at once (a slow
    /// receiver holds up only its own). Each attempt is timed, signed and
    /// scheduled at its own start: `now` plus the time since this run began.
    /// Store errors on one delivery are logged and leave it for the next run.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<Vec<DeliveryReport>, StoreError> {
        let started = std::time::Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES));
        let mut attempts = tokio::task::JoinSet::new();
        for (key, rec) in self.store.list_records(DELIVERY_PREFIX).await? {
            let d = match from_json(&key, &rec.value) {
                Ok(d) => d,
                Err(e) => {
                    warn!(record = %key, error = %e, "delivery record does not parse; skipped");
                    continue;
                }
            };
            let held = d.lease_until.is_some_and(|t| t > now);
            if d.status != DeliveryStatus::Pending || d.next_attempt_at > now || held {
                continue;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            attempts.spawn(async move {
                let _permit = permit;
                // Whole seconds: the timestamp's unit (and a run's clock
                // stays exact for the attempts that start at once).
                let waited = i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
                let at = now + Duration::seconds(waited.min(86_400));
                match this.attempt(&key, d, rec.version, at).await {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(record = %key, error = %e, "delivery left for a later run");
                        None
                    }
                }
            });
        }
        let mut reports = Vec::new();
        while let Some(done) = attempts.join_next().await {
            match done {
                Ok(Some(r)) => reports.push(r),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "a delivery attempt did not finish"),
            }
        }
        Ok(reports)
    }

    async fn attempt(
        &self,
        key: &str,
        mut d: Delivery,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryReport>, StoreError> {
        // Take the attempt: exactly one instance wins the compare-and-set.
        d.attempts += 1;
        d.owner = Some(self.owner.clone());
        d.lease_until = Some(now + self.settings.lease);
        let version = match self
            .store
            .put_record(key, &to_json(key, &d)?, Some(version))
            .await
        {
            Ok(v) => v,
            Err(StoreError::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let sub_key = format!(
            "{}{}/{}",
            raincast_store::subscriptions::PREFIX,
            d.key_id,
            d.subscription
        );
        let sub = match self.store.get_record(&sub_key).await? {
            Some(r) if !r.value.is_empty() => serde_json::from_str::<Subscription>(&r.value).ok(),
            _ => None,
        };
        let outcome = match &sub {
            None => Outcome::Fail("the subscription was removed".into()),
            Some(sub) => self.send(sub, &d, now).await,
        };
        let (http_status, error) = match outcome {
            Outcome::Delivered(status) => {
                d.status = DeliveryStatus::Delivered;
                d.delivered_at = Some(now);
                (Some(status), None)
            }
            Outcome::Retry(status, e) if d.attempts < self.settings.max_attempts => {
                d.next_attempt_at = now + self.settings.backoff(d.attempts);
                (status, Some(e))
            }
            Outcome::Retry(status, e) => {
                d.status = DeliveryStatus::Failed;
                (
                    status,
                    Some(format!("{e}; gave up after {} attempts", d.attempts)),
                )
            }
            Outcome::Fail(e) => {
                d.status = DeliveryStatus::Failed;
                (None, Some(e))
            }
        };
        d.last_status = http_status;
        d.last_error = error.clone();
        d.lease_until = None;
        match &error {
            None => info!(webhook_id = %d.webhook_id, subscription = %d.subscription,
                attempt = d.attempts, "webhook delivered"),
            Some(e) => warn!(webhook_id = %d.webhook_id, subscription = %d.subscription,
                attempt = d.attempts, status = ?d.status, next = %d.next_attempt_at, error = %e,
                "webhook delivery failed"),
        }
        let report = DeliveryReport {
            webhook_id: d.webhook_id.clone(),
            subscription: d.subscription.clone(),
            event_key: d.event_key.clone(),
            attempt: d.attempts,
            status: d.status,
            http_status,
            error,
        };
        match self
            .store
            .put_record(key, &to_json(key, &d)?, Some(version))
            .await
        {
            // Our lease ran out and someone else took the next attempt.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(Some(report)),
            Err(e) => Err(e),
        }
    }

    async fn send(&self, sub: &Subscription, d: &Delivery, now: DateTime<Utc>) -> Outcome {
        let checked = match ssrf::check(&sub.url, self.settings.allow_private).await {
            Ok(c) => c,
            Err(e) if e.is_transient() => return Outcome::Retry(None, e.to_string()),
            Err(e) => return Outcome::Fail(e.to_string()),
        };
        let Some(secret) = sub.secret_bytes() else {
            return Outcome::Fail("the subscription's secret is not a whsec_ secret".into());
        };
        let client = match ssrf::pinned_client(&checked) {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(None, format!("HTTP client: {e}")),
        };
        let ts = now.timestamp();
        let result = client
            .post(checked.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &d.webhook_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature(&secret, &d.webhook_id, ts, &d.body),
            )
            .body(d.body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
            Ok(resp) => Outcome::Retry(
                Some(resp.status().as_u16()),
                format!("HTTP {}", resp.status().as_u16()),
            ),
            Err(e) => Outcome::Retry(None, format!("request failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensities_print_in_tenths() {
        assert_eq!(serde_json::json!(tenths(1.7)).to_string(), "1.7");
        assert_eq!(serde_json::json!(tenths(12.345)).to_string(), "12.3");
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference
        // libraries: secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("b64");
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn backoff_spans_an_hour_in_nine_attempts() {
        let s = WebhookSettings::default();
        let total: i64 = (1..s.max_attempts)
            .map(|a| s.backoff(a).num_seconds())
            .sum();
        assert!(s.max_attempts >= 6);
        assert!(total >= 3600, "{total} s");
        assert_eq!(s.backoff(1), Duration::seconds(15));
        assert_eq!(s.backoff(2), Duration::seconds(30));
    }

    #[test]
    fn webhook_ids_are_stable_per_pair() {
        assert_eq!(webhook_id("sub_a", "k"), webhook_id("sub_a", "k"));
        assert_ne!(webhook_id("sub_a", "k"), webhook_id("sub_b", "k"));
        assert!(webhook_id("sub_a", "k").starts_with("msg_"));
    }
}
