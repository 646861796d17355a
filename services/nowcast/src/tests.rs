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
    put_field(store, &field(k)).await;
}

/// Stores a field as a scan of [`RADAR`], as ingest does.
async fn put_field(store: &dyn ScanStore, f: &RainField) {
    let enc = sparse::encode(f, &SparseOptions::default()).unwrap();
    let scan = NewScan {
        radar: RADAR.into(),
        time: f.time,
        source_key: format!("{RADAR}/{}.h5", f.time.timestamp()),
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
    // Where the newest scan has no data but the leads do (rain advected out
    // of the radar's view), the leads are told and "now" is unknown, as the
    // frames and tiles show them.
    let mut blind = (*n).clone();
    blind.observed_mm_h[[32, 38]] = f32::NAN;
    let (lon, lat) = lonlat(32.5, 38.5);
    let q = blind.point(lon, lat).expect("the leads are known");
    assert!(q.now_mm_h.is_nan());
    let bits = |s: &[PointStep]| -> Vec<(u32, u32)> {
        s.iter()
            .map(|s| (s.lead_min, s.rate_mm_h.to_bits()))
            .collect()
    };
    assert_eq!(bits(&q.steps), bits(&p.steps));
    assert!(
        q.summary.starts_with("No radar data here now; "),
        "{}",
        q.summary
    );

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

#[tokio::test]
async fn a_missing_scan_widens_the_interval_instead_of_stopping_the_nowcast() {
    let dir = TempDir::new("raincast-nowcast-gap");
    let store = store(&dir).await;
    let svc = NowcastService::new(store.clone(), NowcastSettings::default());
    // Scans every 5 minutes, the one at time(4) missing.
    for k in [0, 1, 2, 3, 5] {
        put(store.as_ref(), k).await;
    }
    let built = |o: UpdateOutcome| match o {
        UpdateOutcome::Built(n) => n,
        other => panic!("expected a build, got {other:?}"),
    };
    let five_min: Vec<u32> = (1..=24).map(|k| 5 * k).collect();
    // At time(5): time(1), time(3), time(5), 10 minutes apart; the leads
    // stay the radar's 5-minute ones.
    let now = time(5) + Duration::minutes(1);
    let n = built(svc.update(RADAR, now).await.unwrap());
    assert_eq!(n.inputs, vec![time(1), time(3), time(5)]);
    assert_eq!((n.step_s, &n.leads_min), (600, &five_min));
    // The cell (2 cells east per 5 min, at column 30 now) is forecast
    // where it will be in 30 minutes, near column 42, not left behind.
    let i30 = n.lead_index(30).unwrap();
    let rate_at = |col: f64| {
        let (lon, lat) = lonlat(32.5, col);
        n.point(lon, lat).unwrap().steps[i30].rate_mm_h
    };
    let (ahead, now_at) = (rate_at(42.5), rate_at(30.5));
    assert!(
        ahead > 2.0 && ahead > 5.0 * now_at,
        "{ahead} ahead, {now_at} where it is now"
    );
    // At time(6): time(0), time(3), time(6), 15 minutes apart.
    put(store.as_ref(), 6).await;
    let now = time(6) + Duration::minutes(1);
    let n = built(svc.update(RADAR, now).await.unwrap());
    assert_eq!(n.inputs, vec![time(0), time(3), time(6)]);
    assert_eq!((n.step_s, &n.leads_min), (900, &five_min));
    // At time(7): three regular scans again.
    put(store.as_ref(), 7).await;
    let now = time(7) + Duration::minutes(1);
    let n = built(svc.update(RADAR, now).await.unwrap());
    assert_eq!(n.inputs, vec![time(5), time(6), time(7)]);
    assert_eq!(n.step_s, 300);
}

#[tokio::test]
async fn after_an_outage_or_a_new_grid_the_nowcast_waits_for_scans_without_failing() {
    let dir = TempDir::new("raincast-nowcast-outage");
    let store = store(&dir).await;
    let svc = NowcastService::new(store.clone(), NowcastSettings::default());
    let update = |now: DateTime<Utc>| {
        let svc = svc.clone();
        async move { svc.update(RADAR, now).await }
    };
    for k in 0..=3 {
        put(store.as_ref(), k).await;
    }
    let first = update(time(3) + Duration::minutes(1)).await.unwrap();
    assert!(matches!(first, UpdateOutcome::Built(_)), "{first:?}");
    // An outage of 40 minutes (time(4)..time(11) missing): the scans after
    // it wait for two more, without an error and without the old ones.
    let expect_wait = |o: UpdateOutcome, have: usize| match o {
        UpdateOutcome::NotEnoughScans { have: h, need: 3 } if h == have => {}
        other => panic!("expected to wait with {have} of 3, got {other:?}"),
    };
    put(store.as_ref(), 12).await;
    expect_wait(update(time(12) + Duration::minutes(1)).await.unwrap(), 1);
    put(store.as_ref(), 13).await;
    expect_wait(update(time(13) + Duration::minutes(1)).await.unwrap(), 2);
    put(store.as_ref(), 14).await;
    match update(time(14) + Duration::minutes(1)).await.unwrap() {
        UpdateOutcome::Built(n) => assert_eq!(n.inputs, vec![time(12), time(13), time(14)]),
        other => panic!("expected a build, got {other:?}"),
    }
    // The radar's grid changes (moved by 2 km): the scans on the old grid
    // no longer count, and the new grid's third scan gives a nowcast on it.
    let moved = |k: usize| RainField {
        grid: Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            ROWS,
            COLS,
            1000.0,
            1000.0,
            -(COLS as f64) * 500.0 + 2000.0,
            ROWS as f64 * 500.0,
        )
        .unwrap(),
        ..field(k)
    };
    put_field(store.as_ref(), &moved(15)).await;
    expect_wait(update(time(15) + Duration::minutes(1)).await.unwrap(), 1);
    put_field(store.as_ref(), &moved(16)).await;
    expect_wait(update(time(16) + Duration::minutes(1)).await.unwrap(), 2);
    put_field(store.as_ref(), &moved(17)).await;
    match update(time(17) + Duration::minutes(1)).await.unwrap() {
        UpdateOutcome::Built(n) => {
            assert_eq!(n.inputs, vec![time(15), time(16), time(17)]);
            assert!(n.grid.same_geometry(&moved(17).grid));
        }
        other => panic!("expected a build, got {other:?}"),
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

// ---------------------------------------------------------------------------
// Live skill.

use raincast_algorithms::verify;
use skill::{LeadSums, Sums, Window};

/// Settings of the live-skill tests: leads 5, 10 and 15 min.
fn skill_settings() -> NowcastSettings {
    NowcastSettings {
        max_lead_min: 15,
        ..NowcastSettings::default()
    }
}

/// Stores scans `ks` one by one and lets every service update after each,
/// the services at the same time (spawned tasks).
/// A stored scan's field, fetched and decoded on the spot (the reference
/// path of the batch computations below, not the service's).
async fn load_field(
    store: &dyn ScanStore,
    series: &str,
    time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<RainField, NowcastServiceError> {
    let scan = store.get_scan(series, time, now).await?.expect("stored");
    decode_stored(series, &scan)
}

async fn replay(store: &dyn ScanStore, services: &[NowcastService], ks: std::ops::Range<usize>) {
    for k in ks {
        put(store, k).await;
        let now = time(k) + Duration::minutes(1);
        let tasks: Vec<_> = services
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move { s.update(RADAR, now).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for s in services {
            s.scoring_settled().await;
        }
    }
}

/// The stacked fields of every case of one lead, separated by NaN rows at
/// least an FSS window high, so that one call of each verify function over
/// the stack is the batch score of all the cases.
#[derive(Default)]
struct Stack {
    forecast: Vec<Array2<f32>>,
    prob: Vec<Array2<f32>>,
    obs: Vec<Array2<f32>>,
    cases: u64,
}

impl Stack {
    fn push(&mut self, f: Array2<f32>, p: Array2<f32>, o: Array2<f32>, gap: usize) {
        let nan = Array2::from_elem((gap, f.ncols()), f32::NAN);
        for (v, a) in [
            (&mut self.forecast, f),
            (&mut self.prob, p),
            (&mut self.obs, o),
        ] {
            v.push(a);
            v.push(nan.clone());
        }
        self.cases += 1;
    }

    fn cat(v: &[Array2<f32>]) -> Array2<f32> {
        let views: Vec<_> = v.iter().map(|a| a.view()).collect();
        ndarray::concatenate(ndarray::Axis(0), &views).unwrap()
    }

    /// Asserts that `live` equals the batch scores of the stack.
    fn check(&self, live: &skill::MethodSkill, what: &str) {
        let (f, p, o) = (
            Self::cat(&self.forecast),
            Self::cat(&self.prob),
            Self::cat(&self.obs),
        );
        let close = |a: Option<f64>, b: Option<f64>, name: &str| match (a, b) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{what} {name}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{what} {name}"),
        };
        assert_eq!(live.cases, self.cases, "{what} cases");
        for (i, t) in skill::CSI_THRESHOLDS_MM_H.iter().enumerate() {
            let c = verify::Contingency::new(&f.view(), &o.view(), *t);
            close(live.csi[i].1, c.csi(), &format!("CSI {t}"));
        }
        let window = skill::fss_window_cells(1000.0);
        close(
            live.fss,
            verify::fss(&f.view(), &o.view(), 1.0, window),
            "FSS",
        );
        // MAE on wet cells: the batch selects the wet cells, then `mae`.
        let wet = |a: &Array2<f32>, b: &Array2<f32>| {
            ndarray::Zip::from(a).and(b).map_collect(|x, y| {
                if *x >= skill::WET_MM_H || *y >= skill::WET_MM_H {
                    *x
                } else {
                    f32::NAN
                }
            })
        };
        close(
            live.mae_wet_mm_h,
            verify::mae(&wet(&f, &o).view(), &o.view()),
            "MAE",
        );
        let mut rel = verify::Reliability::new(10);
        rel.add(&p.view(), &o.view(), 0.1);
        let batch_table = rel.table();
        assert_eq!(
            live.reliability.len(),
            batch_table.len(),
            "{what} reliability"
        );
        for (a, b) in live.reliability.iter().zip(&batch_table) {
            assert_eq!(a.2, b.2, "{what} reliability cells");
            assert!(
                (a.3 - b.3).abs() < 1e-9 && (a.4 - b.4).abs() < 1e-12,
                "{what} {a:?} {b:?}"
            );
        }
        // Brier by hand over the stack.
        let (mut s, mut n) = (0f64, 0u64);
        for (p, o) in p.iter().zip(o.iter()) {
            if p.is_finite() && o.is_finite() {
                s += (*p as f64 - (*o >= 0.1) as u8 as f64).powi(2);
                n += 1;
            }
        }
        close(live.brier, (n > 0).then(|| s / n as f64), "Brier");
        assert!(
            live.csi[1].1.is_some() && live.fss.is_some(),
            "{what}: scores defined"
        );
    }
}

/// The batch cases of one lead recomputed from the store: every stored
/// frame of `lead` issued at `T − lead` for the scans `T` of `ks`, against
/// the observed scan at `T`, with persistence from `T − lead`.
async fn batch(store: &dyn ScanStore, lead: u32, ks: std::ops::Range<usize>) -> (Stack, Stack) {
    let settings = skill_settings();
    let now = time(ks.end) + Duration::minutes(1);
    let (mut rc, mut pe) = (Stack::default(), Stack::default());
    for k in ks {
        let t = time(k);
        let issued = t - Duration::minutes(lead as i64);
        let series = frame_series_id(RADAR, lead);
        if store
            .get_manifest(&series, issued, now)
            .await
            .unwrap()
            .is_none()
        {
            continue;
        }
        let frame = load_field(store, &series, issued, now)
            .await
            .unwrap()
            .rate_mm_h;
        let persist = load_field(store, RADAR, issued, now)
            .await
            .unwrap()
            .rate_mm_h;
        let mut obs = load_field(store, RADAR, t, now).await.unwrap().rate_mm_h;
        verify::mask_like(&mut obs, &frame.view());
        verify::mask_like(&mut obs, &persist.view());
        let radius = settings.config.prob_radius_cells(&grid(), lead);
        // Raincast's probability is the neighbourhood probability of its
        // frame; persistence is a yes/no forecast (0 or 1).
        let p_rc = neighbourhood_probability(&frame.view(), 0.1, radius);
        let p_pe = persist.mapv(|v| {
            if v.is_nan() {
                v
            } else {
                (v >= 0.1) as u8 as f32
            }
        });
        for (field, p, stack) in [(frame, p_rc, &mut rc), (persist, p_pe, &mut pe)] {
            let mut f = field;
            verify::mask_like(&mut f, &obs.view());
            stack.push(f, p, obs.clone(), 12);
        }
    }
    (rc, pe)
}

#[tokio::test]
async fn live_skill_equals_a_batch_computation_and_survives_a_restart() {
    let dir = TempDir::new("raincast-skill-test");
    let path = dir.path().join("s.redb");
    let report = {
        let store = store(&dir).await;
        let svc = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
        replay(store.as_ref(), std::slice::from_ref(&svc), 0..9).await;
        let report = svc.skill(RADAR, Window::Day).await.unwrap().unwrap();
        assert_eq!(
            report.leads.iter().map(|l| l.lead_min).collect::<Vec<_>>(),
            vec![5, 10, 15]
        );
        for lead in &report.leads {
            let (rc, pe) = batch(store.as_ref(), lead.lead_min, 0..9).await;
            rc.check(&lead.raincast, &format!("raincast +{}", lead.lead_min));
            pe.check(
                &lead.persistence,
                &format!("persistence +{}", lead.lead_min),
            );
        }
        // Nowcasts from scan 2 on; scans 3..=8 verify +5, 4..=8 +10, 5..=8 +15.
        let cases: Vec<u64> = report.leads.iter().map(|l| l.raincast.cases).collect();
        assert_eq!(cases, vec![6, 5, 4]);
        // Bucket records stay far below DynamoDB's 400 KB item limit even
        // with 120 one-minute leads: under 2 KB per lead.
        for (key, r) in store.list_records("skill/nc-test/h/").await.unwrap() {
            let b: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            let leads = b["leads"].as_object().unwrap().len();
            assert!(
                r.value.len() < 2048 * leads,
                "{key}: {} bytes",
                r.value.len()
            );
        }
        // The moving cell is forecast better than persistence.
        assert!(report.leads[1].raincast.csi[1].1 > report.leads[1].persistence.csi[1].1);
        report
    };
    // Restart: a new store handle and a new service over the same file.
    let store = Arc::new(
        EmbeddedStore::open(path, Duration::days(3650))
            .await
            .unwrap(),
    );
    let svc = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    assert_eq!(
        svc.skill(RADAR, Window::Day).await.unwrap().unwrap(),
        report
    );
    // And it keeps adding to the same sums.
    replay(store.as_ref(), std::slice::from_ref(&svc), 9..10).await;
    let after = svc.skill(RADAR, Window::Day).await.unwrap().unwrap();
    let cases: Vec<u64> = after.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![7, 6, 5]);
    for lead in &after.leads {
        let (rc, pe) = batch(store.as_ref(), lead.lead_min, 0..10).await;
        rc.check(&lead.raincast, "after restart");
        pe.check(&lead.persistence, "after restart");
    }
}

/// The live scores of a replayed series equal what `raincast verify`'s
/// scorer (`verify_series`, its pooled sums: like-for-like with the live
/// sums) computes on the same cases from the same stored scans. The only
/// difference allowed is the stored frames' 16-bit quantisation (0.0123 %):
/// the live scorer reads the frames back, verify keeps them in memory.
#[tokio::test]
async fn live_scores_equal_raincast_verify_on_the_same_cases() {
    let dir = TempDir::new("raincast-skill-verify");
    let store = store(&dir).await;
    let settings = skill_settings();
    let svc = NowcastService::with_live_skill(store.clone(), store.clone(), settings.clone());
    replay(store.as_ref(), std::slice::from_ref(&svc), 0..12).await;
    let live = svc.skill(RADAR, Window::Day).await.unwrap().unwrap();
    // The same scans, as stored, through verify.
    let now = time(12);
    let mut fields = Vec::new();
    for k in 0..12 {
        fields.push(
            load_field(store.as_ref(), RADAR, time(k), now)
                .await
                .unwrap(),
        );
    }
    let cfg = verify::VerifyConfig {
        leads_min: Some(vec![5, 10, 15]),
        fss_threshold: skill::FSS_THRESHOLD_MM_H,
        fss_window: skill::fss_window_cells(grid().cell_m()),
        prob_threshold: settings.probability_threshold_mm_h,
        wet_mm_h: skill::WET_MM_H,
        nowcast: settings.config,
        ..Default::default()
    };
    let report = verify::verify_series(&fields, &cfg, &mut |_, _| {});
    assert_eq!(live.leads.len(), report.rows.len());
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1.0),
            "{what}: live {a} verify {b}"
        );
    };
    for (l, row) in live.leads.iter().zip(&report.rows) {
        assert_eq!(l.lead_min, row.lead_min);
        for (m, v) in [
            (&l.raincast.sums, &row.pooled[0]),
            (&l.persistence.sums, &row.pooled[1]),
        ] {
            let what = format!("+{}", l.lead_min);
            assert_eq!(m.cases, v.cases, "{what} cases");
            assert_eq!(m.cases, row.cases, "{what} cases");
            for i in 0..3 {
                for (a, b) in [
                    (m.hits[i], v.hits[i]),
                    (m.misses[i], v.misses[i]),
                    (m.false_alarms[i], v.false_alarms[i]),
                ] {
                    assert!(
                        a.abs_diff(b) <= 1 + b / 1000,
                        "{what} contingency {i}: {a} vs {b}"
                    );
                }
            }
            assert_eq!(m.brier_cells, v.brier_cells, "{what} cells");
            // The quantisation moves a forecast cell across the FSS
            // threshold now and then (the check above allows 1 + b/1000
            // such cells per count). A fraction is a window's events over
            // its area A (window²), so one such cell moves the fraction of
            // at most A windows by 1/A, and each FSS sum, whose terms are
            // (Pf − Po)² and Pf² + Po² with fractions in [0, 1], by at most
            // A · (2/A + 1/A²) = 2 + 1/A. With a near-perfect forecast the
            // numerator is close to 0 and one cell is a large relative change.
            let fss_at = skill::CSI_THRESHOLDS_MM_H
                .iter()
                .position(|t| *t == skill::FSS_THRESHOLD_MM_H)
                .expect("the FSS threshold is a CSI threshold");
            let area = (cfg.fss_window * cfg.fss_window) as f64;
            let flips = 1.0 + (v.hits[fss_at] + v.false_alarms[fss_at]) as f64 / 1000.0;
            // Within that bound, else within `close`'s relative one.
            let fss_close = |a: f64, b: f64, what: &str| {
                if (a - b).abs() > flips * (2.0 + 1.0 / area) {
                    close(a, b, what);
                }
            };
            fss_close(m.fss_num, v.fss_num, &format!("{what} FSS num"));
            fss_close(m.fss_den, v.fss_den, &format!("{what} FSS den"));
            assert_eq!(m.wet_cells, v.wet_cells, "{what} wet cells");
            // The quantisation moves each rate by ≤ 0.0123 %: the mean
            // absolute error by far less than 1e-4 mm/h.
            let per_cell = (m.abs_err_mm_h - v.abs_err_mm_h).abs() / v.wet_cells.max(1) as f64;
            assert!(
                per_cell < 1e-4,
                "{what} MAE: live {} verify {}",
                m.abs_err_mm_h,
                v.abs_err_mm_h
            );
            close(m.brier_sum, v.brier_sum, &format!("{what} Brier sum"));
            assert_eq!(m.rel_cells, v.rel_cells, "{what} reliability");
            assert!(m.hits[1] > 0, "{what}: rain was scored");
        }
    }
}

