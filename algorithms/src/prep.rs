//! Hot prep: a decoded scan becomes a rain-rate field.
//!
//! Steps, in order (see [`prep`]):
//! 1. physical values → rain rate in mm/h ([`to_rain_rate`]): dBZ through a
//!    Z–R relation, accumulations divided by their duration;
//! 2. a rain threshold (default 0.1 mm/h): finite cells below it become 0;
//! 3. an optional speckle filter (see [`remove_speckle`]).
//!
//! No data (`NaN`) is never turned into rain or into zero by any step.

use crate::grid::Grid;
use crate::scan::{Quantity, RadarScan, ZR};
use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// A rain-rate field on a grid.
#[derive(Debug, Clone)]
pub struct RainField {
    /// Where the cells are.
    pub grid: Grid,
    /// Valid time (UTC).
    pub time: DateTime<Utc>,
    /// Rain rate in mm/h, `(rows, cols)`, row 0 north. `NaN` = no data,
    /// `0.0` = no rain.
    pub rate_mm_h: Array2<f32>,
}

impl RainField {
    /// Number of no-data cells.
    pub fn nodata_cells(&self) -> usize {
        self.rate_mm_h.iter().filter(|v| v.is_nan()).count()
    }

    /// Number of cells with rain (finite and > 0).
    pub fn rain_cells(&self) -> usize {
        self.rate_mm_h.iter().filter(|v| **v > 0.0).count()
    }

    /// Largest finite rate (0 when there is none).
    pub fn max_mm_h(&self) -> f32 {
        self.rate_mm_h
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(*v))
    }

    /// Mean rate over all cells with data (0 when there is none).
    pub fn mean_mm_h(&self) -> f64 {
        let (sum, n) = self
            .rate_mm_h
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0f64, 0usize), |(s, n), v| (s + *v as f64, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }
}

/// Options for [`prep`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrepOptions {
    /// Z–R relation for reflectivity sources. `None` uses the product's own
    /// hint ([`RadarScan::zr_hint`]) and otherwise Marshall–Palmer.
    pub zr: Option<ZR>,
    /// Rates below this (mm/h) count as no rain. Default 0.1.
    pub threshold_mm_h: f32,
    /// Remove isolated rain cells (see [`remove_speckle`]). Default off.
    pub speckle_filter: bool,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            zr: None,
            threshold_mm_h: 0.1,
            speckle_filter: false,
        }
    }
}

/// Converts a scan's physical values to rain rate (mm/h), *before* any
/// threshold. NaN stays NaN; undetect becomes 0.
pub fn to_rain_rate(scan: &RadarScan, zr: Option<ZR>) -> RainField {
    let rate = match scan.quantity {
        Quantity::RainRate => scan.values.clone(),
        Quantity::Accumulation { seconds } => {
            let k = (3600.0 / seconds) as f32;
            scan.values.mapv(|v| v * k)
        }
        Quantity::Reflectivity => {
            let zr = zr.or(scan.zr_hint).unwrap_or_default();
            scan.values.mapv(|dbz| {
                if dbz.is_nan() {
                    f32::NAN
                } else {
                    zr.rate_mm_h(dbz as f64) as f32
                }
            })
        }
    };
    RainField {
        grid: scan.grid.clone(),
        time: scan.time,
        rate_mm_h: rate,
    }
}

/// Sets finite rates below `threshold_mm_h` (and negative values) to 0.
pub fn apply_threshold(field: &mut RainField, threshold_mm_h: f32) {
    field.rate_mm_h.mapv_inplace(|v| {
        if v.is_finite() && v < threshold_mm_h {
            0.0
        } else {
            v
        }
    });
}

/// Removes isolated rain cells: a cell with rain whose 8 neighbours hold no
/// rain (zero or no data) is set to 0. Such single-pixel echoes are mostly
/// clutter, insects or noise, and a nowcast cannot track them anyway.
/// Returns the number of cells removed.
pub fn remove_speckle(field: &mut RainField) -> usize {
    let (rows, cols) = field.rate_mm_h.dim();
    let src = &field.rate_mm_h;
    let mut isolated = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            if src[[r, c]].is_nan() || src[[r, c]] <= 0.0 {
                continue;
            }
            let mut neighbour_rain = false;
            'n: for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    if dr == 0 && dc == 0 {
                        continue;
                    }
                    let (nr, nc) = (r as i64 + dr, c as i64 + dc);
                    if nr < 0 || nc < 0 || nr >= rows as i64 || nc >= cols as i64 {
                        continue;
                    }
                    if src[[nr as usize, nc as usize]] > 0.0 {
                        neighbour_rain = true;
                        break 'n;
                    }
                }
            }
            if !neighbour_rain {
                isolated.push((r, c));
            }
        }
    }
    for &(r, c) in &isolated {
        field.rate_mm_h[[r, c]] = 0.0;
    }
    isolated.len()
}

/// The whole hot prep: rate, threshold, optional speckle filter.
pub fn prep(scan: &RadarScan, opts: &PrepOptions) -> RainField {
    let mut field = to_rain_rate(scan, opts.zr);
    apply_threshold(&mut field, opts.threshold_mm_h);
    if opts.speckle_filter {
        remove_speckle(&mut field);
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn scan(values: Array2<f32>, quantity: Quantity) -> RadarScan {
        crate::scan::test_scan(values, quantity)
    }

    #[test]
    fn reflectivity_uses_marshall_palmer_and_keeps_nodata_apart() {
        let s = scan(
            array![[23.0103, f32::NAN], [f32::NEG_INFINITY, 0.0]],
            Quantity::Reflectivity,
        );
        let f = to_rain_rate(&s, None);
        assert!((f.rate_mm_h[[0, 0]] - 1.0).abs() < 1e-4);
        assert!(f.rate_mm_h[[0, 1]].is_nan());
        assert_eq!(f.rate_mm_h[[1, 0]], 0.0);
        assert_eq!(f.nodata_cells(), 1);
    }

    #[test]
    fn accumulation_becomes_rate() {
        let s = scan(
            array![[0.5f32, 0.0]],
            Quantity::Accumulation { seconds: 360.0 },
        );
        let f = to_rain_rate(&s, None);
        assert!((f.rate_mm_h[[0, 0]] - 5.0).abs() < 1e-6);
    }

    #[test]
    fn threshold_and_speckle() {
        let s = scan(
            array![
                [0.05, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, f32::NAN],
                [0.0, 0.0, 2.0, 3.0],
                [9.0, 0.0, 0.0, 1.0]
            ],
            Quantity::RainRate,
        );
        let f = prep(
            &s,
            &PrepOptions {
                speckle_filter: true,
                ..Default::default()
            },
        );
        assert_eq!(f.rate_mm_h[[0, 0]], 0.0, "below threshold");
        assert_eq!(f.rate_mm_h[[3, 0]], 0.0, "isolated speckle removed");
        assert_eq!(f.rate_mm_h[[2, 2]], 2.0, "connected rain kept");
        assert!(f.rate_mm_h[[1, 3]].is_nan(), "no data kept");
        assert_eq!(f.rain_cells(), 3);
    }
}
