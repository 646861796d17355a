//! Conformance suites: one per trait, run against every adapter (embedded
//! in-process, S3 and DynamoDB against real servers). An adapter passes when
//! it behaves exactly like the others. Compiled for tests and with the
//! `conformance` feature; the functions panic on the first difference.

#![allow(clippy::unwrap_used)]

use crate::model::{
    Checkpoint, LeaseOutcome, LeasePredecessor, NewScan, PutOutcome, QuarantineRecord, ScanEntry,
    Tile,
};
use crate::{ScanSource, ScanStore, StateStore, StoreError};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::future::Future;

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2018, 6, 16, h, m, 0).unwrap()
}

/// A deterministic scan with `n_tiles` tiles of `tile_len` bytes.
pub fn sample_scan(radar: &str, time: DateTime<Utc>, n_tiles: u16, tile_len: usize) -> NewScan {
    let seed = time.timestamp() as u64;
    NewScan {
        radar: radar.to_string(),
        time,
        source_key: format!("{radar}/{}.h5", time.format("%Y%m%d%H%M%S")),
        format: "odim".into(),
        header: format!("header {radar} {seed}").into_bytes(),
        rain_cells: n_tiles as u64 * 10,
        tiles: (0..n_tiles)
            .map(|i| Tile {
                row: i / 7,
                col: i % 7,
                bytes: (0..tile_len)
                    .map(|j| (seed as usize + i as usize * 31 + j * 7) as u8)
                    .collect(),
            })
            .collect(),
    }
}

