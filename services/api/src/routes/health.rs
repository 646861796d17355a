//! Liveness, readiness and metrics.

use crate::error::{ApiError, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// How long `/readyz` waits for the store per radar before it answers 503
/// `store_unreachable`.
pub const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Freshness of one radar's data.
#[derive(Debug, Serialize, ToSchema)]
pub struct RadarFreshness {
    pub id: String,
    /// Time of the newest stored scan.
    pub latest_scan_time: Option<DateTime<Utc>>,
    /// Seconds since that scan.
    pub age_s: Option<i64>,
    /// Whether that age is within `ready_max_age_s`.
    pub fresh: bool,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "max_age_s": 1800, "radars": [{"id": "demo", "latest_scan_time": "2024-06-16T10:00:00Z", "age_s": 42, "fresh": true}]}))]
pub struct Readiness {
    /// Always `ready` (not ready is a 503 problem).
    pub status: String,
    /// The configured freshness limit, seconds.
    pub max_age_s: u64,
    pub radars: Vec<RadarFreshness>,
}

/// Ready when the store answers and at least one radar has a scan newer than
/// `api.ready_max_age_s`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Store unreachable or data stale", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(s): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let now = s.now();
    let max_age = s.config().ready_max_age_s;
    if s.radars().is_empty() {
        return Err(ApiError::Unavailable {
            code: "no_radars",
            detail: "no radars are configured".into(),
            retry_after_s: 60,
        });
    }
    let mut radars = Vec::with_capacity(s.radars().len());
    for r in s.radars() {
        // A store that hangs (accepts, never answers) must not hang the
        // probe: a load balancer's health check gives up after a few
        // seconds and learns nothing.
        let unreachable = |why: String| {
            tracing::warn!(radar = %r.id, error = %why, "readiness: store check failed");
            ApiError::Unavailable {
                code: "store_unreachable",
                detail: "the scan store did not answer".into(),
                retry_after_s: 10,
            }
        };
        let latest = tokio::time::timeout(READY_STORE_TIMEOUT, s.store().latest(&r.id, now))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {} s",
                    READY_STORE_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| unreachable(e.to_string()))?;
        let age = latest.as_ref().map(|m| (now - m.time).num_seconds());
        radars.push(RadarFreshness {
            id: r.id.clone(),
            latest_scan_time: latest.map(|m| m.time),
            age_s: age,
            fresh: age.is_some_and(|a| a <= max_age as i64),
        });
    }
    if !radars.iter().any(|r| r.fresh) {
        return Err(ApiError::Unavailable {
            code: "stale_data",
            detail: format!("no radar has a scan newer than {max_age} s"),
            retry_after_s: 30,
        });
    }
    Ok(Json(Readiness {
        status: "ready".into(),
        max_age_s: max_age,
        radars,
    }))
}

/// Prometheus metrics of the whole process (API, ingest, nowcast), text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    for r in s.radars() {
        if let Some(report) = s.nowcasts().recent_skill(&r.id) {
            s.metrics().set_skill(&r.id, &report);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics().render_text(),
    )
}
