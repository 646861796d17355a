//! One pipeline, checked from outside: under `raincast run`, the alert the
//! notifier writes describes the same nowcast that `/v1/forecast` serves for
//! its place, and its GIF holds the same frames as the API's animation.
//!
//! A synthetic rain cell (real ODIM_H5 files in a folder source) moves east
//! towards a place whose disk is a single grid cell, so the notifier's area
//! rate is exactly the point rate `/v1/forecast` gives. Exactly three scans
//! exist, the fewest a nowcast takes, so there is one nowcast only: the one
//! both sides must describe. `[nowcast]` asks for leads every 3 minutes, so
//! a notifier that built its own nowcast with other settings would announce
//! another start time and draw other frames.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, DurationRound, Utc};
use ndarray::Array2;
use raincast_algorithms::encode::odim::{encode_rate, OdimRateOptions};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::Grid;
use raincast_notifier::text::{about_minutes, format_rate};
mod common;

use common::{raincast_cmd, Running};
use raincast_testkit::TempDir;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

const RADAR: &str = "pipe";
const N: usize = 160;
/// Place: row 80, column 100 (40 km east of the cell at the issue time).
const PLACE: (f64, f64) = (80.5, 100.5);

fn grid() -> Grid {
    Grid::new(
        "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
        N,
        N,
        1000.0,
        1000.0,
        -(N as f64) * 500.0,
        N as f64 * 500.0,
    )
    .unwrap()
}

/// A cell (peak 15 mm/h, σ 8 km) centred on row 80 at column `col`; no data
/// beyond 78 km of the grid's centre.
fn field(col: f32) -> Array2<f32> {
    Array2::from_shape_fn((N, N), |(r, c)| {
        let (y, x) = (r as f32 - 79.5, c as f32 - 79.5);
        if x * x + y * y > 78.0 * 78.0 {
            return f32::NAN;
        }
        let d2 = (r as f32 - 80.0).powi(2) + (c as f32 - col).powi(2);
        let v = 15.0 * (-d2 / 128.0).exp();
        if v < 0.05 {
            0.0
        } else {
            v
        }
    })
}

