//! Animated GIF of rain frames: the past hour and the nowcast, with a
//! per-frame label, a legend, and optional orientation aids (a place marker
//! with its name, range rings, the radar's coverage outline).
//!
//! Image layout, top to bottom (all sizes scale with the font scale `s`,
//! 1–3 depending on the image width):
//! * **header** (11·s px): a tag `OBSERVED` (blue) or `FORECAST +N MIN`
//!   (orange), the frame's time, and an optional title on the right;
//! * **timeline** (2·s px): one segment per frame, observed blue, forecast
//!   orange, the current frame white;
//! * **map**: the field, nearest-neighbour resampled so the long side fits
//!   the size limit; no rain = background, no data = grey hatch, rain in the
//!   [`RAIN_SCALE`](super::RAIN_SCALE) colours; the map gets a 1·s px border in the
//!   frame's tag colour so observed and forecast frames differ at a glance;
//!   under the rain (drawn only where a pixel is dry or has no data), the
//!   embedded basemap ([`crate::basemap`]): coastlines, country borders, lake
//!   shores, and the large towns with their names, projected through the
//!   grid's own projection;
//! * **legend** (16·s px): the unit, one swatch per band labelled with its
//!   lower bound, and the no-data hatch.
//!
//! Size: one global palette of 27 colours (so LZW codes start at 5 bits and
//! no frame carries its own palette); every frame after the first covers only
//! the bounding box of the pixels that changed, and inside it unchanged pixels
//! are transparent, so a mostly static scene costs little. The animation
//! loops forever.

use super::font::{self, CAP_H, CAP_TOP, GAP, GLYPH_W};
use super::lzw;
use super::{class_code, RenderError, CLASS_BAND0, CLASS_NO_RAIN, RAIN_SCALE};
use crate::basemap::{Basemap, LineKind};
use crate::grid::Grid;
use chrono::{DateTime, Duration, Utc};
use ndarray::ArrayView2;
use std::borrow::Cow;

/// Largest width or height of an animation in pixels (X/Twitter-friendly).
pub const MAX_GIF_SIDE_PX: u32 = 1280;
/// Smallest width of an animation: narrower maps are centred on a wider canvas
/// so the header and legend stay legible.
pub const MIN_GIF_WIDTH_PX: u32 = 320;
/// Largest number of frames in one animation.
pub const MAX_FRAMES: usize = 240;

// Palette indices. Index 0 is the transparent colour of difference frames
// and, in the overlay layer, "nothing drawn".
const P_TRANSPARENT: u8 = 0;
const P_BACKGROUND: u8 = 1;
const P_NODATA: u8 = 2;
const P_NODATA_HATCH: u8 = 3;
const P_BAND0: u8 = 4; // bands 0..=8 → 4..=12
const P_WHITE: u8 = 13;
const P_INK: u8 = 14;
const P_CHROME: u8 = 15;
const P_OBSERVED: u8 = 16;
const P_FORECAST: u8 = 17;
const P_OUTLINE: u8 = 18;
const P_RING: u8 = 19;
const P_MUTED: u8 = 20;
const P_OBSERVED_DIM: u8 = 21;
const P_FORECAST_DIM: u8 = 22;
const P_COAST: u8 = 23;
const P_BORDER: u8 = 24;
const P_LAKE: u8 = 25;
const P_TOWN: u8 = 26;
/// LZW minimum code size: the palette has fewer than 32 entries.
const MIN_CODE_SIZE: u8 = 5;

/// Colour of the basemap's coastlines.
pub const BASEMAP_COAST_RGB: [u8; 3] = [60, 95, 150];
/// Colour of the basemap's country borders.
pub const BASEMAP_BORDER_RGB: [u8; 3] = [150, 110, 150];
/// Colour of the basemap's lake shores.
pub const BASEMAP_LAKE_RGB: [u8; 3] = [70, 140, 210];
/// Colour of the basemap's town dots and names.
pub const BASEMAP_TOWN_RGB: [u8; 3] = [95, 95, 110];

/// RGB of every palette index, in index order.
fn palette_rgb() -> Vec<u8> {
    let mut p: Vec<[u8; 3]> = vec![
        [255, 0, 255],   // transparent (never shown)
        [236, 236, 228], // background: dry land
        [208, 208, 208], // no data
        [176, 176, 176], // no-data hatch
    ];
    p.extend(RAIN_SCALE.iter().map(|b| [b.rgba[0], b.rgba[1], b.rgba[2]]));
    p.extend([
        [255, 255, 255], // white text
        [20, 22, 28],    // ink
        [42, 46, 56],    // header / legend background
        [40, 110, 200],  // observed tag
        [240, 140, 20],  // forecast tag
        [70, 70, 78],    // coverage outline
        [105, 105, 120], // range rings
        [170, 175, 185], // muted text
        [70, 95, 135],   // timeline: other observed frames
        [140, 95, 50],   // timeline: other forecast frames
        BASEMAP_COAST_RGB,
        BASEMAP_BORDER_RGB,
        BASEMAP_LAKE_RGB,
        BASEMAP_TOWN_RGB,
    ]);
    p.into_iter().flatten().collect()
}

/// Whether a frame shows a measurement or a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A stored radar scan.
    Observed,
    /// A nowcast frame `lead_min` minutes after the latest scan.
    Forecast { lead_min: u32 },
}

/// One frame of an animation.
#[derive(Debug, Clone)]
pub struct AnimationFrame<'a> {
    /// Rain rate in mm/h on the animation's grid, row 0 north; `NaN` = no data.
    pub rate_mm_h: ArrayView2<'a, f32>,
    /// Valid time (UTC).
    pub time: DateTime<Utc>,
    /// Observed or forecast.
    pub kind: FrameKind,
}

/// A place drawn on the map: a black-and-white dot and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// WGS84 longitude, degrees.
    pub lon: f64,
    /// WGS84 latitude, degrees.
    pub lat: f64,
    /// Label drawn beside the dot (see [`font`] for the characters drawn).
    pub name: String,
}

