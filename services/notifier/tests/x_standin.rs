//! The X publisher and the notifier against a local X API stand-in.
//!
//! The stand-in (axum on 127.0.0.1:0) implements the v2 media upload
//! (initialize / append / finalize / STATUS) and `POST /2/tweets`, and
//! verifies the OAuth 1.0a signature of **every** request with known test
//! credentials, using its own implementation of RFC 5849 written below
//! (not the notifier's signer). It also checks timestamps and refuses
//! replayed nonces, reassembles the chunks, decodes the GIF, can answer
//! 429 once, refuses duplicate texts like X does, and can cut the network
//! in the middle of an upload through a small TCP proxy. It also serves the
//! account's recent posts (`GET /2/users/me`, `GET /2/users/{id}/tweets`),
//! which a notifier reads before re-posting an event whose earlier attempt
//! may have gone through.
//!
//! Claims live in a real [`StateStore`] (the embedded redb store), shared by
//! the instances of a test.

mod common;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use common::{jobs_at, state_store, t0, two_instances};
use hmac::{Hmac, KeyInit, Mac};
use raincast_notifier::claims::{ClaimStatus, Claims};
use raincast_notifier::notify::{GifSource, Job, Notifier, ReportStatus};
use raincast_notifier::oauth::Credentials;
use raincast_notifier::publish::x::{XConfig, XPublisher};
use raincast_notifier::publish::{Post, PublishContext, PublishError, Publisher};
use raincast_notifier::{Event, EventKind, Place};
use raincast_store::{
    Checkpoint, LeaseOutcome, QuarantineRecord, StateStore, StoreError, StoreResult,
    VersionedRecord,
};
use raincast_testkit::TempDir;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// ---------------------------------------------------------------- credentials

const CONSUMER_KEY: &str = "test-consumer-key";
const CONSUMER_SECRET: &str = "test consumer secret/with+odd&chars";
const ACCESS_TOKEN: &str = "12345-test-access-token";
const ACCESS_SECRET: &str = "test-access-secret";

fn creds() -> Credentials {
    Credentials {
        consumer_key: CONSUMER_KEY.into(),
        consumer_secret: CONSUMER_SECRET.into(),
        access_token: ACCESS_TOKEN.into(),
        access_secret: ACCESS_SECRET.into(),
    }
}

// ------------------------------------------- independent OAuth 1.0a verifier

fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn unpct(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unpct(k, true), unpct(v, true))
        })
        .collect()
}

/// Checks an `Authorization: OAuth …` header for a request; returns the nonce.
fn verify_oauth(
    method: &str,
    url_no_query: &str,
    query: &[(String, String)],
    header: &str,
) -> Result<String, String> {
    let rest = header.strip_prefix("OAuth ").ok_or("not an OAuth header")?;
    let mut oauth: BTreeMap<String, String> = BTreeMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or("bad parameter")?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or("unquoted value")?;
        oauth.insert(k.to_string(), unpct(v, false));
    }
    let get = |k: &str| oauth.get(k).cloned().ok_or(format!("missing {k}"));
    if get("oauth_consumer_key")? != CONSUMER_KEY {
        return Err("unknown consumer key".into());
    }
    if get("oauth_token")? != ACCESS_TOKEN {
        return Err("unknown token".into());
    }
    if get("oauth_signature_method")? != "HMAC-SHA1" || get("oauth_version")? != "1.0" {
        return Err("wrong method or version".into());
    }
    let ts: i64 = get("oauth_timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    if (Utc::now().timestamp() - ts).abs() > 300 {
        return Err("timestamp out of window".into());
    }
    let given = get("oauth_signature")?;
    let mut params: Vec<(String, String)> = oauth
        .iter()
        .filter(|(k, _)| k.as_str() != "oauth_signature" && k.as_str() != "realm")
        .map(|(k, v)| (pct(k), pct(v)))
        .collect();
    params.extend(query.iter().map(|(k, v)| (pct(k), pct(v))));
    params.sort();
    let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let base = format!(
        "{}&{}&{}",
        method,
        pct(url_no_query),
        pct(&joined.join("&"))
    );
    let key = format!("{}&{}", pct(CONSUMER_SECRET), pct(ACCESS_SECRET));
    let mut mac =
        <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).map_err(|_| "key")?;
    mac.update(base.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if want != given {
        return Err(format!("signature mismatch for base string {base}"));
    }
    get("oauth_nonce")
}

// ------------------------------------------------------------------ stand-in

#[derive(Debug, Default)]
struct Media {
    total: usize,
    category: String,
    chunks: BTreeMap<usize, Vec<u8>>,
    finalized: bool,
    polls: u32,
    frames: usize,
    width: u16,
    height: u16,
}

