//! Ingest runs against the embedded store and a local folder, with a small
//! processor for a text format the tests write themselves (`RAINTEST <time>
//! <cells>`), so that listing, batching, checkpoints, lookback, quarantine
//! and leases are checked independently of the radar decoders. The same
//! runs against real servers and real radar files are in `tests/`.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::IngestSettings;
use crate::layout::DEFAULT_TEMPLATE;
use crate::test_support::TextProcessor;
use chrono::TimeZone;
use raincast_store::{EmbeddedStore, LocalSource};
use raincast_testkit::TempDir;
use std::path::Path;

struct Fixture {
    _dir: TempDir,
    bucket: std::path::PathBuf,
    store: EmbeddedStore,
}

/// The key of a scan of `radar` at `t` under the default layout.
fn scan_key(radar: &str, t: DateTime<Utc>) -> String {
    format!(
        "{radar}/{}/{radar}_{}.txt",
        t.format("%Y/%m/%d"),
        t.format("%Y%m%d_%H%M%S")
    )
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = TempDir::new("pass");
        let bucket = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.redb"), Duration::days(7))
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            bucket,
            store,
        }
    }

    fn put(&self, key: &str, content: &str) {
        let p = self.bucket.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// A RAINTEST file at `t` under the default layout.
    fn put_scan(&self, radar: &str, t: DateTime<Utc>) -> String {
        let key = scan_key(radar, t);
        self.put(&key, &format!("RAINTEST {} 5", t.to_rfc3339()));
        key
    }

    fn ingester(&self, settings: IngestSettings, owner: &str) -> Ingester {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        Ingester::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
            Arc::new(TextProcessor),
            settings,
            owner.into(),
            IngestMetrics::standalone(),
            rx,
        )
    }

    fn radar(&self, id: &str) -> RadarSource {
        RadarSource {
            radar: RadarConfig::ad_hoc(id, &KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap()),
            source: Arc::new(LocalSource::new(self.bucket.clone())),
        }
    }
}

/// Settings for a run from `since`. Files are written just before each
/// run, so the settle time is off here (its own test turns it on).
fn settings(since: DateTime<Utc>, batch: usize) -> IngestSettings {
    IngestSettings {
        since: Some(since),
        batch_size: batch,
        settle: Duration::zero(),
        ..IngestSettings::default()
    }
}

/// Recent whole-minute times, so the window is listed day by day.
fn recent(minutes_ago: i64) -> DateTime<Utc> {
    let now = (Utc::now() - Duration::hours(1)).timestamp();
    Utc.timestamp_opt(now - now % 60, 0).unwrap() - Duration::minutes(minutes_ago)
}

