//! `GET /forecast/{key}/{lat},{lon}`: the Dark Sky (and Pirate Weather)
//! forecast request, answered from radar: `currently` and a 61-minute
//! `minutely` block. Blocks that a radar cannot fill (`hourly`, `daily`,
//! `alerts`) are left out, as Dark Sky does for data it does not have.
//!
//! Minute values are interpolated linearly in time between the nowcast's
//! leads (the observation at the issue time counts as lead 0).
//! `precipIntensityError` is the standard deviation of the forecast rate
//! over the same neighbourhood whose fraction of wet cells gives
//! `precipProbability`: the spread of the places the rain could be, given
//! the growing uncertainty of its position.

use crate::auth::KeyRefusal;
use crate::error::ApiError;
use crate::routes::forecast::point_forecast;
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Offset, TimeZone, Timelike, Utc};
use ndarray::Array2;
use raincast_algorithms::nowcast::Intensity;
use raincast_nowcast::{LatestNowcast, PointForecast};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(darksky_forecast))
}

/// Entries of the `minutely` block: now and every minute for an hour.
pub const MINUTES: usize = 61;
const MM_PER_INCH: f32 = 25.4;

/// Unit systems of the `units` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    Si,
    Us,
    Ca,
    Uk,
}

impl Units {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "si" => Some(Units::Si),
            "us" => Some(Units::Us),
            "ca" => Some(Units::Ca),
            // Dark Sky called it `uk2`; accept both.
            "uk" | "uk2" => Some(Units::Uk),
            _ => None,
        }
    }

    /// Dark Sky's `auto`: the units of the location's country, told here by
    /// its time zone (US zones → `us`, Canadian → `ca`, Europe/London → `uk`,
    /// anywhere else `si`).
    fn auto(tz: &str) -> Self {
        const CANADA: &[&str] = &[
            "America/Toronto",
            "America/Vancouver",
            "America/Edmonton",
            "America/Winnipeg",
            "America/Halifax",
            "America/St_Johns",
            "America/Regina",
            "America/Moncton",
            "America/Glace_Bay",
            "America/Goose_Bay",
            "America/Whitehorse",
            "America/Dawson",
            "America/Dawson_Creek",
            "America/Fort_Nelson",
            "America/Creston",
            "America/Yellowknife",
            "America/Inuvik",
            "America/Iqaluit",
            "America/Rankin_Inlet",
            "America/Resolute",
            "America/Cambridge_Bay",
            "America/Swift_Current",
            "America/Atikokan",
            "America/Blanc-Sablon",
        ];
        const US: &[&str] = &[
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Los_Angeles",
            "America/Phoenix",
            "America/Anchorage",
            "America/Adak",
            "America/Boise",
            "America/Detroit",
            "America/Juneau",
            "America/Sitka",
            "America/Yakutat",
            "America/Nome",
            "America/Metlakatla",
            "America/Menominee",
            "Pacific/Honolulu",
        ];
        if tz == "Europe/London" {
            Units::Uk
        } else if CANADA.contains(&tz) {
            Units::Ca
        } else if US.contains(&tz)
            || tz.starts_with("America/Indiana/")
            || tz.starts_with("America/Kentucky/")
            || tz.starts_with("America/North_Dakota/")
        {
            Units::Us
        } else {
            Units::Si
        }
    }

    fn name(self) -> &'static str {
        match self {
            Units::Si => "si",
            Units::Us => "us",
            Units::Ca => "ca",
            Units::Uk => "uk",
        }
    }

    /// A rate in mm/h in these units (in/h for `us`).
    fn rate(self, mm_h: f32) -> f32 {
        match self {
            Units::Us => mm_h / MM_PER_INCH,
            _ => mm_h,
        }
    }
}

/// Dark Sky's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct DarkSkyError {
    /// The HTTP status.
    pub code: u16,
    /// What is wrong.
    pub error: String,
}

fn ds_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        Json(DarkSkyError {
            code: status.as_u16(),
            error: msg.into(),
        }),
    )
        .into_response()
}

