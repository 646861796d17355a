//! Map tiles: a mosaic tile's rain rates (mm/h, `NaN` = no data) as a PNG
//! in one of the RainViewer-compatible colour schemes, and coverage tiles.
//!
//! Every scheme is an 8-bit palette PNG with a transparency chunk. No rain
//! (below 0.1 mm/h, the first band of [`super::RAIN_SCALE`]) and no data
//! are fully transparent in every scheme, as on RainViewer's tiles; the
//! coverage tile tells the two apart.
//!
//! | `color` | scheme |
//! |---|---|
//! | 0 | grey levels encoding dBZ, RainViewer's "black and white dBZ values": `R = G = B = dBZ + 32` (1 dB steps, clamped to 1..=127, i.e. −31..=95 dBZ), so `dBZ = (R & 127) − 32`; bit 7 (RainViewer's snow flag) is never set |
//! | 1 | Raincast's legend ([`super::RAIN_SCALE`], the map page's and the GIFs' colours) |
//! | 2 | a blue ramp in 5 dBZ steps from 5 dBZ (Raincast's own, in the spirit of RainViewer's "Universal Blue") |
//!
//! dBZ comes from the rate with Marshall–Palmer (Z = 200·R^1.6,
//! [`TILE_ZR`]), whatever Z–R a radar's ingest used: the grey levels are a
//! display encoding of the mosaic's rate, and reading them back gives the
//! rate again with the same relation.

use super::{class_code, indexed_png, RenderError, CLASS_BAND0, RAIN_SCALE};
use crate::scan::ZR;

/// The Z–R relation of tile dBZ values.
pub const TILE_ZR: ZR = ZR::MARSHALL_PALMER;

/// A tile colour scheme (the `color` of the tile URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileScheme {
    /// 0: grey levels encoding dBZ.
    DbzGrey,
    /// 1: Raincast's legend.
    Raincast,
    /// 2: blue ramp by dBZ.
    Blue,
}

impl TileScheme {
    /// Every scheme, by code.
    pub const ALL: [TileScheme; 3] = [TileScheme::DbzGrey, TileScheme::Raincast, TileScheme::Blue];

