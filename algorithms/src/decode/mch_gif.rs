//! MeteoSwiss AQC composite: an 8-bit GIF with no georeference inside.
//!
//! * Each pixel is a palette **index** `i` (the RGB palette is ignored):
//!   `0`, `1` and `251..=254` mean no rain (0 mm/h), `255` means no data
//!   (NaN), anything else is a rain depth over 5 min of
//!   `(10^((i − 71.5)/20) / 316)^(1/1.5)` mm, i.e. 12 × that in mm/h. This is
//!   the same table as pysteps' `import_mch_gif` for AQC/CPC.
//! * The grid is hard-wired: Swiss LV03 (`somerc`, CCS4 domain), x 255 000 to
//!   965 000 m, y −160 000 to 480 000 m, 1 km cells, first row at the top:
//!   640 rows × 710 columns (the GIF is 710 px wide and 640 px tall).
//! * The end time of the 5-min period (UTC) is only in the file name
//!   `AQCyyJJJhhmm…` (two-digit year, day of year, hour, minute).
//!
//! Output: [`Quantity::RainRate`] in mm/h, shape `(640, 710)`, row 0 north.

use crate::decode::hex_head;
use crate::grid::{Grid, GridError};
use crate::scan::{
    check_cells, DecodeError, Format, Quantity, RadarScan, DEFAULT_MAX_CELLS, MAX_CELLS,
};
use chrono::{DateTime, NaiveDate, Utc};
use ndarray::Array2;

const FORMAT: Format = Format::MchGif;

/// PROJ string of the Swiss LV03 projection used by the CCS4 composites.
pub const CCS4_PROJ: &str = "+proj=somerc +lon_0=7.43958333333333 +lat_0=46.9524055555556 +k_0=1 +x_0=600000 +y_0=200000 +ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0 +units=m";
/// Rows of the CCS4 grid (GIF height), north to south.
pub const CCS4_ROWS: usize = 640;
/// Columns of the CCS4 grid (GIF width), west to east.
pub const CCS4_COLS: usize = 710;
/// CCS4 cell size in metres (both directions).
pub const CCS4_CELL_M: f64 = 1000.0;
/// Projected x (m) of the west edge of the CCS4 grid.
pub const CCS4_X_WEST_M: f64 = 255_000.0;
/// Projected y (m) of the north edge of the CCS4 grid.
pub const CCS4_Y_NORTH_M: f64 = 480_000.0;

/// Palette index meaning "no data" (outside coverage).
pub const NODATA_INDEX: u8 = 255;
/// Smallest palette index that carries a rain amount.
pub const MIN_RAIN_INDEX: u8 = 2;
/// Largest palette index that carries a rain amount.
pub const MAX_RAIN_INDEX: u8 = 250;

/// Length of the accumulation period of one AQC file, in hours (5 min).
const PERIOD_H: f64 = 5.0 / 60.0;

/// The CCS4 grid every AQC GIF lives on.
pub fn ccs4_grid() -> Result<Grid, GridError> {
    Grid::new(
        CCS4_PROJ,
        CCS4_ROWS,
        CCS4_COLS,
        CCS4_CELL_M,
        CCS4_CELL_M,
        CCS4_X_WEST_M,
        CCS4_Y_NORTH_M,
    )
}

/// Rain rate in mm/h of a rain-carrying palette index (`2..=250`), computed in
/// f64: 5-min depth `(10^((i − 71.5)/20) / 316)^(1/1.5)` mm, times 12.
pub fn rain_index_rate_mm_h(index: u8) -> f64 {
    let depth_mm = (10f64.powf((f64::from(index) - 71.5) / 20.0) / 316.0).powf(1.0 / 1.5);
    depth_mm / PERIOD_H
}

/// The 256-entry palette-index → rain-rate (mm/h) table: 0 for the no-rain
/// indices, NaN for no data.
pub fn rate_lut() -> [f32; 256] {
    let mut lut = [0f32; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let i = i as u8;
        *v = match i {
            NODATA_INDEX => f32::NAN,
            MIN_RAIN_INDEX..=MAX_RAIN_INDEX => rain_index_rate_mm_h(i) as f32,
            _ => 0.0,
        };
    }
    lut
}

