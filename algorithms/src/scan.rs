//! The decoded radar scan, the formats Raincast reads, and decoding errors.

use crate::grid::{Grid, GridError};
use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Radar file formats Raincast decodes. The `name()` strings are the values
/// accepted by `--format` and printed in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// ODIM_H5 (HDF5): composites (OPERA, RMI, ...) and single-radar polar
    /// volumes or scans (gridded like NEXRAD).
    Odim,
    /// Australian BOM Rainfields netCDF4 (`prcp-cscn`, `prcp-c10`).
    Bom,
    /// MeteoSwiss AQC 8-bit GIF.
    MchGif,
    /// FMI gzip-compressed 8-bit PGM.
    FmiPgm,
    /// NOAA NEXRAD Archive II volume.
    Nexrad,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 5] = [
        Format::Odim,
        Format::Bom,
        Format::MchGif,
        Format::FmiPgm,
        Format::Nexrad,
    ];

    /// Stable lower-case name (`odim`, `bom`, `mch-gif`, `fmi-pgm`, `nexrad`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Odim => "odim",
            Format::Bom => "bom",
            Format::MchGif => "mch-gif",
            Format::FmiPgm => "fmi-pgm",
            Format::Nexrad => "nexrad",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown `--format` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}; expected one of odim, bom, mch-gif, fmi-pgm, nexrad")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// The physical quantity held in [`RadarScan::values`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Quantity {
    /// Rain rate in mm/h.
    RainRate,
    /// Radar reflectivity factor in dBZ.
    Reflectivity,
    /// Rain accumulation in mm over `seconds` ending at the scan time.
    Accumulation { seconds: f64 },
}

/// A Z–R relation `Z = a · R^b` (Z in mm⁶/m³, R in mm/h).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZR {
    /// Multiplier `a`.
    pub a: f64,
    /// Exponent `b`.
    pub b: f64,
}

impl ZR {
    /// Marshall–Palmer, Z = 200·R^1.6: Raincast's default.
    pub const MARSHALL_PALMER: ZR = ZR { a: 200.0, b: 1.6 };
    /// FMI's operational relation, Z = 223·R^1.53.
    pub const FMI: ZR = ZR { a: 223.0, b: 1.53 };
    /// NEXRAD's default convective relation, Z = 300·R^1.4.
    pub const NEXRAD_CONVECTIVE: ZR = ZR { a: 300.0, b: 1.4 };

    /// Rain rate (mm/h) from reflectivity (dBZ). `-inf` dBZ gives 0 mm/h,
    /// NaN stays NaN.
    pub fn rate_mm_h(self, dbz: f64) -> f64 {
        (10f64.powf(dbz / 10.0) / self.a).powf(1.0 / self.b)
    }

    /// Reflectivity (dBZ) from rain rate (mm/h); 0 mm/h gives `-inf`.
    pub fn dbz(self, rate_mm_h: f64) -> f64 {
        10.0 * (self.a * rate_mm_h.powf(self.b)).log10()
    }
}

impl Default for ZR {
    fn default() -> Self {
        ZR::MARSHALL_PALMER
    }
}

/// One decoded radar scan (or composite) on its native grid.
///
/// `values` holds the physical quantity named by `quantity`, shape
/// `(grid.rows, grid.cols)`, row 0 north. Cell states:
/// * `NaN`: **no data**: outside coverage, not scanned, fill value;
/// * `0.0` (rate, accumulation) or `-inf` (dBZ): **undetect**: scanned, no echo;
/// * anything else: a measured value.
#[derive(Debug, Clone)]
pub struct RadarScan {
    /// The format the bytes were decoded from.
    pub format: Format,
    /// Who produced the scan, from the file's metadata where present
    /// (e.g. `"ODIM:ORG:RMI"`, `"BOM radar 2"`, `"MeteoSwiss AQC"`).
    pub source: String,
    /// Nominal time of the scan (end of the accumulation period), UTC.
    pub time: DateTime<Utc>,
    /// What `values` measures.
    pub quantity: Quantity,
    /// Where the cells are.
    pub grid: Grid,
    /// Physical values, `(rows, cols)`, row 0 north; see the type docs.
    pub values: Array2<f32>,
    /// The Z–R relation the producer recommends for this product, if any
    /// (FMI: 223/1.53, NEXRAD: 300/1.4). Configuration may override it.
    pub zr_hint: Option<ZR>,
}

