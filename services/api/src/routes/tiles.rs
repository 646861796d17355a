//! RainViewer-compatible map tiles of the mosaic of every radar:
//! `/public/weather-maps.json`, `/v2/radar/{frame}/…` and `/v2/coverage/0/…`.
//! A RainViewer client works by changing its host: the JSON and the URL
//! templates are RainViewer's own (see docs/OPERATIONS.md, "Map tiles").

use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::http_cache::{self, CacheInfo};
use crate::state::{truncate, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raincast_algorithms::mosaic::{check_tile_size, sample_tile, Layer, TileId};
use raincast_algorithms::render::tiles::{
    coverage_tile_png, empty_tile_png, render_tile_png, TileScheme,
};
use raincast_nowcast::mosaic::{Mosaic, MosaicFrame};
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(weather_maps))
        .routes(routes!(radar_tile))
        .routes(routes!(coverage_tile))
}

/// `max-age` of tiles and of the frame list, seconds.
const MAX_AGE_S: u32 = 60;

/// One frame of the mosaic.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapFrame {
    /// The frame's time (Unix seconds, UTC): the start of its slot of the
    /// mosaic's cadence.
    pub time: i64,
    /// Base path of its tiles: `{host}{path}/{size}/{z}/{x}/{y}/{color}/{smooth}_{snow}.png`.
    pub path: String,
}

/// The frames of the mosaic.
#[derive(Debug, Serialize, ToSchema)]
pub struct RadarFrames {
    /// Observed frames of the last two hours, oldest first.
    pub past: Vec<MapFrame>,
    /// Forecast frames of the latest nowcast, in lead order.
    pub nowcast: Vec<MapFrame>,
}

/// RainViewer's weather maps document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "version": "2.0", "generated": 1718532030, "host": "http://127.0.0.1:8080",
    "radar": {
        "past": [{"time": 1718531700, "path": "/v2/radar/1718531700"}, {"time": 1718532000, "path": "/v2/radar/1718532000"}],
        "nowcast": [{"time": 1718532300, "path": "/v2/radar/nowcast_1718532000_5_3fa2c1d0"}]
    },
    "satellite": {"infrared": []}
}))]
pub struct WeatherMaps {
    /// Always `2.0`.
    pub version: String,
    /// When this document was made (Unix seconds).
    pub generated: i64,
    /// Scheme and host of the tiles (`[api] public_url`, else `http://` and the request's `Host`).
    pub host: String,
    pub radar: RadarFrames,
    /// RainViewer's satellite frames: always empty here (no satellite
    /// imagery), present so that clients typed on RainViewer's schema parse.
    pub satellite: SatelliteFrames,
}

/// RainViewer's `satellite` block.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SatelliteFrames {
    /// Infrared frames: none.
    pub infrared: Vec<MapFrame>,
}

