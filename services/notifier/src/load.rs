//! Frames from the scan store: the last hour of a radar's stored scans,
//! decoded, plus a nowcast built from them.
//!
//! No nowcast store exists yet, so the nowcast for the latest scan is always
//! built here (motion + extrapolation, `raincast_algorithms::nowcast`), with
//! leads every 5 minutes up to 60 and the probability of rain ≥
//! [`LoadConfig::prob_threshold_mm_h`]. When a nowcast service stores its
//! frames, this is the place to read them first.

use crate::frames::RadarFrames;
use chrono::{DateTime, Duration, Utc};
use raincast_algorithms::nowcast::{nowcast, NowcastConfig, MIN_FRAMES};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::sparse;
use raincast_store::ScanStore;
use tracing::{debug, warn};

/// Errors while loading a radar's frames.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scan store failed.
    #[error("scan store: {0}")]
    Store(#[from] raincast_store::StoreError),
}

/// What to load and how to nowcast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Observations before the latest scan, minutes.
    pub past_min: i64,
    /// Least interval between the observed frames shown, minutes: a radar
    /// scanning more often than this (the demo radar writes every 10 s)
    /// still gives a GIF of about `past_min / observed_spacing_min` frames.
    pub observed_spacing_min: i64,
    /// Nowcast leads, minutes.
    pub leads_min: Vec<u32>,
    /// Threshold of the probability fields, mm/h (the default places' rain threshold).
    pub prob_threshold_mm_h: f32,
    /// Nowcast settings.
    pub nowcast: NowcastConfig,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            past_min: 60,
            observed_spacing_min: 5,
            leads_min: (1..=12).map(|k| 5 * k).collect(),
            prob_threshold_mm_h: crate::Thresholds::default().rain_mm_h,
            nowcast: NowcastConfig::default(),
        }
    }
}

