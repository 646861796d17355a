//! `/v1/radars/{id}/scans`: stored scans, listed and as fields.

use crate::error::{ApiError, Problem};
use crate::extract::{parse_time, ApiPath, ApiQuery};
use crate::http_cache::{self, CacheInfo};
use crate::models::{Bounds, GridInfo};
use crate::state::{decode_scan, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::{npy, render};
use raincast_store::{ScanEntry, StoredScan};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_scans))
        .routes(routes!(get_scan))
}

/// Default length of the listing window, hours.
const DEFAULT_RANGE_H: i64 = 2;

/// Scans per page of a listing: default and largest.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// Time range and page of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start (RFC 3339, inclusive). Default: `to` minus 2 hours.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, inclusive). Default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Scans per page (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Cursor: list scans after this time (RFC 3339, exclusive), as set in the `next` link.
    #[param(format = DateTime)]
    pub after: Option<String>,
}

/// Links to one scan's representations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanLinks {
    pub json: String,
    pub png: String,
    pub npy: String,
}

/// One stored scan, without its field.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanSummary {
    /// Scan time (UTC).
    pub time: DateTime<Utc>,
    /// Cells with rain.
    pub rain_cells: u64,
    /// Stored bytes (sparse header + tiles).
    pub bytes: u64,
    /// Stored tiles.
    pub tiles: usize,
    /// When it was stored.
    pub ingested_at: DateTime<Utc>,
    pub links: ScanLinks,
}

/// A page of the scans of a radar in a time range, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "radar": "demo", "from": "2024-06-16T08:00:00Z", "to": "2024-06-16T10:00:00Z", "count": 1, "limit": 1,
    "scans": [{"time": "2024-06-16T09:55:00Z", "rain_cells": 1234, "bytes": 5678, "tiles": 2,
               "ingested_at": "2024-06-16T09:55:05Z",
               "links": {"json": "/v1/radars/demo/scans/2024-06-16T09:55:00Z?format=json",
                         "png": "/v1/radars/demo/scans/2024-06-16T09:55:00Z?format=png",
                         "npy": "/v1/radars/demo/scans/2024-06-16T09:55:00Z?format=npy"}}],
    "next": "/v1/radars/demo/scans?from=2024-06-16T08:00:00Z&to=2024-06-16T10:00:00Z&limit=1&after=2024-06-16T09:55:00Z"
}))]
pub struct ScanList {
    pub radar: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Scans in this page.
    pub count: usize,
    /// Most scans per page.
    pub limit: u32,
    pub scans: Vec<ScanSummary>,
    /// The next page (same range), when there are more scans.
    pub next: Option<String>,
}

/// RFC 3339 with a `Z`, as used in URLs.
pub fn url_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn summary(radar: &str, m: &ScanEntry) -> ScanSummary {
    let base = format!("/v1/radars/{radar}/scans/{}", url_time(m.time));
    ScanSummary {
        time: m.time,
        rain_cells: m.rain_cells,
        bytes: m.bytes,
        tiles: m.tiles,
        ingested_at: m.ingested_at,
        links: ScanLinks {
            json: format!("{base}?format=json"),
            png: format!("{base}?format=png"),
            npy: format!("{base}?format=npy"),
        },
    }
}

