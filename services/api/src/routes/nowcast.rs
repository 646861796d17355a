//! `/v1/radars/{id}/nowcast`: the latest nowcast, its frames as PNG, and the
//! past-plus-forecast animation.

use crate::error::{ApiError, Problem};
use crate::extract::{parse_time, ApiPath, ApiQuery};
use crate::http_cache::{self, CacheInfo};
use crate::models::Bounds;
use crate::routes::scans::{render_png, url_time, with_bounds, PngProjection};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::render::{self, AnimationFrame, AnimationOptions, FrameKind, RangeRings};
use raincast_nowcast::LatestNowcast;
use raincast_store::ScanManifest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_nowcast))
        .routes(routes!(get_frame))
        .routes(routes!(get_animation))
}

/// Longest past window of the nowcast listing and the animation, minutes.
pub const MAX_PAST_MIN: u32 = 360;
/// Most frames in one animation; longer windows are thinned evenly.
pub const MAX_ANIMATION_FRAMES: usize = 60;

/// The cached nowcast of a radar (refreshed when the store has a newer
/// scan), or a 503 problem while there is none.
pub async fn current_nowcast(s: &AppState, radar: &str) -> Result<Arc<LatestNowcast>, ApiError> {
    match s.nowcasts().ensure(radar, s.now()).await {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(ApiError::Unavailable {
            code: "nowcast_unavailable",
            detail: format!("radar {radar} does not have enough recent scans for a nowcast yet"),
            retry_after_s: 30,
        }),
        Err(e) => {
            tracing::warn!(radar, error = %e, "nowcast unavailable");
            Err(ApiError::Unavailable {
                code: "nowcast_unavailable",
                detail: format!(
                    "the nowcast of radar {radar} could not be made from the stored scans"
                ),
                retry_after_s: 30,
            })
        }
    }
}

fn bounds_of(s: &AppState, n: &LatestNowcast) -> Result<Bounds, ApiError> {
    Ok(Bounds::of_raster(s.map_raster(&n.grid)?.as_ref()))
}

/// Window of observed frames.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PastQuery {
    /// Minutes of observed scans before the issue time to list (0..=360, default 60).
    #[param(minimum = 0, maximum = 360)]
    pub past: Option<u32>,
}

/// An observed frame, map-ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObservedFrame {
    pub time: DateTime<Utc>,
    /// Map-ready PNG (place it with `map_bounds`).
    pub png: String,
}

/// A forecast frame, map-ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastFrame {
    /// Minutes after the issue time.
    pub lead_min: u32,
    /// Valid time.
    pub time: DateTime<Utc>,
    /// Map-ready PNG (place it with `map_bounds`).
    pub png: String,
    /// Largest forecast rate, mm/h.
    pub max_mm_h: f32,
}

/// The latest nowcast of a radar.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "radar": "demo", "issued_at": "2024-06-16T10:00:00Z", "latest_scan_time": "2024-06-16T10:00:00Z",
    "created_at": "2024-06-16T10:00:07Z", "step_minutes": 5.0,
    "inputs": ["2024-06-16T09:50:00Z", "2024-06-16T09:55:00Z", "2024-06-16T10:00:00Z"],
    "map_bounds": {"west": 7.0, "south": 46.5, "east": 9.0, "north": 47.5},
    "colour_scale": "/v1/colour-scale",
    "past": [{"time": "2024-06-16T10:00:00Z", "png": "/v1/radars/demo/scans/2024-06-16T10:00:00Z?format=png"}],
    "frames": [{"lead_min": 5, "time": "2024-06-16T10:05:00Z", "max_mm_h": 12.5,
                "png": "/v1/radars/demo/nowcast/frames/5?issued=2024-06-16T10:00:00Z"}],
    "animation": "/v1/radars/demo/animation.gif?past=60&future=60"
}))]
pub struct NowcastInfo {
    pub radar: String,
    /// Time of the newest scan used (the nowcast's base).
    pub issued_at: DateTime<Utc>,
    /// Newest scan stored for the radar.
    pub latest_scan_time: DateTime<Utc>,
    /// When this nowcast was computed or loaded.
    pub created_at: DateTime<Utc>,
    /// Interval between the input scans, minutes.
    pub step_minutes: f64,
    /// Scan times the nowcast was made from.
    pub inputs: Vec<DateTime<Utc>>,
    /// Lon/lat box of every map-ready PNG.
    pub map_bounds: Bounds,
    /// The colour scale of the PNGs.
    pub colour_scale: String,
    /// Observed frames of the `past` window, oldest first, at least the
    /// lead step apart (the latest scan always included).
    pub past: Vec<ObservedFrame>,
    /// Forecast frames, by lead.
    pub frames: Vec<ForecastFrame>,
    /// The animation of the last hour and the nowcast.
    pub animation: String,
}

