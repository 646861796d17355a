//! The mosaic's RainViewer-compatible tiles and `/v1/forecast` in an
//! overlap of two radars.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use common::*;
use raincast_algorithms::mosaic::TileId;
use raincast_algorithms::render::tiles::{dbz_of_grey, TILE_ZR};
use raincast_algorithms::Grid;
use raincast_api::{ApiConfig, RadarInfo};
use raincast_store::EmbeddedStore;
use std::sync::Arc;

/// The second radar stands 60 km east of the first ([`RADAR`] at 8 E, 47 N).
const EAST: &str = "east";
const EAST_LON: f64 = 8.79;

fn east_grid() -> Grid {
    Grid::new(
        format!("+proj=aeqd +lat_0={LAT0} +lon_0={EAST_LON} +ellps=WGS84 +units=m"),
        ROWS,
        COLS,
        2000.0,
        2000.0,
        -(COLS as f64) * 1000.0,
        ROWS as f64 * 1000.0,
    )
    .unwrap()
}

struct Two {
    _dir: raincast_testkit::TempDir,
    state: raincast_api::AppState,
}

/// An empty embedded store in a new temporary folder.
async fn new_store() -> (raincast_testkit::TempDir, Arc<EmbeddedStore>) {
    let dir = raincast_testkit::TempDir::new("raincast-tiles-test");
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), Duration::days(3650))
            .await
            .unwrap(),
    );
    (dir, store)
}

async fn two_radars(east_scans: usize) -> Two {
    two_radars_with(east_scans, ApiConfig::default()).await
}

async fn two_radars_with(east_scans: usize, config: ApiConfig) -> Two {
    let (dir, store) = new_store().await;
    put_scans(store.as_ref(), RADAR, 12).await;
    put_scans_on(store.as_ref(), EAST, east_scans, &east_grid()).await;
    let radars = vec![
        RadarInfo {
            id: RADAR.into(),
            name: "Test radar".into(),
            location: Some((LON0, LAT0)),
        },
        RadarInfo {
            id: EAST.into(),
            name: "East radar".into(),
            location: Some((EAST_LON, LAT0)),
        },
    ];
    let state = state_for(store, radars, scan_time(11) + Duration::minutes(2), config);
    Two { _dir: dir, state }
}

async fn get_with(
    state: &raincast_api::AppState,
    uri: &str,
    h: &[(&str, &str)],
) -> axum::http::Response<Body> {
    let mut req = Request::get(uri);
    for (k, v) in h {
        req = req.header(*k, *v);
    }
    call(state, req.body(Body::empty()).unwrap()).await
}

fn rgba(png_bytes: &[u8]) -> (u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, buf)
}

/// The RGBA pixels of the tile at `uri` (a 200 PNG).
async fn tile_pixels(state: &raincast_api::AppState, uri: &str) -> Vec<u8> {
    let r = get(state, uri).await;
    assert_eq!(r.status(), StatusCode::OK, "{uri}");
    rgba(&body_bytes(r).await).1
}

/// The URI of a tile of the mosaic frame at Unix time `time`.
fn tile_uri(time: i64, t: TileId, color: u32) -> String {
    format!(
        "/v2/radar/{time}/256/{}/{}/{}/{color}/0_0.png",
        t.z, t.x, t.y
    )
}

/// The tile holding a lon/lat at zoom `z`, and the pixel of the place.
fn tile_of(z: u32, lon: f64, lat: f64) -> (TileId, usize, usize) {
    let (px, py) = TileId::new(z, 0, 0).unwrap().lonlat_pixel(lon, lat, 256);
    let t = TileId::new(z, (px / 256.0) as u32, (py / 256.0) as u32).unwrap();
    let (x, y) = t.lonlat_pixel(lon, lat, 256);
    (t, x as usize, y as usize)
}