/// Dotted rings at `step_km`, `2·step_km`, … around a point (usually the
/// radar or the place), each labelled with its radius.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRings {
    /// WGS84 longitude of the centre, degrees.
    pub lon: f64,
    /// WGS84 latitude of the centre, degrees.
    pub lat: f64,
    /// Distance between rings in km (> 0).
    pub step_km: f64,
    /// Number of rings (at most 20 are drawn).
    pub count: u32,
}

/// How to draw an animation.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimationOptions {
    /// Largest width and height in pixels; clamped to
    /// `MIN_GIF_WIDTH_PX..=MAX_GIF_SIDE_PX`.
    pub max_side_px: u32,
    /// Delay of every frame but the last, in 1/100 s.
    pub frame_delay_cs: u16,
    /// Delay of the last frame before the loop restarts, in 1/100 s.
    pub last_frame_delay_cs: u16,
    /// Optional title drawn on the right of the header (e.g. the radar name).
    pub title: Option<String>,
    /// Optional place marker.
    pub marker: Option<Marker>,
    /// Optional range rings.
    pub rings: Option<RangeRings>,
    /// Draw the edge of the radar's coverage (data / no-data boundary of the
    /// latest observed frame).
    pub coverage_outline: bool,
    /// Offset added to UTC for the time labels, in seconds (e.g. 7200 for CEST).
    pub utc_offset_s: i32,
    /// Zone name printed after the time (e.g. `UTC`, `CEST`).
    pub zone_label: String,
    /// Draw the embedded basemap under the rain (coastlines, borders, lakes,
    /// large towns).
    pub basemap: bool,
}

impl Default for AnimationOptions {
    fn default() -> Self {
        Self {
            max_side_px: MAX_GIF_SIDE_PX,
            frame_delay_cs: 50,
            last_frame_delay_cs: 200,
            title: None,
            marker: None,
            rings: None,
            coverage_outline: true,
            utc_offset_s: 0,
            zone_label: "UTC".to_string(),
            basemap: true,
        }
    }
}

/// A pixel rectangle: `x`, `y` of the top-left corner, width `w`, height `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The pixel at the centre.
    pub fn centre(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

/// Where everything sits in an animation of a given grid shape.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimationLayout {
    /// Canvas width in pixels.
    pub width: u32,
    /// Canvas height in pixels.
    pub height: u32,
    /// Font scale (1–3): each font pixel is `font_scale` pixels square.
    pub font_scale: u32,
    /// Frame label strip.
    pub header: Rect,
    /// Frame position strip.
    pub timeline: Rect,
    /// The field.
    pub map: Rect,
    /// The legend strip.
    pub legend: Rect,
    /// One swatch per band of [`RAIN_SCALE`], in order.
    pub band_swatches: Vec<Rect>,
    /// The no-data swatch (hatched).
    pub no_data_swatch: Rect,
}

const UNIT_LABEL: &str = "MM/H";
const NO_DATA_LABEL: &str = "NO DATA";

fn font_scale_for(width: u32) -> u32 {
    if width >= 960 {
        3
    } else if width >= 512 {
        2
    } else {
        1
    }
}

fn chrome_height(s: u32) -> u32 {
    11 * s + 2 * s + 16 * s
}

/// Computes the layout for a `rows × cols` field (see the module docs).
pub fn animation_layout(
    rows: usize,
    cols: usize,
    opts: &AnimationOptions,
) -> Result<AnimationLayout, RenderError> {
    if rows == 0 || cols == 0 {
        return Err(RenderError::EmptyField { rows, cols });
    }
    let max_side = opts.max_side_px.clamp(MIN_GIF_WIDTH_PX, MAX_GIF_SIDE_PX);
    let (rows_f, cols_f) = (rows as f64, cols as f64);
    let long = rows_f.max(cols_f);
    let mut s = 2;
    let (mut map_w, mut map_h, mut width) = (0u32, 0u32, 0u32);
    for _ in 0..4 {
        let avail_h = max_side.saturating_sub(chrome_height(s)).max(1) as f64;
        let f = (long.clamp(MIN_GIF_WIDTH_PX as f64, max_side as f64) / long)
            .min(avail_h / rows_f)
            .min(max_side as f64 / cols_f);
        map_w = ((cols_f * f).round() as u32).clamp(1, max_side);
        map_h = ((rows_f * f).round() as u32).clamp(1, avail_h as u32);
        width = map_w.max(MIN_GIF_WIDTH_PX);
        let new_s = font_scale_for(width);
        if new_s == s {
            break;
        }
        s = new_s;
    }
    let header = Rect {
        x: 0,
        y: 0,
        w: width,
        h: 11 * s,
    };
    let timeline = Rect {
        x: 0,
        y: header.h,
        w: width,
        h: 2 * s,
    };
    let map = Rect {
        x: (width - map_w) / 2,
        y: timeline.y + timeline.h,
        w: map_w,
        h: map_h,
    };
    let legend = Rect {
        x: 0,
        y: map.y + map.h,
        w: width,
        h: 16 * s,
    };
    let pad = 2 * s;
    let x0 = pad + font::text_width(UNIT_LABEL, s) + 3 * s;
    let right = 4 * s + font::text_width(NO_DATA_LABEL, s) + pad;
    let sw = (width.saturating_sub(x0 + right) / RAIN_SCALE.len() as u32).max(1);
    let band_swatches = (0..RAIN_SCALE.len() as u32)
        .map(|i| Rect {
            x: x0 + i * sw,
            y: legend.y + pad,
            w: sw,
            h: 4 * s,
        })
        .collect();
    let no_data_swatch = Rect {
        x: x0 + RAIN_SCALE.len() as u32 * sw + 4 * s,
        y: legend.y + pad,
        w: 6 * s,
        h: 4 * s,
    };
    Ok(AnimationLayout {
        width,
        height: legend.y + legend.h,
        font_scale: s,
        header,
        timeline,
        map,
        legend,
        band_swatches,
        no_data_swatch,
    })
}

