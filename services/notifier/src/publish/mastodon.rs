//! Mastodon publisher: the GIF as a media attachment, then a status.
//!
//! Requests, all with `Authorization: Bearer {token}` (scopes `write:media`
//! and `write:statuses`):
//! 1. `POST /api/v2/media`, multipart `file` (+ `description`): 200 when the
//!    attachment is ready, 202 (with `url: null`) while it is processed;
//! 2. while processing: wait, then `GET /api/v1/media/{id}`: 206 (Mastodon)
//!    or 202 while processing, 200 with a `url` once done;
//! 3. `POST /api/v1/statuses`, JSON `{"status","media_ids"}`, with
//!    `Idempotency-Key` set to the event key: Mastodon answers a repeated
//!    key (for an hour) with the status already created instead of a new one.
//!
//! So an attempt whose answer was lost is safe to repeat: [`Publisher::find`]
//! reports nothing, and the repeated `POST /api/v1/statuses` with the same
//! key returns the existing status (the claim's expiry, at most 30 minutes
//! of data time, is well inside Mastodon's hour). Retries, 429 waits and the
//! claim's lease work as for X ([`super::http`]).
//!
//! The token comes from `RAINCAST_MASTODON_TOKEN` (read by
//! `raincast-config`), is held as a redacted [`Secret`] and never logged.

use super::http::{self, multipart, Body, Retry};
use super::{Post, PublishContext, PublishError, Publisher, Receipt, CREATE_STAGE, MAX_GIF_BYTES};
use chrono::{DateTime, Utc};
use raincast_config::Secret;
use reqwest::header::{HeaderName, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Settings of the Mastodon publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct MastodonConfig {
    /// Instance URL without a trailing slash.
    pub base_url: String,
    /// Attempts per request for 5xx answers and network errors.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// Longest wait for a rate-limit reset before giving up.
    pub max_rate_limit_wait: Duration,
    /// Wait between media polls.
    pub poll_interval: Duration,
    /// Longest total wait for media processing.
    pub processing_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl MastodonConfig {
    /// Defaults for the instance at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            max_attempts: 4,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(2),
            processing_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Posts to a Mastodon account.
#[derive(Debug, Clone)]
pub struct MastodonPublisher {
    client: reqwest::Client,
    token: Secret,
    cfg: MastodonConfig,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl MastodonPublisher {
    /// A publisher posting with `token`.
    pub fn new(token: Secret, cfg: MastodonConfig) -> Result<Self, PublishError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("raincast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PublishError::Network {
                stage: "client",
                message: e.to_string(),
            })?;
        Ok(Self { client, token, cfg })
    }

    /// The settings.
    pub fn config(&self) -> &MastodonConfig {
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

    async fn send_ok(
        &self,
        stage: &'static str,
        method: Method,
        path: &str,
        extra: Option<(HeaderName, String)>,
        body: Body,
        ctx: &PublishContext,
    ) -> Result<(StatusCode, Value), PublishError> {
        let url = format!("{}{}", self.cfg.base_url, path);
        let headers = || {
            let mut h = vec![(AUTHORIZATION, format!("Bearer {}", self.token.expose()))];
            h.extend(extra.clone());
            Ok(h)
        };
        http::send_ok(
            &self.client,
            &self.retry(),
            "mastodon",
            stage,
            method,
            &url,
            headers,
            &body,
            ctx,
        )
        .await
    }

    /// Uploads a GIF; returns the attachment id once it is processed.
    pub async fn upload_gif(
        &self,
        gif: &[u8],
        description: &str,
        ctx: &PublishContext,
    ) -> Result<String, PublishError> {
        if gif.len() > MAX_GIF_BYTES {
            return Err(PublishError::TooLarge {
                bytes: gif.len(),
                limit: MAX_GIF_BYTES,
            });
        }
        let stage = "media upload";
        let body = multipart(
            &[("description", description.to_string())],
            "file",
            "image/gif",
            gif,
        );
        let (mut status, mut v) = self
            .send_ok(stage, Method::POST, "/api/v2/media", None, body, ctx)
            .await?;
        let id = v["id"]
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| PublishError::BadResponse {
                stage,
                message: format!("no id in {v}"),
            })?
            .to_string();
        let started = tokio::time::Instant::now();
        // 202 (upload) or 206 (poll), or a null url: still processing.
        while status == StatusCode::ACCEPTED
            || status == StatusCode::PARTIAL_CONTENT
            || v["url"].is_null()
        {
            let waited = started.elapsed();
            if waited >= self.cfg.processing_timeout {
                return Err(PublishError::MediaTimeout {
                    state: "processing".into(),
                    waited_s: waited.as_secs(),
                });
            }
            ctx.wait(
                "media status",
                self.cfg.poll_interval,
                self.cfg.request_timeout,
            )
            .await?;
            (status, v) = self
                .send_ok(
                    "media status",
                    Method::GET,
                    &format!("/api/v1/media/{id}"),
                    None,
                    Body::Empty,
                    ctx,
                )
                .await?;
        }
        Ok(id)
    }

    /// Posts `text` with optional media; `idempotency_key` makes a repeat
    /// return the first status.
    pub async fn create_status(
        &self,
        text: &str,
        media_ids: &[String],
        idempotency_key: &str,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        let mut body = json!({ "status": text });
        if !media_ids.is_empty() {
            body["media_ids"] = json!(media_ids);
        }
        let (_, v) = self
            .send_ok(
                CREATE_STAGE,
                Method::POST,
                "/api/v1/statuses",
                Some((IDEMPOTENCY_KEY, idempotency_key.to_string())),
                Body::Json(body.to_string().into_bytes()),
                ctx,
            )
            .await?;
        let id = v["id"].as_str().ok_or_else(|| PublishError::BadResponse {
            stage: CREATE_STAGE,
            message: format!("no id in {v}"),
        })?;
        Ok(Receipt {
            id: id.to_string(),
            already_posted: false,
        })
    }
}

impl Publisher for MastodonPublisher {
    fn name(&self) -> &'static str {
        "mastodon"
    }

    async fn publish(
        &self,
        post: &Post<'_>,
        ctx: &PublishContext,
    ) -> Result<Receipt, PublishError> {
        let media = match post.gif {
            Some(gif) => vec![self.upload_gif(gif, post.text, ctx).await?],
            None => Vec::new(),
        };
        self.create_status(post.text, &media, &post.event.key, ctx)
            .await
    }

    /// Nothing to look up: repeating the post with the same
    /// `Idempotency-Key` returns the status an earlier attempt created.
    async fn find(
        &self,
        _post: &Post<'_>,
        _since: DateTime<Utc>,
    ) -> Result<Option<Receipt>, PublishError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_prints() {
        let p = MastodonPublisher::new(
            Secret::new("t0k3n-secret"),
            MastodonConfig::new("https://m.example.org/"),
        )
        .expect("client");
        assert_eq!(p.config().base_url, "https://m.example.org");
        assert!(!format!("{p:?}").contains("t0k3n"));
    }
}
