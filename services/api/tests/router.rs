//! Router tests without a network: `tower::ServiceExt::oneshot` against the
//! full app over a real embedded (redb) store filled with synthetic scans.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use common::*;
use raincast_algorithms::render::rate_rgba;
use raincast_api::ApiConfig;

#[tokio::test]
async fn healthz_and_readyz() {
    let f = fixture().await;
    let r = get(&f.state, "/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["status"], "ok");

    let r = get(&f.state, "/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["status"], "ready");
    let radars = v["radars"].as_array().unwrap();
    assert_eq!(radars[0]["id"], RADAR);
    assert_eq!(radars[0]["fresh"], true);
    assert_eq!(radars[0]["age_s"], 120);
    assert_eq!(radars[1]["fresh"], false);

    // A day later nothing is fresh: 503 with Retry-After.
    let stale = fixture_with(3, scan_time(2) + Duration::days(1), ApiConfig::default()).await;
    let r = get(&stale.state, "/readyz").await;
    assert!(r.headers().contains_key("retry-after"));
    expect_problem(r, 503, "stale_data").await;
}

#[tokio::test]
async fn radars_list_coverage_and_status() {
    let f = fixture().await;
    let v = json(get(&f.state, "/v1/radars").await).await;
    let radars = v["radars"].as_array().unwrap();
    assert_eq!(radars.len(), 2);
    let r = &radars[0];
    assert_eq!(r["id"], RADAR);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["latest_scan_time"], "2024-06-16T10:55:00Z");
    assert_eq!(r["location"]["lon"], LON0);
    assert_eq!(r["coverage"]["type"], "Polygon");
    let ring = r["coverage"]["coordinates"][0].as_array().unwrap();
    assert_eq!(ring.first(), ring.last());
    assert!(ring.len() > 8);
    // The grid is 160 km x 128 km around (8, 47): the box is about 2.1 x 1.15 degrees.
    let b = &r["bounds"];
    let (w, e) = (b["west"].as_f64().unwrap(), b["east"].as_f64().unwrap());
    let (s, n) = (b["south"].as_f64().unwrap(), b["north"].as_f64().unwrap());
    assert!(
        (e - w - 2.1).abs() < 0.1 && (n - s - 1.15).abs() < 0.05,
        "{b}"
    );
    assert!(w < LON0 && LON0 < e && s < LAT0 && LAT0 < n);
    assert_eq!(radars[1]["status"], "no_data");
    assert!(radars[1]["coverage"].is_null());

    let one = json(get(&f.state, &format!("/v1/radars/{RADAR}")).await).await;
    assert_eq!(one["id"], RADAR);
    expect_problem(get(&f.state, "/v1/radars/nope").await, 404, "unknown_radar").await;
}

/// The listing comes in pages of `limit` scans; `next` keeps the range and
/// carries a cursor, and following it visits every scan once.
#[tokio::test]
async fn scan_listing_is_paginated() {
    let f = fixture().await;
    let mut uri = format!(
        "/v1/radars/{RADAR}/scans?from=2024-06-16T09:00:00Z&to=2024-06-16T11:00:00Z&limit=5"
    );
    let mut times = Vec::new();
    let mut pages = 0;
    loop {
        let v = json(get(&f.state, &uri).await).await;
        pages += 1;
        assert_eq!(v["limit"], 5);
        assert_eq!(v["from"], "2024-06-16T09:00:00Z");
        assert_eq!(v["to"], "2024-06-16T11:00:00Z");
        let scans = v["scans"].as_array().unwrap();
        assert_eq!(v["count"], scans.len());
        assert!(scans.len() <= 5);
        times.extend(
            scans
                .iter()
                .map(|s| s["time"].as_str().unwrap().to_string()),
        );
        match v["next"].as_str() {
            Some(next) => {
                assert!(next.contains("from=2024-06-16T09:00:00Z&to=2024-06-16T11:00:00Z"));
                uri = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let all: Vec<String> = (0..12)
        .map(|k| scan_time(k).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    assert_eq!(times, all);
    // The default page is 100 scans; limits outside 1..=1000 are refused.
    let v = json(get(&f.state, &format!("/v1/radars/{RADAR}/scans")).await).await;
    assert_eq!(
        (v["limit"].as_u64(), v["count"].as_u64()),
        (Some(100), Some(12))
    );
    assert!(v["next"].is_null());
    for bad in ["limit=0", "limit=1001", "after=soon"] {
        let code = if bad.starts_with("after") {
            "invalid_time"
        } else {
            "out_of_range"
        };
        expect_problem(
            get(&f.state, &format!("/v1/radars/{RADAR}/scans?{bad}")).await,
            400,
            code,
        )
        .await;
    }
}

#[tokio::test]
async fn scan_listing_and_bad_ranges() {
    let f = fixture().await;
    // Default: the two hours before now.
    let v = json(get(&f.state, &format!("/v1/radars/{RADAR}/scans")).await).await;
    assert_eq!(v["count"], 12);
    assert_eq!(v["scans"][0]["time"], "2024-06-16T10:00:00Z");
    assert!(v["scans"][0]["rain_cells"].as_u64().unwrap() > 50);
    assert_eq!(
        v["scans"][0]["links"]["png"],
        format!("/v1/radars/{RADAR}/scans/2024-06-16T10:00:00Z?format=png")
    );
    let v = json(
        get(
            &f.state,
            &format!(
                "/v1/radars/{RADAR}/scans?from=2024-06-16T10:10:00Z&to=2024-06-16T10:20:00%2B00:00"
            ),
        )
        .await,
    )
    .await;
    assert_eq!(v["count"], 3);

    let bad = [
        ("from=yesterday", "invalid_time"),
        (
            "from=2024-06-16T11:00:00Z&to=2024-06-16T10:00:00Z",
            "invalid_range",
        ),
        (
            "from=2000-01-01T00:00:00Z&to=2024-06-16T10:00:00Z",
            "range_too_long",
        ),
        ("from=1500-01-01T00:00:00Z", "out_of_range"),
        ("to=9999-12-31T23:59:59Z", "out_of_range"),
        ("from=12", "invalid_time"),
    ];
    for (q, code) in bad {
        expect_problem(
            get(&f.state, &format!("/v1/radars/{RADAR}/scans?{q}")).await,
            400,
            code,
        )
        .await;
    }
    expect_problem(
        get(&f.state, "/v1/radars/nope/scans").await,
        404,
        "unknown_radar",
    )
    .await;
    // `[api] max_scan_range_h` (168 by default): a week is answered, a
    // week and an hour is refused.
    let week = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/scans?from=2024-06-09T11:00:00Z&to=2024-06-16T11:00:00Z"),
    )
    .await;
    assert_eq!(week.status(), 200);
    expect_problem(
        get(
            &f.state,
            &format!("/v1/radars/{RADAR}/scans?from=2024-06-09T10:00:00Z&to=2024-06-16T11:00:00Z"),
        )
        .await,
        400,
        "range_too_long",
    )
    .await;
}

#[tokio::test]
async fn scan_as_json_npy_and_png() {
    let f = fixture().await;
    let base = format!("/v1/radars/{RADAR}/scans/2024-06-16T10:10:00Z");
    let expected = field(2);

    // JSON: values rounded to 0.001 mm/h, null for no data.
    let v = json(get(&f.state, &base).await).await;
    assert_eq!(v["grid"]["rows"], ROWS);
    assert_eq!(v["grid"]["cols"], COLS);
    assert_eq!(v["units"], "mm/h");
    assert_eq!(v["source_format"], "odim");
    let rows = v["rate_mm_h"].as_array().unwrap();
    assert_eq!(rows.len(), ROWS);
    assert!(rows[0][0].is_null());
    let (mut checked, mut rain) = (0, 0);
    for r in (0..ROWS).step_by(3) {
        for c in (0..COLS).step_by(2) {
            let want = expected[[r, c]];
            let got = &rows[r][c];
            if want.is_nan() {
                assert!(got.is_null());
            } else {
                let g = got.as_f64().unwrap() as f32;
                // Sparse quantisation (1.3e-4 relative) plus rounding to 0.001.
                assert!(
                    (g - want).abs() <= 0.0006 + want * 2e-4,
                    "{r},{c}: {g} vs {want}"
                );
                rain += (want > 0.0) as usize;
            }
            checked += 1;
        }
    }
    assert!(checked > 500 && rain > 20);

    // npy: header and exact shape.
    let r = get(&f.state, &format!("{base}?format=npy")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".npy"));
    let b = body_bytes(r).await;
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert!(String::from_utf8_lossy(&b[10..10 + hlen]).contains(&format!("({ROWS}, {COLS})")));
    assert_eq!(b.len(), 10 + hlen + ROWS * COLS * 4);
    let at = |r: usize, c: usize| {
        let i = 10 + hlen + 4 * (r * COLS + c);
        f32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    };
    assert!(at(0, 0).is_nan());
    assert!((at(32, 22) - expected[[32, 22]]).abs() < 1e-3 * expected[[32, 22]]);

    // Native PNG: one pixel per cell, in the scale's colour of the stored value.
    let r = get(&f.state, &format!("{base}?format=png&projection=native")).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(!r.headers().contains_key("x-raincast-bounds"));
    let (w, h, px) = decode_png(&body_bytes(r).await);
    assert_eq!((w as usize, h as usize), (COLS, ROWS));
    let mut colours = std::collections::HashSet::new();
    for r in 0..ROWS {
        for c in 0..COLS {
            let i = 4 * (r * COLS + c);
            assert_eq!(&px[i..i + 4], &rate_rgba(at(r, c)), "{r},{c}");
            colours.insert(px[i..i + 4].to_vec());
        }
    }
    // No data, no rain and several bands all appear.
    assert!(colours.len() >= 6, "{}", colours.len());

    // Map PNG: bounds header, sized about like the grid.
    let r = get(&f.state, &format!("{base}?format=png")).await;
    let bounds: Vec<f64> = r.headers()["x-raincast-bounds"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(bounds.len(), 4);
    assert!(bounds[0] < LON0 && LON0 < bounds[2] && bounds[1] < LAT0 && LAT0 < bounds[3]);
    let (w, h, _) = decode_png(&body_bytes(r).await);
    assert!((w as f64 / h as f64 - 80.0 / 64.0).abs() < 0.15, "{w}x{h}");

    // `latest` resolves to the newest scan, and is cached briefly: it
    // names another scan after the next one (a scan's own time, an hour).
    let r = get(&f.state, &format!("/v1/radars/{RADAR}/scans/latest")).await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=10");
    let v = json(r).await;
    assert_eq!(v["time"], "2024-06-16T10:55:00Z");
    let r = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/scans/2024-06-16T10:55:00Z"),
    )
    .await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
}

#[tokio::test]
async fn frames_carry_validators_and_answer_304() {
    let f = fixture().await;
    let uri = format!("/v1/radars/{RADAR}/scans/2024-06-16T10:10:00Z?format=png");
    let r = get(&f.state, &uri).await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].clone();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
    assert!(r.headers().contains_key("last-modified"));
    let req = Request::get(&uri)
        .header("if-none-match", etag.clone())
        .body(Body::empty())
        .unwrap();
    let r = call(&f.state, req).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag);
    assert!(body_bytes(r).await.is_empty());
    // A different representation has a different validator.
    let r = get(&f.state, &format!("{uri}&projection=native")).await;
    assert_ne!(r.headers()["etag"], etag);
}

#[tokio::test]
async fn bad_scan_parameters() {
    let f = fixture().await;
    let base = format!("/v1/radars/{RADAR}/scans");
    expect_problem(
        get(&f.state, &format!("{base}/2024-06-16T10:10:00Z?format=xml")).await,
        400,
        "invalid_query",
    )
    .await;
    expect_problem(
        get(
            &f.state,
            &format!("{base}/2024-06-16T10:10:00Z?projection=utm"),
        )
        .await,
        400,
        "invalid_query",
    )
    .await;
    expect_problem(
        get(&f.state, &format!("{base}/not-a-time")).await,
        400,
        "invalid_time",
    )
    .await;
    expect_problem(
        get(&f.state, &format!("{base}/2024-06-16T10:11:00Z")).await,
        404,
        "scan_not_found",
    )
    .await;
    expect_problem(
        get(&f.state, "/v1/radars/empty/scans/latest").await,
        404,
        "scan_not_found",
    )
    .await;
    expect_problem(
        get(&f.state, "/v1/radars/nope/scans/latest").await,
        404,
        "unknown_radar",
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_methods_and_bodies() {
    let f = fixture().await;
    expect_problem(get(&f.state, "/v2/nothing").await, 404, "no_such_route").await;
    let r = call(
        &f.state,
        Request::post("/v1/radars").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    expect_problem(r, 405, "method_not_allowed").await;
    // Bodies over the limit are refused before any handler runs.
    let small = fixture_with(
        1,
        scan_time(0),
        ApiConfig {
            body_limit_bytes: 16,
            ..ApiConfig::default()
        },
    )
    .await;
    let req = Request::get("/healthz")
        .header("content-length", "1000")
        .body(Body::from(vec![b'x'; 1000]))
        .unwrap();
    let p = expect_problem(call(&small.state, req).await, 413, "body_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("16 bytes"), "{p}");
    assert_eq!(p["instance"], "/healthz");
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_it_is_a_short_token() {
    let f = fixture().await;
    let with_id = |id: &str| {
        Request::get("/v2/nothing")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let p = expect_problem(
        call(&f.state, with_id("abc-123_x.y:z")).await,
        404,
        "no_such_route",
    )
    .await;
    assert_eq!(p["request_id"], "abc-123_x.y:z");
    // Quotes and markup, or a 10 kB id: replaced by the server's own.
    for bad in [
        "a\"b<script>".to_string(),
        "a b".to_string(),
        "x".repeat(10_000),
    ] {
        let p = expect_problem(call(&f.state, with_id(&bad)).await, 404, "no_such_route").await;
        let id = p["request_id"].as_str().unwrap();
        assert!(id != bad && id.len() <= 64 && !id.contains('"'), "{id}");
    }
}

#[tokio::test]
async fn cors_is_configurable() {
    let closed = fixture().await;
    let req = Request::get("/healthz")
        .header("origin", "https://maps.example.org")
        .body(Body::empty())
        .unwrap();
    assert!(!call(&closed.state, req)
        .await
        .headers()
        .contains_key("access-control-allow-origin"));

    let open = fixture_with(
        1,
        scan_time(0),
        ApiConfig {
            cors_origins: vec!["https://maps.example.org".into()],
            ..ApiConfig::default()
        },
    )
    .await;
    let req = Request::get("/healthz")
        .header("origin", "https://maps.example.org")
        .body(Body::empty())
        .unwrap();
    let r = call(&open.state, req).await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://maps.example.org"
    );
    let preflight = Request::options("/v1/radars")
        .header("origin", "https://maps.example.org")
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .unwrap();
    let r = call(&open.state, preflight).await;
    assert!(r.status().is_success());
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    let other = Request::get("/healthz")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert!(!call(&open.state, other)
        .await
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let f = fixture().await;
    get(&f.state, "/v1/radars/nope").await;
    get(&f.state, "/healthz").await;
    let r = get(&f.state, "/metrics").await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(
        text.contains(
            r#"raincast_http_requests_total{method="GET",route="/v1/radars/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(text
        .contains(r#"raincast_http_requests_total{method="GET",route="/healthz",status="200"} 1"#));
    assert!(text.contains("raincast_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn shared_registry_exposes_other_collectors() {
    let registry = prometheus::Registry::new();
    let ingest = prometheus::IntCounter::new("raincast_ingest_scans_total", "test").unwrap();
    registry.register(Box::new(ingest.clone())).unwrap();
    ingest.inc_by(7);
    let f = fixture().await;
    let nowcasts = raincast_nowcast::NowcastService::new(f.store.clone(), Default::default());
    let state = raincast_api::AppState::builder(f.store.clone(), nowcasts)
        .registry(registry)
        .build()
        .unwrap();
    let text = String::from_utf8(body_bytes(get(&state, "/metrics").await).await).unwrap();
    assert!(text.contains("raincast_ingest_scans_total 7"), "{text}");
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn map_page_and_assets_are_bundled() {
    let f = fixture().await;
    let r = get(&f.state, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(html.contains("id=\"time-slider\"") && html.contains("/assets/leaflet.js"));
    // Only local references: the page works offline.
    assert!(!html.contains("http://") && !html.contains("https://"));
    for (name, ty) in [
        ("leaflet.js", "text/javascript"),
        ("leaflet.css", "text/css"),
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("LICENSE-leaflet.txt", "text/plain"),
    ] {
        let r = get(&f.state, &format!("/assets/{name}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{name}"
        );
        let etag = r.headers()["etag"].clone();
        assert!(!body_bytes(r).await.is_empty());
        let req = Request::get(format!("/assets/{name}"))
            .header("if-none-match", etag)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&f.state, req).await.status(), StatusCode::NOT_MODIFIED);
    }
    let js = String::from_utf8(body_bytes(get(&f.state, "/assets/app.js").await).await).unwrap();
    assert!(
        !js.contains("http://") && !js.contains("https://"),
        "app.js must not call other hosts"
    );
    expect_problem(
        get(&f.state, "/assets/../Cargo.toml").await,
        404,
        "no_such_route",
    )
    .await;
    expect_problem(
        get(&f.state, "/assets/secret.txt").await,
        404,
        "no_such_asset",
    )
    .await;
}

#[tokio::test]
async fn basemap_geojson_and_map_settings() {
    let f = fixture().await;
    // Switzerland and around: borders, lakes, Zürich with its umlaut.
    let r = get(
        &f.state,
        "/v1/basemap?west=5.5&south=45.5&east=10.5&north=48",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let v = json(r).await;
    assert_eq!(v["type"], "FeatureCollection");
    assert!(v["attribution"].as_str().unwrap().contains("Natural Earth"));
    let feats = v["features"].as_array().unwrap();
    let kind = |k: &str| {
        feats
            .iter()
            .filter(|f| f["properties"]["kind"] == k)
            .count()
    };
    assert!(
        kind("border") >= 3 && kind("lake") >= 2,
        "{} features",
        feats.len()
    );
    let zurich = feats
        .iter()
        .find(|f| f["properties"]["name"] == "Zürich")
        .expect("Zürich");
    let c = &zurich["geometry"]["coordinates"];
    assert!((c[0].as_f64().unwrap() - 8.55).abs() < 0.05);
    assert!((c[1].as_f64().unwrap() - 47.37).abs() < 0.05);
    // Revalidation.
    let req = Request::get("/v1/basemap?west=5.5&south=45.5&east=10.5&north=48")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&f.state, req).await.status(), StatusCode::NOT_MODIFIED);
    // Bad boxes are named.
    for q in [
        "west=10&south=45&east=5&north=48",
        "west=-170&south=-80&east=170&north=80",
        // Just over 90° a side (OPERATIONS: at most 90°).
        "west=0&south=0&east=90.5&north=10",
        "west=0&south=-45.5&east=10&north=45",
        "west=5&south=95&east=6&north=96",
        "west=5&south=45",
    ] {
        let r = get(&f.state, &format!("/v1/basemap?{q}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    // 90° a side is served.
    let r = get(&f.state, "/v1/basemap?west=0&south=-45&east=90&north=45").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The settings: no online basemap unless configured.
    let v = json(get(&f.state, "/v1/map-settings").await).await;
    assert!(v["basemap_url"].is_null());
    let online = fixture_with(
        1,
        scan_time(0),
        ApiConfig {
            basemap_url: Some("https://tiles.example/{z}/{x}/{y}.png".into()),
            ..ApiConfig::default()
        },
    )
    .await;
    let v = json(get(&online.state, "/v1/map-settings").await).await;
    assert_eq!(v["basemap_url"], "https://tiles.example/{z}/{x}/{y}.png");
}

#[tokio::test]
async fn rainviewer_paths_are_open_to_other_origins() {
    let f = fixture().await;
    let req = |uri: &str| {
        Request::get(uri)
            .header("origin", "https://app.example")
            .body(Body::empty())
            .unwrap()
    };
    let r = call(&f.state, req("/public/weather-maps.json")).await;
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // A preflight (a fetch with a header outside the safelisted ones).
    let preflight = Request::options("/public/weather-maps.json")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-app-version")
        .body(Body::empty())
        .unwrap();
    let r = call(&f.state, preflight).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert_eq!(r.headers()["access-control-allow-headers"], "*");
    // An unknown frame's problem too (a client must read the error).
    let r = call(&f.state, req("/v2/radar/nope/256/0/0/0/1/1_0.png")).await;
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // The rest of the API follows [api] cors_origins (closed by default).
    let r = call(&f.state, req("/v1/radars")).await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}
