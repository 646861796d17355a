//! The embedded offline basemap for the map page: `/v1/basemap` (GeoJSON of
//! the coastlines, borders, lake shores and large towns in a box, from
//! `raincast_algorithms::basemap`) and `/v1/map-settings` (the optional
//! online basemap of `[api] basemap_url`).

use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http_cache::{self, CacheInfo};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use raincast_algorithms::basemap::Basemap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::hash::{Hash, Hasher};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(basemap))
        .routes(routes!(map_settings))
}

/// Credit of the embedded basemap, as the map page shows it.
pub const ATTRIBUTION: &str =
    "Basemap: Natural Earth; lakes © OpenStreetMap contributors (ODbL); towns GeoNames (CC BY 4.0)";

/// Largest box side accepted, degrees (bounds the answer's size).
const MAX_SPAN_DEG: f64 = 90.0;

/// The box and the smallest town.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BasemapQuery {
    /// West edge, degrees (-180..180).
    #[param(minimum = -180.0, maximum = 180.0)]
    pub west: f64,
    /// South edge, degrees (-90..90).
    #[param(minimum = -90.0, maximum = 90.0)]
    pub south: f64,
    /// East edge, degrees; more than `west`, at most 90° from it.
    #[param(minimum = -180.0, maximum = 180.0)]
    pub east: f64,
    /// North edge, degrees; more than `south`, at most 90° from it.
    #[param(minimum = -90.0, maximum = 90.0)]
    pub north: f64,
    /// Smallest town, inhabitants (default 100000, the smallest embedded).
    pub min_population: Option<u32>,
}

fn check(q: &BasemapQuery) -> Result<(), ApiError> {
    let bad = |d: &str| Err(ApiError::bad_request("invalid_box", d.to_string()));
    for (name, v, lim) in [
        ("west", q.west, 180.0),
        ("east", q.east, 180.0),
        ("south", q.south, 90.0),
        ("north", q.north, 90.0),
    ] {
        if !(v.is_finite() && v.abs() <= lim) {
            return bad(&format!("{name} must be in -{lim}..{lim}"));
        }
    }
    if !(q.east > q.west && q.north > q.south) {
        return bad("east must exceed west and north must exceed south");
    }
    if q.east - q.west > MAX_SPAN_DEG || q.north - q.south > MAX_SPAN_DEG {
        return bad("the box may span at most 90 degrees each way");
    }
    Ok(())
}

/// GeoJSON of the embedded basemap in a box: `LineString` features with
/// `kind` `coast`, `border` or `lake` (a lake's line is its closed shore),
/// and `Point` features with `kind` `town`, `name` (UTF-8, with accents)
/// and `population`, largest first. Lines are Natural Earth 1:50m
/// (simplified to about 1 km); whole lines whose box meets the box are
/// returned, not clipped.
#[utoipa::path(get, path = "/v1/basemap", tag = "page",
    params(BasemapQuery),
    responses(
        (status = 200, description = "GeoJSON FeatureCollection", body = Object, content_type = "application/geo+json"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A bad box", body = Problem, content_type = "application/problem+json"),
    ))]
async fn basemap(
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<BasemapQuery>,
) -> Result<Response, ApiError> {
    check(&q)?;
    let bm = Basemap::embedded();
    let bbox = (q.west, q.south, q.east, q.north);
    let min_pop = q.min_population.unwrap_or(0);
    let mut features: Vec<Value> = bm
        .lines_in(bbox)
        .map(|l| {
            let coords: Vec<[f64; 2]> = l
                .points
                .iter()
                .map(|&(x, y)| [bm.deg(x), bm.deg(y)])
                .collect();
            json!({
                "type": "Feature",
                "properties": {"kind": l.kind.name()},
                "geometry": {"type": "LineString", "coordinates": coords},
            })
        })
        .collect();
    features.extend(bm.towns_in(bbox, min_pop).map(|t| {
        json!({
            "type": "Feature",
            "properties": {"kind": "town", "name": t.name, "population": t.population},
            "geometry": {"type": "Point", "coordinates": [t.lon, t.lat]},
        })
    }));
    let body = serde_json::to_vec(&json!({
        "type": "FeatureCollection",
        "attribution": ATTRIBUTION,
        "features": features,
    }))
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // The basemap is compiled in: the answer depends on the query only.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in [q.west, q.south, q.east, q.north] {
        v.to_bits().hash(&mut h);
    }
    min_pop.hash(&mut h);
    raincast_algorithms::basemap::EMBEDDED.len().hash(&mut h);
    let info = CacheInfo {
        etag: format!("{:016x}", h.finish()),
        last_modified: None,
        max_age_s: 86_400,
    };
    Ok(http_cache::respond(
        &headers,
        &info,
        "application/geo+json",
        body,
    ))
}

/// What the map page draws under the rain.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapSettings {
    /// XYZ template of an online basemap (`[api] basemap_url`), or null:
    /// the page draws the embedded one from `/v1/basemap`.
    pub basemap_url: Option<String>,
    /// Credit of the embedded basemap.
    pub basemap_attribution: String,
}

/// The map page's settings.
#[utoipa::path(get, path = "/v1/map-settings", tag = "page",
    responses((status = 200, description = "The settings", body = MapSettings)))]
async fn map_settings(State(s): State<AppState>) -> Json<MapSettings> {
    Json(MapSettings {
        basemap_url: s.config().basemap_url.clone(),
        basemap_attribution: ATTRIBUTION.to_string(),
    })
}
