//! The queue consumer against moto's S3 and SQS (S3 sends the
//! notifications itself), with the embedded store and the crate's text
//! processor. The binary's end-to-end runs are in
//! `services/raincast/tests/queue_ingest.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::IngestSettings;
use crate::layout::DEFAULT_TEMPLATE;
use crate::metrics::IngestMetrics;
use crate::process::{ProcessedScan, Rejection, ScanProcessor};
use crate::test_support::TextProcessor;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use raincast_store::aws::sdk_config_for_endpoint;
use raincast_store::conformance::{notified_queue, take_all};
use raincast_store::{EmbeddedStore, S3Source, ScanStore, SqsQueue, StateStore};
use raincast_testkit::{Server, TcpProxy, TempDir};
use std::sync::atomic::AtomicUsize;

const BUCKET: &str = "radar-raw";

/// The text processor, slowed down and counting its calls.
struct SlowProcessor {
    delay: Duration,
    calls: AtomicUsize,
}

impl ScanProcessor for SlowProcessor {
    fn process(
        &self,
        radar: &RadarConfig,
        file: &str,
        bytes: &[u8],
    ) -> Result<ProcessedScan, Rejection> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        TextProcessor.process(radar, file, bytes)
    }
}

struct World {
    moto: Server,
    _dir: TempDir,
    store: EmbeddedStore,
    s3: S3Source,
    queue: SqsQueue,
    dlq: SqsQueue,
}

impl World {
    /// moto with the bucket, the queue (redrive to the dead-letter queue
    /// after `max_receive` receipts) and the bucket's notifications to it.
    async fn new(max_receive: u32) -> Option<World> {
        let moto = Server::moto()?;
        let sdk = sdk_config_for_endpoint(&moto.endpoint(), 3).await;
        let s3 = S3Source::new(&sdk, BUCKET, "", true);
        s3.client()
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
        let (queue, dlq) = notified_queue(&sdk, BUCKET, "raw", max_receive).await;
        let dir = TempDir::new("queue");
        let store = EmbeddedStore::open(dir.path().join("store.redb"), ChronoDuration::days(7))
            .await
            .unwrap();
        Some(World {
            queue,
            dlq,
            moto,
            _dir: dir,
            store,
            s3,
        })
    }

    /// Uploads a RAINTEST scan of `radar` at `t` (S3 notifies the queue).
    async fn put_scan(&self, radar: &str, t: DateTime<Utc>) -> String {
        let key = key_of(radar, t);
        self.put(&key, &format!("RAINTEST {} 5", t.to_rfc3339()))
            .await;
        key
    }

    async fn put(&self, key: &str, content: &str) {
        self.s3
            .client()
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(content.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    fn settings(&self, workers: usize, all_radars: bool) -> IngestSettings {
        IngestSettings {
            queue: Some(QueueSettings {
                url: self.queue.url().to_string(),
                reconcile_schedule: crate::config::queue::DEFAULT_RECONCILE_SCHEDULE.into(),
                workers,
                all_radars,
                visibility_timeout: Duration::from_secs(3),
                wait: Duration::from_secs(1),
                reconcile_grace: ChronoDuration::zero(),
            }),
            since: Some(t(0)),
            settle: ChronoDuration::zero(),
            ..IngestSettings::default()
        }
    }

    /// A consumer of radar `r1` (and any radar under `all_radars`) whose
    /// S3 reads go to `s3_endpoint`.
    async fn consumer(
        &self,
        settings: &IngestSettings,
        processor: Arc<dyn ScanProcessor>,
        s3: Option<&S3Source>,
    ) -> (Arc<QueueConsumer>, Arc<Ingester>, RadarSource) {
        let (_tx, rx) = watch::channel(false);
        let ingester = Arc::new(Ingester::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
            processor,
            settings.clone(),
            "test-owner".into(),
            IngestMetrics::standalone(),
            rx,
        ));
        let source: Arc<dyn ScanSource> = Arc::new(s3.unwrap_or(&self.s3).clone());
        let template = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        let rs = RadarSource {
            radar: RadarConfig::ad_hoc("r1", &template),
            source: source.clone(),
        };
        let deps = QueueDeps {
            queue: Arc::new(self.queue.clone()),
            source,
            key_template: template,
        };
        let c = QueueConsumer::new(
            ingester.clone(),
            deps,
            vec![rs.clone()],
            settings.queue.clone().unwrap(),
        );
        (c, ingester, rs)
    }

    async fn drain(&self, c: &Arc<QueueConsumer>) -> QueueSummary {
        let (_tx, rx) = watch::channel(false);
        c.clone().drain(rx).await
    }

    async fn stored(&self, radar: &str) -> Vec<String> {
        self.store
            .list_scans(
                radar,
                t(0) - ChronoDuration::days(1),
                t(0) + ChronoDuration::days(1),
                Utc::now(),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.source_key)
            .collect()
    }
}

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap() + ChronoDuration::minutes(minute)
}

