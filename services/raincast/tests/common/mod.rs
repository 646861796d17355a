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

/// The `raincast` binary, without the test environment's `RAINCAST_*`
/// variables (a developer's own settings must not reach the tests).
pub fn raincast_cmd() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_raincast"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RAINCAST_")) {
        cmd.env_remove(k);
    }
    cmd
}

/// A long-running `raincast` process of a test: its stderr lines arrive on
/// `lines` (read on a thread until the process closes it), and it is
/// stopped (SIGTERM, then waited for) when dropped, unless [`Running::stop`]
/// did that first.
pub struct Running {
    child: Option<std::process::Child>,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `cmd` with stdin and stdout closed and `RAINCAST_LOG=info`.
    pub fn start(cmd: &mut std::process::Command) -> Running {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = cmd
            .env("RAINCAST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child: Some(child),
            lines,
        }
    }

    /// Sends SIGTERM and waits for the process: its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not stopped yet");
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", child.id());
        child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}
