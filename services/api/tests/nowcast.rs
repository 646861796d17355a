//! Nowcast, forecast and animation endpoints over the embedded store: the
//! nowcast is computed by the real nowcast service from the stored scans.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use raincast_algorithms::render::RAIN_SCALE;

fn lonlat(row: f64, col: f64) -> (f64, f64) {
    grid().rowcol_to_lonlat(row, col).unwrap()
}

#[tokio::test]
async fn nowcast_lists_past_and_forecast_frames() {
    let f = fixture().await;
    let v = json(get(&f.state, &format!("/v1/radars/{RADAR}/nowcast")).await).await;
    assert_eq!(v["issued_at"], "2024-06-16T10:55:00Z");
    assert_eq!(v["latest_scan_time"], "2024-06-16T10:55:00Z");
    assert_eq!(v["step_minutes"], 5.0);
    assert_eq!(v["inputs"].as_array().unwrap().len(), 3);
    let frames = v["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 12);
    assert_eq!(frames[0]["lead_min"], 5);
    assert_eq!(frames[0]["time"], "2024-06-16T11:00:00Z");
    assert!(frames[0]["max_mm_h"].as_f64().unwrap() > 5.0);
    assert_eq!(
        frames[0]["png"],
        format!("/v1/radars/{RADAR}/nowcast/frames/5?issued=2024-06-16T10:55:00Z")
    );
    // past=60 lists the scans from 09:55 to 10:55: those of 10:00..10:55.
    let past = v["past"].as_array().unwrap();
    assert_eq!(past.len(), 12);
    assert_eq!(past[11]["time"], "2024-06-16T10:55:00Z");
    let b = &v["map_bounds"];
    assert!(b["west"].as_f64().unwrap() < LON0 && b["north"].as_f64().unwrap() > LAT0);
    let v = json(get(&f.state, &format!("/v1/radars/{RADAR}/nowcast?past=15")).await).await;
    assert_eq!(v["past"].as_array().unwrap().len(), 4);

    // The radar list now shows the nowcast time.
    let radars = json(get(&f.state, "/v1/radars").await).await;
    assert_eq!(
        radars["radars"][0]["latest_nowcast_time"],
        "2024-06-16T10:55:00Z"
    );

    expect_problem(
        get(&f.state, &format!("/v1/radars/{RADAR}/nowcast?past=9999")).await,
        400,
        "out_of_range",
    )
    .await;
    expect_problem(
        get(&f.state, &format!("/v1/radars/{RADAR}/nowcast?past=-5")).await,
        400,
        "invalid_query",
    )
    .await;
    let r = get(&f.state, "/v1/radars/empty/nowcast").await;
    assert_eq!(r.headers()["retry-after"], "30");
    expect_problem(r, 503, "nowcast_unavailable").await;
    expect_problem(
        get(&f.state, "/v1/radars/nope/nowcast").await,
        404,
        "unknown_radar",
    )
    .await;
}

#[tokio::test]
async fn forecast_frames_are_pngs_with_bounds_and_validators() {
    let f = fixture().await;
    let uri = format!("/v1/radars/{RADAR}/nowcast/frames/30?issued=2024-06-16T10:55:00Z");
    let r = get(&f.state, &uri).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=86400"));
    assert_eq!(
        r.headers()["x-raincast-bounds"]
            .to_str()
            .unwrap()
            .split(',')
            .count(),
        4
    );
    let etag = r.headers()["etag"].clone();
    let png = body_bytes(r).await;
    assert_eq!(&png[1..4], b"PNG");
    let req = Request::get(&uri)
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&f.state, req).await.status(), StatusCode::NOT_MODIFIED);
    // Without `issued`: the latest nowcast, cached briefly.
    let r = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/nowcast/frames/30?projection=native"),
    )
    .await;
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=60"));

    expect_problem(
        get(
            &f.state,
            &format!("/v1/radars/{RADAR}/nowcast/frames/30?issued=2024-06-16T10:50:00Z"),
        )
        .await,
        410,
        "nowcast_superseded",
    )
    .await;
    expect_problem(
        get(&f.state, &format!("/v1/radars/{RADAR}/nowcast/frames/7")).await,
        404,
        "unknown_lead",
    )
    .await;
    // A segment that is no lead in whole minutes: named, without the
    // parser's words (it said "Cannot parse ... to a `u32`").
    for bad in ["soon", "-5", "5.0", "4294967296"] {
        let p = expect_problem(
            get(
                &f.state,
                &format!("/v1/radars/{RADAR}/nowcast/frames/{bad}"),
            )
            .await,
            404,
            "unknown_lead",
        )
        .await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("lead_min") && detail.contains(bad) && !detail.contains("u32"),
            "{detail}"
        );
    }
    // A nowcast later than the latest was never issued: 404, not 410.
    expect_problem(
        get(
            &f.state,
            &format!("/v1/radars/{RADAR}/nowcast/frames/30?issued=2099-01-01T00:00:00Z"),
        )
        .await,
        404,
        "nowcast_not_issued",
    )
    .await;
}

