//! The ingest scenarios of the ingest issue, end to end: the `raincast`
//! binary (built by cargo for this test) against real S3- and
//! DynamoDB-compatible servers (moto, dynalite) started by the test, with the
//! 61 real BOM scans of `../shared/data/bom/02` uploaded under the default
//! key layout `{radar}/{yyyy}/{mm}/{dd}/{file}`.
//!
//! Each scenario checks what an operator would: the JSON summary of
//! `raincast ingest --once`, the logs, and what is actually in the tables
//! (read back with the store library, tiles included).
//!
//! Set `RAINCAST_E2E_DATASET=fmi` to run them on the 12 FMI scans instead.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use raincast_store::{DynamoStore, S3Source, ScanStore, StateStore};
use raincast_testkit::{aws_env, shared_data, Server, TcpProxy};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_raincast");
const BUCKET: &str = "radar-raw";
const TABLES: &str = "e2e-";

/// The real scans used: folder, radar id, file names in time order.
struct Dataset {
    dir: PathBuf,
    radar: &'static str,
    files: Vec<String>,
    since: &'static str,
}

fn dataset() -> Option<Dataset> {
    let data = shared_data()?;
    let (sub, radar, since) = match std::env::var("RAINCAST_E2E_DATASET").as_deref() {
        Ok("fmi") => ("fmi/20160928", "fmi", "2016-09-28T00:00:00Z"),
        _ => ("bom/02", "bom02", "2018-06-16T00:00:00Z"),
    };
    let dir = data.join(sub);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    files.sort();
    Some(Dataset {
        dir,
        radar,
        files,
        since,
    })
}

/// The key of a file under the default layout, from the time in its name.
fn key_of(radar: &str, file: &str) -> String {
    let t = raincast_ingest::layout::time_from_name(file).expect("time in file name");
    format!("{radar}/{}/{file}", t.format("%Y/%m/%d"))
}

/// Servers, the bucket and the tables for one scenario.
struct World {
    moto: Server,
    dynalite: Option<Server>,
    data: Dataset,
    s3: S3Source,
    store: DynamoStore,
}

impl World {
    /// `None` (with a printed reason) when the servers or the data are missing.
    async fn new(use_dynalite: bool) -> Option<World> {
        let data = dataset()?;
        let moto = Server::moto()?;
        let dynalite = if use_dynalite {
            Some(Server::dynalite()?)
        } else {
            None
        };
        let s3 = common::new_bucket(&moto.endpoint(), BUCKET).await;
        let store =
            common::new_tables(&dynalite.as_ref().unwrap_or(&moto).endpoint(), TABLES).await;
        Some(World {
            moto,
            dynalite,
            data,
            s3,
            store,
        })
    }

    fn dynamo_server(&self) -> &Server {
        self.dynalite.as_ref().unwrap_or(&self.moto)
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) {
        common::put_object(&self.s3, BUCKET, key, bytes).await;
    }

    /// Uploads the dataset's files with the given indices.
    async fn upload_files(&self, which: impl IntoIterator<Item = usize>) {
        for i in which {
            let f = &self.data.files[i];
            let bytes = std::fs::read(self.data.dir.join(f)).unwrap();
            self.upload(&key_of(self.data.radar, f), bytes).await;
        }
    }