/// The [`ScanSource`] suite. `put(key, bytes)` uploads an object below the
/// source root by other means (S3 PutObject, a file write).
pub async fn scan_source_suite<F, Fut>(src: &dyn ScanSource, put: F, pagination_objects: usize)
where
    F: Fn(String, Vec<u8>) -> Fut,
    Fut: Future<Output = ()>,
{
    // Empty source.
    assert!(src.list("", None).await.unwrap().is_empty());
    assert!(src.list("r1/", None).await.unwrap().is_empty());
    assert!(src.list_dirs("r1/").await.unwrap().is_empty());
    assert!(matches!(
        src.fetch("r1/missing.h5", 100).await,
        Err(StoreError::NotFound { .. })
    ));

    let keys = [
        "r1/2018/06/16/a_20180616_100000.h5",
        "r1/2018/06/16/a_20180616_100600.h5",
        "r1/2018/06/17/a_20180617_000000.h5",
        "r10/2018/06/16/other.h5",
        "r2/2018/06/16/b.h5",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(k.to_string(), vec![i as u8; 10 + i]).await;
    }

    let all: Vec<String> = src
        .list("r1/", None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(all, keys[..3].to_vec(), "prefix r1/ must not include r10/");
    let day: Vec<_> = src.list("r1/2018/06/16/", None).await.unwrap();
    assert_eq!(day.len(), 2);
    assert_eq!(day[1].size, 11);
    let after: Vec<String> = src
        .list("r1/2018/06/16/", Some(keys[0]))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(after, vec![keys[1].to_string()], "StartAfter is exclusive");
    let none = src.list("r1/2018/06/16/", Some(keys[1])).await.unwrap();
    assert!(none.is_empty());
    // A StartAfter before the prefix lists the whole prefix.
    assert_eq!(
        src.list("r1/2018/06/17/", Some(keys[0]))
            .await
            .unwrap()
            .len(),
        1
    );
    // Partial-name prefixes work like S3's.
    assert_eq!(
        src.list("r1/2018/06/16/a_20180616_1006", None)
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(
        src.list_dirs("r1/2018/06/").await.unwrap(),
        vec!["r1/2018/06/16/".to_string(), "r1/2018/06/17/".to_string()]
    );
    assert_eq!(
        src.list_dirs("").await.unwrap(),
        vec!["r1/".to_string(), "r10/".to_string(), "r2/".to_string()]
    );
    assert_eq!(src.fetch(keys[4], 14).await.unwrap(), vec![4u8; 14]);
    // One byte over the limit: refused, naming the object, its size and
    // the limit.
    match src.fetch(keys[4], 13).await {
        Err(StoreError::TooLarge { what, size, limit }) => {
            assert!(what.ends_with(keys[4]), "{what}");
            assert_eq!((size, limit), (14, 13));
        }
        other => panic!("fetch above the limit: {other:?}"),
    }

    // Listing follows pagination (S3 pages hold 1000 keys).
    if pagination_objects > 0 {
        for i in 0..pagination_objects {
            put(format!("p/2018/06/16/{i:05}.h5"), vec![1]).await;
        }
        let listed = src.list("p/", None).await.unwrap();
        assert_eq!(listed.len(), pagination_objects);
        assert!(listed.windows(2).all(|w| w[0].key < w[1].key), "sorted");
        let after = src.list("p/", Some("p/2018/06/16/00009.h5")).await.unwrap();
        assert_eq!(after.len(), pagination_objects - 10);
    }
    assert!(!src.describe().is_empty());
}

/// The [`ScanStore`] suite. `retention` is the adapter's configured retention.
/// `races` also checks that concurrent conditional writes have exactly one
/// winner: true for every real backend; moto's server evaluates conditions
/// and writes without a lock (two winners of one race were seen), so its
/// runs leave that to dynalite.
pub async fn scan_store_suite(store: &dyn ScanStore, retention: Duration, races: bool) {
    let now = Utc::now();
    let r = "conf-radar";

    // Empty.
    assert!(store.latest(r, now).await.unwrap().is_none());
    assert!(store
        .list_scans(r, t(0, 0), t(23, 0), now)
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_scan(r, t(10, 0), now).await.unwrap().is_none());
    assert!(store
        .get_tile(r, t(10, 0), 0, 0, now)
        .await
        .unwrap()
        .is_none());

    // Put, idempotent re-put, read back.
    let a = sample_scan(r, t(10, 0), 9, 100);
    assert_eq!(store.put_scan(&a, now).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        store.put_scan(&a, now).await.unwrap(),
        PutOutcome::AlreadyStored
    );
    let got = store
        .get_scan(r, t(10, 0), now)
        .await
        .unwrap()
        .expect("stored scan");
    assert_eq!(got.manifest.radar, r);
    assert_eq!(got.manifest.time, t(10, 0));
    assert_eq!(got.manifest.source_key, a.source_key);
    assert_eq!(got.manifest.header, a.header);
    assert_eq!(got.manifest.rain_cells, 90);
    assert_eq!(got.manifest.digest, a.digest());
    assert_eq!(got.manifest.bytes, a.payload_bytes());
    assert_eq!(got.tiles.len(), 9);
    let mut want = a.tiles.clone();
    want.sort_by_key(|t| (t.row, t.col));
    assert_eq!(got.tiles, want);
    assert_eq!(
        store
            .get_tile(r, t(10, 0), 1, 1, now)
            .await
            .unwrap()
            .unwrap(),
        a.tiles
            .iter()
            .find(|t| t.row == 1 && t.col == 1)
            .unwrap()
            .bytes
    );
    assert!(
        store
            .get_tile(r, t(10, 0), 5, 5, now)
            .await
            .unwrap()
            .is_none(),
        "empty tile"
    );
    assert_eq!(
        store.get_manifest(r, t(10, 0), now).await.unwrap().unwrap(),
        got.manifest
    );

    // A different encoding of the same scan does not replace the first.
    let mut other = a.clone();
    other.tiles[0].bytes = vec![0; 3];
    assert_eq!(
        store.put_scan(&other, now).await.unwrap(),
        PutOutcome::AlreadyStored
    );
    assert_eq!(
        store.get_scan(r, t(10, 0), now).await.unwrap().unwrap(),
        got
    );

    // A range, latest, a scan without rain, sub-second times.
    let b = sample_scan(r, t(10, 6), 0, 0);
    assert_eq!(store.put_scan(&b, now).await.unwrap(), PutOutcome::Stored);
    let mut c = sample_scan(r, t(10, 12), 2, 5);
    c.time += Duration::milliseconds(400);
    assert_eq!(store.put_scan(&c, now).await.unwrap(), PutOutcome::Stored);
    let times: Vec<_> = store
        .list_scans(r, t(9, 0), t(11, 0), now)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.time)
        .collect();
    assert_eq!(times, vec![t(10, 0), t(10, 6), t(10, 12)]);
    assert_eq!(
        store
            .list_scans(r, t(10, 6), t(10, 6), now)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .list_scans(r, t(10, 7), t(10, 11), now)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_scans(r, t(11, 0), t(9, 0), now)
        .await
        .unwrap()
        .is_empty());
    // Listing entries: the manifests' times and counts, at most `limit`.
    let manifests = store.list_scans(r, t(9, 0), t(11, 0), now).await.unwrap();
    let entries = store
        .list_entries(r, t(9, 0), t(11, 0), 10, now)
        .await
        .unwrap();
    let expected: Vec<ScanEntry> = manifests.iter().map(ScanEntry::from).collect();
    assert_eq!(entries, expected);
    assert_eq!(entries[0].tiles, a.tiles.len());
    let first_two = store
        .list_entries(r, t(9, 0), t(11, 0), 2, now)
        .await
        .unwrap();
    assert_eq!(first_two, expected[..2].to_vec());
    let after = store
        .list_entries(r, t(10, 6) + Duration::seconds(1), t(11, 0), 2, now)
        .await
        .unwrap();
    assert_eq!(after, expected[2..].to_vec());
    assert!(store
        .list_entries(r, t(9, 0), t(11, 0), 0, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.latest(r, now).await.unwrap().unwrap().time, t(10, 12));
    let empty = store.get_scan(r, t(10, 6), now).await.unwrap().unwrap();
    assert!(empty.tiles.is_empty());
    assert!(store
        .list_scans("conf-other", t(0, 0), t(23, 0), now)
        .await
        .unwrap()
        .is_empty());

    // A tile bigger than one DynamoDB item.
    let mut big = sample_scan(r, t(11, 0), 1, 1_000_000);
    big.tiles[0].row = 3;
    assert_eq!(store.put_scan(&big, now).await.unwrap(), PutOutcome::Stored);
    let got = store.get_scan(r, t(11, 0), now).await.unwrap().unwrap();
    assert_eq!(got.tiles, big.tiles);
    assert_eq!(
        store
            .get_tile(r, t(11, 0), 3, 0, now)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1_000_000
    );

    // Concurrent puts of one scan: exactly one stores it.
    let d = sample_scan(r, t(12, 0), 30, 50);
    if !races {
        store.put_scan(&d, now).await.unwrap();
    }
    let outcomes = futures_join_all((0..4).map(|_| store.put_scan(&d, now))).await;
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PutOutcome::Stored)))
        .count();
    if races {
        assert_eq!(stored, 1, "{outcomes:?}");
    }
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(
        store
            .get_scan(r, t(12, 0), now)
            .await
            .unwrap()
            .unwrap()
            .tiles
            .len(),
        30
    );

    // Retention: readers drop expired scans even before any deletion.
    let later = now + retention + Duration::seconds(1);
    assert!(store.get_scan(r, t(10, 0), later).await.unwrap().is_none());
    assert!(store
        .get_manifest(r, t(10, 0), later)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_tile(r, t(10, 0), 1, 1, later)
        .await
        .unwrap()
        .is_none());
    assert!(store.latest(r, later).await.unwrap().is_none());
    assert!(store
        .list_scans(r, t(0, 0), t(23, 0), later)
        .await
        .unwrap()
        .is_empty());
    // ... and an expired scan may be stored again.
    assert_eq!(store.put_scan(&a, later).await.unwrap(), PutOutcome::Stored);

    // Bad ids are refused.
    let bad = sample_scan("no/slashes", t(10, 0), 1, 1);
    assert!(matches!(
        store.put_scan(&bad, now).await,
        Err(StoreError::Invalid { .. })
    ));
}

