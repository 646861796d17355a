#![allow(clippy::unwrap_used)]

use super::*;
use chrono::TimeZone;
use raincast_store::EmbeddedStore;
use raincast_testkit::TempDir;

const RADAR: &str = "nc-test";
const ROWS: usize = 64;
const COLS: usize = 96;

fn grid() -> Grid {
    Grid::new(
        "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
        ROWS,
        COLS,
        1000.0,
        1000.0,
        -(COLS as f64) * 500.0,
        ROWS as f64 * 500.0,
    )
    .unwrap()
}

fn time(k: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap() + Duration::minutes(5 * k as i64)
}

/// A rain cell moving 2 cells east per 5-minute scan; no data along the north edge.
fn field(k: usize) -> RainField {
    let rate = Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
        if r < 2 {
            return f32::NAN;
        }
        let (cy, cx) = (32.0, 20.0 + 2.0 * k as f32);
        let d2 = ((r as f32 - cy).powi(2) + (c as f32 - cx).powi(2)) / 49.0;
        let v = 12.0 * (-d2).exp();
        if v < 0.1 {
            0.0
        } else {
            v
        }
    });
    RainField {
        grid: grid(),
        time: time(k),
        rate_mm_h: rate,
    }
}

async fn put(store: &dyn ScanStore, k: usize) {
    let f = field(k);
    let enc = sparse::encode(&f, &SparseOptions::default()).unwrap();
    let scan = NewScan {
        radar: RADAR.into(),
        time: f.time,
        source_key: format!("{RADAR}/{k}.h5"),
        format: "odim".into(),
        header: enc.header,
        rain_cells: f.rain_cells() as u64,
        tiles: enc.tiles,
    };
    store.put_scan(&scan, f.time).await.unwrap();
}

async fn store(dir: &TempDir) -> Arc<EmbeddedStore> {
    Arc::new(
        EmbeddedStore::open(dir.path().join("s.redb"), Duration::days(3650))
            .await
            .unwrap(),
    )
}

fn lonlat(row: f64, col: f64) -> (f64, f64) {
    grid().rowcol_to_lonlat(row, col).unwrap()
}

#[tokio::test]
async fn builds_stores_caches_and_reloads() {
    let dir = TempDir::new("raincast-nowcast-test");
    let store = store(&dir).await;
    let svc = NowcastService::new(store.clone(), NowcastSettings::default());
    let now = time(3) + Duration::minutes(1);

    // Too few scans: nothing yet.
    put(store.as_ref(), 0).await;
    put(store.as_ref(), 1).await;
    assert!(matches!(
        svc.update(RADAR, now).await.unwrap(),
        UpdateOutcome::NotEnoughScans { have: 2, need: 3 }
    ));
    assert!(svc.latest(RADAR).is_none());

    put(store.as_ref(), 2).await;
    put(store.as_ref(), 3).await;
    let n = match svc.update(RADAR, now).await.unwrap() {
        UpdateOutcome::Built(n) => n,
        other => panic!("expected a build, got {other:?}"),
    };
    assert_eq!(n.base_time, time(3));
    assert_eq!(n.inputs, vec![time(1), time(2), time(3)]);
    assert_eq!(n.leads_min, (1..=24).map(|k| 5 * k).collect::<Vec<u32>>());
    assert_eq!(n.rate_mm_h.len(), 24);
    assert_eq!(n.probability.len(), 24);
    assert_eq!(n.valid_time(1), time(5));

    // The cell sits at column 26 now and moves 2 cells per 5 min: in 30 min
    // it is near column 38. A point there sees rain coming.
    let (lon, lat) = lonlat(32.5, 38.5);
    let p = n.point(lon, lat).unwrap();
    assert_eq!((p.row, p.col), (32, 38));
    let i30 = n.lead_index(30).unwrap();
    assert!(p.steps[i30].rate_mm_h > 2.0, "{:?}", p.steps[i30]);
    assert!(p.steps[i30].probability > 0.5);
    assert!(p.now_mm_h < p.steps[i30].rate_mm_h);
    assert!(!p.summary.is_empty());
    // Outside the grid, or in no data (north edge): no point forecast.
    assert!(n.point(30.0, 10.0).is_none());
    let (lon, lat) = lonlat(0.5, 40.5);
    assert!(n.point(lon, lat).is_none());

    // Frames are stored as sparse scans of the lead's pseudo-radar.
    let m = store
        .get_manifest(&frame_series_id(RADAR, 30), time(3), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.format, "nowcast");
    let info = sparse::header_info(&m.header).unwrap();
    assert_eq!(info.time, time(3) + Duration::minutes(30));

    // Same scan again: unchanged.
    assert!(matches!(
        svc.update(RADAR, now).await.unwrap(),
        UpdateOutcome::Unchanged(_)
    ));

    // Another instance loads the stored frames instead of recomputing.
    let other = NowcastService::new(store.clone(), NowcastSettings::default());
    let loaded = match other.update(RADAR, now).await.unwrap() {
        UpdateOutcome::Loaded(n) => n,
        o => panic!("expected a load, got {o:?}"),
    };
    assert_eq!(loaded.origin, Origin::Stored);
    assert_eq!(loaded.leads_min, n.leads_min);
    for (a, b) in loaded.rate_mm_h[i30].iter().zip(n.rate_mm_h[i30].iter()) {
        assert!(
            (a.is_nan() && b.is_nan()) || (a - b).abs() <= 2e-4 * b.abs().max(1e-3),
            "{a} vs {b}"
        );
    }
    let q = loaded.point(lon_lat_38().0, lon_lat_38().1).unwrap();
    assert!((q.steps[i30].probability - p.steps[i30].probability).abs() < 0.05);

    // A newer scan: a new nowcast.
    put(store.as_ref(), 4).await;
    let later = time(4) + Duration::minutes(1);
    match svc.update(RADAR, later).await.unwrap() {
        UpdateOutcome::Built(n) => assert_eq!(n.base_time, time(4)),
        o => panic!("expected a build, got {o:?}"),
    }
}

