//! Rendering rain for people: the colour scale, PNG map overlays and
//! animated GIFs (shared by the HTTP API and the notifier).
//!
//! # The colour scale
//!
//! Rain rate in mm/h is drawn in nine bands. A cell belongs to the highest
//! band whose lower bound it reaches:
//!
//! | band (mm/h) | colour | RGB |
//! |---|---|---|
//! | 0.1 – 0.5 | pale blue | 168 216 255 |
//! | 0.5 – 1 | light blue | 100 170 245 |
//! | 1 – 2 | blue | 35 105 225 |
//! | 2 – 5 | green | 25 160 65 |
//! | 5 – 10 | yellow-green | 145 205 35 |
//! | 10 – 20 | yellow | 250 215 20 |
//! | 20 – 50 | orange | 245 130 15 |
//! | 50 – 100 | red | 215 25 30 |
//! | ≥ 100 | magenta | 170 20 170 |
//!
//! Below 0.1 mm/h (the prep threshold, so also exact zero) is **no rain**:
//! fully transparent in PNGs, the plain map background in GIFs. `NaN` is
//! **no data** (outside coverage / not scanned): a semi-transparent grey
//! ([`NO_DATA_RGBA`]) in PNGs and a grey diagonal hatch in GIFs, so it never
//! looks like dry weather. Every band colour is opaque; a map may lay the
//! overlay at partial opacity.
//!
//! The table above is [`RAIN_SCALE`]; tests check that GIF legends use exactly
//! these colours.

mod animation;
pub mod font;
pub mod lzw;
mod map_raster;
mod reliability;
pub mod tiles;

pub use animation::{
    animation_layout, render_animation, AnimationFrame, AnimationLayout, AnimationOptions,
    FrameKind, Marker, RangeRings, Rect, BASEMAP_BORDER_RGB, BASEMAP_COAST_RGB, BASEMAP_LAKE_RGB,
    BASEMAP_TOWN_RGB, MAX_GIF_SIDE_PX, MIN_GIF_WIDTH_PX,
};
pub use map_raster::{MapRaster, MAX_MAP_SIDE_PX};
pub use reliability::{render_reliability_png, ReliabilitySeries};

use ndarray::ArrayView2;
use serde::Serialize;

/// One band of the rain colour scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RainBand {
    /// Lower bound of the band in mm/h (inclusive). The upper bound is the
    /// next band's lower bound (exclusive); the last band is open-ended.
    pub min_mm_h: f32,
    /// Colour as RGBA (alpha 255: opaque).
    pub rgba: [u8; 4],
    /// Short label for legends (the lower bound as written).
    pub label: &'static str,
}

/// The rain colour scale, lowest band first (see the module docs).
pub const RAIN_SCALE: [RainBand; 9] = [
    RainBand {
        min_mm_h: 0.1,
        rgba: [168, 216, 255, 255],
        label: "0.1",
    },
    RainBand {
        min_mm_h: 0.5,
        rgba: [100, 170, 245, 255],
        label: "0.5",
    },
    RainBand {
        min_mm_h: 1.0,
        rgba: [35, 105, 225, 255],
        label: "1",
    },
    RainBand {
        min_mm_h: 2.0,
        rgba: [25, 160, 65, 255],
        label: "2",
    },
    RainBand {
        min_mm_h: 5.0,
        rgba: [145, 205, 35, 255],
        label: "5",
    },
    RainBand {
        min_mm_h: 10.0,
        rgba: [250, 215, 20, 255],
        label: "10",
    },
    RainBand {
        min_mm_h: 20.0,
        rgba: [245, 130, 15, 255],
        label: "20",
    },
    RainBand {
        min_mm_h: 50.0,
        rgba: [215, 25, 30, 255],
        label: "50",
    },
    RainBand {
        min_mm_h: 100.0,
        rgba: [170, 20, 170, 255],
        label: "100",
    },
];

/// Colour of no-rain cells in PNG overlays: fully transparent.
pub const NO_RAIN_RGBA: [u8; 4] = [0, 0, 0, 0];
/// Colour of no-data cells in PNG overlays: semi-transparent grey.
pub const NO_DATA_RGBA: [u8; 4] = [110, 110, 110, 110];

/// Class code of a no-rain cell (see [`class_code`]).
pub const CLASS_NO_RAIN: u8 = 0;
/// Class code of a no-data cell (see [`class_code`]).
pub const CLASS_NO_DATA: u8 = 1;
/// Class code of band 0; band `i` is `CLASS_BAND0 + i`.
pub const CLASS_BAND0: u8 = 2;

/// What a rain rate looks like on the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Finite and below the first band (includes 0 and negative values).
    NoRain,
    /// `NaN`: not scanned / outside coverage.
    NoData,
    /// Index into [`RAIN_SCALE`].
    Band(usize),
}