async fn stored_times(store: &EmbeddedStore, radar: &str) -> Vec<DateTime<Utc>> {
    store
        .list_scans(
            radar,
            Utc::now() - Duration::days(20_000),
            Utc::now() + Duration::days(1),
            Utc::now(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.time)
        .collect()
}

#[tokio::test]
async fn an_empty_source_lists_nothing() {
    let f = Fixture::new().await;
    let ing = f.ingester(settings(recent(600), 50), "a");
    let s = ing.run_once(&f.radar("r1")).await.unwrap();
    assert_eq!(
        (s.listed, s.ingested, s.skipped, s.quarantined, s.remaining),
        (0, 0, 0, 0, 0)
    );
    // Missing bucket folder: also empty, not an error.
    let missing = RadarSource {
        source: Arc::new(LocalSource::new(Path::new("/nonexistent/raincast"))),
        ..f.radar("r1")
    };
    assert_eq!(ing.run_once(&missing).await.unwrap().listed, 0);
}

#[tokio::test]
async fn ingests_once_and_skips_on_rerun() {
    let f = Fixture::new().await;
    let times: Vec<_> = (0..12).rev().map(|i| recent(i * 5)).collect();
    for t in &times {
        f.put_scan("r1", *t);
    }
    f.put("r1/README.md", "not a scan");
    f.put_scan("r2", times[0]);
    let ing = f.ingester(settings(times[0], 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(
        (s.listed, s.ingested, s.skipped, s.quarantined, s.remaining),
        (12, 12, 0, 0, 0)
    );
    assert_eq!(stored_times(&f.store, "r1").await, times);
    assert!(stored_times(&f.store, "r2").await.is_empty());

    // Second run: nothing new; the lookback re-lists the last 30 minutes.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 0);
    assert_eq!(s.skipped, 7, "{s:?}");
    assert_eq!(s.listed, 7);
    let cp = f.store.get_checkpoint("r1").await.unwrap().unwrap();
    assert_eq!(cp.last_time, times[11]);
    // The metrics saw it.
    let text = ing.metrics().render();
    assert!(
        text.contains("raincast_ingest_scans_total{radar=\"r1\"} 12"),
        "{text}"
    );
    // A stored file re-written with other content is not read again: the
    // stored scan stands (OPERATIONS "Quarantined files").
    let last = times[11];
    let manifest = || f.store.get_manifest("r1", last, Utc::now());
    let before = manifest().await.unwrap().unwrap();
    f.put(
        &scan_key("r1", last),
        &format!("RAINTEST {} 40", last.to_rfc3339()),
    );
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined, s.deferred), (0, 0, 0), "{s:?}");
    assert!(s.skipped >= 1, "listed and skipped: {s:?}");
    let after = manifest().await.unwrap().unwrap();
    assert_eq!(
        (after.rain_cells, after.digest),
        (before.rain_cells, before.digest)
    );
}

#[tokio::test]
async fn a_late_file_behind_the_checkpoint_is_picked_up() {
    let f = Fixture::new().await;
    let times: Vec<_> = (0..6).rev().map(|i| recent(i * 10)).collect();
    for (i, t) in times.iter().enumerate() {
        if i != 4 {
            f.put_scan("r1", *t);
        }
    }
    let ing = f.ingester(settings(times[0], 50), "a");
    let rs = f.radar("r1");
    assert_eq!(ing.run_once(&rs).await.unwrap().ingested, 5);
    // Uploaded late, 10 minutes behind the checkpoint (within the lookback).
    f.put_scan("r1", times[4]);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 1, "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, times);
}

/// 12:00 UTC of the latest day on which it is at least an hour past: scans
/// around it, and the lookback behind them, never cross midnight (the
/// listing is per day folder).
fn midday() -> DateTime<Utc> {
    let now = Utc::now();
    let today = now.date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    if now - today >= Duration::hours(1) {
        today
    } else {
        today - Duration::days(1)
    }
}

#[tokio::test]
async fn a_file_uploaded_late_behind_the_lookback_is_ingested_without_moving_the_checkpoint() {
    // The newest scan is uploaded first, the hour before it afterwards (an
    // uploader that backfills, an unordered copy): the files more than the
    // lookback (30 min) behind the checkpoint are late, and still stored.
    let f = Fixture::new().await;
    let t0 = midday();
    let times: Vec<_> = (0..12).map(|i| t0 + Duration::minutes(5 * i)).collect();
    f.put_scan("r1", times[11]);
    let ing = f.ingester(settings(t0 - Duration::minutes(10), 50), "a");
    let rs = f.radar("r1");
    assert_eq!(ing.run_once(&rs).await.unwrap().ingested, 1);
    for t in &times[..11] {
        f.put_scan("r1", *t);
    }
    let s = ing.run_once(&rs).await.unwrap();
    // t0 .. t0 + 20 min lie before the window (t0 + 25 min on).
    assert_eq!((s.ingested, s.late, s.quarantined), (11, 5, 0), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, times);
    let cp = f.store.get_checkpoint("r1").await.unwrap().unwrap();
    assert_eq!(cp.last_time, times[11], "a late file moved the checkpoint");
    assert!(ing
        .metrics()
        .render()
        .contains("raincast_ingest_late_total{radar=\"r1\"} 5"));
    // Stored, the late files are neither listed nor skipped again.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(
        (s.listed, s.skipped, s.ingested, s.late),
        (7, 7, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_backlog_drains_in_bounded_batches() {
    let f = Fixture::new().await;
    let times: Vec<_> = (0..10).rev().map(|i| recent(i * 6)).collect();
    for t in &times {
        f.put_scan("r1", *t);
    }
    let ing = f.ingester(settings(times[0], 3), "a");
    let rs = f.radar("r1");
    let mut per_run = Vec::new();
    loop {
        let s = ing.run_once(&rs).await.unwrap();
        per_run.push((s.ingested, s.remaining));
        if s.remaining == 0 {
            break;
        }
        assert!(per_run.len() < 10, "does not drain: {per_run:?}");
    }
    assert_eq!(per_run, vec![(3, 7), (3, 4), (3, 1), (1, 0)]);
    assert_eq!(stored_times(&f.store, "r1").await, times);
}

#[tokio::test]
async fn corrupt_files_are_quarantined_once_and_the_rest_ingested() {
    let f = Fixture::new().await;
    let times: Vec<_> = (0..5).rev().map(|i| recent(i * 5)).collect();
    for t in &times {
        f.put_scan("r1", *t);
    }
    let bad = format!(
        "r1/{}/r1_{}.txt",
        times[2].format("%Y/%m/%d"),
        (times[2] + Duration::minutes(1)).format("%Y%m%d_%H%M%S")
    );
    f.put(&bad, "GARBAGE bytes");
    let panicky = format!(
        "r1/{}/r1_{}.txt",
        times[3].format("%Y/%m/%d"),
        (times[3] + Duration::minutes(1)).format("%Y%m%d_%H%M%S")
    );
    f.put(&panicky, "RAINTEST PANIC");
    let ing = f.ingester(settings(times[0], 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (5, 2), "{s:?}");
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(q.len(), 2);
    let by_key: std::collections::HashMap<_, _> = q.iter().map(|r| (r.key.as_str(), r)).collect();
    assert_eq!(by_key[bad.as_str()].reason_code, "bad_magic");
    assert!(by_key[bad.as_str()].reason.contains("RAINTEST"));
    assert_eq!(by_key[panicky.as_str()].reason_code, "panic");
    // Not retried: later runs neither quarantine nor ingest them again.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (0, 0), "{s:?}");
    // The raw files are untouched.
    assert_eq!(
        std::fs::read_to_string(f.bucket.join(&bad)).unwrap(),
        "GARBAGE bytes"
    );
}

#[tokio::test]
async fn a_quarantined_file_that_changes_afterwards_is_tried_again() {
    // A writer that pauses for longer than the settle time: the first part
    // is quarantined; the completed file must not be lost with it.
    let f = Fixture::new().await;
    let t = recent(5);
    let key = f.put_scan("r1", t);
    let whole = std::fs::read_to_string(f.bucket.join(&key)).unwrap();
    f.put(&key, "RAINTEST");
    let other = f.put_scan("r1", recent(10));
    f.put(&other, "GARBAGE");
    let ing = f.ingester(settings(recent(20), 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (0, 2), "{s:?}");
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert!(
        q.iter().all(|r| r.size.is_some() && r.modified.is_some()),
        "{q:?}"
    );
    // Unchanged: still skipped, and counted as such.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(
        (s.ingested, s.quarantined, s.still_quarantined),
        (0, 0, 2),
        "{s:?}"
    );
    // Completed: tried again and stored; the untouched bad file stays out.
    f.put(&key, &whole);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, vec![t]);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined, s.skipped), (0, 0, 1), "{s:?}");
}

#[tokio::test]
async fn a_quarantined_file_completed_after_the_listing_window_passed_it_is_tried_again() {
    // The same writer, but the file is completed hours later, when newer
    // scans have moved the checkpoint far past it: the listing (a lookback
    // behind the checkpoint) no longer sees it, so only the look at old
    // quarantined files can save it.
    let f = Fixture::new().await;
    let old = recent(180);
    let key = f.put_scan("r1", old);
    let whole = std::fs::read_to_string(f.bucket.join(&key)).unwrap();
    f.put(&key, "RAINTEST");
    let newer: Vec<_> = [20, 10, 0].map(recent).to_vec();
    for t in &newer {
        f.put_scan("r1", *t);
    }
    let settings = settings(recent(200), 50);
    assert!(
        settings.lookback < Duration::minutes(150),
        "the file lies outside the window"
    );
    let ing = f.ingester(settings, "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (3, 1), "{s:?}");
    // Unchanged: nothing to do, and the old file is not even listed.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.listed, s.ingested, s.quarantined), (3, 0, 0), "{s:?}");
    f.put(&key, &whole);
    // Looked at by the last run: not again before `RECHECK_EVERY`.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (0, 0), "{s:?}");
    let mut ing = ing;
    ing.recheck_every = std::time::Duration::ZERO;
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
    let mut want = newer.clone();
    want.insert(0, old);
    assert_eq!(stored_times(&f.store, "r1").await, want);
    // Stored once: later runs leave it alone.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (0, 0), "{s:?}");
}

/// A folder whose files named in `locked` cannot be read (as a file with
/// mode 000 for a service that does not run as root).
struct Locked {
    inner: LocalSource,
    locked: std::sync::Mutex<HashSet<String>>,
}

#[async_trait::async_trait]
impl ScanSource for Locked {
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> raincast_store::StoreResult<Vec<SourceObject>> {
        self.inner.list(prefix, start_after).await
    }
    async fn list_dirs(&self, prefix: &str) -> raincast_store::StoreResult<Vec<String>> {
        self.inner.list_dirs(prefix).await
    }
    async fn fetch(&self, key: &str, max_bytes: u64) -> raincast_store::StoreResult<Vec<u8>> {
        if self.locked.lock().unwrap().contains(key) {
            return Err(StoreError::Unreadable {
                backend: "test",
                what: key.into(),
                reason: "Permission denied (os error 13)".into(),
            });
        }
        self.inner.fetch(key, max_bytes).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn needs_settling(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn an_unreadable_file_is_quarantined_and_the_files_after_it_ingested() {
    let f = Fixture::new().await;
    let times = [recent(15), recent(10), recent(5)];
    let keys: Vec<_> = times.iter().map(|t| f.put_scan("r1", *t)).collect();
    let source = Arc::new(Locked {
        inner: LocalSource::new(f.bucket.clone()),
        locked: std::sync::Mutex::new([keys[1].clone()].into()),
    });
    let rs = RadarSource {
        source: source.clone(),
        ..f.radar("r1")
    };
    let ing = f.ingester(settings(recent(20), 50), "a");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, [times[0], times[2]]);
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (keys[1].as_str(), "unreadable")
    );
    assert!(q[0].reason.contains("Permission denied"), "{q:?}");
    // Still unreadable, or readable again but untouched: left alone.
    assert_eq!(ing.run_once(&rs).await.unwrap().quarantined, 0);
    source.locked.lock().unwrap().clear();
    assert_eq!(ing.run_once(&rs).await.unwrap().ingested, 0);
    // Touched after its permissions were fixed: tried again and stored.
    let file = std::fs::File::options()
        .write(true)
        .open(f.bucket.join(&keys[1]))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30))
        .unwrap();
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, times);
}