fn lon_lat_38() -> (f64, f64) {
    lonlat(32.5, 38.5)
}

#[tokio::test]
async fn ensure_builds_on_first_use_and_refreshes_in_the_background() {
    let dir = TempDir::new("raincast-nowcast-ensure");
    let store = store(&dir).await;
    for k in 0..3 {
        put(store.as_ref(), k).await;
    }
    let settings = NowcastSettings {
        store_frames: false,
        max_lead_min: 30,
        recheck_s: 0,
        ..NowcastSettings::default()
    };
    let svc = NowcastService::new(store.clone(), settings);
    assert!(svc
        .ensure("unknown-radar", time(3))
        .await
        .unwrap()
        .is_none());
    let n = svc.ensure(RADAR, time(3)).await.unwrap().unwrap();
    assert_eq!(n.base_time, time(2));
    assert_eq!(n.leads_min, vec![5, 10, 15, 20, 25, 30]);
    // Nothing stored when store_frames is off.
    assert!(store
        .latest(&frame_series_id(RADAR, 5), time(3))
        .await
        .unwrap()
        .is_none());
    put(store.as_ref(), 3).await;
    // Answers from the cache at once, refreshes behind the scenes.
    let again = svc.ensure(RADAR, time(4)).await.unwrap().unwrap();
    assert_eq!(again.base_time, time(2));
    for _ in 0..200 {
        if svc.latest(RADAR).unwrap().base_time == time(3) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the background refresh never landed");
}

#[test]
fn leads_follow_the_scan_interval() {
    let dir = TempDir::new("raincast-nowcast-leads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(store(&dir));
    let svc = NowcastService::new(store.clone(), NowcastSettings::default());
    assert_eq!(svc.leads(360).len(), 20);
    assert_eq!(svc.leads(360)[0], 6);
    assert_eq!(svc.leads(20)[..3], [1, 2, 3]);
    assert_eq!(svc.leads(20).len(), 120);
    let fixed = NowcastService::new(
        store,
        NowcastSettings {
            lead_step_min: Some(10),
            max_lead_min: 60,
            ..NowcastSettings::default()
        },
    );
    assert_eq!(fixed.leads(300), vec![10, 20, 30, 40, 50, 60]);
}

/// The frames builder shows the nowcast's inputs from the fields the nowcast
/// holds: a notifier pass or an animation after a nowcast decodes only the
/// older scans, never one the nowcast job has decoded already.
#[tokio::test]
async fn frames_builder_reuses_the_nowcast_inputs() {
    let dir = TempDir::new("raincast-nowcast-frames");
    let store = store(&dir).await;
    for k in 0..=5 {
        put(store.as_ref(), k).await;
    }
    let now = time(5) + Duration::minutes(1);
    for svc in [
        NowcastService::new(store.clone(), NowcastSettings::default()),
        // A second instance loads the stored frames: same inputs held.
        NowcastService::new(store.clone(), NowcastSettings::default()),
    ] {
        let n = svc
            .update(RADAR, now)
            .await
            .unwrap()
            .nowcast()
            .cloned()
            .unwrap();
        assert_eq!(n.inputs, vec![time(3), time(4), time(5)]);
        assert_eq!(n.earlier_inputs_mm_h.len(), 2);
        let past = svc.past_scans(&n, 25, now).await.unwrap();
        let times: Vec<_> = past.iter().map(|m| m.time).collect();
        assert_eq!(times, (0..=5).map(time).collect::<Vec<_>>());
        let fetched = svc.observed_scans(&n, &past, now).await.unwrap();
        assert_eq!(fetched.fetched(), 3, "only the scans older than the inputs");
        let fields = fetched.decode().unwrap();
        assert_eq!(fields.len(), 6);
        for (k, f) in fields.iter().enumerate() {
            assert_eq!(f.time, time(k));
            let truth = field(k).rate_mm_h;
            for (a, b) in f.rate_mm_h.iter().zip(truth.iter()) {
                assert!(
                    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 2e-3 * b.abs().max(1.0),
                    "scan {k}: {a} vs {b}"
                );
            }
        }
    }
}