#[tokio::test]
async fn two_instances_score_each_scan_once() {
    let dir = TempDir::new("raincast-skill-two");
    let store = store(&dir).await;
    let a = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    let b = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    replay(store.as_ref(), &[a.clone(), b.clone()], 0..9).await;
    let ra = a.skill(RADAR, Window::Week).await.unwrap().unwrap();
    assert_eq!(ra, b.skill(RADAR, Window::Week).await.unwrap().unwrap());
    let cases: Vec<u64> = ra.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![6, 5, 4], "each scan scored once, not twice");
    for lead in &ra.leads {
        let (rc, pe) = batch(store.as_ref(), lead.lead_min, 0..9).await;
        rc.check(&lead.raincast, "two instances");
        pe.check(&lead.persistence, "two instances");
    }
    // A scan already scored is not scored again by anyone.
    let n = a.latest(RADAR).unwrap();
    assert_eq!(b.score_scan(&n, time(9)).await.unwrap(), None);
    assert_eq!(a.score_scan(&n, time(9)).await.unwrap(), None);
}

/// A live-skill service over the embedded `store`.
fn live(store: &Arc<EmbeddedStore>, settings: NowcastSettings) -> NowcastService {
    NowcastService::with_live_skill(store.clone(), store.clone(), settings)
}

