//! Ingest under hostile inputs and crashes (the reliability issue), end to
//! end: the `raincast` binary against moto's S3 and DynamoDB, with scans
//! keyed at **today's** times so that every run goes through production's
//! day-by-day listing (no `--since`, the default two-hour backfill).
//!
//! The scans are small synthetic ODIM_H5 files written by the project's own
//! writer (64 × 64 km of moving rain cells), so the time in each key is the
//! time in the file.
//!
//! Each scenario checks what an operator would: the JSON summaries of
//! `raincast ingest --once` (whose `ingested` counts *successful conditional
//! puts*, so a double write would show as a sum above the number of files),
//! the exit status, the quarantine records and the stored scans.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hdf5_writer::{AttributeBuilder, DatasetBuilder, Hdf5Builder, WriteOptions};
use raincast_algorithms::encode::odim::{encode_rate, OdimRateOptions};
use raincast_algorithms::grid::Grid;
use raincast_algorithms::synth::{local_grid, SynthConfig, SynthRadar};
use raincast_store::{DynamoStore, S3Source, ScanStore, StateStore};
use raincast_testkit::{aws_env, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_raincast");
const BUCKET: &str = "radar-raw";
const TABLES: &str = "faults-";
const RADAR: &str = "synth";

/// moto (S3 + DynamoDB), the bucket and the tables.
struct World {
    moto: Server,
    s3: S3Source,
    store: DynamoStore,
    synth: SynthRadar,
    /// Time of step 0: a whole 5 minutes, 100 min ago.
    t0: DateTime<Utc>,
}

impl World {
    async fn new() -> Option<World> {
        let moto = Server::moto()?;
        let s3 = common::new_bucket(&moto.endpoint(), BUCKET).await;
        let store = common::new_tables(&moto.endpoint(), TABLES).await;
        let now = Utc::now().timestamp();
        let t0 = Utc.timestamp_opt(now - now % 300, 0).unwrap() - Duration::minutes(100);
        let grid = local_grid(8.54, 47.37, 64, 64, 1000.0).unwrap();
        let mut cfg = SynthConfig::for_shape(64, 64);
        cfg.step_s = 300;
        cfg.start = t0;
        Some(World {
            moto,
            s3,
            store,
            synth: SynthRadar::new(grid, cfg),
            t0,
        })
    }

    fn time(&self, step: i64) -> DateTime<Utc> {
        self.t0 + Duration::minutes(5 * step)
    }

    /// The key of a file at `t`, with `prefix` before the file name.
    fn key(t: DateTime<Utc>, prefix: &str) -> String {
        format!(
            "{RADAR}/{}/{prefix}{RADAR}_{}.h5",
            t.format("%Y/%m/%d"),
            t.format("%Y%m%d_%H%M%S")
        )
    }

    /// A synthetic ODIM_H5 scan of `step` (the time of the key = the file's).
    fn scan(&self, step: i64) -> Vec<u8> {
        let field = self.synth.field(step);
        assert_eq!(field.time, self.time(step));
        encode_rate(&field, &OdimRateOptions::u8("NOD:synth")).unwrap()
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) {
        common::put_object(&self.s3, BUCKET, key, bytes).await;
    }

    /// Uploads the scans of `steps` under the plain layout; returns their keys.
    async fn upload_steps(&self, steps: impl IntoIterator<Item = i64>) -> Vec<String> {
        let mut keys = Vec::new();
        for s in steps {
            let key = Self::key(self.time(s), "");
            self.upload(&key, self.scan(s)).await;
            keys.push(key);
        }
        keys
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, v) in aws_env(Some(&self.moto), Some(&self.moto)) {
            cmd.env(k, v);
        }
        cmd.env("RAINCAST_SOURCE", format!("s3://{BUCKET}"))
            .env("RAINCAST_STORE", format!("dynamodb://{TABLES}"))
            .env("RAINCAST_LOG", "info")
            .env_remove("RAINCAST_FAILPOINT")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .args(["ingest", "--once", "--radar", RADAR]);
        cmd
    }

    /// One `ingest --once`; its summary (successful runs only) and log.
    fn ingest(&self, cmd: &mut Command) -> (Output, Option<Value>, String) {
        let out = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let summary = out.status.success().then(|| {
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
        });
        (out, summary, log)
    }

    fn ingest_ok(&self, env: &[(&str, &str)]) -> Value {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (out, summary, log) = self.ingest(&mut cmd);
        assert!(
            out.status.success(),
            "ingest failed ({}):\n{log}",
            out.status
        );
        summary.unwrap()
    }

    /// Every stored scan's time, each read back whole and decoded.
    async fn stored(&self) -> Vec<DateTime<Utc>> {
        let now = Utc::now();
        let manifests = self
            .store
            .list_scans(RADAR, now - Duration::days(2), now + Duration::days(1), now)
            .await
            .unwrap();
        for m in &manifests {
            let scan = self
                .store
                .get_scan(RADAR, m.time, now)
                .await
                .unwrap()
                .unwrap();
            let field =
                raincast_algorithms::sparse::decode(&scan.manifest.header, &scan.tiles).unwrap();
            assert_eq!(
                (field.time, field.rain_cells() as u64),
                (m.time, m.rain_cells)
            );
        }
        manifests.iter().map(|m| m.time).collect()
    }

    async fn quarantined(&self) -> Vec<(String, String, String)> {
        self.store
            .list_quarantined(RADAR)
            .await
            .unwrap()
            .into_iter()
            .map(|q| (q.key, q.reason_code, q.reason))
            .collect()
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// An ODIM_H5 composite that declares a 20000 × 20000 grid, as attributes
/// and as a chunked dataset whose chunks are all unwritten (read back as the
/// fill value): a few kilobytes that ask a naive decoder for ~2 GB.
fn poison_odim(t: DateTime<Utc>) -> Vec<u8> {
    const SIDE: usize = 20_000;
    let proj = "+proj=aeqd +lat_0=47.37 +lon_0=8.54 +ellps=WGS84 +units=m";
    let half = SIDE as f64 * 10.0 / 2.0;
    let grid = Grid::new(proj, SIDE, SIDE, 10.0, 10.0, -half, half).unwrap();
    let [ul, ur, lr, ll] = grid.corners_lonlat().unwrap();
    let date = t.format("%Y%m%d").to_string();
    let time = t.format("%H%M%S").to_string();
    let mut b = Hdf5Builder::new()
        .attribute(AttributeBuilder::fixed_string(
            "Conventions",
            "ODIM_H5/V2_2",
        ))
        .group_attribute("what", AttributeBuilder::fixed_string("object", "COMP"))
        .group_attribute("what", AttributeBuilder::fixed_string("date", &date))
        .group_attribute("what", AttributeBuilder::fixed_string("time", &time))
        .group_attribute(
            "what",
            AttributeBuilder::fixed_string("source", "NOD:poison"),
        )
        .group_attribute("where", AttributeBuilder::fixed_string("projdef", proj))
        .group_attribute(
            "where",
            AttributeBuilder::scalar("xsize", SIDE as i64).unwrap(),
        )
        .group_attribute(
            "where",
            AttributeBuilder::scalar("ysize", SIDE as i64).unwrap(),
        )
        .group_attribute(
            "where",
            AttributeBuilder::scalar("xscale", 10.0f64).unwrap(),
        )
        .group_attribute(
            "where",
            AttributeBuilder::scalar("yscale", 10.0f64).unwrap(),
        );
    for (name, (lon, lat)) in [("UL", ul), ("UR", ur), ("LR", lr), ("LL", ll)] {
        b = b
            .group_attribute(
                "where",
                AttributeBuilder::scalar(format!("{name}_lon"), lon).unwrap(),
            )
            .group_attribute(
                "where",
                AttributeBuilder::scalar(format!("{name}_lat"), lat).unwrap(),
            );
    }
    let what = "dataset1/what";
    for (k, v) in [
        ("product", "COMP"),
        ("startdate", date.as_str()),
        ("starttime", time.as_str()),
        ("enddate", date.as_str()),
        ("endtime", time.as_str()),
    ] {
        b = b.group_attribute(what, AttributeBuilder::fixed_string(k, v));
    }
    let data = DatasetBuilder::typed::<u8>("dataset1/data1/data", vec![SIDE as u64, SIDE as u64])
        .chunked(vec![1000, 1000])
        .fill_value(vec![0u8]);
    let dw = "dataset1/data1/what";
    b = b
        .dataset(data)
        .group_attribute(dw, AttributeBuilder::fixed_string("quantity", "RATE"))
        .group_attribute(dw, AttributeBuilder::scalar("gain", 0.1f64).unwrap())
        .group_attribute(dw, AttributeBuilder::scalar("offset", 0.0f64).unwrap())
        .group_attribute(dw, AttributeBuilder::scalar("nodata", 255.0f64).unwrap())
        .group_attribute(dw, AttributeBuilder::scalar("undetect", 0.0f64).unwrap());
    let bytes = b
        .into_plan()
        .unwrap()
        .encode(WriteOptions::default())
        .unwrap();
    assert!(
        bytes.len() < 1 << 20,
        "poison is small: {} bytes",
        bytes.len()
    );
    bytes
}

/// A key timed in the future is deferred (not ingested, not checkpointed);
/// a real file that arrives a minute later, with an earlier time, is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_key_does_not_blind_the_radar() {
    let Some(w) = World::new().await else { return };
    w.upload_steps(0..4).await;
    // Three hours ahead, in today's folder when the clock allows it.
    let now = Utc::now();
    let future = now + Duration::hours(3);
    let future = if future.date_naive() == now.date_naive() {
        future
    } else {
        now + Duration::minutes(11)
    };
    let future_key = World::key(future, "");
    w.upload(&future_key, w.scan(2)).await;
    let s = w.ingest_ok(&[]);
    assert_eq!(n(&s, "ingested"), 4, "{s}");
    if future.date_naive() == now.date_naive() {
        assert_eq!(n(&s, "deferred"), 1, "{s}");
    }
    let cp = w.store.get_checkpoint(RADAR).await.unwrap().unwrap();
    assert!(cp.last_time <= Utc::now() + Duration::minutes(10), "{cp:?}");
    assert_ne!(cp.last_key, future_key);
    // The real file of step 19 (up to 5 min ago) arrives now.
    w.upload_steps([19]).await;
    let s = w.ingest_ok(&[]);
    assert_eq!(n(&s, "ingested"), 1, "the late real file is ingested: {s}");
    let want: Vec<_> = [0, 1, 2, 3, 19].iter().map(|&s| w.time(s)).collect();
    assert_eq!(w.stored().await, want);
}

/// A file under a key of the present whose *content* is timed in 2099 (the
/// stored time comes from the content): quarantined as `future_time`, so it
/// never becomes the radar's latest scan, and the real files are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_content_is_timed_in_the_future_does_not_blind_the_radar() {
    let Some(w) = World::new().await else { return };
    w.upload_steps(0..4).await;
    let mut field = w.synth.field(4);
    field.time = Utc.with_ymd_and_hms(2099, 12, 31, 23, 55, 0).unwrap();
    let odd = World::key(w.time(4), "");
    w.upload(
        &odd,
        encode_rate(&field, &OdimRateOptions::u8("NOD:synth")).unwrap(),
    )
    .await;
    let s = w.ingest_ok(&[]);
    assert_eq!((n(&s, "ingested"), n(&s, "quarantined")), (4, 1), "{s}");
    let q = w.quarantined().await;
    assert_eq!(
        (q[0].0.as_str(), q[0].1.as_str()),
        (odd.as_str(), "future_time")
    );
    assert!(q[0].2.contains("2099-12-31T23:55:00Z"), "{q:?}");
    let latest = w.store.latest(RADAR, Utc::now()).await.unwrap().unwrap();
    assert_eq!(latest.time, w.time(3));
    let want: Vec<_> = (0..4).map(|s| w.time(s)).collect();
    assert_eq!(w.stored().await, want);
}