/// An indexed-colour pixel buffer with clipped drawing primitives.
struct Canvas {
    w: i64,
    h: i64,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32, fill: u8) -> Self {
        Self {
            w: w as i64,
            h: h as i64,
            px: vec![fill; w as usize * h as usize],
        }
    }

    #[inline]
    fn set(&mut self, x: i64, y: i64, c: u8) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            self.px[(y * self.w + x) as usize] = c;
        }
    }

    fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, c: u8) {
        let (x0, y0) = (x.max(0), y.max(0));
        let (x1, y1) = ((x + w).min(self.w), (y + h).min(self.h));
        for yy in y0..y1 {
            let row = (yy * self.w) as usize;
            if x1 > x0 {
                self.px[row + x0 as usize..row + x1 as usize].fill(c);
            }
        }
    }

    fn fill_rect(&mut self, r: Rect, c: u8) {
        self.fill(r.x as i64, r.y as i64, r.w as i64, r.h as i64, c);
    }

    fn text(&mut self, x: i64, y: i64, s: u32, text: &str, c: u8) {
        let s = s as i64;
        let mut gx = x;
        for ch in text.chars() {
            if gx >= self.w {
                break;
            }
            let (first, width) = font::ink_columns(ch);
            // `y` is the top of the capitals: accent rows go above it.
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                let gy = y + (row as i64 - CAP_TOP as i64) * s;
                for col in 0..width as i64 {
                    let bit = GLYPH_W as i64 - 1 - (first as i64 + col);
                    if bits & (1 << bit) != 0 {
                        self.fill(gx + col * s, gy, s, s, c);
                    }
                }
            }
            gx += (width + GAP) as i64 * s;
        }
    }

    /// Text with a one-font-pixel halo, legible over any colour.
    fn text_halo(&mut self, x: i64, y: i64, s: u32, text: &str, fg: u8, halo: u8) {
        let d = s as i64;
        for (dx, dy) in [
            (-d, 0),
            (d, 0),
            (0, -d),
            (0, d),
            (-d, -d),
            (d, d),
            (-d, d),
            (d, -d),
        ] {
            self.text(x + dx, y + dy, s, text, halo);
        }
        self.text(x, y, s, text, fg);
    }

    fn disc(&mut self, cx: i64, cy: i64, r: i64, c: u8) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r {
                    self.set(cx + dx, cy + dy, c);
                }
            }
        }
    }
}

/// Class codes (see [`class_code`]) of every cell, row-major, into `out`.
fn classify(field: &ArrayView2<f32>, out: &mut Vec<u8>) {
    out.clear();
    match field.as_slice() {
        Some(s) => out.extend(s.iter().map(|v| class_code(*v))),
        None => out.extend(field.iter().map(|v| class_code(*v))),
    }
}

fn hatch(x: u32, y: u32, s: u32) -> u8 {
    if (x + y) % (4 * s) < s {
        P_NODATA_HATCH
    } else {
        P_NODATA
    }
}

fn tag_text(kind: FrameKind) -> String {
    match kind {
        FrameKind::Observed => "OBSERVED".to_string(),
        FrameKind::Forecast { lead_min } => format!("FORECAST +{lead_min} MIN"),
    }
}

fn time_text(t: DateTime<Utc>, opts: &AnimationOptions) -> String {
    let local = t + Duration::seconds(opts.utc_offset_s as i64);
    format!("{} {}", local.format("%Y-%m-%d %H:%M"), opts.zone_label)
}

/// Static drawings over the map (outline, rings, marker); 0 = nothing.
fn build_overlay(
    grid: &Grid,
    reference: ArrayView2<f32>,
    lay: &AnimationLayout,
    row_of: &[usize],
    col_of: &[usize],
    opts: &AnimationOptions,
) -> Canvas {
    let (mw, mh) = (lay.map.w, lay.map.h);
    let s = lay.font_scale;
    let mut ov = Canvas::new(mw, mh, P_TRANSPARENT);
    let (fy, fx) = (mh as f64 / grid.rows as f64, mw as f64 / grid.cols as f64);
    let to_px = |lon: f64, lat: f64| -> Option<(f64, f64)> {
        let (r, c) = grid.lonlat_to_rowcol(lon, lat).ok()?;
        (r.is_finite() && c.is_finite()).then_some((c * fx, r * fy))
    };
    if let Some(rings) = &opts.rings {
        if let Some((cx, cy)) = to_px(rings.lon, rings.lat) {
            let px_per_km = 1000.0 / grid.cell_m() * fy;
            let dot = s.div_ceil(2) as i64;
            let label_s = s.saturating_sub(1).max(1);
            for k in 1..=rings.count.min(20) {
                let km = rings.step_km * k as f64;
                let r = km * px_per_km;
                if !(r.is_finite() && r >= 2.0) || r > 4.0 * (mw.max(mh) as f64) {
                    continue;
                }
                let n = (2.0 * std::f64::consts::PI * r).ceil() as usize;
                for i in 0..n {
                    // Dotted: 3 px on, 3 px off along the circumference.
                    if (i / 3) % 2 == 1 {
                        continue;
                    }
                    let a = i as f64 / r;
                    let (x, y) = (cx + r * a.cos(), cy + r * a.sin());
                    ov.fill(x as i64, y as i64, dot, dot, P_RING);
                }
                let label = format!("{} KM", km.round() as i64);
                let tw = font::text_width(&label, label_s) as i64;
                ov.text_halo(
                    cx as i64 - tw / 2,
                    (cy - r) as i64 + 2 * label_s as i64,
                    label_s,
                    &label,
                    P_INK,
                    P_BACKGROUND,
                );
            }
        }
    }
    if opts.coverage_outline {
        let finite =
            |x: u32, y: u32| reference[[row_of[y as usize], col_of[x as usize]]].is_finite();
        for y in 0..mh {
            for x in 0..mw {
                if !finite(x, y) {
                    continue;
                }
                let edge = (x > 0 && !finite(x - 1, y))
                    || (x + 1 < mw && !finite(x + 1, y))
                    || (y > 0 && !finite(x, y - 1))
                    || (y + 1 < mh && !finite(x, y + 1));
                if edge {
                    ov.set(x as i64, y as i64, P_OUTLINE);
                }
            }
        }
    }
    if let Some(m) = &opts.marker {
        if let Some((x, y)) = to_px(m.lon, m.lat) {
            let (x, y) = (x as i64, y as i64);
            let si = s as i64;
            ov.disc(x, y, 3 * si, P_INK);
            ov.disc(x, y, 2 * si, P_WHITE);
            ov.disc(x, y, (si - 1).max(0), P_INK);
            let tw = font::text_width(&m.name, s) as i64;
            let ty = y - (CAP_H as i64 * si) / 2;
            let tx = if x + 5 * si + tw < mw as i64 {
                x + 5 * si
            } else {
                x - 5 * si - tw
            };
            ov.text_halo(tx, ty, s, &m.name, P_WHITE, P_INK);
        }
    }
    ov
}