#[derive(Debug, Clone)]
struct Tweet {
    id: String,
    text: String,
    media_ids: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    media: BTreeMap<String, Media>,
    tweets: Vec<Tweet>,
    duplicate_refusals: u32,
    nonces: HashSet<String>,
    verified: u64,
    auth_failures: Vec<String>,
    log: Vec<String>,
    rate_limited: u32,
}

#[derive(Debug, Default)]
struct StandIn {
    inner: Mutex<Inner>,
    /// Answer the next POST /2/tweets with 429 (then succeed).
    rate_limit_next_tweet: AtomicBool,
    /// Seconds to the reset of that 429 (0 = the default, 1 s).
    rate_limit_reset_s: AtomicI64,
    /// Answer this many of the next INITIALIZE requests with 503.
    fail_initialize: AtomicU32,
    /// Cut the network (through the proxy) when the next APPEND arrives.
    cut_on_append: AtomicBool,
    /// Create the next post, then answer 503 (the answer is lost: the
    /// client cannot know the post exists).
    lose_next_created: AtomicBool,
    proxy_cut: Mutex<Option<watch::Sender<bool>>>,
}

type Shared = Arc<StandIn>;

fn json_response(status: StatusCode, v: Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn problem(status: StatusCode, detail: &str) -> Response {
    json_response(
        status,
        json!({"title": status.canonical_reason(), "detail": detail, "type": "about:blank", "status": status.as_u16()}),
    )
}

impl StandIn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn oauth_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let url = format!("http://{host}{}", req.uri().path());
    let query = query_pairs(req.uri().query());
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let line = format!("{} {}", req.method(), req.uri().path());
    match verify_oauth(req.method().as_str(), &url, &query, &auth) {
        Ok(nonce) => {
            let mut g = s.lock();
            if !g.nonces.insert(nonce) {
                g.auth_failures.push(format!("{line}: replayed nonce"));
                return problem(StatusCode::UNAUTHORIZED, "replayed nonce");
            }
            g.verified += 1;
            g.log.push(line);
        }
        Err(e) => {
            s.lock().auth_failures.push(format!("{line}: {e}"));
            return problem(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    next.run(req).await
}

async fn initialize(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if s.fail_initialize
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return problem(StatusCode::BAD_REQUEST, "expected JSON");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let total = v["total_bytes"].as_u64().unwrap_or(0) as usize;
    if v["media_type"] != "image/gif" || total == 0 || total > 15 * 1024 * 1024 {
        return problem(StatusCode::BAD_REQUEST, "bad media_type or total_bytes");
    }
    let mut g = s.lock();
    g.next_id += 1;
    let id = format!("{}", 1_880_000_000_000_000_000u64 + g.next_id);
    g.media.insert(
        id.clone(),
        Media {
            total,
            category: v["media_category"].as_str().unwrap_or("").to_string(),
            ..Media::default()
        },
    );
    json_response(
        StatusCode::OK,
        json!({"data": {"id": id, "media_key": format!("16_{id}"), "expires_after_secs": 86400}}),
    )
}

async fn append(State(s): State<Shared>, Path(id): Path<String>, mut form: Multipart) -> Response {
    if s.cut_on_append.swap(false, Ordering::SeqCst) {
        if let Some(tx) = s
            .proxy_cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(true);
        }
        // Let the proxy drop this connection before any answer goes out.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut segment: Option<usize> = None;
    let mut data: Option<Vec<u8>> = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("segment_index") => segment = field.text().await.ok().and_then(|t| t.parse().ok()),
            Some("media") => data = field.bytes().await.ok().map(|b| b.to_vec()),
            _ => {}
        }
    }
    let (Some(segment), Some(data)) = (segment, data) else {
        return problem(StatusCode::BAD_REQUEST, "segment_index and media required");
    };
    let mut g = s.lock();
    let Some(m) = g.media.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "unknown media id");
    };
    if segment > 999 || m.finalized {
        return problem(StatusCode::BAD_REQUEST, "bad segment");
    }
    m.chunks.insert(segment, data);
    json_response(
        StatusCode::OK,
        json!({"data": {"expires_at": 1_900_000_000}}),
    )
}

async fn finalize(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let mut g = s.lock();
    let Some(m) = g.media.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "unknown media id");
    };
    // Segments must be contiguous from 0 and add up to total_bytes.
    if m.chunks.keys().copied().ne(0..m.chunks.len()) {
        return problem(StatusCode::BAD_REQUEST, "missing segments");
    }
    let bytes: Vec<u8> = m.chunks.values().flatten().copied().collect();
    if bytes.len() != m.total {
        return problem(StatusCode::BAD_REQUEST, "size differs from total_bytes");
    }
    // Decode the GIF: every frame must decode.
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = match opts.read_info(std::io::Cursor::new(&bytes)) {
        Ok(d) => d,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("not a GIF: {e}")),
    };
    m.width = dec.width();
    m.height = dec.height();
    loop {
        match dec.read_next_frame() {
            Ok(Some(_)) => m.frames += 1,
            Ok(None) => break,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("bad GIF frame: {e}")),
        }
    }
    m.finalized = true;
    json_response(
        StatusCode::OK,
        json!({"data": {"id": id, "size": m.total, "processing_info": {"state": "pending", "check_after_secs": 1}}}),
    )
}

