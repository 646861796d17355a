//! `/v1/radars/{id}/skill`: how good the radar's recent nowcasts were, as
//! scored live by the nowcast service against the scans that followed.

use crate::error::{ApiError, Problem};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use raincast_algorithms::render::{render_reliability_png, ReliabilitySeries};
use raincast_nowcast::skill::{LeadSkill, MethodSkill, SkillError, SkillReport, Sums, Window};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_skill))
        .routes(routes!(get_reliability_png))
}

/// Which window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkillQuery {
    /// `24h` (default) or `7d`: the hourly buckets of the last day or week,
    /// ending with the newest hour scored.
    #[param(pattern = "^(24h|7d)$")]
    pub window: Option<String>,
}

/// CSI at one threshold.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsiAt {
    /// Event threshold, mm/h.
    pub threshold_mm_h: f32,
    /// Critical success index (0..1); null without any event.
    pub csi: Option<f64>,
}

/// One bin of a reliability table.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReliabilityBin {
    /// Forecast probability range of the bin, [low, high).
    pub low: f64,
    pub high: f64,
    /// Cells (cell-cases) in the bin.
    pub cells: u64,
    /// Mean forecast probability in the bin.
    pub mean_probability: f64,
    /// Observed frequency of the event in the bin.
    pub observed_frequency: f64,
}

/// Pooled scores of one method at one lead.
#[derive(Debug, Serialize, ToSchema)]
pub struct MethodScores {
    /// Scans scored.
    pub cases: u64,
    /// CSI at 0.5, 1 and 5 mm/h.
    pub csi: Vec<CsiAt>,
    /// Fractions skill score at 1 mm/h, 10 km window.
    pub fss: Option<f64>,
    /// Mean absolute error on wet cells (forecast or observed ≥ 0.1 mm/h), mm/h.
    pub mae_wet_mm_h: Option<f64>,
    /// Brier score of the probability of rain.
    pub brier: Option<f64>,
    /// Reliability table of that probability (non-empty bins of 10).
    pub reliability: Vec<ReliabilityBin>,
}

impl From<&MethodSkill> for MethodScores {
    fn from(m: &MethodSkill) -> Self {
        Self {
            cases: m.cases,
            csi: m
                .csi
                .iter()
                .map(|(threshold_mm_h, csi)| CsiAt {
                    threshold_mm_h: *threshold_mm_h,
                    csi: *csi,
                })
                .collect(),
            fss: m.fss,
            mae_wet_mm_h: m.mae_wet_mm_h,
            brier: m.brier,
            reliability: m
                .reliability
                .iter()
                .map(
                    |&(low, high, cells, mean_probability, observed_frequency)| ReliabilityBin {
                        low,
                        high,
                        cells,
                        mean_probability,
                        observed_frequency,
                    },
                )
                .collect(),
        }
    }
}

/// Both methods at one lead.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeadScores {
    /// Minutes after the issue time.
    pub lead_min: u32,
    /// Raincast's nowcast.
    pub raincast: MethodScores,
    /// Eulerian persistence (the scan at the issue time, unchanged).
    pub persistence: MethodScores,
}

/// The live skill of a radar.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "radar": "demo", "window": "24h",
    "from": "2024-06-15T11:00:00Z", "until": "2024-06-16T11:00:00Z",
    "probability_threshold_mm_h": 0.1,
    "leads": [{"lead_min": 5,
        "raincast": {"cases": 12, "csi": [{"threshold_mm_h": 1.0, "csi": 0.61}], "fss": 0.8,
            "mae_wet_mm_h": 1.2, "brier": 0.04,
            "reliability": [{"low": 0.9, "high": 1.0, "cells": 420, "mean_probability": 0.97, "observed_frequency": 0.9}]},
        "persistence": {"cases": 12, "csi": [{"threshold_mm_h": 1.0, "csi": 0.42}], "fss": 0.6,
            "mae_wet_mm_h": 1.9, "brier": 0.07, "reliability": []}}]
}))]
pub struct SkillResponse {
    pub radar: String,
    /// `24h` or `7d`.
    pub window: String,
    /// Start of the oldest and end of the newest hour of the window; null
    /// before anything was scored.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Event threshold of the probability (Brier score, reliability), mm/h.
    pub probability_threshold_mm_h: f32,
    /// Per lead, shortest first; empty before anything was scored.
    pub leads: Vec<LeadScores>,
}

