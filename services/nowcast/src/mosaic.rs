//! The mosaic of every radar: each radar's latest scans and nowcast frames
//! placed on one time line, for tiles and point forecasts
//! (`raincast_algorithms::mosaic` holds the rule that combines them).
//!
//! # Times
//! The mosaic's cadence `step` is the coarsest lead step among the radars'
//! nowcasts (5 min by default). Every time `t` falls in the slot
//! `⌊t / step⌋ · step`. The mosaic's issue slot `T` is the newest slot of
//! any radar's nowcast issue time.
//!
//! * **Past frames**, one per slot from `T − 2 h` to `T`, oldest first: each
//!   radar's first observed scan in that slot (the nearest to the slot's
//!   time; the frame's content is then fixed), taken from the frames
//!   builder ([`NowcastService::past_scans`] and
//!   [`NowcastService::observed_scans`]); a radar with no scan in a slot
//!   (late, or down) is left out of that frame and the others fill the
//!   frame as before.
//! * **Nowcast frames**, slots `T + step`, `T + 2·step`, …: each radar's
//!   forecast lead valid in that slot, from the radars whose nowcast was
//!   issued in slot `T` or one step before (a radar later than that, or
//!   down, is left out). As many frames as the shortest nowcast among them
//!   covers.
//!
//! Observed fields are decoded once and kept (as `Arc`s shared with the
//! next mosaic) while they are in the two-hour window; forecast fields are
//! the cached nowcasts' own, never copied.

use crate::{LatestNowcast, NowcastService, NowcastServiceError};
use chrono::{DateTime, Duration, Utc};
use ndarray::Array2;
use raincast_algorithms::mosaic::{sample_point, Layer, MosaicError, MosaicRadar};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Length of the mosaic's past, minutes.
pub const PAST_MIN: i64 = 120;

/// A radar taking part in the mosaic.
#[derive(Debug, Clone, PartialEq)]
pub struct MosaicSite {
    pub id: String,
    /// `(lon, lat)` of the radar, degrees, when known.
    pub location: Option<(f64, f64)>,
}

/// Where a layer's values live.
#[derive(Debug, Clone)]
enum LayerField {
    /// An observed scan, decoded once.
    Observed(Arc<Array2<f32>>),
    /// Lead `lead` (an index) of a cached nowcast.
    Forecast {
        nowcast: Arc<LatestNowcast>,
        lead: usize,
    },
}

/// One radar's field in one frame.
#[derive(Debug, Clone)]
pub struct MosaicLayer {
    /// Index into [`Mosaic::radars`].
    pub radar: usize,
    /// Scan time (observed) or issue time (forecast) of the field.
    pub time: DateTime<Utc>,
    /// Lead in minutes (forecast) or `None` (observed).
    pub lead_min: Option<u32>,
    field: LayerField,
}

impl MosaicLayer {
    /// Rain rate, mm/h, on the radar's grid, `NaN` = no data.
    pub fn rate(&self) -> &Array2<f32> {
        match &self.field {
            LayerField::Observed(f) => f,
            LayerField::Forecast { nowcast, lead } => &nowcast.rate_mm_h[*lead],
        }
    }

    /// Probability of rain (forecast layers only).
    pub fn probability(&self) -> Option<&Array2<f32>> {
        match &self.field {
            LayerField::Observed(_) => None,
            LayerField::Forecast { nowcast, lead } => nowcast.probability.get(*lead),
        }
    }

    /// The nowcast of a forecast layer.
    pub fn nowcast(&self) -> Option<&Arc<LatestNowcast>> {
        match &self.field {
            LayerField::Observed(_) => None,
            LayerField::Forecast { nowcast, .. } => Some(nowcast),
        }
    }

    /// Index of the lead in the nowcast (forecast layers only).
    pub fn lead_index(&self) -> Option<usize> {
        match &self.field {
            LayerField::Observed(_) => None,
            LayerField::Forecast { lead, .. } => Some(*lead),
        }
    }
}