#[tokio::test]
async fn point_forecast_sees_the_rain_coming() {
    let f = fixture().await;
    // The blob is at column 31 at 10:55 and moves one 2-km cell per 5 min east:
    // a point 6 cells east of it is dry now and wet in about 30 minutes.
    let (lon, lat) = lonlat(32.5, 37.5);
    let v = json(get(&f.state, &format!("/v1/forecast?lat={lat}&lon={lon}")).await).await;
    assert_eq!(v["radar"]["id"], RADAR);
    assert_eq!(v["issued_at"], "2024-06-16T10:55:00Z");
    assert_eq!(v["threshold_mm_h"], 0.1);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 12);
    let at = |lead: u64| entries.iter().find(|e| e["lead_min"] == lead).unwrap();
    assert!(at(30)["intensity_mm_h"].as_f64().unwrap() > at(5)["intensity_mm_h"].as_f64().unwrap());
    assert!(
        at(30)["intensity_mm_h"].as_f64().unwrap() > 2.0,
        "{}",
        at(30)
    );
    assert!(at(30)["probability"].as_f64().unwrap() > 0.5);
    assert!(["light", "moderate", "heavy"].contains(&at(30)["intensity"].as_str().unwrap()));
    assert!(
        v["now"]["intensity_mm_h"].as_f64().unwrap() < at(30)["intensity_mm_h"].as_f64().unwrap()
    );
    let summary = v["summary"].as_str().unwrap();
    assert!(!summary.is_empty());
    assert!(v["next_hour"]["rain_starts_in_min"].as_u64().unwrap() <= 30);
    assert_eq!(v["two_hours"]["minutes"], 120);
    // Explicit radar.
    let v = json(
        get(
            &f.state,
            &format!("/v1/forecast?lat={lat}&lon={lon}&radar={RADAR}"),
        )
        .await,
    )
    .await;
    assert_eq!(v["radar"]["id"], RADAR);
}