async fn status(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    if q.get("command").map(String::as_str) != Some("STATUS") {
        return problem(StatusCode::BAD_REQUEST, "command=STATUS required");
    }
    let id = q.get("media_id").cloned().unwrap_or_default();
    let mut g = s.lock();
    let Some(m) = g.media.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "unknown media id");
    };
    m.polls += 1;
    let state = if m.finalized { "succeeded" } else { "failed" };
    json_response(
        StatusCode::OK,
        json!({"data": {"id": id, "processing_info": {"state": state, "progress_percent": 100}}}),
    )
}

async fn tweets(State(s): State<Shared>, body: Bytes) -> Response {
    if s.rate_limit_next_tweet.swap(false, Ordering::SeqCst) {
        s.lock().rate_limited += 1;
        let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        let reset = Utc::now().timestamp() + s.rate_limit_reset_s.load(Ordering::SeqCst).max(1);
        r.headers_mut()
            .insert("x-rate-limit-reset", HeaderValue::from(reset));
        r.headers_mut()
            .insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let text = v["text"].as_str().unwrap_or("").to_string();
    if text.is_empty() || text.chars().count() > 280 {
        return problem(StatusCode::BAD_REQUEST, "text missing or too long");
    }
    let media_ids: Vec<String> = v["media"]["media_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut g = s.lock();
    for id in &media_ids {
        match g.media.get(id) {
            Some(m) if m.finalized && m.polls > 0 && m.category == "tweet_gif" => {}
            _ => return problem(StatusCode::BAD_REQUEST, "media not ready"),
        }
    }
    if g.tweets.iter().any(|t| t.text == text) {
        g.duplicate_refusals += 1;
        return problem(
            StatusCode::FORBIDDEN,
            "You are not allowed to create a Tweet with duplicate content.",
        );
    }
    g.next_id += 1;
    let id = format!("{}", 1_900_000_000_000_000_000u64 + g.next_id);
    g.tweets.push(Tweet {
        id: id.clone(),
        text: text.clone(),
        media_ids,
    });
    if s.lose_next_created.swap(false, Ordering::SeqCst) {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    json_response(
        StatusCode::CREATED,
        json!({"data": {"id": id, "text": text}}),
    )
}

/// The account of the test credentials.
const USER_ID: &str = "4242";

async fn users_me() -> Response {
    json_response(
        StatusCode::OK,
        json!({"data": {"id": USER_ID, "name": "Raincast test", "username": "raincast_test"}}),
    )
}

/// The account's posts, newest first, as X shows them: `&<>` escaped and a
/// `https://t.co/…` link for attached media.
async fn user_tweets(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    if id != USER_ID {
        return problem(StatusCode::NOT_FOUND, "no such user");
    }
    let g = s.lock();
    let data: Vec<Value> = g
        .tweets
        .iter()
        .rev()
        .map(|t| {
            let mut text = t
                .text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            if !t.media_ids.is_empty() {
                text.push_str(&format!(" https://t.co/m{}", t.id));
            }
            json!({"id": t.id, "text": text, "edit_history_tweet_ids": [t.id]})
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"data": data, "meta": {"result_count": data.len()}}),
    )
}

async fn start_standin() -> (Shared, SocketAddr) {
    let s: Shared = Arc::new(StandIn::default());
    let app = Router::new()
        .route("/2/media/upload/initialize", post(initialize))
        .route("/2/media/upload/{id}/append", post(append))
        .route("/2/media/upload/{id}/finalize", post(finalize))
        .route("/2/media/upload", get(status))
        .route("/2/tweets", post(tweets))
        .route("/2/users/me", get(users_me))
        .route("/2/users/{id}/tweets", get(user_tweets))
        .layer(middleware::from_fn_with_state(s.clone(), oauth_layer))
        .with_state(s.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (s, addr)
}

/// A TCP proxy in front of the stand-in whose traffic can be cut: when cut,
/// open connections are dropped and new ones are closed at once.
async fn start_proxy(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                break;
            };
            if *rx.borrow() {
                drop(down);
                continue;
            }
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    _ = rx.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    (addr, tx)
}

fn publisher(addr: SocketAddr, creds: Credentials) -> XPublisher {
    let cfg = XConfig {
        base_url: format!("http://{addr}"),
        chunk_bytes: 256,
        max_attempts: 3,
        backoff_initial: std::time::Duration::from_millis(20),
        backoff_max: std::time::Duration::from_millis(100),
        request_timeout: std::time::Duration::from_secs(10),
        ..XConfig::default()
    };
    XPublisher::new(creds, cfg).expect("client")
}

// ------------------------------------------------------------ test fixtures

/// A real animated GIF: 3 frames of 48 × 32 with a moving bar; the frame
/// index and the event kind change the pixels so every event's GIF differs.
struct TestGifs;

impl GifSource for TestGifs {
    fn gif(&self, event: &Event, _place: &Place) -> Result<Option<Vec<u8>>, String> {
        let (w, h) = (48u16, 32u16);
        let palette = [0u8, 0, 0, 255, 255, 255, 0, 90, 200, 200, 40, 40];
        let mut out = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut out, w, h, &palette).map_err(|e| e.to_string())?;
            enc.set_repeat(gif::Repeat::Infinite)
                .map_err(|e| e.to_string())?;
            for f in 0..3u16 {
                let pixels: Vec<u8> = (0..h)
                    .flat_map(|y| {
                        (0..w).map(move |x| {
                            if (x + 7 * f) % 16 < 4 {
                                2
                            } else if y < 4 {
                                3
                            } else {
                                ((x ^ y) & 1) as u8
                            }
                        })
                    })
                    .collect();
                let mut frame = gif::Frame::from_indexed_pixels(w, h, pixels, None);
                frame.delay = 50 + event.kind as u16;
                enc.write_frame(&frame).map_err(|e| e.to_string())?;
            }
        }
        Ok(Some(out))
    }
}