/// Mixed prefixes in one day folder: a newer file whose key sorts below
/// every key already ingested is still listed and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_file_sorting_low_is_never_skipped() {
    let Some(w) = World::new().await else { return };
    for s in 0..12 {
        w.upload(&World::key(w.time(s), "b-"), w.scan(s)).await;
    }
    let s = w.ingest_ok(&[]);
    assert_eq!(n(&s, "ingested"), 12, "{s}");
    // Again, so the checkpoint is well ahead of the start of the folder.
    assert_eq!(n(&w.ingest_ok(&[]), "ingested"), 0);
    // A newer file from another producer, sorting before all "b-" keys.
    let late = World::key(w.time(12), "a-");
    w.upload(&late, w.scan(12)).await;
    let s = w.ingest_ok(&[]);
    assert_eq!(n(&s, "ingested"), 1, "{s}");
    assert_eq!(w.stored().await.len(), 13);
}

/// A poison file declaring a 20000 × 20000 grid, ingested by a process
/// limited to 3 GiB of address space: it does not abort, the poison is
/// quarantined as `too_large` with the declared shape and the limit, and the
/// good files around it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_file_is_quarantined_under_a_memory_limit() {
    let Some(w) = World::new().await else { return };
    w.upload_steps([0, 1, 3, 4]).await;
    let poison = World::key(w.time(2), "");
    w.upload(&poison, poison_odim(w.time(2))).await;
    // `ulimit -v` (KiB) in a shell that then becomes raincast.
    let inner = w.cmd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 3145728 && exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let (out, summary, log) = w.ingest(&mut cmd);
    assert!(
        out.status.success(),
        "the limited process failed ({}):\n{log}",
        out.status
    );
    let s = summary.unwrap();
    assert_eq!(
        (n(&s, "ingested"), n(&s, "quarantined")),
        (4, 1),
        "{s}\n{log}"
    );
    let q = w.quarantined().await;
    assert_eq!(q.len(), 1, "{q:?}");
    let (key, code, reason) = &q[0];
    assert_eq!((key, code.as_str()), (&poison, "too_large"));
    assert!(
        reason.contains(&poison)
            && reason.contains("20000 x 20000")
            && reason.contains("max_cells"),
        "the reason names the file, the declared shape and the limit: {reason}"
    );
    assert_eq!(w.stored().await.len(), 4);
}