/// Why a scan could not be decoded. Every variant names the format and the
/// field, group or byte position involved, so that a quarantine record or an
/// error line tells an operator what is wrong without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before a structure is complete.
    #[error("{format}: truncated input: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        format: Format,
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// The file does not start with the signature of the format.
    #[error("{format}: wrong magic number: expected {expected}, found {found}")]
    BadMagic {
        format: Format,
        expected: &'static str,
        found: String,
    },
    /// No decoder recognised the content.
    #[error("unrecognised file content (starts with {head}); pass --format to force a decoder")]
    UnknownContent { head: String },
    /// A group, dataset, variable or attribute the format requires is absent.
    #[error("{format}: missing {path}")]
    Missing { format: Format, path: String },
    /// A field is present but its value is unusable.
    #[error("{format}: invalid {field} = {value}: {reason}")]
    BadValue {
        format: Format,
        field: String,
        value: String,
        reason: String,
    },
    /// A declared size is impossible or absurdly large.
    #[error("{format}: absurd size {field} = {value} (limit {limit})")]
    AbsurdSize {
        format: Format,
        field: String,
        value: u64,
        limit: u64,
    },
    /// The declared grid (rows × cols, or radials × gates) is above the
    /// configured `max_cells`: rejected before anything is allocated or
    /// inflated for it.
    #[error("{format}: {field} declares {rows} x {cols} = {cells} cells, above the limit max_cells = {limit}", cells = .rows.saturating_mul(*.cols))]
    TooLarge {
        format: Format,
        field: String,
        rows: u64,
        cols: u64,
        limit: u64,
    },
    /// The data do not have the declared or expected shape.
    #[error("{format}: shape mismatch for {field}: expected {expected}, found {found}")]
    Shape {
        format: Format,
        field: String,
        expected: String,
        found: String,
    },
    /// The container (HDF5, netCDF, GIF, gzip, bzip2) could not be read.
    #[error("{format}: container error in {layer}: {reason}")]
    Container {
        format: Format,
        layer: &'static str,
        reason: String,
    },
    /// The content is valid but uses a feature Raincast does not support.
    #[error("{format}: unsupported {what}")]
    Unsupported { format: Format, what: String },
    /// Decoded values that no radar measures (an infinite, negative or
    /// impossibly large rain rate, a reflectivity beyond ±100 dBZ): usually a
    /// wrong gain, offset or undeclared no-data value. The scan is refused as
    /// a whole, never stored with them ([`check_values`]).
    #[error("{format}: implausible {quantity}: {cells} cells outside {allowed} (first {} at row {row}, column {col}); is the product's gain, offset or no-data value wrong?", short_number(*.value as f64))]
    Implausible {
        format: Format,
        quantity: &'static str,
        cells: u64,
        value: f32,
        row: usize,
        col: usize,
        allowed: String,
    },
    /// The grid described by the file is invalid.
    #[error("{format}: invalid grid: {source}")]
    Grid {
        format: Format,
        #[source]
        source: GridError,
    },
}

impl DecodeError {
    /// A short machine-readable reason code (`truncated`, `bad_magic`, ...),
    /// used for metrics labels and quarantine records.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::UnknownContent { .. } => "unknown_content",
            DecodeError::Missing { .. } => "missing",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::AbsurdSize { .. } => "absurd_size",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Shape { .. } => "shape",
            DecodeError::Container { .. } => "container",
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::Implausible { .. } => "implausible",
            DecodeError::Grid { .. } => "grid",
        }
    }
}

/// A number for an error message: as written when short, else in
/// scientific notation (`1e30`, not thirty-one digits).
pub fn short_number(v: f64) -> String {
    let plain = v.to_string();
    if plain.len() <= 12 {
        plain
    } else {
        format!("{v:e}")
    }
}

/// The largest rain rate a scan may hold, mm/h. The heaviest rain ever
/// gauged is about 30 mm in one minute (1800 mm/h); radar products cap
/// their rates far lower (the reflectivity behind 2000 mm/h under
/// Marshall–Palmer is 81 dBZ, hail). Above it a value is not rain but a
/// decoding mistake (a wrong gain or an undeclared marker).
pub const MAX_PLAUSIBLE_RATE_MM_H: f32 = 2000.0;
/// The reflectivity range a scan may hold, dBZ (`-inf` is "undetect").
/// Weather radars report about −32 to 95 dBZ.
pub const PLAUSIBLE_DBZ: (f32, f32) = (-100.0, 100.0);
/// The most negative rain rate a scan may hold, mm/h. Products carry small
/// negative codes that mean "nothing measured here" (BOM's Rainfields
/// `prcp-c10` has a few cells of raw −2, −0.1 mm in 10 min, beside its fill
/// value −1), which the hot prep reads as no rain, as pysteps does. An
/// undeclared no-data marker (OPERA's −9 999 000) or a wrong offset lies far
/// below this.
pub const MIN_PLAUSIBLE_RATE_MM_H: f32 = -10.0;

