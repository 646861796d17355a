//! The built-in synthetic demo radars of `raincast run` with no source
//! configured: moving, growing and decaying rain cells
//! (`raincast_algorithms::synth`) written as real ODIM_H5 rain-rate files into
//! a local folder under the default key layout, one file per step, with a
//! backfill of the past two hours at start (by default). The ingest job then reads them
//! like any other radar's files. `raincast run` makes that backfill
//! [`backfill_inside`] ingest's own, so that every file it writes is read.
//!
//! `raincast run` starts two overlapping radars ([`DemoRadar::overlapping_pair`]):
//! `demo` around Zürich and `demo2` 128 km further east, both windows of one
//! synthetic weather, so the mosaic shows one seamless field.

use crate::config::{Location, RadarConfig};
use crate::layout::{KeyTemplate, DEFAULT_TEMPLATE};
use chrono::{DateTime, Duration, Utc};
use raincast_algorithms::encode::odim::{encode_rate, OdimRateOptions};
use raincast_algorithms::scan::Format;
use raincast_algorithms::synth::{local_grid, Coverage, SynthConfig, SynthRadar};
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// The demo radar's id.
pub const DEMO_RADAR: &str = "demo";

/// Demo radar settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// The folder used as the bucket.
    pub bucket: PathBuf,
    /// Seconds between scans (wall clock).
    pub step_s: i64,
    /// How far back files are written at start.
    pub backfill: Duration,
    /// Grid side in cells (1 km cells).
    pub side: usize,
    /// Where the radar stands.
    pub location: Location,
    /// Files older than this are deleted from the bucket (hourly), so the
    /// demo folder does not grow for ever: the store's retention.
    pub retention: Duration,
}

impl DemoOptions {
    /// 256 × 256 km around Zürich, a scan every 10 s, two hours of backfill.
    pub fn new(bucket: impl Into<PathBuf>) -> Self {
        Self {
            bucket: bucket.into(),
            step_s: 10,
            backfill: Duration::hours(2),
            side: 256,
            location: Location {
                lat: 47.37,
                lon: 8.54,
            },
            retention: Duration::days(7),
        }
    }
}

/// How much later than ingest's backfill window the demo's own backfill
/// starts ([`backfill_inside`]).
pub const BACKFILL_MARGIN_MINUTES: i64 = 5;

/// The demo backfill for an ingest whose radars without a checkpoint start
/// `ingest_backfill` before its first run: [`BACKFILL_MARGIN_MINUTES`]
/// less. Both windows end at start-up, but ingest's starts at its first run,
/// which comes seconds after the demo has begun writing; with equal lengths
/// the demo's oldest files fell just before ingest's window and were never
/// read (seen from outside: two files of 721 per radar not stored).
pub fn backfill_inside(ingest_backfill: Duration) -> Duration {
    (ingest_backfill - Duration::minutes(BACKFILL_MARGIN_MINUTES)).max(Duration::zero())
}

/// A demo radar failed to write a file.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo radar grid: {0}")]
    Grid(String),
    #[error("demo radar: cannot encode ODIM_H5: {0}")]
    Encode(String),
    #[error("demo radar: cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The second demo radar's id (see [`DemoRadar::overlapping_pair`]).
pub const DEMO_RADAR_EAST: &str = "demo2";

/// A synthetic radar and where it writes. Its rain is a window of a
/// synthetic "weather" drawn on a larger grid, so that two demo radars
/// whose windows overlap see the same rain where they overlap (as two real
/// radars would), and the mosaic of the two is seamless.
pub struct DemoRadar {
    /// The weather, on the grid that holds every radar's window.
    synth: SynthRadar,
    opts: DemoOptions,
    template: KeyTemplate,
    id: &'static str,
    name: &'static str,
    /// ODIM `what/source` of the files.
    source: &'static str,
    /// `(row, col)` of the radar's window in the weather's grid.
    offset: (usize, usize),
    /// The radar's own grid (its window of the weather's grid).
    grid: raincast_algorithms::Grid,
    /// Where the radar stands.
    location: Location,
}

/// Places in the path of the demo radar's rain (it stands in Zürich and
/// covers 256 × 256 km), so that `raincast run` fills the outbox.
pub fn demo_places() -> Vec<raincast_config::place::Place> {
    [
        ("Zürich", 47.377, 8.540),
        ("Winterthur", 47.500, 8.724),
        ("Lucerne", 47.050, 8.309),
        ("Aarau", 47.392, 8.044),
    ]
    .into_iter()
    .filter_map(|(name, lat, lon)| {
        raincast_config::place::Place::new(name, lat, lon)
            .with_time_zone("Europe/Zurich")
            .ok()
    })
    .collect()
}

