//! A radar day replayed through the service: `raincast run --since T` over a
//! folder holding the day's scans ingests them all at once, nowcasts every
//! scan (the newest first, then the others oldest first: the catch-up) and
//! scores each against the nowcasts before it. Its live skill
//! (`GET /v1/radars/{id}/skill`) must then be what `raincast verify` prints in
//! its pooled table for the same scans: the one scorer, the same cases.

#![allow(clippy::unwrap_used)]

mod common;

use raincast_testkit::TempDir;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Scans replayed: BOM radar 02's first ten (6-minute cadence).
const SCANS: usize = 10;
/// Leads compared, minutes.
const LEADS: [u32; 3] = [6, 12, 18];

/// Per lead: cases, then CSI at 0.5, 1, 5 mm/h (persistence, Raincast),
/// FSS, wet MAE and Brier (persistence, Raincast), as `verify` prints them
/// (three decimals).
type Row = (u64, Vec<f64>);

/// The pooled table of `raincast verify`'s report.
fn verify_pooled(day: &std::path::Path) -> BTreeMap<u32, Row> {
    let leads = LEADS.map(|l| l.to_string()).join(",");
    let out = common::raincast_cmd()
        .arg("verify")
        .arg(day)
        .args(["--leads", &leads, "--prob-threshold", "0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = text
        .split("\nPooled over the cases")
        .nth(1)
        .unwrap_or_else(|| panic!("no pooled table:\n{text}"));
    let mut rows = BTreeMap::new();
    for line in table.lines().skip(2).take_while(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().filter(|w| *w != "|").collect();
        let lead: u32 = words[0].parse().unwrap();
        let cases: u64 = words[1].parse().unwrap();
        let values: Vec<f64> = words[2..]
            .iter()
            .map(|w| w.parse().unwrap_or(f64::NAN))
            .collect();
        assert_eq!(values.len(), 12, "{line}");
        rows.insert(lead, (cases, values));
    }
    rows
}

/// The same figures from the service's live skill (JSON).
fn live_rows(skill: &serde_json::Value) -> BTreeMap<u32, Row> {
    let mut rows = BTreeMap::new();
    for lead in skill["leads"].as_array().unwrap() {
        let m = lead["lead_min"].as_u64().unwrap() as u32;
        let (pe, rc) = (&lead["persistence"], &lead["raincast"]);
        let mut values = Vec::new();
        for i in 0..3 {
            for method in [pe, rc] {
                values.push(method["csi"][i]["csi"].as_f64().unwrap_or(f64::NAN));
            }
        }
        for score in ["fss", "mae_wet_mm_h", "brier"] {
            for method in [pe, rc] {
                values.push(method[score].as_f64().unwrap_or(f64::NAN));
            }
        }
        rows.insert(m, (rc["cases"].as_u64().unwrap(), values));
    }
    rows
}

#[test]
fn a_day_replayed_through_run_is_scored_live_as_verify_pools_it() {
    let Some(data) = raincast_testkit::shared_data() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("bom/02"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.truncate(SCANS);
    // The day's scans in place (links), under the default key layout.
    let dir = TempDir::new("raincast-replay");
    let day = dir.path().join("bucket/bom02/2018/06/16");
    std::fs::create_dir_all(&day).unwrap();
    for f in &files {
        std::os::unix::fs::symlink(f, day.join(f.file_name().unwrap())).unwrap();
    }
    let want = verify_pooled(&day);

    let port = raincast_testkit::free_port();
    let mut service = common::Running::start(
        common::raincast_cmd()
            .arg("run")
            .arg("--source")
            .arg(dir.path().join("bucket"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(["--radar", "bom02", "--since", "2018-06-16T00:00:00Z"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path()),
    );
    let mut log = Vec::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/radars/bom02/skill?window=24h");
    let started = Instant::now();
    let live = loop {
        let got = rt.block_on(async {
            let r = reqwest::get(&url).await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            serde_json::from_slice::<serde_json::Value>(&r.bytes().await.ok()?).ok()
        });
        if let Some(skill) = got {
            let rows = live_rows(&skill);
            // Every scan scored: the longest lead compared has all its cases.
            let last = LEADS[LEADS.len() - 1];
            if rows.get(&last).map(|r| r.0) == want.get(&last).map(|r| r.0) {
                break rows;
            }
        }
        log.extend(service.lines.try_iter());
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the replay was not scored in 5 minutes; want {want:?}\n{}",
            log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    service.stop();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        LEADS.iter().collect::<Vec<_>>()
    );
    for (lead, (cases, values)) in &want {
        let (live_cases, live_values) = &live[lead];
        assert_eq!(live_cases, cases, "+{lead} min: cases");
        assert!(*cases > 0, "+{lead} min: nothing to compare");
        for (i, (v, l)) in values.iter().zip(live_values).enumerate() {
            // `verify` prints three decimals; the live service reads its
            // frames back from their 16-bit quantised storage.
            assert!(
                (v - l).abs() <= 1.5e-3 || (v.is_nan() && l.is_nan()),
                "+{lead} min, column {i}: verify {v}, live {l}"
            );
        }
    }
}