/// The live-skill test settings, caught up from the first scan on and
/// otherwise `catch_up_min` back.
fn since_first(catch_up_min: u32) -> NowcastSettings {
    NowcastSettings {
        catch_up_min,
        catch_up_since: Some(time(0)),
        ..skill_settings()
    }
}

/// Stores the scans `ks` together, then updates `svc` once, a minute after
/// the newest of them (as after one ingest run).
async fn burst(
    store: &dyn ScanStore,
    svc: &NowcastService,
    ks: impl IntoIterator<Item = usize>,
) -> UpdateOutcome {
    let mut newest = 0;
    for k in ks {
        put(store, k).await;
        newest = newest.max(k);
    }
    svc.update(RADAR, time(newest + 1)).await.unwrap()
}

/// The 24-h live skill of a service that saw the scans `ks` one at a time.
async fn one_by_one(ks: std::ops::Range<usize>) -> skill::SkillReport {
    let dir = TempDir::new("raincast-skill-steady");
    let store = store(&dir).await;
    let svc = live(&store, skill_settings());
    replay(store.as_ref(), std::slice::from_ref(&svc), ks).await;
    svc.skill(RADAR, Window::Day).await.unwrap().unwrap()
}

/// The 24-h live skill once every scoring of `svc` has settled.
async fn settled_report(svc: &NowcastService) -> skill::SkillReport {
    svc.scoring_settled().await;
    svc.skill(RADAR, Window::Day).await.unwrap().unwrap()
}