/// Compact class code of a rate in mm/h: [`CLASS_NO_RAIN`], [`CLASS_NO_DATA`]
/// or `CLASS_BAND0 + band`. `+inf` falls in the top band.
#[inline]
pub fn class_code(rate_mm_h: f32) -> u8 {
    if rate_mm_h.is_nan() {
        return CLASS_NO_DATA;
    }
    // Branch-free: the number of lower bounds reached.
    let n: u8 = RAIN_SCALE
        .iter()
        .map(|b| (rate_mm_h >= b.min_mm_h) as u8)
        .sum();
    if n == 0 {
        CLASS_NO_RAIN
    } else {
        CLASS_BAND0 + n - 1
    }
}

/// The class of a rate in mm/h.
pub fn rate_class(rate_mm_h: f32) -> RateClass {
    match class_code(rate_mm_h) {
        CLASS_NO_RAIN => RateClass::NoRain,
        CLASS_NO_DATA => RateClass::NoData,
        c => RateClass::Band((c - CLASS_BAND0) as usize),
    }
}

/// The PNG overlay colour (RGBA) of a rate in mm/h.
pub fn rate_rgba(rate_mm_h: f32) -> [u8; 4] {
    match rate_class(rate_mm_h) {
        RateClass::NoRain => NO_RAIN_RGBA,
        RateClass::NoData => NO_DATA_RGBA,
        RateClass::Band(i) => RAIN_SCALE[i].rgba,
    }
}

/// Errors from the renderers. None of them is caused by the field's values
/// (NaN, infinities and negatives all have a colour); they concern shapes and sizes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// An animation needs at least one frame.
    #[error("no frames to render")]
    NoFrames,
    /// A field with no cells cannot be drawn.
    #[error("empty field: {rows}x{cols}")]
    EmptyField { rows: usize, cols: usize },
    /// A frame's shape differs from the grid's.
    #[error("frame {index} is {rows}x{cols} but the grid is {grid_rows}x{grid_cols}")]
    ShapeMismatch {
        index: usize,
        rows: usize,
        cols: usize,
        grid_rows: usize,
        grid_cols: usize,
    },
    /// The requested image would be larger than the renderer allows.
    #[error("image too large: {width}x{height} px (limit {limit} px per side)")]
    TooLarge { width: u64, height: u64, limit: u64 },
    /// Too many frames for one animation.
    #[error("too many frames: {frames} (limit {limit})")]
    TooManyFrames { frames: usize, limit: usize },
    /// Lon/lat could not be mapped to the grid (projection outside its domain).
    #[error("projection failed: {reason}")]
    Projection { reason: String },
    /// The image encoder failed (should not happen with valid sizes).
    #[error("{format} encoding failed: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
}

/// Largest side of a PNG overlay in pixels.
pub const MAX_PNG_SIDE_PX: u64 = 16_384;

/// Renders a rain-rate field (mm/h, row 0 north, `NaN` = no data) as a PNG
/// overlay with one pixel per cell, using [`RAIN_SCALE`]: transparent where
/// there is no rain, semi-transparent grey where there is no data.
///
/// The PNG is palette-based (4 bits per pixel) with a transparency chunk, so
/// it decodes to RGBA everywhere and stays small.
pub fn render_png(rate_mm_h: ArrayView2<f32>) -> Result<Vec<u8>, RenderError> {
    render_png_scaled(rate_mm_h, 1)
}

/// Like [`render_png`], with each cell drawn as `cell_px × cell_px` pixels
/// (`cell_px` ≥ 1; 0 is treated as 1).
pub fn render_png_scaled(rate_mm_h: ArrayView2<f32>, cell_px: u32) -> Result<Vec<u8>, RenderError> {
    let (rows, cols) = rate_mm_h.dim();
    if rows == 0 || cols == 0 {
        return Err(RenderError::EmptyField { rows, cols });
    }
    let k = cell_px.max(1) as u64;
    let (width, height) = (cols as u64 * k, rows as u64 * k);
    if width > MAX_PNG_SIDE_PX || height > MAX_PNG_SIDE_PX {
        return Err(RenderError::TooLarge {
            width,
            height,
            limit: MAX_PNG_SIDE_PX,
        });
    }
    let k = k as usize;
    // Palette order = class code: 0 no rain, 1 no data, 2.. bands.
    let mut palette = Vec::with_capacity(3 * (2 + RAIN_SCALE.len()));
    let mut trns = Vec::with_capacity(2 + RAIN_SCALE.len());
    for rgba in [NO_RAIN_RGBA, NO_DATA_RGBA]
        .into_iter()
        .chain(RAIN_SCALE.iter().map(|b| b.rgba))
    {
        palette.extend_from_slice(&rgba[..3]);
        trns.push(rgba[3]);
    }
    // Pack two 4-bit indices per byte, high nibble first; rows padded to bytes.
    let (w, h) = (width as usize, height as usize);
    let row_bytes = w.div_ceil(2);
    let mut data = vec![0u8; row_bytes * h];
    let mut line = vec![0u8; row_bytes];
    for (r, field_row) in rate_mm_h.outer_iter().enumerate() {
        line.fill(0);
        for (c, v) in field_row.iter().enumerate() {
            let code = class_code(*v);
            for x in c * k..(c + 1) * k {
                line[x / 2] |= if x % 2 == 0 { code << 4 } else { code };
            }
        }
        for y in r * k..(r + 1) * k {
            data[y * row_bytes..(y + 1) * row_bytes].copy_from_slice(&line);
        }
    }
    indexed_png(
        (width as u32, height as u32),
        png::BitDepth::Four,
        palette,
        Some(trns),
        &data,
    )
}