/// The [`StateStore`] suite; `races` as for [`scan_store_suite`].
pub async fn state_store_suite(store: &dyn StateStore, races: bool) {
    let now = Utc::now();

    // Checkpoints never move backwards.
    assert!(store.get_checkpoint("cp").await.unwrap().is_none());
    let cp = |time: DateTime<Utc>, key: &str| Checkpoint {
        radar: "cp".into(),
        last_time: time,
        last_key: key.into(),
        updated_at: Utc.timestamp_opt(now.timestamp(), 0).unwrap(),
    };
    assert!(store.put_checkpoint(&cp(t(10, 0), "k1")).await.unwrap());
    assert_eq!(
        store.get_checkpoint("cp").await.unwrap().unwrap(),
        cp(t(10, 0), "k1")
    );
    assert!(store.put_checkpoint(&cp(t(10, 6), "k2")).await.unwrap());
    assert!(
        !store.put_checkpoint(&cp(t(10, 0), "k9")).await.unwrap(),
        "older time refused"
    );
    assert!(
        !store.put_checkpoint(&cp(t(10, 6), "k1")).await.unwrap(),
        "same time, smaller key refused"
    );
    assert!(
        store.put_checkpoint(&cp(t(10, 6), "k2")).await.unwrap(),
        "same checkpoint again is fine"
    );
    assert!(store.put_checkpoint(&cp(t(10, 12), "k3")).await.unwrap());
    assert_eq!(
        store.get_checkpoint("cp").await.unwrap().unwrap(),
        cp(t(10, 12), "k3")
    );

    // Decode attempts: each begun and never ended attempt is counted, per
    // radar and key; ending one starts the count again.
    let (ra, ka, kb) = ("att", "att/2018/06/16/a.h5", "att/2018/06/16/b.h5");
    assert_eq!(store.begin_attempt(ra, ka, "a", now).await.unwrap(), 0);
    assert_eq!(store.begin_attempt(ra, ka, "b", now).await.unwrap(), 1);
    assert_eq!(store.begin_attempt(ra, ka, "a", now).await.unwrap(), 2);
    assert_eq!(store.begin_attempt(ra, kb, "a", now).await.unwrap(), 0);
    assert_eq!(store.begin_attempt("other", ka, "a", now).await.unwrap(), 0);
    store.end_attempt(ra, ka).await.unwrap();
    store.end_attempt(ra, "never-begun").await.unwrap();
    assert_eq!(store.begin_attempt(ra, ka, "a", now).await.unwrap(), 0);
    assert_eq!(store.begin_attempt(ra, kb, "a", now).await.unwrap(), 1);

    // Leases.
    let ttl = Duration::seconds(60);
    let l = "ingest-conf";
    assert_eq!(
        store.acquire_lease(l, "a", ttl, now).await.unwrap(),
        LeaseOutcome::Acquired {
            until: now + ttl,
            predecessor: LeasePredecessor::None
        }
    );
    match store.acquire_lease(l, "b", ttl, now).await.unwrap() {
        LeaseOutcome::Held { owner, until } => {
            assert_eq!(owner, "a");
            assert_eq!(until.timestamp_millis(), (now + ttl).timestamp_millis());
        }
        other => panic!("b must not get a's lease: {other:?}"),
    }
    assert!(matches!(
        store.acquire_lease(l, "a", ttl, now).await.unwrap(),
        LeaseOutcome::Acquired {
            predecessor: LeasePredecessor::Same,
            ..
        }
    ));
    assert!(store
        .renew_lease(l, "a", ttl, now + Duration::seconds(30))
        .await
        .unwrap());
    assert!(!store.renew_lease(l, "b", ttl, now).await.unwrap());
    assert!(!store.release_lease(l, "b", now).await.unwrap());
    // Renewed until now+90s: still held at now+70s.
    assert!(matches!(
        store
            .acquire_lease(l, "b", ttl, now + Duration::seconds(70))
            .await
            .unwrap(),
        LeaseOutcome::Held { .. }
    ));
    assert!(store.release_lease(l, "a", now).await.unwrap());
    assert!(
        !store.renew_lease(l, "a", ttl, now).await.unwrap(),
        "released leases are not renewed"
    );
    assert_eq!(
        store.acquire_lease(l, "b", ttl, now).await.unwrap(),
        LeaseOutcome::Acquired {
            until: now + ttl,
            predecessor: LeasePredecessor::Released { owner: "a".into() }
        },
        "hand-over"
    );
    // b crashes: its lease ran out at now + ttl by b's clock, but a's clock
    // may be ahead of b's, so a waits LEASE_SKEW_MARGIN longer.
    // Two clocks each MAX_CLOCK_SKEW off UTC differ by up to twice that.
    let within = now + ttl + crate::model::MAX_CLOCK_SKEW * 2 - Duration::milliseconds(1);
    match store.acquire_lease(l, "a", ttl, within).await.unwrap() {
        LeaseOutcome::Held { owner, .. } => assert_eq!(owner, "b"),
        other => panic!("b's lease was taken over within the skew margin: {other:?}"),
    }
    let later = now + ttl + crate::model::LEASE_SKEW_MARGIN;
    match store.acquire_lease(l, "a", ttl, later).await.unwrap() {
        LeaseOutcome::Acquired {
            predecessor: LeasePredecessor::Expired { owner, expired_at },
            ..
        } => {
            assert_eq!(owner, "b");
            assert_eq!(
                expired_at.timestamp_millis(),
                (now + ttl).timestamp_millis()
            );
        }
        other => panic!("expected a takeover, got {other:?}"),
    }
    assert!(
        !store.renew_lease(l, "b", ttl, later).await.unwrap(),
        "b lost its lease"
    );

    // Concurrent acquires: one winner.
    let l2 = "ingest-race";
    let owners: Vec<String> = (0..5).map(|i| format!("o{i}")).collect();
    let results =
        futures_join_all(owners.iter().map(|o| store.acquire_lease(l2, o, ttl, now))).await;
    let winners = results
        .iter()
        .filter(|r| matches!(r, Ok(LeaseOutcome::Acquired { .. })))
        .count();
    if races {
        assert_eq!(winners, 1, "{results:?}");
    }

    // Quarantine.
    let q = |radar: &str, key: &str, reason: &str| QuarantineRecord {
        radar: radar.into(),
        key: key.into(),
        reason_code: "bad_magic".into(),
        reason: reason.into(),
        time: Some(t(10, 0)),
        recorded_at: Utc.timestamp_opt(now.timestamp(), 0).unwrap(),
        size: None,
        modified: None,
    };
    assert!(store.list_quarantined("qr").await.unwrap().is_empty());
    store
        .quarantine(&q("qr", "qr/2018/06/16/b.h5", "first"))
        .await
        .unwrap();
    store
        .quarantine(&q("qr", "qr/2018/06/16/a.h5", "x"))
        .await
        .unwrap();
    store.quarantine(&q("qr2", "qr2/a.h5", "y")).await.unwrap();
    store
        .quarantine(&q("qr", "qr/2018/06/16/b.h5", "second"))
        .await
        .unwrap();
    let listed = store.list_quarantined("qr").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].key, "qr/2018/06/16/a.h5");
    assert_eq!(listed[1], q("qr", "qr/2018/06/16/b.h5", "second"));
    // One record read alone: the latest, and only under its own radar.
    assert_eq!(
        store
            .get_quarantined("qr", "qr/2018/06/16/b.h5")
            .await
            .unwrap(),
        Some(q("qr", "qr/2018/06/16/b.h5", "second"))
    );
    assert_eq!(
        store
            .get_quarantined("qr2", "qr/2018/06/16/b.h5")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_quarantined("qr", "qr/2018/06/16/c.h5")
            .await
            .unwrap(),
        None
    );
    let mut untimed = q("qr3", "qr3/z", "no time");
    untimed.time = None;
    store.quarantine(&untimed).await.unwrap();
    assert_eq!(store.list_quarantined("qr3").await.unwrap(), vec![untimed]);
    // The file's listed size and modification time read back exactly
    // (nanoseconds included: they are compared with the next listing).
    let mut sized = q("qr4", "qr4/a.h5", "truncated");
    sized.size = Some(100_000);
    sized.modified = Some(Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap());
    store.quarantine(&sized).await.unwrap();
    assert_eq!(
        store.list_quarantined("qr4").await.unwrap(),
        vec![sized.clone()]
    );
    assert_eq!(
        store.get_quarantined("qr4", "qr4/a.h5").await.unwrap(),
        Some(sized)
    );

    // Versioned records (the notifier's claims and place states).
    record_suite(store, "conf/", races).await;
}