/// Renders an API error in Dark Sky's shape, keeping its status and
/// `Retry-After`; internal details stay in the log, as for every error.
fn ds_from_api(e: ApiError) -> Response {
    let status = e.status();
    let problem = e.problem();
    let retry = match &e {
        ApiError::Unavailable { retry_after_s, .. }
        | ApiError::TooManyRequests { retry_after_s } => Some(*retry_after_s),
        _ => None,
    };
    if let ApiError::Internal(msg) = &e {
        tracing::error!(error = %msg, "internal error");
    }
    let mut resp = ds_error(status, problem.detail);
    if let Some(s) = retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// One data point of `currently` or `minutely.data`. A property whose value
/// is unknown (the rain would come from outside the radar's view) is left
/// out, as Dark Sky does for unavailable data.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataPoint {
    /// UNIX time, seconds.
    pub time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'static str>,
    /// Rain rate: mm/h (`si`, `ca`, `uk`) or in/h (`us`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precip_intensity: Option<f32>,
    /// Standard deviation of `precipIntensity`, same units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precip_intensity_error: Option<f32>,
    /// Probability of precipitation (≥ the nowcast's threshold, 0.1 mm/h by default), 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precip_probability: Option<f32>,
    /// `rain` when `precipIntensity` > 0 (a radar does not tell rain from snow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precip_type: Option<&'static str>,
}

/// The `minutely` block.
#[derive(Debug, Serialize, ToSchema)]
pub struct Minutely {
    pub summary: String,
    pub icon: &'static str,
    /// 61 points, one a minute from the current minute.
    pub data: Vec<DataPoint>,
}

/// The `flags` block.
#[derive(Debug, Serialize, ToSchema)]
pub struct Flags {
    /// The radars used.
    pub sources: Vec<String>,
    /// Issue time of each source's nowcast, `YYYY-MM-DD HH:MMZ`.
    #[serde(rename = "sourceTimes")]
    pub source_times: std::collections::BTreeMap<String, String>,
    pub units: &'static str,
    /// Raincast's version.
    pub version: String,
    /// Set, as Dark Sky set it, when the data cannot answer for now: the
    /// newest nowcast no longer covers this time (its radar's scans are
    /// late or stopped). `currently` then says "Unknown precipitation" and
    /// `minutely` is left out.
    #[serde(
        rename = "darksky-unavailable",
        skip_serializing_if = "Option::is_none"
    )]
    pub unavailable: Option<String>,
}

/// A Dark Sky forecast response (only the blocks a radar can fill).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "latitude": 47.1, "longitude": 8.1, "timezone": "Europe/Zurich", "offset": 1.0,
    "currently": {"time": 1718532000, "summary": "Light Rain", "icon": "rain", "precipIntensity": 0.047,
                  "precipIntensityError": 0.02, "precipProbability": 0.8, "precipType": "rain"},
    "minutely": {"summary": "Light rain stopping in 25 min.", "icon": "rain",
                 "data": [{"time": 1718532000, "precipIntensity": 0.047, "precipIntensityError": 0.02,
                           "precipProbability": 0.8, "precipType": "rain"}]},
    "flags": {"sources": ["demo"], "sourceTimes": {"demo": "2024-06-16 09:55Z"}, "units": "us", "version": "0.1.0"}
}))]
pub struct DarkSkyResponse {
    pub latitude: f64,
    pub longitude: f64,
    /// IANA time zone of the location.
    pub timezone: String,
    /// Its offset from UTC now, hours.
    pub offset: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currently: Option<DataPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutely: Option<Minutely>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Flags>,
}

/// The query parameters Raincast reads; others (`lang`, `extend`, …) are
/// ignored, as Dark Sky did.
#[derive(Debug, Default, serde::Deserialize)]
struct RawParams {
    units: Option<String>,
    exclude: Option<String>,
}

/// Parsed `?units=&exclude=` (units `None` = `auto`).
fn parse_query(raw: Option<&str>) -> Result<(Option<Units>, Vec<String>), String> {
    let q: RawParams = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| format!("the query string is malformed: {e}"))?;
    let units =
        match q.units.as_deref() {
            None => Some(Units::Us),
            Some("auto") => None,
            Some(v) => Some(Units::parse(v).ok_or_else(|| {
                format!("units must be si, us, ca, uk or auto, got {:?}", trunc(v))
            })?),
        };
    let exclude = q
        .exclude
        .unwrap_or_default()
        .split(',')
        .map(|b| b.trim().to_ascii_lowercase())
        .filter(|b| !b.is_empty())
        .collect();
    Ok((units, exclude))
}