    /// `raincast` with the environment pointing at this world's servers.
    fn raincast(&self, s3: &str, dynamodb: &str) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, v) in aws_env(None, None) {
            cmd.env(k, v);
        }
        cmd.env("AWS_ENDPOINT_URL_S3", s3)
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
            .env("RAINCAST_SOURCE", format!("s3://{BUCKET}"))
            .env("RAINCAST_STORE", format!("dynamodb://{TABLES}"))
            .env("RAINCAST_LOG", "info")
            .env_remove("RAINCAST_FAILPOINT")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        cmd
    }

    fn cmd(&self) -> Command {
        self.raincast(&self.moto.endpoint(), &self.dynamo_server().endpoint())
    }

    /// The scheduled ingest job (every second) for the dataset's radar,
    /// `batch` scans per run, through `s3` and `dynamodb`.
    fn scheduled(&self, s3: &str, dynamodb: &str, batch: &str) -> Command {
        let mut c = self.raincast(s3, dynamodb);
        c.args([
            "ingest",
            "--radar",
            self.data.radar,
            "--since",
            self.data.since,
            "--batch-size",
            batch,
        ])
        .env("RAINCAST_SCHEDULE", "* * * * * *");
        c
    }

    /// `raincast ingest --once` for the dataset's radar; the parsed summary and the log.
    fn ingest_once(&self, extra: &[&str]) -> (Value, String) {
        let out = self
            .cmd()
            .args([
                "ingest",
                "--once",
                "--radar",
                self.data.radar,
                "--since",
                self.data.since,
            ])
            .args(extra)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ingest failed: {stdout}\n{log}");
        let summary: Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (summary, log)
    }

    /// Runs `ingest --once` until nothing remains; returns the summaries.
    fn drain(&self, extra: &[&str]) -> Vec<Value> {
        let mut runs = Vec::new();
        loop {
            let (s, _) = self.ingest_once(extra);
            let remaining = s["remaining"].as_u64().unwrap();
            runs.push(s);
            if remaining == 0 {
                return runs;
            }
            assert!(runs.len() < 50, "the backlog does not drain: {runs:?}");
        }
    }

    /// Every stored scan of the radar, read back whole (tiles included).
    async fn stored(&self) -> Vec<DateTime<Utc>> {
        let now = Utc::now();
        let from = Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).unwrap();
        let manifests = self
            .store
            .list_scans(self.data.radar, from, now + Duration::days(1), now)
            .await
            .unwrap();
        for m in &manifests {
            let scan = self
                .store
                .get_scan(self.data.radar, m.time, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(scan.tiles.len(), m.tiles.len());
            // The stored bytes decode to the scan they came from.
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
            assert_eq!(field.rain_cells() as u64, m.rain_cells);
        }
        manifests.iter().map(|m| m.time).collect()
    }

    fn expected_times(&self) -> Vec<DateTime<Utc>> {
        self.data
            .files
            .iter()
            .map(|f| raincast_ingest::layout::time_from_name(f).unwrap())
            .collect()
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// A child process whose stderr is collected line by line.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Copies stderr into `log` until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Running {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Waits for the process to exit and for its last log lines to be
    /// read (the exit status alone can come before them).
    fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `pattern` (panics after `secs`).
    async fn wait_for(&mut self, pattern: &str, secs: u64) {
        let start = Instant::now();
        while !self.log().contains(pattern) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited ({status}) before logging {pattern:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed().as_secs() < secs,
                "no {pattern:?} after {secs} s:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1. An empty bucket: nothing listed, nothing stored, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_empty_bucket() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let (s, _) = w.ingest_once(&[]);
    assert_eq!(
        (n(&s, "listed"), n(&s, "ingested"), n(&s, "quarantined")),
        (0, 0, 0),
        "{s}"
    );
    assert!(w.stored().await.is_empty());
}

/// 2 and 3. Every scan uploaded under the date layout is stored exactly once
/// (in two runs: the default batch is 50); a further run finds nothing new.
/// DynamoDB here is dynalite, which enforces the real item and batch limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_3_all_scans_once_then_nothing_new() {
    let Some(w) = World::new(true).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let runs = w.drain(&[]);
    let ingested: u64 = runs.iter().map(|s| n(s, "ingested")).sum();
    assert_eq!(ingested as usize, total, "{runs:?}");
    assert_eq!(n(&runs[0], "ingested") as usize, total.min(50));
    assert!(runs.iter().all(|s| n(s, "quarantined") == 0), "{runs:?}");
    assert_eq!(w.stored().await, w.expected_times());

    // 3. A second run: 0 new.
    let (s, _) = w.ingest_once(&[]);
    assert_eq!(n(&s, "ingested"), 0, "{s}");
    assert!(
        n(&s, "skipped") > 0,
        "the lookback re-lists recent files: {s}"
    );
    assert_eq!(w.stored().await.len(), total);

    // `raincast scans list` shows one line per stored scan.
    let out = w
        .cmd()
        .args(["scans", "list", "--radar", w.data.radar])
        .output()
        .unwrap();
    assert!(out.status.success());
    // An inverted range is refused, not answered with nothing.
    let bad = w
        .cmd()
        .args(["scans", "list", "--radar", w.data.radar])
        .args([
            "--from",
            "2022-01-01T00:00:00Z",
            "--to",
            "2020-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--from"), "{err}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), total);
    for l in &lines {
        assert!(
            l["time"].is_string() && l["bytes"].as_u64().unwrap() > 0,
            "{l}"
        );
        assert!(l["rain_cells"].is_u64() && l["tiles"].is_u64(), "{l}");
    }
}

/// 4. A file uploaded late, behind the checkpoint but within the lookback,
/// is picked up by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_late_file_behind_the_checkpoint() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let total = w.data.files.len();
    let late = total - 3;
    w.upload_files((0..total).filter(|i| *i != late)).await;
    let runs = w.drain(&["--batch-size", "100"]);
    assert_eq!(
        runs.iter().map(|s| n(s, "ingested")).sum::<u64>() as usize,
        total - 1
    );
    let cp = w.store.get_checkpoint(w.data.radar).await.unwrap().unwrap();
    let late_time = w.expected_times()[late];
    assert!(
        cp.last_time > late_time,
        "the late file is behind the checkpoint"
    );
    w.upload_files([late]).await;
    let (s, _) = w.ingest_once(&[]);
    assert_eq!(n(&s, "ingested"), 1, "{s}");
    assert_eq!(w.stored().await, w.expected_times());
}

/// 5. Two ingesters on the same radar at once: every scan stored exactly
/// once, and the logs show the lease passing between them. DynamoDB is
/// dynalite here: moto does not make conditional writes atomic under
/// concurrency, and these two scenarios are about exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_two_ingesters_at_once() {
    let Some(w) = World::new(true).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let mut ingested = 0u64;
    let mut logs = String::new();
    for round in 0.. {
        assert!(round < 60, "not drained after {round} rounds");
        // Two processes started together, each one pass of at most 7 scans.
        let args = [
            "ingest",
            "--once",
            "--radar",
            w.data.radar,
            "--since",
            w.data.since,
            "--batch-size",
            "7",
        ];
        let spawn = || {
            w.cmd()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Both started before either is waited for.
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output(), b.wait_with_output());
        let mut remaining = 0;
        for out in [a.unwrap(), b.unwrap()] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let s: Value = serde_json::from_slice(&out.stdout).unwrap();
            ingested += n(&s, "ingested");
            remaining += n(&s, "remaining");
            logs.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        if remaining == 0 && w.stored().await.len() == total {
            break;
        }
    }
    assert_eq!(ingested as usize, total, "every scan stored exactly once");
    assert_eq!(w.stored().await, w.expected_times());
    assert!(
        logs.contains("lease handed over"),
        "no hand-over in the logs:\n{logs}"
    );
    assert_eq!(
        logs.matches("ingested scan [").count(),
        total,
        "one progress line per scan"
    );
}