/// The versioned records of the [`StateStore`] (compare-and-set, prefix
/// listing); keys are taken under `ns` so a suite can run twice on one store.
pub async fn record_suite(s: &dyn StateStore, ns: &str, races: bool) {
    let k = |n: &str| format!("{ns}{n}");
    let conflict = |r: Result<u64, StoreError>| matches!(r, Err(StoreError::Conflict { .. }));
    assert_eq!(s.get_record(&k("a")).await.unwrap(), None);
    assert_eq!(s.put_record(&k("a"), "{\"n\":1}", None).await.unwrap(), 1);
    assert!(conflict(s.put_record(&k("a"), "{}", None).await));
    assert!(conflict(s.put_record(&k("a"), "{}", Some(5)).await));
    assert!(conflict(s.put_record(&k("new"), "{}", Some(1)).await));
    assert_eq!(
        s.put_record(&k("a"), "{\"n\":2}", Some(1)).await.unwrap(),
        2
    );
    let got = s.get_record(&k("a")).await.unwrap().unwrap();
    assert_eq!((got.value.as_str(), got.version), ("{\"n\":2}", 2));
    // Keys may hold the characters of event keys.
    let odd = k("event/zürich:rain#2018-06-16T10:00Z");
    assert_eq!(s.put_record(&odd, "é", None).await.unwrap(), 1);
    assert_eq!(s.get_record(&odd).await.unwrap().unwrap().value, "é");
    for n in ["b/2", "b/1", "b/10", "c"] {
        s.put_record(&k(n), n, None).await.unwrap();
    }
    let listed: Vec<(String, String)> = s
        .list_records(&k("b/"))
        .await
        .unwrap()
        .into_iter()
        .map(|(key, r)| (key, r.value))
        .collect();
    assert_eq!(
        listed,
        vec![
            (k("b/1"), "b/1".to_string()),
            (k("b/10"), "b/10".to_string()),
            (k("b/2"), "b/2".to_string())
        ]
    );
    assert!(s.list_records(&k("zzz")).await.unwrap().is_empty());
    if races {
        // Concurrent creates and concurrent updates: exactly one wins each.
        let race = k("race");
        let results = futures_join_all((0..5).map(|i| {
            let race = race.clone();
            async move { s.put_record(&race, &i.to_string(), None).await }
        }))
        .await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let results = futures_join_all((0..5).map(|i| {
            let race = race.clone();
            async move { s.put_record(&race, &i.to_string(), Some(1)).await }
        }))
        .await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert_eq!(s.get_record(&race).await.unwrap().unwrap().version, 2);
    }
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, h) in handles.iter_mut().enumerate() {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        outputs[i] = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}