/// The latest nowcast: issue time, leads and links to map-ready frames.
#[utoipa::path(get, path = "/v1/radars/{id}/nowcast", tag = "nowcast",
    params(("id" = String, Path, description = "Radar id"), PastQuery),
    responses(
        (status = 200, description = "The nowcast", body = NowcastInfo),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet (too few scans)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_nowcast(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PastQuery>,
) -> Result<Json<NowcastInfo>, ApiError> {
    s.radar(&id)?;
    let past = check_minutes("past", q.past.unwrap_or(60), MAX_PAST_MIN)?;
    let n = current_nowcast(&s, &id).await?;
    let now = s.now();
    let latest = s
        .store()
        .latest(&id, now)
        .await?
        .map(|m| m.time)
        .unwrap_or(n.base_time);
    // Spaced like the forecast frames (as in the animation): a radar that
    // scans every few seconds would otherwise list hundreds of frames.
    let observed = past_scans(&s, &n, past).await?;
    let issued = url_time(n.base_time);
    Ok(Json(NowcastInfo {
        radar: id.clone(),
        issued_at: n.base_time,
        latest_scan_time: latest,
        created_at: n.created_at,
        step_minutes: n.step_s as f64 / 60.0,
        inputs: n.inputs.clone(),
        map_bounds: bounds_of(&s, &n)?,
        colour_scale: "/v1/colour-scale".into(),
        past: observed
            .iter()
            .map(|m| ObservedFrame {
                time: m.time,
                png: format!("/v1/radars/{id}/scans/{}?format=png", url_time(m.time)),
            })
            .collect(),
        frames: n
            .leads_min
            .iter()
            .enumerate()
            .map(|(i, lead)| ForecastFrame {
                lead_min: *lead,
                time: n.valid_time(i),
                png: format!("/v1/radars/{id}/nowcast/frames/{lead}?issued={issued}"),
                max_mm_h: n.rate_mm_h[i]
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(0.0, |a, v| a.max(*v)),
            })
            .collect(),
        animation: format!("/v1/radars/{id}/animation.gif?past=60&future=60"),
    }))
}

/// 410 Gone when a client asks for the frames of a nowcast (`issued`) that
/// is no longer the latest.
pub(crate) fn check_issued(
    n: &LatestNowcast,
    issued: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match issued {
        // Later than the latest: no such nowcast (yet), not a superseded one.
        Some(t) if t > n.base_time => Err(ApiError::not_found(
            "nowcast_not_issued",
            format!(
                "no nowcast was issued at {}; the latest was issued at {}",
                url_time(t),
                url_time(n.base_time)
            ),
        )),
        Some(t) if t != n.base_time => Err(ApiError::Gone {
            code: "nowcast_superseded",
            detail: format!(
                "the nowcast issued at {} is no longer available; the latest was issued at {}",
                url_time(t),
                url_time(n.base_time)
            ),
        }),
        _ => Ok(()),
    }
}

/// A lead in whole minutes from its path segment, or a 404 naming it (the
/// segment is not a lead whatever the nowcast).
pub(crate) fn parse_lead(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| {
        ApiError::not_found(
            "unknown_lead",
            format!(
                "lead_min {:?} is not a lead in whole minutes",
                crate::state::truncate(text, 32)
            ),
        )
    })
}

/// The index of a lead of the nowcast, or a 404 listing its leads.
pub(crate) fn lead_index(n: &LatestNowcast, lead: u32) -> Result<usize, ApiError> {
    n.lead_index(lead).ok_or_else(|| {
        ApiError::not_found(
            "unknown_lead",
            format!(
                "the nowcast has no {lead}-minute lead; leads are {:?}",
                n.leads_min
            ),
        )
    })
}

fn check_minutes(name: &str, v: u32, max: u32) -> Result<u32, ApiError> {
    if v > max {
        return Err(ApiError::bad_request(
            "out_of_range",
            format!("{name} must be between 0 and {max} minutes, got {v}"),
        ));
    }
    Ok(v)
}

/// Which frame to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FrameQuery {
    /// Issue time the frame belongs to (as linked from the nowcast). When it
    /// is no longer the latest, the answer is 410 Gone; without it, the
    /// frame of the latest nowcast is returned.
    #[param(format = DateTime)]
    pub issued: Option<String>,
    /// `map` (default) or `native`.
    #[param(inline)]
    pub projection: Option<PngProjection>,
}