#[tokio::test]
async fn a_file_whose_name_the_folder_source_refuses_is_quarantined() {
    // A backslash is a plain character in a Linux file name, but the folder
    // source refuses such keys: the file must not stop the radar.
    let f = Fixture::new().await;
    let (t0, t1, t2) = (recent(15), recent(10), recent(5));
    f.put_scan("r1", t0);
    let odd = format!(
        "r1/{}/r1\\{}.txt",
        t1.format("%Y/%m/%d"),
        t1.format("%Y%m%d_%H%M%S")
    );
    f.put(&odd, &format!("RAINTEST {} 5", t1.to_rfc3339()));
    f.put_scan("r1", t2);
    let ing = f.ingester(settings(recent(20), 50), "a");
    let s = ing.run_once(&f.radar("r1")).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, [t0, t2]);
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (odd.as_str(), "invalid")
    );
}

#[tokio::test]
async fn a_held_lease_means_no_work_and_a_released_one_is_handed_over() {
    let f = Fixture::new().await;
    let t = recent(0);
    f.put_scan("r1", t);
    let rs = f.radar("r1");
    let a = f.ingester(settings(t - Duration::minutes(1), 50), "a");
    let b = f.ingester(settings(t - Duration::minutes(1), 50), "b");
    let now = Utc::now();
    f.store
        .acquire_lease("ingest:r1", "b", Duration::seconds(60), now)
        .await
        .unwrap();
    let s = a.run_once(&rs).await.unwrap();
    assert_eq!(s.lease_held_by.as_deref(), Some("b"));
    assert_eq!(s.ingested, 0);
    // b releases; a runs; then b gets it back (hand-over) and finds nothing new.
    assert!(f.store.release_lease("ingest:r1", "b", now).await.unwrap());
    assert_eq!(a.run_once(&rs).await.unwrap().ingested, 1);
    let s = b.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.skipped, s.lease_held_by), (0, 1, None));
    // An expired holder is taken over and counted.
    f.store
        .acquire_lease(
            "ingest:r1",
            "crashed",
            Duration::seconds(1),
            now - Duration::seconds(10),
        )
        .await
        .unwrap();
    a.run_once(&rs).await.unwrap();
    assert!(a
        .metrics()
        .render()
        .contains("raincast_ingest_lease_takeovers_total{radar=\"r1\"} 1"));
}