#[tokio::test]
async fn bad_forecast_queries() {
    let f = fixture().await;
    let cases = [
        ("lat=47", 400, "invalid_query"),
        ("lon=8", 400, "invalid_query"),
        ("", 400, "invalid_query"),
        ("lat=north&lon=8", 400, "invalid_query"),
        ("lat=47&lon=8&lon=9", 400, "invalid_query"),
        ("lat=91&lon=8", 400, "out_of_range"),
        ("lat=47&lon=-180.5", 400, "out_of_range"),
        ("lat=NaN&lon=8", 400, "out_of_range"),
        ("lat=inf&lon=8", 400, "out_of_range"),
        ("lat=1e308&lon=8", 400, "out_of_range"),
        ("lat=0&lon=0", 422, "out_of_coverage"),
        ("lat=47&lon=8&radar=nope", 404, "unknown_radar"),
    ];
    for (q, status, code) in cases {
        let p = expect_problem(
            get(&f.state, &format!("/v1/forecast?{q}")).await,
            status,
            code,
        )
        .await;
        let detail = p["detail"].as_str().unwrap();
        assert!(!detail.is_empty() && detail.len() < 200, "{q}: {detail}");
    }
    // A named radar that does not see the point: the radar is named (not
    // "no radar covers", which another radar may).
    let p = expect_problem(
        get(&f.state, &format!("/v1/forecast?lat=0&lon=0&radar={RADAR}")).await,
        422,
        "out_of_coverage",
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("radar {RADAR} does not cover")),
        "{p}"
    );
    // Inside the grid but in its no-data corner: not covered.
    let (lon, lat) = lonlat(2.5, 2.5);
    expect_problem(
        get(&f.state, &format!("/v1/forecast?lat={lat}&lon={lon}")).await,
        422,
        "out_of_coverage",
    )
    .await;
    // Only a radar without scans: the nowcast is unavailable, not "no coverage".
    expect_problem(
        get(&f.state, "/v1/forecast?lat=47&lon=8&radar=empty").await,
        503,
        "nowcast_unavailable",
    )
    .await;
}

#[tokio::test]
async fn animation_gif_past_and_future() {
    let f = fixture().await;
    let uri = format!("/v1/radars/{RADAR}/animation.gif?past=60&future=60");
    let r = get(&f.state, &uri).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/gif");
    let etag = r.headers()["etag"].clone();
    let bytes = body_bytes(r).await;
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut d = opts.read_info(std::io::Cursor::new(&bytes)).unwrap();
    let (w, h) = (d.width(), d.height());
    assert!((320..=1280).contains(&w) && h <= 1280);
    let mut n = 0;
    while let Some(fr) = d.read_next_frame().unwrap() {
        assert!(fr.left + fr.width <= w && fr.top + fr.height <= h);
        n += 1;
    }
    // 12 observed scans (10:00..10:55) + 12 forecast leads (5..60 min).
    assert_eq!(n, 24);
    // Cached per nowcast and window: the same bytes again, and 304 on the ETag.
    assert_eq!(body_bytes(get(&f.state, &uri).await).await, bytes);
    let req = Request::get(&uri)
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&f.state, req).await.status(), StatusCode::NOT_MODIFIED);
    // Other windows.
    let r = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/animation.gif?past=0&future=30"),
    )
    .await;
    let mut d = gif::DecodeOptions::new()
        .read_info(std::io::Cursor::new(body_bytes(r).await))
        .unwrap();
    let mut n = 0;
    while d.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 6);

    for (q, code) in [
        ("past=0&future=0", "empty_window"),
        // Shorter than the first lead (5 min), no past: no frame at all.
        ("past=0&future=1", "empty_window"),
        ("past=1000", "out_of_range"),
        ("future=500", "out_of_range"),
        ("past=abc", "invalid_query"),
    ] {
        expect_problem(
            get(&f.state, &format!("/v1/radars/{RADAR}/animation.gif?{q}")).await,
            400,
            code,
        )
        .await;
    }
    expect_problem(
        get(&f.state, "/v1/radars/empty/animation.gif").await,
        503,
        "nowcast_unavailable",
    )
    .await;
}

#[tokio::test]
async fn colour_scale_matches_the_renderer() {
    let f = fixture().await;
    let v = json(get(&f.state, "/v1/colour-scale").await).await;
    assert_eq!(v["units"], "mm/h");
    let bands = v["bands"].as_array().unwrap();
    assert_eq!(bands.len(), RAIN_SCALE.len());
    for (b, s) in bands.iter().zip(RAIN_SCALE.iter()) {
        assert_eq!(b["min_mm_h"].as_f64().unwrap() as f32, s.min_mm_h);
        assert_eq!(
            b["color"],
            format!("#{:02x}{:02x}{:02x}", s.rgba[0], s.rgba[1], s.rgba[2])
        );
    }
    assert!(bands.last().unwrap()["max_mm_h"].is_null());
    assert_eq!(v["no_rain_rgba"][3], 0);
}