/// One time of the mosaic.
#[derive(Debug, Clone)]
pub struct MosaicFrame {
    /// The slot's time.
    pub time: DateTime<Utc>,
    /// `None` for a past frame, else minutes after the issue slot.
    pub lead_min: Option<u32>,
    pub layers: Vec<MosaicLayer>,
    /// Changes whenever the layers do (radar, field time, lead): a validator.
    pub version: u64,
}

impl MosaicFrame {
    fn new(
        time: DateTime<Utc>,
        lead_min: Option<u32>,
        layers: Vec<MosaicLayer>,
        radars: &[Arc<MosaicRadar>],
    ) -> Self {
        // FNV-1a 64 over what identifies each layer.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= *b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&time.timestamp().to_le_bytes());
        for l in &layers {
            eat(radars[l.radar].id.as_bytes());
            eat(&[0]);
            eat(&l.time.timestamp().to_le_bytes());
            eat(&l.lead_min.unwrap_or(u32::MAX).to_le_bytes());
        }
        Self {
            time,
            lead_min,
            layers,
            version: h,
        }
    }

    /// The frame's id in tile paths: the slot's Unix time for a past frame,
    /// `nowcast_{issue slot}_{lead}_{version}` for a forecast one. A newer
    /// nowcast in the same slot (a radar scanning faster than the cadence)
    /// gets new paths, so the tiles under one path never change content; the
    /// superseded paths answer 404 and clients re-read the frame list.
    pub fn id(&self, issued: DateTime<Utc>) -> String {
        match self.lead_min {
            None => self.time.timestamp().to_string(),
            Some(l) => format!(
                "nowcast_{}_{l}_{:08x}",
                issued.timestamp(),
                self.version & 0xffff_ffff
            ),
        }
    }
}

/// The mosaic at one issue slot.
#[derive(Debug, Clone)]
pub struct Mosaic {
    /// Cadence, seconds.
    pub step_s: i64,
    /// The issue slot `T`.
    pub issued: DateTime<Utc>,
    /// Every radar with a nowcast, in the sites' order.
    pub radars: Vec<Arc<MosaicRadar>>,
    /// Past frames, oldest first; the last is the slot `T`.
    pub past: Vec<MosaicFrame>,
    /// Nowcast frames, in lead order.
    pub nowcast: Vec<MosaicFrame>,
    /// `(radar id, nowcast issue time)` the mosaic was built from.
    key: Vec<(String, DateTime<Utc>)>,
}

/// The mosaic at a place: observed now and per nowcast frame.
#[derive(Debug, Clone, PartialEq)]
pub struct MosaicPoint {
    /// Observed rate in the issue slot, mm/h (`NaN` = no radar sees it).
    pub now_mm_h: f32,
    /// Per nowcast frame: lead (min), valid time, rate (mm/h), probability.
    pub steps: Vec<(u32, DateTime<Utc>, f32, f32)>,
    /// The radars used at the place (ids) with their weight in the latest
    /// observation (or the first forecast frame when no scan of the slot
    /// sees it), largest first.
    pub radars: Vec<(String, f64)>,
}

impl Mosaic {
    /// The frame with this path id.
    pub fn frame(&self, id: &str) -> Option<&MosaicFrame> {
        if id.starts_with("nowcast_") {
            self.nowcast.iter().find(|f| f.id(self.issued) == id)
        } else {
            let t: i64 = id.parse().ok()?;
            self.past.iter().find(|f| f.time.timestamp() == t)
        }
    }

