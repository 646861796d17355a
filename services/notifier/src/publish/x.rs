//! X (API v2) publisher: chunked GIF upload, then a post with the media id.
//!
//! Requests, all signed with OAuth 1.0a user context ([`crate::oauth`]):
//! 1. `POST /2/media/upload/initialize`, JSON
//!    `{"media_type":"image/gif","total_bytes":N,"media_category":"tweet_gif"}`
//!    → `data.id`;
//! 2. `POST /2/media/upload/{id}/append`, multipart `segment_index` + `media`,
//!    one request per chunk (default 1 MiB);
//! 3. `POST /2/media/upload/{id}/finalize` → `data.processing_info` (optional);
//! 4. while `processing_info.state` is `pending` or `in_progress`:
//!    wait `check_after_secs`, then `GET /2/media/upload?command=STATUS&media_id={id}`;
//!    `failed` is an error;
//! 5. `POST /2/tweets`, JSON `{"text":…,"media":{"media_ids":[id]}}` → `data.id`.
//!
//! Before re-posting an event whose earlier attempt may have gone through,
//! [`Publisher::find`] reads the account's recent posts: `GET /2/users/me`
//! (once) → `data.id`, then `GET /2/users/{id}/tweets?max_results=100&start_time=…`
//! (following `meta.next_token`) and looks for the same text (X adds a
//! `https://t.co/…` link for media and escapes `&`, `<`, `>`).
//!
//! Every request and every wait stays inside the [`PublishContext`]: none
//! starts unless it can end (within [`XConfig::request_timeout`]) before the
//! claim's lease does, and waits end at once on shutdown.
//!
//! Retries: HTTP 429 waits until `x-rate-limit-reset` (epoch seconds; or
//! `retry-after`) when that is within [`XConfig::max_rate_limit_wait`],
//! otherwise gives up with [`PublishError::RateLimited`]. 5xx answers and
//! network errors are retried with exponential backoff, up to
//! [`XConfig::max_attempts`] per request, except the post's creation (a
//! lost answer may hide a post: see [`Publisher::find`]). Other 4xx
//! answers are final.
//! A 403 to the post whose body says "duplicate" means X already has this
//! text: reported as already posted.
//!
//! Credentials come only from the environment (read by `raincast-config`)
//! and never reach logs: only stages, statuses and error bodies are logged.

use super::http::{self, json_body, multipart, snippet, Body, Headers, Retry};
use super::{Post, PublishContext, PublishError, Publisher, Receipt, CREATE_STAGE, MAX_GIF_BYTES};
use crate::oauth::{authorization_header, Credentials};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Default API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.x.com";

/// Settings of the X publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct XConfig {
    /// API base URL without a trailing slash.
    pub base_url: String,
    /// Bytes per APPEND request (X accepts up to 5 MB; default 1 MiB).
    pub chunk_bytes: usize,
    /// Attempts per request for 5xx answers and network errors.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// Longest wait for a rate-limit reset before giving up (the event then
    /// stays pending for a later run).
    pub max_rate_limit_wait: Duration,
    /// Longest total wait for media processing.
    pub processing_timeout: Duration,
    /// Longest single wait between STATUS polls.
    pub max_poll_interval: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for XConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_API_BASE.to_string(),
            chunk_bytes: 1024 * 1024,
            max_attempts: 4,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            processing_timeout: Duration::from_secs(180),
            max_poll_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Posts to X.
#[derive(Debug, Clone)]
pub struct XPublisher {
    client: reqwest::Client,
    creds: Credentials,
    cfg: XConfig,
    /// The account's user id (`GET /2/users/me`), read once.
    user_id: Arc<tokio::sync::OnceCell<String>>,
}

