//! Quantisation of rain rates to 16-bit log-spaced codes.
//!
//! A rain rate `r` (mm/h, `r > 0`) becomes the code
//! `c = 1 + round(ln(r / QUANT_MIN_MM_H) / LOG_STEP)`, clamped to
//! `1..=MAX_CODE`, and decodes to `QUANT_MIN_MM_H · exp((c − 1) · LOG_STEP)`.
//! Code 0 is never used for rain.
//!
//! Error bound (checked by the property tests in `super::tests`):
//! * for `QUANT_MIN_MM_H ≤ r ≤ QUANT_MAX_MM_H` the decoded rate differs from
//!   `r` by at most [`MAX_RELATIVE_ERROR`] of `r` (half a log step, plus f32
//!   rounding);
//! * `0 < r < QUANT_MIN_MM_H` decodes to `QUANT_MIN_MM_H` (absolute error
//!   below 0.001 mm/h): rain stays rain;
//! * `r > QUANT_MAX_MM_H` (including `+inf`) decodes to `QUANT_MAX_MM_H`.

use std::sync::OnceLock;

/// Smallest rate with a code of its own, mm/h.
pub const QUANT_MIN_MM_H: f32 = 0.001;
/// Largest rate with a code of its own, mm/h (no radar measures more).
pub const QUANT_MAX_MM_H: f32 = 10_000.0;
/// Largest code; codes `1..=MAX_CODE` are rain, 0 is unused.
pub(crate) const MAX_CODE: u16 = 65_535;
/// Width of one code in `ln(mm/h)`: seven decades over 65 534 steps.
pub(crate) const LOG_STEP: f64 = 2.459_501_274_294_003e-4;
/// Largest relative error of a decoded rate within
/// `QUANT_MIN_MM_H..=QUANT_MAX_MM_H`: `exp(LOG_STEP / 2) − 1` (1.2297e-4)
/// plus one f32 rounding of the decoded value (6e-8), rounded up.
pub const MAX_RELATIVE_ERROR: f64 = 1.231e-4;

/// Quantises a rain rate (mm/h, `> 0`; `+inf` allowed) to a code in `1..=MAX_CODE`.
#[inline]
pub(crate) fn encode(rate_mm_h: f32) -> u16 {
    let x = (rate_mm_h as f64 / QUANT_MIN_MM_H as f64).ln() / LOG_STEP;
    // `as` saturates; NaN cannot reach here (callers pass r > 0) but would give 1.
    let c = 1.0 + x.round();
    c.clamp(1.0, MAX_CODE as f64) as u16
}

/// The rate (mm/h) a code decodes to. Code 0 decodes to 0 (never stored).
#[inline]
pub(crate) fn decode(code: u16) -> f32 {
    table()[code as usize]
}

/// Decoding table, built once: 65 536 f32 (256 KiB).
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Box<[f32]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![0.0f32; MAX_CODE as usize + 1];
        for (c, v) in t.iter_mut().enumerate().skip(1) {
            *v = (QUANT_MIN_MM_H as f64 * ((c - 1) as f64 * LOG_STEP).exp()) as f32;
        }
        t.into_boxed_slice()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_consistent() {
        let span = (QUANT_MAX_MM_H as f64 / QUANT_MIN_MM_H as f64).ln();
        assert!((LOG_STEP - span / (MAX_CODE as f64 - 1.0)).abs() < 1e-11);
        let half_step = (LOG_STEP / 2.0).exp() - 1.0;
        assert!(half_step + 6e-8 <= MAX_RELATIVE_ERROR);
        assert!(MAX_RELATIVE_ERROR - half_step < 1e-6);
        assert_eq!(encode(QUANT_MIN_MM_H), 1);
        assert_eq!(encode(QUANT_MAX_MM_H), MAX_CODE);
        assert!((decode(MAX_CODE) / QUANT_MAX_MM_H - 1.0).abs() < 1e-5);
    }

    #[test]
    fn extremes_clamp_and_rain_stays_rain() {
        assert_eq!(encode(1e-30), 1);
        assert_eq!(encode(f32::MIN_POSITIVE), 1);
        assert_eq!(encode(f32::INFINITY), MAX_CODE);
        assert_eq!(encode(f32::MAX), MAX_CODE);
        assert!(decode(1) > 0.0);
        assert_eq!(decode(0), 0.0);
    }

    #[test]
    fn codes_are_monotonic() {
        let mut prev = 0.0f32;
        for c in 1..=MAX_CODE {
            let v = decode(c);
            assert!(v > prev, "code {c}");
            prev = v;
        }
    }
}
