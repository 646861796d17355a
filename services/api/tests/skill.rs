//! `/v1/radars/{id}/skill` over the embedded store: the nowcast service
//! scores its earlier nowcasts as the scans arrive one by one.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::*;
use raincast_api::ApiConfig;

#[tokio::test]
async fn skill_per_lead_and_method_after_scans_arrive() {
    let f = fixture_with(3, scan_time(2), ApiConfig::default()).await;
    // Scans arrive one by one; the service updates to each.
    for n in 3..=12 {
        put_scans(f.store.as_ref(), RADAR, n).await;
        let now = scan_time(n - 1) + Duration::minutes(1);
        f.state.nowcasts().update(RADAR, now).await.unwrap();
        // Scoring runs in the background after each update.
        f.state.nowcasts().scoring_settled().await;
    }
    let v = json(get(&f.state, &format!("/v1/radars/{RADAR}/skill?window=24h")).await).await;
    assert_eq!(v["radar"], RADAR);
    assert_eq!(v["window"], "24h");
    assert_eq!(v["until"], "2024-06-16T11:00:00Z");
    assert_eq!(v["probability_threshold_mm_h"], 0.1);
    let leads = v["leads"].as_array().unwrap();
    // Nowcasts at scans 2..=10 (10:10..10:50), verified by scans 3..=11:
    // +5 min by 9 scans, +10 by 8, ... +45 by 1.
    let got: Vec<(u64, u64)> = leads
        .iter()
        .map(|l| {
            (
                l["lead_min"].as_u64().unwrap(),
                l["raincast"]["cases"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(u64, u64)> = (1..=9).map(|k| (5 * k, 10 - k)).collect();
    assert_eq!(got, want);
    let five = &leads[0];
    for method in ["raincast", "persistence"] {
        let m = &five[method];
        assert_eq!(m["cases"], 9, "{method}");
        let csi = m["csi"].as_array().unwrap();
        assert_eq!(csi.len(), 3);
        assert_eq!(csi[1]["threshold_mm_h"], 1.0);
        let c = csi[1]["csi"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c), "{method} {c}");
        assert!(m["fss"].as_f64().unwrap() > 0.0);
        assert!(m["mae_wet_mm_h"].as_f64().unwrap() >= 0.0);
        assert!(m["brier"].as_f64().unwrap() < 0.25);
        let bins = m["reliability"].as_array().unwrap();
        assert!(!bins.is_empty());
        let cells: u64 = bins.iter().map(|b| b["cells"].as_u64().unwrap()).sum();
        assert!(cells > 1000, "{cells}");
    }
    // The blob moves: Raincast beats persistence at 1 mm/h.
    assert!(
        five["raincast"]["csi"][1]["csi"].as_f64().unwrap()
            > five["persistence"]["csi"][1]["csi"].as_f64().unwrap()
    );
    // The week holds the same cases; the default window is 24 h.
    let week = json(get(&f.state, &format!("/v1/radars/{RADAR}/skill?window=7d")).await).await;
    assert_eq!(week["window"], "7d");
    assert_eq!(week["leads"], v["leads"]);
    let default = json(get(&f.state, &format!("/v1/radars/{RADAR}/skill")).await).await;
    assert_eq!(default["window"], "24h");
    // Each forecast entry carries its lead's 24 h CSI at 1 mm/h.
    let (lon, lat) = grid().rowcol_to_lonlat(32.5, 30.5).unwrap();
    let fc = json(get(&f.state, &format!("/v1/forecast?lat={lat}&lon={lon}")).await).await;
    let entries = fc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 12);
    for e in entries {
        let lead = e["lead_min"].as_u64().unwrap();
        let skill = leads.iter().find(|l| l["lead_min"].as_u64() == Some(lead));
        match skill {
            Some(l) => assert_eq!(e["recent_csi"], l["raincast"]["csi"][1]["csi"], "+{lead}"),
            None => assert!(e["recent_csi"].is_null(), "+{lead} was never scored"),
        }
    }
    assert!(entries[0]["recent_csi"].as_f64().unwrap() > 0.0);
    // The probability is calibrated at the leads whose table held
    // `min_samples` (2000) cells when the nowcast was built, raw elsewhere.
    for e in entries {
        let lead = e["lead_min"].as_u64().unwrap();
        let scored = leads.iter().any(|l| l["lead_min"].as_u64() == Some(lead));
        if !scored {
            assert_eq!(e["probability_calibrated"], false, "+{lead}");
        }
    }
    assert_eq!(entries[0]["probability_calibrated"], true);
    // A restarted service (or `raincast api` over the same store) builds or
    // loads the same nowcast calibrated from the record in the store, not
    // raw until its first scoring.
    let restarted = raincast_nowcast::NowcastService::with_live_skill(
        f.store.clone(),
        f.store.clone(),
        raincast_nowcast::NowcastSettings {
            max_lead_min: 60,
            ..raincast_nowcast::NowcastSettings::default()
        },
    );
    let again = restarted
        .update(RADAR, scan_time(11) + Duration::minutes(1))
        .await
        .unwrap();
    let again = again.nowcast().expect("the nowcast again");
    assert!(again.is_calibrated(0), "served raw after a restart");
    // The reliability diagram.
    let resp = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/skill/reliability.png?lead=5"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = body_bytes(resp).await;
    let info = png::Decoder::new(std::io::Cursor::new(png.to_vec()))
        .read_info()
        .unwrap();
    assert!(info.info().width >= 200 && info.info().height >= 200);
    let all = get(
        &f.state,
        &format!("/v1/radars/{RADAR}/skill/reliability.png"),
    )
    .await;
    assert_eq!(all.status(), 200);
    // The skill gauges, per radar, lead and method.
    let metrics =
        String::from_utf8(body_bytes(get(&f.state, "/metrics").await).await.to_vec()).unwrap();
    let five_csi = leads[0]["raincast"]["csi"][1]["csi"].as_f64().unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("raincast_skill_csi{")
                && l.contains("lead_min=\"5\"")
                && l.contains("method=\"raincast\"")
        })
        .unwrap_or_else(|| panic!("no raincast_skill_csi for +5: {metrics}"));
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((v - five_csi).abs() < 1e-9, "{line} vs {five_csi}");
    assert!(
        metrics.contains("raincast_skill_cases{lead_min=\"5\",radar=\"")
            && metrics.contains("raincast_skill_brier{")
    );
}

#[tokio::test]
async fn skill_errors_and_empty() {
    let f = fixture().await;
    expect_problem(
        get(&f.state, &format!("/v1/radars/{RADAR}/skill?window=3d")).await,
        400,
        "invalid_window",
    )
    .await;
    expect_problem(
        get(&f.state, "/v1/radars/nope/skill").await,
        404,
        "unknown_radar",
    )
    .await;
    // Nothing scored yet: no leads, no window bounds.
    let v = json(get(&f.state, "/v1/radars/empty/skill?window=7d").await).await;
    assert_eq!(v["leads"], serde_json::json!([]));
    assert!(v["until"].is_null());
}