fn write_scan(bucket: &Path, time: DateTime<Utc>, col: f32) {
    let rf = RainField {
        grid: grid(),
        time,
        rate_mm_h: field(col),
    };
    let bytes = encode_rate(&rf, &OdimRateOptions::u16("NOD:xxpip")).unwrap();
    let dir = bucket.join(RADAR).join(time.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{RADAR}_{}.h5", time.format("%Y%m%d_%H%M%S"));
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Three scans 5 min apart, the newest 2 min ago: the cell moves 5 km east
/// per scan and sits at column 60 at the issue time, which is returned.
fn write_three_scans(bucket: &Path) -> DateTime<Utc> {
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(2);
    write_three_scans_at(bucket, base)
}

/// [`write_three_scans`] with the newest at `base`.
fn write_three_scans_at(bucket: &Path, base: DateTime<Utc>) -> DateTime<Utc> {
    for k in 0..3 {
        write_scan(
            bucket,
            base - Duration::minutes(5 * (2 - k)),
            50.0 + 5.0 * k as f32,
        );
    }
    base
}

fn get(base: &str, path: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()
    })
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn an_alert_describes_the_nowcast_the_api_serves() {
    let dir = TempDir::new("one-pipeline");
    let bucket = dir.path().join("bucket");
    let outbox = dir.path().join("outbox");
    let base = write_three_scans(&bucket);
    let (lon, lat) = grid().rowcol_to_lonlat(PLACE.0, PLACE.1).unwrap();
    let cfg = dir.path().join("raincast.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
source = "{bucket}"
store = "{store}"
listen = "127.0.0.1:0"
[ingest]
schedule = "*/2 * * * * *"
settle_seconds = 0
[nowcast]
refresh_seconds = 1
lead_step_min = 3
[notifier]
outbox = "{outbox}"
[[radars]]
id = "{RADAR}"
name = "Pipeline radar"
[[notifier.places]]
name = "Testville"
lat = {lat}
lon = {lon}
radius_km = 0.1
"#,
            bucket = bucket.display(),
            store = dir.path().join("store").display(),
            outbox = outbox.display(),
        ),
    )
    .unwrap();
    let run = Running::start(raincast_cmd().args(["run", "--config"]).arg(&cfg));

    // The map's address, then the outbox record of the alert.
    let start = Instant::now();
    let mut log = Vec::new();
    let mut base_url = None;
    let record = loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(240),
            "no alert written:\n{}",
            log.join("\n")
        );
        while let Ok(l) = run
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            if let Some(addr) = l.split("Raincast map: ").nth(1) {
                base_url = Some(addr.trim().trim_end_matches('/').to_string());
            }
            log.push(l);
        }
        let json = std::fs::read_dir(&outbox).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "json"))
        });
        if let Some(p) = json {
            break serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap();
        }
    };
    let base_url = base_url.expect("map address logged");
    let forecast = get(&base_url, &format!("/v1/forecast?lat={lat}&lon={lon}"));
    let nowcast = get(&base_url, &format!("/v1/radars/{RADAR}/nowcast?past=60"));

    // The same nowcast: same issue time (the one nowcast of the three scans).
    let issued = time(&forecast["issued_at"]);
    assert_eq!(issued, base);
    assert_eq!(time(&record["scan_time"]), issued, "{record}");
    assert_eq!(record["kind"], "rain_expected", "{record}");
    // The alert's start is the first lead of /v1/forecast within the
    // place's horizon (60 min) with rain ≥ 0.5 mm/h and a probability ≥ 0.5
    // (the place's default thresholds).
    let entries = forecast["entries"].as_array().unwrap();
    let within: Vec<&Value> = entries
        .iter()
        .filter(|e| e["lead_min"].as_u64().unwrap() <= 60)
        .collect();
    let first = within
        .iter()
        .find(|e| {
            e["intensity_mm_h"].as_f64().is_some_and(|r| r >= 0.5)
                && e["probability"].as_f64().is_none_or(|p| p >= 0.5)
        })
        .expect("the forecast has the rain the alert announces");
    let lead = first["lead_min"].as_u64().unwrap() as u32;
    assert_eq!(
        time(&record["start_time"]),
        issued + Duration::minutes(i64::from(lead)),
        "{record}\n{forecast}"
    );
    // "in about N min" counts from when the alert was composed (the live
    // clock, a little before `written_at`), not from the scan.
    let text = record["text"].as_str().unwrap();
    let ahead = (time(&record["start_time"]) - time(&record["written_at"])).num_minutes();
    let told: Vec<String> = (ahead..=ahead + 1)
        .map(|m| format!("in about {} min", about_minutes(m.max(0) as u32)))
        .collect();
    assert!(told.iter().any(|t| text.contains(t)), "{text}: {told:?}");
    // "up to X": the highest rate now or within the horizon.
    let peak = within
        .iter()
        .filter_map(|e| e["intensity_mm_h"].as_f64())
        .chain(forecast["now"]["intensity_mm_h"].as_f64())
        .fold(0.0, f64::max) as f32;
    let said: f32 = text
        .split("up to ")
        .nth(1)
        .and_then(|s| s.split(" mm/h").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peak in {text:?}"));
    assert!(
        (said - peak).abs() <= 0.051 * peak.max(1.0),
        "text says {said}, /v1/forecast {} ({text})",
        format_rate(peak)
    );
    assert!(text.contains("Pipeline radar"), "{text}");

    // The GIF: the API's observed frames of the last hour plus its forecast
    // frames up to 60 min, one GIF frame each.
    let gif_name = record["gif"].as_str().expect("a GIF");
    let gif = std::fs::read(outbox.join(gif_name)).unwrap();
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::io::Cursor::new(&gif)).unwrap();
    let mut frames = 0;
    while dec.read_next_frame().unwrap().is_some() {
        frames += 1;
    }
    let past = nowcast["past"].as_array().unwrap().len();
    let leads = nowcast["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["lead_min"].as_u64().unwrap() <= 60)
        .count();
    assert_eq!(past, 3, "{nowcast}");
    assert_eq!(time(&nowcast["issued_at"]), issued);
    assert_eq!(frames, past + leads, "{nowcast}");
}

/// Runs `raincast ARGS` in `dir` (files settle at once) and requires
/// success; returns its stdout and stderr.
fn run_ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = raincast_cmd()
        .args(args)
        .current_dir(dir)
        .env("RAINCAST_SETTLE_SECONDS", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).to_string(), stderr)
}

/// [`write_three_scans_at`] `base` into `dir/bucket`, ingested by
/// `raincast ingest --once` into `dir/store` (returned); all three stored.
fn ingest_three_scans(dir: &Path, base: DateTime<Utc>) -> std::path::PathBuf {
    let (bucket, store) = (dir.join("bucket"), dir.join("store"));
    write_three_scans_at(&bucket, base);
    let since = (base - Duration::hours(1)).to_rfc3339();
    let (summary, _) = run_ok(
        dir,
        &[
            "ingest",
            "--once",
            "--source",
            bucket.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--since",
            &since,
        ],
    );
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["ingested"], 3, "{summary}");
    store
}

/// `--place` of the watched place, 40 km east of the cell.
fn testville() -> String {
    let (lon, lat) = grid().rowcol_to_lonlat(PLACE.0, PLACE.1).unwrap();
    format!("Testville,{lat},{lon},0.1")
}