/// The radar's live skill: each new scan scores the nowcasts issued before
/// it that were valid at its time, and persistence, once; the sums are kept
/// per hour and pooled over the window.
#[utoipa::path(get, path = "/v1/radars/{id}/skill", tag = "radars",
    params(("id" = String, Path, description = "Radar id"), SkillQuery),
    responses(
        (status = 200, description = "Scores per lead and method", body = SkillResponse),
        (status = 400, description = "Unknown window", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar, or no live skill kept", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_skill(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SkillQuery>,
) -> Result<Json<SkillResponse>, ApiError> {
    let (report, window) = report(&s, &id, q.window.as_deref()).await?;
    Ok(Json(SkillResponse {
        radar: report.radar,
        window: window.name().to_string(),
        from: report.from,
        until: report.until,
        probability_threshold_mm_h: s.nowcasts().settings().probability_threshold_mm_h,
        leads: report
            .leads
            .iter()
            .map(|l| LeadScores {
                lead_min: l.lead_min,
                raincast: (&l.raincast).into(),
                persistence: (&l.persistence).into(),
            })
            .collect(),
    }))
}

/// The radar's live skill report over the window named in a query.
async fn report(
    s: &AppState,
    id: &str,
    window: Option<&str>,
) -> Result<(SkillReport, Window), ApiError> {
    let r = s.radar(id)?.clone();
    let window: Window = window
        .unwrap_or("24h")
        .parse()
        .map_err(|e: SkillError| ApiError::bad_request("invalid_window", e.to_string()))?;
    let report = s
        .nowcasts()
        .skill(&r.id, window)
        .await
        .map_err(|e| match e {
            SkillError::Store(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?
        .ok_or_else(|| ApiError::not_found("no_live_skill", "This server keeps no live skill."))?;
    Ok((report, window))
}

/// Which window and lead the diagram shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReliabilityQuery {
    /// `24h` (default) or `7d`.
    #[param(pattern = "^(24h|7d)$")]
    pub window: Option<String>,
    /// One lead, minutes; default: every lead pooled.
    pub lead: Option<u32>,
}

/// A reliability diagram of the live probability of rain: mean forecast
/// probability against observed frequency per bin, for Raincast and
/// persistence (a yes/no forecast: its two bins), with the diagonal of
/// perfect reliability. Before anything was scored the diagram is empty.
#[utoipa::path(get, path = "/v1/radars/{id}/skill/reliability.png", tag = "radars",
    params(("id" = String, Path, description = "Radar id"), ReliabilityQuery),
    responses(
        (status = 200, description = "The diagram", body = Vec<u8>, content_type = "image/png"),
        (status = 400, description = "Unknown window", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar or lead, or no live skill kept", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_reliability_png(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReliabilityQuery>,
) -> Result<Response, ApiError> {
    let (report, window) = report(&s, &id, q.window.as_deref()).await?;
    let leads: Vec<&LeadSkill> = match q.lead {
        None => report.leads.iter().collect(),
        Some(lead) => vec![report
            .leads
            .iter()
            .find(|l| l.lead_min == lead)
            .ok_or_else(|| {
                ApiError::not_found("no_such_lead", format!("no live skill at lead {lead} min"))
            })?],
    };
    let series = |pick: fn(&LeadSkill) -> &Sums, label: &str| {
        let mut sums = Sums::default();
        for l in &leads {
            sums.add(pick(l));
        }
        ReliabilitySeries {
            label: format!("{label} ({} cells)", sums.brier_cells),
            points: sums
                .reliability()
                .table()
                .iter()
                .map(|&(_, _, _, p, o)| (p, o))
                .collect(),
        }
    };
    let title = format!(
        "{} {} {}",
        report.radar,
        window.name(),
        q.lead
            .map_or("all leads".to_string(), |l| format!("+{l} min"))
    );
    let png = render_reliability_png(
        &title,
        &[
            series(|l| &l.raincast.sums, "raincast"),
            series(|l| &l.persistence.sums, "persistence"),
        ],
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        png,
    )
        .into_response())
}