/// Whether the +5-min frame of the nowcast issued at scan `k` is stored.
async fn frame_stored(store: &dyn ScanStore, k: usize) -> bool {
    store
        .get_manifest(&frame_series_id(RADAR, 5), time(k), time(14))
        .await
        .unwrap()
        .is_some()
}

/// A radar that scans faster than the lead step (the demo's, every 10 s,
/// with 5-min leads) is caught up once: later updates nowcast their own
/// scan, and go over the first catch-up's scans again at no new phase of
/// the lead step (each minute's phase left 5 nowcasts more per update).
#[tokio::test]
async fn a_radar_faster_than_the_lead_step_is_caught_up_once() {
    let dir = TempDir::new("raincast-skill-fast");
    let store = store(&dir).await;
    let svc = live(
        &store,
        NowcastSettings {
            lead_step_min: Some(5),
            ..skill_settings()
        },
    );
    let at = |m: usize| time(0) + Duration::minutes(m as i64);
    let put_at = |m: usize| {
        let store = store.clone();
        async move {
            let mut f = field(m / 5);
            f.time = at(m);
            put_field(store.as_ref(), &f).await;
        }
    };
    let built = |upto: usize| {
        let store = store.clone();
        async move {
            let mut n = 0;
            for m in 0..upto {
                n += store
                    .get_manifest(&frame_series_id(RADAR, 5), at(m), at(upto + 60))
                    .await
                    .unwrap()
                    .is_some() as usize;
            }
            n
        }
    };
    // A backfill of 30 scans a minute apart: the newest and one per lead
    // step before it (minutes 29, 24, …, 4) are nowcast.
    for m in 0..30 {
        put_at(m).await;
    }
    svc.update(RADAR, at(30)).await.unwrap();
    svc.scoring_settled().await;
    assert_eq!(built(30).await, 6);
    // Then each scan as it comes: its own nowcast only.
    for m in 30..40 {
        put_at(m).await;
        svc.update(RADAR, at(m) + Duration::seconds(10))
            .await
            .unwrap();
        svc.scoring_settled().await;
    }
    assert_eq!(built(40).await, 6 + 10, "the window was caught up again");
    // Its scans are scored as they come: at 5 min from minute 34 on (the
    // live nowcasts from minute 29), at 10 and 15 min from the backfill's
    // phase (minutes 34 and 39 have nowcasts issued 10 and 15 min before).
    for m in 30..40 {
        assert!(
            skill::claimed(store.as_ref(), RADAR, at(m)).await.unwrap(),
            "minute {m} scored"
        );
    }
}

/// Scans that arrive together (a backfill, a burst after an outage, a
/// replayed day) are each nowcast and scored, oldest first, after the newest
/// is published: the live skill is the one of a service that saw them one at
/// a time. A restarted service does not score them again; without the
/// catch-up (`catch_up_min = 0`) the burst leaves nothing to score.
#[tokio::test]
async fn a_burst_of_scans_is_caught_up_and_scored_as_if_they_came_one_by_one() {
    let one_by_one = one_by_one(0..12).await;
    let dir = TempDir::new("raincast-skill-burst");
    let store = store(&dir).await;
    let svc = live(&store, skill_settings());
    let outcome = burst(store.as_ref(), &svc, 0..9).await;
    // The newest scan's nowcast is published at once, the rest follows.
    assert!(matches!(outcome, UpdateOutcome::Built(_)), "{outcome:?}");
    assert_eq!(svc.latest(RADAR).unwrap().base_time, time(8));
    let report = settled_report(&svc).await;
    let cases: Vec<u64> = report.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![6, 5, 4], "scans 3..=8 scored as they come");
    for lead in &report.leads {
        let (rc, pe) = batch(store.as_ref(), lead.lead_min, 0..9).await;
        rc.check(&lead.raincast, "first burst");
        pe.check(&lead.persistence, "first burst");
    }
    // The first nowcast's scan had nothing to score, and is claimed all the
    // same: looked at once, not at every update.
    assert!(skill::claimed(store.as_ref(), RADAR, time(2))
        .await
        .unwrap());
    // A second burst continues from the published nowcast.
    burst(store.as_ref(), &svc, 9..12).await;
    let report = settled_report(&svc).await;
    assert_eq!(report, one_by_one, "bursts score as one scan at a time");
    // A restarted service catching up from the first scan scores nothing twice.
    let again = live(&store, since_first(120));
    again.update(RADAR, time(12)).await.unwrap();
    assert_eq!(settled_report(&again).await, one_by_one);

    // Two bursts in quick succession: the second's scoring waits for the
    // first's catch-up (else its scans would find frames not stored yet).
    let dir = TempDir::new("raincast-skill-two-bursts");
    let quick = self::store(&dir).await;
    let svc = live(&quick, skill_settings());
    burst(quick.as_ref(), &svc, 0..9).await;
    burst(quick.as_ref(), &svc, 9..12).await;
    assert_eq!(settled_report(&svc).await, one_by_one);

    // Two instances catching up one burst at the same time: each scan
    // scored once (the sums' additions may come in another order).
    let dir = TempDir::new("raincast-skill-burst-two");
    let both = self::store(&dir).await;
    let (a, b) = (live(&both, skill_settings()), live(&both, skill_settings()));
    for k in 0..12 {
        put(both.as_ref(), k).await;
    }
    let (ua, ub) = tokio::join!(a.update(RADAR, time(12)), b.update(RADAR, time(12)));
    ua.unwrap();
    ub.unwrap();
    b.scoring_settled().await;
    let report = settled_report(&a).await;
    let cases =
        |r: &skill::SkillReport| -> Vec<u64> { r.leads.iter().map(|l| l.raincast.cases).collect() };
    assert_eq!(cases(&report), cases(&one_by_one), "each scan scored once");
    for lead in &report.leads {
        let (rc, pe) = batch(both.as_ref(), lead.lead_min, 0..12).await;
        rc.check(&lead.raincast, "two instances, one burst");
        pe.check(&lead.persistence, "two instances, one burst");
    }

    // A replay from `--since` ingested in batches longer than the window
    // (ingest's batch_size): each batch is caught up from where the last
    // one ended, not only `catch_up_min` back.
    let dir = TempDir::new("raincast-skill-batches");
    let batches = self::store(&dir).await;
    let svc = live(&batches, since_first(10));
    burst(batches.as_ref(), &svc, 0..6).await;
    burst(batches.as_ref(), &svc, 6..12).await;
    assert_eq!(settled_report(&svc).await, one_by_one);

    // Once caught up from `since`, a later catch-up does not go back over
    // the replay: a scan arriving that late (more than `catch_up_min`
    // before the newest) is left alone.
    let dir = TempDir::new("raincast-skill-since-once");
    let once = self::store(&dir).await;
    let svc = live(&once, since_first(10));
    burst(once.as_ref(), &svc, (0..12).filter(|k| *k != 4)).await;
    // Scan 4 arrives after that catch-up is over (one still listing would
    // take it in, as it should: in one CI run of five, under load, the
    // background task had not listed yet when the second burst was stored).
    svc.scoring_settled().await;
    burst(once.as_ref(), &svc, [4, 12]).await;
    svc.scoring_settled().await;
    assert!(frame_stored(once.as_ref(), 11).await && frame_stored(once.as_ref(), 12).await);
    assert!(
        !frame_stored(once.as_ref(), 4).await,
        "the replay was gone over again"
    );

    // Scans that arrive late, after newer ones were scored, are nowcast and
    // scored at the next update.
    let dir = TempDir::new("raincast-skill-late");
    let late = self::store(&dir).await;
    let svc = live(&late, skill_settings());
    burst(late.as_ref(), &svc, (0..12).filter(|k| !(5..8).contains(k))).await;
    svc.scoring_settled().await;
    assert!(!frame_stored(late.as_ref(), 6).await);
    burst(late.as_ref(), &svc, (5..8).chain([12])).await;
    svc.scoring_settled().await;
    for k in 5..8 {
        assert!(frame_stored(late.as_ref(), k).await, "scan {k} nowcast");
        assert!(
            skill::claimed(late.as_ref(), RADAR, time(k)).await.unwrap(),
            "scan {k} scored"
        );
    }

    // Without the catch-up, the same burst leaves no case: the newest scan
    // finds no nowcast issued before it.
    let dir = TempDir::new("raincast-skill-no-catch-up");
    let plain = self::store(&dir).await;
    let off = live(
        &plain,
        NowcastSettings {
            catch_up_min: 0,
            ..skill_settings()
        },
    );
    burst(plain.as_ref(), &off, 0..9).await;
    let report = settled_report(&off).await;
    assert!(report.leads.is_empty(), "{report:?}");
}