/// The latest hour of `radar` and its nowcast, or `None` when nothing is stored.
/// Scans that fail to decode, or lie on another grid than the latest, are
/// skipped with a warning. With fewer than 3 usable scans there is no
/// nowcast (observations only).
pub async fn load_radar_frames(
    scans: &dyn ScanStore,
    radar: &str,
    radar_name: &str,
    now: DateTime<Utc>,
    cfg: &LoadConfig,
) -> Result<Option<RadarFrames>, LoadError> {
    let Some(latest) = scans.latest(radar, now).await? else {
        return Ok(None);
    };
    let from = latest.time - Duration::minutes(cfg.past_min.max(0));
    let metas = scans.list_scans(radar, from, latest.time, now).await?;
    // The last few scans feed the nowcast; older ones are shown only when
    // they lie at least `observed_spacing_min` apart (counted back from the
    // latest), so a fast radar is not decoded hundreds of times per pass.
    let n_nowcast = cfg.nowcast.frames.max(MIN_FRAMES);
    let spacing = Duration::minutes(cfg.observed_spacing_min.max(0));
    let mut shown = vec![false; metas.len()];
    let mut last_shown: Option<DateTime<Utc>> = None;
    for (i, m) in metas.iter().enumerate().rev() {
        if last_shown.is_none_or(|t| t - m.time >= spacing) {
            shown[i] = true;
            last_shown = Some(m.time);
        }
    }
    let first_nowcast = metas.len().saturating_sub(n_nowcast);
    let mut fields: Vec<RainField> = Vec::new();
    let mut is_shown: Vec<bool> = Vec::new();
    for (i, m) in metas.iter().enumerate() {
        if !shown[i] && i < first_nowcast {
            continue;
        }
        let Some(stored) = scans.get_scan(radar, m.time, now).await? else {
            continue;
        };
        match sparse::decode(&stored.manifest.header, &stored.tiles) {
            Ok(f) => {
                fields.push(f);
                is_shown.push(shown[i]);
            }
            Err(e) => {
                warn!(radar, time = %m.time, error = %e, "stored scan does not decode; skipped")
            }
        }
    }
    let Some(last) = fields.last() else {
        return Ok(None);
    };
    let grid = last.grid.clone();
    let mut pairs: Vec<(RainField, bool)> = fields.into_iter().zip(is_shown).collect();
    pairs.retain(|(f, _)| f.grid.same_geometry(&grid));
    let base_time = pairs.last().map_or(latest.time, |(f, _)| f.time);
    let (mut forecast, mut probability) = (Vec::new(), Vec::new());
    // The nowcast takes the consecutive scans at the end.
    let tail: Vec<RainField> = pairs[pairs.len().saturating_sub(n_nowcast)..]
        .iter()
        .map(|(f, _)| f.clone())
        .collect();
    if tail.len() >= MIN_FRAMES {
        let mut nc_cfg = cfg.nowcast;
        nc_cfg.frames = tail.len();
        match nowcast(&tail, &cfg.leads_min, &nc_cfg) {
            Ok(nc) => {
                let probs = nc.probability(cfg.prob_threshold_mm_h);
                for ((lead, rate), prob) in nc.leads_min.iter().zip(nc.rate_mm_h).zip(probs) {
                    forecast.push((*lead, rate));
                    probability.push((*lead, prob));
                }
            }
            Err(e) => warn!(radar, error = %e, "no nowcast; observations only"),
        }
    } else {
        debug!(radar, scans = tail.len(), "too few scans for a nowcast");
    }
    Ok(Some(RadarFrames {
        radar: radar.to_string(),
        radar_name: radar_name.to_string(),
        grid,
        base_time,
        observed: pairs
            .into_iter()
            .filter(|(_, shown)| *shown)
            .map(|(f, _)| (f.time, f.rate_mm_h))
            .collect(),
        forecast,
        probability,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;
    use crate::frames::jobs_for;
    use crate::gif::tests::{field, grid, t0};
    use crate::gif::FrameLibrary;
    use crate::notify::{Notifier, ReportStatus};
    use crate::publish::outbox::OutboxPublisher;
    use crate::{EventKind, Place};
    use raincast_algorithms::sparse::{encode, SparseOptions};
    use raincast_store::model::NewScan;
    use raincast_store::EmbeddedStore;

    /// Stores the synthetic moving cell of [`crate::gif::tests::field`] as
    /// real sparse scans every 5 minutes for minutes `from..=to`.
    async fn fill(store: &EmbeddedStore, from: i64, to: i64) {
        for m in (from..=to).step_by(5) {
            let time = t0() + Duration::minutes(m);
            let rf = RainField {
                grid: grid(),
                time,
                rate_mm_h: field(m),
            };
            let enc = encode(&rf, &SparseOptions::default()).expect("encode");
            let scan = NewScan {
                radar: "synthetic".into(),
                time,
                source_key: format!("synthetic/{m}"),
                format: "synthetic".into(),
                header: enc.header,
                rain_cells: rf.rain_cells() as u64,
                tiles: enc.tiles,
            };
            store.put_scan(&scan, time).await.expect("put");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_scans_become_frames_nowcast_and_posts() {
        let dir = raincast_testkit::TempDir::new("notifier-load");
        let store = EmbeddedStore::open(dir.path().join("raincast.redb"), Duration::days(7))
            .await
            .expect("store");
        let now = t0();
        assert!(load_radar_frames(
            &store,
            "synthetic",
            "Synthetic",
            now,
            &LoadConfig::default()
        )
        .await
        .expect("load")
        .is_none());
        // Scans from -80 to -10 min: the cell is still 60 km west of the place.
        fill(&store, -80, -10).await;
        let frames = load_radar_frames(
            &store,
            "synthetic",
            "Synthetic",
            now,
            &LoadConfig::default(),
        )
        .await
        .expect("load")
        .expect("frames");
        assert_eq!(frames.base_time, t0() - Duration::minutes(10));
        assert_eq!(frames.observed.len(), 13);
        assert_eq!(frames.forecast.len(), 12);
        assert_eq!(frames.probability.len(), 12);
        // The nowcast moves the cell east: at lead 40 (minute 30) the truth
        // has it 20 km west of the centre, at column 130.
        let (_, f40) = &frames.forecast[7];
        let peak = f40
            .indexed_iter()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((r, c), _)| (r, c))
            .expect("rain");
        assert!((peak.0 as i64 - 150).abs() <= 6, "{peak:?}");
        assert!((peak.1 as i64 - 130).abs() <= 15, "{peak:?}");

        let place = Place::new("Brussels", 50.85, 4.35);
        let jobs = jobs_for(&frames, &[place]);
        let mut lib = FrameLibrary::new();
        lib.insert(frames);
        let out = dir.path().join("outbox");
        let n = Notifier::new(
            Claims::in_memory("a", Duration::minutes(10)),
            OutboxPublisher::new(&out),
        );
        let reports = n.run_once(&jobs, &lib, now).await.expect("pass");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].kind, EventKind::RainExpected);
        assert_eq!(reports[0].status, ReportStatus::Posted);
        assert!(reports[0].gif_bytes > 0);
        eprintln!("{}", reports[0].text);
    }
}
