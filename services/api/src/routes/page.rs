//! The map page at `/` (the tiled mosaic of every radar over the embedded
//! basemap, see `basemap.rs`) and its assets, bundled into the binary (Leaflet
//! 1.9.4 from the npm registry, BSD-2-Clause, see `/assets/LICENSE-leaflet.txt`).
//! Nothing is fetched from other hosts: the page works offline.

use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::http_cache::{self, CacheInfo};
use crate::state::AppState;
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(asset))
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../../assets/index.html"),
};

const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "leaflet.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/leaflet/leaflet.js"),
    },
    Asset {
        name: "leaflet.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/leaflet/leaflet.css"),
    },
    Asset {
        name: "LICENSE-leaflet.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/leaflet/LICENSE"),
    },
];

/// FNV-1a 64 of the content: the ETag.
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn serve(headers: &HeaderMap, a: &Asset, max_age_s: u32) -> Response {
    let info = CacheInfo {
        etag: digest(a.bytes),
        last_modified: None,
        max_age_s,
    };
    http_cache::respond(headers, &info, a.content_type, a.bytes)
}

/// The map page: radar coverage, the animated rain overlay with a time
/// slider, and the point forecast on click.
#[utoipa::path(get, path = "/", tag = "page",
    responses(
        (status = 200, description = "The map page", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
    ))]
async fn index(headers: HeaderMap) -> Response {
    serve(&headers, &INDEX, 0)
}

/// A static asset of the map page (`app.js`, `app.css`, `leaflet.js`,
/// `leaflet.css`, `LICENSE-leaflet.txt`).
#[utoipa::path(get, path = "/assets/{file}", tag = "page",
    params(("file" = String, Path, description = "Asset name")),
    responses(
        (status = 200, description = "The asset",
            content((String = "text/javascript"), (String = "text/css"), (String = "text/plain"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such asset", body = Problem, content_type = "application/problem+json"),
    ))]
async fn asset(headers: HeaderMap, ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let a = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("no_such_asset", "no such asset"))?;
    Ok(serve(&headers, a, 3600))
}