/// One forecast frame as PNG (documented colour scale, transparent where
/// dry, grey where unknown), with its lon/lat bounds in `X-Raincast-Bounds`.
#[utoipa::path(get, path = "/v1/radars/{id}/nowcast/frames/{lead_min}", tag = "nowcast",
    params(
        ("id" = String, Path, description = "Radar id"),
        ("lead_min" = u32, Path, description = "Lead time in minutes, one of the nowcast's leads"),
        FrameQuery,
    ),
    responses(
        (status = 200, description = "The frame", body = Vec<u8>, content_type = "image/png",
            headers(
                ("ETag" = String, description = "Validator"),
                ("Last-Modified" = String, description = "When the nowcast was made"),
                ("Cache-Control" = String, description = "public, max-age=..."),
                ("X-Raincast-Bounds" = String, description = "west,south,east,north (projection=map)"),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar or lead, or no nowcast issued at `issued`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "That nowcast has been superseded", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_frame(
    State(s): State<AppState>,
    ApiPath((id, lead)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FrameQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.radar(&id)?;
    let lead = parse_lead(&lead)?;
    let projection = q.projection.unwrap_or_default();
    let issued = q
        .issued
        .as_deref()
        .map(|t| parse_time("issued", t))
        .transpose()?;
    let n = current_nowcast(&s, &id).await?;
    check_issued(&n, issued)?;
    let i = lead_index(&n, lead)?;
    let proj_tag = match projection {
        PngProjection::Map => "map",
        PngProjection::Native => "native",
    };
    let info = CacheInfo {
        etag: format!("{id}-{}-{lead}-{proj_tag}", n.base_time.timestamp()),
        last_modified: Some(n.created_at),
        max_age_s: if issued.is_some() { 86_400 } else { 60 },
    };
    let bounds = match projection {
        PngProjection::Map => Some(bounds_of(&s, &n)?),
        PngProjection::Native => None,
    };
    if http_cache::is_fresh(&headers, &info) {
        return Ok(with_bounds(
            http_cache::respond(&headers, &info, "image/png", Body::empty()),
            bounds,
        ));
    }
    let key = format!("frame|{}", info.etag);
    let png = match s.png_cache().get(&key) {
        Some(p) => p.to_vec(),
        None => {
            let state = s.clone();
            let n = n.clone();
            let (png, _) = s
                .cpu(move || {
                    let field = RainField {
                        grid: n.grid.clone(),
                        time: n.valid_time(i),
                        rate_mm_h: n.rate_mm_h[i].clone(),
                    };
                    render_png(&state, &field, projection)
                })
                .await??;
            s.png_cache().insert(key, Arc::from(png.as_slice()));
            png
        }
    };
    Ok(with_bounds(
        http_cache::respond(&headers, &info, "image/png", png),
        bounds,
    ))
}

/// Animation window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnimationQuery {
    /// Minutes of observed scans before the issue time (0..=360, default 60).
    #[param(minimum = 0, maximum = 360)]
    pub past: Option<u32>,
    /// Minutes of forecast after it (0..=the longest lead, default 60).
    pub future: Option<u32>,
}

/// Range-ring step for a grid: about a sixth of its smaller side, rounded to 10, 25, 50, 100 or 200 km.
fn ring_step_km(grid: &raincast_algorithms::Grid) -> f64 {
    let side_km = grid.rows.min(grid.cols) as f64 * grid.cell_m() / 1000.0;
    [10.0, 25.0, 50.0, 100.0, 200.0]
        .into_iter()
        .min_by(|a, b| ((a - side_km / 6.0).abs()).total_cmp(&(b - side_km / 6.0).abs()))
        .unwrap_or(50.0)
}

/// The stored scans of the `past_min` minutes up to the nowcast's base time,
/// oldest first, spaced at the lead step: the nowcast service's frames
/// builder, shared with the notifier's GIF.
async fn past_scans(
    s: &AppState,
    n: &LatestNowcast,
    past_min: u32,
) -> Result<Vec<ScanManifest>, ApiError> {
    s.nowcasts()
        .past_scans(n, past_min, s.now())
        .await
        .map_err(frames_error)
}

fn frames_error(e: raincast_nowcast::NowcastServiceError) -> ApiError {
    match e {
        raincast_nowcast::NowcastServiceError::Store(e) => e.into(),
        other => ApiError::Internal(format!("observed frames: {other}")),
    }
}

/// Keeps at most `max` items, evenly spaced, always including the last.
fn thin<T>(v: Vec<T>, max: usize) -> Vec<T> {
    if v.len() <= max || max == 0 {
        return v;
    }
    let n = v.len();
    let keep: std::collections::HashSet<usize> = (0..max)
        .map(|k| n - 1 - k * (n - 1) / (max - 1).max(1))
        .collect();
    v.into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, x)| x)
        .collect()
}

/// An animated GIF of the past scans and the nowcast (loops forever; legend,
/// observed/forecast labels, range rings around the radar). Cached per
/// nowcast and window.
#[utoipa::path(get, path = "/v1/radars/{id}/animation.gif", tag = "nowcast",
    params(("id" = String, Path, description = "Radar id"), AnimationQuery),
    responses(
        (status = 200, description = "The animation", body = Vec<u8>, content_type = "image/gif",
            headers(
                ("ETag" = String, description = "Validator"),
                ("Cache-Control" = String, description = "public, max-age=60"),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad window", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_animation(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AnimationQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let radar = s.radar(&id)?.clone();
    let past = check_minutes("past", q.past.unwrap_or(60), MAX_PAST_MIN)?;
    let n = current_nowcast(&s, &id).await?;
    let max_future = n.leads_min.last().copied().unwrap_or(0);
    let future = check_minutes("future", q.future.unwrap_or(60.min(max_future)), max_future)?;
    if past == 0 && future == 0 {
        return Err(ApiError::bad_request(
            "empty_window",
            "past and future cannot both be 0",
        ));
    }
    let info = CacheInfo {
        etag: format!("{id}-{}-{past}-{future}-gif", n.base_time.timestamp()),
        last_modified: Some(n.created_at),
        max_age_s: 60,
    };
    if http_cache::is_fresh(&headers, &info) {
        return Ok(http_cache::respond(
            &headers,
            &info,
            "image/gif",
            Body::empty(),
        ));
    }
    if let Some(gif) = s.gif_cache().get(&info.etag) {
        return Ok(http_cache::respond(
            &headers,
            &info,
            "image/gif",
            gif.to_vec(),
        ));
    }
    // Observed frames: stored scans in the window, on the nowcast's grid.
    let manifests = if past > 0 {
        past_scans(&s, &n, past).await?
    } else {
        Vec::new()
    };
    let forecast: Vec<usize> = (0..n.leads_min.len())
        .filter(|&i| n.leads_min[i] <= future)
        .collect();
    if manifests.is_empty() && forecast.is_empty() {
        // A window shorter than the first lead, with no scan in the past
        // part: nothing to draw, said as such (not an internal error).
        return Err(ApiError::bad_request(
            "empty_window",
            format!(
                "the window holds no frame: no scan in the last {past} min, and future = {future} \
                 is shorter than the first lead ({} min)",
                n.leads_min.first().copied().unwrap_or(0)
            ),
        ));
    }
    let budget_past =
        MAX_ANIMATION_FRAMES.saturating_sub(forecast.len().min(MAX_ANIMATION_FRAMES / 2));
    let manifests = thin(manifests, budget_past);
    let forecast = thin(
        forecast,
        MAX_ANIMATION_FRAMES - manifests.len().min(MAX_ANIMATION_FRAMES),
    );
    let cpu = s.cpu_admit()?.worker().await?;
    let fetched = s
        .nowcasts()
        .observed_scans(&n, &manifests, s.now())
        .await
        .map_err(frames_error)?;
    let opts = AnimationOptions {
        title: Some(radar.name.clone()),
        rings: radar.location.map(|(lon, lat)| RangeRings {
            lon,
            lat,
            step_km: ring_step_km(&n.grid),
            count: 4,
        }),
        ..AnimationOptions::default()
    };
    let metrics = s.metrics().clone();
    let nc = n.clone();
    // Decoding the observed scans and rendering: one job of the CPU pool.
    let gif = cpu
        .run(move || {
            let start = std::time::Instant::now();
            let observed = fetched.decode().map_err(frames_error)?;
            let mut frames: Vec<AnimationFrame> = observed
                .iter()
                .map(|f| AnimationFrame {
                    rate_mm_h: f.rate_mm_h.view(),
                    time: f.time,
                    kind: FrameKind::Observed,
                })
                .collect();
            frames.extend(forecast.iter().map(|&i| AnimationFrame {
                rate_mm_h: nc.rate_mm_h[i].view(),
                time: nc.valid_time(i),
                kind: FrameKind::Forecast {
                    lead_min: nc.leads_min[i],
                },
            }));
            let out = render::render_animation(&nc.grid, &frames, &opts)
                .map_err(|e| ApiError::Internal(format!("animation: {e}")));
            metrics
                .render
                .with_label_values(&["gif"])
                .observe(start.elapsed().as_secs_f64());
            out
        })
        .await??;
    s.gif_cache()
        .insert(info.etag.clone(), Arc::from(gif.as_slice()));
    Ok(http_cache::respond(&headers, &info, "image/gif", gif))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_last_and_the_count() {
        let v: Vec<usize> = (0..100).collect();
        let t = thin(v, 10);
        assert_eq!(t.len(), 10);
        assert_eq!(*t.last().expect("non-empty"), 99);
        assert_eq!(t[0], 0);
        assert_eq!(thin(vec![1, 2, 3], 10), vec![1, 2, 3]);
    }
}