/// Checks that a decoded scan holds only values a radar can measure: NaN
/// (no data) anywhere; rain rates and accumulations (as rates) from
/// [`MIN_PLAUSIBLE_RATE_MM_H`] to [`MAX_PLAUSIBLE_RATE_MM_H`]; reflectivity
/// from −100 to 100 dBZ or `-inf` (undetect). Anything else — an infinite
/// value, a negative rate, 1e30 mm/h — means the product's scaling or its
/// no-data marker was not what the file declares, and storing it would
/// turn a wrong value into rain (or a missing value into no rain): the
/// scan is refused with [`DecodeError::Implausible`], which names the
/// quantity, the count and the first offending cell.
pub fn check_values(scan: &RadarScan) -> Result<(), DecodeError> {
    let (quantity, lo, hi, allow_neg_inf) = match scan.quantity {
        Quantity::RainRate => (
            "rain rate (mm/h)",
            MIN_PLAUSIBLE_RATE_MM_H,
            MAX_PLAUSIBLE_RATE_MM_H,
            false,
        ),
        Quantity::Accumulation { seconds } => {
            let per = |rate: f32| (rate as f64 * seconds / 3600.0) as f32;
            (
                "accumulation (mm)",
                per(MIN_PLAUSIBLE_RATE_MM_H),
                per(MAX_PLAUSIBLE_RATE_MM_H),
                false,
            )
        }
        Quantity::Reflectivity => ("reflectivity (dBZ)", PLAUSIBLE_DBZ.0, PLAUSIBLE_DBZ.1, true),
    };
    // Without short-circuits, so that the count over a contiguous field
    // is one vectorised pass.
    let bad = |v: f32| {
        !(v.is_nan() | ((v >= lo) & (v <= hi)) | (allow_neg_inf & (v == f32::NEG_INFINITY)))
    };
    let cells = match scan.values.as_slice_memory_order() {
        // u32 lanes per block (u64 lanes halve the vector width).
        Some(all) => all
            .chunks(1 << 16)
            .map(|c| c.iter().map(|v| bad(*v) as u32).sum::<u32>() as u64)
            .sum(),
        None => scan.values.iter().filter(|v| bad(**v)).count() as u64,
    };
    if cells == 0 {
        return Ok(());
    }
    let allowed = match scan.quantity {
        Quantity::RainRate => format!("{lo} … {hi} mm/h or NaN (no data)"),
        Quantity::Accumulation { seconds } => format!(
            "{lo} … {hi} mm over {seconds} s ({MIN_PLAUSIBLE_RATE_MM_H} … {MAX_PLAUSIBLE_RATE_MM_H} mm/h) or NaN (no data)"
        ),
        Quantity::Reflectivity => format!("{lo} … {hi} dBZ, -inf (undetect) or NaN (no data)"),
    };
    let cols = scan.values.ncols().max(1);
    let (i, value) = scan
        .values
        .iter()
        .enumerate()
        .find(|(_, v)| bad(**v))
        .map_or((0, f32::NAN), |(i, v)| (i, *v));
    Err(DecodeError::Implausible {
        format: scan.format,
        quantity,
        cells,
        value,
        row: i / cols,
        col: i % cols,
        allowed,
    })
}

/// Upper bound on the number of cells of any decoded field (~400 M cells =
/// 1.6 GB of f32): the largest `max_cells` a configuration may set.
pub const MAX_CELLS: u64 = 400_000_000;

/// Default limit on the cells a decoder accepts (25 M cells = 100 MB of
/// f32; the largest real product, OPERA's 2200 × 1900 composite, has 4.2 M).
/// A file declaring more is rejected with [`DecodeError::TooLarge`] before
/// any allocation or decompression for it.
pub const DEFAULT_MAX_CELLS: u64 = 25_000_000;

/// Checks a declared `rows × cols` grid against `max_cells`, before
/// anything is allocated for it. `field` names where the shape was declared.
pub fn check_cells(
    format: Format,
    field: &str,
    rows: u64,
    cols: u64,
    max_cells: u64,
) -> Result<(), DecodeError> {
    if rows.saturating_mul(cols) > max_cells {
        return Err(DecodeError::TooLarge {
            format,
            field: field.to_string(),
            rows,
            cols,
            limit: max_cells,
        });
    }
    Ok(())
}

