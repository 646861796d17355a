//! GIS exports of the latest nowcast: one lead as GeoTIFF
//! (`/v1/radars/{id}/nowcast/{lead}.tif`) and the whole nowcast as CF-1.8
//! netCDF (`/v1/radars/{id}/nowcast.nc`), both on the radar's own grid and
//! projection. The fields are the cached nowcast's (the one nowcast
//! service), encoded by `raincast_algorithms::export` on the CPU pool.

use crate::error::{ApiError, Problem};
use crate::extract::{parse_time, ApiPath, ApiQuery};
use crate::http_cache::{self, CacheInfo};
use crate::routes::nowcast::{check_issued, current_nowcast, lead_index};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use raincast_algorithms::export::{self, BandInfo, ExportError, NowcastFile};
use raincast_nowcast::LatestNowcast;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Media type of the GeoTIFF answers.
pub const GEOTIFF: &str = "image/tiff; application=geotiff";
/// Media type of the netCDF answers.
pub const NETCDF: &str = "application/x-netcdf";

/// The GeoTIFF route has a suffix after its parameter (`{lead}.tif`), which
/// axum's router cannot match: it is served as `{file}` and documented here.
#[derive(OpenApi)]
#[openapi(paths(get_geotiff))]
struct GeoTiffDoc;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(GeoTiffDoc::openapi())
        .route("/v1/radars/{id}/nowcast/{file}", get(get_geotiff))
        .routes(routes!(get_netcdf))
}

/// Which nowcast to export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Issue time of the nowcast (RFC 3339, as `issued_at` in
    /// `/v1/radars/{id}/nowcast`). When it is no longer the latest, the
    /// answer is 410 Gone; without it, the latest nowcast is exported.
    #[param(format = DateTime)]
    pub issued: Option<String>,
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Crs(e) => ApiError::Unprocessable {
            code: "export_unsupported",
            detail: format!("this radar's grid cannot be exported: {e}"),
        },
        other => ApiError::Internal(format!("export: {other}")),
    }
}

/// The nowcast to export: the latest, or a 410 when `issued` names an older one.
async fn nowcast_for(
    s: &AppState,
    id: &str,
    q: &ExportQuery,
) -> Result<(Arc<LatestNowcast>, bool), ApiError> {
    let issued = q
        .issued
        .as_deref()
        .map(|t| parse_time("issued", t))
        .transpose()?;
    let n = current_nowcast(s, id).await?;
    check_issued(&n, issued)?;
    Ok((n, issued.is_some()))
}

fn cache_info(id: &str, n: &LatestNowcast, what: &str, pinned: bool) -> CacheInfo {
    CacheInfo {
        etag: format!("{id}-{}-{what}", n.base_time.timestamp()),
        last_modified: Some(n.created_at),
        // A link with `issued` names one nowcast, whose export never changes.
        max_age_s: if pinned { 86_400 } else { 60 },
    }
}