impl DemoRadar {
    /// The demo radar alone: `side × side` km around `opts.location`.
    pub fn new(opts: DemoOptions) -> Result<Self, DemoError> {
        let side = opts.side.max(16);
        let weather = local_grid(opts.location.lon, opts.location.lat, side, side, 1000.0)
            .map_err(|e| DemoError::Grid(e.to_string()))?;
        Self::window(opts, weather, (0, 0), DEMO_RADAR)
    }

    /// Two overlapping demo radars sharing one weather: the demo radar
    /// (`side × side` km around `opts.location`) and [`DEMO_RADAR_EAST`],
    /// whose window is the same size, half a side further east. Each sees
    /// a disc of 0.48 side around its centre, so the two discs overlap over
    /// about half a side.
    pub fn overlapping_pair(opts: DemoOptions) -> Result<[Self; 2], DemoError> {
        let side = opts.side.max(16);
        let half = side / 2;
        let cell = 1000.0;
        let weather = raincast_algorithms::Grid::new(
            format!(
                "+proj=aeqd +lat_0={} +lon_0={} +ellps=WGS84 +units=m",
                opts.location.lat, opts.location.lon
            ),
            side,
            side + half,
            cell,
            cell,
            -(half as f64) * cell,
            half as f64 * cell,
        )
        .map_err(|e| DemoError::Grid(e.to_string()))?;
        let west = Self::window(opts.clone(), weather.clone(), (0, 0), DEMO_RADAR)?;
        let east = Self::window(opts, weather, (0, half), DEMO_RADAR_EAST)?;
        Ok([west, east])
    }

    fn window(
        opts: DemoOptions,
        weather: raincast_algorithms::Grid,
        offset: (usize, usize),
        id: &'static str,
    ) -> Result<Self, DemoError> {
        let side = opts.side.max(16);
        let mut cfg = SynthConfig::for_shape(weather.rows, weather.cols);
        cfg.step_s = opts.step_s.max(1);
        cfg.start = DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
        cfg.coverage = Coverage::Full;
        // As many cells per area as the single radar's 12 on its square.
        cfg.cells = (12 * weather.rows * weather.cols).div_ceil(side * side);
        // Slower cells than the 5-minute default: steps are seconds apart.
        cfg.velocity_px_per_step = (0.25, 0.1);
        cfg.lifetime_steps = (60, 180);
        let template =
            KeyTemplate::parse(DEFAULT_TEMPLATE).map_err(|e| DemoError::Grid(e.to_string()))?;
        let grid = raincast_algorithms::Grid::new(
            weather.projection.clone(),
            side,
            side,
            weather.cell_x_m,
            weather.cell_y_m,
            weather.x_west_m + offset.1 as f64 * weather.cell_x_m,
            weather.y_north_m - offset.0 as f64 * weather.cell_y_m,
        )
        .map_err(|e| DemoError::Grid(e.to_string()))?;
        let (lon, lat) = grid
            .rowcol_to_lonlat(side as f64 / 2.0, side as f64 / 2.0)
            .map_err(|e| DemoError::Grid(e.to_string()))?;
        let (name, source) = if id == DEMO_RADAR {
            ("Synthetic demo radar", "NOD:xxdem,PLC:Raincast demo")
        } else {
            (
                "Synthetic demo radar (east)",
                "NOD:xxdme,PLC:Raincast demo east",
            )
        };
        let location = if offset == (0, 0) {
            opts.location
        } else {
            Location { lat, lon }
        };
        Ok(Self {
            synth: SynthRadar::new(weather, cfg),
            opts,
            template,
            id,
            name,
            source,
            offset,
            grid,
            location,
        })
    }

    /// The radar's id.
    pub fn id(&self) -> &str {
        self.id
    }

    /// The radar's rain at `step`: its window of the weather, no data
    /// outside the disc of 0.48 side around the window's centre.
    pub fn field(&self, step: i64) -> raincast_algorithms::prep::RainField {
        let weather = self.synth.field(step);
        let side = self.grid.rows;
        let (r0, c0) = self.offset;
        let centre = side as f32 / 2.0;
        let radius = side as f32 * 0.48;
        let rate = ndarray::Array2::from_shape_fn((side, side), |(r, c)| {
            let (dr, dc) = (r as f32 + 0.5 - centre, c as f32 + 0.5 - centre);
            if dr * dr + dc * dc > radius * radius {
                f32::NAN
            } else {
                weather.rate_mm_h[[r0 + r, c0 + c]]
            }
        });
        raincast_algorithms::prep::RainField {
            grid: self.grid.clone(),
            time: weather.time,
            rate_mm_h: rate,
        }
    }

