//! The one error type of the HTTP API and its `application/problem+json`
//! rendering (RFC 9457).
//!
//! Client errors say what is wrong with the request. Internal errors are
//! logged (inside the request's tracing span, which carries its request id)
//! and answered with a generic body: their details never reach clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use raincast_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed or out of range (400).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// The resource does not exist (404): unknown radar, no scan at that time.
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// The resource existed but has been replaced (410), e.g. the frame of a
    /// superseded nowcast.
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    /// The request clashes with what exists (409), e.g. a second
    /// subscription of one key to the same URL and place.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// The request is well-formed but cannot be answered here (422), e.g. a
    /// point outside every radar's coverage.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// The data needed are not available yet or the store is unreachable
    /// (503, with `Retry-After`).
    #[error("{detail}")]
    Unavailable {
        code: &'static str,
        detail: String,
        retry_after_s: u32,
    },
    /// No API key, or one that is unknown or revoked (401, with
    /// `WWW-Authenticate: Bearer`).
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// The request body is larger than `[api] body_limit_bytes` (413).
    #[error(
        "the request body is larger than the limit of {limit_bytes} bytes ([api] body_limit_bytes)"
    )]
    PayloadTooLarge { limit_bytes: usize },
    /// The key made more requests than its per-minute limit (429, with
    /// `Retry-After`).
    #[error("rate limit exceeded; retry in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u32 },
    /// The request took longer than the configured timeout (503).
    #[error("request timed out")]
    Timeout,
    /// Anything else (500). The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a stable code.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// A 404 with a stable code.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code, also the last segment of the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Gone { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Unavailable { code, .. }
            | ApiError::Unauthorized { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "body_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem document sent to the client.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => {
                "The server failed to answer this request; it has been logged with its request id."
                    .to_string()
            }
            other => other.to_string(),
        };
        Problem {
            problem_type: format!("/problems/{}", self.code().replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            instance: None,
            request_id: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable {
                code: "store_unavailable",
                detail: "The scan store is unreachable; try again shortly.".into(),
                retry_after_s: 10,
            }
        } else {
            ApiError::Internal(format!("store: {e}"))
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/out-of-range",
    "title": "Bad Request",
    "status": 400,
    "detail": "lat must be between -90 and 90, got 123",
    "code": "out_of_range",
    "instance": "/v1/forecast",
    "request_id": "7f3a9c1e-000012"
}))]
pub struct Problem {
    /// URI reference naming the problem kind (`/problems/<code>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary: the HTTP reason phrase.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code (e.g. `unknown_radar`, `out_of_range`).
    pub code: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id (also in the `x-request-id` header); quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            ApiError::Unavailable { detail, .. } => tracing::warn!(%detail, "unavailable"),
            _ => tracing::debug!(error = %self, "client error"),
        }
        let mut resp = problem_response(&self.problem());
        match &self {
            ApiError::Unavailable { retry_after_s, .. }
            | ApiError::TooManyRequests { retry_after_s } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::Unauthorized { .. } => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"raincast\""),
                );
            }
            _ => {}
        }
        resp
    }
}

/// A problem document as a response with its status and media type.
pub fn problem_response(p: &Problem) -> Response {
    let body = serde_json::to_vec(p).unwrap_or_else(|_| b"{}".to_vec());
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (
                ApiError::bad_request("out_of_range", "x"),
                400,
                "out_of_range",
            ),
            (
                ApiError::not_found("unknown_radar", "x"),
                404,
                "unknown_radar",
            ),
            (
                ApiError::Unprocessable {
                    code: "out_of_coverage",
                    detail: "x".into(),
                },
                422,
                "out_of_coverage",
            ),
            (ApiError::Timeout, 503, "timeout"),
            (
                ApiError::Internal("secret path /etc".into()),
                500,
                "internal",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
            let p = e.problem();
            assert_eq!(p.status, status);
            assert_eq!(
                p.problem_type,
                format!("/problems/{}", code.replace('_', "-"))
            );
        }
    }

    #[test]
    fn internal_details_stay_private() {
        let p = ApiError::Internal("redb: /var/lib/raincast/db locked".into()).problem();
        assert!(!p.detail.contains("redb") && !p.detail.contains("/var"));
        let transient = StoreError::Unavailable {
            backend: "dynamodb",
            op: "query",
            reason: "connection refused to 10.0.0.1".into(),
        };
        let e = ApiError::from(transient);
        assert_eq!(e.status().as_u16(), 503);
        assert!(!e.problem().detail.contains("10.0.0.1"));
    }
}
