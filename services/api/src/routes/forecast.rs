//! `/v1/forecast`: the minute-by-minute style forecast at a point, and the
//! colour scale.

use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::models::LonLat;
use crate::routes::nowcast::current_nowcast;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use raincast_algorithms::nowcast::Intensity;
use raincast_algorithms::render::{NO_DATA_RGBA, NO_RAIN_RGBA, RAIN_SCALE};
use raincast_nowcast::{LatestNowcast, PointForecast};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_forecast))
        .routes(routes!(colour_scale))
}

/// Where to forecast.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// Latitude, degrees north (-90..=90).
    #[param(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    /// Longitude, degrees east (-180..=180).
    #[param(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Use this radar instead of the best one covering the point.
    pub radar: Option<String>,
}

/// One forecast step.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastEntry {
    /// Valid time.
    pub time: DateTime<Utc>,
    /// Minutes after the issue time.
    pub lead_min: u32,
    /// Forecast rain rate, mm/h (`null` = unknown: the rain would come from outside the radar's view).
    pub intensity_mm_h: Option<f32>,
    /// Probability of rain ≥ `threshold_mm_h` (0..1, `null` = unknown).
    pub probability: Option<f32>,
    /// Whether `probability` is calibrated from the radar's live record at
    /// this lead (isotonic fit of its 24 h reliability table, once it holds
    /// `min_samples` cell-cases) or the raw neighbourhood probability.
    pub probability_calibrated: bool,
    /// Intensity band of `intensity_mm_h`.
    pub intensity: Option<Intensity>,
    /// Raincast's CSI at 1 mm/h at this lead over the last 24 h of live
    /// skill (`/v1/radars/{id}/skill`); `null` before any case with rain.
    pub recent_csi: Option<f64>,
}

/// The observation at the issue time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Observation {
    pub time: DateTime<Utc>,
    /// Observed rain rate, mm/h (`null` = no data).
    pub intensity_mm_h: Option<f32>,
    pub intensity: Option<Intensity>,
}

/// Aggregate over a horizon.
#[derive(Debug, Serialize, ToSchema)]
pub struct Outlook {
    /// Horizon, minutes.
    pub minutes: u32,
    /// Largest forecast rate, mm/h.
    pub max_intensity_mm_h: Option<f32>,
    /// Largest probability of rain.
    pub max_probability: Option<f32>,
    /// Minutes until the first step with rain ≥ the threshold, if any.
    pub rain_starts_in_min: Option<u32>,
}

/// The radar a forecast comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct RadarRef {
    pub id: String,
    pub name: String,
}

/// A radar used by a mosaic forecast, with its share.
#[derive(Debug, Serialize, ToSchema)]
pub struct MosaicRadarRef {
    pub id: String,
    pub name: String,
    /// Its weight at the place in the mosaic rule (the weights sum to 1),
    /// in the latest observation.
    pub weight: f64,
}

/// A point forecast.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "location": {"lon": 8.1, "lat": 47.1},
    "radar": {"id": "demo", "name": "Synthetic demo radar"},
    "radars": [{"id": "demo", "name": "Synthetic demo radar", "weight": 0.71}, {"id": "demo2", "name": "Synthetic demo radar (east)", "weight": 0.29}],
    "mosaic": true,
    "issued_at": "2024-06-16T10:00:00Z", "latest_scan_time": "2024-06-16T10:00:00Z",
    "step_minutes": 5.0, "threshold_mm_h": 0.1,
    "summary": "Light rain starting in about 15 min, easing after 40 min",
    "now": {"time": "2024-06-16T10:00:00Z", "intensity_mm_h": 0.0, "intensity": "none"},
    "entries": [{"time": "2024-06-16T10:05:00Z", "lead_min": 5, "intensity_mm_h": 0.0, "probability": 0.05, "probability_calibrated": false, "intensity": "none", "recent_csi": 0.62},
                {"time": "2024-06-16T10:15:00Z", "lead_min": 15, "intensity_mm_h": 1.2, "probability": 0.7, "probability_calibrated": true, "intensity": "light", "recent_csi": 0.41}],
    "next_hour": {"minutes": 60, "max_intensity_mm_h": 1.2, "max_probability": 0.7, "rain_starts_in_min": 15},
    "two_hours": {"minutes": 120, "max_intensity_mm_h": 1.2, "max_probability": 0.7, "rain_starts_in_min": 15}
}))]
pub struct Forecast {
    pub location: LonLat,
    /// The radar the forecast comes from; in an overlap of radars (see
    /// `radars`), the one with the largest weight.
    pub radar: RadarRef,
    /// Every radar used, largest weight first: one radar, or, where
    /// several see the place and no `radar` was asked for, the radars of
    /// the mosaic (inverse-distance weighted, see docs/ARCHITECTURE.md).
    pub radars: Vec<MosaicRadarRef>,
    /// Whether the values come from the mosaic of several radars (then
    /// `issued_at` and every entry's time are slots of the mosaic's cadence).
    pub mosaic: bool,
    /// Time of the newest scan the nowcast used.
    pub issued_at: DateTime<Utc>,
    /// Newest scan time known for the radar (equal to `issued_at` unless a newer scan is being processed).
    pub latest_scan_time: DateTime<Utc>,
    /// Interval between the input scans, minutes.
    pub step_minutes: f64,
    /// Threshold of `probability`, mm/h.
    pub threshold_mm_h: f32,
    /// One sentence, e.g. "Light rain starting in about 15 min".
    pub summary: String,
    pub now: Observation,
    /// One entry per lead.
    pub entries: Vec<ForecastEntry>,
    pub next_hour: Outlook,
    pub two_hours: Outlook,
}

fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some((v * 1000.0).round() / 1000.0)
}

fn outlook(p: &PointForecast, threshold: f32, minutes: u32) -> Outlook {
    let steps = p.steps.iter().filter(|s| s.lead_min <= minutes);
    let (mut max_r, mut max_p, mut starts) = (None::<f32>, None::<f32>, None);
    for s in steps {
        if s.rate_mm_h.is_finite() {
            max_r = Some(max_r.map_or(s.rate_mm_h, |m| m.max(s.rate_mm_h)));
            if starts.is_none() && s.rate_mm_h >= threshold {
                starts = Some(s.lead_min);
            }
        }
        if s.probability.is_finite() {
            max_p = Some(max_p.map_or(s.probability, |m| m.max(s.probability)));
        }
    }
    Outlook {
        minutes,
        max_intensity_mm_h: max_r.and_then(finite),
        max_probability: max_p.and_then(finite),
        rain_starts_in_min: starts,
    }
}

fn check_range(name: &str, v: f64, max: f64) -> Result<(), ApiError> {
    if !(v.is_finite() && v.abs() <= max) {
        return Err(ApiError::bad_request(
            "out_of_range",
            format!(
                "{name} must be between -{max} and {max}, got {}",
                raincast_algorithms::scan::short_number(v)
            ),
        ));
    }
    Ok(())
}

/// The point forecast at a lon/lat from the covering radar whose site is
/// nearest (or from `radar` when given): the radar, its nowcast and the
/// forecast at the point. 404 for an unknown radar, 422 outside every
/// radar's coverage, 503 while no radar has a nowcast.
pub(crate) async fn point_forecast(
    s: &AppState,
    lon: f64,
    lat: f64,
    radar: Option<&str>,
) -> Result<(crate::state::RadarInfo, Arc<LatestNowcast>, PointForecast), ApiError> {
    let candidates: Vec<_> = match radar {
        Some(id) => vec![s.radar(id)?.clone()],
        None => s.radars().to_vec(),
    };
    let mut best: Option<(
        f64,
        crate::state::RadarInfo,
        Arc<LatestNowcast>,
        PointForecast,
    )> = None;
    // A radar without a nowcast has no known coverage: it only matters when
    // no radar has one (then the answer is "not yet", not "not covered").
    let mut unavailable = None;
    let mut any_nowcast = false;
    for r in candidates {
        let n = match current_nowcast(s, &r.id).await {
            Ok(n) => n,
            Err(e) => {
                unavailable = Some(e);
                continue;
            }
        };
        any_nowcast = true;
        let Some(p) = n.point(lon, lat) else {
            continue;
        };
        let d = r
            .location
            .map(|(rlon, rlat)| (rlon - lon).powi(2) + (rlat - lat).powi(2))
            .unwrap_or(f64::MAX);
        if best.as_ref().is_none_or(|b| d < b.0) {
            best = Some((d, r, n, p));
        }
    }
    match best {
        Some((_, radar, n, p)) => Ok((radar, n, p)),
        None => Err(match unavailable {
            Some(e) if !any_nowcast => e,
            _ => ApiError::Unprocessable {
                code: "out_of_coverage",
                detail: match radar {
                    Some(id) => format!(
                        "radar {} does not cover lat {lat} lon {lon}; leave `radar` out to use any radar",
                        crate::state::truncate(id, 64)
                    ),
                    None => format!("no radar covers lat {lat} lon {lon}"),
                },
            },
        }),
    }
}

