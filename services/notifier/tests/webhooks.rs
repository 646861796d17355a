//! Webhook subscriptions end to end against a receiver on 127.0.0.1: the
//! notifier's evaluation and claims, the queued deliveries, Standard
//! Webhooks signatures (checked by the receiver with its own HMAC code),
//! retries with the same `webhook-id`, two instances, and the SSRF checks
//! at delivery time.
//!
//! Backoff is made short through [`WebhookSettings`] and time is passed in
//! (`run_due(now)`), so no test waits on the wall clock. The state store is
//! the embedded store, and DynamoDB (dynalite) for the two-instance test.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use chrono::{Duration, Utc};
use common::{jobs_at, state_store, t0, two_instances, TestStores};
use hmac::{Hmac, KeyInit, Mac};
use raincast_notifier::claims::Claims;
use raincast_notifier::notify::{Job, NoGif, Notifier, ReportStatus};
use raincast_notifier::publish::outbox::OutboxPublisher;
use raincast_notifier::publish::webhook::WebhookPublisher;
use raincast_notifier::webhook::{
    self, subscription_kinds, subscription_place, Deliverer, DeliveryStatus, WebhookSettings,
};
use raincast_store::subscriptions::{self, NewSubscription, Subscription};
use raincast_store::StateStore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    body: String,
    signature_ok: bool,
    answered: u16,
    /// When the request arrived, UNIX seconds.
    received_at: i64,
}

#[derive(Default)]
struct Receiver {
    /// The subscription's secret, once known.
    secret: Mutex<Option<String>>,
    /// Answer 500 to this many requests first.
    fail_first: AtomicU32,
    /// Hold every answer this long, milliseconds (a slow receiver).
    delay_ms: AtomicU32,
    got: Mutex<Vec<Received>>,
}

/// The receiver's own check: HMAC-SHA256 of `id.timestamp.body` with the
/// base64-decoded part of `whsec_…`, compared with each `v1,` signature.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(b64) = secret.strip_prefix("whsec_") else {
        return false;
    };
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    mac.update(h("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(h("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    h("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == want)
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let received_at = Utc::now().timestamp();
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
    }
    let secret = r.secret.lock().expect("lock").clone().unwrap_or_default();
    let fail = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().expect("lock").push(Received {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        body: String::from_utf8_lossy(&body).into_owned(),
        signature_ok: verify(&secret, &headers, &body),
        answered: status.as_u16(),
        received_at,
    });
    status
}

async fn start_receiver() -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, addr)
}

fn private() -> WebhookSettings {
    WebhookSettings {
        allow_private: true,
        first_retry: Duration::seconds(1),
        ..WebhookSettings::default()
    }
}

async fn subscribe(store: &dyn StateStore, r: &Receiver, url: &str) -> Subscription {
    let sub = subscriptions::create(
        store,
        "key1",
        NewSubscription {
            name: "Office".into(),
            lat: 50.85,
            lon: 4.35,
            radius_km: 10.0,
            url: url.into(),
            events: vec![
                "rain_expected".into(),
                "rain_started".into(),
                "heavy_rain".into(),
            ],
        },
        100,
        Utc::now(),
    )
    .await
    .expect("subscribe");
    *r.secret.lock().expect("lock") = Some(sub.secret.clone());
    sub
}

/// One notifier instance over `store` for `sub`, as `service::pass` builds it.
fn instance(
    store: &Arc<dyn StateStore>,
    owner: &str,
    sub: &Subscription,
) -> (Notifier<WebhookPublisher>, Deliverer) {
    let kinds = BTreeMap::from([(subscription_place(sub).slug(), subscription_kinds(sub))]);
    let n = Notifier::new(
        Claims::new(store.clone(), owner, Duration::minutes(10)),
        WebhookPublisher::new(store.clone(), [sub.clone()], private()),
    )
    .with_kinds(kinds);
    (n, Deliverer::new(store.clone(), private(), owner))
}

