//! The embedded store after a full disk: redb latches the first I/O error
//! and refuses every later call on that database; the store opens the file
//! again by itself once writes succeed, with every committed scan intact
//! and nothing of the failed one.
//!
//! The "full disk" is this test process's own file-size limit
//! (`RLIMIT_FSIZE`: a write past it fails with `EFBIG`), which is why the
//! test has a binary of its own.

#![allow(clippy::unwrap_used)]

use chrono::DateTime;
use chrono::{Duration, TimeZone, Utc};
use raincast_store::{EmbeddedStore, NewScan, PutOutcome, ScanStore, Tile};

/// A scan of `n` tiles of `len` bytes.
fn scan(time: DateTime<Utc>, n: u16, len: usize) -> NewScan {
    NewScan {
        radar: "r1".into(),
        time,
        source_key: format!("r1/{}.h5", time.format("%Y%m%d%H%M%S")),
        format: "odim".into(),
        header: b"header".to_vec(),
        rain_cells: 10,
        tiles: (0..n)
            .map(|i| Tile {
                row: i / 7,
                col: i % 7,
                bytes: (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect(),
            })
            .collect(),
    }
}

#[allow(unsafe_code)]
fn set_file_size_limit(bytes: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct; SIGXFSZ ignored so that a
    // write past the limit returns EFBIG instead of ending the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[tokio::test]
async fn the_embedded_store_goes_on_after_a_full_disk_is_cleared() {
    let dir = raincast_testkit::TempDir::new("disk-full");
    let path = dir.path().join("raincast.redb");
    let store = EmbeddedStore::open(&path, Duration::days(30))
        .await
        .unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let now = t0 + Duration::minutes(1);
    let first = scan(t0, 4, 2000);
    assert_eq!(
        store.put_scan(&first, now).await.unwrap(),
        PutOutcome::Stored
    );
    // The disk fills: no byte past the file's present size.
    let size = std::fs::metadata(&path).unwrap().len();
    set_file_size_limit(size as libc::rlim_t);
    let big = scan(t0 + Duration::minutes(5), 40, 200_000);
    let err = store.put_scan(&big, now).await.unwrap_err().to_string();
    assert!(err.contains("embedded"), "{err}");
    // Still full: every call fails, with an error, not a panic.
    assert!(store.put_scan(&big, now).await.is_err());
    // Cleared.
    set_file_size_limit(libc::RLIM_INFINITY);
    let listed = |s: &EmbeddedStore| {
        let s = s.clone();
        async move {
            s.list_scans("r1", t0 - Duration::hours(1), t0 + Duration::hours(1), now)
                .await
                .map(|m| m.into_iter().map(|m| m.time).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        listed(&store).await.unwrap(),
        vec![t0],
        "the committed scan is kept and nothing of the failed one"
    );
    assert_eq!(store.put_scan(&big, now).await.unwrap(), PutOutcome::Stored);
    let back = store.get_scan("r1", big.time, now).await.unwrap().unwrap();
    assert_eq!(back.tiles.len(), 40);
    assert_eq!(listed(&store).await.unwrap(), vec![t0, big.time]);
}