/// The [`crate::MessageQueue`] suite, on an empty queue whose own
/// visibility timeout is long (30 s or more).
pub async fn message_queue_suite(q: &dyn crate::MessageQueue) {
    use std::collections::BTreeSet;
    use std::time::Duration as StdDuration;
    let short = StdDuration::from_secs(1);
    let long = StdDuration::from_secs(60);
    // Receives until `n` messages have come (each hidden for `visibility`).
    let receive_n = |n: usize, visibility: StdDuration| async move {
        let mut got = Vec::new();
        for _ in 0..20 {
            if got.len() >= n {
                break;
            }
            got.extend(q.receive(10, short, visibility).await.unwrap());
        }
        got
    };

    assert!(q.receive(10, short, long).await.unwrap().is_empty());
    for body in ["a", "b", "c"] {
        q.send(body).await.unwrap();
    }
    let got = receive_n(3, long).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let bodies: BTreeSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, BTreeSet::from(["a", "b", "c"]));
    assert!(got.iter().all(|m| m.receive_count == 1), "{got:?}");
    let ids: BTreeSet<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    // Received messages are hidden from other receivers.
    assert!(q.receive(10, short, long).await.unwrap().is_empty());

    let by = |b: &str| got.iter().find(|m| m.body == b).unwrap().clone();
    // Deleted: gone for good. Made visible again: comes back, counted.
    q.delete(&by("a").receipt).await.unwrap();
    q.extend(&by("c").receipt, StdDuration::ZERO).await.unwrap();
    let again = receive_n(1, long).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].body, "c");
    assert_eq!(again[0].receive_count, 2);
    q.delete(&again[0].receipt).await.unwrap();

    // A message whose visibility is extended stays hidden past its first
    // timeout; one that is not comes back after it.
    q.send("d").await.unwrap();
    q.send("e").await.unwrap();
    let two = receive_n(2, short).await;
    assert_eq!(two.len(), 2, "{two:?}");
    let d = two.iter().find(|m| m.body == "d").unwrap();
    q.extend(&d.receipt, long).await.unwrap();
    tokio::time::sleep(StdDuration::from_millis(2500)).await;
    let back = receive_n(1, long).await;
    let bodies: Vec<&str> = back.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["e"], "only the message not extended comes back");
    q.delete(&back[0].receipt).await.unwrap();
    q.delete(&d.receipt).await.unwrap();
    q.delete(&by("b").receipt).await.unwrap();
    assert!(q.receive(10, short, long).await.unwrap().is_empty());
}

