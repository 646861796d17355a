//! Event-driven ingest end to end: the `raincast` binary against moto's S3
//! and SQS (the bucket sends its own event notifications to the queue, with
//! a redrive policy to a dead-letter queue) and dynalite's DynamoDB, on
//! small synthetic ODIM_H5 volumes from the demo radar's generator.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use raincast_ingest::demo::{DemoOptions, DemoRadar};
use raincast_store::aws::sdk_config_for_endpoint;
use raincast_store::conformance::{notified_queue, take_all};
use raincast_store::{DynamoStore, MessageQueue, S3Source, ScanStore, SqsQueue, StateStore};
use raincast_testkit::{aws_env, Server, TempDir};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

const BIN: &str = env!("CARGO_BIN_EXE_raincast");
const BUCKET: &str = "radar-raw";
const TABLES: &str = "queue-e2e-";
const RADAR: &str = "demo";

struct World {
    moto: Server,
    dynalite: Server,
    s3: S3Source,
    store: DynamoStore,
    queue: SqsQueue,
    dlq: SqsQueue,
    files: TempDir,
}

impl World {
    async fn new() -> Option<World> {
        let moto = Server::moto()?;
        let dynalite = Server::dynalite()?;
        let s3 = common::new_bucket(&moto.endpoint(), BUCKET).await;
        let store = common::new_tables(&dynalite.endpoint(), TABLES).await;
        let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
        let (queue, dlq) = notified_queue(&sdk, BUCKET, "raw", 5).await;
        Some(World {
            queue,
            dlq,
            moto,
            dynalite,
            s3,
            store,
            files: TempDir::new("queue-e2e"),
        })
    }

    /// Writes `n` 5-minute synthetic ODIM volumes ending now and uploads
    /// them (S3 notifies the queue of each). Returns their keys.
    async fn upload_scans(&self, n: i64) -> Vec<String> {
        let radar = DemoRadar::new(DemoOptions {
            side: 32,
            step_s: 300,
            backfill: Duration::minutes(5 * (n - 1)),
            ..DemoOptions::new(self.files.path())
        })
        .unwrap();
        radar.backfill(Utc::now()).unwrap();
        let mut keys = Vec::new();
        for entry in common::walk(self.files.path()) {
            let key = entry
                .strip_prefix(self.files.path())
                .unwrap()
                .to_string_lossy()
                .to_string();
            self.put(&key, std::fs::read(&entry).unwrap()).await;
            keys.push(key);
        }
        std::fs::remove_dir_all(self.files.path().join(RADAR)).unwrap();
        keys.sort();
        keys
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) {
        common::put_object(&self.s3, BUCKET, key, bytes).await;
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, v) in aws_env(Some(&self.moto), Some(&self.dynalite)) {
            cmd.env(k, v);
        }
        cmd.env("AWS_ENDPOINT_URL_SQS", self.moto.endpoint())
            .env("RAINCAST_LOG", "info")
            .env_remove("RAINCAST_FAILPOINT")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        cmd
    }

    /// `raincast ingest --once --source … --queue … --store … --create-tables`.
    fn ingest_cmd(&self) -> Command {
        self.ingest_cmd_with(&format!("s3://{BUCKET}"), self.queue.url())
    }

    /// [`Self::ingest_cmd`] with this source and queue.
    fn ingest_cmd_with(&self, source: &str, queue: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["ingest", "--once", "--radar", RADAR])
            .args(["--source", source])
            .args(["--queue", queue])
            .args([
                "--store",
                &format!("dynamodb://{TABLES}"),
                "--create-tables",
            ]);
        cmd
    }

    fn ingest_once(&self, env: &[(&str, &str)]) -> Value {
        let mut cmd = self.ingest_cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        summary_of(cmd.output().unwrap())
    }

    async fn stored(&self) -> Vec<String> {
        let now = Utc::now();
        let mut keys: Vec<String> = self
            .store
            .list_scans(RADAR, now - Duration::days(2), now + Duration::days(1), now)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.source_key)
            .collect();
        keys.sort();
        keys
    }
}

