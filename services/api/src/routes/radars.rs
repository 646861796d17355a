//! `/v1/radars`: the radars, their coverage and status.

use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::models::{grid_outline, round6, Bounds, GeoJsonPolygon, LonLat};
use crate::state::{AppState, RadarInfo};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_radars))
        .routes(routes!(get_radar))
}

/// Whether a radar's data are current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RadarStatus {
    /// The newest scan is younger than `api.ready_max_age_s`.
    Ok,
    /// Scans exist but the newest is older than that.
    Stale,
    /// No scan is stored.
    NoData,
}

/// Links to a radar's resources.
#[derive(Debug, Serialize, ToSchema)]
pub struct RadarLinks {
    pub scans: String,
    pub nowcast: String,
    pub animation: String,
}

/// One radar.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "demo", "name": "Synthetic demo radar",
    "location": {"lon": 8.0, "lat": 47.0},
    "coverage": {"type": "Polygon", "coordinates": [[[7.0, 47.5], [9.0, 47.5], [9.0, 46.5], [7.0, 46.5], [7.0, 47.5]]]},
    "bounds": {"west": 7.0, "south": 46.5, "east": 9.0, "north": 47.5},
    "latest_scan_time": "2024-06-16T10:00:00Z", "latest_nowcast_time": "2024-06-16T10:00:00Z",
    "status": "ok",
    "links": {"scans": "/v1/radars/demo/scans", "nowcast": "/v1/radars/demo/nowcast", "animation": "/v1/radars/demo/animation.gif"}
}))]
pub struct Radar {
    pub id: String,
    pub name: String,
    /// Radar site, when configured.
    pub location: Option<LonLat>,
    /// Outline of the grid of the newest scan.
    pub coverage: Option<GeoJsonPolygon>,
    /// Lon/lat box of that grid.
    pub bounds: Option<Bounds>,
    pub latest_scan_time: Option<DateTime<Utc>>,
    /// Base time of the newest nowcast in memory.
    pub latest_nowcast_time: Option<DateTime<Utc>>,
    pub status: RadarStatus,
    pub links: RadarLinks,
}

/// The radar list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RadarList {
    pub radars: Vec<Radar>,
}

async fn describe(s: &AppState, r: &RadarInfo) -> Result<Radar, ApiError> {
    let now = s.now();
    let latest = s.store().latest(&r.id, now).await?;
    let (coverage, bounds) = match &latest {
        Some(m) => {
            let info = s.header_info(m)?;
            let b = info.grid.bounds_lonlat().ok().map(|(w, so, e, n)| Bounds {
                west: round6(w),
                south: round6(so),
                east: round6(e),
                north: round6(n),
            });
            (grid_outline(&info.grid), b)
        }
        None => (None, None),
    };
    let status = match &latest {
        None => RadarStatus::NoData,
        Some(m) if (now - m.time).num_seconds() <= s.config().ready_max_age_s as i64 => {
            RadarStatus::Ok
        }
        Some(_) => RadarStatus::Stale,
    };
    Ok(Radar {
        id: r.id.clone(),
        name: r.name.clone(),
        location: r.location.map(|(lon, lat)| LonLat { lon, lat }),
        coverage,
        bounds,
        latest_scan_time: latest.map(|m| m.time),
        latest_nowcast_time: s.latest_nowcast_time(&r.id),
        status,
        links: RadarLinks {
            scans: format!("/v1/radars/{}/scans", r.id),
            nowcast: format!("/v1/radars/{}/nowcast", r.id),
            animation: format!("/v1/radars/{}/animation.gif", r.id),
        },
    })
}

/// Every radar with its coverage (GeoJSON), newest scan and nowcast times, and status.
#[utoipa::path(get, path = "/v1/radars", tag = "radars",
    responses(
        (status = 200, description = "The radars", body = RadarList),
        (status = 503, description = "Store unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_radars(State(s): State<AppState>) -> Result<Json<RadarList>, ApiError> {
    let mut radars = Vec::with_capacity(s.radars().len());
    for r in s.radars() {
        radars.push(describe(&s, r).await?);
    }
    Ok(Json(RadarList { radars }))
}

/// One radar.
#[utoipa::path(get, path = "/v1/radars/{id}", tag = "radars",
    params(("id" = String, Path, description = "Radar id")),
    responses(
        (status = 200, description = "The radar", body = Radar),
        (status = 404, description = "Unknown radar", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_radar(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Radar>, ApiError> {
    let r = s.radar(&id)?.clone();
    Ok(Json(describe(&s, &r).await?))
}
