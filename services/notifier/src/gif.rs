//! The GIF of a post, drawn with the shared renderer
//! (`raincast_algorithms::render`): the last 60 minutes of observations and
//! the nowcast frames of the event's radar, cropped to a window around the
//! place (see [`crate::frames`]), with the place's marker and name, range
//! rings at multiples of the place's radius, a header tag OBSERVED or
//! FORECAST +N MIN with the local time on every frame, the colour-scale
//! legend, and the radar's name as title. It loops forever and stays within
//! X's limits: at most [`MAX_SIDE_PX`] px per side (and the renderer's 1280)
//! and [`crate::publish::MAX_GIF_BYTES`]; when a GIF comes out too large it
//! is drawn again smaller.

use crate::events::Event;
use crate::frames::{crop_field, crop_window, upscale_factor, window_grid, RadarFrames};
use crate::notify::GifSource;
use crate::place::Place;
use crate::publish::MAX_GIF_BYTES;
use chrono::{Duration, Offset, TimeZone};
use raincast_algorithms::render::{
    render_animation, AnimationFrame, AnimationOptions, FrameKind, Marker, RangeRings,
};
use std::collections::BTreeMap;

/// Largest side of a post's GIF, pixels.
pub const MAX_SIDE_PX: u32 = 720;
/// Half-width of the map window around the place, km.
pub const DEFAULT_HALF_WIDTH_KM: f64 = 80.0;
/// Observations shown before the latest scan, minutes.
pub const PAST_MIN: u32 = 60;
/// Longest nowcast lead shown, minutes (the default alert horizon; the API
/// animation's default window is the same 60 minutes either side).
pub const DEFAULT_MAX_LEAD_MIN: u32 = 60;

/// Frames per radar, and how to draw them.
#[derive(Debug, Clone)]
pub struct FrameLibrary {
    radars: BTreeMap<String, RadarFrames>,
    /// Half-width of the map window, km.
    pub half_width_km: f64,
    /// Longest nowcast lead drawn, minutes.
    pub max_lead_min: u32,
}

impl Default for FrameLibrary {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameLibrary {
    /// An empty library with the default window.
    pub fn new() -> Self {
        Self {
            radars: BTreeMap::new(),
            half_width_km: DEFAULT_HALF_WIDTH_KM,
            max_lead_min: DEFAULT_MAX_LEAD_MIN,
        }
    }

    /// Adds (or replaces) a radar's frames.
    pub fn insert(&mut self, frames: RadarFrames) {
        self.radars.insert(frames.radar().to_string(), frames);
    }

    /// A radar's frames.
    pub fn get(&self, radar: &str) -> Option<&RadarFrames> {
        self.radars.get(radar)
    }

    /// Every radar's frames.
    pub fn radars(&self) -> impl Iterator<Item = &RadarFrames> {
        self.radars.values()
    }