/// 5b. Two long-running ingesters (the scheduled job, every second) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5b_two_scheduled_ingesters() {
    let Some(w) = World::new(true).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let spawn =
        || Running::spawn(w.scheduled(&w.moto.endpoint(), &w.dynamo_server().endpoint(), "4"));
    let (a, b) = (spawn(), spawn());
    let start = Instant::now();
    while w.stored().await.len() < total {
        assert!(
            start.elapsed().as_secs() < 240,
            "not done:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for r in [&a, &b] {
        r.signal("-TERM");
    }
    let mut logs = String::new();
    for mut r in [a, b] {
        let status = r.wait();
        assert!(status.success(), "{status}: {}", r.log());
        logs.push_str(&r.log());
        assert!(
            r.log().contains("ingest jobs stopped"),
            "graceful shutdown:\n{}",
            r.log()
        );
    }
    assert_eq!(
        logs.matches("ingested scan [").count(),
        total,
        "each scan stored once:\n{logs}"
    );
    assert_eq!(w.stored().await, w.expected_times());
}

/// 6. A crash after the tile and manifest writes of a scan and before its
/// checkpoint (the process is killed there), and a crash at an arbitrary
/// moment: after restarts nothing is lost and nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_6_crash_between_writes_and_checkpoint() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    // A short lease, so that a killed holder's lease runs out quickly.
    let lease_s: u64 = 2;
    let run = |failpoint: Option<&str>| {
        let mut c = w.cmd();
        c.args([
            "ingest",
            "--once",
            "--radar",
            w.data.radar,
            "--since",
            w.data.since,
        ])
        .env("RAINCAST_LEASE_TTL_SECONDS", lease_s.to_string());
        if let Some(fp) = failpoint {
            c.env("RAINCAST_FAILPOINT", fp);
        }
        Running::spawn(c)
    };
    let mut r = run(Some("pause_after_put:5"));
    r.wait_for("failpoint pause_after_put:5", 120).await;
    r.signal("-KILL");
    let _ = r.child.wait();
    assert_eq!(w.stored().await.len(), 5);
    let cp = w.store.get_checkpoint(w.data.radar).await.unwrap().unwrap();
    assert_eq!(
        cp.last_time,
        w.expected_times()[3],
        "the 5th scan's checkpoint was never written"
    );

    // A second crash at an arbitrary point (possibly between tile writes),
    // once the killed holder's lease (and the clock-skew margin other
    // instances add to it) has run out: the restart takes it over.
    let wait_lease = std::time::Duration::from_millis(lease_s * 1000 + 500)
        + raincast_store::LEASE_SKEW_MARGIN
            .to_std()
            .expect("a positive margin");
    tokio::time::sleep(wait_lease).await;
    let mut r = run(None);
    r.wait_for("ingested scan [3/", 120).await;
    assert!(r.log().contains("lease taken over"), "{}", r.log());
    r.signal("-KILL");
    let _ = r.child.wait();

    tokio::time::sleep(wait_lease).await;
    // Every progress line the killed run printed is a scan it stored.
    let second = r.log().matches("ingested scan [").count() as u64;
    let runs = w.drain(&[]);
    let stored = w.stored().await;
    assert_eq!(stored, w.expected_times(), "nothing lost, nothing doubled");
    // No scan was stored twice: 5 before the first kill, `second` by the
    // killed run, the rest by the restart. (A scan cut between its tile
    // writes is stored by the restart; one whose manifest landed just before
    // the kill but whose progress line did not is counted by nobody, hence
    // the one-scan allowance below.)
    let rest: u64 = runs.iter().map(|s| n(s, "ingested")).sum();
    let counted = 5 + second + rest;
    assert!(
        counted == total as u64 || counted + 1 == total as u64,
        "{counted} of {total}: {runs:?}"
    );
    assert!(runs.iter().all(|s| n(s, "quarantined") == 0));
}

