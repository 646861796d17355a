//! `/v1/subscriptions` through the whole router: keys, the secret shown
//! once, listing and removal per key, the per-key limit, validation, and
//! the SSRF checks at subscription time.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use chrono::{Duration, Utc};
use common::*;
use raincast_api::{ApiConfig, AppState, RadarInfo, WebhookPolicy};
use raincast_nowcast::{NowcastService, NowcastSettings};
use raincast_store::{keys, subscriptions, EmbeddedStore, StateStore};
use raincast_testkit::TempDir;
use serde_json::{json, Value};
use std::sync::Arc;

struct Setup {
    _dir: TempDir,
    store: Arc<EmbeddedStore>,
    state: AppState,
    key: String,
    other: String,
}

async fn setup(policy: WebhookPolicy) -> Setup {
    let dir = TempDir::new("raincast-subs-api");
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"), Duration::days(3650))
            .await
            .unwrap(),
    );
    let (key, _) = keys::create(store.as_ref(), "app", Utc::now())
        .await
        .unwrap();
    let (other, _) = keys::create(store.as_ref(), "other app", Utc::now())
        .await
        .unwrap();
    let state = AppState::builder(
        store.clone(),
        NowcastService::new(store.clone(), NowcastSettings::default()),
    )
    .config(ApiConfig {
        key_cache_s: 0,
        ..ApiConfig::default()
    })
    .radars(vec![RadarInfo {
        id: RADAR.into(),
        name: "Test radar".into(),
        location: Some((LON0, LAT0)),
    }])
    .state_store(store.clone())
    .webhooks(policy)
    .build()
    .unwrap();
    Setup {
        _dir: dir,
        store,
        state,
        key,
        other,
    }
}

async fn send(
    s: &Setup,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> axum::http::Response<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    call(&s.state, req.body(body).unwrap()).await
}

/// `POST /v1/subscriptions` with `body`, as key `key`.
async fn post(s: &Setup, key: &str, body: Value) -> axum::http::Response<Body> {
    send(s, "POST", "/v1/subscriptions", Some(key), Some(body)).await
}

fn request(url: &str) -> Value {
    json!({
        "name": "Office", "lat": 47.377, "lon": 8.54, "radius_km": 5,
        "url": url, "events": ["rain_expected", "heavy_rain", "rain_expected"]
    })
}

const PUBLIC_URL: &str = "https://93.184.215.14/hooks/rain";

#[tokio::test]
async fn create_list_and_delete_per_key() {
    let s = setup(WebhookPolicy::default()).await;
    let resp = post(&s, &s.key, request(PUBLIC_URL)).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let created = json(resp).await;
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/subscriptions/{id}"));
    assert!(id.starts_with("sub_") && secret.starts_with("whsec_"));
    // Another method on a subscription: 405 with the route's own methods
    // (DELETE only), on the collection its two.
    for (path, allow) in [
        (location.as_str(), "DELETE"),
        ("/v1/subscriptions", "POST,GET,HEAD"),
    ] {
        let resp = send(&s, "PUT", path, Some(&s.key), None).await;
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], allow, "{path}");
    }
    assert_eq!(
        created["subscription"]["events"],
        json!(["rain_expected", "heavy_rain"]),
        "kinds deduplicated, in the order given"
    );
    assert_eq!(created["subscription"]["radius_km"], 5.0);
    // Stored under the key's public id, with the secret (signing needs it).
    let key_id = keys::key_id(&s.key);
    let stored = subscriptions::list_for_key(s.store.as_ref(), &key_id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].id.as_str(), stored[0].secret.as_str()),
        (id.as_str(), secret.as_str())
    );

    // The list never shows the secret; another key sees none of them.
    let resp = send(&s, "GET", "/v1/subscriptions", Some(&s.key), None).await;
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(body_bytes(resp).await).unwrap();
    assert!(!text.contains(&secret), "the secret is listed");
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["subscriptions"][0]["id"], id.as_str());
    assert_eq!(listed["subscriptions"][0]["url"], PUBLIC_URL);
    let resp = send(&s, "GET", "/v1/subscriptions", Some(&s.other), None).await;
    assert_eq!(json(resp).await["subscriptions"], json!([]));

    // The same URL and place again (a retried create, or another name):
    // 409 naming the first, so that no event is posted twice to one URL.
    let mut again = request(PUBLIC_URL);
    again["name"] = json!("Office again");
    let resp = post(&s, &s.key, again).await;
    let problem = expect_problem(resp, 409, "subscription_exists").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&id), "{detail}");

    // Another key cannot remove it; its own key can, once.
    let uri = format!("/v1/subscriptions/{id}");
    let resp = send(&s, "DELETE", &uri, Some(&s.other), None).await;
    expect_problem(resp, 404, "unknown_subscription").await;
    let resp = send(&s, "DELETE", &uri, Some(&s.key), None).await;
    assert_eq!(resp.status(), 204);
    let resp = send(&s, "DELETE", &uri, Some(&s.key), None).await;
    expect_problem(resp, 404, "unknown_subscription").await;
    let resp = send(&s, "GET", "/v1/subscriptions", Some(&s.key), None).await;
    assert_eq!(json(resp).await["subscriptions"], json!([]));
    // Removed, its URL and place can be subscribed again.
    let resp = post(&s, &s.key, request(PUBLIC_URL)).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn a_key_is_required_and_a_revoked_key_is_refused() {
    let s = setup(WebhookPolicy::default()).await;
    for (method, uri) in [
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/subscriptions"),
        ("DELETE", "/v1/subscriptions/sub_1"),
    ] {
        let resp = send(&s, method, uri, None, Some(request(PUBLIC_URL))).await;
        expect_problem(resp, 401, "missing_key").await;
        let resp = send(&s, method, uri, Some("rc_nope"), Some(request(PUBLIC_URL))).await;
        expect_problem(resp, 401, "invalid_key").await;
    }
    keys::revoke(s.store.as_ref(), &keys::key_id(&s.key), Utc::now())
        .await
        .unwrap();
    let resp = post(&s, &s.key, request(PUBLIC_URL)).await;
    expect_problem(resp, 401, "revoked_key").await;
    let state: &dyn StateStore = s.store.as_ref();
    assert!(subscriptions::list_all(state).await.unwrap().is_empty());
}