    /// Renders the GIF of `place` from `frames` with the map's long side
    /// near `side_px`.
    pub fn render(
        &self,
        frames: &RadarFrames,
        place: &Place,
        side_px: u32,
    ) -> Result<Vec<u8>, String> {
        let n = &frames.nowcast;
        let window = crop_window(&n.grid, place.lat, place.lon, self.half_width_km)
            .map_err(|e| e.to_string())?;
        let k = upscale_factor(window, side_px);
        let grid = window_grid(&n.grid, window, k).map_err(|e| e.to_string())?;
        let since = n.base_time - Duration::minutes(i64::from(PAST_MIN));
        let mut fields = Vec::new();
        for (t, f) in frames.observed.iter().filter(|(t, _)| *t >= since) {
            fields.push((*t, FrameKind::Observed, crop_field(f.view(), window, k)));
        }
        for (i, (lead, f)) in n.leads_min.iter().zip(&n.rate_mm_h).enumerate() {
            if *lead > self.max_lead_min {
                break;
            }
            fields.push((
                n.valid_time(i),
                FrameKind::Forecast { lead_min: *lead },
                crop_field(f.view(), window, k),
            ));
        }
        if fields.is_empty() {
            return Err("no frames".into());
        }
        let anim: Vec<AnimationFrame<'_>> = fields
            .iter()
            .map(|(t, kind, f)| AnimationFrame {
                rate_mm_h: f.view(),
                time: *t,
                kind: *kind,
            })
            .collect();
        let local = place.time_zone.from_utc_datetime(&n.base_time.naive_utc());
        let opts = AnimationOptions {
            max_side_px: side_px,
            title: Some(frames.radar_name.clone()),
            marker: Some(Marker {
                lon: place.lon,
                lat: place.lat,
                name: place.name.clone(),
            }),
            rings: Some(RangeRings {
                lon: place.lon,
                lat: place.lat,
                step_km: place.radius_km,
                count: ((self.half_width_km / place.radius_km).floor() as u32).clamp(1, 4),
            }),
            coverage_outline: true,
            utc_offset_s: local.offset().fix().local_minus_utc(),
            zone_label: local.format("%Z").to_string(),
            ..AnimationOptions::default()
        };
        render_animation(&grid, &anim, &opts).map_err(|e| e.to_string())
    }
}

impl GifSource for FrameLibrary {
    fn gif(&self, event: &Event, place: &Place) -> Result<Option<Vec<u8>>, String> {
        let Some(frames) = self.radars.get(&event.radar) else {
            return Ok(None);
        };
        let mut side = MAX_SIDE_PX;
        loop {
            let gif = self.render(frames, place, side)?;
            if gif.len() <= MAX_GIF_BYTES || side <= 320 {
                return if gif.len() <= MAX_GIF_BYTES {
                    Ok(Some(gif))
                } else {
                    Err(format!("GIF of {} bytes even at {side} px", gif.len()))
                };
            }
            side = (side * 2 / 3).max(320);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use crate::events::tests::t0;
    use ndarray::Array2;
    use raincast_algorithms::render::RAIN_SCALE;
    use raincast_algorithms::Grid;

    /// A 1 km grid of 300 × 300 centred on (50.85 N, 4.35 E).
    pub(crate) fn grid() -> Grid {
        Grid::new(
            "+proj=aeqd +lat_0=50.85 +lon_0=4.35 +ellps=WGS84 +units=m",
            300,
            300,
            1000.0,
            1000.0,
            -150_000.0,
            150_000.0,
        )
        .expect("grid")
    }

    /// A rain cell (peak 20 mm/h, σ 12 km) moving east at 1 km/min, centred
    /// on the grid's centre at minute 50; the west edge has no data.
    pub(crate) fn field(minute: i64) -> Array2<f32> {
        let cx = 150.0 + (minute - 50) as f32;
        Array2::from_shape_fn((300, 300), |(r, c)| {
            if c < 8 {
                return f32::NAN;
            }
            let d2 = (r as f32 - 150.0).powi(2) + (c as f32 - cx).powi(2);
            let v = 20.0 * (-d2 / (2.0 * 144.0)).exp();
            if v < 0.1 {
                0.0
            } else {
                v
            }
        })
    }

    /// Frames with the latest scan at `t0 + base_min`: 13 observations
    /// (every 5 min over the past hour) and 12 "nowcast" leads (5–60 min)
    /// taken from the same moving cell.
    pub(crate) fn frames(base_min: i64) -> RadarFrames {
        let base = t0() + Duration::minutes(base_min);
        let leads: Vec<u32> = (1..=12).map(|k| 5 * k).collect();
        let nowcast = raincast_nowcast::LatestNowcast {
            radar: "synthetic".into(),
            grid: grid(),
            base_time: base,
            step_s: 300,
            inputs: vec![base],
            rate_mm_h: leads
                .iter()
                .map(|l| field(base_min + i64::from(*l)))
                .collect(),
            leads_min: leads,
            probability: Vec::new(),
            probability_calibrated: Vec::new(),
            threshold_mm_h: 0.1,
            observed_mm_h: field(base_min),
            earlier_inputs_mm_h: Vec::new(),
            created_at: base,
            origin: raincast_nowcast::Origin::Stored,
        };
        RadarFrames {
            radar_name: "Synthetic radar".into(),
            nowcast: std::sync::Arc::new(nowcast),
            observed: (0..=12)
                .map(|i| {
                    let m = base_min - 60 + 5 * i;
                    (t0() + Duration::minutes(m), field(m))
                })
                .collect(),
        }
    }

    #[test]
    fn gif_decodes_with_every_frame_the_right_size_and_the_legend_colours() {
        let mut lib = FrameLibrary::new();
        lib.insert(frames(0));
        let place = Place::new("Brussels", 50.85, 4.35)
            .with_time_zone("Europe/Brussels")
            .expect("zone");
        let started = std::time::Instant::now();
        let gif = lib
            .render(lib.get("synthetic").expect("frames"), &place, MAX_SIDE_PX)
            .expect("gif");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "GIF: {} bytes, 25 frames, rendered in {ms:.0} ms (debug build)",
            gif.len()
        );
        assert!(gif.len() <= MAX_GIF_BYTES);
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::Indexed);
        let mut dec = opts
            .read_info(std::io::Cursor::new(&gif))
            .expect("GIF header");
        let (w, h) = (u32::from(dec.width()), u32::from(dec.height()));
        assert!(w <= MAX_SIDE_PX && h <= MAX_SIDE_PX && w >= 320, "{w}x{h}");
        let palette = dec.global_palette().expect("global palette").to_vec();
        for band in RAIN_SCALE {
            let rgb = &band.rgba[..3];
            assert!(
                palette.chunks(3).any(|c| c == rgb),
                "legend colour {rgb:?} of band {} missing",
                band.label
            );
        }
        let mut n = 0;
        while let Some(f) = dec.read_next_frame().expect("frame decodes") {
            assert!(u32::from(f.left) + u32::from(f.width) <= w);
            assert!(u32::from(f.top) + u32::from(f.height) <= h);
            n += 1;
        }
        assert_eq!(n, 25);
        // Through the GifSource: the event's radar is looked up.
        let ev = crate::events::evaluate(
            &place,
            &crate::PlaceState::default(),
            &crate::events::tests::shower_outlook(0),
        )
        .events[0]
            .clone();
        let mut ev_synth = ev.clone();
        ev_synth.radar = "synthetic".into();
        assert!(lib.gif(&ev_synth, &place).expect("render").is_some());
        assert!(lib.gif(&ev, &place).expect("no frames").is_none());
    }

