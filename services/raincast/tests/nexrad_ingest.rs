//! NEXRAD Level II live source, end to end: the `raincast` binary with the
//! shipped `examples/nexrad-katx.toml` against an S3-compatible server (moto)
//! holding a bucket named like NOAA's, loaded with NEXRAD-layout keys
//! (`{yyyy}/{mm}/{dd}/KATX/KATX{yyyymmdd}_{HHMMSS}_V06`) across a UTC
//! midnight, plus the objects a real day folder also holds (`_V06_MDM`
//! model data) and junk.
//!
//! The process runs with **no AWS credentials at all** (empty environment, no
//! config files): the S3 source must fall back to unsigned requests, as it
//! does for the public bucket. The store is the embedded one.
//!
//! The volumes are the real KATX message-31 excerpt from ../shared/data
//! with the volume header's date and time rewritten to match each key (the
//! stored scan time comes from the header).
//!
//! Scenarios of the ingest issue that depend on the layout: an empty bucket;
//! every volume stored once and nothing new on the next run; a volume
//! uploaded late behind the checkpoint; corrupt volumes quarantined and not
//! retried. (Leases, crashes and outages do not depend on the key layout and
//! are covered by `ingest_scenarios.rs`.)

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use raincast_store::{EmbeddedStore, S3Source, ScanStore, StateStore};
use raincast_testkit::{shared_data, Server, TempDir};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_raincast");
const BUCKET: &str = "unidata-nexrad-level2";
const RADAR: &str = "katx";

fn example_config() -> PathBuf {
    raincast_testkit::workspace_root().join("examples/nexrad-katx.toml")
}

/// Ten volume times, 5 min apart, across midnight UTC.
fn times() -> Vec<DateTime<Utc>> {
    let first = Utc.with_ymd_and_hms(2013, 7, 17, 23, 32, 21).unwrap();
    (0..10).map(|i| first + Duration::minutes(5 * i)).collect()
}

fn key_of(t: DateTime<Utc>, suffix: &str) -> String {
    format!(
        "{}/KATX/KATX{}{suffix}",
        t.format("%Y/%m/%d"),
        t.format("%Y%m%d_%H%M%S")
    )
}

/// The excerpt with its volume header set to `t`: days since 1970-01-01
/// plus one, then milliseconds since midnight (ICD 2620010, table 3).
fn volume_at(excerpt: &[u8], t: DateTime<Utc>) -> Vec<u8> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let days = (t.date_naive() - epoch).num_days() as u32 + 1;
    let ms = t.num_seconds_from_midnight() * 1000;
    let mut v = excerpt.to_vec();
    v[12..16].copy_from_slice(&days.to_be_bytes());
    v[16..20].copy_from_slice(&ms.to_be_bytes());
    v
}

struct World {
    moto: Server,
    s3: S3Source,
    excerpt: Vec<u8>,
    tmp: TempDir,
}

impl World {
    async fn new() -> Option<World> {
        let data = shared_data()?;
        let excerpt =
            std::fs::read(data.join("nexrad/example_nexrad_archive_msg31_compressed.ar2v")).ok()?;
        let moto = Server::moto()?;
        let s3 = common::new_bucket(&moto.endpoint(), BUCKET).await;
        Some(World {
            moto,
            s3,
            excerpt,
            tmp: TempDir::new("nexrad-e2e"),
        })
    }

    /// Uploads a publicly readable object, as in NOAA's bucket (moto, like
    /// S3, refuses unsigned reads of private objects).
    async fn upload(&self, key: &str, bytes: Vec<u8>) {
        self.upload_with_acl(key, bytes, "public-read").await;
    }

    async fn upload_with_acl(&self, key: &str, bytes: Vec<u8>, acl: &str) {
        self.s3
            .client()
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .acl(acl.into())
            .body(bytes.into())
            .send()
            .await
            .unwrap();
    }

    async fn upload_volumes(&self, which: impl IntoIterator<Item = usize>) {
        let times = times();
        for i in which {
            self.upload(
                &key_of(times[i], "_V06"),
                volume_at(&self.excerpt, times[i]),
            )
            .await;
        }
    }

