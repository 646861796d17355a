//! ODIM_H5 encoder: a rain-rate field becomes an ODIM_H5 v2.2 composite
//! (`RATE`, mm/h) that [`crate::decode::odim`] and other ODIM readers read.
//!
//! Used by the synthetic demo radar (`raincast run` writes such files every
//! few seconds) and by tests that need ODIM files with known content.
//!
//! Layout written (attribute names as in the ODIM_H5 v2.2 specification):
//! ```text
//! /                      Conventions = "ODIM_H5/V2_2"
//! /what                  object = "COMP", version = "H5rad 2.2", date, time, source
//! /where                 projdef, xsize, ysize, xscale, yscale,
//!                        UL/UR/LL/LR_lon, UL/UR/LL/LR_lat (outer corners)
//! /how                   software = "Raincast"
//! /dataset1/what         product = "COMP", startdate, starttime, enddate, endtime
//! /dataset1/data1/what   quantity = "RATE", gain, offset, nodata, undetect
//! /dataset1/data1/data   uint8 or uint16 (rows, cols), row 0 north,
//!                        chunked and deflated unless disabled
//! ```
//! Encoding of each cell (`rate` in mm/h):
//! * `NaN` (no data) → `nodata`;
//! * `rate <= 0` (no rain) → `undetect`;
//! * otherwise `raw = round((rate − offset) / gain)`, clamped to the type's
//!   range. A rate that rounds onto the `undetect` code (below half a step
//!   with the defaults) is written as undetect, i.e. no rain; one that
//!   rounds onto `nodata` moves to the neighbouring code. The maximum error
//!   inside the range is `gain / 2`.
//!
//! The HDF5 container is written by the pure-Rust `hdf5-writer` crate
//! (sibling of the `hdf5-reader` used for decoding).

use crate::grid::{Grid, GridError};
use crate::prep::RainField;
use chrono::{DateTime, Utc};
use hdf5_writer::{
    AttributeBuilder, DatasetBuilder, FilterDescription, Hdf5Builder, WriteOptions, FILTER_DEFLATE,
};

/// Storage type of the raw values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawType {
    /// 8-bit unsigned (codes 0–255).
    U8,
    /// 16-bit unsigned (codes 0–65 535).
    U16,
}

impl RawType {
    fn max_code(self) -> f64 {
        match self {
            RawType::U8 => u8::MAX as f64,
            RawType::U16 => u16::MAX as f64,
        }
    }
}

/// How [`encode_rate`] quantises and labels the field.
#[derive(Debug, Clone, PartialEq)]
pub struct OdimRateOptions {
    /// Raw storage type.
    pub raw: RawType,
    /// mm/h per raw step (finite, > 0).
    pub gain: f64,
    /// mm/h at raw 0 (finite).
    pub offset: f64,
    /// Raw code for no data (an integer code of `raw`).
    pub nodata: f64,
    /// Raw code for "scanned, no rain" (an integer code of `raw`, not `nodata`).
    pub undetect: f64,
    /// `what/source`, e.g. `"NOD:xxdem,PLC:Raincast demo"`.
    pub source: String,
    /// zlib level 1–9 for the data (chunked), or `None` for uncompressed
    /// contiguous storage.
    pub deflate_level: Option<u32>,
}

impl OdimRateOptions {
    /// 16-bit codes of 0.01 mm/h (0.01 … 655.34 mm/h), undetect 0,
    /// nodata 65 535, deflate level 6.
    pub fn u16(source: impl Into<String>) -> Self {
        Self {
            raw: RawType::U16,
            gain: 0.01,
            offset: 0.0,
            nodata: 65_535.0,
            undetect: 0.0,
            source: source.into(),
            deflate_level: Some(6),
        }
    }

    /// 8-bit codes of 0.5 mm/h (0.5 … 127 mm/h), undetect 0, nodata 255,
    /// deflate level 6.
    pub fn u8(source: impl Into<String>) -> Self {
        Self {
            raw: RawType::U8,
            gain: 0.5,
            offset: 0.0,
            nodata: 255.0,
            undetect: 0.0,
            source: source.into(),
            deflate_level: Some(6),
        }
    }