/// A DynamoDB store on `server` (dynalite), its tables named `prefix…`.
async fn dynamo_store(
    server: &raincast_testkit::Server,
    prefix: &str,
) -> raincast_store::DynamoStore {
    let sdk = raincast_store::aws::sdk_config_for_endpoint(&server.endpoint(), 3).await;
    raincast_store::DynamoStore::connect(
        &sdk,
        &raincast_store::DynamoOptions {
            table_prefix: prefix.into(),
            create_tables: true,
            retention: Duration::days(3650),
        },
    )
    .await
    .unwrap()
}

/// The same on DynamoDB (dynalite): two instances score each scan once, and
/// a restart (a new connection and service) keeps the sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_a_restart_on_dynamodb() {
    let Some(dynalite) = raincast_testkit::Server::dynalite() else {
        return;
    };
    let connect = || async { Arc::new(dynamo_store(&dynalite, "skill-").await) };
    let store = connect().await;
    let a = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    let b = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    replay(store.as_ref(), &[a.clone(), b.clone()], 0..9).await;
    let report = a.skill(RADAR, Window::Week).await.unwrap().unwrap();
    let cases: Vec<u64> = report.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![6, 5, 4], "each scan scored once, not twice");
    for lead in &report.leads {
        let (rc, pe) = batch(store.as_ref(), lead.lead_min, 0..9).await;
        rc.check(&lead.raincast, "dynamodb");
        pe.check(&lead.persistence, "dynamodb");
    }
    drop((a, b, store));
    let store = connect().await;
    let c = NowcastService::with_live_skill(store.clone(), store.clone(), skill_settings());
    assert_eq!(c.skill(RADAR, Window::Week).await.unwrap().unwrap(), report);
    replay(store.as_ref(), std::slice::from_ref(&c), 9..10).await;
    let after = c.skill(RADAR, Window::Week).await.unwrap().unwrap();
    let cases: Vec<u64> = after.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![7, 6, 5]);
}

/// A state store whose skill records wait for a gate (a scoring that
/// cannot finish), and fail while `failing` is set (a full disk, a lost
/// connection).
struct GatedState {
    inner: Arc<EmbeddedStore>,
    gate: tokio::sync::Semaphore,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl StateStore for GatedState {
    async fn get_checkpoint(
        &self,
        radar: &str,
    ) -> Result<Option<raincast_store::Checkpoint>, StoreError> {
        self.inner.get_checkpoint(radar).await
    }
    async fn put_checkpoint(&self, c: &raincast_store::Checkpoint) -> Result<bool, StoreError> {
        self.inner.put_checkpoint(c).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<raincast_store::LeaseOutcome, StoreError> {
        self.inner.acquire_lease(name, owner, ttl, now).await
    }
    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.renew_lease(name, owner, ttl, now).await
    }
    async fn release_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.release_lease(name, owner, now).await
    }
    async fn quarantine(&self, r: &raincast_store::QuarantineRecord) -> Result<(), StoreError> {
        self.inner.quarantine(r).await
    }
    async fn list_quarantined(
        &self,
        radar: &str,
    ) -> Result<Vec<raincast_store::QuarantineRecord>, StoreError> {
        self.inner.list_quarantined(radar).await
    }
    async fn get_quarantined(
        &self,
        radar: &str,
        key: &str,
    ) -> Result<Option<raincast_store::QuarantineRecord>, StoreError> {
        self.inner.get_quarantined(radar, key).await
    }
    async fn begin_attempt(
        &self,
        radar: &str,
        key: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.inner.begin_attempt(radar, key, owner, now).await
    }
    async fn end_attempt(&self, radar: &str, key: &str) -> Result<(), StoreError> {
        self.inner.end_attempt(radar, key).await
    }
    async fn get_record(
        &self,
        key: &str,
    ) -> Result<Option<raincast_store::VersionedRecord>, StoreError> {
        self.inner.get_record(key).await
    }
    async fn put_record(
        &self,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let _open = self.gate.acquire().await.expect("gate");
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Backend {
                backend: "test",
                op: "put record",
                reason: "No space left on device".into(),
            });
        }
        self.inner.put_record(key, value, expected).await
    }
    async fn list_records(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, raincast_store::VersionedRecord)>, StoreError> {
        self.inner.list_records(prefix).await
    }
}

/// Scoring runs after the nowcast is published: an update returns (and the
/// nowcast is served) while the scoring of its scan cannot even claim it.
#[tokio::test]
async fn scoring_never_delays_a_nowcast() {
    let dir = TempDir::new("raincast-skill-offpath");
    let store = store(&dir).await;
    let state = Arc::new(GatedState {
        inner: store.clone(),
        gate: tokio::sync::Semaphore::new(0),
        failing: false.into(),
    });
    let svc = NowcastService::with_live_skill(store.clone(), state.clone(), skill_settings());
    for k in 0..6 {
        put(store.as_ref(), k).await;
        let now = time(k) + Duration::minutes(1);
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(120), svc.update(RADAR, now))
                .await
                .expect("update returns while scoring is blocked")
                .unwrap();
        if k >= 2 {
            assert!(matches!(outcome, UpdateOutcome::Built(_)), "{k}");
            assert_eq!(svc.latest(RADAR).unwrap().base_time, time(k));
        }
    }
    // Nothing was recorded yet; open the gate and the sums arrive.
    assert!(store.list_records("skill/").await.unwrap().is_empty());
    state.gate.add_permits(10_000);
    svc.scoring_settled().await;
    let report = svc.skill(RADAR, Window::Day).await.unwrap().unwrap();
    let cases: Vec<u64> = report.leads.iter().map(|l| l.raincast.cases).collect();
    assert_eq!(cases, vec![3, 2, 1]);
}

