//! The Mastodon publisher and the notifier against a local Mastodon
//! stand-in (axum on 127.0.0.1:0). The stand-in checks the bearer token on
//! every request, takes the GIF with `POST /api/v2/media` and answers 202
//! (still processing), answers the first `GET /api/v1/media/{id}` with 206
//! (as Mastodon does while processing) and later ones with 200 and a URL,
//! refuses a status whose media is not processed, requires an
//! `Idempotency-Key` and answers a repeated key with the status it created
//! first, as Mastodon does.

mod common;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Duration;
use common::{jobs_at, state_store, t0, two_instances, TestStores};
use raincast_config::Secret;
use raincast_notifier::claims::Claims;
use raincast_notifier::notify::{GifSource, Notifier};
use raincast_notifier::publish::mastodon::{MastodonConfig, MastodonPublisher};
use raincast_notifier::publish::{Post, PublishContext, PublishError, Publisher};
use raincast_notifier::{Event, Place};
use raincast_store::StateStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "test-mastodon-token";

#[derive(Default)]
struct Inner {
    /// media id → polls seen so far.
    media: BTreeMap<String, u32>,
    /// Statuses created: (id, text, media ids).
    statuses: Vec<(String, String, Vec<String>)>,
    /// Idempotency-Key → status id.
    keys: BTreeMap<String, String>,
    /// Requests refused for their token.
    unauthorised: u32,
    /// Requests without an Idempotency-Key, or with unprocessed media.
    bad: Vec<String>,
    polls: u32,
}

type Shared = Arc<Mutex<Inner>>;

fn authorised(s: &Shared, h: &HeaderMap) -> bool {
    let ok =
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !ok {
        s.lock().expect("lock").unauthorised += 1;
    }
    ok
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "The access token is invalid"})),
    )
        .into_response()
}

async fn upload(State(s): State<Shared>, h: HeaderMap, mut form: Multipart) -> Response {
    if !authorised(&s, &h) {
        return refused();
    }
    let mut gif = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            let ty = field.content_type().map(str::to_string);
            let bytes = field.bytes().await.unwrap_or_default();
            if ty.as_deref() == Some("image/gif") && bytes.starts_with(b"GIF89a") {
                gif = Some(bytes);
            }
        }
    }
    if gif.is_none() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "no GIF"})),
        )
            .into_response();
    }
    let mut g = s.lock().expect("lock");
    let id = format!("{}", 1000 + g.media.len());
    g.media.insert(id.clone(), 0);
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "type": "gifv", "url": null})),
    )
        .into_response()
}

async fn media(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorised(&s, &h) {
        return refused();
    }
    let mut g = s.lock().expect("lock");
    g.polls += 1;
    let Some(polls) = g.media.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response();
    };
    *polls += 1;
    if *polls == 1 {
        return (
            StatusCode::PARTIAL_CONTENT,
            Json(json!({"id": id, "url": null})),
        )
            .into_response();
    }
    Json(json!({"id": id, "type": "gifv", "url": format!("https://files.example/{id}.mp4")}))
        .into_response()
}

async fn statuses(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    if !authorised(&s, &h) {
        return refused();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut g = s.lock().expect("lock");
    let Some(key) = h.get("idempotency-key").and_then(|k| k.to_str().ok()) else {
        g.bad.push("no Idempotency-Key".into());
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "no key"}))).into_response();
    };
    if let Some(id) = g.keys.get(key) {
        return Json(json!({"id": id})).into_response();
    }
    let media: Vec<String> = v["media_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if media.iter().any(|m| g.media.get(m).is_none_or(|p| *p < 2)) {
        g.bad.push(format!("unprocessed media {media:?}"));
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "media not processed"})),
        )
            .into_response();
    }
    let id = format!("{}", 9000 + g.statuses.len());
    let text = v["status"].as_str().unwrap_or_default().to_string();
    g.statuses.push((id.clone(), text, media));
    g.keys.insert(key.to_string(), id.clone());
    Json(json!({"id": id})).into_response()
}