impl XPublisher {
    /// A publisher with the given credentials and settings.
    pub fn new(creds: Credentials, cfg: XConfig) -> Result<Self, PublishError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .user_agent(concat!("raincast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PublishError::Network {
                stage: "client",
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            creds,
            cfg,
            user_id: Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &XConfig {
        &self.cfg
    }

    fn retry(&self) -> Retry {
        Retry {
            max_attempts: self.cfg.max_attempts,
            backoff_initial: self.cfg.backoff_initial,
            backoff_max: self.cfg.backoff_max,
            max_rate_limit_wait: self.cfg.max_rate_limit_wait,
            request_timeout: self.cfg.request_timeout,
        }
    }

    /// The signed-request parts of `method` on `path_and_query`: the URL
    /// and a header source that signs each attempt anew.
    fn signed(
        &self,
        method: &Method,
        path_and_query: &str,
    ) -> (String, impl Fn() -> Result<Headers, PublishError> + '_) {
        let url = format!("{}{}", self.cfg.base_url, path_and_query);
        let (m, u) = (method.as_str().to_string(), url.clone());
        let sign = move || {
            let auth = authorization_header(&self.creds, &m, &u, &[])?;
            Ok(vec![(AUTHORIZATION, auth)])
        };
        (url, sign)
    }

    /// Sends one signed request with retries; returns the final status and body.
    async fn send(
        &self,
        stage: &'static str,
        method: Method,
        path_and_query: &str,
        body: Body,
        ctx: &PublishContext,
    ) -> Result<(StatusCode, Vec<u8>), PublishError> {
        let (url, sign) = self.signed(&method, path_and_query);
        let mut retry = self.retry();
        if stage == CREATE_STAGE {
            // A create whose answer was lost (a cut connection, a 5xx) may
            // have posted: it is never sent again blindly. The claim stays
            // "attempting", and whoever retries it first looks for the post
            // on the account (`Publisher::find`).
            retry.max_attempts = 1;
        }
        http::send(
            &self.client,
            &retry,
            "x",
            stage,
            method,
            &url,
            sign,
            &body,
            ctx,
        )
        .await
    }

    /// `send` that treats every non-2xx as an error and parses JSON.
    async fn send_ok(
        &self,
        stage: &'static str,
        method: Method,
        path_and_query: &str,
        body: Body,
        ctx: &PublishContext,
    ) -> Result<Value, PublishError> {
        let (status, bytes) = self.send(stage, method, path_and_query, body, ctx).await?;
        http::ok_json(stage, status, &bytes)
    }

    /// Uploads a GIF; returns the media id once X has processed it.
    pub async fn upload_gif(
        &self,
        gif: &[u8],
        ctx: &PublishContext,
    ) -> Result<String, PublishError> {
        if gif.len() > MAX_GIF_BYTES {
            return Err(PublishError::TooLarge {
                bytes: gif.len(),
                limit: MAX_GIF_BYTES,
            });
        }
        let init = json!({
            "media_type": "image/gif",
            "total_bytes": gif.len(),
            "media_category": "tweet_gif",
        });
        let resp = self
            .send_ok(
                "media initialize",
                Method::POST,
                "/2/media/upload/initialize",
                Body::Json(init.to_string().into_bytes()),
                ctx,
            )
            .await?;
        let id = resp["data"]["id"]
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| PublishError::BadResponse {
                stage: "media initialize",
                message: format!("no numeric data.id in {resp}"),
            })?
            .to_string();
        for (i, chunk) in gif.chunks(self.cfg.chunk_bytes.max(1)).enumerate() {
            let body = multipart(
                &[("segment_index", i.to_string())],
                "media",
                "application/octet-stream",
                chunk,
            );
            self.send_ok(
                "media append",
                Method::POST,
                &format!("/2/media/upload/{id}/append"),
                body,
                ctx,
            )
            .await?;
        }
        let fin = self
            .send_ok(
                "media finalize",
                Method::POST,
                &format!("/2/media/upload/{id}/finalize"),
                Body::Empty,
                ctx,
            )
            .await?;
        let mut info = fin["data"]["processing_info"].clone();
        let started = std::time::Instant::now();
        loop {
            let state = info["state"].as_str().unwrap_or("succeeded").to_string();
            match state.as_str() {
                "succeeded" => return Ok(id),
                "failed" => {
                    return Err(PublishError::MediaFailed {
                        message: info["error"].to_string(),
                    })
                }
                _ => {}
            }
            let waited = started.elapsed();
            if waited >= self.cfg.processing_timeout {
                return Err(PublishError::MediaTimeout {
                    state,
                    waited_s: waited.as_secs(),
                });
            }
            let after = Duration::from_secs(info["check_after_secs"].as_u64().unwrap_or(1).max(1))
                .min(self.cfg.max_poll_interval);
            ctx.wait("media status", after, self.cfg.request_timeout)
                .await?;
            let status = self
                .send_ok(
                    "media status",
                    Method::GET,
                    &format!("/2/media/upload?command=STATUS&media_id={id}"),
                    Body::Empty,
                    ctx,
                )
                .await?;
            info = status["data"]["processing_info"].clone();
            if info.is_null() {
                return Ok(id);
            }
        }
    }

    /// Posts `text` with optional media ids; returns the post id.
    pub async fn create_post(
        &self,
        text: &str,
        media_ids: &[String],
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        let mut body = json!({ "text": text });
        if !media_ids.is_empty() {
            body["media"] = json!({ "media_ids": media_ids });
        }
        let stage = CREATE_STAGE;
        let (status, bytes) = self
            .send(
                stage,
                Method::POST,
                "/2/tweets",
                Body::Json(body.to_string().into_bytes()),
                ctx,
            )
            .await?;
        if status == StatusCode::FORBIDDEN
            && String::from_utf8_lossy(&bytes)
                .to_ascii_lowercase()
                .contains("duplicate")
        {
            info!("X already has this post (duplicate content)");
            return Ok(Receipt {
                id: String::new(),
                already_posted: true,
            });
        }
        if !status.is_success() {
            return Err(PublishError::Http {
                stage,
                status: status.as_u16(),
                body: snippet(&bytes),
            });
        }
        let v = json_body(stage, &bytes)?;
        let id = v["data"]["id"]
            .as_str()
            .ok_or_else(|| PublishError::BadResponse {
                stage,
                message: format!("no data.id in {v}"),
            })?;
        Ok(Receipt {
            id: id.to_string(),
            already_posted: false,
        })
    }

    /// The account's user id.
    async fn user_id(&self) -> Result<String, PublishError> {
        let stage = "user lookup";
        self.user_id
            .get_or_try_init(|| async {
                let v = self
                    .send_ok(
                        stage,
                        Method::GET,
                        "/2/users/me",
                        Body::Empty,
                        &PublishContext::unbounded(),
                    )
                    .await?;
                v["data"]["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| PublishError::BadResponse {
                        stage,
                        message: format!("no data.id in {v}"),
                    })
            })
            .await
            .cloned()
    }