/// Encodes palette-indexed pixel rows (packed at `depth`) as a PNG, with an
/// optional transparency chunk.
pub(crate) fn indexed_png(
    (width, height): (u32, u32),
    depth: png::BitDepth,
    palette: Vec<u8>,
    trns: Option<Vec<u8>>,
    data: &[u8],
) -> Result<Vec<u8>, RenderError> {
    let png_err = |e: png::EncodingError| RenderError::Encode {
        format: "PNG",
        reason: e.to_string(),
    };
    let mut out = Vec::with_capacity(1024 + data.len() / 16);
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(depth);
    enc.set_palette(palette);
    if let Some(t) = trns {
        enc.set_trns(t);
    }
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(data).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn classes_follow_the_band_bounds() {
        assert_eq!(rate_class(f32::NAN), RateClass::NoData);
        assert_eq!(rate_class(0.0), RateClass::NoRain);
        assert_eq!(rate_class(-1.0), RateClass::NoRain);
        assert_eq!(rate_class(0.099), RateClass::NoRain);
        assert_eq!(rate_class(0.1), RateClass::Band(0));
        assert_eq!(rate_class(0.49), RateClass::Band(0));
        assert_eq!(rate_class(0.5), RateClass::Band(1));
        assert_eq!(rate_class(4.99), RateClass::Band(3));
        assert_eq!(rate_class(99.0), RateClass::Band(7));
        assert_eq!(rate_class(100.0), RateClass::Band(8));
        assert_eq!(rate_class(f32::INFINITY), RateClass::Band(8));
        assert_eq!(rate_rgba(f32::NAN), NO_DATA_RGBA);
        assert_eq!(rate_rgba(0.0)[3], 0);
        // Bounds strictly increase and colours are distinct and opaque.
        for w in RAIN_SCALE.windows(2) {
            assert!(w[0].min_mm_h < w[1].min_mm_h);
        }
        let set: std::collections::HashSet<_> = RAIN_SCALE.iter().map(|b| b.rgba).collect();
        assert_eq!(set.len(), RAIN_SCALE.len());
        assert!(RAIN_SCALE.iter().all(|b| b.rgba[3] == 255));
    }

    fn decode_rgba(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgba);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn png_decodes_with_scale_colours() {
        // 3 rows x 5 cols (odd width exercises the nibble padding).
        let values = [
            [f32::NAN, 0.0, 0.05, 0.1, 0.7],
            [1.5, 3.0, 7.0, 15.0, 30.0],
            [70.0, 150.0, -2.0, f32::INFINITY, 0.3],
        ];
        let a = Array2::from_shape_fn((3, 5), |(r, c)| values[r][c]);
        let (w, h, px) = decode_rgba(&render_png(a.view()).unwrap());
        assert_eq!((w, h), (5, 3));
        for (r, row) in values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let i = 4 * (r * 5 + c);
                assert_eq!(&px[i..i + 4], &rate_rgba(*v), "cell {r},{c}");
            }
        }
        // Scaled: each cell becomes a 3x3 block.
        let (w, h, px) = decode_rgba(&render_png_scaled(a.view(), 3).unwrap());
        assert_eq!((w, h), (15, 9));
        let at = |x: usize, y: usize| &px[4 * (y * 15 + x)..4 * (y * 15 + x) + 4];
        assert_eq!(at(14, 8), &rate_rgba(0.3));
        assert_eq!(at(12, 6), &rate_rgba(0.3));
        assert_eq!(at(11, 6), &rate_rgba(f32::INFINITY));
    }

    #[test]
    fn png_rejects_empty_and_huge() {
        let empty = Array2::<f32>::zeros((0, 4));
        assert_eq!(
            render_png(empty.view()),
            Err(RenderError::EmptyField { rows: 0, cols: 4 })
        );
        let a = Array2::<f32>::zeros((10, 10));
        assert!(matches!(
            render_png_scaled(a.view(), 5000),
            Err(RenderError::TooLarge { .. })
        ));
    }

    #[test]
    fn png_of_a_dry_field_is_tiny() {
        let a = Array2::<f32>::zeros((512, 512));
        let bytes = render_png(a.view()).unwrap();
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    }
}