    fn validate(&self) -> Result<(), EncodeError> {
        let bad = |field: &'static str, value: f64, reason: &str| EncodeError::BadOption {
            field,
            value: value.to_string(),
            reason: reason.into(),
        };
        if !(self.gain.is_finite() && self.gain > 0.0) {
            return Err(bad("gain", self.gain, "must be finite and > 0"));
        }
        if !self.offset.is_finite() {
            return Err(bad("offset", self.offset, "must be finite"));
        }
        let max = self.raw.max_code();
        for (field, code) in [("nodata", self.nodata), ("undetect", self.undetect)] {
            if !(code.fract() == 0.0 && (0.0..=max).contains(&code)) {
                return Err(bad(field, code, "must be an integer code of the raw type"));
            }
        }
        if self.nodata == self.undetect {
            return Err(bad("undetect", self.undetect, "must differ from nodata"));
        }
        if let Some(level) = self.deflate_level {
            if !(1..=9).contains(&level) {
                return Err(bad("deflate_level", level as f64, "must be 1..=9"));
            }
        }
        Ok(())
    }
}

/// Why a field could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// An option is out of range.
    #[error("invalid ODIM option {field} = {value}: {reason}")]
    BadOption {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The grid's corners could not be inverse-projected to lon/lat.
    #[error("grid corners: {0}")]
    Grid(#[from] GridError),
    /// The HDF5 writer refused the layout.
    #[error("HDF5 writer: {0}")]
    Hdf5(String),
}

impl From<hdf5_writer::Error> for EncodeError {
    fn from(e: hdf5_writer::Error) -> Self {
        EncodeError::Hdf5(e.to_string())
    }
}

/// Encodes `field` (mm/h, NaN = no data, 0 = no rain) as an ODIM_H5 `RATE`
/// composite; see the module docs for the layout and the quantisation.
pub fn encode_rate(field: &RainField, opts: &OdimRateOptions) -> Result<Vec<u8>, EncodeError> {
    opts.validate()?;
    let grid = &field.grid;
    let (rows, cols) = grid.shape();
    let code = quantiser(opts);
    let shape = vec![rows as u64, cols as u64];
    let data = match opts.raw {
        RawType::U8 => {
            let raw: Vec<u8> = field.rate_mm_h.iter().map(|&r| code(r) as u8).collect();
            DatasetBuilder::typed_data("dataset1/data1/data", shape, &raw)?
        }
        RawType::U16 => {
            let raw: Vec<u16> = field.rate_mm_h.iter().map(|&r| code(r) as u16).collect();
            DatasetBuilder::typed_data("dataset1/data1/data", shape, &raw)?
        }
    };
    let data = match opts.deflate_level {
        Some(level) => data
            .chunked(vec![rows.min(256) as u64, cols.min(256) as u64])
            .filter(FilterDescription {
                id: FILTER_DEFLATE,
                name: None,
                client_data: vec![level],
            }),
        None => data,
    }
    .attribute(AttributeBuilder::fixed_string("CLASS", "IMAGE"))
    .attribute(AttributeBuilder::fixed_string("IMAGE_VERSION", "1.2"));

    let builder = composite_metadata(Hdf5Builder::new(), grid, field.time, &opts.source)?;
    let builder = dataset_what(builder, "dataset1", field.time, field.time)
        .dataset(data)
        .group_attribute(
            "dataset1/data1/what",
            AttributeBuilder::fixed_string("quantity", "RATE"),
        )
        .group_attribute(
            "dataset1/data1/what",
            AttributeBuilder::scalar("gain", opts.gain)?,
        )
        .group_attribute(
            "dataset1/data1/what",
            AttributeBuilder::scalar("offset", opts.offset)?,
        )
        .group_attribute(
            "dataset1/data1/what",
            AttributeBuilder::scalar("nodata", opts.nodata)?,
        )
        .group_attribute(
            "dataset1/data1/what",
            AttributeBuilder::scalar("undetect", opts.undetect)?,
        );
    finish(builder)
}

/// The raw code (an integer as f64) of one rate; see the module docs.
fn quantiser(opts: &OdimRateOptions) -> impl Fn(f32) -> f64 + '_ {
    let max = opts.raw.max_code();
    let inv_gain = 1.0 / opts.gain;
    move |rate: f32| -> f64 {
        if rate.is_nan() {
            return opts.nodata;
        }
        if rate <= 0.0 {
            return opts.undetect;
        }
        let q = ((rate as f64 - opts.offset) * inv_gain)
            .round()
            .clamp(0.0, max);
        if q != opts.nodata {
            return q;
        }
        let up = q + 1.0;
        if up <= max && up != opts.undetect {
            up
        } else {
            q - 1.0
        }
    }
}