    /// The account's post with this text created at `since` or later.
    pub async fn find_post(
        &self,
        text: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<String>, PublishError> {
        let stage = "recent posts";
        let user = self.user_id().await?;
        let want = comparable_text(text);
        let start = since.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut token: Option<String> = None;
        // A notifier posts a few times an hour: ten pages of 100 reach far
        // beyond any attempt still worth checking.
        for _ in 0..10 {
            let mut path = format!("/2/users/{user}/tweets?max_results=100&start_time={start}");
            if let Some(t) = &token {
                path.push_str(&format!("&pagination_token={t}"));
            }
            let v = self
                .send_ok(
                    stage,
                    Method::GET,
                    &path,
                    Body::Empty,
                    &PublishContext::unbounded(),
                )
                .await?;
            let found = v["data"].as_array().and_then(|posts| {
                posts
                    .iter()
                    .find(|p| {
                        p["text"]
                            .as_str()
                            .is_some_and(|t| comparable_text(t) == want)
                    })
                    .and_then(|p| p["id"].as_str().map(str::to_string))
            });
            if found.is_some() {
                return Ok(found);
            }
            match v["meta"]["next_token"].as_str() {
                Some(t) if t.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    token = Some(t.to_string())
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// A post text as X returns it, made comparable with what was sent: `&`,
/// `<` and `>` unescaped, trailing `https://t.co/…` links (attached media)
/// dropped, white space folded.
fn comparable_text(text: &str) -> String {
    let unescaped = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let mut words: Vec<&str> = unescaped.split_whitespace().collect();
    while words.last().is_some_and(|w| w.starts_with("https://t.co/")) {
        words.pop();
    }
    words.join(" ")
}

impl Publisher for XPublisher {
    fn name(&self) -> &'static str {
        "x"
    }

    async fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        let media = match post.gif {
            Some(gif) => vec![self.upload_gif(gif, ctx).await?],
            None => Vec::new(),
        };
        self.create_post(post.text, &media, ctx).await
    }

    async fn find(
        &self,
        post: &Post<'_>,
        since: DateTime<Utc>,
    ) -> Result<Option<Receipt>, PublishError> {
        // Clocks differ: look a little further back than the attempt.
        let since = since - chrono::Duration::minutes(5);
        Ok(self.find_post(post.text, since).await?.map(|id| Receipt {
            id,
            already_posted: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_texts_compare_with_sent_ones() {
        let sent = "Rain & hail <soon> in Brussels\n#rain";
        assert_eq!(
            comparable_text("Rain &amp; hail &lt;soon&gt; in Brussels\n#rain https://t.co/AbC123"),
            comparable_text(sent)
        );
        assert_ne!(comparable_text("Rain in Ghent"), comparable_text(sent));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let creds = Credentials {
            consumer_key: "k".into(),
            consumer_secret: "s".into(),
            access_token: "t".into(),
            access_secret: "u".into(),
        };
        let p = XPublisher::new(creds, XConfig::default()).expect("client");
        assert_eq!(p.retry().backoff(0), Duration::from_secs(1));
        assert_eq!(p.retry().backoff(10), Duration::from_secs(30));
        assert!(!format!("{p:?}").contains("\"u\""));
    }
}
