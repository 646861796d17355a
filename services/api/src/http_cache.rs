//! Conditional requests and caching headers for frames and animations.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// How a cacheable body may be cached.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    /// Strong validator, without quotes (quoted when sent).
    pub etag: String,
    /// When the content last changed.
    pub last_modified: Option<DateTime<Utc>>,
    /// `Cache-Control: public, max-age=...` seconds.
    pub max_age_s: u32,
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// True when the request's validators show the client already has this version.
pub fn is_fresh(req: &HeaderMap, info: &CacheInfo) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let quoted = format!("\"{}\"", info.etag);
        return inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t == quoted || t.strip_prefix("W/") == Some(quoted.as_str())
        });
    }
    if let (Some(ims), Some(lm)) = (
        req.get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        info.last_modified,
    ) {
        if let Ok(since) = DateTime::parse_from_rfc2822(ims.trim().replace("GMT", "+0000").as_str())
        {
            return lm.timestamp() <= since.timestamp();
        }
    }
    false
}

/// A 200 with the body and caching headers, or a 304 when the client's copy is current.
pub fn respond(
    req: &HeaderMap,
    info: &CacheInfo,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(header::ETAG, v);
    }
    if let Some(lm) = info.last_modified {
        if let Ok(v) = HeaderValue::from_str(&http_date(lm)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", info.max_age_s)) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if is_fresh(req, info) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (StatusCode::OK, headers, body.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn info() -> CacheInfo {
        CacheInfo {
            etag: "abc-png".into(),
            last_modified: Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).single(),
            max_age_s: 60,
        }
    }

    #[test]
    fn etag_and_dates() {
        let r = respond(&HeaderMap::new(), &info(), "image/png", vec![1u8, 2]);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ETAG], "\"abc-png\"");
        assert_eq!(
            r.headers()[header::LAST_MODIFIED],
            "Sun, 16 Jun 2024 10:00:00 GMT"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=60");

        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", \"abc-png\""),
        );
        assert_eq!(
            respond(&h, &info(), "image/png", vec![]).status(),
            StatusCode::NOT_MODIFIED
        );
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(
            respond(&h, &info(), "image/png", vec![]).status(),
            StatusCode::OK
        );

        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 16 Jun 2024 10:00:00 GMT"),
        );
        assert_eq!(
            respond(&h, &info(), "image/png", vec![]).status(),
            StatusCode::NOT_MODIFIED
        );
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 16 Jun 2024 09:59:59 GMT"),
        );
        assert_eq!(
            respond(&h, &info(), "image/png", vec![]).status(),
            StatusCode::OK
        );
    }
}