    /// The rate layers of a frame, ready for the mosaic rule.
    pub fn rate_layers<'a>(
        &'a self,
        frame: &'a MosaicFrame,
    ) -> Result<Vec<Layer<'a>>, MosaicError> {
        frame
            .layers
            .iter()
            .map(|l| Layer::new(&self.radars[l.radar], l.rate().as_slice().unwrap_or(&[])))
            .collect()
    }

    /// The latest observed frame (slot `T`).
    pub fn latest(&self) -> Option<&MosaicFrame> {
        self.past.last()
    }

    /// The mosaic at a lon/lat; `None` where no radar of the latest frame
    /// or of the first nowcast frame sees it.
    pub fn point(&self, lon: f64, lat: f64) -> Option<MosaicPoint> {
        let latest = self.latest()?;
        let now_layers = self.rate_layers(latest).ok()?;
        let now = sample_point(&now_layers, lon, lat);
        let mut steps = Vec::with_capacity(self.nowcast.len());
        let mut first_weights = None;
        for f in &self.nowcast {
            let rates = self.rate_layers(f).ok()?;
            let mix = sample_point(&rates, lon, lat);
            // The probability by the same weights, over the layers that have one.
            let (mut num, mut den) = (0f64, 0f64);
            for (i, w) in &mix.weights {
                if let Some(p) = f.layers[*i].probability() {
                    let p_layer = Layer::new(
                        &self.radars[f.layers[*i].radar],
                        p.as_slice().unwrap_or(&[]),
                    )
                    .ok()?;
                    let v = sample_point(&[p_layer], lon, lat).value;
                    if v.is_finite() {
                        num += w * v as f64;
                        den += w;
                    }
                }
            }
            let prob = if den > 0.0 {
                (num / den) as f32
            } else {
                f32::NAN
            };
            if first_weights.is_none() {
                first_weights = Some(
                    mix.weights
                        .iter()
                        .map(|(i, w)| (f.layers[*i].radar, *w))
                        .collect::<Vec<_>>(),
                );
            }
            let lead = f.lead_min.unwrap_or(0);
            steps.push((lead, f.time, mix.value, prob));
        }
        let weights: Vec<(usize, f64)> = if now.weights.is_empty() {
            first_weights.unwrap_or_default()
        } else {
            now.weights
                .iter()
                .map(|(i, w)| (latest.layers[*i].radar, *w))
                .collect()
        };
        if weights.is_empty() {
            return None;
        }
        let mut radars: Vec<(String, f64)> = weights
            .into_iter()
            .map(|(r, w)| (self.radars[r].id.clone(), w))
            .collect();
        radars.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(MosaicPoint {
            now_mm_h: now.value,
            steps,
            radars,
        })
    }
}

/// The slot of a time.
pub fn slot(t: DateTime<Utc>, step_s: i64) -> DateTime<Utc> {
    let s = t.timestamp().div_euclid(step_s) * step_s;
    DateTime::<Utc>::from_timestamp(s, 0).unwrap_or(t)
}

/// The cadence of a set of nowcasts: the coarsest lead step, seconds (at
/// least a minute).
fn cadence_s(nowcasts: &[Arc<LatestNowcast>]) -> i64 {
    nowcasts
        .iter()
        .map(|n| (n.leads_min.first().copied().unwrap_or(1) as i64 * 60).max(n.step_s))
        .max()
        .unwrap_or(300)
        .max(60)
}

/// How long a superseded mosaic's frames stay served, seconds: a client
/// that read the frame list just before a newer nowcast replaced it (the
/// list may be 10 s old in its cache, and the map page re-reads it every
/// 30 s) still gets the tiles of every frame it listed instead of a 404
/// for each, and moves to the new list on its next read.
pub const SUPERSEDED_GRACE_S: i64 = 120;

/// At most this many superseded mosaics are kept (each holds its radars'
/// nowcasts alive): a fleet whose radars update one after another replaces
/// the mosaic every few seconds, and memory stays bounded.
pub const SUPERSEDED_KEPT: usize = 4;

/// Builds mosaics from the nowcast service and keeps the latest, and the
/// ones it replaced for [`SUPERSEDED_GRACE_S`].
#[derive(Default)]
pub(crate) struct MosaicCache {
    latest: Option<Arc<Mosaic>>,
    /// Replaced mosaics with the time they were replaced, newest first.
    superseded: VecDeque<(DateTime<Utc>, Arc<Mosaic>)>,
    /// Radar geometry by id, rebuilt when a radar's grid changes.
    radars: HashMap<String, Arc<MosaicRadar>>,
}

