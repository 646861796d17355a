//! Raincast's HTTP API (axum) and map page.
//!
//! * [`app`] builds the router: one `router()` per resource (in `routes/`),
//!   merged here, documented by an OpenAPI 3.1 document generated from the
//!   handlers (served at `/openapi.json`), with the HTTP behaviour around it:
//!   request ids, tracing, metrics, CORS, timeouts, body limits and
//!   problem+json errors.
//! * [`serve`] runs it on a listener until a shutdown future resolves, then
//!   drains in-flight requests (graceful shutdown), with the connection
//!   limits of [`server`]. Pass a listener bound to port 0 in tests.
//! * CPU-heavy work runs in the bounded [`cpu::CpuPool`].

pub use raincast_config::api as config;
pub mod auth;
pub mod cpu;
pub mod error;
mod extract;
mod http_cache;
pub mod metrics;
pub mod models;
mod routes;
pub use routes::health::READY_STORE_TIMEOUT;
pub use routes::subscriptions::WebhookPolicy;
pub mod server;
pub mod state;
pub mod tile_cache;

pub use config::ApiConfig;
pub use error::{ApiError, Problem};
pub use state::{AppState, AppStateBuilder, BuildError, Clock, RadarInfo};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The OpenAPI document's fixed parts; paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Raincast API",
        description = "Rain radar scans, nowcasts for the next two hours, point forecasts and animations.\n\n\
Rain rates are in mm/h. In fields, `null` / NaN means no data (outside coverage) and 0 means no rain. \
Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "radars", description = "Radars, coverage and status"),
        (name = "scans", description = "Stored radar scans as fields"),
        (name = "nowcast", description = "Nowcasts, point forecasts and animations"),
        (name = "compatible", description = "The Dark Sky / Pirate Weather forecast request, answered from radar"),
        (name = "subscriptions", description = "Webhook subscriptions of an API key: signed deliveries (Standard Webhooks) when rain approaches a place"),
        (name = "tiles", description = "Map tiles of the mosaic of every radar in RainViewer's scheme: `/public/weather-maps.json` lists the frames, \
tiles are `{host}{path}/{size}/{z}/{x}/{y}/{color}/{smooth}_{snow}.png` (Web Mercator, size 256 or 512, zoom 0 to 12). \
`color` 0 is grey levels encoding dBZ (`dBZ = (R & 127) - 32`, Marshall-Palmer), 1 Raincast's legend (`/v1/colour-scale`), 2 a blue ramp by dBZ; \
no rain and no data are transparent. `smooth` 1 interpolates each radar's field bilinearly; `snow` is accepted and ignored."),
        (name = "operations", description = "Health, readiness, metrics, the API description"),
        (name = "page", description = "The map page and its assets"),
    ),
    components(schemas(Problem)),
    modifiers(&BearerKey)
)]
struct ApiDoc;

/// The `api_key` security scheme: `Authorization: Bearer KEY`.
struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `raincast keys create`"))
                    .build(),
            ),
        );
    }
}

/// The router with every route, and the OpenAPI document describing them.
pub fn router_and_openapi() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::openapi::router())
        .merge(routes::radars::router())
        .merge(routes::scans::router())
        .merge(routes::nowcast::router())
        .merge(routes::gis::router())
        .merge(routes::forecast::router())
        .merge(routes::darksky::router())
        .merge(routes::subscriptions::router())
        .merge(routes::skill::router())
        .merge(routes::tiles::router())
        .merge(routes::page::router())
        .merge(routes::basemap::router())
        .split_for_parts();
    binary_bodies(&mut doc);
    (router, doc)
}

/// Binary bodies (GIF, PNG, GeoTIFF, netCDF, npy) as `string` with format
/// `binary`: utoipa describes a `Vec<u8>` body as an array of integers,
/// which a generated client would try to parse as JSON.
fn binary_bodies(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.head,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            for response in op.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                for (media, content) in response.content.iter_mut() {
                    if !media.contains("json")
                        && matches!(content.schema, Some(RefOr::T(Schema::Array(_))))
                    {
                        content.schema = Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                                .build(),
                        )));
                    }
                }
            }
        }
    }
}

