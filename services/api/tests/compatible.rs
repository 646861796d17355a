//! The Dark Sky compatible endpoint and API keys, through the whole router.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use chrono::Duration;
use common::*;
use raincast_api::{ApiConfig, AppState, RadarInfo};
use raincast_nowcast::{NowcastService, NowcastSettings};
use raincast_store::{keys, EmbeddedStore, StateStore};
use raincast_testkit::TempDir;
use std::sync::Arc;

struct Setup {
    _dir: TempDir,
    store: Arc<EmbeddedStore>,
    state: AppState,
    key: String,
}

/// 12 scans of the test radar, 2-hour nowcasts, a clock 7 minutes after
/// the last scan, one API key.
async fn setup(config: ApiConfig) -> Setup {
    setup_at(
        config,
        scan_time(11) + Duration::minutes(7) + Duration::seconds(20),
    )
    .await
}

/// [`setup`] with the clock at `now`.
async fn setup_at(config: ApiConfig, now: chrono::DateTime<chrono::Utc>) -> Setup {
    let dir = TempDir::new("raincast-compat");
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), Duration::days(3650))
            .await
            .unwrap(),
    );
    put_scans(store.as_ref(), RADAR, 12).await;
    let (key, _) = keys::create(store.as_ref(), "test app", scan_time(0))
        .await
        .unwrap();
    let nowcasts = NowcastService::new(
        store.clone(),
        NowcastSettings {
            max_lead_min: 120,
            ..NowcastSettings::default()
        },
    );
    let state = AppState::builder(store.clone(), nowcasts)
        .config(config)
        .radars(vec![RadarInfo {
            id: RADAR.into(),
            name: "Test radar".into(),
            location: Some((LON0, LAT0)),
        }])
        .state_store(store.clone())
        .clock(Arc::new(move || now))
        .build()
        .unwrap();
    Setup {
        _dir: dir,
        store,
        state,
        key,
    }
}

/// Dark Sky's error shape with this status.
async fn expect_ds_error(resp: axum::http::Response<Body>, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status);
    let v = json(resp).await;
    assert_eq!(v["code"], status, "{v}");
    v["error"].as_str().expect("error message").to_string()
}

#[tokio::test]
async fn minutely_in_every_unit_system() {
    let s = setup(ApiConfig::default()).await;
    // A point in the blob's path (row 32, east of the blob): the grid is
    // 2 km cells centred on (8 E, 47 N).
    let (lat, lon) = (LAT0, LON0 + 0.1);
    let mut si_rates = Vec::new();
    let mut si_errors = Vec::new();
    for units in ["si", "us", "ca", "uk", ""] {
        let q = if units.is_empty() {
            String::new()
        } else {
            format!("?units={units}")
        };
        let resp = get(&s.state, &format!("/forecast/{}/{lat},{lon}{q}", s.key)).await;
        assert_eq!(resp.status(), 200, "units {units}");
        let v = json(resp).await;
        assert_eq!(v["latitude"], lat);
        assert_eq!(v["longitude"], lon);
        assert_eq!(v["timezone"], "Europe/Zurich");
        assert_eq!(v["offset"], 2.0, "CEST in June");
        let expect_units = if units.is_empty() { "us" } else { units };
        assert_eq!(v["flags"]["units"], expect_units);
        assert_eq!(v["flags"]["sources"][0], RADAR);
        assert_eq!(v["flags"]["sourceTimes"][RADAR], "2024-06-16 10:55Z");
        for absent in ["hourly", "daily", "alerts"] {
            assert!(v.get(absent).is_none(), "{absent} is never sent");
        }
        let data = v["minutely"]["data"].as_array().expect("minutely.data");
        assert_eq!(data.len(), 61);
        let t0 = data[0]["time"].as_i64().unwrap();
        assert_eq!(t0 % 60, 0, "minute 0 starts on the minute");
        assert_eq!(t0, (scan_time(11) + Duration::minutes(7)).timestamp());
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["time"].as_i64().unwrap(), t0 + 60 * i as i64);
            let r = d["precipIntensity"].as_f64().expect("known intensity");
            assert!(r >= 0.0);
            assert!(d["precipIntensityError"].as_f64().unwrap() >= 0.0);
            let p = d["precipProbability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            assert_eq!(d["precipType"] == "rain", r > 0.0, "{d}");
        }
        assert!(v["minutely"]["summary"].as_str().unwrap().ends_with('.'));
        assert!(v["currently"]["time"].is_i64());
        let rates: Vec<f64> = data
            .iter()
            .map(|d| d["precipIntensity"].as_f64().unwrap())
            .collect();
        let errors: Vec<f64> = data
            .iter()
            .map(|d| d["precipIntensityError"].as_f64().unwrap())
            .collect();
        // The first request computes the spread, the later ones take it
        // from the spread cache: the same values in every unit system.
        match expect_units {
            "si" => si_errors = errors,
            "us" => {
                for (us, si) in errors.iter().zip(&si_errors) {
                    assert!(
                        (us * 25.4 - si).abs() < 2e-3 * si.max(1.0),
                        "error {us} vs {si}"
                    );
                }
            }
            _ => assert_eq!(errors, si_errors, "errors in {expect_units}"),
        }
        match expect_units {
            "si" => si_rates = rates,
            "us" => {
                for (us, si) in rates.iter().zip(&si_rates) {
                    assert!(
                        (us * 25.4 - si).abs() < 2e-3 * si.max(1.0),
                        "{us} in/h vs {si} mm/h"
                    );
                }
            }
            _ => {
                for (x, si) in rates.iter().zip(&si_rates) {
                    assert!((x - si).abs() < 1e-6, "mm/h in {expect_units}");
                }
            }
        }
    }
    assert!(
        si_rates.iter().any(|r| *r > 0.1),
        "the moving blob reaches the point within the hour: {si_rates:?}"
    );
    assert!(
        si_errors.iter().any(|e| *e > 0.0),
        "the blob's edge gives a spread: {si_errors:?}"
    );
}