/// Test helper: a scan of `values` (1-km cells) from a made-up ODIM source.
#[cfg(test)]
pub(crate) fn test_scan(values: Array2<f32>, quantity: Quantity) -> RadarScan {
    let (rows, cols) = values.dim();
    RadarScan {
        format: Format::Odim,
        source: "test".into(),
        time: DateTime::<Utc>::from_timestamp(1_600_000_000, 0).expect("time"),
        quantity,
        grid: Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84",
            rows,
            cols,
            1000.0,
            1000.0,
            0.0,
            0.0,
        )
        .expect("grid"),
        values,
        zr_hint: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert!("MCH-GIF".parse::<Format>().is_ok());
        let err = "tiff".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("tiff"));
    }

    fn scan_of(values: Vec<f32>, quantity: Quantity) -> RadarScan {
        test_scan(
            Array2::from_shape_vec((values.len() / 3, 3), values).expect("shape"),
            quantity,
        )
    }

    #[test]
    fn values_no_radar_measures_are_refused_with_the_first_cell_named() {
        let acc = Quantity::Accumulation { seconds: 360.0 };
        // Plausible: no data anywhere, undetect, rounding below 0, the
        // limits themselves (an accumulation's limit scales with its period).
        for (values, q) in [
            (
                vec![f32::NAN, 0.0, -0.005, 1.5, MAX_PLAUSIBLE_RATE_MM_H, 60.0],
                Quantity::RainRate,
            ),
            (vec![f32::NAN, 0.0, 200.0, 12.0, 0.1, -0.01], acc),
            (
                vec![f32::NAN, f32::NEG_INFINITY, -32.0, 95.5, 100.0, -100.0],
                Quantity::Reflectivity,
            ),
        ] {
            assert_eq!(
                check_values(&scan_of(values.clone(), q)),
                Ok(()),
                "{values:?}"
            );
        }
        // Implausible: each of these was stored as rain (or as no rain) by an
        // audit's hostile files before the check.
        for (values, q, cells, row, col) in [
            (
                vec![0.0, 1.0, 2.0, 3.0, f32::INFINITY, f32::INFINITY],
                Quantity::RainRate,
                2,
                1,
                1,
            ),
            (
                vec![0.0, 1e30, 0.0, 0.0, 0.0, 0.0],
                Quantity::RainRate,
                1,
                0,
                1,
            ),
            (
                vec![0.0, 0.0, 0.0, -9_999_000.0, f32::NAN, -50.0],
                Quantity::RainRate,
                2,
                1,
                0,
            ),
            (
                vec![0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0],
                Quantity::RainRate,
                1,
                0,
                1,
            ),
            (vec![0.0, 0.0, 0.0, 0.0, 0.0, 201.0], acc, 1, 1, 2),
            (
                vec![f32::INFINITY, 20.0, 30.0, 100.5, -32.0, -101.0],
                Quantity::Reflectivity,
                3,
                0,
                0,
            ),
        ] {
            let err = check_values(&scan_of(values.clone(), q)).expect_err("implausible");
            assert_eq!(err.code(), "implausible");
            assert!(
                matches!(err, DecodeError::Implausible { cells: c, row: r, col: k, .. } if c == cells && r == row && k == col),
                "{values:?}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("{cells} cells")) && text.contains("gain"),
                "{text}"
            );
        }
    }

    #[test]
    fn long_numbers_are_shown_short() {
        assert_eq!(short_number(1e30), "1e30");
        assert_eq!(short_number(-9_999_000.0), "-9999000");
        assert_eq!(short_number(f64::INFINITY), "inf");
        assert_eq!(short_number(1e300), "1e300");
        assert_eq!(short_number(0.1), "0.1");
    }

    #[test]
    fn zr_relations() {
        let mp = ZR::MARSHALL_PALMER;
        // 200 * 1^1.6 = 200 -> 23.01 dBZ.
        assert!((mp.dbz(1.0) - 23.0103).abs() < 1e-3);
        assert!((mp.rate_mm_h(mp.dbz(12.5)) - 12.5).abs() < 1e-9);
        assert_eq!(mp.rate_mm_h(f64::NEG_INFINITY), 0.0);
        assert!(mp.rate_mm_h(f64::NAN).is_nan());
    }
}
