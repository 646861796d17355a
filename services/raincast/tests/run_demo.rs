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

/// With `[secrets] ssm_prefix` set, a failure to read SSM at start stops the
/// start (OPERATIONS "Secrets"): the process exits non-zero naming the prefix,
/// and never serves.
#[test]
fn an_unreachable_ssm_at_start_stops_the_start() {
    let dir = TempDir::new("run-ssm-down");
    // A loopback port nothing listens on: every SSM request is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = common::raincast_cmd()
        .args(["run", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RAINCAST_SECRETS__SSM_PREFIX", "/raincast/down/")
        .env("AWS_ENDPOINT_URL_SSM", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("`raincast run` still running 120 s after SSM refused it");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "exit {status}:\n{err}");
    assert!(
        err.contains("cannot read the SSM parameters under /raincast/down/"),
        "{err}"
    );
    assert!(!err.contains("listening"), "{err}");
}

/// A listen port in use stops `run` before it writes anything: no store,
/// no demo files (they were written first, then the bind failed).
#[test]
fn a_port_in_use_stops_the_start_before_anything_is_written() {
    let dir = TempDir::new("run-port-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::raincast_cmd()
        .args(["run", "--listen", &addr])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !dir.path().join("var").exists(),
        "files written before the bind: {err}"
    );
}

/// A configuration error exits with status 78 (`EX_CONFIG`, which the
/// packaged unit does not restart on) and names the setting; under
/// `--log-json` that last line is JSON like the logs. Other errors exit 1.
#[test]
fn a_configuration_error_exits_78_and_names_the_setting() {
    let dir = TempDir::new("run-bad-config");
    let config = dir.path().join("raincast.toml");
    std::fs::write(&config, "[api]\nmax_connections = 0\n").unwrap();
    let named = "api.max_connections (from config file)";
    let plain = common::raincast_cmd()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(78), "{err}");
    assert!(err.contains(&format!("Error: {named}")), "{err}");

    let json = common::raincast_cmd()
        .args(["--log-json", "run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&json.stderr);
    assert_eq!(json.status.code(), Some(78), "{err}");
    for line in err.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(
        last["fields"]["message"].as_str().unwrap().contains(named),
        "{last}"
    );

    // Not a configuration error: status 1.
    let other = common::raincast_cmd()
        .args(["verify"])
        .arg(dir.path().join("no such folder"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        other.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}