fn key_of(radar: &str, t: DateTime<Utc>) -> String {
    format!(
        "{radar}/{}/{radar}_{}.txt",
        t.format("%Y/%m/%d"),
        t.format("%Y%m%d_%H%M%S")
    )
}

/// An S3 event record for `key`, as S3 writes it.
fn s3_event(key: &str) -> String {
    s3_event_sized(key, 40)
}

/// S3's notification of `key` created with `size` bytes.
fn s3_event_sized(key: &str, size: u64) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2018-06-16T10:00:01.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "raw",
               "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
               "object": {"key": key, "size": size}}}]})
    .to_string()
}

/// The same event in the envelope an SNS subscription delivers (raw
/// message delivery off), as from NOAA's new-object topic.
fn sns_wrapped(key: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "b5ab6e2c-2a9c-5d7f-9a1e-4e3c7f0f0c11",
        "TopicArn": "arn:aws:sns:us-east-1:811054952067:NewNEXRADLevel2Object",
        "Subject": "Amazon S3 Notification",
        "Message": s3_event(key),
        "Timestamp": "2018-06-16T10:00:01.100Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notified_objects_are_stored_and_every_message_is_deleted() {
    let Some(w) = World::new(3).await else { return };
    let mut settings = w.settings(2, false);
    // With the 3-s visibility of the other tests, a message of a batch
    // waiting for its worker could reappear under a loaded CI machine (the
    // extender renews every second). 30 s makes repeated deliveries rare;
    // the counts below still allow a few (SQS delivers at least once), as
    // long as each ends without storing anything.
    if let Some(q) = settings.queue.as_mut() {
        q.visibility_timeout = Duration::from_secs(30);
    }
    let (c, ingester, _) = w.consumer(&settings, Arc::new(TextProcessor), None).await;
    let mut keys = Vec::new();
    for i in 0..12 {
        keys.push(w.put_scan("r1", t(i * 5)).await);
    }
    // One corrupt file, one radar nobody configured, one key that is no scan.
    w.put("r1/2018/06/16/r1_20180616_120000.txt", "garbage")
        .await;
    w.put_scan("r9", t(0)).await;
    w.put("README.md", "not a scan").await;
    // One event arriving through an SNS subscription, and a stray message.
    let sns_key = key_of("r1", t(300));
    w.s3.client()
        .put_object()
        .bucket("radar-raw")
        .key(&sns_key)
        .body(
            format!("RAINTEST {} 5", t(300).to_rfc3339())
                .into_bytes()
                .into(),
        )
        .send()
        .await
        .unwrap();
    w.queue.send(&sns_wrapped(&sns_key)).await.unwrap();
    w.queue.send("{\"hello\": \"world\"}").await.unwrap();

    let s = w.drain(&c).await;
    // 12 + corrupt + r9 + README + SNS object's own + SNS + stray + test
    // event: 19 sent. SQS delivers at least once, and a CI run saw a 20th
    // delivery even with the 30-s visibility (a record already stored,
    // skipped and deleted). So every delivery beyond the 19 must end as
    // one more of the outcomes that store nothing; with none, the counts
    // are exactly those of one delivery each.
    assert!(s.messages >= 19, "{s:?}");
    let extra = s.messages - 19;
    assert!(extra <= 3, "a few repeated deliveries at most: {s:?}");
    assert_eq!(s.deleted, s.messages, "{s:?}");
    assert_eq!(s.retried, 0, "{s:?}");
    assert_eq!(s.ingested, 13, "nothing stored twice: {s:?}");
    // One outcome per delivery.
    assert_eq!(
        s.ignored_messages
            + s.skipped_records
            + s.ingested
            + s.skipped
            + s.quarantined
            + s.still_quarantined,
        s.messages,
        "{s:?}"
    );
    let at_least = [
        (
            s.ignored_messages,
            2,
            "the test event and the stray message",
        ),
        (s.skipped, 1, "the SNS copy of a stored object"),
        (s.quarantined, 1, "the corrupt file"),
        (s.still_quarantined, 0, "the corrupt file again"),
        (s.skipped_records, 2, "r9 and README"),
    ];
    for (got, want, what) in at_least {
        assert!(got >= want, "{what}: {s:?}");
    }
    // With no repeated delivery, each is exactly its count.
    let repeats: usize = at_least.iter().map(|(got, want, _)| got - want).sum();
    assert_eq!(repeats, extra, "{s:?}");
    let mut stored = w.stored("r1").await;
    stored.sort();
    keys.push(sns_key);
    keys.sort();
    assert_eq!(stored, keys);
    assert!(w.stored("r9").await.is_empty());
    let q = w.store.list_quarantined("r1").await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].key, "r1/2018/06/16/r1_20180616_120000.txt");
    assert!(take_all(&w.queue).await.is_empty(), "queue empty");
    assert!(
        take_all(&w.dlq).await.is_empty(),
        "nothing in the dead-letter queue"
    );
    let m = ingester.metrics().render();
    let done = format!(
        "raincast_ingest_queue_messages_total{{outcome=\"done\"}} {}",
        s.messages - s.ignored_messages
    );
    let mut lines = vec![
        done,
        "raincast_ingest_scans_total{radar=\"r1\"} 13".to_string(),
    ];
    if extra == 0 {
        lines.extend(
            [
                "raincast_ingest_queue_messages_total{outcome=\"not_s3\"} 1",
                "raincast_ingest_queue_messages_total{outcome=\"test_event\"} 1",
                "raincast_ingest_queue_records_skipped_total{reason=\"unconfigured_radar\"} 1",
                "raincast_ingest_queue_records_skipped_total{reason=\"no_match\"} 1",
            ]
            .map(String::from),
        );
    }
    for line in &lines {
        assert!(m.contains(line.as_str()), "{line} in\n{m}");
    }
}

