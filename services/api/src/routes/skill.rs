//! `/v1/radars/{id}/skill`: how good the radar's recent nowcasts were, as
//! scored live by the nowcast service against the scans that followed.

use crate::error::{ApiError, Problem};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use raincast_nowcast::skill::{MethodSkill, SkillError, Window};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_skill))
}

/// Which window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkillQuery {
    /// `24h` (default) or `7d`: the hourly buckets of the last day or week,
    /// ending with the newest hour scored.
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
    let r = s.radar(&id)?.clone();
    let window: Window = q
        .window
        .as_deref()
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