/// The OpenAPI document (as served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    router_and_openapi().1
}

/// Request ids: a per-process random-ish prefix plus a counter.
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(13))
            .unwrap_or(0);
        Self {
            prefix: nanos ^ std::process::id().rotate_left(7),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:06}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request path as logs and error bodies may show it: the API key in
/// the path of the compatible endpoint (`/forecast/{key}/…`) becomes `KEY`.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/forecast/") {
        Some(rest) => {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            format!("/forecast/KEY{tail}").into()
        }
        None => path.into(),
    }
}

/// Longest part of the request path echoed as a problem's `instance`, characters.
pub const MAX_INSTANCE_CHARS: usize = 256;

/// Adds `instance` (the path, at most [`MAX_INSTANCE_CHARS`] characters) and
/// `request_id` to problem bodies.
async fn enrich_problems(req: Request, next: Next) -> Response {
    let path = state::truncate(&redact_path(req.uri().path()), MAX_INSTANCE_CHARS);
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = req.extensions().get::<extract::BodyLimit>().map(|l| l.0);
    let resp = next.run(req).await;
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == error::PROBLEM_JSON.as_bytes());
    if !is_problem {
        if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
            return resp;
        }
        // tower-http's body limit answers in plain text.
        let mut p = ApiError::PayloadTooLarge {
            limit_bytes: limit.unwrap_or_default(),
        }
        .problem();
        p.instance = Some(path);
        p.request_id = id;
        return error::problem_response(&p);
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, "").into_response();
    };
    match serde_json::from_slice::<Problem>(&bytes) {
        Ok(mut p) => {
            p.instance = Some(path);
            p.request_id = id;
            let mut out = error::problem_response(&p);
            for (k, v) in parts.headers.iter() {
                if k != header::CONTENT_LENGTH {
                    out.headers_mut().insert(k.clone(), v.clone());
                }
            }
            out
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// Ends requests that run longer than the configured timeout with a 503 problem.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        "no_such_route",
        format!(
            "no route for {}; see /openapi.json",
            state::truncate(&redact_path(req.uri().path()), 100)
        ),
    )
}