/// True when the bytes start with a GIF signature (`GIF87a` or `GIF89a`).
pub fn looks_like(bytes: &[u8], _file_name: Option<&str>) -> bool {
    bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")
}

/// Parses the scan end time from a MeteoSwiss file name
/// `PPPyyJJJhhmm…` (product `AQC` or `CPC`, two-digit year, day of year,
/// hour, minute; UTC). Folders before the name are ignored. Two-digit years
/// follow the POSIX `%y` rule: 69–99 are 1969–1999, 00–68 are 2000–2068.
pub fn time_from_file_name(file_name: Option<&str>) -> Result<DateTime<Utc>, DecodeError> {
    let missing = || DecodeError::Missing {
        format: FORMAT,
        path: format!(
            "file name time stamp AQCyyJJJhhmm (file name: {})",
            file_name.map_or_else(|| "none given".to_string(), |n| format!("{n:?}"))
        ),
    };
    let full = file_name.ok_or_else(missing)?;
    let name = full.rsplit(['/', '\\']).next().unwrap_or(full);
    let bytes = name.as_bytes();
    if bytes.len() < 12 {
        return Err(missing());
    }
    let (product, stamp) = (&bytes[..3], &bytes[3..12]);
    match product {
        b"AQC" | b"CPC" => {}
        b"RZC" | b"AZC" => {
            return Err(DecodeError::Unsupported {
                format: FORMAT,
                what: format!(
                    "MeteoSwiss product {} (its GIF palette is not the AQC index table)",
                    String::from_utf8_lossy(product)
                ),
            })
        }
        _ => return Err(missing()),
    }
    if !stamp.iter().all(u8::is_ascii_digit) {
        return Err(missing());
    }
    let num = |r: std::ops::Range<usize>| {
        stamp[r]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (yy, doy, hh, mm) = (num(0..2), num(2..5), num(5..7), num(7..9));
    let year = if yy >= 69 { 1900 + yy } else { 2000 + yy } as i32;
    let bad = |reason: &str| DecodeError::BadValue {
        format: FORMAT,
        field: "file name time stamp".into(),
        value: name.to_string(),
        reason: reason.to_string(),
    };
    let date = NaiveDate::from_yo_opt(year, doy).ok_or_else(|| bad("day of year out of range"))?;
    let time = date
        .and_hms_opt(hh, mm, 0)
        .ok_or_else(|| bad("hour or minute out of range"))?;
    Ok(time.and_utc())
}

/// Reads the logical screen size `(width, height)` from the GIF header.
fn screen_size(bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
    if bytes.len() < 13 {
        return Err(DecodeError::Truncated {
            format: FORMAT,
            what: "GIF header and logical screen descriptor",
            needed: 13,
            available: bytes.len(),
        });
    }
    let width = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let height = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    Ok((width, height))
}

fn container(reason: impl ToString) -> DecodeError {
    DecodeError::Container {
        format: FORMAT,
        layer: "GIF",
        reason: reason.to_string(),
    }
}

/// Decodes an AQC GIF. `file_name` must carry the time stamp (see
/// [`time_from_file_name`]). Returns rain rate in mm/h on [`ccs4_grid`].
pub fn decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    decode_limited(bytes, file_name, DEFAULT_MAX_CELLS)
}