/// Scans of a radar between `from` and `to` (inclusive), oldest first, a
/// page of at most `limit`; `next` links to the following page.
#[utoipa::path(get, path = "/v1/radars/{id}/scans", tag = "scans",
    params(("id" = String, Path, description = "Radar id"), RangeQuery),
    responses(
        (status = 200, description = "The scans", body = ScanList),
        (status = 400, description = "Bad time, range or limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_scans(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<ScanList>, ApiError> {
    s.radar(&id)?;
    let now = s.now();
    let to = match &q.to {
        Some(t) => parse_time("to", t)?,
        None => now,
    };
    let from = match &q.from {
        Some(t) => parse_time("from", t)?,
        None => to - Duration::hours(DEFAULT_RANGE_H),
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("from ({}) is after to ({})", url_time(from), url_time(to)),
        ));
    }
    let max_h = s.config().max_scan_range_h;
    if to - from > Duration::hours(max_h as i64) {
        return Err(ApiError::bad_request(
            "range_too_long",
            format!("from..to spans more than {max_h} hours"),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "out_of_range",
            format!("limit must be between 1 and {MAX_PAGE}, got {limit}"),
        ));
    }
    // Stored times are whole seconds: "after t" starts at t + 1 s.
    let start = match &q.after {
        Some(t) => from.max(parse_time("after", t)? + Duration::seconds(1)),
        None => from,
    };
    // One more than the page tells whether there is a next page.
    let mut entries = s
        .store()
        .list_entries(&id, start, to, limit as usize + 1, now)
        .await?;
    let next = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|last| {
            format!(
                "/v1/radars/{id}/scans?from={}&to={}&limit={limit}&after={}",
                url_time(from),
                url_time(to),
                url_time(last.time)
            )
        })
    } else {
        None
    };
    let scans: Vec<ScanSummary> = entries.iter().map(|m| summary(&id, m)).collect();
    Ok(Json(ScanList {
        radar: id,
        from,
        to,
        count: scans.len(),
        limit,
        scans,
        next,
    }))
}

/// Representation of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanFormat {
    /// Metadata plus the field as nested arrays (mm/h, rounded to 0.001, `null` = no data).
    #[default]
    Json,
    /// NumPy `.npy`: float32, C order, `(rows, cols)`, row 0 north, NaN = no data; exact values.
    Npy,
    /// PNG with the documented colour scale on a transparent background.
    Png,
}

/// Geometry of a PNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PngProjection {
    /// Resampled for web maps: columns equally spaced in longitude, rows in
    /// Web Mercator y; place it with the `X-Raincast-Bounds` box
    /// (`west,south,east,north`), the same as `map_bounds` in the JSON.
    #[default]
    Map,
    /// One pixel per grid cell in the radar's own projection.
    Native,
}

/// How to return a scan.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanQuery {
    /// `json` (default), `npy` or `png`.
    #[param(inline)]
    pub format: Option<ScanFormat>,
    /// For `png`: `map` (default) or `native`.
    #[param(inline)]
    pub projection: Option<PngProjection>,
}

/// A scan with its field.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "radar": "demo", "time": "2024-06-16T10:00:00Z", "source_key": "demo/2024/06/16/demo_20240616T100000Z.h5",
    "source_format": "odim", "ingested_at": "2024-06-16T10:00:05Z",
    "grid": {"projection": "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m", "rows": 2, "cols": 3,
             "cell_x_m": 1000.0, "cell_y_m": 1000.0, "x_west_m": -1500.0, "y_north_m": 1000.0},
    "map_bounds": {"west": 7.98, "south": 46.99, "east": 8.02, "north": 47.01},
    "rain_cells": 2, "nodata_cells": 1, "max_mm_h": 3.5, "units": "mm/h",
    "rate_mm_h": [[0.0, 1.25, 3.5], [null, 0.0, 0.0]]
}))]
pub struct ScanData {
    pub radar: String,
    pub time: DateTime<Utc>,
    /// Source file the scan was decoded from.
    pub source_key: String,
    /// Its format (`odim`, `bom`, ...).
    pub source_format: String,
    pub ingested_at: DateTime<Utc>,
    pub grid: GridInfo,
    /// Lon/lat box of the map-ready PNG.
    pub map_bounds: Option<Bounds>,
    pub rain_cells: u64,
    pub nodata_cells: u64,
    /// Largest rate, mm/h.
    pub max_mm_h: f32,
    /// Always `mm/h`.
    pub units: String,
    /// Rain rate per cell, `[row][col]`, row 0 north; `null` = no data, 0 = no rain.
    pub rate_mm_h: Vec<Vec<Option<f32>>>,
}