fn trunc(s: &str) -> String {
    crate::state::truncate(s, 40)
}

/// `lat,lon` of the path; a third part (a time: Dark Sky's "time machine")
/// is not supported.
fn parse_location(s: &str) -> Result<(f64, f64), String> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() == 3 && !parts[2].trim().is_empty() {
        return Err("time machine requests (a time after the location) are not supported".into());
    }
    let [lat, lon] = parts[..] else {
        return Err(format!("the location must be LAT,LON, got {:?}", trunc(s)));
    };
    let num = |name: &str, v: &str, max: f64| -> Result<f64, String> {
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x.abs() <= max => Ok(x),
            _ => Err(format!(
                "the given location is invalid: {name} must be a number between -{max} and {max}, got {:?}",
                trunc(v)
            )),
        }
    };
    Ok((num("latitude", lat, 90.0)?, num("longitude", lon, 180.0)?))
}

/// IANA time zone at a location (the finder is built on first use:
/// it holds the zone boundaries in memory).
fn time_zone(lon: f64, lat: f64) -> String {
    static FINDER: OnceLock<tzf_rs::DefaultFinder> = OnceLock::new();
    let name = FINDER
        .get_or_init(tzf_rs::DefaultFinder::new)
        .get_tz_name(lon, lat);
    if name.is_empty() {
        "Etc/UTC".to_string()
    } else {
        name.to_string()
    }
}

/// Offset of `tz` from UTC at `t`, hours (0 for a name chrono-tz lacks).
fn offset_hours(tz: &str, t: DateTime<Utc>) -> f64 {
    tz.parse::<chrono_tz::Tz>()
        .map(|z| {
            z.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc() as f64
                / 3600.0
        })
        .unwrap_or(0.0)
}

/// Sun above the horizon at `t`? (Solar elevation from the day of year and
/// hour angle, the usual low-precision formulae; good to a few minutes at
/// sunrise and sunset, which is all an icon needs.)
fn daylight(lon: f64, lat: f64, t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    let day = t.ordinal() as f64;
    let hours = t.hour() as f64 + t.minute() as f64 / 60.0;
    let decl = (-23.44f64).to_radians() * ((360.0 / 365.0) * (day + 10.0)).to_radians().cos();
    let hour_angle = ((hours - 12.0) * 15.0 + lon).to_radians();
    let phi = lat.to_radians();
    let sin_elev = phi.sin() * decl.sin() + phi.cos() * decl.cos() * hour_angle.cos();
    // −0.833°: refraction and the sun's radius, as sunrise tables use.
    sin_elev > (-0.833f64).to_radians().sin()
}

/// Value, standard deviation and probability at one lead (or at lead 0,
/// the observation), mm/h. NaN = unknown.
#[derive(Clone, Copy)]
struct Sample {
    min: f64,
    rate: f32,
    error: f32,
    prob: f32,
}

/// Standard deviation of the known values of `f` in the square window of
/// half-width `radius` around `(row, col)`; NaN when none is known.
fn window_std(f: &Array2<f32>, row: usize, col: usize, radius: usize) -> f32 {
    let (rows, cols) = f.dim();
    let (r0, r1) = (row.saturating_sub(radius), (row + radius).min(rows - 1));
    let (c0, c1) = (col.saturating_sub(radius), (col + radius).min(cols - 1));
    let (mut n, mut sum, mut sum2) = (0u32, 0f64, 0f64);
    for r in r0..=r1 {
        for &v in f.slice(ndarray::s![r, c0..=c1]) {
            if v.is_finite() {
                n += 1;
                sum += v as f64;
                sum2 += (v as f64) * (v as f64);
            }
        }
    }
    if n == 0 {
        return f32::NAN;
    }
    let mean = sum / n as f64;
    ((sum2 / n as f64 - mean * mean).max(0.0)).sqrt() as f32
}