    fn store_dir(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// `raincast ingest --once` with the example configuration, the store in
    /// the temp folder, and an environment with no AWS credentials.
    fn ingest(&self, extra_env: &[(&str, &str)]) -> std::process::Output {
        let home = self.tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Empty AWS config and credentials files: no profile, no keys.
        std::fs::write(home.join("aws-config"), "").unwrap();
        std::fs::write(home.join("aws-credentials"), "").unwrap();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", home.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_S3", self.moto.endpoint())
            .env("RAINCAST_LOG", "info")
            .args(["ingest", "--once", "--config"])
            .arg(example_config())
            .arg("--store")
            .arg(self.store_dir())
            .args(["--radar", RADAR, "--since", "2013-07-17T23:00:00Z"])
            .stdin(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn ingest_ok(&self) -> (Value, String) {
        let out = self.ingest(&[]);
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ingest failed: {stdout}\n{log}");
        assert!(
            log.contains("sending unsigned requests"),
            "no credentials: the S3 source must go unsigned:\n{log}"
        );
        let summary: Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (summary, log)
    }

    /// Stored scan times; every stored field sits on a grid centred on KATX.
    async fn stored(&self) -> Vec<DateTime<Utc>> {
        let store = EmbeddedStore::open(self.store_dir().join("raincast.redb"), Duration::days(7))
            .await
            .unwrap();
        let now = Utc::now();
        let from = Utc.with_ymd_and_hms(2013, 1, 1, 0, 0, 0).unwrap();
        let manifests = store
            .list_scans(RADAR, from, now + Duration::days(1), now)
            .await
            .unwrap();
        for m in &manifests {
            let scan = store.get_scan(RADAR, m.time, now).await.unwrap().unwrap();
            let tiles: Vec<_> = scan
                .tiles
                .iter()
                .map(|t| raincast_algorithms::sparse::EncodedTile {
                    row: t.row,
                    col: t.col,
                    bytes: t.bytes.clone(),
                })
                .collect();
            let field = raincast_algorithms::sparse::decode(&scan.manifest.header, &tiles).unwrap();
            assert_eq!(field.time, m.time);
            assert_eq!(field.grid.shape(), (500, 500));
            let (lon, lat) = field.grid.rowcol_to_lonlat(250.0, 250.0).unwrap();
            assert!(
                (lon + 122.4957).abs() < 1e-3 && (lat - 48.1947).abs() < 1e-3,
                "{lon} {lat}"
            );
            assert!(m.rain_cells > 0, "the excerpt has rain");
        }
        manifests.iter().map(|m| m.time).collect()
    }

    async fn checkpoint(&self) -> Option<DateTime<Utc>> {
        let store = EmbeddedStore::open(self.store_dir().join("raincast.redb"), Duration::days(7))
            .await
            .unwrap();
        store
            .get_checkpoint(RADAR)
            .await
            .unwrap()
            .map(|c| c.last_time)
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// Empty bucket, then every volume once across midnight, then nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexrad_layout_all_volumes_once_unsigned() {
    let Some(w) = World::new().await else {
        return;
    };
    let (s, _) = w.ingest_ok();
    assert_eq!((n(&s, "listed"), n(&s, "ingested")), (0, 0), "{s}");

    w.upload_volumes(0..10).await;
    // What a real day folder also holds: model data beside each volume,
    // and an unrelated object. Neither matches the `_V06` template.
    w.upload(&key_of(times()[3], "_V06_MDM"), b"model data".to_vec())
        .await;
    w.upload("2013/07/18/KATX/README.txt", b"hello".to_vec())
        .await;
    let (s, _) = w.ingest_ok();
    assert_eq!(n(&s, "ingested"), 10, "{s}");
    assert_eq!(n(&s, "quarantined"), 0, "{s}");
    assert_eq!(w.stored().await, times());
    assert_eq!(w.checkpoint().await, times().last().copied());

    let (s, _) = w.ingest_ok();
    assert_eq!((n(&s, "ingested"), n(&s, "quarantined")), (0, 0), "{s}");
    assert!(n(&s, "skipped") > 0, "the lookback re-lists: {s}");
    assert_eq!(w.stored().await.len(), 10);

    // Signing with no credentials cannot work: forcing it fails the run.
    let out = w.ingest(&[("RAINCAST_S3_ANONYMOUS", "false")]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "signed requests without credentials: {text}"
    );
}

/// A volume uploaded late, behind the checkpoint but within the lookback,
/// and corrupt volumes: the late one is picked up, the corrupt ones are
/// quarantined once and not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexrad_late_and_corrupt_volumes() {
    let Some(w) = World::new().await else {
        return;
    };
    let late = 7;
    w.upload_volumes((0..10).filter(|i| *i != late)).await;
    let (s, _) = w.ingest_ok();
    assert_eq!(n(&s, "ingested"), 9, "{s}");
    assert!(w.checkpoint().await.unwrap() > times()[late]);

    w.upload_volumes([late]).await;
    // Both within the 30 min lookback behind the checkpoint (00:17:21).
    let truncated_at = times()[6] + Duration::minutes(1);
    let full = volume_at(&w.excerpt, truncated_at);
    w.upload(
        &key_of(truncated_at, "_V06"),
        full[..full.len() / 2].to_vec(),
    )
    .await;
    let garbage_at = times()[8] + Duration::minutes(1);
    w.upload(&key_of(garbage_at, "_V06"), b"AR2V0006.not really".to_vec())
        .await;
    let (s, log) = w.ingest_ok();
    assert_eq!(n(&s, "ingested"), 1, "{s}\n{log}");
    assert_eq!(n(&s, "quarantined"), 2, "{s}\n{log}");
    assert_eq!(w.stored().await, times());

    let (s, _) = w.ingest_ok();
    assert_eq!((n(&s, "ingested"), n(&s, "quarantined")), (0, 0), "{s}");
    let store = EmbeddedStore::open(w.store_dir().join("raincast.redb"), Duration::days(7))
        .await
        .unwrap();
    let q = store.list_quarantined(RADAR).await.unwrap();
    let mut codes: Vec<(String, String)> = q
        .iter()
        .map(|r| (r.key.clone(), r.reason_code.clone()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            (key_of(truncated_at, "_V06"), "truncated".to_string()),
            (key_of(garbage_at, "_V06"), "truncated".to_string()),
        ],
        "{q:?}"
    );
}
