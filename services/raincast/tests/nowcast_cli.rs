//! `raincast nowcast` builds, writes and drops one lead at a time (the
//! iterator `NowcastInput::leads`, without holding the inputs); every file it
//! writes must be the batch nowcast's lead, byte for byte.

#![allow(clippy::unwrap_used)]

use raincast_algorithms::nowcast::{nowcast, NowcastConfig, Smoothing};
use raincast_algorithms::prep::{self, PrepOptions, RainField};
use raincast_algorithms::{decode, npy};
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_raincast");

/// BOM radar 02's scans in ../shared/data, sorted by name (= time).
fn bom_files(data: &std::path::Path) -> Vec<PathBuf> {
    let folder = data.join("bom/02");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Decoded and prepared as `raincast nowcast` reads them.
fn prepared(files: &[&PathBuf]) -> Vec<RainField> {
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let name = p.file_name().and_then(|n| n.to_str());
            prep::prep(
                &decode::decode(&bytes, name, None).unwrap(),
                &PrepOptions::default(),
            )
        })
        .collect()
}

#[test]
fn written_leads_equal_the_batch_nowcast() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    let mut files = bom_files(&data);
    files.truncate(3);
    let fields = prepared(&files.iter().collect::<Vec<_>>());
    // Out of order, as a user may ask; BOM scans are 6 min apart, so 9 and
    // 45 min are fractional steps.
    let leads = [30u32, 6, 60, 9, 45];
    let out = std::env::temp_dir().join(format!("raincast-nowcast-cli-{}", std::process::id()));
    // Each smoothing, on one thread and on three (leads built in parallel);
    // the runs on three threads get the files newest first (the command
    // sorts them by scan time). Once built three times in the process
    // (`--repeat`): the same files, the first run's times apart.
    let newest_first: Vec<PathBuf> = files.iter().rev().cloned().collect();
    for (arg, smoothing, threads, repeat) in [
        ("sprog", Smoothing::Sprog, "1", "1"),
        ("sprog", Smoothing::Sprog, "3", "1"),
        ("none", Smoothing::None, "1", "1"),
        ("none", Smoothing::None, "3", "1"),
        ("sprog", Smoothing::Sprog, "1", "3"),
    ] {
        let _ = std::fs::remove_dir_all(&out);
        let status = Command::new(BIN)
            .arg("nowcast")
            .args(if threads == "3" {
                &newest_first
            } else {
                &files
            })
            .args([
                "--leads",
                "30,6,60,9,45",
                "--smoothing",
                arg,
                "--threads",
                threads,
                "--repeat",
                repeat,
                "--json",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(json["leads"], serde_json::json!(leads));
        assert_eq!(json["threads"].to_string(), threads, "{json}");
        if repeat == "1" {
            assert!(json.get("runs").is_none() && json.get("first_run").is_none());
        } else {
            assert_eq!(json["runs"].to_string(), repeat, "{json}");
            for k in ["motion_ms", "extrapolate_ms", "extrapolate_wall_ms"] {
                assert!(json["first_run"][k].as_f64().unwrap() > 0.0, "{json}");
                assert!(json[k].as_f64().unwrap() > 0.0, "{json}");
            }
        }
        let cfg = NowcastConfig {
            smoothing,
            ..Default::default()
        };
        let batch = nowcast(&fields, &leads, &cfg).unwrap();
        for (lead, field) in leads.iter().zip(&batch.rate_mm_h) {
            let path = out.join(format!("lead_{lead:03}.npy"));
            let written = std::fs::read(&path).unwrap();
            assert!(
                written == npy::encode_f32(field),
                "{arg}: {} differs from the batch nowcast",
                path.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Over a missing scan the command picks the scans the service would (the
/// newest and the ones before it, equally spaced) and says which.
#[test]
fn a_missing_scan_is_bridged_as_the_service_does() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    let files = bom_files(&data);
    // Scans 0, 1, 2 and 4 (6 minutes apart, scan 3 missing): 0, 2, 4 are
    // 12 minutes apart.
    let given = [&files[0], &files[1], &files[2], &files[4]];
    let fields = prepared(&[&files[0], &files[2], &files[4]]);
    let out = std::env::temp_dir().join(format!("raincast-nowcast-gap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(BIN)
        .arg("nowcast")
        .args(given)
        .args(["--leads", "6,30", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let times: Vec<String> = fields
        .iter()
        .map(|f| f.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    assert_eq!(json["inputs"], serde_json::json!(times), "{json}");
    let batch = nowcast(&fields, &[6, 30], &NowcastConfig::default()).unwrap();
    for (lead, field) in [6u32, 30].iter().zip(&batch.rate_mm_h) {
        let written = std::fs::read(out.join(format!("lead_{lead:03}.npy"))).unwrap();
        assert!(written == npy::encode_f32(field), "lead {lead} differs");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn verify_on_too_few_scans_says_what_it_had_and_what_it_needs() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    let dir = raincast_testkit::TempDir::new("raincast-verify-few");
    for f in bom_files(&data).iter().take(3) {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let out = Command::new(BIN)
        .arg("verify")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("3 scans from 2018-06-16T") && err.contains("at least 4 scans in a row"),
        "{err}"
    );
}

/// A scan given twice (a copy under another name) is read once: the copy is
/// named and ignored, and the report is that of the scans alone (each case
/// was counted twice).
#[test]
fn verify_reads_one_scan_per_time_and_names_a_copy() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    let alone = raincast_testkit::TempDir::new("raincast-verify-alone");
    let twice = raincast_testkit::TempDir::new("raincast-verify-twice");
    let files = bom_files(&data);
    for f in files.iter().take(6) {
        std::fs::copy(f, alone.path().join(f.file_name().unwrap())).unwrap();
        std::fs::copy(f, twice.path().join(f.file_name().unwrap())).unwrap();
    }
    let copy = twice.path().join("copy_of_the_fourth.nc");
    std::fs::copy(&files[3], &copy).unwrap();
    let verify = |dir: &std::path::Path| {
        let out = Command::new(BIN)
            .args(["verify", "--leads", "6,12"])
            .arg(dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).to_string(), err)
    };
    let (report, _) = verify(alone.path());
    let (with_copy, err) = verify(twice.path());
    assert!(
        err.contains("a scan of the same time") && err.contains("copy_of_the_fourth.nc"),
        "{err}"
    );
    assert_eq!(with_copy, report);
}

/// `--threads` is bounded as `[nowcast] threads` is: 100000 asked rayon for
/// that many threads and hung the command.
#[test]
fn a_thread_count_out_of_range_is_refused_with_its_flag() {
    let out = Command::new(BIN)
        .args([
            "nowcast",
            "a.h5",
            "b.h5",
            "c.h5",
            "--out",
            "x",
            "--threads",
            "100000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--threads") && err.contains("100000"), "{err}");
}

/// `--frames` outside 3..=12 is refused naming the flag, in `nowcast` and
/// `verify` alike (1 and 2 ran silently as 3), as `[nowcast] frames` is.
#[test]
fn a_frame_count_out_of_range_is_refused_with_its_flag() {
    for (cmd, frames) in [
        (vec!["nowcast", "a.h5", "b.h5", "c.h5", "--out", "x"], "2"),
        (vec!["nowcast", "a.h5", "b.h5", "c.h5", "--out", "x"], "13"),
        (vec!["verify", "."], "1"),
    ] {
        let out = Command::new(BIN)
            .args(&cmd)
            .args(["--frames", frames])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?} {frames}: {err}");
        assert!(err.contains("--frames") && err.contains(frames), "{err}");
    }
}

/// A folder given to `nowcast` (which takes files) and a file that does not
/// exist are named as such (they read "needs at least 3 scans, got 1" and
/// "local folder: … not found").
#[test]
fn nowcast_names_a_folder_or_a_missing_file() {
    let dir = raincast_testkit::TempDir::new("raincast-nowcast-paths");
    let out_dir = dir.path().join("out");
    let run = |files: &[std::path::PathBuf]| {
        let out = Command::new(BIN)
            .arg("nowcast")
            .args(files)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&[dir.path().to_path_buf()]);
    assert!(err.contains("a folder; nowcast takes scan files"), "{err}");
    let missing: Vec<_> = ["a.h5", "b.h5", "c.h5"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    let err = run(&missing);
    assert!(err.contains("a.h5: no such file"), "{err}");
}

/// A lead of 0 (the analysis scored against itself), beyond 6 hours or
/// negative is refused before any file is read, naming `--leads` and the
/// value; `nowcast` creates no output folder for it.
#[test]
fn a_lead_out_of_range_is_refused_with_its_flag() {
    let dir = raincast_testkit::TempDir::new("raincast-leads-range");
    let out_dir = dir.path().join("out");
    for leads in ["0", "10,0", "100000", "-10"] {
        for cmd in [
            vec![
                "nowcast",
                "a.h5",
                "b.h5",
                "c.h5",
                "--out",
                out_dir.to_str().unwrap(),
            ],
            vec!["verify", "."],
        ] {
            let out = Command::new(BIN)
                .args(&cmd)
                .arg(format!("--leads={leads}"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {leads}: {err}");
            let bad = leads.rsplit(',').next().unwrap();
            assert!(
                err.contains("--leads") && err.contains(&format!("'{bad}'")),
                "{err}"
            );
        }
    }
    assert!(!out_dir.exists(), "an output folder for a refused lead");
}
