//! An S3 bucket (or an S3-compatible server) as a [`ScanSource`].
//!
//! Listing is ListObjectsV2 with `StartAfter` and pagination followed to the
//! end; fetching is GetObject. Nothing is ever written or deleted.

use crate::aws::sdk_error;
use crate::error::{StoreError, StoreResult};
use crate::model::SourceObject;
use crate::ScanSource;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

const BACKEND: &str = "s3";

/// `s3://BUCKET[/PREFIX]` as a [`ScanSource`]. Keys passed to and returned by
/// the trait methods are relative to `PREFIX`.
#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
}

/// Splits `s3://bucket/some/prefix` into `("bucket", "some/prefix/")`.
pub fn parse_s3_url(url: &str) -> StoreResult<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        StoreError::invalid("source", format!("{url:?} does not start with s3://"))
    })?;
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (rest, ""),
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(StoreError::invalid(
            "source",
            format!("{url:?}: {bucket:?} is not a valid bucket name"),
        ));
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

impl S3Source {
    /// A source over `bucket` below `prefix` (empty or ending in `/`).
    /// `force_path_style` is needed by most S3-compatible servers
    /// (`http://127.0.0.1:PORT/bucket/key` instead of `bucket.host`).
    pub fn new(sdk: &SdkConfig, bucket: &str, prefix: &str, force_path_style: bool) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(force_path_style)
            .build();
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Self {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix,
        }
    }

    /// From an `s3://BUCKET[/PREFIX]` URL.
    pub fn from_url(sdk: &SdkConfig, url: &str, force_path_style: bool) -> StoreResult<Self> {
        let (bucket, prefix) = parse_s3_url(url)?;
        Ok(Self::new(sdk, &bucket, &prefix, force_path_style))
    }

    /// The underlying client (tests use it to upload fixtures).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.prefix.as_str())
    }
}

#[async_trait]
impl ScanSource for S3Source {
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> StoreResult<Vec<SourceObject>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix));
            if let Some(s) = start_after {
                req = req.start_after(self.full(s));
            }
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| sdk_error(BACKEND, "ListObjectsV2", e))?;
            for obj in resp.contents() {
                let Some(key) = obj.key().and_then(|k| self.relative(k)) else {
                    continue;
                };
                // Folder markers written by consoles ("a/b/") are not scans.
                if key.ends_with('/') {
                    continue;
                }
                out.push(SourceObject {
                    key: key.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    last_modified: obj
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn list_dirs(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .delimiter("/");
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| sdk_error(BACKEND, "ListObjectsV2", e))?;
            for cp in resp.common_prefixes() {
                if let Some(p) = cp.prefix().and_then(|p| self.relative(p)) {
                    out.push(p.to_string());
                }
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    async fn fetch(&self, key: &str, max_bytes: u64) -> StoreResult<Vec<u8>> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| {
                let is_missing = e.as_service_error().is_some_and(|se| se.is_no_such_key());
                if is_missing {
                    StoreError::NotFound {
                        backend: BACKEND,
                        what: format!("s3://{}/{}", self.bucket, self.full(key)),
                    }
                } else {
                    sdk_error(BACKEND, "GetObject", e)
                }
            })?;
        let what = || format!("s3://{}/{}", self.bucket, self.full(key));
        let too_large = |size: u64| StoreError::TooLarge {
            what: what(),
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        };
        let declared = resp.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(n) = declared.filter(|&n| n > max_bytes) {
            return Err(too_large(n));
        }
        // Read chunk by chunk, stopping past the limit whatever the header
        // said.
        let mut body = resp.body;
        let mut out =
            Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(max_bytes)).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                op: "GetObject body",
                reason: e.to_string(),
            })?;
            let total = out.len() as u64 + chunk.len() as u64;
            if total > max_bytes {
                return Err(too_large(total));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn relative_key(&self, bucket: &str, key: &str) -> Option<String> {
        if bucket != self.bucket {
            return None;
        }
        key.strip_prefix(self.prefix.as_str())
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://radar-raw").unwrap(),
            ("radar-raw".into(), "".into())
        );
        assert_eq!(
            parse_s3_url("s3://radar-raw/au/bom/").unwrap(),
            ("radar-raw".into(), "au/bom/".into())
        );
        for bad in ["radar-raw", "s3://", "s3://Upper", "s3://a"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