/// The forecast for the next two hours at a point, one entry per nowcast
/// lead, with a summary sentence (minute-by-minute style). Where several
/// radars see the point (and no `radar` is given), it comes from the
/// mosaic of those radars, named in `radars`.
#[utoipa::path(get, path = "/v1/forecast", tag = "nowcast",
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast", body = Forecast),
        (status = 400, description = "Missing, non-numeric or out-of-range lat/lon", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No radar covers the point", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_forecast(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ForecastQuery>,
) -> Result<Json<Forecast>, ApiError> {
    check_range("lat", q.lat, 90.0)?;
    check_range("lon", q.lon, 180.0)?;
    let (radar, n, p) = point_forecast(&s, q.lon, q.lat, q.radar.as_deref()).await?;
    if q.radar.is_none() {
        if let Some(f) = mosaic_forecast(&s, q.lon, q.lat, &n).await {
            return Ok(Json(f));
        }
    }
    let latest = s
        .nowcasts()
        .latest_scan_seen(&radar.id)
        .unwrap_or(n.base_time)
        .max(n.base_time);
    let head = Head {
        radar: RadarRef {
            id: radar.id.clone(),
            name: radar.name.clone(),
        },
        radars: vec![MosaicRadarRef {
            id: radar.id.clone(),
            name: radar.name.clone(),
            weight: 1.0,
        }],
        mosaic: false,
        issued_at: n.base_time,
        latest_scan_time: latest,
        step_minutes: n.step_s as f64 / 60.0,
        threshold_mm_h: n.threshold_mm_h,
    };
    let calibrated = |_: usize, lead: u32| n.lead_index(lead).is_some_and(|i| n.is_calibrated(i));
    Ok(Json(assemble(&s, q.lon, q.lat, head, &p, calibrated)))
}

/// What a forecast says about where it comes from.
struct Head {
    radar: RadarRef,
    radars: Vec<MosaicRadarRef>,
    mosaic: bool,
    issued_at: DateTime<Utc>,
    latest_scan_time: DateTime<Utc>,
    step_minutes: f64,
    threshold_mm_h: f32,
}

/// The forecast document of a point forecast; `calibrated(k, lead)` tells
/// whether step `k`'s probability is calibrated.
fn assemble(
    s: &AppState,
    lon: f64,
    lat: f64,
    head: Head,
    p: &PointForecast,
    calibrated: impl Fn(usize, u32) -> bool,
) -> Forecast {
    let recent = s.nowcasts().recent_skill(&head.radar.id);
    let threshold = head.threshold_mm_h;
    Forecast {
        location: LonLat { lon, lat },
        radar: head.radar,
        radars: head.radars,
        mosaic: head.mosaic,
        issued_at: head.issued_at,
        latest_scan_time: head.latest_scan_time,
        step_minutes: head.step_minutes,
        threshold_mm_h: threshold,
        summary: p.summary.clone(),
        now: Observation {
            time: head.issued_at,
            intensity_mm_h: finite(p.now_mm_h),
            intensity: Intensity::of_known(p.now_mm_h),
        },
        entries: p
            .steps
            .iter()
            .enumerate()
            .map(|(k, st)| ForecastEntry {
                time: st.time,
                lead_min: st.lead_min,
                intensity_mm_h: finite(st.rate_mm_h),
                probability: finite(st.probability),
                probability_calibrated: calibrated(k, st.lead_min),
                intensity: Intensity::of_known(st.rate_mm_h),
                recent_csi: recent
                    .as_ref()
                    .and_then(|r| r.raincast_csi_1mm_h(st.lead_min)),
            })
            .collect(),
        next_hour: outlook(p, threshold, 60),
        two_hours: outlook(p, threshold, 120),
    }
}