    /// The radar's configuration for the ingest job.
    pub fn radar_config(&self) -> RadarConfig {
        RadarConfig {
            id: self.id.into(),
            name: self.name.into(),
            source: None,
            key_template: self.template.clone(),
            format: Some(Format::Odim),
            zr: None,
            location: Some(self.location),
        }
    }

    fn path_of(&self, t: DateTime<Utc>) -> PathBuf {
        let key = format!(
            "{}{}_{}.h5",
            self.template.prefix_for(self.id, t.date_naive()),
            self.id,
            t.format("%Y%m%dT%H%M%SZ")
        );
        self.opts.bucket.join(key)
    }

    /// Writes the scan of `step` unless its file exists. Returns whether it wrote.
    pub fn write_step(&self, step: i64) -> Result<bool, DemoError> {
        let t = self.synth.time_at(step);
        let path = self.path_of(t);
        if path.exists() {
            return Ok(false);
        }
        let field = self.field(step);
        let bytes = encode_rate(&field, &OdimRateOptions::u16(self.source))
            .map_err(|e| DemoError::Encode(e.to_string()))?;
        write_atomically(&path, &bytes)?;
        debug!(path = %path.display(), rain_cells = field.rain_cells(), "demo radar wrote a scan");
        Ok(true)
    }

    /// Writes every step of the backfill window up to `now`. Returns how many
    /// files were written.
    pub fn backfill(&self, now: DateTime<Utc>) -> Result<usize, DemoError> {
        let first = self.synth.step_at_or_before(now - self.opts.backfill);
        let last = self.synth.step_at_or_before(now);
        let mut written = 0;
        for step in first..=last {
            written += usize::from(self.write_step(step)?);
        }
        Ok(written)
    }

    /// Deletes the demo files whose scan time is before `cutoff`, and the
    /// folders that become empty. Returns how many files went.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> Result<usize, DemoError> {
        let root = self.opts.bucket.join(self.id);
        let mut removed = 0;
        prune_dir(&root, cutoff, &mut removed)?;
        Ok(removed)
    }

    /// Backfills, then writes one scan per step on the wall clock until
    /// `shutdown` turns true.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let bucket = self.opts.bucket.display().to_string();
        let this = std::sync::Arc::new(self);
        // The backfill, oldest first, one file at a time so that a shutdown
        // interrupts it.
        let now = Utc::now();
        let first = this.synth.step_at_or_before(now - this.opts.backfill);
        let last = this.synth.step_at_or_before(now);
        let mut written = 0usize;
        for step in first..=last {
            if *shutdown.borrow() {
                info!("demo radar stopped during its backfill");
                return;
            }
            let t = this.clone();
            match tokio::task::spawn_blocking(move || t.write_step(step)).await {
                Ok(Ok(w)) => written += usize::from(w),
                Ok(Err(e)) => warn!(error = %e, "demo radar: backfill write failed"),
                // The runtime is going away (the process stops, e.g. on an
                // error at start-up): one line, not one per scan left.
                Err(e) if e.is_cancelled() => {
                    debug!("demo radar: backfill cancelled");
                    return;
                }
                Err(e) => warn!(error = %e, "demo radar: backfill task failed"),
            }
        }
        info!(files = written, bucket, "demo radar: backfill written");
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                let cutoff = Utc::now() - this.opts.retention;
                let t = this.clone();
                match tokio::task::spawn_blocking(move || t.prune(cutoff)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => info!(files = n, "demo radar: deleted files past the retention"),
                    Ok(Err(e)) => warn!(error = %e, "demo radar: pruning failed"),
                    Err(e) => warn!(error = %e, "demo radar: pruning task failed"),
                }
            }
            let now = Utc::now();
            let next = this.synth.step_at_or_before(now) + 1;
            let wait = (this.synth.time_at(next) - now)
                .to_std()
                .unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let t = this.clone();
            match tokio::task::spawn_blocking(move || t.write_step(next)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "demo radar: write failed"),
                Err(e) => warn!(error = %e, "demo radar: write task failed"),
            }
        }
        info!("demo radar stopped");
    }
}

/// How often the demo radar prunes its bucket.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes files named with a time before `cutoff` below `dir`, then `dir`
/// itself when it is left empty.
fn prune_dir(dir: &Path, cutoff: DateTime<Utc>, removed: &mut usize) -> Result<(), DemoError> {
    let err = |e: std::io::Error| DemoError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if entry.file_type().map_err(err)?.is_dir() {
            prune_dir(&path, cutoff, removed)?;
        } else if crate::layout::time_from_name(&entry.file_name().to_string_lossy())
            .is_some_and(|t| t < cutoff)
        {
            std::fs::remove_file(&path).map_err(err)?;
            *removed += 1;
        }
    }
    // Only an empty folder goes (remove_dir refuses the others).
    if std::fs::read_dir(dir).map_err(err)?.next().is_none() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Writes `.NAME.tmp` beside `path`, then renames it into place: a reader