fn sub_jobs(sub: &Subscription, step: i64) -> Vec<Job> {
    jobs_at(subscription_place(sub), step)
}

/// Scans 0 to 3 of the shower: the first event (rain expected) is claimed
/// and its delivery queued.
async fn queue_first_event(n: &Notifier<WebhookPublisher>, sub: &Subscription) {
    for step in 0..=3 {
        n.run_once(
            &sub_jobs(sub, step),
            &NoGif,
            t0() + Duration::minutes(5 * step),
        )
        .await
        .expect("pass");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_and_carry_the_event() {
    let (r, addr) = start_receiver().await;
    let dir = raincast_testkit::TempDir::new("webhooks");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (n, d) = instance(&store, "a", &sub);
    for step in 0..40 {
        let reports = n
            .run_once(
                &sub_jobs(&sub, step),
                &NoGif,
                t0() + Duration::minutes(5 * step),
            )
            .await
            .expect("pass");
        for rep in &reports {
            assert_eq!(rep.status, ReportStatus::Posted, "{rep:?}");
        }
        d.run_due(Utc::now()).await.expect("deliver");
    }
    let got = r.got.lock().expect("lock").clone();
    // The shower gives four kinds; the subscription asked for three.
    assert_eq!(got.len(), 3, "{got:#?}");
    let mut kinds = Vec::new();
    for g in &got {
        assert!(g.signature_ok, "bad signature: {g:?}");
        assert!(g.id.starts_with("msg_") && g.timestamp.parse::<i64>().is_ok());
        assert_eq!(g.answered, 204);
        let v: Value = serde_json::from_str(&g.body).expect("json");
        let kind = v["type"].as_str().expect("type").to_string();
        assert_eq!(v["data"]["kind"], kind.as_str());
        let key = v["key"].as_str().expect("key");
        assert!(key.starts_with(&subscription_place(&sub).slug()), "{key}");
        assert_eq!(g.id, webhook::webhook_id(&sub.id, key));
        assert_eq!(v["data"]["subscription"], sub.id.as_str());
        assert_eq!(v["data"]["place"]["name"], "Office");
        assert!(v["data"]["summary"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(v["data"]["links"]["gif"]
            .as_str()
            .is_some_and(|l| l.ends_with("/v1/radars/synthetic/animation.gif")));
        assert!(v["data"]["links"]["forecast"]
            .as_str()
            .is_some_and(|l| l.starts_with("/v1/forecast?lat=50.85&lon=4.35")));
        assert!(v["data"]["rate_mm_h"].as_f64().is_some());
        // The intensity is the word the summary tells.
        let intensity = v["data"]["intensity"].as_str().expect("intensity");
        let summary = v["data"]["summary"].as_str().expect("summary");
        assert!(
            summary.to_lowercase().contains(intensity),
            "{intensity} / {summary}"
        );
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(kinds, ["heavy_rain", "rain_expected", "rain_started"]);
    // A receiver with another secret refuses them.
    *r.secret.lock().expect("lock") = Some("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let first = &got[0];
    let mut h = HeaderMap::new();
    h.insert("webhook-id", first.id.parse().expect("h"));
    h.insert("webhook-timestamp", first.timestamp.parse().expect("h"));
    assert!(!verify(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &h,
        first.body.as_bytes()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_the_same_webhook_id() {
    let (r, addr) = start_receiver().await;
    r.fail_first.store(2, Ordering::SeqCst);
    let dir = raincast_testkit::TempDir::new("webhooks-retry");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (n, a) = instance(&store, "a", &sub);
    queue_first_event(&n, &sub).await;
    let now = Utc::now();
    let first = a.run_due(now).await.expect("deliver");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].http_status, Some(500));
    assert_eq!(first[0].status, DeliveryStatus::Pending);
    // Not due again before its backoff (1 s, then 2 s).
    assert!(a.run_due(now).await.expect("deliver").is_empty());
    let second = a
        .run_due(now + Duration::seconds(1))
        .await
        .expect("deliver");
    assert_eq!(second[0].http_status, Some(500));
    assert!(a
        .run_due(now + Duration::seconds(2))
        .await
        .expect("deliver")
        .is_empty());
    // Another instance (a restart) continues from the stored state.
    let (_, b) = instance(&store, "b", &sub);
    let third = b
        .run_due(now + Duration::seconds(3))
        .await
        .expect("deliver");
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].status, DeliveryStatus::Delivered);
    assert_eq!(third[0].attempt, 3);
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 500, 204]
    );
    assert!(got
        .iter()
        .all(|g| g.id == got[0].id && g.body == got[0].body));
    assert!(got.iter().all(|g| g.signature_ok));
    // Delivered is final.
    assert!(b
        .run_due(now + Duration::hours(2))
        .await
        .expect("deliver")
        .is_empty());
    let key: Value = serde_json::from_str(&got[0].body).expect("json");
    let stored = webhook::get(store.as_ref(), &sub.id, key["key"].as_str().expect("key"))
        .await
        .expect("get")
        .expect("record");
    assert_eq!(
        (stored.status, stored.attempts),
        (DeliveryStatus::Delivered, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_keeps_failing_gets_every_attempt_then_none() {
    let (r, addr) = start_receiver().await;
    r.fail_first.store(u32::MAX, Ordering::SeqCst);
    let dir = raincast_testkit::TempDir::new("webhooks-give-up");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (n, a) = instance(&store, "a", &sub);
    queue_first_event(&n, &sub).await;
    // Default schedule: check it spans over an hour, then run it.
    let settings = WebhookSettings::default();
    let span: i64 = (1..settings.max_attempts)
        .map(|k| settings.backoff(k).num_seconds())
        .sum();
    // README: 15 s, 30 s, 1 min, … doubling: 9 attempts over about an hour.
    assert_eq!(settings.max_attempts, 9);
    let first: Vec<i64> = (1..=3).map(|k| settings.backoff(k).num_seconds()).collect();
    assert_eq!(first, [15, 30, 60]);
    assert_eq!(span, 15 * 255, "{span}");
    let mut now = Utc::now();
    let mut last = None;
    for k in 1..=settings.max_attempts {
        let rep = a.run_due(now).await.expect("deliver");
        assert_eq!(rep.len(), 1, "attempt {k}");
        last = Some(rep[0].clone());
        now += private().backoff(k);
    }
    let last = last.expect("attempts");
    assert_eq!(last.status, DeliveryStatus::Failed);
    assert!(a
        .run_due(now + Duration::days(1))
        .await
        .expect("deliver")
        .is_empty());
    assert_eq!(
        r.got.lock().expect("lock").len(),
        settings.max_attempts as usize
    );
}

async fn two_instances_deliver_once(store: Arc<dyn StateStore>) {
    let (r, addr) = start_receiver().await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (na, da) = instance(&store, "instance-a", &sub);
    let (nb, db) = instance(&store, "instance-b", &sub);
    let posted = two_instances(&na, &nb, |step| sub_jobs(&sub, step), &NoGif).await;
    assert_eq!(posted.len(), 3, "{posted:#?}");
    // Both deliverers at once, twice (the second finds nothing due).
    for _ in 0..2 {
        let wall = Utc::now();
        let (a, b) = tokio::join!(da.run_due(wall), db.run_due(wall));
        a.expect("a");
        b.expect("b");
    }
    let got = r.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 3, "{got:#?}");
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one delivery per event");
    assert!(got.iter().all(|g| g.signature_ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_event_once_on_both_stores() {
    let dir = raincast_testkit::TempDir::new("webhooks-two");
    two_instances_deliver_once(state_store(&dir).await).await;
    let dynamo = TestStores::dynalite().await;
    two_instances_deliver_once(dynamo.state()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_again_at_delivery() {
    let (r, addr) = start_receiver().await;
    let dir = raincast_testkit::TempDir::new("webhooks-ssrf");
    let store = state_store(&dir).await;
    let port = addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        "https://10.1.2.3/hook".to_string(),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        format!("https://[::1]:{port}/hook"),
    ] {
        // Created while private addresses were allowed (or before the
        // name moved); delivered by a notifier that forbids them.
        let sub = subscribe(store.as_ref(), &r, &url).await;
        let strict = WebhookSettings::default();
        let n = Notifier::new(
            Claims::new(store.clone(), "a", Duration::minutes(10)),
            WebhookPublisher::new(store.clone(), [sub.clone()], strict.clone()),
        )
        .with_kinds(BTreeMap::from([(
            subscription_place(&sub).slug(),
            subscription_kinds(&sub),
        )]));
        queue_first_event(&n, &sub).await;
        let d = Deliverer::new(store.clone(), strict, "a");
        let rep = d.run_due(Utc::now()).await.expect("deliver");
        assert_eq!(rep.len(), 1, "{url}: {rep:?}");
        assert_eq!(rep[0].status, DeliveryStatus::Failed, "{url}");
        let err = rep[0].error.clone().unwrap_or_default();
        assert!(
            err.contains("may not reach") || err.contains("must use https"),
            "{url}: {err}"
        );
        // Final: not tried again.
        assert!(d
            .run_due(Utc::now() + Duration::hours(3))
            .await
            .expect("deliver")
            .is_empty());
    }
    assert!(
        r.got.lock().expect("lock").is_empty(),
        "a request got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscription_gets_nothing_more() {
    let (r, addr) = start_receiver().await;
    r.fail_first.store(1, Ordering::SeqCst);
    let dir = raincast_testkit::TempDir::new("webhooks-removed");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (n, d) = instance(&store, "a", &sub);
    queue_first_event(&n, &sub).await;
    let now = Utc::now();
    assert_eq!(d.run_due(now).await.expect("deliver").len(), 1);
    subscriptions::delete(store.as_ref(), &sub.key_id, &sub.id)
        .await
        .expect("delete");
    let rep = d
        .run_due(now + Duration::minutes(5))
        .await
        .expect("deliver");
    assert_eq!(rep[0].status, DeliveryStatus::Failed);
    assert_eq!(r.got.lock().expect("lock").len(), 1);
}

/// A subscription's event left open by a crashed instance is retried by the
/// subscriptions' notifier only. The places' publisher (X, Mastodon, the
/// outbox) retried every open claim, and so posted a private subscription's
/// alert, with its name, publicly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_retries_only_its_own_events() {
    // The channels are told apart by the subscriptions' id prefix, which
    // configured places may not take: one prefix in both crates.
    assert_eq!(
        raincast_config::place::RESERVED_ID_PREFIX,
        raincast_store::subscriptions::ID_PREFIX
    );
    let (r, addr) = start_receiver().await;
    let dir = raincast_testkit::TempDir::new("webhooks-channels");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let (n, _deliverer) = instance(&store, "a", &sub);
    queue_first_event(&n, &sub).await;
    // The claim as a holder that crashed before posting leaves it.
    let claim = common::reopen_first_claim(store.as_ref(), t0() - Duration::hours(1)).await;
    // The places' notifier, writing to an outbox, with a place of its own.
    let outbox = dir.path().join("outbox");
    let places = Notifier::new(
        Claims::new(store.clone(), "b", Duration::minutes(10)),
        OutboxPublisher::new(outbox.clone()),
    );
    let elsewhere = raincast_notifier::Place::new("Elsewhere", 10.0, 10.0);
    let reports = places
        .run_once(&jobs_at(elsewhere, 3), &NoGif, t0() + Duration::minutes(16))
        .await
        .expect("pass");
    assert!(
        reports.iter().all(|r| r.key != claim.event.key),
        "{reports:?}"
    );
    let slug = subscription_place(&sub).slug();
    let leaked: Vec<String> = std::fs::read_dir(&outbox)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|f| f.starts_with(&slug))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leaked.is_empty(),
        "the subscription's alert in the outbox: {leaked:?}"
    );
    // The subscriptions' notifier takes it over (and finds its delivery
    // already queued: it is not queued twice).
    let reports = n
        .run_once(&sub_jobs(&sub, 3), &NoGif, t0() + Duration::minutes(16))
        .await
        .expect("pass");
    assert!(
        reports
            .iter()
            .any(|r| r.key == claim.event.key && r.status == ReportStatus::AlreadyPosted),
        "{reports:?}"
    );
}

/// A slow receiver holds up only its own delivery: the others are sent at
/// once, each stamped (`webhook-timestamp`, signed) with its own attempt
/// time. Deliveries went one at a time, stamped with the run's start, so
/// one behind a slow receiver came late and already too old for Standard
/// Webhooks' 5-minute tolerance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_delays_no_other_delivery() {
    let (one, one_addr) = start_receiver().await;
    let (two, two_addr) = start_receiver().await;
    let dir = raincast_testkit::TempDir::new("webhooks-slow");
    let store = state_store(&dir).await;
    let mut subs = Vec::new();
    for (r, addr) in [(&one, one_addr), (&two, two_addr)] {
        subs.push(subscribe(store.as_ref(), r, &format!("http://{addr}/hook")).await);
    }
    // The slow receiver is the one whose delivery is listed first (in key
    // order: by subscription id).
    let (slow, fast) = if subs[0].id < subs[1].id {
        (one, two)
    } else {
        (two, one)
    };
    slow.delay_ms.store(4000, Ordering::SeqCst);
    for sub in &subs {
        let (n, _) = instance(&store, "a", sub);
        queue_first_event(&n, sub).await;
    }
    let (_, d) = instance(&store, "a", &subs[0]);
    // The run's clock is an hour ahead of the wall's: an attempt's time is
    // the run's `now` plus the time since the run began.
    let ahead = Duration::hours(1);
    let begun = Utc::now();
    let reports = d.run_due(begun + ahead).await.expect("deliver");
    assert_eq!(reports.len(), 2, "{reports:?}");
    let got = |r: &Receiver| r.got.lock().expect("lock").clone();
    let (s, f) = (got(&slow), got(&fast));
    assert_eq!((s.len(), f.len()), (1, 1));
    assert!(
        f[0].received_at < begun.timestamp() + 3,
        "the fast receiver waited for the slow one: {} s after the start",
        f[0].received_at - begun.timestamp()
    );
    for g in [&s[0], &f[0]] {
        assert!(g.signature_ok);
        let stamped: i64 = g.timestamp.parse().expect("a timestamp");
        let sent_at = stamped - ahead.num_seconds();
        assert!((sent_at - g.received_at).abs() <= 2, "{g:?}");
    }
}

/// A body's `intensity` is the word its summary tells: for an expected
/// rain, the peak's ("Heavy rain expected … up to 16 mm/h"), not the rate
/// at its start (which said "light" beside that summary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodys_intensity_is_its_summarys() {
    let (r, addr) = start_receiver().await;
    let dir = raincast_testkit::TempDir::new("webhooks-intensity");
    let store = state_store(&dir).await;
    let sub = subscribe(store.as_ref(), &r, &format!("http://{addr}/hook")).await;
    let place = subscription_place(&sub);
    let mut event = common::first_event(&place);
    event.rate_mm_h = 1.0;
    event.peak_mm_h = 16.0;
    let summary = raincast_notifier::text::compose(&event, &place);
    let v: Value =
        serde_json::from_str(&webhook::body(&event, &sub, &summary, None)).expect("json");
    assert_eq!(v["data"]["intensity"], "heavy", "{summary}");
    assert!(summary.starts_with("Heavy rain expected"), "{summary}");
}