#[tokio::test]
async fn a_long_backfill_discovers_day_folders() {
    let f = Fixture::new().await;
    let old = Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap();
    let keys: Vec<_> = [old, old + Duration::minutes(6), old + Duration::days(1)]
        .iter()
        .map(|t| f.put_scan("bom02", *t))
        .collect();
    // Noise that the folder walk must step over or ignore.
    f.put(
        "bom02/2017/12/31/bom02_20171231_235900.txt",
        "RAINTEST 2017-12-31T23:59:00Z 1",
    );
    f.put("bom02/notes/x.txt", "x");
    let ing = f.ingester(settings(old - Duration::hours(1), 50), "a");
    let s = ing.run_once(&f.radar("bom02")).await.unwrap();
    assert_eq!((s.listed, s.ingested), (3, 3), "{s:?} {keys:?}");
}

#[tokio::test]
async fn a_late_file_whose_key_sorts_low_is_listed() {
    let f = Fixture::new().await;
    let times: Vec<_> = (0..8).rev().map(|i| recent(i * 10)).collect();
    for t in &times {
        f.put_scan("r1", *t);
    }
    let ing = f.ingester(settings(times[0], 50), "a");
    let rs = f.radar("r1");
    assert_eq!(ing.run_once(&rs).await.unwrap().ingested, 8);
    // A newer file from another producer, whose name sorts before every key
    // already seen in the day folder (and before the checkpoint's key).
    let late = times[7] - Duration::minutes(3);
    let key = format!(
        "r1/{}/0-other-producer_{}.txt",
        late.format("%Y/%m/%d"),
        late.format("%Y%m%d_%H%M%S")
    );
    f.put(&key, &format!("RAINTEST {} 2", late.to_rfc3339()));
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 1, "{s:?}");
    assert!(stored_times(&f.store, "r1").await.contains(&late));
}

#[tokio::test]
async fn future_keys_are_deferred_and_never_move_the_checkpoint() {
    let f = Fixture::new().await;
    let now = Utc::now();
    let past = recent(0);
    f.put_scan("r1", past);
    // 40 min ahead: beyond the 10-minute tolerance (same day folder when
    // the clock allows; a key in tomorrow's folder is simply not listed yet).
    let future = Utc
        .timestamp_opt(now.timestamp() - now.timestamp() % 60, 0)
        .unwrap()
        + Duration::minutes(40);
    f.put_scan("r1", future);
    let ing = f.ingester(settings(past - Duration::minutes(5), 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 1, "{s:?}");
    if future.date_naive() == now.date_naive() {
        assert_eq!(s.deferred, 1, "{s:?}");
    }
    let cp = f.store.get_checkpoint("r1").await.unwrap().unwrap();
    assert!(cp.last_time <= Utc::now() + Duration::minutes(10), "{cp:?}");
    // A real file that arrives afterwards, with an earlier time, is found.
    let real = past + Duration::minutes(20);
    f.put_scan("r1", real);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 1, "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, vec![past, real]);
    // When its time comes (here: a tolerance that reaches it), the future
    // file is ingested like any other.
    if future.date_naive() == now.date_naive() {
        let later = f.ingester(
            IngestSettings {
                future_tolerance: Duration::minutes(60),
                lookback: Duration::minutes(90),
                ..settings(past, 50)
            },
            "a",
        );
        assert_eq!(later.run_once(&rs).await.unwrap().ingested, 1);
    }
}

#[tokio::test]
async fn a_checkpoint_already_in_the_future_does_not_blind_the_radar() {
    // Written by an older version that let a future key move it.
    let f = Fixture::new().await;
    f.store
        .put_checkpoint(&Checkpoint {
            radar: "r1".into(),
            last_time: Utc::now() + Duration::days(3),
            last_key: "r1/9999/x".into(),
            updated_at: Utc::now(),
        })
        .await
        .unwrap();
    let t = Utc::now() - Duration::minutes(2);
    let t = Utc
        .timestamp_opt(t.timestamp() - t.timestamp() % 60, 0)
        .unwrap();
    f.put_scan("r1", t);
    let s = f
        .ingester(settings(t, 50), "a")
        .run_once(&f.radar("r1"))
        .await
        .unwrap();
    if t.date_naive() == Utc::now().date_naive() {
        assert_eq!(s.ingested, 1, "{s:?}");
    }
}

#[tokio::test]
async fn a_scan_whose_content_is_timed_in_the_future_is_quarantined() {
    // The key is timed now, but the file's own time (which the stored scan
    // takes) is decades ahead: stored, it would be the radar's latest scan
    // for good and hide every real one.
    let f = Fixture::new().await;
    let (before, at, after) = (recent(10), recent(5), recent(0));
    f.put_scan("r1", before);
    let key = scan_key("r1", at);
    f.put(&key, "RAINTEST 2099-12-31T23:59:00Z 5");
    f.put_scan("r1", after);
    let ing = f.ingester(settings(recent(20), 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, vec![before, after]);
    let latest = f.store.latest("r1", Utc::now()).await.unwrap().unwrap();
    assert_eq!(latest.time, after);
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (key.as_str(), "future_time")
    );
    assert!(
        q[0].reason.contains("2099-12-31T23:59:00Z")
            && q[0].reason.contains("future_tolerance_minutes"),
        "{q:?}"
    );
    // Not tried again.
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (0, 0), "{s:?}");
}