/// listing the folder never sees a half-written file (hidden names are not
/// listed).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    let err = |e: std::io::Error| DemoError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("scan");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use raincast_testkit::TempDir;

    #[test]
    fn the_two_demo_radars_overlap_and_see_the_same_rain() {
        let dir = TempDir::new("demo-pair");
        let mut opts = DemoOptions::new(dir.path());
        opts.side = 64;
        let [west, east] = DemoRadar::overlapping_pair(opts).unwrap();
        assert_eq!((west.id(), east.id()), (DEMO_RADAR, DEMO_RADAR_EAST));
        assert_ne!(west.radar_config().location, east.radar_config().location);
        let (mut both, mut compared, mut rain) = (0, 0, 0);
        for step in [1000, 1300, 1700] {
            let (a, b) = (west.field(step), east.field(step));
            for ((r, c), v) in a.rate_mm_h.indexed_iter() {
                let (lon, lat) = a
                    .grid
                    .rowcol_to_lonlat(r as f64 + 0.5, c as f64 + 0.5)
                    .unwrap();
                let Some((rb, cb)) = b.grid.cell_at_lonlat(lon, lat) else {
                    continue;
                };
                let w = b.rate_mm_h[[rb, cb]];
                if v.is_finite() && w.is_finite() {
                    both += 1;
                    compared += 1;
                    rain += usize::from(*v > 0.0);
                    assert_eq!(*v, w, "same place, same rain");
                }
            }
        }
        assert!(both > 3 * 64 * 64 / 5, "overlap {both}");
        assert!(compared > 0 && rain > 0, "rain in the overlap: {rain}");
        // Both write decodable ODIM files under their own ids.
        west.write_step(1000).unwrap();
        east.write_step(1000).unwrap();
        for r in [&west, &east] {
            let path = r.path_of(r.synth.time_at(1000));
            assert!(path.starts_with(dir.path().join(r.id())));
            let scan =
                raincast_algorithms::decode::decode(&std::fs::read(&path).unwrap(), None, None)
                    .unwrap();
            assert!(scan.grid.same_geometry(&r.grid));
        }
    }

    #[test]
    fn the_demo_radar_writes_decodable_odim_files_once() {
        let dir = TempDir::new("demo");
        let mut opts = DemoOptions::new(dir.path());
        opts.side = 64;
        opts.backfill = Duration::seconds(60);
        let demo = DemoRadar::new(opts).unwrap();
        let now = Utc::now();
        let n = demo.backfill(now).unwrap();
        assert!((6..=7).contains(&n), "{n}");
        assert_eq!(demo.backfill(now).unwrap(), 0, "existing files are kept");
        // The files decode as ODIM rain rate at their key's time.
        let t = demo.synth.time_at(demo.synth.step_at_or_before(now));
        let path = demo.path_of(t);
        let bytes = std::fs::read(&path).unwrap();
        let scan = raincast_algorithms::decode::decode(&bytes, None, None).unwrap();
        assert_eq!(scan.format, Format::Odim);
        assert_eq!(scan.time, t);
        let key = path.strip_prefix(dir.path()).unwrap().to_str().unwrap();
        let m = demo
            .radar_config()
            .key_template
            .match_key(DEMO_RADAR, key)
            .unwrap();
        assert_eq!(m.time, Some(t));
        // Pruning to the last 30 s keeps only the newer files and removes
        // nothing else.
        let newest = demo.synth.time_at(demo.synth.step_at_or_before(now));
        let cutoff = newest - Duration::seconds(30);
        let pruned = demo.prune(cutoff).unwrap();
        assert!(pruned >= 3, "{pruned}");
        let mut left = 0;
        for e in std::fs::read_dir(path.parent().unwrap()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            let t = crate::layout::time_from_name(&name).unwrap();
            assert!(t >= cutoff, "{name}");
            left += 1;
        }
        assert_eq!(left + pruned, n);
        // Everything older than the newest goes, with the emptied folders.
        demo.prune(newest + Duration::seconds(1)).unwrap();
        assert!(!dir.path().join(DEMO_RADAR).exists());
        demo.write_step(demo.synth.step_at_or_before(now)).unwrap();
        // No temporary files left behind.
        let day = path.parent().unwrap();
        assert!(std::fs::read_dir(day).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
    }
}