/// Smallest town drawn on a GIF, inhabitants.
const MIN_TOWN_POPULATION: u32 = 100_000;

/// The basemap layer (drawn under the rain): coastlines, borders and lake
/// shores of the embedded basemap projected onto the grid, and the large
/// towns as a dot and their name; 0 = nothing. Towns whose label would
/// overlap one already placed (larger towns first) or the place marker are
/// left out.
fn build_basemap(grid: &Grid, lay: &AnimationLayout, opts: &AnimationOptions) -> Canvas {
    let (mw, mh) = (lay.map.w, lay.map.h);
    let mut base = Canvas::new(mw, mh, P_TRANSPARENT);
    if !opts.basemap {
        return base;
    }
    let Ok((w, s, e, n)) = grid.bounds_lonlat() else {
        return base;
    };
    let bm = Basemap::embedded();
    let (fy, fx) = (mh as f64 / grid.rows as f64, mw as f64 / grid.cols as f64);
    let limit = 2.0 * f64::from(mw + mh);
    let margin = 0.5;
    let bbox = (w - margin, s - margin, e + margin, n + margin);
    // Lake shores last: they sit on top of a border running through a lake.
    for kind in [LineKind::Border, LineKind::Coast, LineKind::Lake] {
        let colour = match kind {
            LineKind::Coast => P_COAST,
            LineKind::Border => P_BORDER,
            LineKind::Lake => P_LAKE,
        };
        for line in bm.lines_in(bbox).filter(|l| l.kind == kind) {
            let lonlat: Vec<(f64, f64)> = line
                .points
                .iter()
                .map(|&(x, y)| (bm.deg(x), bm.deg(y)))
                .collect();
            let px: Vec<(f64, f64)> = grid
                .lonlat_to_rowcol_many(&lonlat)
                .into_iter()
                .map(|(r, c)| (c * fx, r * fy))
                .collect();
            for seg in px.windows(2) {
                let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
                if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
                    continue;
                }
                let len = (x1 - x0).abs().max((y1 - y0).abs());
                // Off the map on one side, or a projection wrap-around.
                if len > limit
                    || (x0.max(x1) < 0.0)
                    || (y0.max(y1) < 0.0)
                    || x0.min(x1) >= f64::from(mw)
                    || y0.min(y1) >= f64::from(mh)
                {
                    continue;
                }
                let steps = len.ceil().max(1.0) as usize;
                for i in 0..=steps {
                    let t = i as f64 / steps as f64;
                    base.set(
                        (x0 + t * (x1 - x0)).floor() as i64,
                        (y0 + t * (y1 - y0)).floor() as i64,
                        colour,
                    );
                }
            }
        }
    }
    // Towns: a dot and the name at the smallest font scale.
    let s = lay.font_scale.saturating_sub(1).max(1);
    let si = i64::from(s);
    let mut placed: Vec<(i64, i64, i64, i64)> = Vec::new();
    if let Some(m) = &opts.marker {
        if let Ok((r, c)) = grid.lonlat_to_rowcol(m.lon, m.lat) {
            let (x, y) = ((c * fx) as i64, (r * fy) as i64);
            let sm = i64::from(lay.font_scale);
            let tw = font::text_width(&m.name, lay.font_scale) as i64;
            placed.push((x - tw - 6 * sm, y - 6 * sm, x + tw + 6 * sm, y + 6 * sm));
        }
    }
    // One projection set-up for every town (as for the lines above).
    let towns: Vec<_> = bm.towns_in(bbox, MIN_TOWN_POPULATION).collect();
    let lonlat: Vec<(f64, f64)> = towns.iter().map(|t| (t.lon, t.lat)).collect();
    for (t, (r, c)) in towns.iter().zip(grid.lonlat_to_rowcol_many(&lonlat)) {
        let (x, y) = (c * fx, r * fy);
        if !(x >= 0.0 && y >= 0.0 && x < f64::from(mw) && y < f64::from(mh)) {
            continue;
        }
        let (x, y) = (x as i64, y as i64);
        let tw = font::text_width(&t.name, s) as i64;
        let rect = (x - si, y - 5 * si, x + 3 * si + tw, y + 5 * si);
        let overlaps = placed
            .iter()
            .any(|p| rect.0 < p.2 && p.0 < rect.2 && rect.1 < p.3 && p.1 < rect.3);
        if overlaps || rect.2 > i64::from(mw) {
            continue;
        }
        placed.push(rect);
        base.fill(x - si, y - si, 2 * si, 2 * si, P_TOWN);
        base.text(x + 3 * si, y - (CAP_H as i64 * si) / 2, s, &t.name, P_TOWN);
    }
    base
}

