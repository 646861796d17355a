//! The one HTTP request loop of the posting publishers (X, Mastodon): a
//! request body that can be sent again, retries with exponential backoff for
//! 5xx answers and network errors, 429 waits until the announced reset, and
//! every request and wait inside the [`PublishContext`].

use super::{PublishContext, PublishError};
use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{HeaderMap, HeaderName, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tracing::{debug, info, warn};

/// A request body that can be sent again on retry.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Multipart { boundary: String, bytes: Vec<u8> },
}

/// A multipart/form-data body with text fields and one binary file part of
/// type `file_type`.
pub(crate) fn multipart(
    fields: &[(&str, String)],
    file_field: &str,
    file_type: &str,
    file: &[u8],
) -> Body {
    let boundary = format!("raincast-{}", crate::oauth::new_nonce());
    let mut bytes = Vec::with_capacity(file.len() + 512);
    for (name, value) in fields {
        bytes.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    bytes.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"blob\"\r\n\
             Content-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(file);
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Body::Multipart { boundary, bytes }
}

/// Headers of one attempt.
pub(crate) type Headers = Vec<(HeaderName, String)>;

/// Retry settings of one publisher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// Attempts per request for 5xx answers and network errors.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// Longest wait for a rate-limit reset before giving up.
    pub max_rate_limit_wait: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl Retry {
    /// Delay before retry number `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Reset time from `x-rate-limit-reset` (X: epoch seconds),
/// `x-ratelimit-reset` (Mastodon: an RFC 3339 time) or `retry-after` (seconds).
pub(crate) fn rate_limit_reset(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = |name: &str| -> Option<&str> { Some(headers.get(name)?.to_str().ok()?.trim()) };
    if let Some(epoch) = text("x-rate-limit-reset").and_then(|v| v.parse::<i64>().ok()) {
        return Utc.timestamp_opt(epoch, 0).single();
    }
    if let Some(t) = text("x-ratelimit-reset").and_then(|v| DateTime::parse_from_rfc3339(v).ok()) {
        return Some(t.with_timezone(&Utc));
    }
    text(RETRY_AFTER.as_str())
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| now + chrono::Duration::seconds(s))
}

/// The first 300 characters of a body, for errors.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

/// A JSON body, or [`PublishError::BadResponse`].
pub(crate) fn json_body(stage: &'static str, body: &[u8]) -> Result<Value, PublishError> {
    serde_json::from_slice(body).map_err(|e| PublishError::BadResponse {
        stage,
        message: format!("{e}: {}", snippet(body)),
    })
}

/// One request to `url` with retries; returns the final status and body.
/// `headers` is called before every attempt (an OAuth signature is new
/// each time). `service` names the destination in logs.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    client: &reqwest::Client,
    retry: &Retry,
    service: &'static str,
    stage: &'static str,
    method: Method,
    url: &str,
    headers: impl Fn() -> Result<Headers, PublishError>,
    body: &Body,
    ctx: &PublishContext,
) -> Result<(StatusCode, Vec<u8>), PublishError> {
    let mut attempt = 0u32;
    let timeout = retry.request_timeout;
    loop {
        ctx.check(stage, timeout)?;
        let mut req = client.request(method.clone(), url);
        for (name, value) in headers()? {
            req = req.header(name, value);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(b) => req.header(CONTENT_TYPE, "application/json").body(b.clone()),
            Body::Multipart { boundary, bytes } => req
                .header(
                    CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(bytes.clone()),
        };
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => Ok((status, headers, b.to_vec())),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        attempt += 1;
        match result {
            Err(e) => {
                warn!(service, stage, attempt, error = %e, "request failed");
                if attempt >= retry.max_attempts {
                    return Err(PublishError::Network {
                        stage,
                        message: e.to_string(),
                    });
                }
                ctx.wait(stage, retry.backoff(attempt - 1), timeout).await?;
            }
            Ok((status, headers, _)) if status == StatusCode::TOO_MANY_REQUESTS => {
                let now = Utc::now();
                let reset = rate_limit_reset(&headers, now);
                let wait = reset
                    .map(|r| (r - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1))
                    .unwrap_or_else(|| retry.backoff(attempt - 1));
                if wait > retry.max_rate_limit_wait || attempt >= retry.max_attempts + 2 {
                    warn!(service, stage, ?reset, "rate limited: giving up for now");
                    return Err(PublishError::RateLimited {
                        stage,
                        reset_at: reset,
                    });
                }
                info!(
                    service,
                    stage,
                    wait_s = wait.as_secs_f64(),
                    "rate limited: waiting for reset"
                );
                ctx.wait(stage, wait, timeout).await?;
            }
            Ok((status, _, bytes)) if status.is_server_error() => {
                warn!(
                    service,
                    stage,
                    attempt,
                    status = status.as_u16(),
                    "server error"
                );
                if attempt >= retry.max_attempts {
                    return Err(PublishError::Http {
                        stage,
                        status: status.as_u16(),
                        body: snippet(&bytes),
                    });
                }
                ctx.wait(stage, retry.backoff(attempt - 1), timeout).await?;
            }
            Ok((status, _, bytes)) => {
                debug!(service, stage, status = status.as_u16(), "response");
                return Ok((status, bytes));
            }
        }
    }
}

/// [`send`] that treats every non-2xx as an error and parses JSON (an
/// empty body is `null`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_ok(
    client: &reqwest::Client,
    retry: &Retry,
    service: &'static str,
    stage: &'static str,
    method: Method,
    url: &str,
    headers: impl Fn() -> Result<Headers, PublishError>,
    body: &Body,
    ctx: &PublishContext,
) -> Result<(StatusCode, Value), PublishError> {
    let (status, bytes) = send(
        client, retry, service, stage, method, url, headers, body, ctx,
    )
    .await?;
    Ok((status, ok_json(stage, status, &bytes)?))
}

/// The JSON of a 2xx answer (an empty body is `null`); any other status is
/// [`PublishError::Http`].
pub(crate) fn ok_json(
    stage: &'static str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<Value, PublishError> {
    if !status.is_success() {
        return Err(PublishError::Http {
            stage,
            status: status.as_u16(),
            body: snippet(bytes),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    json_body(stage, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reset_headers() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_reset(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_reset(&h, now),
            Some(now + chrono::Duration::seconds(7))
        );
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("2023-11-14T22:13:40Z"),
        );
        assert_eq!(
            rate_limit_reset(&h, now),
            Some(now + chrono::Duration::seconds(20))
        );
        h.insert("x-rate-limit-reset", HeaderValue::from_static("1700000042"));
        assert_eq!(
            rate_limit_reset(&h, now),
            Some(now + chrono::Duration::seconds(42))
        );
    }

    #[test]
    fn multipart_layout() {
        let Body::Multipart { boundary, bytes } = multipart(
            &[("segment_index", "3".into())],
            "media",
            "image/gif",
            b"GIF",
        ) else {
            panic!("multipart");
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"segment_index\"\r\n\r\n3\r\n"));
        assert!(text.contains("name=\"media\"; filename=\"blob\"\r\nContent-Type: image/gif"));
        assert!(text.ends_with(&format!("GIF\r\n--{boundary}--\r\n")));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry {
            max_attempts: 4,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
        };
        assert_eq!(r.backoff(0), Duration::from_secs(1));
        assert_eq!(r.backoff(2), Duration::from_secs(4));
        assert_eq!(r.backoff(10), Duration::from_secs(30));
    }
}