#[tokio::test]
async fn a_scan_whose_content_is_timed_far_from_its_key_is_quarantined() {
    // Another radar's file of another year, put under this radar's folder
    // with a name of this radar's day: stored at its content's time, it
    // would be this radar's scan of that time (and its latest, were that
    // time newer).
    let f = Fixture::new().await;
    let (before, at, after) = (recent(10), recent(5), recent(0));
    f.put_scan("r1", before);
    let key = scan_key("r1", at);
    f.put(&key, "RAINTEST 2021-07-04T15:50:00Z 5");
    // A content time a few minutes off its name (a volume's start against
    // its nominal time) is stored at the content's time.
    let near = scan_key("r1", after);
    f.put(
        &near,
        &format!("RAINTEST {} 5", (after - Duration::minutes(3)).to_rfc3339()),
    );
    // Under a layout whose keys name only the day, the content must fall
    // within that day, give or take the tolerance.
    let day_only = "{radar}/{yyyy}/{mm}/{dd}/{file}";
    let day_radar = RadarSource {
        radar: RadarConfig::ad_hoc("r2", &KeyTemplate::parse(day_only).unwrap()),
        source: Arc::new(LocalSource::new(f.bucket.clone())),
    };
    let day = at.date_naive();
    let (in_day, off_day) = (
        format!("r2/{}/a.txt", day.format("%Y/%m/%d")),
        format!("r2/{}/b.txt", day.format("%Y/%m/%d")),
    );
    f.put(&in_day, &format!("RAINTEST {} 5", at.to_rfc3339()));
    f.put(
        &off_day,
        &format!("RAINTEST {} 5", (at - Duration::days(3)).to_rfc3339()),
    );
    let ing = f.ingester(settings(recent(20), 50), "a");
    let s = ing.run_once(&f.radar("r1")).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    assert_eq!(
        stored_times(&f.store, "r1").await,
        vec![before, after - Duration::minutes(3)]
    );
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(
        q.iter()
            .map(|q| (q.key.as_str(), q.reason_code.as_str()))
            .collect::<Vec<_>>(),
        vec![(key.as_str(), "time_mismatch")]
    );
    let named = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert!(
        q[0].reason.contains("2021-07-04T15:50:00Z")
            && q[0].reason.contains(&named)
            && q[0].reason.contains("key_time_tolerance_hours"),
        "{q:?}"
    );
    let s = f
        .ingester(settings(at - Duration::days(1), 50), "a")
        .run_once(&day_radar)
        .await
        .unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 1), "{s:?}");
    assert_eq!(stored_times(&f.store, "r2").await, vec![at]);
    let q = f.store.list_quarantined("r2").await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (off_day.as_str(), "time_mismatch")
    );
    assert!(
        q[0].reason
            .contains(&format!("the day {}", day.format("%Y-%m-%d"))),
        "{q:?}"
    );
    // Zero turns the check off: the file is stored at its content's time.
    let f = Fixture::new().await;
    f.put(&key, "RAINTEST 2021-07-04T15:50:00Z 5");
    let off = IngestSettings {
        key_time_tolerance: Duration::zero(),
        ..settings(recent(20), 50)
    };
    let s = f.ingester(off, "a").run_once(&f.radar("r1")).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
}

#[tokio::test]
async fn a_stray_file_without_a_time_does_not_move_the_checkpoint() {
    // A README (or any file whose name holds no time) in a day folder has
    // only its modification time, here an hour after the scans: it moved
    // the checkpoint there, and the radar's next scan, timed before it, was
    // never listed (found from outside, replaying a day with a README in it).
    let f = Fixture::new().await;
    let (t0, t1) = (recent(10), recent(5));
    f.put_scan("r1", t0);
    f.put_scan("r1", t1);
    let stray = format!("r1/{}/README.txt", t1.format("%Y/%m/%d"));
    f.put(&stray, "not a scan");
    let ing = f.ingester(settings(recent(20), 50), "a");
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    let cp = f.store.get_checkpoint("r1").await.unwrap().unwrap();
    assert_eq!(cp.last_time, t1, "{cp:?}");
    // The next scan arrives; the stray file is listed again and skipped.
    let t2 = recent(0);
    f.put_scan("r1", t2);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await, vec![t0, t1, t2]);
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
}