/// 7. A corrupt file and a truncated one: quarantined with their reasons, the
/// rest ingested, and not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_7_corrupt_file_quarantined() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let times = w.expected_times();
    let name_at = |t: DateTime<Utc>, suffix: &str| {
        format!(
            "{}/{}/x_{}{suffix}",
            w.data.radar,
            t.format("%Y/%m/%d"),
            t.format("%Y%m%d_%H%M%S")
        )
    };
    let garbage = name_at(times[total / 3] + Duration::minutes(1), ".nc");
    w.upload(&garbage, b"this is not a radar file".to_vec())
        .await;
    let first = std::fs::read(w.data.dir.join(&w.data.files[total * 2 / 3])).unwrap();
    let truncated = name_at(times[total * 2 / 3] + Duration::minutes(1), ".nc");
    w.upload(&truncated, first[..first.len() / 3].to_vec())
        .await;

    let runs = w.drain(&[]);
    assert_eq!(
        runs.iter().map(|s| n(s, "ingested")).sum::<u64>() as usize,
        total
    );
    assert_eq!(
        runs.iter().map(|s| n(s, "quarantined")).sum::<u64>(),
        2,
        "{runs:?}"
    );
    assert_eq!(w.stored().await, w.expected_times());

    let out = w
        .cmd()
        .args(["scans", "quarantined", "--radar", w.data.radar])
        .output()
        .unwrap();
    assert!(out.status.success());
    let q: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(q.len(), 2, "{q:?}");
    let keys: Vec<&str> = q.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(
        keys.contains(&garbage.as_str()) && keys.contains(&truncated.as_str()),
        "{keys:?}"
    );
    assert!(q.iter().all(|r| !r["reason"].as_str().unwrap().is_empty()));
    let garbage_rec = q.iter().find(|r| r["key"] == garbage.as_str()).unwrap();
    assert_eq!(
        garbage_rec["reason_code"], "unknown_content",
        "{garbage_rec}"
    );

    // Not retried.
    let (s, _) = w.ingest_once(&[]);
    assert_eq!((n(&s, "ingested"), n(&s, "quarantined")), (0, 0), "{s}");
    // Raw files untouched.
    let got =
        w.s3.client()
            .get_object()
            .bucket(BUCKET)
            .key(&truncated)
            .send()
            .await
            .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().len(),
        first.len() / 3
    );
}