#[tokio::test]
async fn exclude_and_errors_have_dark_skys_shape() {
    let s = setup(ApiConfig::default()).await;
    let base = format!("/forecast/{}", s.key);
    let v = json(
        get(
            &s.state,
            &format!("{base}/{LAT0},{LON0}?exclude=minutely,flags"),
        )
        .await,
    )
    .await;
    assert!(v.get("minutely").is_none() && v.get("flags").is_none());
    assert!(v.get("currently").is_some());
    // Outside every radar's coverage: 400 in Dark Sky's shape.
    let e = expect_ds_error(get(&s.state, &format!("{base}/-33.9,151.2")).await, 400).await;
    assert!(e.contains("coverage"), "{e}");
    let e = expect_ds_error(get(&s.state, &format!("{base}/95,8")).await, 400).await;
    assert!(e.contains("latitude"), "{e}");
    let e = expect_ds_error(
        get(&s.state, &format!("{base}/47,8?units=metric")).await,
        400,
    )
    .await;
    assert!(e.contains("units"), "{e}");
    let e = expect_ds_error(get(&s.state, &format!("{base}/47,8,1600000000")).await, 400).await;
    assert!(e.contains("time machine"), "{e}");
}

#[tokio::test]
async fn unknown_and_revoked_keys_are_refused() {
    let s = setup(ApiConfig {
        key_cache_s: 0,
        ..ApiConfig::default()
    })
    .await;
    let e = expect_ds_error(
        get(&s.state, &format!("/forecast/rc_nope/{LAT0},{LON0}")).await,
        401,
    )
    .await;
    assert!(e.contains("not valid"), "{e}");
    // An empty key: told where this endpoint takes it (the path), not the
    // `Authorization` header the /v1 endpoints read.
    for empty in ["", "%20"] {
        let e = expect_ds_error(
            get(&s.state, &format!("/forecast/{empty}/{LAT0},{LON0}")).await,
            401,
        )
        .await;
        assert!(e.contains("in its path") && !e.contains("Bearer"), "{e}");
    }
    // A key or location that is not UTF-8 once decoded: Dark Sky's JSON
    // error too (axum's rejection was plain text), echoing nothing.
    for path in [
        "/forecast/%ff%fe/47,8",
        &format!("/forecast/{}/4%ff7,8", s.key),
    ] {
        let e = expect_ds_error(get(&s.state, path).await, 400).await;
        assert!(e.contains("UTF-8") && !e.contains(&s.key), "{e}");
    }
    let id = keys::key_id(&s.key);
    keys::revoke(s.store.as_ref() as &dyn StateStore, &id, scan_time(1))
        .await
        .unwrap();
    let e = expect_ds_error(
        get(&s.state, &format!("/forecast/{}/{LAT0},{LON0}", s.key)).await,
        401,
    )
    .await;
    assert!(e.contains("revoked"), "{e}");
}