/// The neighbourhood spread of every lead at the point's cell (see
/// [`window_std`]), from [`AppState::spread_cache`] when this nowcast was
/// asked about this cell before.
fn spreads(s: &AppState, n: &LatestNowcast, p: &PointForecast) -> Arc<[f32]> {
    let key = format!(
        "{}/{}/{}/{}/{}",
        n.radar,
        n.base_time.timestamp_millis(),
        n.created_at.timestamp_nanos_opt().unwrap_or_default(),
        p.row,
        p.col
    );
    if let Some(v) = s.spread_cache().get(&key) {
        return v;
    }
    let cfg = &s.nowcasts().settings().config;
    let v: Arc<[f32]> = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let radius = cfg.prob_radius_cells(&n.grid, st.lead_min);
            window_std(&n.rate_mm_h[i], p.row, p.col, radius)
        })
        .collect();
    s.spread_cache().insert(key, v.clone());
    v
}

fn samples(s: &AppState, n: &LatestNowcast, p: &PointForecast) -> Vec<Sample> {
    let now_known = p.now_mm_h.is_finite();
    let spread = spreads(s, n, p);
    let mut out = Vec::with_capacity(p.steps.len() + 1);
    out.push(Sample {
        min: 0.0,
        rate: p.now_mm_h,
        error: if now_known { 0.0 } else { f32::NAN },
        prob: if now_known {
            f32::from(p.now_mm_h >= n.threshold_mm_h)
        } else {
            f32::NAN
        },
    });
    for (st, &error) in p.steps.iter().zip(spread.iter()) {
        out.push(Sample {
            min: st.lead_min as f64,
            rate: st.rate_mm_h,
            error,
            prob: st.probability,
        });
    }
    out
}

/// The sample at `min` minutes after the issue time, interpolated linearly;
/// `None` past the last lead.
fn at(samples: &[Sample], min: f64) -> Option<Sample> {
    let k = samples.iter().position(|s| s.min >= min)?;
    if k == 0 || samples[k].min == min {
        return Some(samples[k]);
    }
    let (a, b) = (samples[k - 1], samples[k]);
    let w = ((min - a.min) / (b.min - a.min)) as f32;
    let lerp = |x: f32, y: f32| x + (y - x) * w;
    Some(Sample {
        min,
        rate: lerp(a.rate, b.rate),
        error: lerp(a.error, b.error),
        prob: lerp(a.prob, b.prob),
    })
}

fn round(v: f32, digits: i32) -> f32 {
    let m = 10f32.powi(digits);
    (v * m).round() / m
}

fn point(time: DateTime<Utc>, s: Sample, units: Units) -> DataPoint {
    let known = |v: f32| v.is_finite().then_some(v);
    let rate = known(s.rate).map(|r| round(units.rate(r.max(0.0)), 4));
    DataPoint {
        time: time.timestamp(),
        summary: None,
        icon: None,
        precip_intensity: rate,
        // Without a known intensity its error and probability say nothing.
        precip_intensity_error: rate.and(known(s.error)).map(|e| round(units.rate(e), 4)),
        precip_probability: rate.and(known(s.prob)).map(|p| round(p.clamp(0.0, 1.0), 2)),
        precip_type: rate.filter(|r| *r > 0.0).map(|_| "rain"),
    }
}

/// "Light rain", "Heavy rain", … for a rate in mm/h.
fn rain_words(mm_h: f32) -> &'static str {
    match Intensity::of_rain(mm_h) {
        Intensity::Heavy => "Heavy rain",
        Intensity::Moderate => "Rain",
        _ => "Light rain",
    }
}

/// `currently`'s summary and icon for a rate (mm/h, NaN unknown). Unknown
/// (the nowcast has no data here now): neither rain nor "No precipitation"
/// is claimed, and no icon is sent.
fn current_words(
    rate: f32,
    threshold: f32,
    clear: &'static str,
) -> (&'static str, Option<&'static str>) {
    if !rate.is_finite() {
        ("Unknown precipitation", None)
    } else if rate >= threshold {
        (rain_words(rate), Some("rain"))
    } else {
        ("No precipitation", Some(clear))
    }
}

