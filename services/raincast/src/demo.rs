//! The synthetic demo radar of the embedded default.
//!
//! It draws moving, growing and decaying rain cells ([`synth::SynthRadar`])
//! on a 256 × 256 km grid around Zürich and writes each scan as a real
//! ODIM_H5 `RATE` composite into the local bucket folder, with the same key
//! layout as S3: `{radar}/{yyyy}/{mm}/{dd}/{file}`. Scan times follow the wall
//! clock on a fixed cadence (`step_s`, 30 s by default, so that rain visibly
//! moves within minutes); at start it backfills the last two hours.
//! The files go through the normal ingest path, exactly like real scans.

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Utc};
use raincast_algorithms::synth::{self, Coverage, SynthConfig, SynthRadar};
use raincast_algorithms::write::odim::{encode_rate, OdimRateOptions};
use std::path::{Path, PathBuf};

/// The demo radar's id (its folder in the bucket).
pub const DEMO_RADAR: &str = "demo";
/// Demo radar site (Zürich), lon/lat degrees.
pub const DEMO_SITE: (f64, f64) = (8.54, 47.38);

/// Settings of the demo radar.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Bucket folder the scans are written to.
    pub bucket: PathBuf,
    /// Seconds between scans (scan cadence, wall clock).
    pub step_s: i64,
    /// How far back to write scans at start.
    pub backfill: chrono::Duration,
}

/// A demo radar writing ODIM_H5 files.
pub struct DemoRadar {
    radar: SynthRadar,
    settings: DemoSettings,
}

impl DemoRadar {
    pub fn new(settings: DemoSettings) -> Result<Self> {
        let (rows, cols, cell_m) = (256, 256, 1000.0);
        let grid =
            synth::local_grid(DEMO_SITE.0, DEMO_SITE.1, rows, cols, cell_m).context("demo grid")?;
        let mut cfg = SynthConfig::for_shape(rows, cols);
        cfg.start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        cfg.step_s = settings.step_s.max(1);
        // About 40 km/h towards the east-north-east whatever the cadence.
        let px_per_s = 40.0 / 3.6 / cell_m as f32;
        cfg.velocity_px_per_step = (
            px_per_s * cfg.step_s as f32,
            -0.35 * px_per_s * cfg.step_s as f32,
        );
        // Cells live 20 to 60 minutes.
        let steps_per_min = 60.0 / cfg.step_s as f32;
        cfg.lifetime_steps = (
            (20.0 * steps_per_min).max(2.0) as u32,
            (60.0 * steps_per_min).max(3.0) as u32,
        );
        cfg.cells = 14;
        cfg.coverage = Coverage::Circle {
            centre_row: rows as f32 / 2.0,
            centre_col: cols as f32 / 2.0,
            radius_px: 125.0,
        };
        Ok(Self {
            radar: SynthRadar::new(grid, cfg),
            settings,
        })
    }

    /// The bucket key of the scan at `time`.
    pub fn key(time: DateTime<Utc>) -> String {
        format!(
            "{DEMO_RADAR}/{:04}/{:02}/{:02}/{DEMO_RADAR}_{}.h5",
            time.year(),
            time.month(),
            time.day(),
            time.format("%Y%m%dT%H%M%SZ")
        )
    }

    /// Writes the scan of `step` unless it exists. Returns the path when written.
    pub fn write_step(&self, step: i64) -> Result<Option<PathBuf>> {
        let time = self.radar.time_at(step);
        let path = self.settings.bucket.join(Self::key(time));
        if path.exists() {
            return Ok(None);
        }
        let field = self.radar.field(step);
        let bytes = encode_rate(&field, &OdimRateOptions::u16("NOD:xxdem,PLC:Raincast demo"))
            .context("encoding the demo scan as ODIM_H5")?;
        write_new_file(&path, &bytes)?;
        Ok(Some(path))
    }

    /// Writes every scan from `now - backfill` to `now`. Returns how many were written.
    pub fn backfill(&self, now: DateTime<Utc>) -> Result<usize> {
        let last = self.radar.step_at_or_before(now);
        let first = self.radar.step_at_or_before(now - self.settings.backfill);
        let mut n = 0;
        for step in first..=last {
            if self.write_step(step)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes a scan whenever the clock passes a new step, until `shutdown`.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = Utc::now();
            let step = self.radar.step_at_or_before(now);
            match self.write_step(step) {
                Ok(Some(path)) => {
                    tracing::info!(radar = DEMO_RADAR, file = %path.display(), "demo radar wrote a scan")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(radar = DEMO_RADAR, error = %format!("{e:#}"), "demo radar failed to write a scan")
                }
            }
            let next = self.radar.time_at(step + 1);
            let wait = (next - Utc::now())
                .to_std()
                .unwrap_or(std::time::Duration::from_millis(200))
                + std::time::Duration::from_millis(50);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Writes `bytes` to a temporary name in the same folder, then renames it, so
/// that the ingest job never lists a half-written scan.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("scan path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("scan")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raincast_algorithms::decode;

    #[test]
    fn demo_scans_are_real_odim_files_with_rain_that_moves() {
        let dir = std::env::temp_dir().join(format!("raincast-demo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let demo = DemoRadar::new(DemoSettings {
            bucket: dir.clone(),
            step_s: 30,
            backfill: chrono::Duration::minutes(10),
        })
        .expect("demo");
        let now = Utc::now();
        let written = demo.backfill(now).expect("backfill");
        assert!((20..=21).contains(&written), "wrote {written}");
        assert_eq!(
            demo.backfill(now).expect("again"),
            0,
            "existing scans are kept"
        );
        let last = demo.radar.step_at_or_before(now);
        let path = dir.join(DemoRadar::key(demo.radar.time_at(last)));
        let bytes = std::fs::read(&path).expect("read");
        let scan = decode::decode(&bytes, path.file_name().and_then(|n| n.to_str()), None)
            .expect("decodes as ODIM");
        assert_eq!(scan.format, raincast_algorithms::Format::Odim);
        assert_eq!(scan.time, demo.radar.time_at(last));
        assert!(
            scan.values.iter().any(|v| v.is_nan()),
            "outside coverage is no data"
        );
        assert!(scan.values.iter().any(|v| *v > 0.5), "there is rain");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