/// 8. S3 and DynamoDB unreachable for a while under the scheduled job: it
/// logs the failures, backs off, catches up when they return, and nothing
/// is half-written meanwhile. Then a graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_8_servers_unreachable_for_a_while() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let s3_proxy = TcpProxy::start(w.moto.addr()).await;
    let ddb_proxy = TcpProxy::start(w.dynamo_server().addr()).await;
    let mut c = w.scheduled(&s3_proxy.endpoint(), &ddb_proxy.endpoint(), "5");
    c.env("RAINCAST_BACKOFF_BASE_SECONDS", "1")
        .env("RAINCAST_BACKOFF_MAX_SECONDS", "2");
    let mut r = Running::spawn(c);
    r.wait_for("ingested scan [", 120).await;

    // DynamoDB goes away, then S3 too.
    ddb_proxy.set_up(false);
    r.wait_for("backing off", 60).await;
    s3_proxy.set_up(false);
    let during = w.stored().await; // reads every stored scan whole
    assert!(during.len() < total);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        w.stored().await,
        during,
        "nothing written while unreachable"
    );

    // Both come back: it catches up.
    s3_proxy.set_up(true);
    ddb_proxy.set_up(true);
    let start = Instant::now();
    while w.stored().await.len() < total {
        assert!(start.elapsed().as_secs() < 240, "no catch-up:\n{}", r.log());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    r.wait_for("ingest recovered", 60).await;
    assert_eq!(w.stored().await, w.expected_times());

    r.signal("-TERM");
    r.wait_for("ingest jobs stopped", 60).await;
    let status = r.wait();
    assert!(status.success(), "{status}");
    let log = r.log();
    let failures = log.matches("ingest run failed").count();
    assert!(failures > 0, "{log}");
    // No scan ingested twice: every progress line names a different scan.
    // A write cut off while its reply was on the way (the proxy closes the
    // connection) may have landed: the next run finds that scan stored and
    // skips it, so it has no progress line; at most one per failed run.
    if let Err(e) = each_scan_ingested_once(&log, total, failures) {
        panic!("{e}:\n{log}");
    }
}

/// 9. DynamoDB hangs (accepts connections, never answers: a frozen server
/// or a black-holed network) when the operator stops the service: the
/// graceful shutdown cannot finish (the SDK would wait 3 attempts of 30 s),
/// so the process exits on its own once `RAINCAST_SHUTDOWN_GRACE_S` has
/// passed, with status 1 and a log line that says why, not after minutes
/// or by systemd's SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_9_a_hanging_store_does_not_hold_the_shutdown_past_its_grace() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let (mut r, _proxy) = hanging_on_its_store(&w, "3").await;
    let stopped_at = Instant::now();
    r.signal("-TERM");
    let status = r.wait();
    let took = stopped_at.elapsed();
    let log = r.log();
    assert!(
        took < std::time::Duration::from_secs(20),
        "took {took:?} to exit:\n{log}"
    );
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains("shutdown did not finish within the grace"),
        "{log}"
    );
}