    /// The first frame of a GIF, composited to RGBA, with its width.
    fn first_frame_rgba(gif: &[u8]) -> (usize, Vec<u8>) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts
            .read_info(std::io::Cursor::new(gif))
            .expect("GIF header");
        let w = usize::from(dec.width());
        let f = dec.read_next_frame().expect("frame").expect("a frame");
        assert_eq!(usize::from(f.width), w, "the first frame covers the canvas");
        (w, f.buffer.to_vec())
    }

    /// An alert GIF of Liège (86 km east of the test radar) shows the
    /// basemap (the Belgian borders with the Netherlands and Germany lie in
    /// its ±80 km window) and the place's name with its accent: the GIF of
    /// "Liège" differs from that of "Liege" only around the name.
    #[test]
    fn alert_gif_shows_the_basemap_and_the_accented_name() {
        use raincast_algorithms::render::BASEMAP_BORDER_RGB;
        let mut lib = FrameLibrary::new();
        lib.insert(frames(0));
        let frames = lib.get("synthetic").expect("frames");
        let render = |name: &str| {
            let place = Place::new(name, 50.633, 5.567)
                .with_time_zone("Europe/Brussels")
                .expect("zone");
            lib.render(frames, &place, MAX_SIDE_PX).expect("gif")
        };
        let (w, accented) = first_frame_rgba(&render("Liège"));
        let border = accented
            .chunks(4)
            .filter(|p| p[..3] == BASEMAP_BORDER_RGB)
            .count();
        assert!(border > 50, "{border} border pixels");
        let (_, plain) = first_frame_rgba(&render("Liege"));
        let differ: Vec<(usize, usize)> = accented
            .chunks(4)
            .zip(plain.chunks(4))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| (i % w, i / w))
            .collect();
        assert!(!differ.is_empty(), "the accent of 'è' is not drawn");
        // Only a small patch (the 'è' and its halo) differs.
        let (x0, x1) = (
            differ.iter().map(|p| p.0).min().unwrap_or(0),
            differ.iter().map(|p| p.0).max().unwrap_or(0),
        );
        let (y0, y1) = (
            differ.iter().map(|p| p.1).min().unwrap_or(0),
            differ.iter().map(|p| p.1).max().unwrap_or(0),
        );
        assert!(x1 - x0 < 30 && y1 - y0 < 30, "{x0}..{x1} × {y0}..{y1}");
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::tests::{frames, t0};
    use super::*;
    use crate::claims::Claims;
    use crate::frames::jobs_for;
    use crate::notify::{Notifier, ReportStatus};
    use crate::publish::outbox::OutboxPublisher;
    use crate::EventKind;