#[tokio::test]
async fn files_still_being_written_are_left_for_the_next_run() {
    let f = Fixture::new().await;
    let t = recent(0);
    let key = f.put_scan("r1", t);
    let ing = f.ingester(
        IngestSettings {
            settle: Duration::seconds(60),
            ..settings(t, 50)
        },
        "a",
    );
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.deferred), (0, 1), "{s:?}");
    // Unchanged for longer than the settle time: ingested.
    let file = std::fs::File::options()
        .write(true)
        .open(f.bucket.join(&key))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
        .unwrap();
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.deferred), (1, 0), "{s:?}");
}

/// Sets a bucket file's modification time `ago` before now.
fn modified_ago(f: &Fixture, key: &str, ago: std::time::Duration) {
    std::fs::File::options()
        .write(true)
        .open(f.bucket.join(key))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// A file still being written when newer files are ingested (a late upload,
/// a day copied in any order) holds the checkpoint back: the next run lists
/// it again, however far behind the newest scan it is timed. Before, the
/// checkpoint moved to the newest scan and the next listing, which starts a
/// lookback behind it, never saw the file again: it was neither stored nor
/// quarantined.
#[tokio::test]
async fn a_file_left_to_settle_is_listed_again_however_old_its_time() {
    let f = Fixture::new().await;
    let settled = std::time::Duration::from_secs(120);
    let late = f.put_scan("r1", recent(240));
    for t in [recent(120), recent(10)] {
        let key = f.put_scan("r1", t);
        modified_ago(&f, &key, settled);
    }
    let ing = f.ingester(
        IngestSettings {
            settle: Duration::seconds(60),
            ..settings(recent(300), 50)
        },
        "a",
    );
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.deferred), (2, 1), "{s:?}");
    modified_ago(&f, &late, settled);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.deferred), (1, 0), "{s:?}");
    assert_eq!(
        stored_times(&f.store, "r1").await,
        vec![recent(240), recent(120), recent(10)]
    );
    // Then the checkpoint moves on to the newest scan.
    let cp = f.store.get_checkpoint("r1").await.unwrap().unwrap();
    assert_eq!(cp.last_time, recent(10));
}

/// A radar `r1` with a small scan (10 min ago) and a scan of over 200 bytes
/// (5 min ago), and an ingester whose `max_file_bytes` is 100: returns the
/// fixture, the ingester and the two keys.
async fn small_and_big_file() -> (Fixture, Ingester, String, String) {
    let f = Fixture::new().await;
    let small = f.put_scan("r1", recent(10));
    let big_t = recent(5);
    let big = f.put_scan("r1", big_t);
    f.put(
        &big,
        &format!("RAINTEST {} 5 {}", big_t.to_rfc3339(), "x".repeat(200)),
    );
    let ing = f.ingester(
        IngestSettings {
            max_file_bytes: 100,
            ..settings(recent(20), 50)
        },
        "a",
    );
    (f, ing, small, big)
}

/// Only `big` is quarantined, as `too_large`, naming the file and the limit.
async fn only_quarantined_as_too_large(f: &Fixture, big: &str) {
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (big, "too_large")
    );
    assert!(
        q[0].reason.contains(big) && q[0].reason.contains("max_file_mb"),
        "{q:?}"
    );
}

#[tokio::test]
async fn files_above_max_file_bytes_are_quarantined_unfetched() {
    let (f, ing, small, big) = small_and_big_file().await;
    let s = ing.run_once(&f.radar("r1")).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 1), "{s:?} {small}");
    only_quarantined_as_too_large(&f, &big).await;
}

#[tokio::test]
async fn a_file_larger_than_notified_is_quarantined_without_reading_past_the_limit() {
    // A notification without a size (0), and one whose object grew after
    // the event: the fetch stops at max_file_bytes and the file is
    // quarantined as too_large; a file within the limit is ingested.
    let (f, ing, small, big) = small_and_big_file().await;
    let rs = f.radar("r1");
    let s = ing.ingest_notified(&rs, &small, 0).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (1, 0), "{s:?}");
    for size in [0, 60] {
        let s = ing.ingest_notified(&rs, &big, size).await.unwrap();
        assert_eq!((s.ingested, s.quarantined), (0, 1), "size {size}: {s:?}");
    }
    only_quarantined_as_too_large(&f, &big).await;
}