/// A catch-up whose store fails part-way (found from outside: a full disk
/// under a replay) is taken up again from the first scan it failed on,
/// once the store works, instead of leaving those scans unscored for good.
#[tokio::test]
async fn a_catch_up_that_failed_is_taken_up_again_from_where_it_failed() {
    let one_by_one = one_by_one(0..12).await;
    let dir = TempDir::new("raincast-skill-catch-up-fails");
    let store = store(&dir).await;
    let state = Arc::new(GatedState {
        inner: store.clone(),
        gate: tokio::sync::Semaphore::new(1_000_000),
        failing: true.into(),
    });
    // A window shorter than the replay: only the failure can bring the
    // second catch-up back to the first burst's scans.
    let svc = NowcastService::with_live_skill(store.clone(), state.clone(), since_first(10));
    burst(store.as_ref(), &svc, 0..9).await;
    svc.scoring_settled().await;
    assert!(!skill::claimed(store.as_ref(), RADAR, time(3))
        .await
        .unwrap());
    state
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    burst(store.as_ref(), &svc, 9..12).await;
    assert_eq!(settled_report(&svc).await, one_by_one);
}

/// Which failures hold the catch-up back ([`NowcastServiceError::is_transient`]).
#[test]
fn failures_a_later_try_can_mend_are_told_apart() {
    let store = |e: StoreError| NowcastServiceError::Store(e).is_transient();
    let (what, reason) = (String::from("x"), String::from("y"));
    assert!(store(StoreError::Backend {
        backend: "test",
        op: "put",
        reason: "No space left on device".into(),
    }));
    assert!(store(StoreError::Unavailable {
        backend: "test",
        op: "get",
        reason: reason.clone(),
    }));
    assert!(store(StoreError::Conflict {
        what: what.clone(),
        reason: reason.clone(),
    }));
    assert!(!store(StoreError::Corrupt {
        what: what.clone(),
        reason: reason.clone(),
    }));
    assert!(!store(StoreError::Invalid {
        field: what.clone(),
        reason: reason.clone(),
    }));
    let skill = |e: skill::SkillError| NowcastServiceError::Skill(e).is_transient();
    assert!(skill(skill::SkillError::Contended {
        key: what.clone(),
        attempts: 16,
    }));
    assert!(!skill(skill::SkillError::Corrupt {
        key: what.clone(),
        reason: reason.clone(),
    }));
    assert!(NowcastServiceError::Task("joined".into()).is_transient());
    assert!(!NowcastServiceError::BadScan {
        radar: RADAR.into(),
        time: time(0),
        reason,
    }
    .is_transient());
}

/// A stored scan that does not decode fails every catch-up the same way:
/// it does not hold the next ones back (they would list the replay again
/// from it at every update, for good), as a store that failed does.
#[tokio::test]
async fn a_scan_that_never_decodes_does_not_hold_the_catch_up_back() {
    let dir = TempDir::new("raincast-skill-catch-up-corrupt");
    let store = store(&dir).await;
    let svc = live(&store, since_first(10));
    let corrupt = NewScan {
        radar: RADAR.into(),
        time: time(2),
        source_key: format!("{RADAR}/corrupt.h5"),
        format: "odim".into(),
        header: b"not a sparse header".to_vec(),
        rain_cells: 0,
        tiles: Vec::new(),
    };
    store.put_scan(&corrupt, time(2)).await.unwrap();
    // Scans 2, 3 and 4 need scan 2 and fail; scan 8 is missing.
    burst(
        store.as_ref(),
        &svc,
        (0..12).filter(|k| ![2, 8].contains(k)),
    )
    .await;
    svc.scoring_settled().await;
    assert!(
        frame_stored(store.as_ref(), 5).await,
        "the catch-up went on"
    );
    assert!(!frame_stored(store.as_ref(), 3).await);
    // Scan 8 arrives more than `catch_up_min` late: left alone, as in the
    // burst test's since-once part.
    burst(store.as_ref(), &svc, [8, 12]).await;
    svc.scoring_settled().await;
    assert!(frame_stored(store.as_ref(), 12).await);
    assert!(
        !frame_stored(store.as_ref(), 8).await,
        "the catch-up went back to the scan that does not decode"
    );
}

#[tokio::test]
async fn claims_are_once_per_scan_and_reuse_the_ring() {
    let dir = TempDir::new("raincast-skill-claim");
    let store = store(&dir).await;
    let t = time(0);
    assert!(skill::claim(store.as_ref(), RADAR, t).await.unwrap());
    assert!(!skill::claim(store.as_ref(), RADAR, t).await.unwrap());
    assert!(skill::claim(store.as_ref(), "other", t).await.unwrap());
    // The same slot one ring later is a new scan; the old one stays claimed.
    let later = t + Duration::hours(skill::RING_HOURS);
    assert!(skill::claim(store.as_ref(), RADAR, later).await.unwrap());
    assert!(!skill::claim(store.as_ref(), RADAR, later).await.unwrap());
    assert!(!skill::claim(store.as_ref(), RADAR, t).await.unwrap());
}

/// Sums of one case with `hits` hits at 1 mm/h.
fn sums_with(cases: u64, hits: u64) -> LeadSums {
    let s = Sums {
        cases,
        hits: [hits, hits, 0],
        ..Sums::default()
    };
    LeadSums {
        raincast: s.clone(),
        persistence: s,
    }
}

#[tokio::test]
async fn windows_sum_hourly_buckets_and_old_slots_are_reset() {
    let dir = TempDir::new("raincast-skill-window");
    let store = store(&dir).await;
    let t = time(0);
    let at = |hours: i64, cases: u64| {
        let store = store.clone();
        async move {
            let leads = BTreeMap::from([(5u32, sums_with(cases, cases))]);
            skill::record(store.as_ref(), RADAR, t + Duration::hours(hours), P, &leads)
                .await
                .unwrap();
        }
    };
    at(0, 1).await;
    at(0, 2).await; // same hour: added
    at(30, 4).await; // a day later
    at(100, 8).await; // four days later
    let cases = |r: &skill::SkillReport| r.leads[0].raincast.cases;
    let day = skill::skill(store.as_ref(), RADAR, Window::Day, None, P)
        .await
        .unwrap();
    assert_eq!(cases(&day), 8);
    assert_eq!(day.until, Some(hour_start(t) + Duration::hours(101)));
    let week = skill::skill(store.as_ref(), RADAR, Window::Week, None, P)
        .await
        .unwrap();
    assert_eq!(cases(&week), 15);
    // Ending earlier: only what lies in that window.
    let then = skill::skill(
        store.as_ref(),
        RADAR,
        Window::Day,
        Some(t + Duration::hours(30)),
        P,
    )
    .await
    .unwrap();
    assert_eq!(cases(&then), 4);
    // The hour 8 days after the first reuses its slot: the old sums go.
    at(skill::RING_HOURS, 16).await;
    let week = skill::skill(store.as_ref(), RADAR, Window::Week, None, P)
        .await
        .unwrap();
    assert_eq!(cases(&week), 16 + 8 + 4);
    let first_day = |store: Arc<EmbeddedStore>| async move {
        skill::skill(store.as_ref(), RADAR, Window::Day, Some(t), P)
            .await
            .unwrap()
    };
    assert!(
        first_day(store.clone()).await.leads.is_empty(),
        "hour 0 was reset"
    );
    // A scan older than its slot's hour is dropped, not mixed in.
    at(0, 32).await;
    assert!(first_day(store.clone()).await.leads.is_empty());
    let week = skill::skill(store.as_ref(), RADAR, Window::Week, None, P)
        .await
        .unwrap();
    assert_eq!(cases(&week), 16 + 8 + 4);
    assert_eq!(store.list_records("skill/").await.unwrap().len(), 3);
}

