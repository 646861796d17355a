//! The notifier under a live clock (`raincast run`): a pass's `now` is
//! later than its scan. Expected rain is told in minutes from `now`, and
//! rain whose start has come is not announced as expected.

mod common;

use chrono::Duration;
use common::{jobs_at, outlook, state_store};
use raincast_notifier::claims::Claims;
use raincast_notifier::notify::{NoGif, Notifier, Report, ReportStatus};
use raincast_notifier::publish::outbox::OutboxPublisher;
use raincast_notifier::text::about_minutes;
use raincast_notifier::{EventKind, Place};

/// The reports of scans 0 to 3 of the shower (rain expected from minute
/// 40 after scan 0), each pass `late` after its scan.
async fn passes(name: &str, late: Duration) -> Vec<Report> {
    let dir = raincast_testkit::TempDir::new(name);
    let store = state_store(&dir).await;
    let n = Notifier::new(
        Claims::new(store, "a", Duration::minutes(10)),
        OutboxPublisher::new(dir.path().join("outbox")),
    )
    .with_live_clock();
    let place = Place::new("Office", 50.85, 4.35);
    let mut out = Vec::new();
    for step in 0..=3 {
        let now = outlook(step).scan_time + late;
        out.extend(
            n.run_once(&jobs_at(place.clone(), step), &NoGif, now)
                .await
                .expect("pass"),
        );
    }
    out
}

fn expected(reports: &[Report]) -> Vec<&Report> {
    reports
        .iter()
        .filter(|r| r.kind == EventKind::RainExpected && r.status == ReportStatus::Posted)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_rain_is_told_from_now_and_not_once_due() {
    // Seen 10 min after scan 0: the rain (minute 40) is 30 min away.
    let reports = passes("live-clock-late", Duration::minutes(10)).await;
    let posted = expected(&reports);
    assert_eq!(posted.len(), 1, "{reports:?}");
    let want = format!("in about {} min", about_minutes(30));
    assert!(posted[0].text.contains(&want), "{}", posted[0].text);
    // Seen 45 min after each scan: the start has come; nothing "expected".
    let reports = passes("live-clock-due", Duration::minutes(45)).await;
    assert!(expected(&reports).is_empty(), "{reports:?}");
}

/// An expected rain's claim left open by a crashed holder and retried once
/// its start has come is expired, not posted late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_start_expires_the_expected_rain() {
    let dir = raincast_testkit::TempDir::new("live-clock-retry");
    let store = state_store(&dir).await;
    let place = Place::new("Office", 50.85, 4.35);
    let n = Notifier::new(
        Claims::new(store.clone(), "a", Duration::minutes(10)),
        OutboxPublisher::new(dir.path().join("outbox")),
    )
    .with_live_clock();
    let scan = outlook(0).scan_time;
    let r = n
        .run_once(&jobs_at(place.clone(), 0), &NoGif, scan)
        .await
        .expect("pass");
    assert_eq!(expected(&r).len(), 1, "{r:?}");
    // The claim as a holder that crashed before posting leaves it.
    let claim = common::reopen_first_claim(store.as_ref(), scan).await;
    let late = claim.event.start_time + Duration::minutes(5);
    let r = n
        .run_once(&jobs_at(place, 0), &NoGif, late)
        .await
        .expect("pass");
    let retried: Vec<&Report> = r.iter().filter(|r| r.key == claim.event.key).collect();
    assert_eq!(retried.len(), 1, "{r:?}");
    assert_eq!(retried[0].status, ReportStatus::Expired, "{r:?}");
}
