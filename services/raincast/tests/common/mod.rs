//! Set-up shared by the end-to-end tests of the `raincast` binary.

#![allow(dead_code, clippy::unwrap_used)]

use chrono::Duration;
use raincast_store::aws::sdk_config_for_endpoint;
use raincast_store::{DynamoOptions, DynamoStore, S3Source};

/// An S3 source on `endpoint` (path-style), with `bucket` created.
pub async fn new_bucket(endpoint: &str, bucket: &str) -> S3Source {
    let sdk = sdk_config_for_endpoint(endpoint, 3).await;
    let s3 = S3Source::new(&sdk, bucket, "", true);
    s3.client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    s3
}

/// The scans and state tables `{prefix}scans` / `{prefix}state` on
/// `endpoint`, created, with a 7-day retention.
pub async fn new_tables(endpoint: &str, prefix: &str) -> DynamoStore {
    let sdk = sdk_config_for_endpoint(endpoint, 3).await;
    DynamoStore::connect(
        &sdk,
        &DynamoOptions {
            table_prefix: prefix.into(),
            create_tables: true,
            retention: Duration::days(7),
        },
    )
    .await
    .unwrap()
}

/// Puts one object into `bucket`.
pub async fn put_object(s3: &S3Source, bucket: &str, key: &str, bytes: Vec<u8>) {
    s3.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

/// Every file below `dir`, recursively.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