    /// A synthetic cell passing over a place fills the outbox with one post
    /// per kind, each with a decodable GIF. With RAINCAST_NOTIFIER_SAMPLE_DIR
    /// set, the outbox is kept there (how docs/notifier-sample.* was made).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passing_cell_fills_the_outbox() {
        let keep = std::env::var_os("RAINCAST_NOTIFIER_SAMPLE_DIR");
        let tmp = raincast_testkit::TempDir::new("notifier-outbox");
        let dir = keep
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| tmp.path().to_path_buf());
        let mut place = Place::new("Brussels", 50.85, 4.35)
            .with_time_zone("Europe/Brussels")
            .expect("zone");
        place.clearing = true;
        place.hashtags = vec!["Brussels".into(), "rain".into()];
        let far = Place::new("Far away", 50.85, 7.5); // off the grid: ignored
        let n = Notifier::new(
            Claims::in_memory("a", chrono::Duration::minutes(10)),
            OutboxPublisher::new(&dir),
        );
        let mut reports = Vec::new();
        for base in (0..=130).step_by(5) {
            let mut lib = FrameLibrary::new();
            lib.insert(frames(base));
            let jobs = jobs_for(
                lib.get("synthetic").expect("frames"),
                &[place.clone(), far.clone()],
            );
            assert_eq!(jobs.len(), 1);
            let now = t0() + Duration::minutes(base);
            reports.extend(n.run_once(&jobs, &lib, now).await.expect("pass"));
        }
        let kinds: Vec<EventKind> = reports.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, EventKind::ALL.to_vec(), "{reports:#?}");
        for r in &reports {
            assert_eq!(r.status, ReportStatus::Posted);
            assert!(r.gif_bytes > 10_000, "{r:?}");
            eprintln!("{} | {} | {} bytes", r.key, r.text, r.gif_bytes);
            let stem = OutboxPublisher::stem(&r.key);
            let gif = std::fs::read(dir.join(format!("{stem}.gif"))).expect("gif file");
            let mut dec = gif::DecodeOptions::new()
                .read_info(std::io::Cursor::new(&gif))
                .expect("decodes");
            let mut frames_n = 0;
            while dec.read_next_frame().expect("frame").is_some() {
                frames_n += 1;
            }
            assert_eq!(frames_n, 25);
            let text = std::fs::read_to_string(dir.join(format!("{stem}.txt"))).expect("txt");
            assert_eq!(text, r.text);
        }
    }
}