async fn start_standin() -> (Shared, SocketAddr) {
    let s: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v2/media", post(upload))
        .route("/api/v1/media/{id}", get(media))
        .route("/api/v1/statuses", post(statuses))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (s, addr)
}

fn publisher(addr: SocketAddr, token: &str) -> MastodonPublisher {
    let mut cfg = MastodonConfig::new(format!("http://{addr}"));
    cfg.poll_interval = std::time::Duration::from_millis(5);
    cfg.backoff_initial = std::time::Duration::from_millis(5);
    MastodonPublisher::new(Secret::new(token), cfg).expect("client")
}

/// A tiny valid GIF per event.
struct TestGifs;

impl GifSource for TestGifs {
    fn gif(&self, _event: &Event, _place: &Place) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut out, 2, 2, &[0, 0, 0, 255, 255, 255])
                .map_err(|e| e.to_string())?;
            let frame = gif::Frame {
                width: 2,
                height: 2,
                buffer: std::borrow::Cow::Borrowed(&[0, 1, 1, 0]),
                ..gif::Frame::default()
            };
            enc.write_frame(&frame).map_err(|e| e.to_string())?;
        }
        Ok(Some(out))
    }
}

fn place() -> Place {
    let mut p = Place::new("Brussels", 50.85, 4.35);
    p.clearing = true;
    p
}

async fn two_instances_post_once(store: Arc<dyn StateStore>) {
    let (s, addr) = start_standin().await;
    let a = Notifier::new(
        Claims::new(store.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, TOKEN),
    );
    let b = Notifier::new(
        Claims::new(store.clone(), "instance-b", Duration::minutes(10)),
        publisher(addr, TOKEN),
    );
    let posted = two_instances(&a, &b, |step| jobs_at(place(), step), &TestGifs).await;
    assert_eq!(posted.len(), 4, "{posted:#?}");
    let g = s.lock().expect("lock");
    assert_eq!(g.statuses.len(), 4, "one status per event");
    assert!(g.bad.is_empty(), "{:?}", g.bad);
    assert_eq!(g.unauthorised, 0);
    // Every status has its processed GIF, and was keyed by its event key.
    assert!(g.statuses.iter().all(|(_, _, m)| m.len() == 1));
    let mut keys: Vec<&String> = g.keys.keys().collect();
    keys.sort();
    let mut want: Vec<&String> = posted.iter().map(|r| &r.key).collect();
    want.sort();
    assert_eq!(keys, want);
    // Each upload was polled past its 206.
    assert!(g.polls >= 8, "{}", g.polls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_post_each_event_once_on_both_stores() {
    let dir = raincast_testkit::TempDir::new("mastodon");
    two_instances_post_once(state_store(&dir).await).await;
    let dynamo = TestStores::dynalite().await;
    two_instances_post_once(dynamo.state()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_post_returns_the_first_status() {
    let (s, addr) = start_standin().await;
    let p = publisher(addr, TOKEN);
    let ev = common::first_event(&place());
    let gif = TestGifs.gif(&ev, &place()).expect("gif").expect("gif");
    let post = Post {
        event: &ev,
        place: &place(),
        text: "Rain expected",
        gif: Some(&gif),
    };
    // The first answer "lost": publishing again is safe.
    let first = p
        .publish(&post, &PublishContext::unbounded())
        .await
        .expect("post");
    assert_eq!(p.find(&post, t0()).await.expect("find"), None);
    let again = p
        .publish(&post, &PublishContext::unbounded())
        .await
        .expect("post");
    assert_eq!(first.id, again.id);
    assert_eq!(s.lock().expect("lock").statuses.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_nothing_is_posted() {
    let (s, addr) = start_standin().await;
    let p = publisher(addr, "not-the-token");
    let ev = common::first_event(&place());
    let err = p
        .publish(
            &Post {
                event: &ev,
                place: &place(),
                text: "text only",
                gif: None,
            },
            &PublishContext::unbounded(),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(err, PublishError::Http { status: 401, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-token"));
    let g = s.lock().expect("lock");
    assert_eq!((g.statuses.len(), g.unauthorised), (0, 1));
}
