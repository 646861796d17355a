//! Extractors whose rejections are problem documents, and parsers for the
//! API's parameter types.

use crate::error::ApiError;
use crate::state::truncate;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Datelike, Utc};
use serde::de::DeserializeOwned;

/// `[api] body_limit_bytes`, put in each request's extensions so that a
/// body refused while it is read is answered with the limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Like `axum::extract::Query`, but a malformed or missing parameter is a
/// 400 `application/problem+json` naming it.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::bad_request("invalid_query", e.body_text())),
        }
    }
}

/// Like `axum::extract::Path`, with problem rejections.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::bad_request("invalid_path", e.body_text())),
        }
    }
}

/// Like `axum::Json` for request bodies, with problem rejections (400
/// `invalid_body` naming what is wrong).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            // A body streamed past the limit (one without a Content-Length).
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge {
                    limit_bytes: limit.unwrap_or_default(),
                })
            }
            Err(e) => Err(ApiError::bad_request(
                "invalid_body",
                truncate(&e.body_text(), 300),
            )),
        }
    }
}

/// Earliest and latest years accepted in time parameters.
pub const YEARS: std::ops::RangeInclusive<i32> = 1990..=2100;

/// Parses an RFC 3339 time parameter (`2024-06-16T10:00:00Z`).
pub fn parse_time(name: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name} must be an RFC 3339 time such as 2024-06-16T10:00:00Z; got {:?} ({e})",
                    truncate(s, 40)
                ),
            )
        })?
        .with_timezone(&Utc);
    if !YEARS.contains(&t.year()) {
        return Err(ApiError::bad_request(
            "out_of_range",
            format!(
                "{name} must lie between {} and {}; got {}",
                YEARS.start(),
                YEARS.end(),
                t.to_rfc3339()
            ),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_absurd_ones_are_refused() {
        let t = parse_time("from", "2024-06-16T12:00:00+02:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2024-06-16T10:00:00+00:00");
        for bad in [
            "yesterday",
            "2024-13-01T00:00:00Z",
            "",
            "1500-01-01T00:00:00Z",
            "9999-01-01T00:00:00Z",
        ] {
            let e = parse_time("from", bad).expect_err(bad);
            assert_eq!(e.status().as_u16(), 400, "{bad}");
        }
    }
}