/// Root `Conventions`, `/what`, `/where` (grid and corners) and `/how`.
/// Shared with the decoder tests, which add their own (possibly broken)
/// datasets on top.
pub(crate) fn composite_metadata(
    builder: Hdf5Builder,
    grid: &Grid,
    time: DateTime<Utc>,
    source: &str,
) -> Result<Hdf5Builder, EncodeError> {
    let (date, hms) = odim_date_time(time);
    let [ul, ur, lr, ll] = grid.corners_lonlat()?;
    let mut b = builder
        .attribute(AttributeBuilder::fixed_string(
            "Conventions",
            "ODIM_H5/V2_2",
        ))
        .group_attribute("what", AttributeBuilder::fixed_string("object", "COMP"))
        .group_attribute(
            "what",
            AttributeBuilder::fixed_string("version", "H5rad 2.2"),
        )
        .group_attribute("what", AttributeBuilder::fixed_string("date", &date))
        .group_attribute("what", AttributeBuilder::fixed_string("time", &hms))
        .group_attribute("what", AttributeBuilder::fixed_string("source", source))
        .group_attribute(
            "how",
            AttributeBuilder::fixed_string("software", "Raincast"),
        )
        .group_attribute(
            "where",
            AttributeBuilder::fixed_string("projdef", grid.projection.trim()),
        )
        .group_attribute(
            "where",
            AttributeBuilder::scalar("xsize", grid.cols as i64)?,
        )
        .group_attribute(
            "where",
            AttributeBuilder::scalar("ysize", grid.rows as i64)?,
        )
        .group_attribute("where", AttributeBuilder::scalar("xscale", grid.cell_x_m)?)
        .group_attribute("where", AttributeBuilder::scalar("yscale", grid.cell_y_m)?);
    for (name, (lon, lat)) in [("UL", ul), ("UR", ur), ("LR", lr), ("LL", ll)] {
        b = b
            .group_attribute(
                "where",
                AttributeBuilder::scalar(format!("{name}_lon"), lon)?,
            )
            .group_attribute(
                "where",
                AttributeBuilder::scalar(format!("{name}_lat"), lat)?,
            );
    }
    Ok(b)
}

/// `datasetN/what`: product and the start/end of the measurement.
pub(crate) fn dataset_what(
    builder: Hdf5Builder,
    dataset: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Hdf5Builder {
    let what = format!("{dataset}/what");
    let (sd, st) = odim_date_time(start);
    let (ed, et) = odim_date_time(end);
    builder
        .group_attribute(&what, AttributeBuilder::fixed_string("product", "COMP"))
        .group_attribute(&what, AttributeBuilder::fixed_string("startdate", sd))
        .group_attribute(&what, AttributeBuilder::fixed_string("starttime", st))
        .group_attribute(&what, AttributeBuilder::fixed_string("enddate", ed))
        .group_attribute(&what, AttributeBuilder::fixed_string("endtime", et))
}

/// Serialises a builder to HDF5 bytes.
pub(crate) fn finish(builder: Hdf5Builder) -> Result<Vec<u8>, EncodeError> {
    Ok(builder.into_plan()?.encode(WriteOptions::default())?)
}

/// ODIM `YYYYMMDD` and `HHMMSS`.
fn odim_date_time(t: DateTime<Utc>) -> (String, String) {
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S").to_string(),
    )
}