fn draw_legend(c: &mut Canvas, lay: &AnimationLayout) {
    let s = lay.font_scale;
    c.fill_rect(lay.legend, P_CHROME);
    let pad = 2 * s;
    let label_y = (lay.legend.y + pad + 4 * s + 2 * s) as i64;
    c.text(pad as i64, label_y, s, UNIT_LABEL, P_MUTED);
    for (i, (band, r)) in RAIN_SCALE.iter().zip(&lay.band_swatches).enumerate() {
        c.fill_rect(*r, P_BAND0 + i as u8);
        c.text(r.x as i64, label_y, s, band.label, P_WHITE);
    }
    let nd = lay.no_data_swatch;
    for y in nd.y..nd.y + nd.h {
        for x in nd.x..nd.x + nd.w {
            c.set(x as i64, y as i64, hatch(x, y, s));
        }
    }
    c.text(nd.x as i64, label_y, s, NO_DATA_LABEL, P_WHITE);
}

#[allow(clippy::too_many_arguments)]
fn draw_frame(
    c: &mut Canvas,
    lay: &AnimationLayout,
    frames: &[AnimationFrame],
    k: usize,
    codes: &[u8],
    overlay: &Canvas,
    base: &Canvas,
    row_of: &[usize],
    col_of: &[usize],
    opts: &AnimationOptions,
) {
    let s = lay.font_scale;
    let si = s as i64;
    let frame = &frames[k];
    let observed = frame.kind == FrameKind::Observed;
    // Header.
    c.fill_rect(lay.header, P_CHROME);
    let tag = tag_text(frame.kind);
    let tag_w = font::text_width(&tag, s) as i64 + 4 * si;
    let (tag_bg, tag_fg) = if observed {
        (P_OBSERVED, P_WHITE)
    } else {
        (P_FORECAST, P_INK)
    };
    c.fill(2 * si, si, tag_w, 9 * si, tag_bg);
    c.text(4 * si, 2 * si, s, &tag, tag_fg);
    let time = time_text(frame.time, opts);
    let time_x = 2 * si + tag_w + 3 * si;
    c.text(time_x, 2 * si, s, &time, P_WHITE);
    if let Some(title) = &opts.title {
        let tw = font::text_width(title, s) as i64;
        let tx = lay.width as i64 - 2 * si - tw;
        if tx > time_x + font::text_width(&time, s) as i64 + 4 * si {
            c.text(tx, 2 * si, s, title, P_MUTED);
        }
    }
    // Timeline.
    c.fill_rect(lay.timeline, P_CHROME);
    let n = frames.len() as i64;
    let w = lay.width as i64;
    for (i, f) in frames.iter().enumerate() {
        let (x0, x1) = (i as i64 * w / n, (i as i64 + 1) * w / n);
        let seg = if x1 - x0 >= 3 { x1 - x0 - 1 } else { x1 - x0 };
        let col = if i == k {
            P_WHITE
        } else if f.kind == FrameKind::Observed {
            P_OBSERVED_DIM
        } else {
            P_FORECAST_DIM
        };
        c.fill(x0, lay.timeline.y as i64, seg, lay.timeline.h as i64, col);
    }
    // Map.
    let m = lay.map;
    let cw = c.w as usize;
    let cols = frame.rate_mm_h.ncols();
    // Class code → palette index (no data is hatched below).
    let mut lut = [P_NODATA; 16];
    lut[CLASS_NO_RAIN as usize] = P_BACKGROUND;
    for i in 0..RAIN_SCALE.len() {
        lut[CLASS_BAND0 as usize + i] = P_BAND0 + i as u8;
    }
    for y in 0..m.h as usize {
        let code_row = &codes[row_of[y] * cols..(row_of[y] + 1) * cols];
        let ov_row = &overlay.px[y * m.w as usize..(y + 1) * m.w as usize];
        let base_row = &base.px[y * m.w as usize..(y + 1) * m.w as usize];
        let start = (m.y as usize + y) * cw + m.x as usize;
        let dst = &mut c.px[start..start + m.w as usize];
        for (((d, ov), b), &col) in dst.iter_mut().zip(ov_row).zip(base_row).zip(col_of) {
            *d = if *ov != P_TRANSPARENT {
                *ov
            } else {
                let v = lut[(code_row[col] & 15) as usize];
                // The basemap shows where it is dry or there is no data.
                if *b != P_TRANSPARENT && (v == P_BACKGROUND || v == P_NODATA) {
                    *b
                } else {
                    v
                }
            };
        }
        // Hatch the no-data pixels of this row.
        for (x, (d, ov)) in dst.iter_mut().zip(ov_row).enumerate() {
            if *d == P_NODATA && *ov == P_TRANSPARENT {
                *d = hatch(x as u32, y as u32, s);
            }
        }
    }
    // Border in the tag colour marks observed vs forecast on the map itself.
    let (mx, my, mw, mh) = (m.x as i64, m.y as i64, m.w as i64, m.h as i64);
    c.fill(mx, my, mw, si, tag_bg);
    c.fill(mx, my + mh - si, mw, si, tag_bg);
    c.fill(mx, my, si, mh, tag_bg);
    c.fill(mx + mw - si, my, si, mh, tag_bg);
}