#[tokio::test]
async fn a_revoked_key_works_for_the_configured_key_cache_time_only() {
    // `[api] key_cache_s` reaches the check: with an hour, a key revoked
    // after a request still answers from the cache (the documented cost);
    // with 0 (the test above) the revocation is seen at once.
    let s = setup(ApiConfig {
        key_cache_s: 3600,
        ..ApiConfig::default()
    })
    .await;
    let url = format!("/forecast/{}/{LAT0},{LON0}", s.key);
    assert_eq!(get(&s.state, &url).await.status(), 200);
    keys::revoke(
        s.store.as_ref() as &dyn StateStore,
        &keys::key_id(&s.key),
        scan_time(1),
    )
    .await
    .unwrap();
    assert_eq!(get(&s.state, &url).await.status(), 200);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let s = setup(ApiConfig {
        rate_limit_per_minute: 3,
        ..ApiConfig::default()
    })
    .await;
    let uri = format!("/forecast/{}/{LAT0},{LON0}", s.key);
    for _ in 0..3 {
        assert_eq!(get(&s.state, &uri).await.status(), 200);
    }
    let resp = get(&s.state, &uri).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    expect_ds_error(resp, 429).await;
}

#[tokio::test]
async fn require_keys_guards_v1_with_bearer_keys() {
    let s = setup(ApiConfig {
        require_keys: true,
        ..ApiConfig::default()
    })
    .await;
    expect_problem(get(&s.state, "/v1/radars").await, 401, "missing_key").await;
    let with = |key: &str| {
        Request::get("/v1/radars")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let resp = call(&s.state, with("rc_wrong")).await;
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"raincast\""
    );
    expect_problem(resp, 401, "invalid_key").await;
    assert_eq!(call(&s.state, with(&s.key)).await.status(), 200);
    // Health stays open for load balancers.
    assert_eq!(get(&s.state, "/healthz").await.status(), 200);
    // And without require_keys, /v1 is open as before.
    let open = setup(ApiConfig::default()).await;
    assert_eq!(get(&open.state, "/v1/radars").await.status(), 200);
}

#[tokio::test]
async fn error_bodies_never_echo_the_key() {
    let s = setup(ApiConfig::default()).await;
    let resp = call(
        &s.state,
        Request::post(format!("/forecast/{}/47,8", s.key))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 405);
    let body = String::from_utf8(body_bytes(resp).await).unwrap();
    assert!(!body.contains(&s.key), "{body}");
    assert!(body.contains("/forecast/KEY/47,8"), "{body}");
}

/// Scans that stopped three hours ago: the nowcast does not reach the
/// present. `currently` says so ("Unknown precipitation", no rate: never
/// the old rain), `minutely` is left out, and `flags` carries Dark Sky's
/// `darksky-unavailable`. (The answer had neither block and nothing saying
/// why.)
#[tokio::test]
async fn a_nowcast_that_does_not_reach_the_present_says_so() {
    let s = setup_at(ApiConfig::default(), scan_time(11) + Duration::hours(3)).await;
    let (lon, lat) = grid().rowcol_to_lonlat(32.5, 30.5).unwrap();
    let r = get(
        &s.state,
        &format!("/forecast/{}/{lat},{lon}?units=si", s.key),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["currently"]["summary"], "Unknown precipitation", "{v}");
    assert!(v["currently"].get("precipIntensity").is_none(), "{v}");
    assert!(v["currently"].get("icon").is_none(), "{v}");
    assert!(v.get("minutely").is_none(), "{v}");
    let why = v["flags"]["darksky-unavailable"]
        .as_str()
        .expect("the flag");
    assert!(why.contains(RADAR), "{why}");
}