#[tokio::test]
async fn at_most_max_subscriptions_per_key() {
    let s = setup(WebhookPolicy {
        max_per_key: 2,
        ..WebhookPolicy::default()
    })
    .await;
    for i in 0..2 {
        let resp = post(&s, &s.key, request(&format!("{PUBLIC_URL}/{i}"))).await;
        assert_eq!(resp.status(), 201);
    }
    let resp = post(&s, &s.key, request(PUBLIC_URL)).await;
    expect_problem(resp, 422, "subscription_limit").await;
    // The limit is per key.
    let resp = post(&s, &s.other, request(PUBLIC_URL)).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn private_and_metadata_urls_are_refused_at_subscription_time() {
    let s = setup(WebhookPolicy::default()).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.7/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/hook",
        // A name that resolves to loopback.
        "https://localhost/hook",
        // Plain http, and credentials in the URL.
        "http://93.184.215.14/hook",
        "https://user:pw@93.184.215.14/hook",
    ] {
        let resp = post(&s, &s.key, request(url)).await;
        let p = expect_problem(resp, 400, "invalid_url").await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{url}");
    }
    let state: &dyn StateStore = s.store.as_ref();
    assert!(subscriptions::list_all(state).await.unwrap().is_empty());
    // allow_private_webhooks lifts it (tests, private networks).
    let open = setup(WebhookPolicy {
        allow_private: true,
        ..WebhookPolicy::default()
    })
    .await;
    let resp = send(
        &open,
        "POST",
        "/v1/subscriptions",
        Some(&open.key),
        Some(request("http://127.0.0.1:9/hook")),
    )
    .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn bad_bodies_name_what_is_wrong() {
    let s = setup(WebhookPolicy::default()).await;
    let mut cases = vec![
        (json!({"name": "x"}), "invalid_body"),
        (json!([1, 2]), "invalid_body"),
    ];
    let mut bad = |field: &str, value: Value, code: &'static str| {
        let mut v = request(PUBLIC_URL);
        v[field] = value;
        cases.push((v, code));
    };
    bad("events", json!([]), "invalid_event");
    bad("events", json!(["snow"]), "invalid_event");
    bad("name", json!(""), "invalid_name");
    bad("name", json!("n".repeat(65)), "invalid_name");
    bad("lat", json!(91.0), "out_of_range");
    bad("radius_km", json!(0), "out_of_range");
    bad("radius_km", json!(500), "out_of_range");
    bad("url", json!("not a url"), "invalid_url");
    bad("extra", json!(1), "invalid_body");
    for (body, code) in cases {
        let resp = post(&s, &s.key, body.clone()).await;
        expect_problem(resp, 400, code).await;
    }
    // A body over `[api] body_limit_bytes` sent without a Content-Length is
    // refused while it is read: a 413 naming the limit, not a 400.
    let mut big = request(PUBLIC_URL);
    big["name"] = json!("n".repeat(70 * 1024));
    let req = Request::post("/v1/subscriptions")
        .header("authorization", format!("Bearer {}", s.key))
        .header("content-type", "application/json")
        .body(Body::from(big.to_string()))
        .unwrap();
    assert!(req.headers().get("content-length").is_none());
    let p = expect_problem(call(&s.state, req).await, 413, "body_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("65536 bytes"), "{p}");
}