#[tokio::test]
async fn a_file_whose_decodes_keep_dying_is_quarantined_as_crashed() {
    let f = Fixture::new().await;
    let times = [recent(20), recent(15), recent(10)];
    let keys: Vec<_> = times.iter().map(|t| f.put_scan("r1", *t)).collect();
    let rs = f.radar("r1");
    // Two processes died while decoding keys[1] (their marks were never
    // ended); one died once on keys[2].
    for _ in 0..2 {
        f.store
            .begin_attempt("r1", &keys[1], "dead", Utc::now())
            .await
            .unwrap();
    }
    f.store
        .begin_attempt("r1", &keys[2], "dead", Utc::now())
        .await
        .unwrap();
    let s = f
        .ingester(settings(recent(30), 50), "a")
        .run_once(&rs)
        .await
        .unwrap();
    assert_eq!((s.ingested, s.quarantined), (2, 1), "{s:?}");
    let q = f.store.list_quarantined("r1").await.unwrap();
    assert_eq!(
        (q[0].key.as_str(), q[0].reason_code.as_str()),
        (keys[1].as_str(), "crashed")
    );
    assert_eq!(stored_times(&f.store, "r1").await, vec![times[0], times[2]]);
    // Finished decodes leave no mark behind.
    for k in &keys {
        assert_eq!(
            f.store
                .begin_attempt("r1", k, "x", Utc::now())
                .await
                .unwrap(),
            0,
            "{k}"
        );
    }
}

/// A model-based property test of the ingest pass. Random arrival orders
/// (files appear over several runs, in any order), late files, duplicate
/// uploads of one key, two keys for one scan time, future keys, poison
/// files and decodes cut short by crashes are run against a simple model:
///
/// * every file that can be stored is stored exactly once: the successful
///   puts (`ingested`) of all runs add up to the number of distinct scan
///   times, and the stored times are exactly those;
/// * every poison file, and every file that crashed the decoder
///   `max_attempts` times, is quarantined exactly once (and not stored);
/// * a future key is never stored or checkpointed while it is in the
///   future, and is stored once its time has come;
/// * nothing is listed for ever: once drained, a run does nothing.
///
/// Lateness is bounded by the lookback (30 min): every time here lies
/// within 25 minutes.
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Good,
        Poison,
        /// The decoder died on it this many times already.
        Crashed(u32),
        /// Timed 40 min ahead.
        Future,
    }

    #[derive(Debug, Clone)]
    struct File {
        /// Minutes after the base time (0..25), or ahead of now for Future.
        minute: i64,
        /// Key prefix: mixes the key order against the time order.
        prefix: u8,
        kind: Kind,
        /// The run (0..4) in which it arrives.
        round: usize,
        /// Uploaded again in the next run (same key, same bytes).
        reupload: bool,
    }

    fn file() -> impl Strategy<Value = File> {
        (
            0i64..25,
            0u8..3,
            prop_oneof![
                6 => Just(Kind::Good),
                1 => Just(Kind::Poison),
                1 => (1u32..4).prop_map(Kind::Crashed),
                1 => Just(Kind::Future),
            ],
            0usize..4,
            any::<bool>(),
        )
            .prop_map(|(minute, prefix, kind, round, reupload)| File {
                minute,
                prefix,
                kind,
                round,
                reupload,
            })
    }

    fn key_of(f: &File, t: DateTime<Utc>) -> String {
        format!(
            "r1/{}/{}-r1_{}.txt",
            t.format("%Y/%m/%d"),
            ["c", "a", "b"][f.prefix as usize],
            t.format("%Y%m%d_%H%M%S")
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn every_file_is_stored_or_quarantined_exactly_once(
            files in proptest::collection::vec(file(), 1..14),
            batch in 1usize..6,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(check(files, batch));
        }
    }

    async fn check(files: Vec<File>, batch: usize) {
        let f = Fixture::new().await;
        // Whole minutes, early enough in the day that +25 min stays in it
        // (files in tomorrow's folder would simply not be listed yet).
        let now = Utc::now();
        let mut base = recent(0) - Duration::minutes(40);
        if (base + Duration::minutes(30)).date_naive() != base.date_naive() {
            base -= Duration::hours(1);
        }
        let future_base = {
            let t = now + Duration::minutes(40);
            Utc.timestamp_opt(t.timestamp() - t.timestamp() % 60, 0)
                .unwrap()
        };
        let same_day_future = future_base.date_naive() == now.date_naive()
            && (future_base + Duration::minutes(25)).date_naive() == now.date_naive();
        let rs = f.radar("r1");
        let settings = IngestSettings {
            max_attempts: 2,
            ..settings(base - Duration::minutes(1), batch)
        };
        let ing = f.ingester(settings.clone(), "a");

        // The model.
        let mut keys = BTreeMap::new();
        for file in &files {
            let t = match file.kind {
                Kind::Future => future_base + Duration::minutes(file.minute),
                _ => base + Duration::minutes(file.minute),
            };
            let key = key_of(file, t);
            // A key uploaded twice keeps its first content (same key, same file).
            keys.entry(key).or_insert((t, file.clone()));
        }
        let mut storable: BTreeSet<DateTime<Utc>> = BTreeSet::new();
        let mut future: BTreeSet<DateTime<Utc>> = BTreeSet::new();
        let mut to_quarantine = BTreeSet::new();
        for (key, (t, file)) in &keys {
            match file.kind {
                Kind::Good => {
                    storable.insert(*t);
                }
                Kind::Crashed(n) if n < settings.max_attempts => {
                    storable.insert(*t);
                }
                Kind::Future if same_day_future => {
                    future.insert(*t);
                }
                Kind::Future => {}
                Kind::Poison | Kind::Crashed(_) => {
                    to_quarantine.insert(key.clone());
                }
            }
        }
        // A good file sharing its time with a quarantined one is still
        // stored; a quarantined key never is. Duplicates are added below.

        let write = |key: &str, t: DateTime<Utc>, file: &File| match file.kind {
            Kind::Poison => f.put(key, "NOT A SCAN"),
            _ => f.put(key, &format!("RAINTEST {} 5", t.to_rfc3339())),
        };
        let (mut ingested, mut quarantined) = (0usize, 0usize);
        for round in 0..6 {
            for (key, (t, file)) in &keys {
                if file.round == round || (file.reupload && file.round + 1 == round) {
                    write(key, *t, file);
                    if let (Kind::Crashed(n), true) = (file.kind, file.round == round) {
                        for _ in 0..n {
                            f.store
                                .begin_attempt("r1", key, "dead", Utc::now())
                                .await
                                .unwrap();
                        }
                    }
                }
            }
            let s = ing.run_once(&rs).await.unwrap();
            ingested += s.ingested;
            quarantined += s.quarantined;
            let cp = f.store.get_checkpoint("r1").await.unwrap();
            if let Some(cp) = cp {
                assert!(
                    cp.last_time <= Utc::now() + settings.future_tolerance,
                    "{cp:?}"
                );
            }
        }
        // Drain what the batch size left.
        for _ in 0..40 {
            let s = ing.run_once(&rs).await.unwrap();
            ingested += s.ingested;
            quarantined += s.quarantined;
            if s.remaining == 0 {
                break;
            }
        }
        let stored: BTreeSet<_> = stored_times(&f.store, "r1").await.into_iter().collect();
        assert_eq!(stored, storable, "stored times, files {files:?}");
        assert_eq!(ingested, storable.len(), "successful puts");
        // Of several decodable keys for one time, one is stored and the
        // others are recorded as duplicates.
        let now = Utc::now();
        for t in &storable {
            let m = f.store.get_manifest("r1", *t, now).await.unwrap().unwrap();
            for (key, (kt, file)) in &keys {
                let decodable = matches!(file.kind, Kind::Good)
                    || matches!(file.kind, Kind::Crashed(n) if n < settings.max_attempts);
                if kt == t && decodable && *key != m.source_key {
                    to_quarantine.insert(key.clone());
                }
            }
        }
        let q: BTreeSet<_> = f
            .store
            .list_quarantined("r1")
            .await
            .unwrap()
            .into_iter()
            .map(|q| q.key)
            .collect();
        assert_eq!(q, to_quarantine, "quarantined keys");
        assert_eq!(quarantined, to_quarantine.len(), "each quarantined once");
        // Nothing is listed for ever: a drained radar's run does nothing.
        let s = ing.run_once(&rs).await.unwrap();
        assert_eq!((s.ingested, s.quarantined, s.remaining), (0, 0, 0), "{s:?}");

        // The future files' time comes (a tolerance that reaches them):
        // each is stored once, like any other file.
        if !future.is_empty() {
            let later = f.ingester(
                IngestSettings {
                    future_tolerance: Duration::minutes(90),
                    lookback: Duration::minutes(120),
                    ..settings.clone()
                },
                "a",
            );
            let mut n = 0;
            for _ in 0..40 {
                let s = later.run_once(&rs).await.unwrap();
                n += s.ingested;
                if s.remaining == 0 {
                    break;
                }
            }
            assert_eq!(n, future.len(), "future files stored once their time comes");
        }
    }
}