/// `notify --once` on a store whose newest scan is hours old posts nothing,
/// as under `run` (old rain is not news), and says why; `--dry-run`
/// previews that day's alerts in the outbox.
#[test]
fn notify_once_posts_no_alert_from_an_old_nowcast() {
    let dir = TempDir::new("notify-once-old");
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::hours(3);
    let store = ingest_three_scans(dir.path(), base);
    let raincast = |args: &[&str]| run_ok(dir.path(), args);
    let place = testville();
    let outbox = dir.path().join("var").join("outbox");
    let posts = || {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let notify = [
        "notify",
        "--once",
        "--store",
        store.to_str().unwrap(),
        "--place",
        &place,
    ];
    let (out, err) = raincast(&notify);
    assert!(
        out.trim().is_empty(),
        "alerts from a 3-hour-old nowcast: {out}"
    );
    assert!(err.contains("older than alerts allow"), "{err}");
    assert_eq!(posts(), 0);
    let (out, _) = raincast(&[&notify[..], &["--dry-run"]].concat());
    assert!(out.contains("rain_expected"), "{out}");
    assert_eq!(posts(), 1, "the dry run previews the day's alert");
}

/// `raincast notify --once` needs nothing but a store and a place: it finds
/// the radars in the store's registry (ingest registered them), builds the
/// nowcast through the nowcast service, and posts to the default outbox.
#[test]
fn notify_once_needs_only_a_store_and_a_place() {
    let dir = TempDir::new("notify-once-store");
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(2);
    let store = ingest_three_scans(dir.path(), base);
    let raincast = |args: &[&str]| run_ok(dir.path(), args).0;
    let place = testville();
    let out = raincast(&[
        "notify",
        "--once",
        "--store",
        store.to_str().unwrap(),
        "--place",
        &place,
    ]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["kind"], "rain_expected", "{out}");
    assert_eq!(lines[0]["status"], "posted", "{out}");
    let outbox = dir.path().join("var").join("outbox");
    let posts = std::fs::read_dir(&outbox)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(posts, 1);
    // Once posted, never again.
    let again = raincast(&[
        "notify",
        "--once",
        "--store",
        store.to_str().unwrap(),
        "--place",
        &place,
    ]);
    assert!(!again.contains("\"posted\""), "{again}");

    // `raincast api` over the same store serves the registered radar.
    let api = Running::start(
        raincast_cmd()
            .args([
                "api",
                "--store",
                store.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir.path()),
    );
    let mut lines = api.lines.iter();
    let base_url = lines
        .find_map(|l| {
            l.split("Raincast map: ")
                .nth(1)
                .map(|a| a.trim().trim_end_matches('/').to_string())
        })
        .expect("map address logged");
    let radars = get(&base_url, "/v1/radars");
    assert!(radars.to_string().contains("\"pipe\""), "{radars}");
}

/// The status and body of a GET; `None` when nothing answers.
fn status_of(base: &str, path: &str) -> Option<(u16, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("{base}{path}")).await.ok()?;
        let status = r.status().as_u16();
        let body = serde_json::from_slice(&r.bytes().await.ok()?).unwrap_or(Value::Null);
        Some((status, body))
    })
}

/// A new deployment's source holds no radar yet (an empty bucket, no
/// `[[radars]]`): `raincast run` stays up and answers `/healthz` (it exited,
/// and systemd, compose or the load balancer restarted it in a loop), and
/// serves the first radar whose scans arrive.
#[test]
fn run_on_an_empty_source_waits_for_its_first_radar() {
    let dir = TempDir::new("run-empty-source");
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let mut run = Running::start(
        raincast_cmd()
            .arg("run")
            .arg("--source")
            .arg(&bucket)
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
    );
    let start = Instant::now();
    let mut log = Vec::new();
    let base_url = loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no address:\n{}",
            log.join("\n")
        );
        let Ok(l) = run
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        else {
            continue;
        };
        let addr = l.split("Raincast map: ").nth(1).map(str::to_string);
        log.push(l);
        if let Some(a) = addr {
            break a.trim().trim_end_matches('/').to_string();
        }
    };
    assert_eq!(status_of(&base_url, "/healthz").unwrap().0, 200);
    let (status, body) = status_of(&base_url, "/readyz").unwrap();
    assert_eq!((status, &body["code"]), (503, &Value::from("no_radars")));
    // The radar's first scans.
    let now = Utc::now().duration_trunc(Duration::minutes(5)).unwrap();
    for k in 0..3 {
        write_scan(
            &bucket,
            now - Duration::minutes(10 - 5 * k),
            40.0 + k as f32,
        );
    }
    loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "the radar was not served:\n{}",
            log.join("\n")
        );
        log.extend(run.lines.try_iter());
        // Between the two APIs the address may not answer for a moment.
        let listed = status_of(&base_url, "/v1/radars")
            .is_some_and(|(s, v)| s == 200 && v.to_string().contains(&format!("\"{RADAR}\"")));
        if listed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let status = run.stop();
    log.extend(run.lines.iter());
    assert!(status.success(), "{status}\n{}", log.join("\n"));
    let text = log.join("\n");
    assert!(text.contains("none in the source yet"), "{text}");
    assert!(
        text.contains("radars found: starting every service"),
        "{text}"
    );
}