/// How long a 1 s lease of a dead process blocks the others: its TTL, the
/// clock-skew margin, and half a second of slack.
fn lease_gone() -> std::time::Duration {
    std::time::Duration::from_millis(1500)
        + raincast_store::LEASE_SKEW_MARGIN
            .to_std()
            .expect("a positive margin")
}

/// A decode that aborts the process (as an out-of-memory kill would), twice:
/// the third run quarantines the file as `crashed` without decoding it
/// again, and every other file is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_keeps_crashing_the_decoder_is_quarantined() {
    let Some(w) = World::new().await else { return };
    let keys = w.upload_steps(0..6).await;
    let bad = &keys[3];
    let failpoint = format!("abort_decoding:{bad}");
    for attempt in 1..=2 {
        let mut cmd = w.cmd();
        cmd.env("RAINCAST_FAILPOINT", &failpoint)
            .env("RAINCAST_LEASE_TTL_SECONDS", "1");
        if attempt == 2 {
            // The dead process's lease runs out first (its 1 s and the
            // clock-skew margin other instances add).
            tokio::time::sleep(lease_gone()).await;
        }
        let (out, _, log) = w.ingest(&mut cmd);
        assert!(
            !out.status.success(),
            "attempt {attempt} should abort:\n{log}"
        );
        assert!(log.contains("failpoint abort_decoding"), "{log}");
        if attempt == 2 {
            assert!(
                log.contains("an earlier decode of this file has not ended"),
                "{log}"
            );
        }
    }
    tokio::time::sleep(lease_gone()).await;
    let s = w.ingest_ok(&[("RAINCAST_FAILPOINT", &failpoint)]);
    assert_eq!(n(&s, "quarantined"), 1, "{s}");
    let q = w.quarantined().await;
    assert_eq!((&q[0].0, q[0].1.as_str()), (bad, "crashed"), "{q:?}");
    assert!(q[0].2.contains("2 earlier attempts"), "{q:?}");
    let want: Vec<_> = [0, 1, 2, 4, 5].iter().map(|&s| w.time(s)).collect();
    assert_eq!(w.stored().await, want);
}