fn with_filename(mut resp: Response, name: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// The issue time in file names (no colons).
fn file_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One lead of the latest nowcast as a GeoTIFF: Float32 rain rate in mm/h,
/// NaN as no data, the radar's projection (GeoKeys) and geotransform,
/// 256 × 256 tiles (Deflate), with overviews (means of the cells with data).
/// Open it in QGIS or GDAL (`gdalinfo`).
#[utoipa::path(get, path = "/v1/radars/{id}/nowcast/{lead}.tif", tag = "nowcast",
    params(
        ("id" = String, Path, description = "Radar id"),
        ("lead" = u32, Path, description = "Lead time in minutes, one of the nowcast's leads"),
        ExportQuery,
    ),
    responses(
        (status = 200, description = "The lead as GeoTIFF", body = Vec<u8>, content_type = "image/tiff; application=geotiff",
            headers(
                ("ETag" = String, description = "Validator"),
                ("Last-Modified" = String, description = "When the nowcast was made"),
                ("Cache-Control" = String, description = "public, max-age=..."),
                ("Content-Disposition" = String, description = "attachment; filename=..."),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar or lead, or no nowcast issued at `issued` (`nowcast_not_issued`: later than the latest)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "That nowcast has been superseded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The radar's projection cannot be exported", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_geotiff(
    State(s): State<AppState>,
    ApiPath((id, file)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(lead) = file.strip_suffix(".tif") else {
        return Err(ApiError::not_found(
            "no_such_route",
            format!(
                "no route for /v1/radars/{}/nowcast/{}; see /openapi.json",
                crate::state::truncate(&id, 64),
                crate::state::truncate(&file, 64)
            ),
        ));
    };
    s.radar(&id)?;
    let lead = super::nowcast::parse_lead(lead)?;
    let (n, pinned) = nowcast_for(&s, &id, &q).await?;
    let i = lead_index(&n, lead)?;
    let info = cache_info(&id, &n, &format!("{lead}-tif"), pinned);
    let filename = format!("{id}_{}_{lead:03}.tif", file_time(n.base_time));
    if http_cache::is_fresh(&headers, &info) {
        return Ok(http_cache::respond(&headers, &info, GEOTIFF, Body::empty()));
    }
    let key = format!("tif|{}", info.etag);
    let tif = match s.png_cache().get(&key) {
        Some(t) => t,
        None => {
            let nc = n.clone();
            let tif = s
                .cpu(move || {
                    let band = BandInfo {
                        unit: "mm/h".into(),
                        description: format!("rain rate, {lead}-minute nowcast"),
                        items: vec![
                            ("RADAR".into(), nc.radar.clone()),
                            ("FORECAST_REFERENCE_TIME".into(), iso(nc.base_time)),
                            ("VALID_TIME".into(), iso(nc.valid_time(i))),
                            ("LEAD_MINUTES".into(), lead.to_string()),
                        ],
                    };
                    export::encode_geotiff(&nc.grid, nc.rate_mm_h[i].view(), &band)
                        .map_err(export_error)
                })
                .await??;
            let tif: Arc<[u8]> = Arc::from(tif);
            s.png_cache().insert(key, tif.clone());
            tif
        }
    };
    Ok(with_filename(
        http_cache::respond(&headers, &info, GEOTIFF, Body::from(tif.to_vec())),
        &filename,
    ))
}

/// The whole latest nowcast as CF-1.8 netCDF (classic 64-bit offset
/// format): `rainfall_rate(time, y, x)` in `mm h-1` (NaN fill value = no
/// data), `time`, `forecast_period`, `forecast_reference_time` (the issue
/// time), projected `x`/`y` cell centres and a `crs` grid mapping with the
/// radar's projection (CF parameters, `crs_wkt` and the PROJ string).
#[utoipa::path(get, path = "/v1/radars/{id}/nowcast.nc", tag = "nowcast",
    params(("id" = String, Path, description = "Radar id"), ExportQuery),
    responses(
        (status = 200, description = "The nowcast as netCDF", body = Vec<u8>, content_type = "application/x-netcdf",
            headers(
                ("ETag" = String, description = "Validator"),
                ("Last-Modified" = String, description = "When the nowcast was made"),
                ("Cache-Control" = String, description = "public, max-age=..."),
                ("Content-Disposition" = String, description = "attachment; filename=..."),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown radar, or no nowcast issued at `issued` (`nowcast_not_issued`: later than the latest)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "That nowcast has been superseded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The radar's projection cannot be exported", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_netcdf(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let radar_name = s.radar(&id)?.name.clone();
    let (n, pinned) = nowcast_for(&s, &id, &q).await?;
    let info = cache_info(&id, &n, "nc", pinned);
    let filename = format!("{id}_{}.nc", file_time(n.base_time));
    if http_cache::is_fresh(&headers, &info) {
        return Ok(http_cache::respond(&headers, &info, NETCDF, Body::empty()));
    }
    // The header on the CPU pool; the records are written as the client
    // reads them (NetcdfBody), a piece at a time.
    let body = s
        .cpu(move || {
            let stream =
                export::NetcdfStream::new(&netcdf_file(&n, &radar_name)).map_err(export_error)?;
            Ok::<_, ApiError>(NetcdfBody {
                n,
                radar_name,
                stream,
            })
        })
        .await??;
    Ok(with_filename(
        http_cache::respond(&headers, &info, NETCDF, Body::new(body)),
        &filename,
    ))
}

/// What the netCDF export writes of a nowcast.
fn netcdf_file<'a>(n: &'a LatestNowcast, radar_name: &'a str) -> NowcastFile<'a> {
    NowcastFile {
        grid: &n.grid,
        radar: &n.radar,
        radar_name,
        issued: n.base_time,
        leads_min: &n.leads_min,
        rate_mm_h: &n.rate_mm_h,
        created: n.created_at,
        source: concat!("Raincast ", env!("CARGO_PKG_VERSION")),
    }
}

/// Bytes of rain rates converted per poll of [`NetcdfBody`]: the memory an
/// export holds at a time, and about 0.2 ms of work on the async thread.
const NETCDF_PIECE_BYTES: usize = 1 << 20;

/// The body of a netCDF export: the pieces of an [`export::NetcdfStream`],
/// each written when the connection asks for it (so a slow client holds
/// one piece, not the file: a 1-km European composite's 24 leads make a
/// 1.6-GB file), with its exact length.
struct NetcdfBody {
    n: Arc<LatestNowcast>,
    radar_name: String,
    stream: export::NetcdfStream,
}

impl http_body::Body for NetcdfBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let file = netcdf_file(&this.n, &this.radar_name);
        let piece = this.stream.next_piece(&file, NETCDF_PIECE_BYTES);
        std::task::Poll::Ready(piece.map(|p| Ok(http_body::Frame::data(p.into()))))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.remaining() == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.stream.remaining())
    }
}
