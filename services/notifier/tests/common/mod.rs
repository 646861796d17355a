//! Shared by the notifier's integration tests: a synthetic passing shower
//! (its outlooks every 5 minutes), and the state stores the instances of a
//! test share (embedded redb, or DynamoDB on dynalite).

#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use raincast_notifier::notify::{GifSource, Job, Notifier, Report, ReportStatus};
use raincast_notifier::outlook::{AreaRain, LeadRain, Outlook};
use raincast_notifier::publish::Publisher;
use raincast_notifier::Place;
use raincast_store::{DynamoOptions, DynamoStore, EmbeddedStore, StateStore};
use raincast_testkit::{Server, TempDir};
use std::sync::Arc;

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

/// The place's area rate at minute `m` of a synthetic passing shower:
/// expected from minute 0 on, starts at 40, heavy at 70, clears after 120.
pub fn shower(m: i64) -> f32 {
    match m {
        ..40 => 0.0,
        40..70 => 1.5,
        70..90 => 14.0,
        90..120 => 3.0,
        _ => 0.0,
    }
}

/// The outlook of scan number `step` (every 5 minutes from [`t0`]).
pub fn outlook(step: i64) -> Outlook {
    let m = 5 * step;
    let area = |r: f32| AreaRain {
        rate_mm_h: r,
        max_mm_h: r,
        wet_fraction: if r > 0.0 { 0.4 } else { 0.0 },
        valid_fraction: 1.0,
    };
    Outlook {
        radar: "synthetic".into(),
        radar_name: "Raincast synthetic radar".into(),
        scan_time: t0() + Duration::minutes(m),
        now: Some(area(shower(m))),
        leads: (1..=12)
            .map(|k| LeadRain {
                lead_min: k * 10,
                rate_mm_h: Some(shower(m + i64::from(k) * 10)),
                probability: Some(0.9),
            })
            .collect(),
    }
}

/// The first event of the shower at `place` (rain expected).
pub fn first_event(place: &Place) -> raincast_notifier::Event {
    let st = raincast_notifier::PlaceState::default();
    raincast_notifier::evaluate(place, &st, &outlook(0)).events[0].clone()
}

/// The job of `place` at scan number `step`.
pub fn jobs_at(place: Place, step: i64) -> Vec<Job> {
    vec![Job {
        place,
        outlook: outlook(step),
        post: true,
    }]
}

/// The shared state store of a test's notifier instances.
pub async fn state_store(dir: &TempDir) -> Arc<dyn StateStore> {
    Arc::new(
        EmbeddedStore::open(dir.path().join("raincast.redb"), Duration::days(7))
            .await
            .expect("store"),
    )
}

/// A DynamoDB state store on its own dynalite, kept running while held.
pub struct TestStores {
    _server: Server,
    state: Arc<dyn StateStore>,
}

impl TestStores {
    /// Starts dynalite (a test fails under CI=true when it is missing).
    pub async fn dynalite() -> Self {
        let server = Server::dynalite().expect("dynalite on PATH (. .ci/services.sh)");
        let sdk = raincast_store::aws::sdk_config_for_endpoint(&server.endpoint(), 3).await;
        let store = DynamoStore::connect(
            &sdk,
            &DynamoOptions {
                table_prefix: "notifier-".into(),
                create_tables: true,
                retention: Duration::days(7),
            },
        )
        .await
        .expect("dynamodb store");
        Self {
            _server: server,
            state: Arc::new(store),
        }
    }

    pub fn state(&self) -> Arc<dyn StateStore> {
        self.state.clone()
    }
}

/// Runs instances `a` and `b` side by side over the 40 scans of the
/// shower (`jobs(step)`), and returns the reports of the events posted;
/// every other report must say another instance had it.
pub async fn two_instances<P: Publisher>(
    a: &Notifier<P>,
    b: &Notifier<P>,
    jobs: impl Fn(i64) -> Vec<Job>,
    gifs: &impl GifSource,
) -> Vec<Report> {
    let mut posted = Vec::new();
    for step in 0..40 {
        let now = t0() + Duration::minutes(5 * step);
        let (ja, jb) = (jobs(step), jobs(step));
        let (ra, rb) = tokio::join!(a.run_once(&ja, gifs, now), b.run_once(&jb, gifs, now));
        for r in ra.expect("a").into_iter().chain(rb.expect("b")) {
            match r.status {
                ReportStatus::Posted => posted.push(r),
                ReportStatus::Busy | ReportStatus::Duplicate => {}
                other => panic!("{other:?}: {r:?}"),
            }
        }
    }
    posted
}

/// Reopens the first stored claim as a holder that crashed before posting
/// leaves it (pending, another owner, its lease over at `lease_until`) and
/// returns it.
#[allow(dead_code)]
pub async fn reopen_first_claim(
    store: &dyn StateStore,
    lease_until: DateTime<Utc>,
) -> raincast_notifier::claims::ClaimRecord {
    let (key, rec) = store
        .list_records("notifier/event/")
        .await
        .expect("claims")
        .into_iter()
        .next()
        .expect("a claim");
    let mut claim: raincast_notifier::claims::ClaimRecord =
        serde_json::from_str(&rec.value).expect("claim");
    claim.status = raincast_notifier::claims::ClaimStatus::Pending;
    claim.owner = Some("crashed".into());
    claim.lease_until = Some(lease_until);
    store
        .put_record(
            &key,
            &serde_json::to_string(&claim).expect("json"),
            Some(rec.version),
        )
        .await
        .expect("reopen");
    claim
}