/// kill -9 in the middle of a backfill: once the dead instance's lease runs
/// out, the next runs store every scan, and the successful puts of all runs
/// add up to exactly the number of files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_backfill_loses_nothing_and_doubles_nothing() {
    let Some(w) = World::new().await else { return };
    let files = 20;
    w.upload_steps(0..files).await;
    let mut cmd = w.cmd();
    cmd.env("RAINCAST_LEASE_TTL_SECONDS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let mut put_before_kill = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("ingested scan") {
            put_before_kill += 1;
            if put_before_kill == 7 {
                break;
            }
        }
        assert!(started.elapsed().as_secs() < 120, "no progress");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already written before the kill (the reader stopped at the 7th).
    put_before_kill += lines
        .map_while(Result::ok)
        .filter(|l| l.contains("ingested scan"))
        .count();
    assert!(put_before_kill < files as usize, "killed before the end");
    // Right away, the lease is still the dead instance's.
    let s = w.ingest_ok(&[("RAINCAST_LEASE_TTL_SECONDS", "3")]);
    if n(&s, "leases_held") == 1 {
        assert_eq!(n(&s, "ingested"), 0);
    }
    let mut total = put_before_kill as u64 + n(&s, "ingested");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    loop {
        let s = w.ingest_ok(&[("RAINCAST_LEASE_TTL_SECONDS", "3")]);
        total += n(&s, "ingested");
        if n(&s, "remaining") == 0 && n(&s, "leases_held") == 0 {
            break;
        }
    }
    assert_eq!(total, files as u64, "successful puts across all runs");
    assert_eq!(w.stored().await.len(), files as usize);
}

/// Two instances at once: the successful conditional puts of both add up
/// to the number of files (a double write would count twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_at_once_store_each_file_once() {
    let Some(w) = World::new().await else { return };
    let files = 16;
    w.upload_steps(0..files).await;
    let run = |cmd: Command| {
        std::thread::spawn(move || {
            let mut cmd = cmd;
            let mut ingested = 0;
            // Each drains the backlog in batches of 3, racing the other.
            for _ in 0..40 {
                let out = cmd.output().unwrap();
                let log = String::from_utf8_lossy(&out.stderr).to_string();
                assert!(out.status.success(), "{log}");
                let s: Value = serde_json::from_slice(&out.stdout).unwrap();
                ingested += n(&s, "ingested");
                if n(&s, "remaining") == 0 && n(&s, "leases_held") == 0 {
                    break;
                }
            }
            ingested
        })
    };
    let mk = || {
        let mut c = w.cmd();
        c.args(["--batch-size", "3"]);
        c
    };
    let (a, b) = (run(mk()), run(mk()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a + b, files as u64, "puts by a ({a}) and b ({b})");
    assert_eq!(w.stored().await.len(), files as usize);
}