/// 405 for a route that exists but not with this method. The `Allow`
/// header with the route's own methods is axum's (it adds one to a 405
/// that has none), so it is right for the routes that take POST or DELETE.
async fn method_not_allowed(req: Request) -> Response {
    let mut resp = ApiError::BadRequest {
        code: "method_not_allowed",
        detail: format!(
            "{} is not allowed here; the Allow header lists the methods this path takes",
            state::truncate(req.method().as_str(), 16)
        ),
    }
    .into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    // Keep the body's status consistent with the response's.
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    match serde_json::from_slice::<Problem>(&bytes) {
        Ok(mut p) => {
            p.status = 405;
            p.title = "Method Not Allowed".into();
            error::problem_response(&p)
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// The RainViewer-compatible frame list and tiles (`/public/…`, `/v2/…`)
/// are public, read-only data that web apps on other origins fetch (as
/// they fetched RainViewer's): they carry `Access-Control-Allow-Origin: *`
/// unless `[api] cors_origins` already answered for the request's origin.
/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) for
/// them is answered here, for any origin, with the methods they serve.
async fn public_cors(req: axum::extract::Request, next: middleware::Next) -> Response {
    let public = {
        let p = req.uri().path();
        p.starts_with("/public/") || p.starts_with("/v2/")
    };
    if public
        && req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"),
                // Any request header: the data are public and no credentials are sent.
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
                (header::ACCESS_CONTROL_MAX_AGE, "86400"),
            ],
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    if public {
        resp.headers_mut()
            .entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .or_insert(HeaderValue::from_static("*"));
    }
    resp
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse::<HeaderValue>().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .expose_headers([
                header::ETAG,
                header::LAST_MODIFIED,
                HeaderName::from_static("x-raincast-bounds"),
                X_REQUEST_ID.clone(),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// The complete application: routes, OpenAPI, and the HTTP behaviour.
pub fn app(state: AppState) -> Router {
    let (router, doc) = router_and_openapi();
    let doc_json: Arc<str> = Arc::from(doc.to_json().unwrap_or_else(|_| "{}".into()));
    let cfg = state.config().clone();
    let metrics = state.metrics().clone();
    let mut router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            cfg.request_timeout(),
            timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key_for_v1,
        ))
        // Inside the problem layer, so that its bare 413 becomes a problem.
        .layer(RequestBodyLimitLayer::new(cfg.body_limit_bytes))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(middleware::from_fn(enrich_problems))
        .layer(Extension(extract::BodyLimit(cfg.body_limit_bytes)))
        .layer(Extension(routes::openapi::OpenApiJson(doc_json)));
    if let Some(c) = cors(&cfg.cors_origins) {
        router = router.layer(c);
    }
    let router = router.layer(middleware::from_fn(public_cors));
    router
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(&X_REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let method = state::truncate(req.method().as_str(), 16);
                let path = state::truncate(&redact_path(req.uri().path()), MAX_INSTANCE_CHARS);
                tracing::info_span!("http", %method, %path, request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID.clone(),
            RequestIds::new(),
        ))
        .layer(middleware::from_fn(drop_unsafe_request_id))
        .with_state(state)
}

/// Longest client `X-Request-Id` kept, characters.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// A client's `X-Request-Id` is kept (echoed, logged, put in problems) only
/// when it is a short token (at most [`MAX_REQUEST_ID_CHARS`] of letters,
/// digits and `-_.:`); otherwise it is dropped and the server makes one, so
/// that nobody can write quotes, markup or kilobytes into the logs and
/// responses through it.
async fn drop_unsafe_request_id(mut req: Request, next: Next) -> Response {
    let safe = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_CHARS
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    if req.headers().get(&X_REQUEST_ID).is_some_and(|v| !safe(v)) {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(req).await
}

/// The HTTP service: binds `listen` and serves `state` until `shutdown`
/// turns true, then drains. Returns once the listener is bound, with the
/// bound address and the serving task.
pub async fn run(
    listen: &str,
    state: AppState,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, state, stop).await {
            tracing::error!(error = %e, "HTTP service failed");
        }
    });
    Ok((addr, task))
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then stops
/// accepting connections and lets in-flight requests finish. Header-read
/// timeout, idle timeout and connection cap come from the state's
/// [`ApiConfig`] (see [`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let limits = server::Limits::from(state.config());
    let open = state.metrics().open_connections.clone();
    server::serve(listener, app(state), limits, open, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn keys_in_paths_are_redacted() {
        assert_eq!(
            redact_path("/forecast/rc_secret/47,8"),
            "/forecast/KEY/47,8"
        );
        assert_eq!(redact_path("/forecast/rc_secret"), "/forecast/KEY");
        assert_eq!(redact_path("/v1/forecast"), "/v1/forecast");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_handlers_get_a_timeout_problem() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late"
        }
        async fn quick() -> &'static str {
            "ok"
        }
        let app = Router::new()
            .route("/slow", get(slow))
            .route("/quick", get(quick))
            .layer(middleware::from_fn_with_state(
                Duration::from_secs(5),
                timeout,
            ));
        let req = |uri: &str| {
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let r = app.clone().oneshot(req("/slow")).await.expect("response");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], error::PROBLEM_JSON);
        let body = axum::body::to_bytes(r.into_body(), 4096)
            .await
            .expect("body");
        let p: Problem = serde_json::from_slice(&body).expect("problem");
        assert_eq!(p.code, "timeout");
        let r = app.oneshot(req("/quick")).await.expect("response");
        assert_eq!(r.status(), StatusCode::OK);
    }
}
