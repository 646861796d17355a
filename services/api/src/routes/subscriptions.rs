//! `/v1/subscriptions`: webhook subscriptions of an API key
//! (`Authorization: Bearer KEY`). A subscription is a place (point and
//! radius) and a URL; the notifier evaluates it like its configured places
//! and delivers each event it asked for as a signed webhook (Standard
//! Webhooks; see `raincast_notifier::webhook`).
//!
//! The URL is checked before the subscription is stored: `https` only, and
//! its host must resolve to public addresses only (no loopback, private,
//! link-local or cloud-metadata address; `raincast_notifier::ssrf`), unless
//! `[notifier] allow_private_webhooks` is set. The notifier checks it again
//! before every delivery.

use crate::auth::ApiKey;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath};
use crate::state::{truncate, AppState};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use raincast_notifier::{ssrf, EventKind};
use raincast_store::subscriptions::{self, NewSubscription, Subscription, SubscriptionError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(delete_subscription))
}

/// Longest subscription name, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What webhooks the API may create: the SSRF rules and the per-key limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `[notifier] allow_private_webhooks`.
    pub allow_private: bool,
    /// `[notifier] max_subscriptions_per_key`.
    pub max_per_key: usize,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            max_per_key: raincast_config::notifier::DEFAULT_MAX_SUBSCRIPTIONS_PER_KEY,
        }
    }
}

fn default_radius() -> f64 {
    raincast_config::place::DEFAULT_RADIUS_KM
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Office", "lat": 47.377, "lon": 8.54, "radius_km": 10,
    "url": "https://hooks.example.org/rain",
    "events": ["rain_expected", "rain_started", "heavy_rain"]
}))]
pub struct SubscriptionRequest {
    /// Display name (1 to 64 characters), the `place` of each webhook.
    pub name: String,
    /// Latitude, WGS84 degrees.
    pub lat: f64,
    /// Longitude, WGS84 degrees.
    pub lon: f64,
    /// Radius of the watched disk, km (0 < r ≤ 200, default 10).
    #[serde(default = "default_radius")]
    pub radius_km: f64,
    /// Where deliveries go: an `https` URL whose host resolves to public addresses.
    pub url: String,
    /// Event kinds to deliver: `rain_expected`, `rain_started`,
    /// `heavy_rain`, `clearing` (at least one).
    pub events: Vec<String>,
}

/// A stored subscription, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// `sub_` + 16 hex digits.
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&Subscription> for SubscriptionView {
    fn from(s: &Subscription) -> Self {
        let p = s.public();
        Self {
            id: p.id.to_string(),
            name: p.name.to_string(),
            lat: p.lat,
            lon: p.lon,
            radius_km: p.radius_km,
            url: p.url.to_string(),
            events: p.events.to_vec(),
            created_at: p.created_at,
        }
    }
}

/// A created subscription: its id and its signing secret, shown only here.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "sub_3f9a0c6e21b4d8a7",
    "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    "subscription": {
        "id": "sub_3f9a0c6e21b4d8a7", "name": "Office", "lat": 47.377, "lon": 8.54,
        "radius_km": 10.0, "url": "https://hooks.example.org/rain",
        "events": ["rain_expected"], "created_at": "2026-12-04T05:00:00Z"
    }
}))]
pub struct CreatedSubscription {
    pub id: String,
    /// Signing secret (`whsec_` + base64 of the HMAC key). Keep it: it is
    /// not shown again. Verify each delivery's `webhook-signature`
    /// (`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`).
    pub secret: String,
    pub subscription: SubscriptionView,
}

/// The subscriptions of the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

fn state_store(s: &AppState) -> Result<&dyn raincast_store::StateStore, ApiError> {
    s.state_store()
        .map(|s| s.as_ref())
        .ok_or_else(|| ApiError::Internal("subscriptions need a state store".into()))
}

/// Validates a request into a new subscription (the URL is checked by
/// [`ssrf::check`] separately).
fn validate(req: SubscriptionRequest) -> Result<NewSubscription, ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        let kind = EventKind::parse(e).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::bad_request(
                "invalid_event",
                format!(
                    "unknown event {:?}; events are {}",
                    truncate(e, 40),
                    known.join(", ")
                ),
            )
        })?;
        if !events.iter().any(|x| x == kind.as_str()) {
            events.push(kind.as_str().to_string());
        }
    }
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_event",
            "events must name at least one event kind",
        ));
    }
    let new = NewSubscription {
        name,
        lat: req.lat,
        lon: req.lon,
        radius_km: req.radius_km,
        url: req.url.trim().to_string(),
        events,
    };
    // The same rules as a configured place (coordinates, radius).
    let mut place = raincast_notifier::Place::new(new.name.clone(), new.lat, new.lon);
    place.radius_km = new.radius_km;
    place
        .validate()
        .map_err(|e| ApiError::bad_request("out_of_range", e.to_string()))?;
    Ok(new)
}

/// Creates a webhook subscription for the key. The response carries the
/// signing secret, once.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions",
    request_body = SubscriptionRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedSubscription,
            headers(("Location" = String, description = "/v1/subscriptions/{id}"))),
        (status = 400, description = "Bad body, name, place, events or URL (not https, private or unresolvable address)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key has a subscription to this URL for this point and radius already (`subscription_exists`, naming it)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key has `max_subscriptions_per_key` subscriptions already", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past the key's rate limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_subscription(
    State(s): State<AppState>,
    key: ApiKey,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> Result<Response, ApiError> {
    let new = validate(req)?;
    let policy = s.webhooks();
    ssrf::check(&new.url, policy.allow_private)
        .await
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    let sub = subscriptions::create(state_store(&s)?, &key.id, new, policy.max_per_key, s.now())
        .await
        .map_err(|e| match e {
            SubscriptionError::TooMany { .. } => ApiError::Unprocessable {
                code: "subscription_limit",
                detail: e.to_string(),
            },
            SubscriptionError::Exists { .. } => ApiError::Conflict {
                code: "subscription_exists",
                detail: format!(
                    "{e}: delete it first to change its name or events \
                     (one subscription per URL and place, so that no event is posted twice)"
                ),
            },
            SubscriptionError::Store(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        })?;
    tracing::info!(key_id = %key.id, subscription = %sub.id, "webhook subscription created");
    let location = HeaderValue::from_str(&format!("/v1/subscriptions/{}", sub.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body = CreatedSubscription {
        id: sub.id.clone(),
        secret: sub.secret.clone(),
        subscription: SubscriptionView::from(&sub),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// The key's subscriptions (never their secrets).
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The key's subscriptions", body = SubscriptionList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past the key's rate limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_subscriptions(
    State(s): State<AppState>,
    key: ApiKey,
) -> Result<Json<SubscriptionList>, ApiError> {
    let subs = subscriptions::list_for_key(state_store(&s)?, &key.id).await?;
    Ok(Json(SubscriptionList {
        subscriptions: subs.iter().map(SubscriptionView::from).collect(),
    }))
}

/// Removes one of the key's subscriptions; deliveries not yet made are
/// dropped.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription for this key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past the key's rate limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_subscription(
    State(s): State<AppState>,
    key: ApiKey,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    subscriptions::delete(state_store(&s)?, &key.id, &id)
        .await
        .map_err(|e| match e {
            SubscriptionError::Unknown(_) => ApiError::not_found(
                "unknown_subscription",
                format!("no subscription {:?} for this key", truncate(&id, 40)),
            ),
            SubscriptionError::Store(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        })?;
    tracing::info!(key_id = %key.id, subscription = %truncate(&id, 40), "webhook subscription removed");
    Ok(StatusCode::NO_CONTENT)
}