/// Renders frames (oldest first) into an animated, forever-looping GIF.
///
/// Every frame must have the grid's shape. The canvas size comes from
/// [`animation_layout`]; it never exceeds [`MAX_GIF_SIDE_PX`] on either side.
pub fn render_animation(
    grid: &Grid,
    frames: &[AnimationFrame],
    opts: &AnimationOptions,
) -> Result<Vec<u8>, RenderError> {
    if frames.is_empty() {
        return Err(RenderError::NoFrames);
    }
    if frames.len() > MAX_FRAMES {
        return Err(RenderError::TooManyFrames {
            frames: frames.len(),
            limit: MAX_FRAMES,
        });
    }
    for (index, f) in frames.iter().enumerate() {
        let (rows, cols) = f.rate_mm_h.dim();
        if (rows, cols) != (grid.rows, grid.cols) {
            return Err(RenderError::ShapeMismatch {
                index,
                rows,
                cols,
                grid_rows: grid.rows,
                grid_cols: grid.cols,
            });
        }
    }
    let lay = animation_layout(grid.rows, grid.cols, opts)?;
    let (mw, mh) = (lay.map.w as usize, lay.map.h as usize);
    // Nearest-neighbour lookup: output pixel centre → source cell.
    let row_of: Vec<usize> = (0..mh)
        .map(|y| ((2 * y + 1) * grid.rows / (2 * mh)).min(grid.rows - 1))
        .collect();
    let col_of: Vec<usize> = (0..mw)
        .map(|x| ((2 * x + 1) * grid.cols / (2 * mw)).min(grid.cols - 1))
        .collect();
    let reference = frames
        .iter()
        .rev()
        .find(|f| f.kind == FrameKind::Observed)
        .unwrap_or(&frames[0]);
    let overlay = build_overlay(grid, reference.rate_mm_h, &lay, &row_of, &col_of, opts);
    let base = build_basemap(grid, &lay, opts);

    let gif_err = |e: gif::EncodingError| RenderError::Encode {
        format: "GIF",
        reason: e.to_string(),
    };
    let (w, h) = (lay.width, lay.height);
    let mut enc = gif::Encoder::new(
        Vec::with_capacity(64 * 1024),
        w as u16,
        h as u16,
        &palette_rgb(),
    )
    .map_err(gif_err)?;
    enc.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;

    let mut cur = Canvas::new(w, h, P_BACKGROUND);
    draw_legend(&mut cur, &lay);
    let mut prev = Canvas::new(w, h, P_BACKGROUND);
    prev.px.copy_from_slice(&cur.px);
    let mut sub: Vec<u8> = Vec::with_capacity(cur.px.len());
    let (wu, hu) = (w as usize, h as usize);
    let mut lzw = lzw::LzwEncoder::default();
    let mut codes: Vec<u8> = Vec::with_capacity(grid.rows * grid.cols);
    for k in 0..frames.len() {
        classify(&frames[k].rate_mm_h, &mut codes);
        draw_frame(
            &mut cur, &lay, frames, k, &codes, &overlay, &base, &row_of, &col_of, opts,
        );
        let delay = if k + 1 == frames.len() {
            opts.last_frame_delay_cs
        } else {
            opts.frame_delay_cs
        };
        let mut frame = gif::Frame {
            delay,
            dispose: gif::DisposalMethod::Keep,
            ..gif::Frame::default()
        };
        if k == 0 {
            frame.width = w as u16;
            frame.height = h as u16;
            frame.buffer = Cow::Owned(lzw.encode(&cur.px, MIN_CODE_SIZE));
            enc.write_lzw_pre_encoded_frame(&frame).map_err(gif_err)?;
        } else {
            // Bounding box of the changed pixels.
            let (mut x0, mut y0, mut x1, mut y1) = (wu, hu, 0usize, 0usize);
            for y in 0..hu {
                let (a, b) = (
                    &cur.px[y * wu..(y + 1) * wu],
                    &prev.px[y * wu..(y + 1) * wu],
                );
                if a == b {
                    continue;
                }
                let first = a.iter().zip(b).position(|(p, q)| p != q).unwrap_or(0);
                let last = a.iter().zip(b).rposition(|(p, q)| p != q).unwrap_or(wu - 1);
                x0 = x0.min(first);
                x1 = x1.max(last + 1);
                y0 = y0.min(y);
                y1 = y + 1;
            }
            sub.clear();
            if x1 <= x0 {
                // Nothing changed: a single transparent pixel keeps the timing.
                (x0, y0, x1, y1) = (0, 0, 1, 1);
                sub.push(P_TRANSPARENT);
            } else {
                for y in y0..y1 {
                    let a = &cur.px[y * wu + x0..y * wu + x1];
                    let b = &prev.px[y * wu + x0..y * wu + x1];
                    sub.extend(
                        a.iter()
                            .zip(b)
                            .map(|(p, q)| if p == q { P_TRANSPARENT } else { *p }),
                    );
                }
            }
            frame.left = x0 as u16;
            frame.top = y0 as u16;
            frame.width = (x1 - x0) as u16;
            frame.height = (y1 - y0) as u16;
            frame.transparent = Some(P_TRANSPARENT);
            frame.buffer = Cow::Owned(lzw.encode(&sub, MIN_CODE_SIZE));
            enc.write_lzw_pre_encoded_frame(&frame).map_err(gif_err)?;
        }
        prev.px.copy_from_slice(&cur.px);
    }
    enc.into_inner().map_err(gif_err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ndarray::Array2;

    fn grid(rows: usize, cols: usize, cell_m: f64) -> Grid {
        let half_w = cols as f64 * cell_m / 2.0;
        let half_h = rows as f64 * cell_m / 2.0;
        Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            rows,
            cols,
            cell_m,
            cell_m,
            -half_w,
            half_h,
        )
        .unwrap()
    }

    /// A rain blob moving east, every band present, no data in one corner.
    fn fields(rows: usize, cols: usize, n: usize) -> Vec<Array2<f32>> {
        (0..n)
            .map(|k| {
                Array2::from_shape_fn((rows, cols), |(r, c)| {
                    if r < rows / 8 && c < cols / 8 {
                        return f32::NAN;
                    }
                    let (cy, cx) = (rows as f32 / 2.0, cols as f32 * (0.3 + 0.02 * k as f32));
                    let d2 = ((r as f32 - cy).powi(2) + (c as f32 - cx).powi(2))
                        / (rows as f32 / 6.0).powi(2);
                    let v = 150.0 * (-d2).exp();
                    if v < 0.05 {
                        0.0
                    } else {
                        v
                    }
                })
            })
            .collect()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap()
    }

    fn frames_of(fields: &[Array2<f32>], observed: usize) -> Vec<AnimationFrame<'_>> {
        fields
            .iter()
            .enumerate()
            .map(|(k, f)| AnimationFrame {
                rate_mm_h: f.view(),
                time: t0() + Duration::minutes(5 * k as i64),
                kind: if k < observed {
                    FrameKind::Observed
                } else {
                    FrameKind::Forecast {
                        lead_min: 5 * (k + 1 - observed) as u32,
                    }
                },
            })
            .collect()
    }

    /// Decodes a GIF and returns (width, height, composited RGBA of every frame).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<Vec<u8>>) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(std::io::Cursor::new(bytes)).unwrap();
        let (w, h) = (d.width() as usize, d.height() as usize);
        let mut canvas = vec![0u8; w * h * 4];
        let mut out = Vec::new();
        while let Some(f) = d.read_next_frame().unwrap() {
            let (fl, ft, fw, fh) = (
                f.left as usize,
                f.top as usize,
                f.width as usize,
                f.height as usize,
            );
            assert!(fl + fw <= w && ft + fh <= h, "frame outside the canvas");
            assert_eq!(f.dispose, gif::DisposalMethod::Keep);
            for y in 0..fh {
                for x in 0..fw {
                    let s = 4 * (y * fw + x);
                    if f.buffer[s + 3] != 0 {
                        let dst = 4 * ((ft + y) * w + fl + x);
                        canvas[dst..dst + 4].copy_from_slice(&f.buffer[s..s + 4]);
                    }
                }
            }
            out.push(canvas.clone());
        }
        (w as u32, h as u32, out)
    }

    fn rgb_at(img: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
        let i = 4 * (y * w + x) as usize;
        [img[i], img[i + 1], img[i + 2]]
    }

    fn pal(i: u8) -> [u8; 3] {
        let p = palette_rgb();
        let i = i as usize * 3;
        [p[i], p[i + 1], p[i + 2]]
    }

    /// Belgium on a 1 km grid centred on Brussels: rain over the west half,
    /// dry east half. The basemap (borders with the Netherlands and Germany,
    /// Liège and its name) shows in the dry half only, and not at all when
    /// turned off.
    #[test]
    fn basemap_is_drawn_under_the_rain() {
        let g = Grid::new(
            "+proj=aeqd +lat_0=50.85 +lon_0=4.35 +ellps=WGS84 +units=m",
            300,
            300,
            1000.0,
            1000.0,
            -150_000.0,
            150_000.0,
        )
        .unwrap();
        let a = Array2::from_shape_fn((300, 300), |(_, c)| if c < 150 { 5.0f32 } else { 0.0 });
        let frames = [AnimationFrame {
            rate_mm_h: a.view(),
            time: t0(),
            kind: FrameKind::Observed,
        }];
        let count = |basemap: bool| {
            let opts = AnimationOptions {
                coverage_outline: false,
                basemap,
                ..AnimationOptions::default()
            };
            let lay = animation_layout(300, 300, &opts).unwrap();
            let (w, _, imgs) = decode(&render_animation(&g, &frames, &opts).unwrap());
            let mut n = std::collections::HashMap::<(u8, bool), usize>::new();
            for y in lay.map.y + 2..lay.map.y + lay.map.h - 2 {
                for x in lay.map.x + 2..lay.map.x + lay.map.w - 2 {
                    let rgb = rgb_at(&imgs[0], w, x, y);
                    let west = x - lay.map.x < lay.map.w / 2;
                    for p in [P_COAST, P_BORDER, P_LAKE, P_TOWN] {
                        if rgb == pal(p) {
                            *n.entry((p, west)).or_default() += 1;
                        }
                    }
                }
            }
            n
        };
        let on = count(true);
        assert!(
            on.get(&(P_BORDER, false)).copied().unwrap_or(0) > 50,
            "{on:?}"
        );
        assert!(
            on.get(&(P_TOWN, false)).copied().unwrap_or(0) > 20,
            "{on:?}"
        );
        // Under the rain: nothing of the basemap in the rainy west half.
        assert!(on.keys().all(|(_, west)| !west), "{on:?}");
        assert!(count(false).is_empty());
    }

    #[test]
    fn every_frame_decodes_with_the_expected_size_and_count() {
        let g = grid(200, 240, 1000.0);
        let f = fields(200, 240, 12);
        let frames = frames_of(&f, 7);
        let opts = AnimationOptions {
            title: Some("TEST RADAR".into()),
            marker: Some(Marker {
                lon: 8.2,
                lat: 47.1,
                name: "Zürich".into(),
            }),
            rings: Some(RangeRings {
                lon: 8.0,
                lat: 47.0,
                step_km: 25.0,
                count: 4,
            }),
            ..AnimationOptions::default()
        };
        let bytes = render_animation(&g, &frames, &opts).unwrap();
        let lay = animation_layout(200, 240, &opts).unwrap();
        let (w, h, imgs) = decode(&bytes);
        assert_eq!((w, h), (lay.width, lay.height));
        assert_eq!(imgs.len(), 12);
        assert!(w <= MAX_GIF_SIDE_PX && h <= MAX_GIF_SIDE_PX);
        assert!(w >= MIN_GIF_WIDTH_PX);
        // Loops forever: the NETSCAPE2.0 extension with 0 repetitions.
        let pos = bytes.windows(11).position(|b| b == b"NETSCAPE2.0").unwrap();
        assert_eq!(&bytes[pos + 11..pos + 15], &[3, 1, 0, 0]);
        // Header tag colour: observed for the first 7 frames, forecast after.
        let tag_px = (2 * lay.font_scale + 1, lay.font_scale + 1);
        for (k, img) in imgs.iter().enumerate() {
            let expect = if k < 7 {
                pal(P_OBSERVED)
            } else {
                pal(P_FORECAST)
            };
            assert_eq!(rgb_at(img, w, tag_px.0, tag_px.1), expect, "frame {k}");
        }
    }

    #[test]
    fn legend_colours_match_the_scale() {
        for (rows, cols) in [(200, 240), (512, 512), (2200, 1900), (40, 600)] {
            let g = grid(rows, cols, 1000.0);
            let f = fields(rows, cols, 2);
            let frames = frames_of(&f, 1);
            let opts = AnimationOptions::default();
            let bytes = render_animation(&g, &frames, &opts).unwrap();
            let lay = animation_layout(rows, cols, &opts).unwrap();
            let (w, h, imgs) = decode(&bytes);
            assert_eq!((w, h), (lay.width, lay.height), "{rows}x{cols}");
            assert!(
                w <= MAX_GIF_SIDE_PX && h <= MAX_GIF_SIDE_PX,
                "{rows}x{cols}: {w}x{h}"
            );
            for img in &imgs {
                for (band, r) in RAIN_SCALE.iter().zip(&lay.band_swatches) {
                    let (x, y) = r.centre();
                    assert_eq!(
                        rgb_at(img, w, x, y),
                        [band.rgba[0], band.rgba[1], band.rgba[2]]
                    );
                }
                let (x, y) = lay.no_data_swatch.centre();
                let c = rgb_at(img, w, x, y);
                assert!(c == pal(P_NODATA) || c == pal(P_NODATA_HATCH));
            }
        }
    }

    #[test]
    fn map_pixels_follow_the_scale() {
        // 1 cell = 2 px at 160x160 (upscaled to 320). No overlays.
        let g = grid(160, 160, 1000.0);
        let mut a = Array2::<f32>::zeros((160, 160));
        a[[10, 10]] = 3.0; // band 3
        a[[100, 50]] = f32::NAN;
        a[[150, 150]] = 120.0; // band 8
        let frames = [AnimationFrame {
            rate_mm_h: a.view(),
            time: t0(),
            kind: FrameKind::Observed,
        }];
        let opts = AnimationOptions {
            coverage_outline: false,
            ..AnimationOptions::default()
        };
        let lay = animation_layout(160, 160, &opts).unwrap();
        assert_eq!((lay.map.w, lay.map.h), (320, 320));
        let (w, _, imgs) = decode(&render_animation(&g, &frames, &opts).unwrap());
        let at = |r: u32, c: u32| rgb_at(&imgs[0], w, lay.map.x + 2 * c + 1, lay.map.y + 2 * r + 1);
        let band = |i: usize| {
            [
                RAIN_SCALE[i].rgba[0],
                RAIN_SCALE[i].rgba[1],
                RAIN_SCALE[i].rgba[2],
            ]
        };
        assert_eq!(at(10, 10), band(3));
        assert_eq!(at(150, 150), band(8));
        assert_eq!(at(60, 60), pal(P_BACKGROUND));
        let nd = at(100, 50);
        assert!(nd == pal(P_NODATA) || nd == pal(P_NODATA_HATCH));
    }

    #[test]
    fn identical_frames_and_single_frame_are_valid() {
        let g = grid(64, 64, 2000.0);
        let a = Array2::<f32>::from_elem((64, 64), 2.0);
        let frames: Vec<_> = (0..3)
            .map(|_| AnimationFrame {
                rate_mm_h: a.view(),
                time: t0(),
                kind: FrameKind::Observed,
            })
            .collect();
        let opts = AnimationOptions::default();
        let lay = animation_layout(64, 64, &opts).unwrap();
        let (w, _, imgs) = decode(&render_animation(&g, &frames, &opts).unwrap());
        assert_eq!(imgs.len(), 3);
        // Only the timeline (current-frame highlight) differs; maps are equal.
        let map_rows = |img: &[u8]| {
            let (a, b) = (
                4 * (lay.map.y * w) as usize,
                4 * ((lay.map.y + lay.map.h) * w) as usize,
            );
            img[a..b].to_vec()
        };
        assert!(map_rows(&imgs[1]) == map_rows(&imgs[2]));
        let (_, _, imgs) =
            decode(&render_animation(&g, &frames[..1], &AnimationOptions::default()).unwrap());
        assert_eq!(imgs.len(), 1);
    }

    #[test]
    fn bad_inputs_give_errors_not_panics() {
        let g = grid(64, 64, 2000.0);
        let opts = AnimationOptions::default();
        assert_eq!(render_animation(&g, &[], &opts), Err(RenderError::NoFrames));
        let a = Array2::<f32>::zeros((10, 64));
        let frames = [AnimationFrame {
            rate_mm_h: a.view(),
            time: t0(),
            kind: FrameKind::Observed,
        }];
        assert!(matches!(
            render_animation(&g, &frames, &opts),
            Err(RenderError::ShapeMismatch {
                index: 0,
                rows: 10,
                ..
            })
        ));
        // Markers and rings far outside the grid, absurd ring steps, odd names.
        let b = Array2::<f32>::from_elem((64, 64), f32::NAN);
        let frames = [AnimationFrame {
            rate_mm_h: b.view(),
            time: t0(),
            kind: FrameKind::Forecast { lead_min: 120 },
        }];
        let opts = AnimationOptions {
            marker: Some(Marker {
                lon: 170.0,
                lat: -80.0,
                name: "€€€ ☔".repeat(30),
            }),
            rings: Some(RangeRings {
                lon: 8.0,
                lat: 47.0,
                step_km: 1e9,
                count: 1000,
            }),
            title: Some("X".repeat(500)),
            zone_label: "A VERY LONG ZONE NAME INDEED".into(),
            max_side_px: 1,
            ..AnimationOptions::default()
        };
        let (w, h, imgs) = decode(&render_animation(&g, &frames, &opts).unwrap());
        assert!(w == MIN_GIF_WIDTH_PX && h <= MIN_GIF_WIDTH_PX);
        assert_eq!(imgs.len(), 1);
    }

    #[test]
    fn later_frames_are_sub_rectangles() {
        let g = grid(256, 256, 1000.0);
        let f = fields(256, 256, 4);
        let frames = frames_of(&f, 4);
        let bytes = render_animation(&g, &frames, &AnimationOptions::default()).unwrap();
        let mut d = gif::DecodeOptions::new()
            .read_info(std::io::Cursor::new(&bytes))
            .unwrap();
        let (w, h) = (d.width(), d.height());
        let mut sizes = Vec::new();
        while let Some(fr) = d.read_next_frame().unwrap() {
            sizes.push((fr.width, fr.height, fr.transparent));
        }
        assert_eq!(sizes[0], (w, h, None));
        // The legend never changes, so later frames stop above it.
        for s in &sizes[1..] {
            assert!(s.1 < h && s.2 == Some(P_TRANSPARENT), "{s:?}");
        }
    }
}