/// Resolves `latest` or an RFC 3339 time to a stored scan time.
pub async fn resolve_time(
    s: &AppState,
    radar: &str,
    time: &str,
) -> Result<DateTime<Utc>, ApiError> {
    if time.eq_ignore_ascii_case("latest") {
        return s
            .store()
            .latest(radar, s.now())
            .await?
            .map(|m| m.time)
            .ok_or_else(|| {
                ApiError::not_found("scan_not_found", format!("radar {radar} has no scans yet"))
            });
    }
    parse_time("time", time)
}

/// Renders a field to PNG; `map` resamples for web maps. CPU-heavy: call
/// it inside [`AppState::cpu`].
pub fn render_png(
    s: &AppState,
    field: &RainField,
    projection: PngProjection,
) -> Result<(Vec<u8>, Option<Bounds>), ApiError> {
    let start = std::time::Instant::now();
    let out = match projection {
        PngProjection::Map => {
            let r = s.map_raster(&field.grid)?;
            r.resample(field.rate_mm_h.view())
                .and_then(|resampled| render::render_png(resampled.view()))
                .map(|png| (png, Some(Bounds::of_raster(&r))))
        }
        PngProjection::Native => render::render_png(field.rate_mm_h.view()).map(|png| (png, None)),
    }
    .map_err(|e| ApiError::Internal(format!("render: {e}")))?;
    s.metrics()
        .render
        .with_label_values(&["png"])
        .observe(start.elapsed().as_secs_f64());
    Ok(out)
}

/// Adds the map bounds header to a PNG response.
pub fn with_bounds(mut resp: Response, b: Option<Bounds>) -> Response {
    if let Some(b) = b {
        if let Ok(v) =
            HeaderValue::from_str(&format!("{},{},{},{}", b.west, b.south, b.east, b.north))
        {
            resp.headers_mut().insert("x-raincast-bounds", v);
        }
    }
    resp
}

/// `Cache-Control` max-age of `scans/latest`, seconds: short against a
/// radar's 5-minute cadence (the demo's is 10 s), and a revalidation is a
/// 304 from the manifest.
const LATEST_MAX_AGE_S: u32 = 10;

