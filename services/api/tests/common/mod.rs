//! Test fixtures: an embedded (redb) store filled with synthetic scans, and
//! helpers to call the router without a network.

#![allow(dead_code, clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use ndarray::Array2;
use raincast_algorithms::prep::RainField;
use raincast_algorithms::sparse::{self, SparseOptions};
use raincast_algorithms::Grid;
use raincast_api::{ApiConfig, AppState, RadarInfo};
use raincast_nowcast::{NowcastService, NowcastSettings};
use raincast_store::{EmbeddedStore, NewScan, ScanStore};
use raincast_testkit::TempDir;
use std::sync::Arc;
use tower::ServiceExt;

pub const RADAR: &str = "testradar";
/// Grid centre (WGS84).
pub const LON0: f64 = 8.0;
pub const LAT0: f64 = 47.0;
pub const ROWS: usize = 64;
pub const COLS: usize = 80;
/// Scan interval, minutes.
pub const STEP_MIN: i64 = 5;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap()
}

/// A 64 x 80 grid of 2 km cells centred on (8 E, 47 N).
pub fn grid() -> Grid {
    Grid::new(
        format!("+proj=aeqd +lat_0={LAT0} +lon_0={LON0} +ellps=WGS84 +units=m"),
        ROWS,
        COLS,
        2000.0,
        2000.0,
        -(COLS as f64) * 1000.0,
        ROWS as f64 * 1000.0,
    )
    .unwrap()
}

/// Scan `k`: a rain blob moving one cell east per scan, no data in the
/// north-west 8 x 8 corner.
pub fn field(k: usize) -> Array2<f32> {
    Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
        if r < 8 && c < 8 {
            return f32::NAN;
        }
        let (cy, cx) = (32.0, 20.0 + k as f32);
        let d2 = ((r as f32 - cy).powi(2) + (c as f32 - cx).powi(2)) / 36.0;
        let v = 20.0 * (-d2).exp();
        if v < 0.1 {
            0.0
        } else {
            v
        }
    })
}

pub fn scan_time(k: usize) -> DateTime<Utc> {
    t0() + Duration::minutes(STEP_MIN * k as i64)
}

/// Puts `n` scans (times t0, t0+5 min, ...) into the store, like the ingest job does.
pub async fn put_scans(store: &dyn ScanStore, radar: &str, n: usize) {
    put_scans_on(store, radar, n, &grid()).await
}

/// [`put_scans`] on another grid of the same shape.
pub async fn put_scans_on(store: &dyn ScanStore, radar: &str, n: usize, grid: &Grid) {
    for k in 0..n {
        put_scan_on(store, radar, k, grid).await;
    }
}

/// Puts scan `k` (time t0 + 5 k min) of `radar` on `grid` into the store.
pub async fn put_scan_on(store: &dyn ScanStore, radar: &str, k: usize, grid: &Grid) {
    let f = RainField {
        grid: grid.clone(),
        time: scan_time(k),
        rate_mm_h: field(k),
    };
    let enc = sparse::encode(&f, &SparseOptions { tile_size: 32 }).unwrap();
    let scan = NewScan {
        radar: radar.to_string(),
        time: f.time,
        source_key: format!("{radar}/2024/06/16/scan_{k:02}.h5"),
        format: "odim".into(),
        header: enc.header.clone(),
        rain_cells: f.rain_cells() as u64,
        tiles: enc.tiles.clone(),
    };
    store
        .put_scan(&scan, f.time + Duration::seconds(30))
        .await
        .unwrap();
}

pub struct Fixture {
    pub dir: TempDir,
    pub store: Arc<EmbeddedStore>,
    pub state: AppState,
}

/// A store with `n` scans of [`RADAR`] and an app state whose clock reads
/// `now` and whose config is `config`.
pub async fn fixture_with(n: usize, now: DateTime<Utc>, config: ApiConfig) -> Fixture {
    let dir = TempDir::new("raincast-api-test");
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), Duration::days(3650))
            .await
            .unwrap(),
    );
    put_scans(store.as_ref(), RADAR, n).await;
    let radars = vec![
        RadarInfo {
            id: RADAR.into(),
            name: "Test radar".into(),
            location: Some((LON0, LAT0)),
        },
        RadarInfo {
            id: "empty".into(),
            name: "Radar without scans".into(),
            location: None,
        },
    ];
    let state = state_for(store.clone(), radars, now, config);
    Fixture { dir, store, state }
}

/// An app state over `store` serving `radars`, with a nowcast service of
/// 60-minute leads keeping live skill in `store`, a clock reading `now` and `config`.
pub fn state_for(
    store: Arc<EmbeddedStore>,
    radars: Vec<RadarInfo>,
    now: DateTime<Utc>,
    config: ApiConfig,
) -> AppState {
    state_with_clock(store, radars, Arc::new(move || now), config)
}

/// [`state_for`] with a clock of the test's own (one it can move).
pub fn state_with_clock(
    store: Arc<EmbeddedStore>,
    radars: Vec<RadarInfo>,
    clock: raincast_api::Clock,
    config: ApiConfig,
) -> AppState {
    let nowcasts = NowcastService::with_live_skill(
        store.clone(),
        store.clone(),
        NowcastSettings {
            max_lead_min: 60,
            ..NowcastSettings::default()
        },
    );
    AppState::builder(store.clone(), nowcasts)
        .config(config)
        .radars(radars)
        .state_store(store)
        .clock(clock)
        .build()
        .unwrap()
}

/// 12 scans, clock 2 minutes after the last one, default config.
pub async fn fixture() -> Fixture {
    fixture_with(
        12,
        scan_time(11) + Duration::minutes(2),
        ApiConfig::default(),
    )
    .await
}

pub async fn call(state: &AppState, req: Request<Body>) -> Response<Body> {
    raincast_api::app(state.clone()).oneshot(req).await.unwrap()
}

pub async fn get(state: &AppState, uri: &str) -> Response<Body> {
    call(state, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn body_bytes(resp: Response<Body>) -> Vec<u8> {
    axum::body::to_bytes(resp.into_body(), 256 * 1024 * 1024)
        .await
        .unwrap()
        .to_vec()
}

pub async fn json(resp: Response<Body>) -> serde_json::Value {
    let bytes = body_bytes(resp).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts a problem+json response with this status and code; returns the body.
pub async fn expect_problem(resp: Response<Body>, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(
        resp.status(),
        StatusCode::from_u16(status).unwrap(),
        "status"
    );
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "content type"
    );
    let request_id = resp.headers().get("x-request-id").cloned();
    let p = json(resp).await;
    assert_eq!(p["status"], status, "{p}");
    assert_eq!(p["code"], code, "{p}");
    assert!(
        p["title"].is_string() && p["detail"].is_string() && p["type"].is_string(),
        "{p}"
    );
    assert!(
        p["instance"].as_str().is_some_and(|i| i.starts_with('/')),
        "{p}"
    );
    let request_id = request_id.expect("x-request-id header");
    assert_eq!(p["request_id"], request_id.to_str().unwrap(), "{p}");
    p
}
