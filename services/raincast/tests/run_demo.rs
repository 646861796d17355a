//! `raincast run` with no configuration at all: the embedded default with the
//! two overlapping synthetic demo radars. It must show synthetic rain being ingested, one
//! progress line per scan, and stop cleanly on SIGTERM; every file the demo
//! radars wrote up to the newest stored scan is stored (none left outside
//! ingest's backfill window).

#![allow(clippy::unwrap_used)]

mod common;

use raincast_testkit::TempDir;
use std::time::{Duration, Instant};

#[test]
fn run_without_config_ingests_the_demo_radar() {
    let dir = TempDir::new("run-demo");
    let mut run = common::Running::start(
        common::raincast_cmd()
            .args(["run", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
    );
    let mut log = Vec::new();
    let start = Instant::now();
    // Three progress lines of the demo radars, at least one of each.
    let ingested = |log: &[String], key: &str| {
        log.iter()
            .filter(|l| l.contains("ingested scan [") && l.contains(key))
            .count()
    };
    while ingested(&log, "\"demo") < 3
        || ingested(&log, "\"demo/") == 0
        || ingested(&log, "\"demo2/") == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no demo scans ingested:\n{}",
            log.join("\n")
        );
        if let Ok(l) = run.lines.recv_timeout(Duration::from_millis(200)) {
            log.push(l);
        }
    }
    let status = run.stop();
    // Every line up to the end of its stderr (the exit status can come
    // before the reader has the last lines).
    log.extend(run.lines.iter());
    assert!(status.success(), "{status}\n{}", log.join("\n"));
    let text = log.join("\n");
    assert!(
        text.contains("starting the two overlapping synthetic demo radars"),
        "{text}"
    );
    assert!(text.contains("ingest jobs stopped"), "{text}");
    // The HTTP service on its printed address, and the notifier for the demo places.
    assert!(text.contains("Raincast map: http://127.0.0.1:"), "{text}");
    assert!(text.contains("notifier runs after every nowcast"), "{text}");
    // Real ODIM_H5 files in the default bucket folder, and the embedded store file.
    for radar in ["demo", "demo2"] {
        assert!(
            dir.path().join("var/bucket").join(radar).is_dir(),
            "{radar}"
        );
    }
    assert!(dir.path().join("var/store/raincast.redb").is_file());
    // Nothing the demo wrote is skipped: every file up to the newest stored
    // scan is stored, the oldest of the backfill included.
    for radar in ["demo", "demo2"] {
        let out = common::raincast_cmd()
            .args(["scans", "list", "--radar", radar])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stored: std::collections::BTreeSet<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["source_key"].as_str().unwrap().to_string()
            })
            .collect();
        let newest = stored.last().cloned().unwrap_or_default();
        let bucket = dir.path().join("var/bucket");
        let mut files: Vec<String> = common::walk(&bucket.join(radar))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "h5"))
            .map(|p| {
                p.strip_prefix(&bucket)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let missing: Vec<&String> = files
            .iter()
            .filter(|f| **f <= newest && !stored.contains(*f))
            .collect();
        assert!(
            !stored.is_empty() && missing.is_empty(),
            "{radar}: {} files up to {newest}, {} stored, not stored: {:?}",
            files.iter().filter(|f| **f <= newest).count(),
            stored.len(),
            &missing[..missing.len().min(5)]
        );
    }
}