fn summary_of(out: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ingest failed: {stdout}\n{log}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{log}"))
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_once_drains_a_queue_fed_by_s3_notifications() {
    let Some(w) = World::new().await else { return };
    let keys = w.upload_scans(60).await;
    assert_eq!(keys.len(), 60);
    // A corrupt volume and a message that is not an S3 event.
    let now: DateTime<Utc> = Utc::now();
    let corrupt = format!("{RADAR}/{}/{RADAR}_corrupt.h5", now.format("%Y/%m/%d"));
    w.put(&corrupt, b"\x89HDF\r\n\x1a\nnot really".to_vec())
        .await;
    w.queue.send("not an event").await.unwrap();

    let s = w.ingest_once(&[]);
    // 60 scans + the corrupt one + the stray message + the test event: 63
    // sent. S3 notifies and SQS delivers at least once: under load an upload
    // the SDK retried was notified twice (a CI run), and so was the bucket's
    // notification configuration, a second test event (a stress run). Every
    // delivery beyond the 63 must end as one that stores nothing (an object
    // found already stored, skipped; a message about no object, ignored) and
    // be deleted; with none, each count is exactly one delivery's.
    let messages = n(&s, "messages");
    assert!(
        (63..=66).contains(&messages),
        "a few repeated deliveries at most: {s}"
    );
    let ignored = n(&s, "ignored_messages");
    assert!(ignored >= 2, "the stray message and the test event: {s}");
    assert_eq!(n(&s, "skipped") + ignored - 2, messages - 63, "{s}");
    assert_eq!(n(&s, "deleted"), messages, "{s}");
    assert_eq!(n(&s, "ingested"), 60, "{s}");
    assert_eq!(n(&s, "quarantined"), 1, "{s}");
    assert_eq!(w.stored().await, keys);
    let q = w.store.list_quarantined(RADAR).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].key, corrupt);
    assert!(take_all(&w.queue).await.is_empty(), "queue empty");
    assert!(take_all(&w.dlq).await.is_empty(), "dead-letter queue empty");

    // Again: nothing left to do, nothing stored twice.
    let again = w.ingest_once(&[]);
    assert_eq!(
        (n(&again, "messages"), n(&again, "ingested")),
        (0, 0),
        "{again}"
    );
    assert_eq!(w.stored().await.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumer_processes_store_each_object_once() {
    let Some(w) = World::new().await else { return };
    let keys = w.upload_scans(40).await;
    let spawn = || {
        w.ingest_cmd()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        summary_of(a.wait_with_output().unwrap()),
        summary_of(b.wait_with_output().unwrap()),
    );
    assert_eq!(n(&a, "ingested") + n(&b, "ingested"), 40, "{a}\n{b}");
    // 40 scans + the test event, plus any repeated delivery (at least once:
    // an object found already stored, counted as skipped, or a repeated test
    // event, ignored; deleted either way, nothing stored again; see the test
    // above).
    let ignored = n(&a, "ignored_messages") + n(&b, "ignored_messages");
    assert!(ignored >= 1, "the test event: {a}\n{b}");
    let repeats = n(&a, "skipped") + n(&b, "skipped") + ignored - 1;
    assert!(repeats <= 3, "a few repeated deliveries at most: {a}\n{b}");
    assert_eq!(
        n(&a, "deleted") + n(&b, "deleted"),
        41 + repeats,
        "{a}\n{b}"
    );
    assert_eq!(w.stored().await, keys);
    assert!(take_all(&w.queue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_finds_an_object_whose_notification_was_lost() {
    let Some(w) = World::new().await else { return };
    let keys = w.upload_scans(3).await;
    // One notification is lost on its way.
    let got = w
        .queue
        .receive(10, StdDuration::from_secs(1), StdDuration::from_secs(30))
        .await
        .unwrap();
    // (S3 events URL-encode keys: the file name has nothing to encode.)
    let name = keys[1].rsplit('/').next().unwrap();
    let lost = got.iter().find(|m| m.body.contains(name)).unwrap();
    w.queue.delete(&lost.receipt).await.unwrap();
    for m in got.iter().filter(|m| m.receipt != lost.receipt) {
        w.queue.extend(&m.receipt, StdDuration::ZERO).await.unwrap();
    }
    let s = w.ingest_once(&[("RAINCAST_QUEUE__RECONCILE_GRACE_SECONDS", "0")]);
    assert_eq!(n(&s, "ingested"), 3, "{s}");
    assert_eq!(n(&s, "reconciled"), 1, "{s}");
    assert_eq!(n(&s["radars"][0], "reconciled"), 1, "{s}");
    assert_eq!(w.stored().await, keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_queue_ingests_new_objects_as_they_arrive() {
    let Some(w) = World::new().await else { return };
    let port = raincast_testkit::free_port();
    let mut child = w
        .cmd()
        .args([
            "run",
            "--radar",
            RADAR,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--source", &format!("s3://{BUCKET}")])
        .args(["--queue", w.queue.url()])
        .args(["--store", &format!("dynamodb://{TABLES}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let keys = w.upload_scans(2).await;
    let mut stored = Vec::new();
    for _ in 0..300 {
        stored = w.stored().await;
        if stored == keys {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(|r| r.error_for_status());
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert_eq!(stored, keys);
    let text = metrics.unwrap().text().await.unwrap();
    let metric = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    // Both objects' notifications handled and deleted; a notification that
    // comes again (S3 and SQS deliver at least once: CI saw one redelivered)
    // is found already stored, counted as skipped and deleted, never stored
    // twice (`stored == keys` above).
    let done = metric("raincast_ingest_queue_messages_total{outcome=\"done\"}");
    let skipped = metric(&format!(
        "raincast_ingest_skipped_total{{radar=\"{RADAR}\"}}"
    ));
    assert!((2..=2 + skipped).contains(&done), "{text}");
}

/// S3's "Object Created" event as an EventBridge rule delivers it to a
/// queue (the key as it is, not URL-encoded).
fn eventbridge_event(bucket: &str, key: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1},
            "reason": "PutObject"
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_fed_by_an_eventbridge_rule_ingests_as_well() {
    let Some(w) = World::new().await else { return };
    let keys = w.upload_scans(3).await;
    // Only EventBridge's messages: S3's own notifications are dropped.
    take_all(&w.queue).await;
    for key in &keys {
        w.queue.send(&eventbridge_event(BUCKET, key)).await.unwrap();
    }
    let s = w.ingest_once(&[]);
    assert_eq!(n(&s, "ingested"), 3, "{s}");
    assert_eq!(n(&s, "ignored_messages"), 0, "{s}");
    assert_eq!(w.stored().await, keys);
    assert!(take_all(&w.dlq).await.is_empty(), "dead-letter queue empty");
}

/// Settings the queue cannot work with stop the start with a line naming
/// them, instead of a consumer that retries for ever (a queue that does not
/// exist) or deletes every notification as outside the source (a folder
/// source). A queue that stops answering makes `ingest --once` fail, not
/// report an empty queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_it_cannot_use_is_an_error_not_an_empty_queue() {
    let Some(w) = World::new().await else { return };
    let missing = format!(
        "{}/123456789012/no-such-queue",
        w.moto.endpoint().trim_end_matches('/')
    );
    let out = w
        .ingest_cmd_with(&format!("s3://{BUCKET}"), &missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("Error: queue {missing}")) && err.contains("not found"),
        "{err}"
    );

    let folder = TempDir::new("queue-folder-source");
    let out = w
        .ingest_cmd_with(folder.path().to_str().unwrap(), w.queue.url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is a folder"), "{err}");

    // SQS refusing every request (here from the start: the start-up check
    // cannot tell, so it only warns): three failed receives in a row, then
    // an error naming them.
    let proxy = raincast_testkit::TcpProxy::start(w.moto.addr()).await;
    proxy.set_up(false);
    let mut cmd = w.ingest_cmd();
    cmd.env("AWS_ENDPOINT_URL_SQS", proxy.endpoint());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot ask SQS about the queue now"), "{err}");
    assert!(err.contains("the queue was not read to its end"), "{err}");
}

/// SQS that accepts connections and never answers (a hung endpoint): the
/// start-up question about the queue gives up after 10 s with a warning,
/// and `run` serves its API instead of waiting out the SDK's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sqs_does_not_hold_the_start() {
    let Some(w) = World::new().await else { return };
    let proxy = raincast_testkit::TcpProxy::start(w.moto.addr()).await;
    proxy.stall();
    let mut cmd = w.cmd();
    cmd.env("AWS_ENDPOINT_URL_SQS", proxy.endpoint())
        .args(["run", "--radar", RADAR, "--listen", "127.0.0.1:0"])
        .args(["--source", &format!("s3://{BUCKET}")])
        .args(["--queue", w.queue.url()])
        .args([
            "--store",
            &format!("dynamodb://{TABLES}"),
            "--create-tables",
        ]);
    let mut run = common::Running::start(&mut cmd);
    let mut log = Vec::new();
    // The SDK alone would take about 90 s (three 30-s attempts).
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    while !log
        .iter()
        .any(|l: &String| l.contains("HTTP API listening"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not serving 60 s after the start:\n{}",
            log.join("\n")
        );
        if let Ok(l) = run.lines.recv_timeout(StdDuration::from_millis(200)) {
            log.push(l);
        }
    }
    run.stop();
    log.extend(run.lines.try_iter());
    assert!(
        log.iter()
            .any(|l| l.contains("cannot ask SQS about the queue now (no answer)")),
        "{}",
        log.join("\n")
    );
}