impl MosaicCache {
    /// Drops superseded mosaics older than the grace period, or beyond the
    /// count kept.
    fn prune_superseded(&mut self, now: DateTime<Utc>) {
        self.superseded
            .retain(|(at, _)| (now - *at).num_seconds() < SUPERSEDED_GRACE_S);
        self.superseded.truncate(SUPERSEDED_KEPT);
    }
}

impl NowcastService {
    /// The mosaic of `sites` now: every radar's cached nowcast (refreshed
    /// as [`NowcastService::ensure`] does), rebuilt when any of them changed,
    /// else the one built before. `None` while no radar has a nowcast.
    pub async fn mosaic(
        &self,
        sites: &[MosaicSite],
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<Mosaic>>, NowcastServiceError> {
        let mut nowcasts = Vec::new();
        for s in sites {
            match self.ensure(&s.id, now).await {
                Ok(Some(n)) => nowcasts.push((s.clone(), n)),
                Ok(None) => {}
                // A radar whose nowcast cannot be made drops out.
                Err(e) => tracing::debug!(radar = %s.id, error = %e, "left out of the mosaic"),
            }
        }
        if nowcasts.is_empty() {
            return Ok(None);
        }
        let key: Vec<(String, DateTime<Utc>)> = nowcasts
            .iter()
            .map(|(s, n)| (s.id.clone(), n.base_time))
            .collect();
        // The common case, without waiting for the build lock: nothing changed.
        if let Some(m) = self.latest_mosaic() {
            if m.key == key {
                return Ok(Some(m));
            }
        }
        let build_lock = self.inner.mosaic_build.clone();
        let _building = build_lock.lock().await;
        let previous = self
            .inner
            .mosaic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latest
            .clone();
        if let Some(m) = &previous {
            if m.key == key {
                return Ok(Some(m.clone()));
            }
        }
        let m = Arc::new(
            self.build_mosaic(nowcasts, key, previous.as_deref(), now)
                .await?,
        );
        {
            let mut cache = self.inner.mosaic.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = cache.latest.replace(m.clone()) {
                cache.superseded.push_front((now, old));
            }
            cache.prune_superseded(now);
        }
        Ok(Some(m))
    }

    /// The mosaics replaced less than [`SUPERSEDED_GRACE_S`] before `now`,
    /// newest first (at most [`SUPERSEDED_KEPT`]): their nowcast frames'
    /// tiles stay served while clients move to the new frame list.
    pub fn superseded_mosaics(&self, now: DateTime<Utc>) -> Vec<Arc<Mosaic>> {
        let mut cache = self.inner.mosaic.lock().unwrap_or_else(|e| e.into_inner());
        cache.prune_superseded(now);
        cache.superseded.iter().map(|(_, m)| m.clone()).collect()
    }

    /// The last mosaic built (no I/O).
    pub fn latest_mosaic(&self) -> Option<Arc<Mosaic>> {
        self.inner
            .mosaic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latest
            .clone()
    }

    /// The mosaic geometry of radar `site` on `n`'s grid (its site, or the
    /// grid's centre when the site cannot be placed), cached per radar
    /// until its grid changes.
    pub fn mosaic_radar(
        &self,
        site: &MosaicSite,
        n: &LatestNowcast,
    ) -> Result<Arc<MosaicRadar>, NowcastServiceError> {
        let mut cache = self.inner.mosaic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cache.radars.get(&site.id) {
            if r.grid.same_geometry(&n.grid) {
                return Ok(r.clone());
            }
        }
        let r = MosaicRadar::new(&site.id, n.grid.clone(), site.location)
            .or_else(|_| MosaicRadar::new(&site.id, n.grid.clone(), None))
            .map_err(|e| NowcastServiceError::BadScan {
                radar: site.id.clone(),
                time: n.base_time,
                reason: format!("mosaic: {e}"),
            })?;
        let r = Arc::new(r);
        cache.radars.insert(site.id.clone(), r.clone());
        Ok(r)
    }

    async fn build_mosaic(
        &self,
        nowcasts: Vec<(MosaicSite, Arc<LatestNowcast>)>,
        key: Vec<(String, DateTime<Utc>)>,
        previous: Option<&Mosaic>,
        now: DateTime<Utc>,
    ) -> Result<Mosaic, NowcastServiceError> {
        let all: Vec<Arc<LatestNowcast>> = nowcasts.iter().map(|(_, n)| n.clone()).collect();
        let step_s = cadence_s(&all);
        let step = Duration::seconds(step_s);
        let issued = all
            .iter()
            .map(|n| slot(n.base_time, step_s))
            .max()
            .unwrap_or(now);
        let first_slot = issued - Duration::minutes(PAST_MIN);
        let mut radars = Vec::with_capacity(nowcasts.len());
        for (s, n) in &nowcasts {
            radars.push(self.mosaic_radar(s, n)?);
        }
        // Observed fields held by the previous mosaic, by (radar, scan time).
        let mut held: HashMap<(String, DateTime<Utc>), Arc<Array2<f32>>> = HashMap::new();
        if let Some(p) = previous {
            for f in &p.past {
                for l in &f.layers {
                    if let LayerField::Observed(a) = &l.field {
                        held.insert((p.radars[l.radar].id.clone(), l.time), a.clone());
                    }
                }
            }
        }
        // Past: per radar, its first scan in each slot of the window (the one
        // nearest the slot's time), so that a past frame's content is fixed
        // once its scans are in: a radar scanning faster than the cadence
        // (the demo's, every 10 s) no longer changes the newest frame under
        // the same tile path, where tiles fetched a few seconds apart showed
        // seams. A scan that arrives late for its slot still joins it.
        let mut past: Vec<Vec<MosaicLayer>> =
            vec![Vec::new(); (PAST_MIN * 60 / step_s) as usize + 1];
        for (ri, (_, n)) in nowcasts.iter().enumerate() {
            let past_min = (n.base_time - first_slot).num_minutes();
            if past_min < 0 {
                continue;
            }
            // Every stored scan of the window (not thinned to the lead step
            // from the newest, as the GIF frames are: that anchor moves with
            // each scan of a fast radar, and every frame with it).
            let scans = self
                .inner
                .store
                .list_scans(&n.radar, first_slot, n.base_time, now)
                .await?;
            let mut first: HashMap<i64, raincast_store::ScanManifest> = HashMap::new();
            for m in scans {
                let s = slot(m.time, step_s);
                if s < first_slot || s > issued {
                    continue;
                }
                let k = (s - first_slot).num_seconds() / step_s;
                if first.get(&k).is_none_or(|o| o.time > m.time) {
                    first.insert(k, m);
                }
            }
            let radar_id = &radars[ri].id;
            let mut wanted = Vec::new();
            let mut found: HashMap<DateTime<Utc>, Arc<Array2<f32>>> = HashMap::new();
            for m in first.values() {
                if let Some(a) = held.get(&(radar_id.clone(), m.time)) {
                    found.insert(m.time, a.clone());
                } else {
                    wanted.push(m.clone());
                }
            }
            wanted.sort_by_key(|m| m.time);
            if !wanted.is_empty() {
                let fields = self.observed_fields(n, &wanted, now).await?;
                for f in fields {
                    found.insert(f.time, Arc::new(f.rate_mm_h));
                }
            }
            let mut slots: Vec<(&i64, &raincast_store::ScanManifest)> = first.iter().collect();
            slots.sort_by_key(|(k, _)| **k);
            for (k, m) in slots {
                if let Some(a) = found.get(&m.time) {
                    past[*k as usize].push(MosaicLayer {
                        radar: ri,
                        time: m.time,
                        lead_min: None,
                        field: LayerField::Observed(a.clone()),
                    });
                }
            }
        }
        let past: Vec<MosaicFrame> = past
            .into_iter()
            .enumerate()
            .map(|(k, layers)| {
                MosaicFrame::new(first_slot + step * k as i32, None, layers, &radars)
            })
            .collect();
        // Nowcast: the radars issued in slot T or one step before.
        let members: Vec<usize> = (0..nowcasts.len())
            .filter(|&i| slot(nowcasts[i].1.base_time, step_s) >= issued - step)
            .collect();
        let mut frames = Vec::new();
        for k in 1.. {
            let valid = issued + step * k;
            let mut layers = Vec::new();
            let mut complete = true;
            for &ri in &members {
                let n = &nowcasts[ri].1;
                // The earliest lead valid in the slot.
                let lead = (0..n.leads_min.len()).find(|&i| slot(n.valid_time(i), step_s) == valid);
                match lead {
                    Some(i) => layers.push(MosaicLayer {
                        radar: ri,
                        time: n.base_time,
                        lead_min: Some(n.leads_min[i]),
                        field: LayerField::Forecast {
                            nowcast: n.clone(),
                            lead: i,
                        },
                    }),
                    None => complete = false,
                }
            }
            if !complete || layers.is_empty() {
                break;
            }
            frames.push(MosaicFrame::new(
                valid,
                Some((step_s * k as i64 / 60) as u32),
                layers,
                &radars,
            ));
        }
        Ok(Mosaic {
            step_s,
            issued,
            radars,
            past,
            nowcast: frames,
            key,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use raincast_algorithms::prep::RainField;
    use raincast_algorithms::sparse::{self, SparseOptions};
    use raincast_algorithms::Grid;
    use raincast_store::{EmbeddedStore, NewScan, ScanStore};
    use raincast_testkit::TempDir;

    const SIDE: usize = 64;

    fn site(id: &str) -> (f64, f64) {
        match id {
            "a" => (8.0, 47.0),
            _ => (8.6, 47.0),
        }
    }

    fn grid(id: &str) -> Grid {
        let (lon, lat) = site(id);
        raincast_algorithms::synth::local_grid(lon, lat, SIDE, SIDE, 1000.0).unwrap()
    }

    fn time(k: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap() + Duration::minutes(5 * k)
    }

    /// `value` mm/h inside a disc of 30 km around the radar, no data outside.
    fn field(id: &str, k: i64, value: f32) -> RainField {
        let c = SIDE as f32 / 2.0;
        let rate = Array2::from_shape_fn((SIDE, SIDE), |(r, col)| {
            let d2 = (r as f32 + 0.5 - c).powi(2) + (col as f32 + 0.5 - c).powi(2);
            if d2 > 30.0 * 30.0 {
                f32::NAN
            } else {
                value
            }
        });
        RainField {
            grid: grid(id),
            time: time(k),
            rate_mm_h: rate,
        }
    }

    async fn put(store: &dyn ScanStore, id: &str, k: i64, value: f32) {
        let f = field(id, k, value);
        let enc = sparse::encode(&f, &SparseOptions::default()).unwrap();
        let scan = NewScan {
            radar: id.into(),
            time: f.time,
            source_key: format!("{id}/{k}.h5"),
            format: "odim".into(),
            header: enc.header,
            rain_cells: f.rain_cells() as u64,
            tiles: enc.tiles,
        };
        store.put_scan(&scan, f.time).await.unwrap();
    }

    fn sites() -> Vec<MosaicSite> {
        ["a", "b"]
            .iter()
            .map(|id| MosaicSite {
                id: id.to_string(),
                location: Some(site(id)),
            })
            .collect()
    }

    async fn service(dir: &TempDir) -> (Arc<EmbeddedStore>, NowcastService) {
        let store = Arc::new(
            EmbeddedStore::open(dir.path().join("s.redb"), Duration::days(3650))
                .await
                .unwrap(),
        );
        let settings = crate::NowcastSettings {
            max_lead_min: 30,
            store_frames: false,
            ..Default::default()
        };
        (store.clone(), NowcastService::new(store, settings))
    }

    #[tokio::test]
    async fn two_radars_on_one_time_line_and_the_overlap_mixes_them() {
        let dir = TempDir::new("mosaic-two");
        let (store, svc) = service(&dir).await;
        for k in 0..=5 {
            put(store.as_ref(), "a", k, 1.0).await;
            put(store.as_ref(), "b", k, 3.0).await;
        }
        let now = time(5) + Duration::seconds(30);
        let m = svc.mosaic(&sites(), now).await.unwrap().unwrap();
        assert_eq!(m.step_s, 300);
        assert_eq!(m.issued, time(5));
        assert_eq!(m.past.len(), 25);
        assert_eq!(m.past.first().unwrap().time, time(5) - Duration::hours(2));
        // Slots with scans hold both radars; older slots are empty.
        for f in &m.past[19..] {
            assert_eq!(f.layers.len(), 2, "{}", f.time);
        }
        assert!(m.past[..18].iter().all(|f| f.layers.is_empty()));
        assert_eq!(m.nowcast.len(), 6);
        assert_eq!(m.nowcast[0].time, time(6));
        assert_eq!(m.nowcast[0].lead_min, Some(5));
        assert!(m.nowcast.iter().all(|f| f.layers.len() == 2));
        assert_eq!(m.frame(&m.nowcast[2].id(m.issued)).unwrap().time, time(8));
        assert_eq!(
            m.frame(&time(4).timestamp().to_string()).unwrap().time,
            time(4)
        );
        assert!(m.frame("nowcast_1_5").is_none());
        // Half-way between the radars: both, equally.
        let p = m.point(8.3, 47.0).unwrap();
        assert_eq!(p.radars.len(), 2);
        assert!((p.now_mm_h - 2.0).abs() < 0.1, "{}", p.now_mm_h);
        assert_eq!(p.steps.len(), 6);
        // Nearer a: a first.
        let p = m.point(8.25, 47.0).unwrap();
        assert_eq!(p.radars[0].0, "a");
        assert!(p.now_mm_h > 1.0 && p.now_mm_h < 2.0, "{}", p.now_mm_h);
        // Only a: its own value.
        let p = m.point(7.7, 47.0).unwrap();
        assert_eq!(p.radars, vec![("a".to_string(), 1.0)]);
        assert_eq!(p.now_mm_h, 1.0);
        assert!(m.point(20.0, 47.0).is_none());
        // Unchanged nowcasts: the same mosaic.
        let again = svc.mosaic(&sites(), now).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&m, &again));
    }

    /// Stores radar `id`'s field of value `value` at time `t`.
    async fn put_at(store: &dyn ScanStore, id: &str, t: DateTime<Utc>, value: f32) {
        let mut f = field(id, 0, value);
        f.time = t;
        let enc = sparse::encode(&f, &SparseOptions::default()).unwrap();
        let scan = NewScan {
            radar: id.into(),
            time: t,
            source_key: format!("{id}/{}.h5", t.timestamp()),
            format: "odim".into(),
            header: enc.header,
            rain_cells: f.rain_cells() as u64,
            tiles: enc.tiles,
        };
        store.put_scan(&scan, t).await.unwrap();
    }

    /// Tiles under one path never change content: a radar scanning every
    /// 150 s puts a second scan in a 5-minute slot, which leaves that past
    /// frame as it was, and the newer nowcast in the same issue slot gets
    /// new nowcast paths (the old ones are gone).
    #[tokio::test]
    async fn a_frame_path_keeps_its_content_when_a_radar_scans_faster_than_the_cadence() {
        let dir = TempDir::new("mosaic-fast");
        let (store, _) = service(&dir).await;
        let svc = NowcastService::new(
            store.clone(),
            crate::NowcastSettings {
                max_lead_min: 30,
                lead_step_min: Some(5),
                store_frames: false,
                ..Default::default()
            },
        );
        let scan = |j: i64| time(0) + Duration::seconds(150 * j);
        for j in 0..=10 {
            put_at(store.as_ref(), "a", scan(j), 1.0).await;
        }
        let a = vec![sites().remove(0)];
        let m1 = svc.mosaic(&a, scan(11)).await.unwrap().unwrap();
        assert_eq!(m1.issued, time(5));
        let slot_id = time(5).timestamp().to_string();
        let before = m1.frame(&slot_id).unwrap().clone();
        // The second scan of slot 5, with more rain.
        put_at(store.as_ref(), "a", scan(11), 4.0).await;
        svc.update("a", scan(11)).await.unwrap();
        let m2 = svc.mosaic(&a, scan(11)).await.unwrap().unwrap();
        assert!(
            !Arc::ptr_eq(&m1, &m2),
            "the new nowcast rebuilds the mosaic"
        );
        assert_eq!(m2.issued, m1.issued);
        let after = m2.frame(&slot_id).unwrap();
        let times = |f: &MosaicFrame| f.layers.iter().map(|l| l.time).collect::<Vec<_>>();
        assert_eq!(times(after), times(&before));
        assert_eq!(after.version, before.version);
        assert_eq!(after.layers[0].time, time(5));
        assert_eq!(after.layers[0].rate()[[SIDE / 2, SIDE / 2]], 1.0);
        // The nowcast frames: new paths, and the old ones are gone.
        let old_ids: Vec<String> = m1.nowcast.iter().map(|f| f.id(m1.issued)).collect();
        assert!(!old_ids.is_empty());
        for (old, new) in old_ids.iter().zip(m2.nowcast.iter()) {
            assert_ne!(*old, new.id(m2.issued));
            assert!(m2.frame(old).is_none(), "{old} still served");
        }
    }

    #[tokio::test]
    async fn a_late_or_down_radar_drops_out_and_leaves_no_gap_elsewhere() {
        let dir = TempDir::new("mosaic-down");
        let (store, svc) = service(&dir).await;
        for k in 0..=5 {
            put(store.as_ref(), "a", k, 1.0).await;
        }
        // b stopped after its scan of 10:10.
        for k in 0..=2 {
            put(store.as_ref(), "b", k, 3.0).await;
        }
        let now = time(5) + Duration::seconds(30);
        let m = svc.mosaic(&sites(), now).await.unwrap().unwrap();
        let first = m.clone();
        assert_eq!(m.issued, time(5));
        let latest = m.latest().unwrap();
        assert_eq!(latest.layers.len(), 1);
        assert_eq!(m.radars[latest.layers[0].radar].id, "a");
        // b is still in the frames of its scans.
        let at2 = m.frame(&time(2).timestamp().to_string()).unwrap();
        assert_eq!(at2.layers.len(), 2);
        // Forecast frames from a alone (b is three steps late).
        assert!(m.nowcast.iter().all(|f| f.layers.len() == 1));
        // Where a sees, a's value, in the overlap too: no gap.
        for lon in [7.7, 8.1, 8.3] {
            let p = m.point(lon, 47.0).unwrap();
            assert_eq!(p.now_mm_h, 1.0, "{lon}");
            assert_eq!(p.radars.len(), 1);
        }
        // Where only b sees: nothing now.
        assert!(m.point(8.9, 47.0).is_none());

        // b one step late: out of the latest observation, in the forecast.
        put(store.as_ref(), "b", 3, 3.0).await;
        put(store.as_ref(), "b", 4, 3.0).await;
        svc.update("b", now).await.unwrap();
        let m = svc.mosaic(&sites(), now).await.unwrap().unwrap();
        assert_eq!(m.latest().unwrap().layers.len(), 1);
        assert!(m.nowcast.iter().all(|f| f.layers.len() == 2));
        let p = m.point(8.9, 47.0).unwrap();
        assert!(p.now_mm_h.is_nan());
        assert_eq!(p.radars[0].0, "b");
        // The observed fields of the first mosaic were reused, not decoded again.
        let observed = |m: &Mosaic, radar: &str, t: DateTime<Utc>| {
            let f = m.frame(&t.timestamp().to_string()).unwrap();
            let l = f
                .layers
                .iter()
                .find(|l| m.radars[l.radar].id == radar)
                .unwrap();
            match &l.field {
                LayerField::Observed(a) => a.clone(),
                LayerField::Forecast { .. } => panic!("observed"),
            }
        };
        assert!(Arc::ptr_eq(
            &observed(&first, "a", time(1)),
            &observed(&m, "a", time(1))
        ));
    }
}