/// A file quarantined through the queue and notified again unchanged (SQS
/// delivers at least once; a redrive sends it again) is not fetched,
/// decoded or counted again, as the listing does not try it again either;
/// re-uploaded with other bytes, it is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quarantined_file_notified_again_unchanged_is_not_decoded_again() {
    let Some(w) = World::new(3).await else { return };
    let settings = w.settings(1, false);
    let processor = Arc::new(SlowProcessor {
        delay: Duration::ZERO,
        calls: AtomicUsize::new(0),
    });
    let (c, ingester, _) = w.consumer(&settings, processor.clone(), None).await;
    let key = "r1/2018/06/16/r1_20180616_120000.txt";
    // Uploaded: S3 notifies the queue.
    w.put(key, "garbage").await;
    let s = w.drain(&c).await;
    assert_eq!((s.quarantined, s.still_quarantined), (1, 0), "{s:?}");
    assert_eq!(processor.calls.load(Ordering::SeqCst), 1);
    let failures = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("raincast_ingest_failures_total{") && l.contains("r1"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    assert_eq!(failures(&ingester.metrics().render()), 1.0);
    // Its notification twice more, the file unchanged.
    for _ in 0..2 {
        w.queue.send(&s3_event_sized(key, 7)).await.unwrap();
    }
    let s = w.drain(&c).await;
    assert_eq!((s.quarantined, s.still_quarantined), (1, 2), "{s:?}");
    assert_eq!(s.retried, 0, "{s:?}");
    assert_eq!(processor.calls.load(Ordering::SeqCst), 1, "decoded again");
    assert_eq!(failures(&ingester.metrics().render()), 1.0);
    // Re-uploaded with other bytes (another size): tried again.
    w.put(key, "still garbage").await;
    let s = w.drain(&c).await;
    assert_eq!((s.quarantined, s.still_quarantined), (2, 2), "{s:?}");
    assert_eq!(processor.calls.load(Ordering::SeqCst), 2);
    assert!(take_all(&w.queue).await.is_empty(), "queue empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_of_any_radar_are_taken_when_configured() {
    let Some(w) = World::new(3).await else { return };
    let settings = w.settings(2, true);
    let (c, _, _) = w.consumer(&settings, Arc::new(TextProcessor), None).await;
    let key = w.put_scan("r9", t(0)).await;
    let s = w.drain(&c).await;
    assert_eq!((s.ingested, s.skipped_records), (1, 0), "{s:?}");
    assert_eq!(w.stored("r9").await, [key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_messages_for_one_scan_store_it_once() {
    let Some(w) = World::new(3).await else { return };
    let settings = w.settings(4, false);
    let slow = Arc::new(SlowProcessor {
        delay: Duration::from_secs(2),
        calls: AtomicUsize::new(0),
    });
    let (c, ingester, _) = w.consumer(&settings, slow.clone(), None).await;
    take_all(&w.queue).await; // the test event
    let (tx, rx) = watch::channel(false);
    let running = tokio::spawn(c.clone().run(rx));
    let key = w.put_scan("r1", t(0)).await;
    // While one worker processes the object, the same notification comes
    // three more times (S3 delivers at least once) to the other workers.
    wait_for(|| slow.calls.load(Ordering::SeqCst) == 1).await;
    for _ in 0..3 {
        w.queue.send(&s3_event(&key)).await.unwrap();
    }
    wait_for(|| c.summary().deleted == 4).await;
    tx.send_replace(true);
    running.await.unwrap();
    let s = c.summary();
    assert_eq!((s.messages, s.deleted), (4, 4), "{s:?}");
    assert_eq!((s.ingested, s.skipped, s.quarantined), (1, 3, 0), "{s:?}");
    assert_eq!(slow.calls.load(Ordering::SeqCst), 1, "decoded once");
    assert_eq!(w.stored("r1").await, std::slice::from_ref(&key));
    // One successful put: a second write would count here.
    let m = ingester.metrics().render();
    assert!(
        m.contains("raincast_ingest_scans_total{radar=\"r1\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("raincast_ingest_skipped_total{radar=\"r1\"} 3\n"),
        "{m}"
    );
    assert!(!m.contains("raincast_ingest_failures_total"), "{m}");
    assert!(w.store.list_quarantined("r1").await.unwrap().is_empty());
}

/// Polls `done` every 50 ms, for at most 30 s.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn visibility_is_extended_while_a_slow_file_is_processed() {
    let Some(w) = World::new(5).await else { return };
    let settings = w.settings(2, false);
    // Processing takes three visibility timeouts (3 s each).
    let slow = Arc::new(SlowProcessor {
        delay: Duration::from_secs(9),
        calls: AtomicUsize::new(0),
    });
    let (c, _, _) = w.consumer(&settings, slow.clone(), None).await;
    take_all(&w.queue).await; // the test event
    w.put_scan("r1", t(0)).await;
    let (tx, rx) = watch::channel(false);
    let running = tokio::spawn(c.clone().run(rx));
    // The message is processed once and never seen a second time.
    wait_for(|| c.summary().deleted == 1).await;
    tx.send_replace(true);
    running.await.unwrap();
    let s = c.summary();
    assert_eq!(s.deleted, 1, "{s:?}");
    assert_eq!(s.messages, 1, "received once only: {s:?}");
    assert_eq!(slow.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_source_leaves_the_message_to_come_back() {
    let Some(w) = World::new(5).await else { return };
    let settings = w.settings(1, false);
    let proxy = TcpProxy::start(w.moto.addr()).await;
    let sdk = sdk_config_for_endpoint(&proxy.endpoint(), 1).await;
    let via_proxy = S3Source::new(&sdk, BUCKET, "", true);
    let (c, _, _) = w
        .consumer(&settings, Arc::new(TextProcessor), Some(&via_proxy))
        .await;
    let key = w.put_scan("r1", t(0)).await;
    proxy.set_up(false);
    let s = w.drain(&c).await;
    assert_eq!((s.retried, s.ingested), (1, 0), "{s:?}");
    assert!(w.stored("r1").await.is_empty());
    // S3 is back; the message comes back after its visibility timeout.
    proxy.set_up(true);
    let mut s = s;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s = w.drain(&c).await;
        if s.ingested == 1 {
            break;
        }
    }
    assert_eq!(s.ingested, 1, "{s:?}");
    assert_eq!(w.stored("r1").await, [key]);
    assert!(take_all(&w.queue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_keeps_failing_goes_to_the_dead_letter_queue() {
    let Some(w) = World::new(2).await else { return };
    let settings = w.settings(1, false);
    let (c, _, _) = w.consumer(&settings, Arc::new(TextProcessor), None).await;
    // A notification for an object that does not exist (deleted since).
    let key = key_of("r1", t(0));
    w.queue.send(&s3_event(&key)).await.unwrap();
    let mut s = w.drain(&c).await;
    for _ in 0..15 {
        if !take_all(&w.dlq).await.is_empty() {
            // Received twice (maxReceiveCount = 2), then moved.
            assert_eq!(s.retried, 2, "{s:?}");
            assert!(take_all(&w.queue).await.is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        s = w.drain(&c).await;
    }
    panic!("never reached the dead-letter queue: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_finds_a_file_whose_notification_was_lost() {
    let Some(w) = World::new(3).await else { return };
    let settings = w.settings(2, false);
    let (c, ingester, rs) = w.consumer(&settings, Arc::new(TextProcessor), None).await;
    let delivered = w.put_scan("r1", t(0)).await;
    assert_eq!(w.drain(&c).await.ingested, 1);
    // The next notification is lost.
    let lost = w.put_scan("r1", t(5)).await;
    let dropped = take_all(&w.queue).await;
    assert_eq!(dropped.len(), 1);
    assert!(w.drain(&c).await.messages <= 2);
    assert_eq!(w.stored("r1").await, std::slice::from_ref(&delivered));

    let pass = ingester.run_once(&rs).await.unwrap();
    assert_eq!(
        (pass.ingested, pass.skipped, pass.reconciled),
        (1, 1, 1),
        "{pass:?}"
    );
    let mut stored = w.stored("r1").await;
    stored.sort();
    assert_eq!(stored, [delivered, lost]);
    let m = ingester.metrics().render();
    assert!(
        m.contains("raincast_ingest_reconciled_total{radar=\"r1\"} 1\n"),
        "{m}"
    );
    // A second pass finds nothing more.
    let pass = ingester.run_once(&rs).await.unwrap();
    assert_eq!(pass.reconciled, 0);
    assert!(ingester
        .metrics()
        .render()
        .contains("raincast_ingest_reconciled_total{radar=\"r1\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_leaves_recent_objects_to_the_queue() {
    let Some(w) = World::new(3).await else { return };
    let mut settings = w.settings(1, false);
    if let Some(q) = settings.queue.as_mut() {
        q.reconcile_grace = ChronoDuration::minutes(5);
    }
    let (_, ingester, rs) = w.consumer(&settings, Arc::new(TextProcessor), None).await;
    w.put_scan("r1", t(0)).await;
    let pass = ingester.run_once(&rs).await.unwrap();
    assert_eq!(
        (pass.ingested, pass.deferred, pass.reconciled),
        (0, 1, 0),
        "{pass:?}"
    );
}