/// The probability's threshold of these tests, mm/h.
const P: f32 = skill::DEFAULT_PROB_THRESHOLD_MM_H;

/// A change of `probability_threshold_mm_h` starts the live record afresh:
/// a window's Brier sums and reliability table are of one event only, and
/// the calibration fitted on them is of the probability it maps.
#[tokio::test]
async fn a_new_probability_threshold_starts_the_record_afresh() {
    let dir = TempDir::new("raincast-skill-threshold");
    let store = store(&dir).await;
    let t = time(0);
    let at = |minutes: i64, threshold: f32, cases: u64| {
        let store = store.clone();
        async move {
            let leads = BTreeMap::from([(5u32, sums_with(cases, cases))]);
            skill::record(
                store.as_ref(),
                RADAR,
                t + Duration::minutes(minutes),
                threshold,
                &leads,
            )
            .await
            .unwrap();
        }
    };
    let cases = |r: &skill::SkillReport| r.leads.first().map_or(0, |l| l.raincast.cases);
    let day = |threshold: f32| {
        let store = store.clone();
        async move {
            skill::skill(store.as_ref(), RADAR, Window::Day, None, threshold)
                .await
                .unwrap()
        }
    };
    at(0, P, 1).await;
    // A record written before the threshold was kept (no such field) is
    // the default threshold's.
    let (key, rec) = store
        .list_records("skill/")
        .await
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.contains("/h/"))
        .expect("the hour's record");
    let mut old: serde_json::Value = serde_json::from_str(&rec.value).unwrap();
    assert!(old["prob_threshold_mm_h"].is_number(), "{old}");
    old.as_object_mut().unwrap().remove("prob_threshold_mm_h");
    store
        .put_record(&key, &old.to_string(), Some(rec.version))
        .await
        .unwrap();
    at(60, P, 2).await;
    assert_eq!(cases(&day(P).await), 3);
    // The setting changes to 5 mm/h in the second hour.
    at(65, 5.0, 4).await;
    assert_eq!(cases(&day(5.0).await), 4, "only the 5 mm/h cases");
    assert_eq!(cases(&day(P).await), 1, "the hour of 0.1 mm/h cases left");
    at(125, 5.0, 8).await;
    assert_eq!(cases(&day(5.0).await), 12);
    // Records written before the threshold was kept are the default's.
    assert_eq!(
        skill::DEFAULT_PROB_THRESHOLD_MM_H,
        NowcastSettings::default().probability_threshold_mm_h
    );
}

fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(Duration::hours(1)).unwrap()
}

#[test]
fn no_data_is_never_counted_as_dry() {
    let f = |v: [[f32; 3]; 2]| Array2::from_shape_fn((2, 3), |(r, c)| v[r][c]);
    let nan = f32::NAN;
    // Forecast rain where the observation has no data: no false alarm;
    // observed rain where the forecast has no data: no miss.
    let rate = f([[2.0, 2.0, nan], [0.0, 0.0, 0.0]]);
    let persist = f([[2.0, 0.0, 0.0], [nan, 0.0, 0.0]]);
    let obs = f([[2.0, nan, 3.0], [3.0, 0.0, 0.0]]);
    let s = skill::case_sums((&rate.view(), 0), &persist.view(), &obs.view(), 0.1, 1).unwrap();
    // Common cells: (0,0), (1,1), (1,2).
    assert_eq!(s.raincast.hits[1], 1);
    assert_eq!(s.raincast.false_alarms[1], 0);
    assert_eq!(s.raincast.misses[1], 0);
    assert_eq!(s.raincast.brier_cells, 3);
    assert_eq!(s.raincast.rel_cells.iter().sum::<u64>(), 3);
    assert_eq!((s.raincast.abs_err_mm_h, s.raincast.wet_cells), (0.0, 1));
    assert_eq!(s.persistence.hits[1], 1);
    assert_eq!(s.persistence.brier_cells, 3);
    // All no data: nothing counted, every score undefined.
    let none = Array2::from_elem((2, 3), nan);
    let s = skill::case_sums((&rate.view(), 0), &persist.view(), &none.view(), 0.1, 1).unwrap();
    let scores = skill::MethodSkill::of(&s.raincast);
    assert_eq!(scores.csi[1].1, None);
    assert_eq!(
        (scores.fss, scores.mae_wet_mm_h, scores.brier),
        (None, None, None)
    );
    assert_eq!(s.raincast.brier_cells, 0);
}

/// Mean build and score times (ms) over the scans that verify every lead.
struct Cost {
    build_ms: f64,
    score_ms: f64,
    build_cpu_ms: f64,
    score_cpu_ms: f64,
    /// Scans that verified every lead, and how many leads that is.
    scans: usize,
    leads: usize,
}

impl Cost {
    fn print(&self, what: &str) {
        let c = self;
        println!(
            "{what}, {} leads, {} scans: build+store {:.1} ms, score {:.1} ms, ratio {:.3}; \
             process CPU: build+store {:.1} ms, score {:.1} ms, ratio {:.3}",
            c.leads,
            c.scans,
            c.build_ms,
            c.score_ms,
            c.score_ms / c.build_ms,
            c.build_cpu_ms,
            c.score_cpu_ms,
            c.score_cpu_ms / c.build_cpu_ms
        );
    }
}

/// Builds and scores `fields` (one radar's scans, oldest first) as the
/// service does, and returns the mean times over the scans that verify
/// every lead. Build = `update` of a service without live skill
/// (list, decode the inputs, motion, leads, probabilities, encode and store
/// the frames); score = `score_scan` after `keep_observed`, what the spawned
/// scoring task does.
async fn live_skill_cost(fields: impl Iterator<Item = RainField>, max_lead_min: u32) -> Cost {
    let dir = TempDir::new("raincast-skill-cost");
    live_skill_cost_in(store(&dir).await, fields, max_lead_min).await
}