/// The lag gauge is now minus the newest stored scan's time after every
/// run, also one that stored nothing: it grows while a radar is quiet
/// (it stayed at the last stored scan's lag, so the lag alert could not
/// fire when a radar stopped uploading).
#[tokio::test]
async fn the_lag_grows_while_a_radar_is_quiet() {
    let f = Fixture::new().await;
    let t = recent(0); // an hour ago
    f.put_scan("r1", t);
    let ing = f.ingester(settings(t, 50), "a");
    let rs = f.radar("r1");
    assert_eq!(ing.run_once(&rs).await.unwrap().ingested, 1);
    let lag = || ing.metrics().lag_seconds.with_label_values(&["r1"]).get();
    assert!(lag() >= 3600.0, "{}", lag());
    // A run that stores nothing still sets it, from the store.
    ing.metrics()
        .lag_seconds
        .with_label_values(&["r1"])
        .set(0.0);
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 0);
    assert!(lag() >= 3600.0, "{}", lag());
}

/// OPERATIONS: old quarantined files (outside the listing window) are
/// looked at up to eight per run; the others wait for the next runs.
#[tokio::test]
async fn at_most_eight_old_quarantined_files_are_looked_at_per_run() {
    let f = Fixture::new().await;
    let mut completed = Vec::new();
    for i in 0..10 {
        let key = f.put_scan("r1", recent(180 + 5 * i));
        completed.push((
            key.clone(),
            std::fs::read_to_string(f.bucket.join(&key)).unwrap(),
        ));
        f.put(&key, "RAINTEST");
    }
    for t in [20, 10, 0].map(recent) {
        f.put_scan("r1", t);
    }
    let mut ing = f.ingester(settings(recent(300), 50), "a");
    ing.recheck_every = std::time::Duration::ZERO;
    let rs = f.radar("r1");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!((s.ingested, s.quarantined), (3, 10), "{s:?}");
    for (key, whole) in &completed {
        f.put(key, whole);
    }
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 8, "{s:?}");
    let s = ing.run_once(&rs).await.unwrap();
    assert_eq!(s.ingested, 2, "{s:?}");
    assert_eq!(stored_times(&f.store, "r1").await.len(), 13);
}