/// One sweep of a polar file written by [`encode_polar`].
#[derive(Debug, Clone)]
pub struct PolarSweep<'a> {
    /// `where/elangle`, degrees.
    pub elangle_deg: f64,
    /// `what/quantity` of its one data group (`DBZH`, `TH`, `VRADH`, ...).
    pub quantity: &'a str,
    /// `where/rscale`: gate spacing, metres.
    pub gate_m: f64,
    /// `where/rstart`: range to the start of the first gate, km.
    pub rstart_km: f64,
    /// Values `(rays, bins)`, ray 0 centred half a ray clockwise from
    /// north: NaN → `nodata` (255), −∞ → `undetect` (0), otherwise
    /// `round((v + 32) / 0.5)` clamped to 1..=254 (dBZ −31.5..=95).
    pub values: &'a ndarray::Array2<f32>,
}

/// An ODIM_H5 v2.2 polar file (`object` `PVOL` or `SCAN`) of the radar at
/// (`lat_deg`, `lon_deg`, `height_m`) with these sweeps as `dataset1`,
/// `dataset2`, ... in the order given (u8, gain 0.5, offset −32, not
/// deflated). For tests and fuzz seeds: Raincast itself never writes polar
/// data.
pub fn encode_polar(
    object: &str,
    (lat_deg, lon_deg, height_m): (f64, f64, f64),
    time: DateTime<Utc>,
    source: &str,
    sweeps: &[PolarSweep],
) -> Result<Vec<u8>, EncodeError> {
    let (date, hms) = odim_date_time(time);
    let text = AttributeBuilder::fixed_string;
    let mut b = Hdf5Builder::new()
        .attribute(text("Conventions", "ODIM_H5/V2_2"))
        .group_attribute("what", text("object", object))
        .group_attribute("what", text("version", "H5rad 2.2"))
        .group_attribute("what", text("date", &date))
        .group_attribute("what", text("time", &hms))
        .group_attribute("what", text("source", source))
        .group_attribute("where", AttributeBuilder::scalar("lat", lat_deg)?)
        .group_attribute("where", AttributeBuilder::scalar("lon", lon_deg)?)
        .group_attribute("where", AttributeBuilder::scalar("height", height_m)?);
    for (i, sweep) in sweeps.iter().enumerate() {
        let ds = format!("dataset{}", i + 1);
        let (what, place) = (format!("{ds}/what"), format!("{ds}/where"));
        let data_what = format!("{ds}/data1/what");
        let (rays, bins) = sweep.values.dim();
        let raw: Vec<u8> = sweep
            .values
            .iter()
            .map(|v| match *v {
                v if v.is_nan() => 255,
                v if v == f32::NEG_INFINITY => 0,
                v => ((v as f64 + 32.0) / 0.5).round().clamp(1.0, 254.0) as u8,
            })
            .collect();
        b = b
            .group_attribute(&what, text("product", "SCAN"))
            .group_attribute(&what, text("startdate", &date))
            .group_attribute(&what, text("starttime", &hms))
            .group_attribute(
                &place,
                AttributeBuilder::scalar("elangle", sweep.elangle_deg)?,
            )
            .group_attribute(&place, AttributeBuilder::scalar("nrays", rays as i64)?)
            .group_attribute(&place, AttributeBuilder::scalar("nbins", bins as i64)?)
            .group_attribute(&place, AttributeBuilder::scalar("rscale", sweep.gate_m)?)
            .group_attribute(&place, AttributeBuilder::scalar("rstart", sweep.rstart_km)?)
            .group_attribute(&place, AttributeBuilder::scalar("a1gate", 0i64)?)
            .group_attribute(&data_what, text("quantity", sweep.quantity))
            .group_attribute(&data_what, AttributeBuilder::scalar("gain", 0.5f64)?)
            .group_attribute(&data_what, AttributeBuilder::scalar("offset", -32.0f64)?)
            .group_attribute(&data_what, AttributeBuilder::scalar("nodata", 255.0f64)?)
            .group_attribute(&data_what, AttributeBuilder::scalar("undetect", 0.0f64)?)
            .dataset(DatasetBuilder::typed_data(
                format!("{ds}/data1/data"),
                vec![rays as u64, bins as u64],
                &raw,
            )?);
    }
    finish(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ndarray::Array2;

    fn field(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f32) -> RainField {
        let grid = Grid::new(
            "+proj=stere +lon_0=25 +lat_0=90 +lat_ts=60 +a=6371288 +x_0=380886.310 +y_0=3395677.920",
            rows,
            cols,
            1000.0,
            1000.0,
            0.0,
            1_000_000.0,
        )
        .expect("grid");
        RainField {
            grid,
            time: Utc.with_ymd_and_hms(2016, 9, 28, 16, 0, 0).unwrap(),
            rate_mm_h: Array2::from_shape_fn((rows, cols), |(r, c)| f(r, c)),
        }
    }

    #[test]
    fn options_are_validated() {
        let f = field(2, 2, |_, _| 1.0);
        type Tweak = fn(&mut OdimRateOptions);
        let cases: [(&str, Tweak); 6] = [
            ("gain", |o| o.gain = f64::NAN),
            ("gain", |o| o.gain = 0.0),
            ("offset", |o| o.offset = f64::INFINITY),
            ("nodata", |o| o.nodata = 256.0),
            ("undetect", |o| o.undetect = o.nodata),
            ("deflate_level", |o| o.deflate_level = Some(0)),
        ];
        for (field_name, tweak) in cases {
            let mut o = OdimRateOptions::u8("NOD:x");
            tweak(&mut o);
            match encode_rate(&f, &o) {
                Err(EncodeError::BadOption { field, .. }) => assert_eq!(field, field_name),
                other => panic!("{field_name}: {other:?}"),
            }
        }
    }

    #[test]
    fn quantiser_codes() {
        let o = OdimRateOptions::u8("x");
        let q = quantiser(&o);
        assert_eq!(q(f32::NAN), 255.0);
        assert_eq!(q(0.0), 0.0);
        assert_eq!(q(-3.0), 0.0);
        assert_eq!(q(0.2), 0.0, "below half a step is no rain");
        assert_eq!(q(0.3), 1.0);
        assert_eq!(q(12.4), 25.0);
        assert_eq!(q(1e6), 254.0, "clamped, never the nodata code");
        let mut o = OdimRateOptions::u16("x");
        o.nodata = 100.0;
        let q = quantiser(&o);
        assert_eq!(q(1.0), 101.0, "a rate on the nodata code moves up");
    }

    #[test]
    fn compressed_output_is_small_and_valid_hdf5() {
        // A mostly dry 400 x 300 field with a rain blob and a no-data band.
        let f = field(400, 300, |r, c| {
            if c < 20 {
                f32::NAN
            } else {
                let d = ((r as f32 - 200.0).powi(2) + (c as f32 - 150.0).powi(2)).sqrt();
                (20.0 - d * 0.5).max(0.0)
            }
        });
        let packed = encode_rate(&f, &OdimRateOptions::u16("NOD:x")).unwrap();
        let mut plain_opts = OdimRateOptions::u16("NOD:x");
        plain_opts.deflate_level = None;
        let plain = encode_rate(&f, &plain_opts).unwrap();
        assert!(packed.starts_with(b"\x89HDF\r\n\x1a\n"));
        assert!(plain.len() > 400 * 300 * 2, "{}", plain.len());
        assert!(
            packed.len() * 10 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        let a = crate::decode::odim::decode(&packed, None).unwrap();
        let b = crate::decode::odim::decode(&plain, None).unwrap();
        assert_eq!(a.values.shape(), &[400, 300]);
        assert!(a
            .values
            .iter()
            .zip(b.values.iter())
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        assert_eq!(a.values.iter().filter(|v| v.is_nan()).count(), 400 * 20);
    }
}
