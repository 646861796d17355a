//! `raincast ingest --once` on a folder source and the embedded store, as an
//! operator first tries it: files just copied into the folder are left for
//! the next run (they may still be being written), and the run says why
//! instead of only counting them.

#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use raincast_ingest::demo::{DemoOptions, DemoRadar};
use raincast_testkit::TempDir;
use serde_json::Value;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_raincast");

/// One `ingest --once` pass with this `settle_seconds`.
fn ingest_once(bucket: &TempDir, store: &TempDir, settle_s: u32) -> (Value, String) {
    let out = Command::new(BIN)
        .args(["ingest", "--once", "--radar", "demo", "--source"])
        .arg(bucket.path())
        .arg("--store")
        .arg(store.path())
        .env("RAINCAST_SETTLE_SECONDS", settle_s.to_string())
        .env("RAINCAST_LOG", "info")
        .env_remove("RAINCAST_FAILPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, log) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}\n{log}");
    (serde_json::from_str(stdout.trim()).unwrap(), log)
}

/// A folder bucket holding the last 10 minutes of a small demo radar's
/// scans (written now), an empty store, and the number of scans written.
fn demo_bucket(name: &str) -> (TempDir, TempDir, usize) {
    let (bucket, store) = (
        TempDir::new(&format!("{name}-src")),
        TempDir::new(&format!("{name}-store")),
    );
    let radar = DemoRadar::new(DemoOptions {
        side: 32,
        step_s: 300,
        backfill: Duration::minutes(10),
        ..DemoOptions::new(bucket.path())
    })
    .unwrap();
    let written = radar.backfill(Utc::now()).unwrap();
    (bucket, store, written)
}

#[test]
fn files_still_settling_are_left_for_the_next_run_with_a_reason() {
    let (bucket, store, written) = demo_bucket("ingest-cli");
    assert!(written >= 2, "{written}");
    // Written a moment ago: younger than settle_seconds (an hour here, so
    // that a slow start of the process cannot let them settle first).
    let (summary, log) = ingest_once(&bucket, &store, 3600);
    assert_eq!(summary["ingested"], 0, "{summary}");
    assert_eq!(
        summary["deferred"].as_u64(),
        Some(written as u64),
        "{summary}"
    );
    let hint = "files left for a later run: modified less than settle_seconds ago";
    assert!(log.contains(hint), "{log}");
    // Once they have settled (no settling here), the next run takes them
    // and says nothing of it.
    let (summary, log) = ingest_once(&bucket, &store, 0);
    assert_eq!(
        summary["ingested"].as_u64(),
        Some(written as u64),
        "{summary}"
    );
    assert_eq!(summary["deferred"], 0, "{summary}");
    assert!(!log.contains(hint), "{log}");
}

/// A file whose name is not UTF-8 cannot be a key: it is left out with a
/// warning naming it (OPERATIONS "Ingest"), and the scans beside it are
/// ingested.
#[test]
fn a_file_name_that_is_not_utf8_is_named_and_the_rest_ingested() {
    use std::os::unix::ffi::OsStrExt;
    let (bucket, store, written) = demo_bucket("ingest-cli-utf8");
    // Beside the demo's scans.
    let dir = first_day_folder(bucket.path());
    let bad = dir.join(std::ffi::OsStr::from_bytes(b"demo_\xff\xfe.h5"));
    std::fs::write(&bad, b"not a scan").unwrap();
    let (summary, log) = ingest_once(&bucket, &store, 0);
    assert_eq!(
        summary["ingested"].as_u64(),
        Some(written as u64),
        "{summary}"
    );
    assert!(
        log.contains("a file name that is not UTF-8 cannot be a key; not listed")
            && log.contains("demo_\u{fffd}\u{fffd}.h5"),
        "{log}"
    );
}

/// The folder of the first file found under `bucket` (a day folder of the
/// demo's scans).
fn first_day_folder(bucket: &std::path::Path) -> std::path::PathBuf {
    let mut dir = bucket.to_path_buf();
    while let Some(sub) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
    {
        dir = sub;
    }
    dir
}

/// The summary's totals (README) count a file quarantined by an earlier run
/// and unchanged since as `still_quarantined`, as each radar's does.
#[test]
fn a_second_run_counts_the_files_quarantined_before() {
    let (bucket, store, _) = demo_bucket("ingest-cli-still");
    let dir = first_day_folder(bucket.path());
    std::fs::write(dir.join("junk.h5"), b"not a scan").unwrap();
    let (first, _) = ingest_once(&bucket, &store, 0);
    assert_eq!(first["quarantined"], 1, "{first}");
    let (second, _) = ingest_once(&bucket, &store, 0);
    assert_eq!(
        (
            second["quarantined"].as_u64(),
            second["still_quarantined"].as_u64()
        ),
        (Some(0), Some(1)),
        "{second}"
    );
}

/// `raincast ingest --once ARGS` with `RUST_BACKTRACE` set: its exit code
/// and stderr.
fn failing_ingest(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["ingest", "--once"])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RAINCAST_FAILPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// An operator's error (here a config value out of range) ends the process
/// with status 78 (a configuration error) and a message that names the setting, its causes on lines
/// of their own, and no stack backtrace even with `RUST_BACKTRACE` set.
#[test]
fn an_error_names_its_cause_without_a_backtrace() {
    let dir = TempDir::new("cli-error");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[nowcast]\nmax_lead_min = 100000\n").unwrap();
    let (code, err) = failing_ingest(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("Error: ") && err.contains("nowcast.max_lead_min"),
        "{err}"
    );
    assert!(
        !err.contains("backtrace") && !err.contains("main.rs"),
        "{err}"
    );
    // A store folder that cannot be made.
    let (code, err) = failing_ingest(&[
        "--store".as_ref(),
        "/proc/raincast/store".as_ref(),
        "--source".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/proc/raincast"), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("main.rs"),
        "{err}"
    );
}