/// The hour's summary, from the minute rates (mm/h, NaN unknown).
fn hour_summary(rates: &[f32], threshold: f32) -> String {
    let wet = |r: &f32| r.is_finite() && *r >= threshold;
    let peak = rates
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .fold(0f32, f32::max);
    let first_wet = rates.iter().position(wet);
    let now_wet = rates.first().is_some_and(wet);
    match (now_wet, first_wet) {
        (false, None) if rates.iter().all(|r| r.is_finite()) => {
            "No precipitation for the hour.".into()
        }
        (false, None) => "No precipitation expected where the radar can see.".into(),
        (false, Some(m)) => format!("{} starting in {m} min.", rain_words(peak)),
        // Raining now: until it stops, or until the forecast is unknown
        // (nothing is claimed past the last known minute).
        (true, _) => match rates.iter().position(|r| !wet(r)) {
            Some(m) if rates[m].is_finite() => {
                format!("{} stopping in {m} min.", rain_words(peak))
            }
            Some(m) => format!("{} for at least {m} min; unknown after.", rain_words(peak)),
            None => format!("{} for the hour.", rain_words(peak)),
        },
    }
}

/// The forecast at a location in the Dark Sky / Pirate Weather schema: `currently`
/// and a 61-minute `minutely` block from radar.
///
/// `key` is an API key (see `raincast keys create`). Units: `us` (default, in/h),
/// `si`, `ca`, `uk` (mm/h). `exclude` is a comma list of blocks to leave out.
/// Blocks a radar cannot fill (`hourly`, `daily`, `alerts`) are never sent.
/// Errors use Dark Sky's shape `{"code", "error"}`.
#[utoipa::path(get, path = "/forecast/{key}/{location}", tag = "compatible",
    params(
        ("key" = String, Path, description = "API key"),
        ("location" = String, Path, description = "`LAT,LON` in degrees, e.g. `47.1,8.1`"),
        ("units" = Option<String>, Query, description = "`us` (default), `si`, `ca`, `uk` (also `uk2`), or `auto` (by the location's country, told by its time zone)"),
        ("exclude" = Option<String>, Query, description = "Comma list of blocks to leave out: `currently`, `minutely`, `flags` (`hourly`, `daily`, `alerts` are never sent)"),
    ),
    responses(
        (status = 200, description = "The forecast", body = DarkSkyResponse),
        (status = 400, description = "Invalid location or parameter, or a location outside every radar's coverage", body = DarkSkyError),
        (status = 401, description = "Missing, unknown or revoked key", body = DarkSkyError),
        (status = 429, description = "Past the key's rate limit (see `Retry-After`)", body = DarkSkyError),
        (status = 503, description = "No nowcast yet, or the store is unreachable", body = DarkSkyError),
    ))]