/// A scheduled ingest (shutdown grace `grace_s`) that stored a scan, then
/// hangs on its store (DynamoDB behind a stalled proxy, returned to keep
/// it stalled).
async fn hanging_on_its_store(w: &World, grace_s: &str) -> (Running, TcpProxy) {
    let total = w.data.files.len();
    w.upload_files(0..total).await;
    let ddb_proxy = TcpProxy::start(w.dynamo_server().addr()).await;
    let mut c = w.scheduled(&w.moto.endpoint(), &ddb_proxy.endpoint(), "1");
    c.env("RAINCAST_SHUTDOWN_GRACE_S", grace_s);
    let mut r = Running::spawn(c);
    r.wait_for("ingested scan [", 120).await;
    ddb_proxy.stall();
    // A run starts within a second and hangs on its first request.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    (r, ddb_proxy)
}

/// OPERATIONS: a second Ctrl-C or SIGTERM ends the process at once, with
/// status 1, whatever the grace (here 300 s, with the store hanging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_9b_a_second_signal_ends_the_shutdown_at_once() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let (mut r, _proxy) = hanging_on_its_store(&w, "300").await;
    let stopped_at = Instant::now();
    r.signal("-TERM");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    r.signal("-TERM");
    let status = r.wait();
    let took = stopped_at.elapsed();
    let log = r.log();
    assert!(
        took < std::time::Duration::from_secs(30),
        "took {took:?} to exit:\n{log}"
    );
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(log.contains("a second stop signal"), "{log}");
}

/// Checks a log's progress lines: no scan twice, and `total` scans less at
/// most one per failed run (see scenario 8).
fn each_scan_ingested_once(log: &str, total: usize, failures: usize) -> Result<(), String> {
    let times = ingested_times(log);
    let unique: std::collections::BTreeSet<&str> = times.iter().map(String::as_str).collect();
    if unique.len() != times.len() {
        return Err(format!("a scan ingested twice: {times:?}"));
    }
    if times.len() > total || times.len() + failures < total {
        return Err(format!(
            "{} progress lines for {total} scans and {failures} failed runs",
            times.len()
        ));
    }
    Ok(())
}

/// The `time` field of every "ingested scan [" line of a child's log (its
/// colour codes removed).
fn ingested_times(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("ingested scan ["))
        .filter_map(|l| {
            let mut plain = String::with_capacity(l.len());
            let mut in_escape = false;
            for ch in l.chars() {
                match (in_escape, ch) {
                    (false, '\u{1b}') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => plain.push(c),
                }
            }
            let rest = &plain[plain.find(" time=")? + 6..];
            Some(rest.split_whitespace().next()?.to_string())
        })
        .collect()
}

#[test]
fn ingested_times_reads_plain_and_coloured_lines() {
    let log = "x ingested scan [1/3] radar=\"a\" time=2018-06-16T10:00:00Z key=\"k\"\n\
               \u{1b}[32m INFO\u{1b}[0m ingested scan [2/3] \u{1b}[3mtime\u{1b}[0m\u{1b}[2m=\u{1b}[0m2018-06-16T10:06:00Z \u{1b}[3mkey\u{1b}[0m\n\
               other line time=2018-06-16T10:12:00Z\n";
    assert_eq!(
        ingested_times(log),
        ["2018-06-16T10:00:00Z", "2018-06-16T10:06:00Z"]
    );
    // The check sees a duplicate, and a scan missing without a failure.
    let twice = format!("{log}ingested scan [3/3] time=2018-06-16T10:06:00Z\n");
    assert!(each_scan_ingested_once(&twice, 3, 1)
        .unwrap_err()
        .contains("twice"));
    assert!(each_scan_ingested_once(log, 2, 0).is_ok());
    assert!(each_scan_ingested_once(log, 3, 1).is_ok());
    assert!(each_scan_ingested_once(log, 3, 0).is_err());
}
