//! Writes rain-rate fields as MeteoSwiss AQC GIFs (the format read by
//! [`crate::decode::mch_gif`]): one 8-bit frame of palette indices on the
//! CCS4 grid, 710 px wide and 640 px tall. Bytes out, no I/O.

use crate::decode::mch_gif::{
    rain_index_rate_mm_h, CCS4_COLS, CCS4_ROWS, MAX_RAIN_INDEX, MIN_RAIN_INDEX, NODATA_INDEX,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use ndarray::ArrayView2;

/// Why a field could not be written as a GIF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The field or pixel buffer does not have the required shape.
    #[error("mch-gif writer: shape mismatch: expected {expected}, found {found}")]
    Shape { expected: String, found: String },
    /// The `gif` encoder refused the frame.
    #[error("mch-gif writer: GIF encoder error: {0}")]
    Gif(String),
}

/// The palette index whose rate is nearest to `rate_mm_h` in log space
/// (rounding `i` of the AQC formula): NaN → 255 (no data), ≤ 0 → 0 (no
/// rain), rates below half the smallest step → 0, rates above the table →
/// 250. Quantisation error is at most a factor 10^(1/60) (≈ 3.9 %).
pub fn rate_to_index(rate_mm_h: f32) -> u8 {
    if rate_mm_h.is_nan() {
        return NODATA_INDEX;
    }
    if rate_mm_h <= 0.0 {
        return 0;
    }
    // mm/h → mm per 5 min, then invert (10^((i-71.5)/20)/316)^(1/1.5).
    let depth_mm = f64::from(rate_mm_h) / 12.0;
    let index = (71.5 + 20.0 * (316.0 * depth_mm.powf(1.5)).log10()).round();
    if index < f64::from(MIN_RAIN_INDEX) {
        let smallest = rain_index_rate_mm_h(MIN_RAIN_INDEX);
        return if f64::from(rate_mm_h) < 0.5 * smallest {
            0
        } else {
            MIN_RAIN_INDEX
        };
    }
    if index >= f64::from(MAX_RAIN_INDEX) {
        return MAX_RAIN_INDEX;
    }
    index as u8
}

/// A grey ramp: index `i` is `(i, i, i)`; the decoder ignores colours.
fn palette() -> Vec<u8> {
    (0..=255u8).flat_map(|i| [i, i, i]).collect()
}

/// Encodes a palette-index image (`width × height`, row-major, row 0 at the
/// top) as a single-frame GIF89a. Any size is accepted, so tests can build
/// GIFs of the wrong shape.
pub fn encode_indices(indices: &[u8], width: u16, height: u16) -> Result<Vec<u8>, EncodeError> {
    let expected = usize::from(width) * usize::from(height);
    if indices.len() != expected || expected == 0 {
        return Err(EncodeError::Shape {
            expected: format!("{width} x {height} = {expected} pixels (non-empty)"),
            found: format!("{} pixels", indices.len()),
        });
    }
    let gif_err = |e: gif::EncodingError| EncodeError::Gif(e.to_string());
    let mut out = Vec::with_capacity(expected / 4 + 1024);
    {
        let mut encoder =
            gif::Encoder::new(&mut out, width, height, &palette()).map_err(gif_err)?;
        let frame = gif::Frame::from_indexed_pixels(width, height, indices, None);
        encoder.write_frame(&frame).map_err(gif_err)?;
        encoder.into_inner().map_err(gif_err)?;
    }
    Ok(out)
}

/// Encodes a rain-rate field (mm/h, shape `(640, 710)`, row 0 north, NaN =
/// no data) on the CCS4 grid as an AQC GIF, with [`rate_to_index`] per cell.
pub fn encode(rate_mm_h: ArrayView2<'_, f32>) -> Result<Vec<u8>, EncodeError> {
    if rate_mm_h.dim() != (CCS4_ROWS, CCS4_COLS) {
        let (r, c) = rate_mm_h.dim();
        return Err(EncodeError::Shape {
            expected: format!("{CCS4_ROWS} x {CCS4_COLS} (CCS4 grid)"),
            found: format!("{r} x {c}"),
        });
    }
    // Iteration is in logical (row-major) order whatever the view's strides.
    let indices: Vec<u8> = rate_mm_h.iter().map(|&v| rate_to_index(v)).collect();
    encode_indices(&indices, CCS4_COLS as u16, CCS4_ROWS as u16)
}

/// The MeteoSwiss file name for a scan ending at `time` (UTC), e.g.
/// `AQC161932045V_00005.801.gif`; the decoder reads the time back from it.
pub fn file_name(time: DateTime<Utc>) -> String {
    format!(
        "AQC{:02}{:03}{:02}{:02}V_00005.801.gif",
        time.year().rem_euclid(100),
        time.ordinal(),
        time.hour(),
        time.minute()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::decode::mch_gif::rate_lut;

    #[test]
    fn every_index_maps_back_to_itself() {
        let lut = rate_lut();
        for i in MIN_RAIN_INDEX..=MAX_RAIN_INDEX {
            assert_eq!(rate_to_index(lut[usize::from(i)]), i);
        }
        assert_eq!(rate_to_index(f32::NAN), 255);
        assert_eq!(rate_to_index(0.0), 0);
        assert_eq!(rate_to_index(-3.0), 0);
        assert_eq!(rate_to_index(1e-9), 0);
        assert_eq!(rate_to_index(f32::INFINITY), MAX_RAIN_INDEX);
        assert_eq!(rate_to_index(lut[2] * 0.9), 2);
    }

    #[test]
    fn shape_errors() {
        let err = encode(ndarray::Array2::<f32>::zeros((710, 640)).view()).unwrap_err();
        assert!(matches!(err, EncodeError::Shape { .. }), "{err}");
        assert!(encode_indices(&[0; 5], 2, 3).is_err());
        assert!(encode_indices(&[], 0, 0).is_err());
    }
}