fn place() -> Place {
    let mut p = Place::new("Brussels", 50.85, 4.35)
        .with_time_zone("Europe/Brussels")
        .expect("zone");
    p.clearing = true;
    p.hashtags = vec!["rain".into()];
    p
}

fn jobs(step: i64) -> Vec<Job> {
    jobs_at(place(), step)
}

// --------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_posted_once_with_signed_requests_and_a_429() {
    let (s, addr) = start_standin().await;
    s.rate_limit_next_tweet.store(true, Ordering::SeqCst);
    let dir = TempDir::new("x-standin");
    let n = Notifier::new(
        Claims::new(state_store(&dir).await, "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let mut reports = Vec::new();
    for step in 0..40 {
        let now = t0() + Duration::minutes(5 * step);
        reports.extend(n.run_once(&jobs(step), &TestGifs, now).await.expect("pass"));
    }
    let kinds: Vec<EventKind> = reports.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, EventKind::ALL.to_vec());
    assert!(
        reports.iter().all(|r| r.status == ReportStatus::Posted),
        "{reports:#?}"
    );
    assert!(reports
        .iter()
        .all(|r| r.gif_bytes > 0 && r.post_id.is_some()));

    // A second pass over the same scans posts nothing.
    for step in 0..40 {
        let again = n
            .run_once(&jobs(step), &TestGifs, t0())
            .await
            .expect("pass");
        assert!(again.is_empty(), "{again:?}");
    }

    {
        let g = s.lock();
        assert!(g.auth_failures.is_empty(), "{:?}", g.auth_failures);
        assert_eq!(g.rate_limited, 1, "the stand-in answered 429 once");
        assert_eq!(g.tweets.len(), 4);
        assert_eq!(g.duplicate_refusals, 0);
        for (t, r) in g.tweets.iter().zip(&reports) {
            assert_eq!(t.text, r.text);
            assert_eq!(Some(&t.id), r.post_id.as_ref());
            assert_eq!(t.media_ids.len(), 1);
            let m = &g.media[&t.media_ids[0]];
            assert_eq!((m.frames, m.width, m.height), (3, 48, 32));
            assert!(m.chunks.len() >= 2, "GIF sent in several APPEND chunks");
        }
        // Every request was verified; the flow of the first post is as documented.
        assert_eq!(g.verified as usize, g.log.len());
        let first: Vec<&str> = g
            .log
            .iter()
            .map(String::as_str)
            .take_while(|l| !l.ends_with("/2/tweets"))
            .collect();
        assert_eq!(first[0], "POST /2/media/upload/initialize");
        assert!(first[1].starts_with("POST /2/media/upload/") && first[1].ends_with("/append"));
        assert!(first.iter().any(|l| l.ends_with("/finalize")));
        assert_eq!(first.last().copied(), Some("GET /2/media/upload"));
        // Two POST /2/tweets for the first post: the 429, then the success.
        let tweet_posts = g
            .log
            .iter()
            .filter(|l| l.as_str() == "POST /2/tweets")
            .count();
        assert_eq!(tweet_posts, 5);
    }

    let claims = n.claims().all().await.expect("claims");
    assert_eq!(claims.len(), 4);
    assert!(claims
        .iter()
        .all(|c| c.status == ClaimStatus::Posted && c.publisher.as_deref() == Some("x")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_by_the_standin() {
    let (s, addr) = start_standin().await;
    let mut bad = creds();
    bad.consumer_secret.push('x');
    let p = publisher(addr, bad);
    let err = p
        .create_post("hello", &[], &PublishContext::unbounded())
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, PublishError::Http { status: 401, .. }),
        "{err:?}"
    );
    let mut wrong_token = creds();
    wrong_token.access_token = "someone-else".into();
    let err = publisher(addr, wrong_token)
        .create_post("hello", &[], &PublishContext::unbounded())
        .await
        .expect_err("refused");
    assert!(matches!(err, PublishError::Http { status: 401, .. }));
    let g = s.lock();
    assert_eq!(g.auth_failures.len(), 2, "{:?}", g.auth_failures);
    assert!(g.auth_failures[0].contains("signature mismatch"));
    assert!(g.tweets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_refusal_counts_as_already_posted() {
    let (s, addr) = start_standin().await;
    let p = publisher(addr, creds());
    let first = p
        .create_post("same text", &[], &PublishContext::unbounded())
        .await
        .expect("post");
    assert!(!first.already_posted);
    let second = p
        .create_post("same text", &[], &PublishContext::unbounded())
        .await
        .expect("duplicate is not an error");
    assert!(second.already_posted);
    assert_eq!(s.lock().tweets.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failure_mid_upload_stays_pending_then_posts_once() {
    let (s, upstream) = start_standin().await;
    let (proxy, cut) = start_proxy(upstream).await;
    *s.proxy_cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(cut.clone());
    s.cut_on_append.store(true, Ordering::SeqCst);
    let n = Notifier::new(
        Claims::in_memory("instance-a", Duration::minutes(10)),
        publisher(proxy, creds()),
    );
    // Scan 0 reveals "rain expected"; the network goes down during its first APPEND.
    let r = n.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, EventKind::RainExpected);
    assert_eq!(r[0].status, ReportStatus::Pending, "{r:?}");
    assert!(
        r[0].error
            .as_deref()
            .unwrap_or("")
            .contains("network error during media append"),
        "{r:?}"
    );
    let claims = n.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Pending);
    assert_eq!(claims[0].attempts, 1);
    assert!(s.lock().tweets.is_empty());

    // Still down at the next scan: still pending.
    let r = n
        .run_once(&jobs(1), &TestGifs, t0() + Duration::minutes(5))
        .await
        .expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Pending);

    // The network is back: the next run posts it, exactly once.
    cut.send_replace(false);
    let r = n
        .run_once(&jobs(1), &TestGifs, t0() + Duration::minutes(6))
        .await
        .expect("pass");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, ReportStatus::Posted);
    let r = n
        .run_once(&jobs(2), &TestGifs, t0() + Duration::minutes(10))
        .await
        .expect("pass");
    assert!(r.is_empty(), "{r:?}");
    {
        let g = s.lock();
        assert_eq!(g.tweets.len(), 1);
        assert_eq!(g.duplicate_refusals, 0);
        assert!(g.auth_failures.is_empty(), "{:?}", g.auth_failures);
    }
    let claims = n.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Posted);
    assert_eq!(claims[0].attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_expire_on_the_data_clock() {
    let (s, upstream) = start_standin().await;
    let (proxy, cut) = start_proxy(upstream).await;
    cut.send_replace(true); // down from the start
    let n = Notifier::new(
        Claims::in_memory("instance-a", Duration::minutes(10)),
        publisher(proxy, creds()),
    );
    let r = n.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    assert_eq!(r[0].status, ReportStatus::Pending);
    // 40 min of data later (expiry was scan + 30 min at most), still down: expired.
    let r = n
        .run_once(&jobs(8), &TestGifs, t0() + Duration::minutes(40))
        .await
        .expect("pass");
    let expired: Vec<_> = r
        .iter()
        .filter(|r| r.status == ReportStatus::Expired)
        .collect();
    assert_eq!(expired.len(), 1, "{r:?}");
    assert_eq!(expired[0].kind, EventKind::RainExpected);
    cut.send_replace(false);
    let r = n
        .run_once(&jobs(9), &TestGifs, t0() + Duration::minutes(45))
        .await
        .expect("pass");
    assert!(r.iter().all(|r| r.kind != EventKind::RainExpected), "{r:?}");
    assert!(s.lock().tweets.iter().all(|t| !t.text.contains("expected")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifiers_at_once_post_each_event_once() {
    let (s, addr) = start_standin().await;
    let dir = TempDir::new("x-standin");
    let store = state_store(&dir).await;
    let a = Notifier::new(
        Claims::new(store.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let b = Notifier::new(
        Claims::new(store.clone(), "instance-b", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let posted = two_instances(&a, &b, jobs, &TestGifs).await;
    let kinds: HashSet<EventKind> = posted.iter().map(|r| r.kind).collect();
    assert_eq!(posted.len(), 4, "{posted:#?}");
    assert_eq!(kinds.len(), 4);
    let g = s.lock();
    assert_eq!(g.tweets.len(), 4);
    assert_eq!(
        g.duplicate_refusals, 0,
        "dedupe came from the claims, not from X"
    );
    assert!(g.auth_failures.is_empty(), "{:?}", g.auth_failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_trait_posts_text_only() {
    let (s, addr) = start_standin().await;
    let p = publisher(addr, creds());
    let ev = common::first_event(&place());
    let r = p
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
        .expect("post");
    assert!(!r.already_posted);
    let g = s.lock();
    assert_eq!(g.tweets.len(), 1);
    assert!(g.tweets[0].media_ids.is_empty());
    assert!(g.media.is_empty());
}

// ------------------------------------------------ exactly once (issue 12)

/// A state store whose record writes fail on demand: every write of a
/// "posted" claim fails while `fail_posted` is above zero (counting down;
/// `u32::MAX` = always).
struct FlakyState {
    inner: Arc<dyn StateStore>,
    fail_posted: AtomicU32,
    failed: AtomicU32,
}

#[async_trait::async_trait]
impl StateStore for FlakyState {
    async fn get_checkpoint(&self, radar: &str) -> StoreResult<Option<Checkpoint>> {
        self.inner.get_checkpoint(radar).await
    }
    async fn put_checkpoint(&self, c: &Checkpoint) -> StoreResult<bool> {
        self.inner.put_checkpoint(c).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<LeaseOutcome> {
        self.inner.acquire_lease(name, owner, ttl, now).await
    }
    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.inner.renew_lease(name, owner, ttl, now).await
    }
    async fn release_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.inner.release_lease(name, owner, now).await
    }
    async fn quarantine(&self, r: &QuarantineRecord) -> StoreResult<()> {
        self.inner.quarantine(r).await
    }
    async fn list_quarantined(&self, radar: &str) -> StoreResult<Vec<QuarantineRecord>> {
        self.inner.list_quarantined(radar).await
    }
    async fn get_quarantined(
        &self,
        radar: &str,
        key: &str,
    ) -> StoreResult<Option<QuarantineRecord>> {
        self.inner.get_quarantined(radar, key).await
    }
    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u32> {
        self.inner.begin_attempt(radar, key, owner, now).await
    }
    async fn end_attempt(&self, radar: &str, key: &str) -> StoreResult<()> {
        self.inner.end_attempt(radar, key).await
    }
    async fn get_record(&self, key: &str) -> StoreResult<Option<VersionedRecord>> {
        self.inner.get_record(key).await
    }
    async fn put_record(&self, key: &str, value: &str, expected: Option<u64>) -> StoreResult<u64> {
        if value.contains("\"status\":\"posted\"") {
            let left = self.fail_posted.load(Ordering::SeqCst);
            if left > 0 {
                if left != u32::MAX {
                    self.fail_posted.store(left - 1, Ordering::SeqCst);
                }
                self.failed.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Unavailable {
                    backend: "flaky",
                    op: "put record",
                    reason: "injected failure".into(),
                });
            }
        }
        self.inner.put_record(key, value, expected).await
    }
    async fn list_records(&self, prefix: &str) -> StoreResult<Vec<(String, VersionedRecord)>> {
        self.inner.list_records(prefix).await
    }
}

fn tweet_requests(s: &StandIn) -> usize {
    s.lock()
        .log
        .iter()
        .filter(|l| l.as_str() == "POST /2/tweets")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_expiring_during_a_slow_post_is_not_posted_twice() {
    // Instance A holds 3-second leases; X makes its post wait 6 s (429).
    // A must not wait past its lease: B, running meanwhile, takes the claim
    // over once A's lease has run out and posts it, once.
    let (s, addr) = start_standin().await;
    s.rate_limit_next_tweet.store(true, Ordering::SeqCst);
    s.rate_limit_reset_s.store(5, Ordering::SeqCst);
    let dir = TempDir::new("x-standin");
    let store = state_store(&dir).await;
    let quick = |addr| {
        let cfg = XConfig {
            request_timeout: std::time::Duration::from_secs(1),
            ..publisher(addr, creds()).config().clone()
        };
        XPublisher::new(creds(), cfg).expect("client")
    };
    let a = Notifier::new(
        Claims::new(store.clone(), "instance-a", Duration::seconds(3)),
        quick(addr),
    );
    let b = Notifier::new(
        Claims::new(store.clone(), "instance-b", Duration::minutes(10)),
        quick(addr),
    );
    let started = std::time::Instant::now();
    let (ja, jb) = (jobs(0), jobs(0));
    let (ra, rb) = tokio::join!(a.run_once(&ja, &TestGifs, t0()), async {
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        b.run_once(&jb, &TestGifs, t0() + Duration::milliseconds(3500))
            .await
    });
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(ra.len(), 1);
    assert_eq!(ra[0].status, ReportStatus::Pending, "{ra:?}");
    assert!(
        ra[0].error.as_deref().unwrap_or("").contains("lease"),
        "{ra:?}"
    );
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].status, ReportStatus::Posted, "{rb:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Let anything A might still send arrive before counting.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    {
        let g = s.lock();
        assert_eq!(g.tweets.len(), 1);
        assert_eq!(g.duplicate_refusals, 0, "nobody tried to post it twice");
        assert_eq!(g.rate_limited, 1);
    }
    assert_eq!(tweet_requests(&s), 2, "the 429 and B's post");
    let claims = b.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Posted);
    assert_eq!(claims[0].owner.as_deref(), Some("instance-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_posted_write_is_retried_until_it_succeeds() {
    let (s, addr) = start_standin().await;
    let dir = TempDir::new("x-standin");
    let flaky = Arc::new(FlakyState {
        inner: state_store(&dir).await,
        fail_posted: AtomicU32::new(3),
        failed: AtomicU32::new(0),
    });
    let n = Notifier::new(
        Claims::new(flaky.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let r = n.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Posted, "{r:?}");
    assert_eq!(flaky.failed.load(Ordering::SeqCst), 3);
    let claims = n.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Posted);
    assert_eq!(claims[0].post_id, r[0].post_id);
    // Later passes, by this instance or another, post nothing more.
    let other = Notifier::new(
        Claims::new(flaky.clone(), "instance-b", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let later = t0() + Duration::minutes(30);
    assert!(other
        .run_once(&jobs(0), &TestGifs, later)
        .await
        .expect("pass")
        .is_empty());
    let g = s.lock();
    assert_eq!(g.tweets.len(), 1);
    assert_eq!(g.duplicate_refusals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_an_attempt_checks_the_account_before_posting() {
    // A posts, then cannot record it (the store refuses "posted" until A
    // shuts down): the claim stays "attempting". B takes it over after A's
    // lease and finds the post among the account's recent posts.
    let (s, addr) = start_standin().await;
    let dir = TempDir::new("x-standin");
    let flaky = Arc::new(FlakyState {
        inner: state_store(&dir).await,
        fail_posted: AtomicU32::new(u32::MAX),
        failed: AtomicU32::new(0),
    });
    let (stop, rx) = watch::channel(false);
    let a = Notifier::new(
        Claims::new(flaky.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    )
    .with_shutdown(rx);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let _ = stop.send(true);
    });
    assert!(a.run_once(&jobs(0), &TestGifs, t0()).await.is_err());
    stopper.await.expect("stopper");
    assert_eq!(s.lock().tweets.len(), 1);
    let open = a.claims().all().await.expect("claims");
    assert_eq!(open[0].status, ClaimStatus::Attempting);
    assert!(open[0].attempt_at.is_some());

    // B runs as `raincast run` does (a live clock): the attempt's text is
    // kept, so the post is found on the account by it.
    let b = Notifier::new(
        Claims::new(flaky.clone(), "instance-b", Duration::minutes(10)),
        publisher(addr, creds()),
    )
    .with_live_clock();
    flaky.fail_posted.store(0, Ordering::SeqCst);
    let r = b
        .run_once(&jobs(0), &TestGifs, t0() + Duration::minutes(11))
        .await
        .expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::AlreadyPosted, "{r:?}");
    let g = s.lock();
    assert_eq!(g.tweets.len(), 1);
    assert_eq!(r[0].post_id.as_ref(), Some(&g.tweets[0].id));
    assert_eq!(g.duplicate_refusals, 0, "B did not try to post again");
    assert!(g.log.iter().any(|l| l == "GET /2/users/me"));
    assert!(g.auth_failures.is_empty(), "{:?}", g.auth_failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_rate_limit_wait_posts_nothing_then_once() {
    let (s, addr) = start_standin().await;
    s.rate_limit_next_tweet.store(true, Ordering::SeqCst);
    s.rate_limit_reset_s.store(60, Ordering::SeqCst);
    let dir = TempDir::new("x-standin");
    let store = state_store(&dir).await;
    let (stop, rx) = watch::channel(false);
    let a = Notifier::new(
        Claims::new(store.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    )
    .with_shutdown(rx);
    // Shut down once X has answered 429 (A is then waiting for the reset).
    let standin = s.clone();
    let stopper = tokio::spawn(async move {
        while standin.lock().rate_limited == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let _ = stop.send(true);
    });
    let started = std::time::Instant::now();
    let r = a.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    stopper.await.expect("stopper");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the 429 wait ended on shutdown"
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Pending, "{r:?}");
    assert!(r[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("shutting down"));
    assert!(s.lock().tweets.is_empty());
    assert_eq!(s.lock().rate_limited, 1);
    let claims = a.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Pending, "nothing was posted");
    assert_eq!(claims[0].lease_until, None, "released for the next run");

    // The next process posts it, once.
    let b = Notifier::new(
        Claims::new(store, "instance-b", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let r = b
        .run_once(&jobs(0), &TestGifs, t0() + Duration::minutes(1))
        .await
        .expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Posted, "{r:?}");
    let g = s.lock();
    assert_eq!(g.tweets.len(), 1);
    assert_eq!(g.duplicate_refusals, 0);
}

/// A 429 whose reset is more than 15 minutes away is not waited for: the
/// event stays pending for a later pass, and nothing is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_reset_beyond_15_minutes_leaves_the_event_pending() {
    let (s, addr) = start_standin().await;
    s.rate_limit_next_tweet.store(true, Ordering::SeqCst);
    s.rate_limit_reset_s.store(16 * 60, Ordering::SeqCst);
    let dir = TempDir::new("x-standin-429");
    // The default longest wait (15 min), not the test publisher's.
    assert_eq!(
        XConfig::default().max_rate_limit_wait,
        std::time::Duration::from_secs(15 * 60)
    );
    // A claim lease of an hour, so that only the 15-minute rule (and not
    // the end of the lease) can make the publisher give up.
    let n = Notifier::new(
        Claims::new(state_store(&dir).await, "instance-a", Duration::minutes(60)),
        publisher(addr, creds()),
    );
    // Waiting out the reset would take 16 minutes: a minute means it gave up.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        n.run_once(&jobs(0), &TestGifs, t0()),
    )
    .await
    .expect("a 16-minute reset was waited for")
    .expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Pending, "{r:?}");
    assert_eq!(s.lock().rate_limited, 1);
    assert!(s.lock().tweets.is_empty());
    let claims = n.claims().all().await.expect("claims");
    assert_eq!(claims[0].status, ClaimStatus::Pending, "{claims:?}");
}

/// A 5xx answer is tried again, up to 4 attempts per request (the default):
/// three 503s in a row still post; four leave the event pending after
/// exactly four requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_tried_four_times_per_request() {
    let (s, addr) = start_standin().await;
    let cfg = XConfig {
        max_attempts: XConfig::default().max_attempts,
        ..publisher(addr, creds()).config().clone()
    };
    let initializes = |s: &StandIn| {
        s.lock()
            .log
            .iter()
            .filter(|l| l.as_str() == "POST /2/media/upload/initialize")
            .count()
    };
    let dir = TempDir::new("x-standin-5xx");
    let n = Notifier::new(
        Claims::new(state_store(&dir).await, "instance-a", Duration::minutes(10)),
        XPublisher::new(creds(), cfg).expect("client"),
    );
    s.fail_initialize.store(4, Ordering::SeqCst);
    let r = n.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Pending, "{r:?}");
    assert_eq!(initializes(&s), 4, "{:?}", s.lock().log);
    assert!(s.lock().tweets.is_empty());

    s.fail_initialize.store(3, Ordering::SeqCst);
    let r = n
        .run_once(&jobs(0), &TestGifs, t0() + Duration::minutes(1))
        .await
        .expect("pass");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, ReportStatus::Posted, "{r:?}");
    assert_eq!(initializes(&s), 8, "{:?}", s.lock().log);
    assert_eq!(s.lock().tweets.len(), 1);
}

/// The answer to the post's creation is lost (here a 503 after X created
/// it): the publisher does not send the post again blindly (X's refusal of
/// duplicate texts is no guarantee); the claim stays "attempting", and the
/// next pass finds the post among the account's recent posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_post_is_not_answered_by_posting_again() {
    let (s, addr) = start_standin().await;
    s.lose_next_created.store(true, Ordering::SeqCst);
    let dir = TempDir::new("x-standin-lost");
    let store = state_store(&dir).await;
    let a = Notifier::new(
        Claims::new(store.clone(), "instance-a", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let r = a.run_once(&jobs(0), &TestGifs, t0()).await.expect("pass");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_ne!(r[0].status, ReportStatus::Posted, "{r:?}");
    {
        let g = s.lock();
        assert_eq!(g.tweets.len(), 1);
        assert_eq!(g.duplicate_refusals, 0, "the post was sent again");
        let creates = g
            .log
            .iter()
            .filter(|l| l.as_str() == "POST /2/tweets")
            .count();
        assert_eq!(creates, 1, "{:?}", g.log);
    }
    let open = a.claims().all().await.expect("claims");
    assert_eq!(open[0].status, ClaimStatus::Attempting);
    // After the lease, a pass finds it on the account.
    let b = Notifier::new(
        Claims::new(store.clone(), "instance-b", Duration::minutes(10)),
        publisher(addr, creds()),
    );
    let r = b
        .run_once(&jobs(0), &TestGifs, t0() + Duration::minutes(11))
        .await
        .expect("pass");
    assert_eq!(r[0].status, ReportStatus::AlreadyPosted, "{r:?}");
    let g = s.lock();
    assert_eq!(g.tweets.len(), 1);
    assert_eq!(g.duplicate_refusals, 0);
}