/// Test set-up on an S3- and SQS-compatible server (moto): a queue with a
/// redrive policy to a dead-letter queue after `max_receive_count`
/// receipts, and `bucket` (which must exist) notifying the queue of every
/// created object. Returns the queue and the dead-letter queue.
pub async fn notified_queue(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    name: &str,
    max_receive_count: u32,
) -> (crate::SqsQueue, crate::SqsQueue) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let create = |name: String, attrs: Vec<(QueueAttributeName, String)>| {
        let sqs = sqs.clone();
        async move {
            let mut req = sqs.create_queue().queue_name(name);
            for (k, v) in attrs {
                req = req.attributes(k, v);
            }
            let url = req.send().await.unwrap().queue_url.unwrap();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes()
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            (url, arn)
        }
    };
    let (dlq_url, dlq_arn) = create(format!("{name}-dlq"), Vec::new()).await;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":{max_receive_count}}}"#);
    let (url, arn) = create(
        name.to_string(),
        vec![(QueueAttributeName::RedrivePolicy, redrive)],
    )
    .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
    .put_bucket_notification_configuration()
    .bucket(bucket)
    .notification_configuration(
        NotificationConfiguration::builder()
            .queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .build()
                    .unwrap(),
            )
            .build(),
    )
    .send()
    .await
    .unwrap();
    (
        crate::SqsQueue::new(sdk, &url).unwrap(),
        crate::SqsQueue::new(sdk, &dlq_url).unwrap(),
    )
}

/// Every message left in `q`, received and deleted: their bodies.
pub async fn take_all(q: &dyn crate::MessageQueue) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = q
            .receive(
                10,
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.unwrap();
            out.push(m.body);
        }
    }
}