/// The forecast from the mosaic where more than one radar sees the place
/// (in the latest observation or the first forecast frame); `None` where
/// one radar or none does, or without a mosaic.
async fn mosaic_forecast(
    s: &AppState,
    lon: f64,
    lat: f64,
    single: &LatestNowcast,
) -> Option<Forecast> {
    let m = s.mosaic().await.ok()?;
    let mp = m.point(lon, lat)?;
    if mp.radars.len() < 2 {
        return None;
    }
    let name_of = |id: &str| {
        s.radars()
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| id.to_string(), |r| r.name.clone())
    };
    let (top, _) = mp.radars[0].clone();
    let steps: Vec<raincast_nowcast::PointStep> = mp
        .steps
        .iter()
        .map(|(lead, time, rate, prob)| raincast_nowcast::PointStep {
            lead_min: *lead,
            time: *time,
            rate_mm_h: *rate,
            probability: *prob,
        })
        .collect();
    let leads: Vec<u32> = steps.iter().map(|st| st.lead_min).collect();
    let rates: Vec<f32> = steps.iter().map(|st| st.rate_mm_h).collect();
    let probs: Vec<f32> = steps.iter().map(|st| st.probability).collect();
    let p = PointForecast {
        row: 0,
        col: 0,
        now_mm_h: mp.now_mm_h,
        summary: raincast_algorithms::nowcast::summary_text(mp.now_mm_h, &leads, &rates, &probs),
        steps,
    };
    // A lead's probability is calibrated when every radar's lead valid in
    // that frame is.
    let calibrated = |k: usize, _: u32| {
        m.nowcast.get(k).is_some_and(|f| {
            f.layers.iter().all(|l| {
                l.nowcast()
                    .zip(l.lead_index())
                    .is_some_and(|(n, i)| n.is_calibrated(i))
            })
        })
    };
    let latest = m
        .radars
        .iter()
        .filter_map(|r| s.nowcasts().latest_scan_seen(&r.id))
        .max()
        .unwrap_or(m.issued)
        .max(m.issued);
    let head = Head {
        radar: RadarRef {
            name: name_of(&top),
            id: top,
        },
        radars: mp
            .radars
            .iter()
            .map(|(id, w)| MosaicRadarRef {
                id: id.clone(),
                name: name_of(id),
                weight: (w * 1000.0).round() / 1000.0,
            })
            .collect(),
        mosaic: true,
        issued_at: m.issued,
        latest_scan_time: latest,
        step_minutes: m.step_s as f64 / 60.0,
        threshold_mm_h: single.threshold_mm_h,
    };
    Some(assemble(s, lon, lat, head, &p, calibrated))
}

/// One band of the colour scale.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScaleBand {
    /// Lower bound, mm/h (inclusive).
    pub min_mm_h: f32,
    /// Upper bound, mm/h (exclusive); `null` for the top band.
    pub max_mm_h: Option<f32>,
    /// `#rrggbb`.
    pub color: String,
    /// Red, green, blue, alpha (0..255).
    pub rgba: [u8; 4],
    pub label: String,
}

/// The colour scale of every PNG frame and animation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColourScale {
    /// Always `mm/h`.
    pub units: String,
    pub bands: Vec<ScaleBand>,
    /// Below the first band (fully transparent in PNGs).
    pub no_rain_rgba: [u8; 4],
    /// No data / outside coverage (semi-transparent grey in PNGs, hatched in GIFs).
    pub no_data_rgba: [u8; 4],
}

/// The rain colour scale (bands in mm/h and their colours).
#[utoipa::path(get, path = "/v1/colour-scale", tag = "nowcast",
    responses((status = 200, description = "The colour scale", body = ColourScale)))]
async fn colour_scale() -> Json<ColourScale> {
    let bands = RAIN_SCALE
        .iter()
        .enumerate()
        .map(|(i, b)| ScaleBand {
            min_mm_h: b.min_mm_h,
            max_mm_h: RAIN_SCALE.get(i + 1).map(|n| n.min_mm_h),
            color: format!("#{:02x}{:02x}{:02x}", b.rgba[0], b.rgba[1], b.rgba[2]),
            rgba: b.rgba,
            label: b.label.to_string(),
        })
        .collect();
    Json(ColourScale {
        units: "mm/h".into(),
        bands,
        no_rain_rgba: NO_RAIN_RGBA,
        no_data_rgba: NO_DATA_RGBA,
    })
}