/// [`live_skill_cost`] on the scan and state store `store`.
async fn live_skill_cost_in<S: ScanStore + StateStore + 'static>(
    store: Arc<S>,
    fields: impl Iterator<Item = RainField>,
    max_lead_min: u32,
) -> Cost {
    let settings = NowcastSettings {
        max_lead_min,
        ..NowcastSettings::default()
    };
    let plain = NowcastService::new(store.clone(), settings.clone());
    let scorer = NowcastService::with_live_skill(store.clone(), store.clone(), settings);
    // CPU time of the whole process, ms: user + system time from
    // /proc/self/stat, which keeps the time of threads that have ended
    // (tokio's blocking threads end after 10 s idle; a sum over the live
    // threads of /proc/self/task would lose theirs and could go backwards).
    // Counted in clock ticks of 10 ms (USER_HZ), so only means over many
    // scans are meaningful. On a shared, loaded machine it moves far less
    // than the wall clock.
    let cpu_ms = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        // Fields after the command name's closing parenthesis: state is
        // field 3, utime 14 and stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks * 10.0
    };
    // (leads scored, wall build, wall score, CPU build, CPU score) per scan.
    let mut runs = Vec::new();
    for f in fields {
        put_field(store.as_ref(), &f).await;
        let now = f.time + Duration::minutes(1);
        let (started, cpu0) = (std::time::Instant::now(), cpu_ms());
        let Some(n) = plain.update(RADAR, now).await.unwrap().nowcast().cloned() else {
            continue;
        };
        let (built, built_cpu) = (started.elapsed().as_secs_f64() * 1000.0, cpu_ms() - cpu0);
        scorer.keep_observed(&n);
        let (started, cpu0) = (std::time::Instant::now(), cpu_ms());
        let leads = scorer.score_scan(&n, now).await.unwrap().unwrap_or(0);
        let (score, score_c) = (started.elapsed().as_secs_f64() * 1000.0, cpu_ms() - cpu0);
        runs.push((leads, built, score, built_cpu, score_c));
    }
    // Only the scans that verify every lead count.
    let all = runs.iter().map(|r| r.0).max().unwrap_or(0);
    let full: Vec<_> = runs.iter().filter(|r| r.0 == all && all > 0).collect();
    let mean = |pick: fn(&(usize, f64, f64, f64, f64)) -> f64| {
        full.iter().map(|r| pick(r)).sum::<f64>() / full.len().max(1) as f64
    };
    Cost {
        build_ms: mean(|r| r.1),
        score_ms: mean(|r| r.2),
        build_cpu_ms: mean(|r| r.3),
        score_cpu_ms: mean(|r| r.4),
        scans: full.len(),
        leads: all,
    }
}

/// The cost tests' synthetic radar: 22 scans 5 min apart on a 512 × 512
/// grid of 1 km, rain cells drifting east-north-east, no data outside a
/// 250 km disk.
fn cost_fields() -> impl Iterator<Item = RainField> {
    const N: usize = 512;
    let g = Grid::new(
        "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
        N,
        N,
        1000.0,
        1000.0,
        -(N as f64) * 500.0,
        N as f64 * 500.0,
    )
    .unwrap();
    (0..22).map(move |k| RainField {
        grid: g.clone(),
        time: time(k),
        rate_mm_h: raincast_algorithms::synth::skill_cost_field(k),
    })
}

/// The cost of live skill against the cost of the nowcast, on a 512 × 512
/// grid of 1 km with leads every 5 min to 60 min (12 leads). Run with
/// `cargo test -p raincast-nowcast --lib live_skill_cost -- --ignored --nocapture`;
/// the figures are in docs/PERFORMANCE.md ("Live skill cost").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run by hand"]
async fn live_skill_cost_on_512x512() {
    let cost = live_skill_cost(cost_fields(), 60).await;
    cost.print("512x512");
    assert!(
        cost.scans >= 3 && cost.leads == 12,
        "{} fully scored scans",
        cost.scans
    );
}

/// The same measure on DynamoDB (dynalite on this machine), where every
/// store request is a round trip: the synthetic 512 × 512 field. Run with
/// `CI=true cargo test --release -p raincast-nowcast --lib live_skill_cost_on_dynamodb -- --ignored --nocapture`
/// after `. .ci/services.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run by hand"]
async fn live_skill_cost_on_dynamodb() {
    let Some(dynalite) = raincast_testkit::Server::dynalite() else {
        return;
    };
    let store = dynamo_store(&dynalite, "cost-").await;
    let cost = live_skill_cost_in(Arc::new(store), cost_fields(), 60).await;
    cost.print("512x512 on dynalite");
    assert!(
        cost.scans >= 3 && cost.leads == 12,
        "{} fully scored scans",
        cost.scans
    );
}

/// The same measure on the real radar days of `../shared/data` (each day's
/// scans decoded and prepped as `raincast verify` does, leads every scan
/// interval to 60 min). Run with
/// `cargo test --release -p raincast-nowcast --lib live_skill_cost_on_shared_days -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run by hand"]
async fn live_skill_cost_on_shared_days() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    for day in ["bom/02", "mch/20160711", "odim/rmi/20210704"] {
        let dir = data.join(day);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let fields = files.into_iter().map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().and_then(|n| n.to_str());
            let scan = raincast_algorithms::decode::decode(&bytes, name, None)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            raincast_algorithms::prep::prep(&scan, &Default::default())
        });
        let cost = live_skill_cost(fields, 60).await;
        cost.print(day);
        assert!(cost.scans >= 3, "{day}: {} fully scored scans", cost.scans);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_at_once_keeps_the_order_and_stops_at_an_error() {
    // The later items finish first: the results still come in item order.
    let out = all_at_once(0..20u64, |i| async move {
        tokio::time::sleep(std::time::Duration::from_millis((20 - i) * 3)).await;
        Ok(i * 10)
    })
    .await
    .unwrap();
    assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
    let failed = all_at_once(0..5u64, |i| async move {
        if i == 3 {
            Err(NowcastServiceError::Task("item 3".into()))
        } else {
            Ok(i)
        }
    })
    .await;
    assert!(
        matches!(&failed, Err(NowcastServiceError::Task(m)) if m == "item 3"),
        "{failed:?}"
    );
}

/// `persistence_cache_mb` bounds the observed fields a radar's scorer
/// holds: with 0 none is held, every persistence forecast is read again
/// from the store, and the live scores are the same as with them held.
#[tokio::test]
async fn persistence_beyond_the_memory_cap_is_read_from_the_store_with_the_same_scores() {
    let mut reports = Vec::new();
    for mb in [512, 0] {
        let dir = TempDir::new("raincast-skill-cap");
        let store = store(&dir).await;
        let settings = NowcastSettings {
            persistence_cache_mb: mb,
            ..skill_settings()
        };
        let svc = NowcastService::with_live_skill(store.clone(), store.clone(), settings);
        replay(store.as_ref(), std::slice::from_ref(&svc), 0..8).await;
        let held = svc.held_observed_bytes(RADAR);
        if mb == 0 {
            assert_eq!(held, 0, "nothing held with persistence_cache_mb = 0");
        } else {
            // One field per lead step over the 15-min longest lead.
            assert!(held >= 3 * (ROWS * COLS * 4) as u64, "held {held} bytes");
        }
        let report = svc.skill(RADAR, Window::Day).await.unwrap().unwrap();
        assert_eq!(
            report
                .leads
                .iter()
                .map(|l| l.persistence.cases)
                .collect::<Vec<_>>(),
            vec![5, 4, 3]
        );
        reports.push(report);
    }
    assert_eq!(reports[0], reports[1]);
}

#[test]
fn the_newest_observed_fields_that_fit_are_kept() {
    let field = Arc::new(Array2::<f32>::zeros((10, 10))); // 400 bytes
    let ring = || -> ObservedRing { (0..5).map(|k| (time(k), field.clone())).collect() };
    for (budget, want) in [
        (u64::MAX, 0..5),
        (2000, 0..5),
        (1999, 1..5),
        (1000, 3..5),
        (400, 4..5),
        (399, 0..0),
        (0, 0..0),
    ] {
        let mut r = ring();
        keep_newest_within(&mut r, budget);
        assert_eq!(
            r.keys().copied().collect::<Vec<_>>(),
            want.map(time).collect::<Vec<_>>(),
            "budget {budget}"
        );
    }
}