    /// The scheme of a URL code, if supported.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// The URL code.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Lowest rate drawn (mm/h): the first band of the legend.
fn min_rain() -> f32 {
    RAIN_SCALE[0].min_mm_h
}

/// The grey level (1..=127) of a rain rate, 0 for no rain or no data.
pub fn dbz_grey(rate_mm_h: f32) -> u8 {
    if rate_mm_h.is_nan() || rate_mm_h < min_rain() {
        return 0;
    }
    let dbz = TILE_ZR.dbz(rate_mm_h as f64);
    (dbz.round() + 32.0).clamp(1.0, 127.0) as u8
}

/// dBZ of a colour-0 pixel's red (or grey) level, as RainViewer documents
/// it: `(R & 127) − 32`.
pub fn dbz_of_grey(level: u8) -> f32 {
    (level & 127) as f32 - 32.0
}

/// Colours of scheme 2 by 5 dBZ step from 5 dBZ (light to dark blue, then
/// purple and magenta for the heaviest echoes).
const BLUE_RAMP: [[u8; 3]; 12] = [
    [200, 235, 250],
    [160, 215, 245],
    [120, 190, 240],
    [80, 160, 235],
    [45, 125, 225],
    [20, 90, 205],
    [10, 60, 175],
    [5, 35, 140],
    [60, 20, 150],
    [120, 20, 160],
    [185, 25, 170],
    [245, 60, 200],
];

/// Palette (RGB) and transparency of a scheme; index 0 is transparent.
fn palette(scheme: TileScheme) -> (Vec<u8>, Vec<u8>) {
    let mut rgb = vec![0u8; 3];
    let mut alpha = vec![0u8];
    match scheme {
        TileScheme::DbzGrey => {
            for level in 1..=127u8 {
                rgb.extend_from_slice(&[level, level, level]);
                alpha.push(255);
            }
        }
        TileScheme::Raincast => {
            for b in RAIN_SCALE {
                rgb.extend_from_slice(&b.rgba[..3]);
                alpha.push(b.rgba[3]);
            }
        }
        TileScheme::Blue => {
            for c in BLUE_RAMP {
                rgb.extend_from_slice(&c);
                alpha.push(255);
            }
        }
    }
    (rgb, alpha)
}

/// Palette index of a rate in a scheme (0 = transparent).
#[inline]
fn index_of(scheme: TileScheme, rate_mm_h: f32) -> u8 {
    match scheme {
        TileScheme::DbzGrey => dbz_grey(rate_mm_h),
        TileScheme::Raincast => {
            let c = class_code(rate_mm_h);
            if c >= CLASS_BAND0 {
                c - CLASS_BAND0 + 1
            } else {
                0
            }
        }
        TileScheme::Blue => match dbz_grey(rate_mm_h) {
            0 => 0,
            level => {
                let dbz = dbz_of_grey(level);
                (((dbz - 5.0) / 5.0).floor().max(0.0) as usize).min(BLUE_RAMP.len() - 1) as u8 + 1
            }
        },
    }
}

/// Renders a square tile of rates (`size × size`, row-major, mm/h, `NaN` =
/// no data) in a scheme. `None` when every pixel would be transparent (the
/// caller serves its one empty tile, [`empty_tile_png`]).
pub fn render_tile_png(
    rates_mm_h: &[f32],
    size: u32,
    scheme: TileScheme,
) -> Result<Option<Vec<u8>>, RenderError> {
    let n = size as usize;
    if rates_mm_h.len() != n * n || n == 0 {
        return Err(RenderError::ShapeMismatch {
            index: 0,
            rows: rates_mm_h.len() / n.max(1),
            cols: n,
            grid_rows: n,
            grid_cols: n,
        });
    }
    let data: Vec<u8> = rates_mm_h.iter().map(|v| index_of(scheme, *v)).collect();
    if data.iter().all(|i| *i == 0) {
        return Ok(None);
    }
    let (rgb, alpha) = palette(scheme);
    indexed_png((size, size), png::BitDepth::Eight, rgb, Some(alpha), &data).map(Some)
}

/// A fully transparent tile of `size` pixels.
pub fn empty_tile_png(size: u32) -> Result<Vec<u8>, RenderError> {
    let row_bytes = (size as usize).div_ceil(8);
    let data = vec![0u8; row_bytes * size as usize];
    indexed_png(
        (size, size),
        png::BitDepth::One,
        vec![0, 0, 0, 0, 0, 0],
        Some(vec![0, 0]),
        &data,
    )
}

/// A coverage tile as RainViewer draws it: transparent where some radar
/// sees (the value is finite), opaque black where none does.
pub fn coverage_tile_png(values: &[f32], size: u32) -> Result<Vec<u8>, RenderError> {
    let n = size as usize;
    if values.len() != n * n || n == 0 {
        return Err(RenderError::ShapeMismatch {
            index: 0,
            rows: values.len() / n.max(1),
            cols: n,
            grid_rows: n,
            grid_cols: n,
        });
    }
    let row_bytes = n.div_ceil(8);
    let mut data = vec![0u8; row_bytes * n];
    for (y, row) in values.chunks_exact(n).enumerate() {
        for (x, v) in row.iter().enumerate() {
            if !v.is_finite() {
                data[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    // Index 0: seen (transparent); 1: not seen (black).
    indexed_png(
        (size, size),
        png::BitDepth::One,
        vec![0, 0, 0, 0, 0, 0],
        Some(vec![0, 255]),
        &data,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Decodes a PNG to RGBA.
    fn rgba(png_bytes: &[u8]) -> (u32, Vec<u8>) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        assert_eq!(info.color_type, png::ColorType::Rgba);
        (info.width, buf)
    }

    #[test]
    fn colour_0_reads_back_the_dbz_of_each_rate() {
        let size = 256u32;
        let rates: Vec<f32> = (0..size * size)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => 0.0,
                _ => 0.1 * 1.05f32.powi((i % 150) as i32),
            })
            .collect();
        let png = render_tile_png(&rates, size, TileScheme::DbzGrey)
            .unwrap()
            .unwrap();
        let (w, px) = rgba(&png);
        assert_eq!(w, size);
        for (i, rate) in rates.iter().enumerate() {
            let p = &px[4 * i..4 * i + 4];
            if rate.is_nan() || *rate < 0.1 {
                assert_eq!(p[3], 0, "no rain / no data is transparent");
                continue;
            }
            assert_eq!(p[3], 255);
            assert!(p[0] == p[1] && p[1] == p[2], "grey");
            let want = TILE_ZR.dbz(*rate as f64).clamp(-31.0, 95.0);
            let got = dbz_of_grey(p[0]) as f64;
            assert!((got - want).abs() <= 0.5 + 1e-9, "{rate}: {got} vs {want}");
            // And back to the rate within half a dB.
            let back = TILE_ZR.rate_mm_h(got);
            assert!((back / *rate as f64 - 1.0).abs() < 0.08, "{rate} -> {back}");
        }
    }

    #[test]
    fn schemes_1_and_2_colour_rain_and_leave_the_rest_transparent() {
        let rates = [0.0, f32::NAN, 0.3, 3.0, 30.0, 300.0];
        let tile: Vec<f32> = (0..256 * 256).map(|i| rates[i % rates.len()]).collect();
        let (_, p1) = rgba(
            &render_tile_png(&tile, 256, TileScheme::Raincast)
                .unwrap()
                .unwrap(),
        );
        for (i, r) in rates.iter().enumerate() {
            let px = &p1[4 * i..4 * i + 4];
            match super::super::rate_class(*r) {
                super::super::RateClass::Band(b) => assert_eq!(px, RAIN_SCALE[b].rgba),
                _ => assert_eq!(px[3], 0),
            }
        }
        let (_, p2) = rgba(
            &render_tile_png(&tile, 256, TileScheme::Blue)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(p2[3], 0);
        assert_eq!(p2[7], 0);
        let colours: std::collections::HashSet<&[u8]> =
            (2..6).map(|i| &p2[4 * i..4 * i + 4]).collect();
        assert_eq!(colours.len(), 4, "heavier rain, another colour");
        assert!((2..6).all(|i| p2[4 * i + 3] == 255));
        assert_eq!(TileScheme::from_code(3), None);
        assert_eq!(TileScheme::from_code(2), Some(TileScheme::Blue));
    }

    #[test]
    fn empty_and_coverage_tiles() {
        let dry = vec![0.0f32; 256 * 256];
        assert_eq!(
            render_tile_png(&dry, 256, TileScheme::Raincast).unwrap(),
            None
        );
        let (w, px) = rgba(&empty_tile_png(512).unwrap());
        assert_eq!(w, 512);
        assert!(px.chunks(4).all(|p| p[3] == 0));
        let mut v = vec![f32::NAN; 256 * 256];
        v[..256 * 100].fill(0.0);
        let (_, px) = rgba(&coverage_tile_png(&v, 256).unwrap());
        for (i, p) in px.chunks(4).enumerate() {
            assert_eq!(p[3], if i < 256 * 100 { 0 } else { 255 }, "{i}");
        }
        assert!(render_tile_png(&dry[..10], 256, TileScheme::Raincast).is_err());
    }
}