#[tokio::test]
async fn weather_maps_json_has_rainviewers_shape() {
    let f = two_radars(12).await;
    let r = get_with(
        &f.state,
        "/public/weather-maps.json",
        &[("host", "rain.example:8080")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    // `host` follows the request's Host header: caches key on it.
    assert_eq!(r.headers()["vary"], "Host");
    let v = json(r).await;
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["host"], "http://rain.example:8080");
    // RainViewer's satellite block, empty: typed clients parse it.
    assert_eq!(v["satellite"], serde_json::json!({"infrared": []}));
    // With `[api] public_url`, `host` is that URL whatever the request says.
    let public = two_radars_with(
        12,
        ApiConfig {
            public_url: Some("https://rain.example".into()),
            ..ApiConfig::default()
        },
    )
    .await;
    let r = get_with(
        &public.state,
        "/public/weather-maps.json",
        &[("host", "evil.example")],
    )
    .await;
    assert!(r.headers().get("vary").is_none());
    assert_eq!(json(r).await["host"], "https://rain.example");
    assert_eq!(
        v["generated"].as_i64().unwrap(),
        (scan_time(11) + Duration::minutes(2)).timestamp()
    );
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    let past = v["radar"]["past"].as_array().unwrap();
    let nowcast = v["radar"]["nowcast"].as_array().unwrap();
    // Twelve 5-minute scans: twelve past frames, oldest first, the last the
    // latest scan; nothing older than two hours.
    assert_eq!(past.len(), 12);
    let times: Vec<i64> = past.iter().map(|p| p["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 300));
    assert_eq!(*times.last().unwrap(), scan_time(11).timestamp());
    for p in past {
        assert_eq!(p.as_object().unwrap().len(), 2);
        assert_eq!(p["path"], format!("/v2/radar/{}", p["time"]));
    }
    // The nowcast: 60 minutes of 5-minute leads, in lead order.
    assert_eq!(nowcast.len(), 12);
    for (k, p) in nowcast.iter().enumerate() {
        assert_eq!(
            p["time"].as_i64().unwrap(),
            scan_time(11).timestamp() + 300 * (k as i64 + 1)
        );
        assert!(p["path"]
            .as_str()
            .unwrap()
            .starts_with("/v2/radar/nowcast_"));
    }
    // Every listed frame serves tiles.
    for p in past.iter().chain(nowcast) {
        let uri = format!("{}/256/6/33/22/2/1_0.png", p["path"].as_str().unwrap());
        assert_eq!(get(&f.state, &uri).await.status(), StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn tiles_carry_dbz_cache_headers_and_are_transparent_outside() {
    let f = two_radars(12).await;
    let latest = scan_time(11).timestamp();
    // The rain blob of the first radar's newest scan: row 32, column 31.
    let (lon, lat) = grid().rowcol_to_lonlat(32.5, 31.5).unwrap();
    let (t, px, py) = tile_of(9, lon, lat);
    let uri = format!("/v2/radar/{latest}/256/{}/{}/{}/0/0_0.png", t.z, t.x, t.y);
    let r = get(&f.state, &uri).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let (w, px_rgba) = rgba(&body_bytes(r).await);
    assert_eq!(w, 256);
    let p = &px_rgba[4 * (py * 256 + px)..4 * (py * 256 + px) + 4];
    assert_eq!(p[3], 255, "rain is opaque");
    assert!(p[0] == p[1] && p[1] == p[2]);
    // The blob peaks at 20 mm/h from the first radar; the mosaic there is
    // near that (the second radar sees less rain there, it is its own blob).
    let dbz = dbz_of_grey(p[0]) as f64;
    let rate = TILE_ZR.rate_mm_h(dbz);
    assert!(rate > 2.0 && rate < 25.0, "{dbz} dBZ = {rate} mm/h");
    // The same tile again: 304 on its validator, 200 from the cache otherwise.
    let r = get_with(&f.state, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(body_bytes(r).await.is_empty());
    assert!(!f.state.tile_cache().is_empty());
    let r = get(&f.state, &uri).await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    // Another scheme or smoothing is another tile.
    let r = get(&f.state, &uri.replace("/0/0_0.png", "/1/1_1.png")).await;
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    // Far from both radars: fully transparent, at 512 px too.
    for (size, uri) in [
        (256, format!("/v2/radar/{latest}/256/9/10/10/1/0_0.png")),
        (512, format!("/v2/radar/{latest}/512/3/0/0/2/1_1.png")),
    ] {
        let r = get(&f.state, &uri).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (w, px) = rgba(&body_bytes(r).await);
        assert_eq!(w, size);
        assert!(px.chunks(4).all(|p| p[3] == 0), "{uri}");
    }
    // Inside a tile, pixels no radar sees are transparent: the first
    // radar's no-data corner (north-west 8 x 8 cells), outside the second's grid.
    let (lon, lat) = grid().rowcol_to_lonlat(2.5, 2.5).unwrap();
    let (t, px, py) = tile_of(9, lon, lat);
    let px_rgba = tile_pixels(&f.state, &tile_uri(latest, t, 0)).await;
    assert_eq!(px_rgba[4 * (py * 256 + px) + 3], 0);
}

#[tokio::test]
async fn bad_tile_parameters_are_named_and_unknown_frames_are_404() {
    let f = two_radars(12).await;
    let latest = scan_time(11).timestamp();
    for (uri, name) in [
        (format!("/v2/radar/{latest}/300/1/0/0/1/0_0.png"), "size:"),
        (format!("/v2/radar/{latest}/256/13/0/0/1/0_0.png"), "z:"),
        (format!("/v2/radar/{latest}/256/2/4/0/1/0_0.png"), "x:"),
        (format!("/v2/radar/{latest}/256/2/0/9/1/0_0.png"), "y:"),
        (format!("/v2/radar/{latest}/256/2/0/0/9/0_0.png"), "color:"),
        (format!("/v2/radar/{latest}/256/2/0/0/1/5_0.png"), "smooth:"),
        (
            format!("/v2/radar/{latest}/256/2/0/0/1/0_0.jpg"),
            "options:",
        ),
        ("/v2/coverage/0/256/2/0/0/1/0_0.png".to_string(), "color:"),
    ] {
        let p = expect_problem(get(&f.state, &uri).await, 400, "invalid_tile").await;
        assert!(
            p["detail"].as_str().unwrap().starts_with(name),
            "{uri}: {p}"
        );
    }
    let old = (scan_time(0) - Duration::hours(3)).timestamp();
    expect_problem(
        get(&f.state, &format!("/v2/radar/{old}/256/2/0/0/1/0_0.png")).await,
        404,
        "unknown_frame",
    )
    .await;
    expect_problem(
        get(&f.state, "/v2/radar/nowcast_1_5/256/2/0/0/1/0_0.png").await,
        404,
        "unknown_frame",
    )
    .await;
}

#[tokio::test]
async fn coverage_tiles_are_clear_where_a_radar_sees() {
    let f = two_radars(12).await;
    let (t, px, py) = tile_of(7, LON0, LAT0);
    let r = get(
        &f.state,
        &format!("/v2/coverage/0/256/{}/{}/{}/0/0_0.png", t.z, t.x, t.y),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("etag"));
    let (_, px_rgba) = rgba(&body_bytes(r).await);
    assert_eq!(px_rgba[4 * (py * 256 + px) + 3], 0, "seen: clear");
    let r = get(&f.state, "/v2/coverage/0/256/7/10/10/0/0_0.png").await;
    let (_, px_rgba) = rgba(&body_bytes(r).await);
    assert!(
        px_rgba.chunks(4).all(|p| p == [0, 0, 0, 255]),
        "unseen: black"
    );
}

#[tokio::test]
async fn the_forecast_in_an_overlap_uses_the_mosaic_and_names_its_radars() {
    let f = two_radars(12).await;
    // Half-way between the radars, both see.
    let r = get(&f.state, &format!("/v1/forecast?lat={LAT0}&lon=8.35")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["mosaic"], true, "{v}");
    let radars = v["radars"].as_array().unwrap();
    assert_eq!(radars.len(), 2);
    let ids: Vec<&str> = radars.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&RADAR) && ids.contains(&EAST));
    let w: f64 = radars.iter().map(|r| r["weight"].as_f64().unwrap()).sum();
    assert!((w - 1.0).abs() < 0.01);
    // 8.35 E is nearer the first radar (8 E) than the second (8.79 E).
    assert_eq!(v["radar"]["id"], RADAR);
    assert_eq!(v["issued_at"], "2024-06-16T10:55:00Z");
    assert_eq!(v["entries"].as_array().unwrap().len(), 12);
    // Asking for one radar gives that radar alone.
    let v = json(
        get(
            &f.state,
            &format!("/v1/forecast?lat={LAT0}&lon=8.35&radar={EAST}"),
        )
        .await,
    )
    .await;
    assert_eq!(v["mosaic"], false);
    assert_eq!(v["radar"]["id"], EAST);
    assert_eq!(v["radars"].as_array().unwrap().len(), 1);
    // Where one radar sees, its own forecast, as before.
    let v = json(get(&f.state, &format!("/v1/forecast?lat={LAT0}&lon=7.4")).await).await;
    assert_eq!(v["mosaic"], false);
    assert_eq!(v["radar"]["id"], RADAR);
}

#[tokio::test]
async fn a_down_radar_leaves_the_other_radars_tiles_whole() {
    // The east radar stopped after 4 scans: the latest frame is the first
    // radar's alone.
    let f = two_radars(4).await;
    let latest = scan_time(11).timestamp();
    let v = json(get(&f.state, "/public/weather-maps.json").await).await;
    assert_eq!(v["radar"]["past"].as_array().unwrap().len(), 12);
    let (lon, lat) = grid().rowcol_to_lonlat(32.5, 31.5).unwrap();
    let (t, px, py) = tile_of(9, lon, lat);
    let px_rgba = tile_pixels(&f.state, &tile_uri(latest, t, 0)).await;
    let alpha = |p: &[u8]| p[4 * (py * 256 + px) + 3];
    assert_eq!(alpha(&px_rgba), 255, "rain where the first radar sees");
    // Where the east radar alone sees: its newest scan still counts for
    // coverage, but the latest frame has nothing there.
    let (t, px, py) = tile_of(9, EAST_LON + 0.6, LAT0);
    let alpha = |p: &[u8]| p[4 * (py * 256 + px) + 3];
    let cov = tile_pixels(
        &f.state,
        &format!("/v2/coverage/0/256/{}/{}/{}/0/0_0.png", t.z, t.x, t.y),
    )
    .await;
    assert_eq!(alpha(&cov), 0);
    assert_eq!(
        alpha(&tile_pixels(&f.state, &tile_uri(latest, t, 1)).await),
        0
    );
}

/// A client that read the frame list just before a newer nowcast replaced
/// it still gets the tiles of the forecast frames it listed, unchanged, for
/// two minutes (`SUPERSEDED_GRACE_S`); then they are 404 while the new
/// list's tiles are served.
#[tokio::test]
async fn a_replaced_nowcasts_tiles_stay_served_for_the_grace_period() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let (_dir, store) = new_store().await;
    put_scans(store.as_ref(), RADAR, 12).await;
    let now_s = Arc::new(AtomicI64::new(
        (scan_time(11) + Duration::minutes(2)).timestamp(),
    ));
    let clock = {
        let now_s = now_s.clone();
        Arc::new(move || chrono::DateTime::from_timestamp(now_s.load(Ordering::SeqCst), 0).unwrap())
    };
    let radars = vec![RadarInfo {
        id: RADAR.into(),
        name: "Test radar".into(),
        location: Some((LON0, LAT0)),
    }];
    let state = state_with_clock(store.clone(), radars, clock, ApiConfig::default());
    let last_nowcast_path = |v: serde_json::Value| {
        v["radar"]["nowcast"].as_array().unwrap().last().unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (t, _, _) = tile_of(7, LON0, LAT0);
    let tile = |path: &str| format!("{path}/256/{}/{}/{}/1/0_0.png", t.z, t.x, t.y);

    let old = last_nowcast_path(json(get(&state, "/public/weather-maps.json").await).await);
    let r = get(&state, &tile(&old)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let old_body = body_bytes(r).await;

    // The next scan arrives: a newer nowcast, a new mosaic, new paths.
    put_scan_on(store.as_ref(), RADAR, 12, &grid()).await;
    let now = scan_time(12) + Duration::minutes(2);
    now_s.store(now.timestamp(), Ordering::SeqCst);
    // (The ingest job asks for the update; a request would only start one.)
    state.nowcasts().update(RADAR, now).await.unwrap();
    let new = last_nowcast_path(json(get(&state, "/public/weather-maps.json").await).await);
    assert_ne!(new, old);

    // Within the grace period the old frame's tile is still served, as it was.
    now_s.fetch_add(119, Ordering::SeqCst);
    let r = get(&state, &tile(&old)).await;
    assert_eq!(r.status(), StatusCode::OK, "{old}");
    assert_eq!(body_bytes(r).await, old_body);
    assert_eq!(get(&state, &tile(&new)).await.status(), StatusCode::OK);

    // After it, 404 for the old frame; the new list's frame still served.
    now_s.fetch_add(2, Ordering::SeqCst);
    expect_problem(get(&state, &tile(&old)).await, 404, "unknown_frame").await;
    assert_eq!(get(&state, &tile(&new)).await.status(), StatusCode::OK);
}

/// OPERATIONS: the server keeps at most four replaced mosaics for the
/// grace period: a fifth replacement within it drops the oldest (404),
/// and the four after it are still served.
#[tokio::test]
async fn at_most_four_replaced_mosaics_are_kept() {
    let (_dir, store) = new_store().await;
    put_scans(store.as_ref(), RADAR, 12).await;
    // One clock for every replacement: all within the grace period.
    let now = scan_time(17) + Duration::minutes(2);
    let radars = vec![RadarInfo {
        id: RADAR.into(),
        name: "Test radar".into(),
        location: Some((LON0, LAT0)),
    }];
    let state = state_with_clock(
        store.clone(),
        radars,
        Arc::new(move || now),
        ApiConfig::default(),
    );
    let (t, _, _) = tile_of(7, LON0, LAT0);
    let tile = |path: &str| format!("{path}/256/{}/{}/{}/1/0_0.png", t.z, t.x, t.y);
    let latest_path = |v: serde_json::Value| {
        v["radar"]["nowcast"].as_array().unwrap().last().unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut replaced = vec![latest_path(
        json(get(&state, "/public/weather-maps.json").await).await,
    )];
    for k in 12..=16 {
        put_scan_on(store.as_ref(), RADAR, k, &grid()).await;
        state.nowcasts().update(RADAR, now).await.unwrap();
        replaced.push(latest_path(
            json(get(&state, "/public/weather-maps.json").await).await,
        ));
    }
    let current = replaced.pop().unwrap();
    assert_eq!(replaced.len(), 5);
    expect_problem(get(&state, &tile(&replaced[0])).await, 404, "unknown_frame").await;
    for path in replaced[1..].iter().chain([&current]) {
        assert_eq!(
            get(&state, &tile(path)).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
}