async fn darksky_forecast(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    // Dark Sky's error shape here too (axum's own rejection is plain text),
    // and nothing of the path echoed: it holds the key.
    let Ok(Path((key, location))) = path else {
        return ds_error(
            StatusCode::BAD_REQUEST,
            "the key or the location in the path cannot be read (percent-encoded bytes that are \
             not UTF-8 text)",
        );
    };
    match answer(&s, &key, &location, query.as_deref()).await {
        Ok(r) => {
            // One buffer sized for the usual 6 KB answer (axum's `Json`
            // grows from 128 bytes, copying as it goes).
            let mut body = Vec::with_capacity(8 * 1024);
            if let Err(e) = serde_json::to_writer(&mut body, &r) {
                return ds_from_api(ApiError::Internal(format!("serialising the forecast: {e}")));
            }
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, max-age=60"),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(resp) => resp,
    }
}

async fn answer(
    s: &AppState,
    key: &str,
    location: &str,
    query: Option<&str>,
) -> Result<DarkSkyResponse, Response> {
    s.keys().check(key).await.map_err(|r| match r {
        KeyRefusal::Unavailable(e) => ds_from_api(e),
        // This endpoint takes its key in the path, as Dark Sky's did.
        KeyRefusal::Missing => ds_error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs an API key in its path: /forecast/{KEY}/{LAT},{LON} \
             (an operator creates keys with `raincast keys create`)",
        ),
        r => ds_from_api(ApiError::from(r)),
    })?;
    let (lat, lon) = parse_location(location).map_err(|m| ds_error(StatusCode::BAD_REQUEST, m))?;
    let (units, exclude) = parse_query(query).map_err(|m| ds_error(StatusCode::BAD_REQUEST, m))?;
    let (radar, n, p) = match point_forecast(s, lon, lat, None).await {
        Ok(v) => v,
        Err(ApiError::Unprocessable { .. }) => {
            return Err(ds_error(
                StatusCode::BAD_REQUEST,
                format!("the given location ({lat},{lon}) is outside the coverage of every radar"),
            ))
        }
        Err(e) => return Err(ds_from_api(e)),
    };
    let now = s.now();
    let tz = time_zone(lon, lat);
    let units = units.unwrap_or_else(|| Units::auto(&tz));
    let wants = |block: &str| !exclude.iter().any(|b| b == block);
    let samples = samples(s, &n, &p);
    // Minute 0 is the current minute.
    let minute0 = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let since_issue = |t: DateTime<Utc>| (t - n.base_time).num_milliseconds() as f64 / 60_000.0;
    let day = daylight(lon, lat, now);
    let clear = if day { "clear-day" } else { "clear-night" };

    let current = at(&samples, since_issue(now).max(0.0));
    // A nowcast too old for now: `currently` is unknown, never the old rain.
    let unavailable = current.is_none().then(|| {
        format!(
            "the newest nowcast of radar {} (issued {}) does not reach the present: its scans are late or stopped",
            radar.id,
            n.base_time.format("%Y-%m-%d %H:%MZ")
        )
    });
    let currently = Some(match current {
        Some(smp) => {
            let mut dp = point(now, smp, units);
            let (summary, icon) = current_words(smp.rate, n.threshold_mm_h, clear);
            (dp.summary, dp.icon) = (Some(summary.into()), icon);
            dp
        }
        None => DataPoint {
            time: now.timestamp(),
            summary: Some("Unknown precipitation".into()),
            icon: None,
            precip_intensity: None,
            precip_intensity_error: None,
            precip_probability: None,
            precip_type: None,
        },
    });
    let minute_samples: Option<Vec<(DateTime<Utc>, Sample)>> = (0..MINUTES)
        .map(|m| {
            let t = minute0 + chrono::Duration::minutes(m as i64);
            at(&samples, since_issue(t).max(0.0)).map(|smp| (t, smp))
        })
        .collect();
    // A nowcast too old to cover the coming hour leaves `minutely` out
    // rather than padding it.
    let minutely = minute_samples.map(|ms| {
        let rates: Vec<f32> = ms.iter().map(|(_, smp)| smp.rate).collect();
        let summary = hour_summary(&rates, n.threshold_mm_h);
        let any_rain = rates
            .iter()
            .any(|r| r.is_finite() && *r >= n.threshold_mm_h);
        Minutely {
            summary,
            icon: if any_rain { "rain" } else { clear },
            data: ms
                .into_iter()
                .map(|(t, smp)| point(t, smp, units))
                .collect(),
        }
    });
    let source_times = [(
        radar.id.clone(),
        n.base_time.format("%Y-%m-%d %H:%MZ").to_string(),
    )]
    .into_iter()
    .collect();
    Ok(DarkSkyResponse {
        latitude: lat,
        longitude: lon,
        offset: offset_hours(&tz, now),
        timezone: tz,
        currently: currently.filter(|_| wants("currently")),
        minutely: minutely.filter(|_| wants("minutely")),
        flags: wants("flags").then(|| Flags {
            sources: vec![radar.id.clone()],
            source_times,
            units: units.name(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            unavailable,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_queries_parse_or_name_the_problem() {
        assert_eq!(parse_location("47.1,8.25"), Ok((47.1, 8.25)));
        assert!(parse_location("91,0")
            .expect_err("refused")
            .contains("latitude"));
        assert!(parse_location("0,181")
            .expect_err("refused")
            .contains("longitude"));
        assert!(parse_location("a,b")
            .expect_err("refused")
            .contains("latitude"));
        assert!(parse_location("1,2,1600000000")
            .expect_err("refused")
            .contains("time machine"));
        assert!(parse_location("1")
            .expect_err("refused")
            .contains("LAT,LON"));
        // A trailing comma is a malformed location, not a time.
        assert!(parse_location("47.37,8.54,")
            .expect_err("refused")
            .contains("LAT,LON"));
        assert_eq!(parse_query(None), Ok((Some(Units::Us), vec![])));
        assert_eq!(parse_query(Some("units=auto")), Ok((None, vec![])));
        assert_eq!(Units::auto("Europe/London"), Units::Uk);
        assert_eq!(Units::auto("America/Indiana/Knox"), Units::Us);
        assert_eq!(Units::auto("America/Toronto"), Units::Ca);
        assert_eq!(Units::auto("Europe/Zurich"), Units::Si);
        assert_eq!(Units::auto("America/Mexico_City"), Units::Si);
        let (u, ex) =
            parse_query(Some("units=si&exclude=minutely%2Cflags&lang=en")).expect("query");
        assert_eq!(u, Some(Units::Si));
        assert_eq!(ex, vec!["minutely", "flags"]);
        assert_eq!(
            parse_query(Some("units=uk2")).expect("uk2").0,
            Some(Units::Uk)
        );
        assert!(parse_query(Some("units=metric"))
            .expect_err("refused")
            .contains("units"));
        assert!(parse_query(Some("units=a%2"))
            .expect_err("refused")
            .contains("a%2"));
    }

    #[test]
    fn interpolation_between_leads_and_past_the_last() {
        let s = [
            Sample {
                min: 0.0,
                rate: 0.0,
                error: 0.0,
                prob: 0.0,
            },
            Sample {
                min: 10.0,
                rate: 2.0,
                error: 1.0,
                prob: 1.0,
            },
            Sample {
                min: 20.0,
                rate: f32::NAN,
                error: f32::NAN,
                prob: f32::NAN,
            },
        ];
        let m5 = at(&s, 5.0).expect("inside");
        assert_eq!((m5.rate, m5.error, m5.prob), (1.0, 0.5, 0.5));
        assert_eq!(at(&s, 10.0).expect("on a lead").rate, 2.0);
        assert!(
            at(&s, 15.0).expect("inside").rate.is_nan(),
            "unknown stays unknown"
        );
        assert!(at(&s, 20.5).is_none());
    }

    #[test]
    fn units_summaries_and_window_spread() {
        assert!((Units::Us.rate(25.4) - 1.0).abs() < 1e-6);
        assert_eq!(Units::Ca.rate(3.0), 3.0);
        let dp = point(
            Utc::now(),
            Sample {
                min: 0.0,
                rate: 0.0,
                error: 0.0,
                prob: 0.0,
            },
            Units::Si,
        );
        assert_eq!(dp.precip_type, None, "no type without precipitation");
        let mut rates = vec![0.0f32; 61];
        assert_eq!(hour_summary(&rates, 0.1), "No precipitation for the hour.");
        rates[12..].fill(1.0);
        assert_eq!(hour_summary(&rates, 0.1), "Light rain starting in 12 min.");
        let stops: Vec<f32> = (0..61).map(|m| if m < 20 { 12.0 } else { 0.0 }).collect();
        assert_eq!(hour_summary(&stops, 0.1), "Heavy rain stopping in 20 min.");
        assert_eq!(current_words(6.4, 0.1, "clear-day"), ("Rain", Some("rain")));
        assert_eq!(
            current_words(0.0, 0.1, "clear-day"),
            ("No precipitation", Some("clear-day"))
        );
        assert_eq!(
            current_words(f32::NAN, 0.1, "clear-day"),
            ("Unknown precipitation", None)
        );
        // Raining now with the rest of the hour unknown: no "for the hour".
        let unknown: Vec<f32> = (0..61)
            .map(|m| if m < 5 { 6.4 } else { f32::NAN })
            .collect();
        assert_eq!(
            hour_summary(&unknown, 0.1),
            "Rain for at least 5 min; unknown after."
        );
        let f = Array2::from_shape_fn((5, 5), |(r, _)| if r < 2 { 2.0 } else { 0.0 });
        assert_eq!(window_std(&f, 2, 2, 0), 0.0);
        let sd = window_std(&f, 2, 2, 2);
        // 10 of 25 cells at 2, the rest 0: mean 0.8, sd sqrt(0.96).
        assert!((sd - 0.96f32.sqrt()).abs() < 1e-5, "{sd}");
    }

    #[test]
    fn day_and_night() {
        let noon = DateTime::parse_from_rfc3339("2024-06-21T12:00:00Z")
            .expect("t")
            .to_utc();
        assert!(daylight(0.0, 51.5, noon));
        assert!(!daylight(180.0, 51.5, noon), "midnight on the other side");
        assert!(!daylight(0.0, -80.0, noon), "polar night in June");
        assert_eq!(time_zone(8.55, 47.37), "Europe/Zurich");
        assert_eq!(offset_hours("Europe/Zurich", noon), 2.0);
    }
}