fn host(s: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &s.config().public_url {
        return u.clone();
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}

fn frames(m: &Mosaic, list: &[MosaicFrame]) -> Vec<MapFrame> {
    list.iter()
        .filter(|f| !f.layers.is_empty())
        .map(|f| MapFrame {
            time: f.time.timestamp(),
            path: format!("/v2/radar/{}", f.id(m.issued)),
        })
        .collect()
}

/// The frames of the mosaic of every radar, as RainViewer's
/// `weather-maps.json`: `past` covers the last two hours (one frame per
/// slot of the mosaic's cadence that any radar observed), `nowcast` the
/// latest nowcast's frames.
#[utoipa::path(get, path = "/public/weather-maps.json", tag = "tiles",
    responses(
        (status = 200, description = "The frames", body = WeatherMaps),
        (status = 503, description = "No radar has a nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn weather_maps(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let m = s.mosaic().await?;
    let doc = WeatherMaps {
        version: "2.0".into(),
        generated: s.now().timestamp(),
        host: host(&s, &headers),
        radar: RadarFrames {
            past: frames(&m, &m.past),
            nowcast: frames(&m, &m.nowcast),
        },
        satellite: SatelliteFrames::default(),
    };
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=10"),
    );
    if s.config().public_url.is_none() {
        // `host` follows the request's Host: shared caches must key on it.
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Host"));
    }
    Ok(resp)
}

/// The parsed tile parameters.
#[derive(Debug, Clone, Copy)]
struct TileRequest {
    size: u32,
    tile: TileId,
    scheme: TileScheme,
    smooth: bool,
}

fn invalid(name: &str, detail: String) -> ApiError {
    ApiError::bad_request(
        "invalid_tile",
        format!("{name}: {}", truncate(&detail, 200)),
    )
}

fn number(name: &str, v: &str) -> Result<u32, ApiError> {
    v.parse::<u32>().map_err(|e| {
        let what = match e.kind() {
            std::num::IntErrorKind::PosOverflow => "is too large",
            _ => "must be a whole number",
        };
        invalid(name, format!("{what}, got {:?}", truncate(v, 20)))
    })
}

/// `{smooth}_{snow}.png`, each 0 or 1.
fn options(v: &str) -> Result<bool, ApiError> {
    let bad = || {
        invalid(
            "options",
            format!(
                "must be {{smooth}}_{{snow}}.png with each 0 or 1, such as 1_0.png; got {:?}",
                truncate(v, 20)
            ),
        )
    };
    let stem = v.strip_suffix(".png").ok_or_else(bad)?;
    let (smooth, snow) = stem.split_once('_').ok_or_else(bad)?;
    let flag = |name: &str, f: &str| match f {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(invalid(
            name,
            format!("must be 0 or 1, got {:?}", truncate(f, 10)),
        )),
    };
    let smooth = flag("smooth", smooth)?;
    flag("snow", snow)?;
    Ok(smooth)
}

fn parse_tile(
    size: &str,
    z: &str,
    x: &str,
    y: &str,
    color: &str,
    opts: &str,
) -> Result<TileRequest, ApiError> {
    let size = check_tile_size(number("size", size)?)
        .map_err(|_| invalid("size", format!("must be 256 or 512, got {size}")))?;
    let (z, x, y) = (number("z", z)?, number("x", x)?, number("y", y)?);
    let tile = TileId::new(z, x, y).map_err(|e| {
        let name = match &e {
            raincast_algorithms::mosaic::MosaicError::TileIndex { axis, .. } => axis,
            _ => "z",
        };
        invalid(name, e.to_string())
    })?;
    let code = number("color", color)?;
    let scheme = TileScheme::from_code(code).ok_or_else(|| {
        invalid(
            "color",
            format!(
                "scheme {code} is not served; use 0 (grey dBZ), 1 (Raincast legend) or 2 (blue)"
            ),
        )
    })?;
    Ok(TileRequest {
        size,
        tile,
        scheme,
        smooth: options(opts)?,
    })
}

fn empty_tile(size: u32) -> Result<Arc<[u8]>, ApiError> {
    static EMPTY: OnceLock<[Option<Arc<[u8]>>; 2]> = OnceLock::new();
    let both = EMPTY.get_or_init(|| {
        [256, 512].map(|s| empty_tile_png(s).ok().map(|p| Arc::from(p.as_slice())))
    });
    both[usize::from(size == 512)]
        .clone()
        .ok_or_else(|| ApiError::Internal("empty tile".into()))
}

fn png(headers: &HeaderMap, info: &CacheInfo, body: Arc<[u8]>) -> Response {
    http_cache::respond(
        headers,
        info,
        "image/png",
        axum::body::Bytes::from_owner(body),
    )
}

/// A tile by its validator: 304 when the client has it, else from the tile
/// cache, else rendered by `render` in the CPU pool (`None`: the empty
/// tile of `size`) and cached.
async fn cached_tile<F>(
    s: &AppState,
    headers: &HeaderMap,
    info: &CacheInfo,
    size: u32,
    render: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Result<Option<Vec<u8>>, ApiError> + Send + 'static,
{
    if http_cache::is_fresh(headers, info) {
        return Ok(http_cache::respond(
            headers,
            info,
            "image/png",
            axum::body::Body::empty(),
        ));
    }
    if let Some(body) = s.tile_cache().get(&info.etag) {
        return Ok(png(headers, info, body));
    }
    let body = match s.cpu(render).await?? {
        Some(p) => Arc::from(p.as_slice()),
        None => empty_tile(size)?,
    };
    s.tile_cache().insert(info.etag.clone(), body.clone());
    Ok(png(headers, info, body))
}

/// The rate layers of a frame, owned so the CPU pool can take them.
struct OwnedFrame {
    mosaic: Arc<Mosaic>,
    index: FrameIndex,
}

#[derive(Clone, Copy)]
enum FrameIndex {
    Past(usize),
    Nowcast(usize),
}

impl OwnedFrame {
    fn frame(&self) -> &MosaicFrame {
        match self.index {
            FrameIndex::Past(i) => &self.mosaic.past[i],
            FrameIndex::Nowcast(i) => &self.mosaic.nowcast[i],
        }
    }
}

/// The frame of `m` with tile-path id `id`.
fn find_frame(m: &Mosaic, id: &str) -> Option<FrameIndex> {
    m.past
        .iter()
        .position(|f| f.id(m.issued) == id)
        .map(FrameIndex::Past)
        .or_else(|| {
            m.nowcast
                .iter()
                .position(|f| f.id(m.issued) == id)
                .map(FrameIndex::Nowcast)
        })
}

/// One map tile of a mosaic frame in a colour scheme; fully transparent
/// outside the radars' coverage.
#[utoipa::path(get, path = "/v2/radar/{frame}/{size}/{z}/{x}/{y}/{color}/{options}", tag = "tiles",
    params(
        ("frame" = String, Path, description = "A frame id from `/public/weather-maps.json` (the last part of its `path`)"),
        ("size" = u32, Path, description = "256 or 512 pixels"),
        ("z" = u32, Path, description = "Zoom, 0 to 12"),
        ("x" = u32, Path, description = "Column, 0 to 2^z - 1, west to east"),
        ("y" = u32, Path, description = "Row, 0 to 2^z - 1, north to south"),
        ("color" = u32, Path, description = "0: grey levels encoding dBZ (`dBZ = (R & 127) - 32`); 1: Raincast's legend; 2: blue ramp by dBZ"),
        ("options" = String, Path, description = "`{smooth}_{snow}.png`: smooth 0 (cell under each pixel) or 1 (bilinear); snow 0 or 1, ignored"),
    ),
    responses(
        (status = 200, description = "The tile (palette PNG with transparency)", body = Vec<u8>, content_type = "image/png",
            headers(
                ("ETag" = String, description = "Changes with the frame's radars and scans"),
                ("Cache-Control" = String, description = "public, max-age=60"),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad size, zoom, x, y, color or options (the problem names it)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such frame (older than two hours, or a nowcast superseded more than two minutes ago)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No radar has a nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn radar_tile(
    State(s): State<AppState>,
    ApiPath((frame, size, z, x, y, color, opts)): ApiPath<(
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let req = parse_tile(&size, &z, &x, &y, &color, &opts)?;
    let m = s.mosaic().await?;
    let found = match find_frame(&m, &frame) {
        Some(index) => Some((m, index)),
        // A nowcast frame of a mosaic replaced a moment ago (its grace
        // period): the client's frame list is a little older than ours.
        None => s
            .nowcasts()
            .superseded_mosaics(s.now())
            .into_iter()
            .find_map(|old| match find_frame(&old, &frame)? {
                i @ FrameIndex::Nowcast(_) => Some((old, i)),
                FrameIndex::Past(_) => None,
            }),
    };
    let (m, index) = found.ok_or_else(|| {
        ApiError::not_found(
            "unknown_frame",
            format!(
                "no frame {:?}; frames are listed in /public/weather-maps.json",
                truncate(&frame, 40)
            ),
        )
    })?;
    let owned = OwnedFrame { mosaic: m, index };
    let t = req.tile;
    let info = CacheInfo {
        etag: format!(
            "{}-{:016x}-{}-{}-{}-{}-{}-{}",
            truncate(&frame, 40),
            owned.frame().version,
            req.size,
            t.z,
            t.x,
            t.y,
            req.scheme.code(),
            u8::from(req.smooth)
        ),
        last_modified: None,
        max_age_s: MAX_AGE_S,
    };
    let metrics = s.metrics().clone();
    cached_tile(&s, &headers, &info, req.size, move || {
        let start = std::time::Instant::now();
        let frame = owned.frame();
        let layers = owned
            .mosaic
            .rate_layers(frame)
            .map_err(|e| ApiError::Internal(format!("mosaic layers: {e}")))?;
        let out = render(&layers, req);
        metrics
            .render
            .with_label_values(&["tile"])
            .observe(start.elapsed().as_secs_f64());
        out
    })
    .await
}

/// Samples and renders one tile; `None` when it is fully transparent.
fn render(layers: &[Layer], req: TileRequest) -> Result<Option<Vec<u8>>, ApiError> {
    let values = sample_tile(layers, req.tile, req.size, req.smooth);
    render_tile_png(&values, req.size, req.scheme)
        .map_err(|e| ApiError::Internal(format!("tile: {e}")))
}

/// The coverage mask as RainViewer draws it: transparent where a radar
/// sees (in its newest scan of the mosaic's two hours), black elsewhere.
#[utoipa::path(get, path = "/v2/coverage/0/{size}/{z}/{x}/{y}/{color}/{options}", tag = "tiles",
    params(
        ("size" = u32, Path, description = "256 or 512 pixels"),
        ("z" = u32, Path, description = "Zoom, 0 to 12"),
        ("x" = u32, Path, description = "Column, 0 to 2^z - 1"),
        ("y" = u32, Path, description = "Row, 0 to 2^z - 1"),
        ("color" = u32, Path, description = "0"),
        ("options" = String, Path, description = "`0_0.png` (any `{0|1}_{0|1}.png` is accepted)"),
    ),
    responses(
        (status = 200, description = "The mask (1-bit PNG with transparency)", body = Vec<u8>, content_type = "image/png",
            headers(
                ("ETag" = String, description = "Changes with the radars' newest scans"),
                ("Cache-Control" = String, description = "public, max-age=60"),
            )),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad size, zoom, x, y, color or options", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No radar has a nowcast yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn coverage_tile(
    State(s): State<AppState>,
    ApiPath((size, z, x, y, color, opts)): ApiPath<(
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if color != "0" {
        return Err(invalid(
            "color",
            format!(
                "coverage tiles have colour 0 only, got {:?}",
                truncate(&color, 10)
            ),
        ));
    }
    let req = parse_tile(&size, &z, &x, &y, &color, &opts)?;
    let m = s.mosaic().await?;
    // Each radar's newest observed layer in the window.
    let mut newest: Vec<Option<(usize, usize)>> = vec![None; m.radars.len()];
    for (fi, f) in m.past.iter().enumerate() {
        for (li, l) in f.layers.iter().enumerate() {
            newest[l.radar] = Some((fi, li));
        }
    }
    let picks: Vec<(usize, usize)> = newest.into_iter().flatten().collect();
    let mut h = std::hash::DefaultHasher::new();
    for (fi, li) in &picks {
        let l = &m.past[*fi].layers[*li];
        m.radars[l.radar].id.hash(&mut h);
        l.time.timestamp().hash(&mut h);
    }
    let t = req.tile;
    let info = CacheInfo {
        etag: format!(
            "coverage-{:016x}-{}-{}-{}-{}",
            h.finish(),
            req.size,
            t.z,
            t.x,
            t.y
        ),
        last_modified: None,
        max_age_s: MAX_AGE_S,
    };
    cached_tile(&s, &headers, &info, req.size, move || {
        let layers: Vec<Layer> = picks
            .iter()
            .map(|(fi, li)| {
                let l = &m.past[*fi].layers[*li];
                Layer::new(&m.radars[l.radar], l.rate().as_slice().unwrap_or(&[]))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::Internal(format!("mosaic layers: {e}")))?;
        let values = sample_tile(&layers, req.tile, req.size, false);
        coverage_tile_png(&values, req.size)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("coverage tile: {e}")))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let detail = |r: Result<TileRequest, ApiError>| match r {
            Err(ApiError::BadRequest { code, detail }) => {
                assert_eq!(code, "invalid_tile");
                detail
            }
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(detail(parse_tile("300", "1", "0", "0", "1", "0_0.png")).starts_with("size:"));
        assert!(detail(parse_tile("256", "13", "0", "0", "1", "0_0.png")).starts_with("z:"));
        assert!(detail(parse_tile("256", "2", "4", "0", "1", "0_0.png")).starts_with("x:"));
        assert!(detail(parse_tile("256", "2", "0", "4", "1", "0_0.png")).starts_with("y:"));
        assert!(detail(parse_tile("256", "2", "0", "0", "7", "0_0.png")).starts_with("color:"));
        assert!(detail(parse_tile("256", "2", "0", "0", "x", "0_0.png")).starts_with("color:"));
        assert!(detail(parse_tile("256", "2", "0", "0", "1", "2_0.png")).starts_with("smooth:"));
        assert!(detail(parse_tile("256", "2", "0", "0", "1", "0_2.png")).starts_with("snow:"));
        assert!(detail(parse_tile("256", "2", "0", "0", "1", "0_0.jpg")).starts_with("options:"));
        let ok = parse_tile("512", "12", "4095", "0", "0", "1_1.png");
        assert!(matches!(
            ok,
            Ok(TileRequest {
                size: 512,
                smooth: true,
                ..
            })
        ));
    }
}