/// A scan's metadata and field as JSON, NumPy `.npy` or PNG.
///
/// `time` is an RFC 3339 scan time (as listed, cached for an hour) or
/// `latest` (cached for 10 s: it moves on with every scan).
#[utoipa::path(get, path = "/v1/radars/{id}/scans/{time}", tag = "scans",
    params(
        ("id" = String, Path, description = "Radar id"),
        ("time" = String, Path, description = "Scan time (RFC 3339) or `latest`"),
        ScanQuery,
    ),
    responses(
        (status = 200, description = "The scan",
            content(
                (ScanData = "application/json"),
                (Vec<u8> = "application/octet-stream"),
                (Vec<u8> = "image/png"),
            ),
            headers(
                ("ETag" = String, description = "Validator of this representation"),
                ("Last-Modified" = String, description = "When the scan was stored"),
                ("Cache-Control" = String, description = "public, max-age=..."),
                ("X-Raincast-Bounds" = String, description = "PNG with projection=map: west,south,east,north"),
            )),
        (status = 304, description = "Not modified (If-None-Match / If-Modified-Since)"),
        (status = 400, description = "Bad time or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar or no scan at that time", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Busy: too many CPU-heavy requests waiting (`code` busy, with Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_scan(
    State(s): State<AppState>,
    ApiPath((id, time)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ScanQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.radar(&id)?;
    // `latest` names another scan after every scan: cached briefly, where
    // a scan's own time names the same scan for good.
    let max_age_s = if time.eq_ignore_ascii_case("latest") {
        LATEST_MAX_AGE_S
    } else {
        3600
    };
    let time = resolve_time(&s, &id, &time).await?;
    let format = q.format.unwrap_or_default();
    let projection = q.projection.unwrap_or_default();
    // Validators come from the manifest: answer 304s without decoding.
    let manifest = s
        .store()
        .get_manifest(&id, time, s.now())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "scan_not_found",
                format!("radar {id} has no scan at {}", url_time(time)),
            )
        })?;
    let tag = match (format, projection) {
        (ScanFormat::Json, _) => "json",
        (ScanFormat::Npy, _) => "npy",
        (ScanFormat::Png, PngProjection::Map) => "png-map",
        (ScanFormat::Png, PngProjection::Native) => "png-native",
    };
    let info = CacheInfo {
        etag: format!("{}-{tag}", manifest.digest),
        last_modified: Some(manifest.ingested_at),
        max_age_s,
    };
    if http_cache::is_fresh(&headers, &info) {
        return Ok(http_cache::respond(
            &headers,
            &info,
            "application/octet-stream",
            Body::empty(),
        ));
    }
    let cache_key = format!("scan|{id}|{}|{}", manifest.digest, tag);
    if format == ScanFormat::Png {
        if let Some(bytes) = s.png_cache().get(&cache_key) {
            let bounds = match projection {
                PngProjection::Map => {
                    let info = s.header_info(&manifest)?;
                    Some(Bounds::of_raster(s.map_raster(&info.grid)?.as_ref()))
                }
                PngProjection::Native => None,
            };
            return Ok(with_bounds(
                http_cache::respond(&headers, &info, "image/png", Body::from(bytes.to_vec())),
                bounds,
            ));
        }
    }
    // Decoding and rendering run in the bounded CPU pool, one job per request.
    let cpu = s.cpu_admit()?.worker().await?;
    let scan = s.fetch_scan(&id, time).await?;
    let state = s.clone();
    match format {
        ScanFormat::Png => {
            let (png, bounds) = cpu
                .run(move || render_png(&state, &decode_scan(&scan)?, projection))
                .await??;
            s.png_cache().insert(cache_key, Arc::from(png.as_slice()));
            Ok(with_bounds(
                http_cache::respond(&headers, &info, "image/png", png),
                bounds,
            ))
        }
        ScanFormat::Npy => {
            let (bytes, time) = cpu
                .run(move || decode_scan(&scan).map(|f| (npy::encode_f32(&f.rate_mm_h), f.time)))
                .await??;
            let mut resp = http_cache::respond(&headers, &info, "application/octet-stream", bytes);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"{id}_{}.npy\"",
                time.format("%Y%m%dT%H%M%SZ")
            )) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        ScanFormat::Json => {
            let body = cpu.run(move || scan_json(&state, id, &scan)).await??;
            Ok(http_cache::respond(&headers, &info, "application/json", body).into_response())
        }
    }
}

/// A scan as the JSON body of [`ScanData`]. CPU-heavy (millions of cells
/// for the large composites): call it inside [`AppState::cpu`].
fn scan_json(s: &AppState, radar: String, scan: &StoredScan) -> Result<Vec<u8>, ApiError> {
    let field = decode_scan(scan)?;
    let manifest = &scan.manifest;
    let map_bounds = s
        .map_raster(&field.grid)
        .ok()
        .map(|r| Bounds::of_raster(&r));
    let rate: Vec<Vec<Option<f32>>> = field
        .rate_mm_h
        .outer_iter()
        .map(|row| {
            row.iter()
                .map(|v| v.is_finite().then(|| (v * 1000.0).round() / 1000.0))
                .collect()
        })
        .collect();
    let data = ScanData {
        radar,
        time: field.time,
        source_key: manifest.source_key.clone(),
        source_format: manifest.format.clone(),
        ingested_at: manifest.ingested_at,
        grid: GridInfo::from(&field.grid),
        map_bounds,
        rain_cells: field.rain_cells() as u64,
        nodata_cells: field.nodata_cells() as u64,
        max_mm_h: field.max_mm_h(),
        units: "mm/h".into(),
        rate_mm_h: rate,
    };
    serde_json::to_vec(&data).map_err(|e| ApiError::Internal(format!("json: {e}")))
}