/// [`decode`], rejecting a declared screen above `max_cells` cells
/// ([`DecodeError::TooLarge`]) before decompressing anything.
pub fn decode_limited(
    bytes: &[u8],
    file_name: Option<&str>,
    max_cells: u64,
) -> Result<RadarScan, DecodeError> {
    if !looks_like(bytes, file_name) {
        return Err(DecodeError::BadMagic {
            format: FORMAT,
            expected: "GIF87a or GIF89a",
            found: hex_head(bytes),
        });
    }
    let (width, height) = screen_size(bytes)?;
    let cells = width as u64 * height as u64;
    check_cells(
        FORMAT,
        "GIF logical screen (height x width)",
        height as u64,
        width as u64,
        max_cells.min(MAX_CELLS),
    )?;
    if (height, width) != (CCS4_ROWS, CCS4_COLS) {
        return Err(DecodeError::Shape {
            format: FORMAT,
            field: "GIF logical screen (rows x cols)".into(),
            expected: format!("{CCS4_ROWS} x {CCS4_COLS} (CCS4 grid)"),
            found: format!("{height} x {width}"),
        });
    }
    let time = time_from_file_name(file_name)?;
    let grid = ccs4_grid().map_err(|source| DecodeError::Grid {
        format: FORMAT,
        source,
    })?;

    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    // The only frame we accept is the full screen: one byte per cell.
    if let Some(limit) = std::num::NonZeroU64::new(cells + 4096) {
        options.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    options.check_frame_consistency(true);
    let mut decoder = options.read_info(bytes).map_err(container)?;
    let frame = decoder
        .next_frame_info()
        .map_err(container)?
        .ok_or_else(|| DecodeError::Missing {
            format: FORMAT,
            path: "GIF image frame".into(),
        })?;
    let (left, top) = (usize::from(frame.left), usize::from(frame.top));
    let (fw, fh) = (usize::from(frame.width), usize::from(frame.height));
    if (left, top, fw, fh) != (0, 0, width, height) {
        return Err(DecodeError::Shape {
            format: FORMAT,
            field: "GIF first frame (rows x cols at row, col)".into(),
            expected: format!("{height} x {width} at 0, 0 (the whole logical screen)"),
            found: format!("{fh} x {fw} at {top}, {left}"),
        });
    }
    let mut indices = vec![0u8; cells as usize];
    decoder.read_into_buffer(&mut indices).map_err(container)?;

    let lut = rate_lut();
    let values: Vec<f32> = indices.iter().map(|&i| lut[usize::from(i)]).collect();
    let values =
        Array2::from_shape_vec((height, width), values).map_err(|e| DecodeError::Shape {
            format: FORMAT,
            field: "GIF pixels".into(),
            expected: format!("{height} x {width}"),
            found: e.to_string(),
        })?;
    let product = file_name
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .and_then(|n| n.get(..3))
        .unwrap_or("AQC");
    Ok(RadarScan {
        format: FORMAT,
        source: format!("MeteoSwiss {product}"),
        time,
        quantity: Quantity::RainRate,
        grid,
        values,
        zr_hint: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::encode::mch_gif as writer;
    use chrono::TimeZone;

    const NAME: &str = "AQC161932045V_00005.801.gif";

    #[test]
    fn lut_matches_the_formula() {
        let lut = rate_lut();
        for i in [0usize, 1, 251, 252, 253, 254] {
            assert_eq!(lut[i], 0.0, "index {i}");
        }
        assert!(lut[255].is_nan());
        // Index 71.5 would be 1/316^(2/3) mm per 5 min; check 72 by hand.
        let depth = (10f64.powf(0.5 / 20.0) / 316.0).powf(1.0 / 1.5);
        assert!((f64::from(lut[72]) - 12.0 * depth).abs() < 1e-6);
        // Strictly increasing over the rain indices.
        for i in 3..=250 {
            assert!(lut[i] > lut[i - 1], "index {i}");
        }
    }

    #[test]
    fn time_from_names() {
        let t = time_from_file_name(Some(NAME)).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2016, 7, 11, 20, 45, 0).unwrap());
        let t = time_from_file_name(Some("some/dir/AQC161940000V_00005.801.gif")).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2016, 7, 12, 0, 0, 0).unwrap());
        let t = time_from_file_name(Some("CPC993650005")).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(1999, 12, 31, 0, 5, 0).unwrap());
        for bad in [
            None,
            Some("radar.gif"),
            Some("AQC16"),
            Some("AQC16x932045.gif"),
        ] {
            let err = time_from_file_name(bad).unwrap_err();
            assert_eq!(err.code(), "missing", "{bad:?}");
            assert!(err.to_string().contains("file name"), "{err}");
        }
        // 2015 is not a leap year; hour 24 does not exist.
        for bad in ["AQC153662045", "AQC161932460", "AQC160002045"] {
            let err = time_from_file_name(Some(bad)).unwrap_err();
            assert_eq!(err.code(), "bad_value", "{bad}");
        }
        let err = time_from_file_name(Some("RZC161932045VL.801.gif")).unwrap_err();
        assert_eq!(err.code(), "unsupported");
    }

    fn synthetic_rate() -> Array2<f32> {
        let mut rate = Array2::<f32>::zeros((CCS4_ROWS, CCS4_COLS));
        for ((r, c), v) in rate.indexed_iter_mut() {
            *v = match (r * 7 + c * 3) % 11 {
                0 => f32::NAN,
                1 => 0.0,
                k => 0.01 * 3f32.powi(k as i32 - 2) * (1.0 + (r % 5) as f32 * 0.1),
            };
        }
        rate[[0, 0]] = 250.0;
        rate[[0, 1]] = 1e9; // beyond the table: clamps to the top index
        rate
    }

    #[test]
    fn round_trip_through_the_writer() {
        let rate = synthetic_rate();
        let bytes = writer::encode(rate.view()).unwrap();
        assert!(looks_like(&bytes, None));
        let time = Utc.with_ymd_and_hms(2024, 2, 29, 13, 5, 0).unwrap();
        let name = writer::file_name(time);
        assert_eq!(name, "AQC240601305V_00005.801.gif");
        let scan = decode(&bytes, Some(&name)).unwrap();
        assert_eq!(scan.time, time);
        assert_eq!(scan.quantity, Quantity::RainRate);
        assert_eq!(scan.source, "MeteoSwiss AQC");
        assert!(scan.grid.same_geometry(&ccs4_grid().unwrap()));
        // One index step is 1 dB of Z with b = 1.5: a factor 10^(1/30) in
        // rate, so nearest-index rounding is within 10^(1/60) - 1 ≈ 3.9 %.
        let step = 10f32.powf(1.0 / 60.0) - 1.0 + 1e-4;
        let top = lut_max();
        for ((r, c), &v) in rate.indexed_iter() {
            let d = scan.values[[r, c]];
            assert_eq!(v.is_nan(), d.is_nan(), "NaN mask at {r},{c}");
            if v.is_nan() {
                continue;
            }
            if v == 0.0 {
                assert_eq!(d, 0.0);
            } else if v >= top {
                assert_eq!(d, top);
            } else {
                assert!((d - v).abs() <= step * v, "{r},{c}: {v} -> {d}");
            }
        }
    }

    fn lut_max() -> f32 {
        rate_lut()[usize::from(MAX_RAIN_INDEX)]
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let good = writer::encode(synthetic_rate().view()).unwrap();
        // Wrong magic.
        let err = decode(b"PNG\x89 not a gif at all", Some(NAME)).unwrap_err();
        assert_eq!(err.code(), "bad_magic");
        // Too short for the screen descriptor.
        let err = decode(b"GIF89a\x00", Some(NAME)).unwrap_err();
        assert_eq!(err.code(), "truncated");
        // Truncated at every length: never a panic, always an error.
        for cut in (0..good.len() - 10)
            .step_by(997)
            .chain([good.len() - 10, 13, 20, 800])
        {
            assert!(decode(&good[..cut], Some(NAME)).is_err(), "cut {cut}");
        }
        // Like other GIF readers, a missing trailer (or the last bits of the
        // LZW end code) after complete pixel data is tolerated.
        assert!(decode(&good[..good.len() - 1], Some(NAME)).is_ok());
        // No usable file name.
        assert_eq!(decode(&good, None).unwrap_err().code(), "missing");
        // Absurd and wrong logical screen sizes.
        let mut absurd = good.clone();
        absurd[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let err = decode(&absurd, Some(NAME)).unwrap_err();
        assert_eq!(err.code(), "too_large", "{err}");
        assert!(err.to_string().contains("65535 x 65535"), "{err}");
        let small = writer::encode_indices(&[1, 2, 3, 255, 0, 7], 3, 2).unwrap();
        let err = decode(&small, Some(NAME)).unwrap_err();
        assert_eq!(err.code(), "shape");
        assert!(err.to_string().contains("2 x 3"), "{err}");
        // A full-size screen whose only frame is smaller than the screen.
        let mut framed = good.clone();
        let desc = find_image_descriptor(&framed);
        framed[desc + 5..desc + 7].copy_from_slice(&100u16.to_le_bytes());
        let err = decode(&framed, Some(NAME)).unwrap_err();
        assert_eq!(err.code(), "shape", "{err}");
        assert!(err.to_string().contains("640 x 100 at 0, 0"), "{err}");
        // Garbage after the header.
        let mut garbage = good[..800].to_vec();
        garbage.extend(std::iter::repeat_n(0xA5u8, 5000));
        assert!(decode(&garbage, Some(NAME)).is_err());
        // A screen with no frame at all.
        let mut empty = good[..13 + 768].to_vec();
        empty.push(0x3B);
        let err = decode(&empty, Some(NAME)).unwrap_err();
        assert!(matches!(err.code(), "missing" | "container"), "{err}");
    }

    /// Byte offset of the first image descriptor (0x2C) after the palette and
    /// the extension blocks written by our encoder.
    fn find_image_descriptor(bytes: &[u8]) -> usize {
        let mut i = 13 + 768;
        loop {
            match bytes[i] {
                0x2C => return i,
                0x21 => {
                    i += 2;
                    while bytes[i] != 0 {
                        i += usize::from(bytes[i]) + 1;
                    }
                    i += 1;
                }
                b => panic!("unexpected block {b:#x} at {i}"),
            }
        }
    }

    #[test]
    fn real_files_decode() {
        let Some(files) = crate::decode::shared_data_files("mch", ".gif") else {
            return;
        };
        assert!(!files.is_empty());
        let grid = ccs4_grid().unwrap();
        // The grid's outer corners (UL, UR, LR, LL), as computed independently
        // by PROJ 9 (pyproj 3.7) from the same PROJ string.
        let expected = [
            (2.689_419, 49.374_374),
            (12.462_328, 49.363_264),
            (11.955_611, 43.619_022),
            (3.168_780, 43.629_030),
        ];
        for (got, want) in grid.corners_lonlat().unwrap().iter().zip(expected) {
            assert!(
                (got.0 - want.0).abs() < 1e-4 && (got.1 - want.1).abs() < 1e-4,
                "{got:?} vs {want:?}"
            );
        }
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(
                crate::decode::detect(&bytes, Some(name)),
                Some(Format::MchGif)
            );
            let scan = decode(&bytes, Some(name)).unwrap();
            assert_eq!(scan.values.dim(), (640, 710));
            assert!(scan.grid.same_geometry(&grid));
            assert_eq!(scan.time, time_from_file_name(Some(name)).unwrap());
            assert_eq!(scan.time.format("%Y%m%d").to_string()[..6], *"201607");
            // Independent count of raw 255 indices from the decoded GIF.
            let raw = raw_indices(&bytes);
            let nodata = raw.iter().filter(|&&i| i == 255).count();
            let nan = scan.values.iter().filter(|v| v.is_nan()).count();
            assert_eq!(nan, nodata, "{name}");
            assert!(nodata > 0 && nodata < raw.len());
            let rain = raw.iter().filter(|&&i| (2..=250).contains(&i)).count();
            let positive = scan.values.iter().filter(|&&v| v > 0.0).count();
            assert_eq!(rain, positive, "{name}");
            assert!(scan
                .values
                .iter()
                .all(|v| v.is_nan() || (*v >= 0.0 && *v < 1e4)));
        }
    }

    /// Raw palette indices through the gif crate's plain iterator API.
    fn raw_indices(bytes: &[u8]) -> Vec<u8> {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::Indexed);
        let mut d = opts.read_info(bytes).unwrap();
        d.read_next_frame().unwrap().unwrap().buffer.to_vec()
    }
}
