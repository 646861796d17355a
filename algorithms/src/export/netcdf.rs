//! A whole nowcast as a CF-1.8 netCDF file (classic 64-bit offset format).
//!
//! The `netcdf-writer` crate writes the header and the small variables; the
//! rain rates follow as the file's records, one per lead, which
//! [`NetcdfStream`] hands out a piece at a time, so that a nowcast of any
//! size is written with one piece in memory (the crate holds a whole file
//! in memory twice: a 1-km European composite's 24 leads, a 1.6-GB file,
//! took 6 GB). [`encode_nowcast_netcdf`] joins the pieces; the bytes are
//! those the crate writes for the whole file (test
//! `the_stream_is_the_file_the_crate_writes`).
//!
//! Contents:
//! * dimensions `time` (unlimited, one record per lead), `y` (rows, north
//!   first), `x` (columns);
//! * `time(time)`: valid times, seconds since 1970-01-01 UTC;
//!   `forecast_period(time)`: leads, minutes; `forecast_reference_time`: the
//!   issue time (also the global attribute of the same name, ISO 8601);
//! * `y(y)`, `x(x)`: projected coordinates of the cell centres, metres;
//! * `rainfall_rate(time, y, x)`: Float32, `mm h-1`, `_FillValue` NaN (no
//!   data), `grid_mapping = "crs"`;
//! * `crs`: the grid mapping ([`super::crs::Crs::cf_grid_mapping`]) with
//!   `crs_wkt` and the PROJ string.

use super::crs::{CfValue, Crs, Method};
use super::ExportError;
use crate::Grid;
use chrono::{DateTime, SecondsFormat, Utc};
use ndarray::Array2;
use netcdf_writer::{NcAttrValue, NcFileBuilder, NcWriteOptions};

/// What goes into the file.
#[derive(Debug, Clone, Copy)]
pub struct NowcastFile<'a> {
    pub grid: &'a Grid,
    /// Radar id and name (global attributes).
    pub radar: &'a str,
    pub radar_name: &'a str,
    /// The issue time (the newest input scan).
    pub issued: DateTime<Utc>,
    /// Leads, minutes after `issued`, one per field.
    pub leads_min: &'a [u32],
    /// Rain rate per lead, mm/h, `(rows, cols)`, NaN = no data.
    pub rate_mm_h: &'a [Array2<f32>],
    /// When the nowcast was made (the `history` attribute).
    pub created: DateTime<Utc>,
    /// The producing software, e.g. `Raincast 0.1.0`.
    pub source: &'a str,
}

const EPOCH_UNITS: &str = "seconds since 1970-01-01 00:00:00";

fn nc_err(e: netcdf_writer::Error) -> ExportError {
    ExportError::NetCdf(e.to_string())
}

fn text(s: impl Into<String>) -> NcAttrValue {
    NcAttrValue::Chars(s.into())
}

/// Encodes the nowcast; returns the file's bytes (all the pieces of a
/// [`NetcdfStream`]).
pub fn encode_nowcast_netcdf(n: &NowcastFile<'_>) -> Result<Vec<u8>, ExportError> {
    let mut stream = NetcdfStream::new(n)?;
    let mut out = Vec::with_capacity(usize::try_from(stream.len()).unwrap_or(0));
    while let Some(piece) = stream.next_piece(n, usize::MAX) {
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// The netCDF file of a nowcast in pieces: the header and the small
/// variables first, then per lead its record (valid time, lead, and the
/// rain rates, big-endian) in pieces of a bounded size.
#[derive(Debug, Clone)]
pub struct NetcdfStream {
    /// The header and fixed-size variables, until handed out.
    head: Option<Vec<u8>>,
    /// The next record (lead) and its next cell.
    lead: usize,
    cell: usize,
    /// Bytes of the whole file and bytes handed out.
    len: u64,
    sent: u64,
}

/// Bytes of one record before its rain rates: valid time and lead (f64).
const RECORD_PREFIX: usize = 16;

impl NetcdfStream {
    /// Checks `n` and writes its header (with the record count).
    pub fn new(n: &NowcastFile<'_>) -> Result<Self, ExportError> {
        let b = builder(n, false)?;
        let (_, mut head) = b.to_vec(NcWriteOptions::offset64()).map_err(nc_err)?;
        // The classic header opens with the magic `CDF\x02` and the record
        // count (a big-endian 32-bit integer), which is 0 here: the records
        // are written after it.
        let records = u32::try_from(n.leads_min.len())
            .map_err(|_| ExportError::Shape(format!("{} leads", n.leads_min.len())))?;
        match head.get_mut(..8) {
            Some(start) if start.starts_with(b"CDF\x02") && start[4..] == [0; 4] => {
                start[4..].copy_from_slice(&records.to_be_bytes());
            }
            _ => return Err(ExportError::NetCdf("unexpected header".into())),
        }
        let cells = (n.grid.rows as u64) * (n.grid.cols as u64);
        let record = RECORD_PREFIX as u64 + 4 * cells;
        Ok(Self {
            len: head.len() as u64 + u64::from(records) * record,
            head: Some(head),
            lead: 0,
            cell: 0,
            sent: 0,
        })
    }

    /// Bytes of the whole file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a file of no bytes (never: the header is there).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes not handed out yet.
    pub fn remaining(&self) -> u64 {
        self.len - self.sent
    }

    /// The next piece of the file, of at most about `max_bytes` (at least
    /// one record prefix or one cell), from the same `n` as [`Self::new`];
    /// `None` at the end.
    pub fn next_piece(&mut self, n: &NowcastFile<'_>, max_bytes: usize) -> Option<Vec<u8>> {
        let piece = self.piece(n, max_bytes)?;
        self.sent += piece.len() as u64;
        Some(piece)
    }

    fn piece(&mut self, n: &NowcastFile<'_>, max_bytes: usize) -> Option<Vec<u8>> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        let (field, &lead) = n.rate_mm_h.get(self.lead).zip(n.leads_min.get(self.lead))?;
        let cells = field.len();
        let take = (max_bytes / 4).max(1).min(cells - self.cell);
        let mut out = Vec::with_capacity(RECORD_PREFIX + 4 * take);
        if self.cell == 0 {
            let (valid, period) = record_times(n.issued, lead);
            out.extend_from_slice(&valid.to_be_bytes());
            out.extend_from_slice(&period.to_be_bytes());
        }
        let range = self.cell..self.cell + take;
        match field.as_slice() {
            Some(s) => s[range]
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_be_bytes())),
            None => field
                .iter()
                .skip(range.start)
                .take(take)
                .for_each(|v| out.extend_from_slice(&v.to_be_bytes())),
        }
        self.cell += take;
        if self.cell == cells {
            (self.lead, self.cell) = (self.lead + 1, 0);
        }
        Some(out)
    }
}

/// Valid time (seconds since the epoch) and lead (minutes) of a record.
fn record_times(issued: DateTime<Utc>, lead_min: u32) -> (f64, f64) {
    let issued_s = issued.timestamp() as f64;
    (issued_s + 60.0 * f64::from(lead_min), f64::from(lead_min))
}

/// The file's definitions and small variables; with `records`, the
/// records too (the whole file the crate would write on its own: the
/// reference of the tests).
fn builder(n: &NowcastFile<'_>, records: bool) -> Result<NcFileBuilder, ExportError> {
    let grid = n.grid;
    if n.leads_min.len() != n.rate_mm_h.len() {
        return Err(ExportError::Shape(format!(
            "{} leads for {} fields",
            n.leads_min.len(),
            n.rate_mm_h.len()
        )));
    }
    for f in n.rate_mm_h {
        super::check_shape(grid, f.dim())?;
    }
    let crs = Crs::from_proj4(&grid.projection)?;
    let geographic = crs.method == Method::LongLat;
    let issued_iso = n.issued.to_rfc3339_opts(SecondsFormat::Secs, true);

    let mut b = NcFileBuilder::new();
    for (k, v) in [
        ("Conventions", "CF-1.8"),
        (
            "title",
            &format!("Raincast rain nowcast, radar {}", n.radar_name),
        ),
        ("institution", "Raincast"),
        ("source", n.source),
        (
            "history",
            &format!(
                "{} nowcast made by {}",
                n.created.to_rfc3339_opts(SecondsFormat::Secs, true),
                n.source
            ),
        ),
        ("radar", n.radar),
        ("forecast_reference_time", &issued_iso),
        (
            "comment",
            "Rain rate extrapolated from radar scans. NaN (the fill value) means no data: outside the radar's coverage or carried in from outside it. 0 means no rain.",
        ),
    ] {
        b.add_attribute(k, text(v)).map_err(nc_err)?;
    }

    let t = b.add_unlimited_dimension("time").map_err(nc_err)?;
    let y = b.add_dimension("y", grid.rows as u64).map_err(nc_err)?;
    let x = b.add_dimension("x", grid.cols as u64).map_err(nc_err)?;

    let time = b.add_variable::<f64>("time", &[t]).map_err(nc_err)?;
    let period = b
        .add_variable::<f64>("forecast_period", &[t])
        .map_err(nc_err)?;
    let reference = b
        .add_variable::<f64>("forecast_reference_time", &[])
        .map_err(nc_err)?;
    let yv = b.add_variable::<f64>("y", &[y]).map_err(nc_err)?;
    let xv = b.add_variable::<f64>("x", &[x]).map_err(nc_err)?;
    let crs_var = b.add_variable::<i32>("crs", &[]).map_err(nc_err)?;
    let rain = b
        .add_variable::<f32>("rainfall_rate", &[t, y, x])
        .map_err(nc_err)?;

    let attrs: Vec<(netcdf_writer::VariableId, &str, NcAttrValue)> = vec![
        (time, "standard_name", text("time")),
        (time, "long_name", text("valid time")),
        (time, "units", text(EPOCH_UNITS)),
        (time, "calendar", text("standard")),
        (time, "axis", text("T")),
        (period, "standard_name", text("forecast_period")),
        (period, "long_name", text("lead time")),
        (period, "units", text("minutes")),
        (reference, "standard_name", text("forecast_reference_time")),
        (reference, "long_name", text("issue time of the nowcast")),
        (reference, "units", text(EPOCH_UNITS)),
        (reference, "calendar", text("standard")),
        (rain, "standard_name", text("rainfall_rate")),
        (rain, "long_name", text("nowcast rain rate")),
        (rain, "units", text("mm h-1")),
        (rain, "grid_mapping", text("crs")),
        (
            rain,
            "coordinates",
            text("forecast_period forecast_reference_time"),
        ),
    ];
    for (v, k, value) in attrs {
        b.add_variable_attribute(v, k, value).map_err(nc_err)?;
    }
    for (v, axis, projected, geographic_name, degrees) in [
        (
            yv,
            "Y",
            "projection_y_coordinate",
            "latitude",
            "degrees_north",
        ),
        (
            xv,
            "X",
            "projection_x_coordinate",
            "longitude",
            "degrees_east",
        ),
    ] {
        let (standard_name, units) = if geographic {
            (geographic_name, degrees)
        } else {
            (projected, "m")
        };
        for (k, value) in [
            ("standard_name", standard_name.to_string()),
            (
                "long_name",
                format!("{} of the cell centre", axis.to_lowercase()),
            ),
            ("units", units.to_string()),
            ("axis", axis.to_string()),
        ] {
            b.add_variable_attribute(v, k, text(value))
                .map_err(nc_err)?;
        }
    }
    b.set_variable_fill_value(rain, f32::NAN).map_err(nc_err)?;
    for (k, v) in crs.cf_grid_mapping(&grid.projection) {
        let value = match v {
            CfValue::Text(s) => NcAttrValue::Chars(s),
            CfValue::Number(x) => NcAttrValue::Doubles(vec![x]),
            CfValue::Numbers(xs) => NcAttrValue::Doubles(xs),
        };
        b.add_variable_attribute(crs_var, k, value)
            .map_err(nc_err)?;
    }

    let issued_s = n.issued.timestamp() as f64;
    if records {
        let (valid, leads): (Vec<f64>, Vec<f64>) = n
            .leads_min
            .iter()
            .map(|l| record_times(n.issued, *l))
            .unzip();
        b.write_variable(time, &valid).map_err(nc_err)?;
        b.write_variable(period, &leads).map_err(nc_err)?;
    }
    b.write_variable(reference, &[issued_s]).map_err(nc_err)?;
    let ys: Vec<f64> = (0..grid.rows)
        .map(|r| grid.rowcol_to_xy(r as f64 + 0.5, 0.0).1)
        .collect();
    let xs: Vec<f64> = (0..grid.cols)
        .map(|c| grid.rowcol_to_xy(0.0, c as f64 + 0.5).0)
        .collect();
    b.write_variable(yv, &ys).map_err(nc_err)?;
    b.write_variable(xv, &xs).map_err(nc_err)?;
    b.write_variable(crs_var, &[0i32]).map_err(nc_err)?;
    if records {
        let all: Vec<f32> = n.rate_mm_h.iter().flat_map(|f| f.iter().copied()).collect();
        b.write_variable(rain, &all).map_err(nc_err)?;
    }
    Ok(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use netcdf_reader::NcFile;

    /// A grid of 1-km cells centred on its projection's origin.
    fn grid(rows: usize, cols: usize) -> Grid {
        Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            rows,
            cols,
            1000.0,
            1000.0,
            -500.0 * cols as f64,
            500.0 * rows as f64,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_stream_is_the_file_the_crate_writes() {
        // In pieces of any size (a cell, a few cells, whole records), the
        // bytes are those of the crate's own whole file, records included.
        let grid = grid(5, 7);
        let issued = Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap();
        let rates: Vec<Array2<f32>> = (0..3)
            .map(|k| {
                Array2::from_shape_fn((5, 7), |(r, c)| match (r + c + k) % 5 {
                    0 => f32::NAN,
                    1 => 0.0,
                    m => m as f32 * 1.7 + k as f32,
                })
            })
            .collect();
        // One field not in standard layout (a transposed view made owned).
        let mut rates = rates;
        rates[1] = Array2::from_shape_fn((7, 5), |(c, r)| rates[1][[r, c]]).reversed_axes();
        assert!(rates[1].as_slice().is_none());
        let file = NowcastFile {
            grid: &grid,
            radar: "r",
            radar_name: "Radar",
            issued,
            leads_min: &[5, 10, 15],
            rate_mm_h: &rates,
            created: issued,
            source: "Raincast test",
        };
        let (_, whole) = builder(&file, true)
            .and_then(|b| b.to_vec(NcWriteOptions::offset64()).map_err(nc_err))
            .unwrap_or_else(|e| panic!("{e}"));
        for max in [1, 4, 12, 30, 4 * 35, usize::MAX] {
            let mut stream = NetcdfStream::new(&file).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(stream.len(), whole.len() as u64);
            let mut joined = Vec::new();
            while let Some(piece) = stream.next_piece(&file, max) {
                assert!(
                    piece.len() <= max.max(4).saturating_add(RECORD_PREFIX) || joined.is_empty()
                );
                joined.extend_from_slice(&piece);
                assert_eq!(stream.remaining(), (whole.len() - joined.len()) as u64);
            }
            assert!(joined == whole, "pieces of {max} bytes");
        }
        assert!(encode_nowcast_netcdf(&file).unwrap_or_else(|e| panic!("{e}")) == whole);
    }

    #[test]
    fn the_file_reads_back() {
        let grid = grid(3, 4);
        let issued = Utc.with_ymd_and_hms(2024, 6, 16, 10, 0, 0).unwrap();
        let f0 = Array2::from_shape_fn((3, 4), |(r, c)| (r * 4 + c) as f32);
        let mut f1 = f0.clone();
        f1[[0, 0]] = f32::NAN;
        let rates = [f0, f1];
        let bytes = encode_nowcast_netcdf(&NowcastFile {
            grid: &grid,
            radar: "r",
            radar_name: "Radar",
            issued,
            leads_min: &[5, 10],
            rate_mm_h: &rates,
            created: issued,
            source: "Raincast test",
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let nc = NcFile::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let rain = nc
            .variable("rainfall_rate")
            .unwrap_or_else(|e| panic!("{e}"));
        let v: Vec<f32> = nc
            .read_variable::<f32>(rain.name())
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .copied()
            .collect();
        assert_eq!(v.len(), 24);
        assert_eq!(v[5], 5.0);
        assert!(v[12].is_nan());
        assert_eq!(v[13], 1.0);
        let y: Vec<f64> = nc
            .read_variable::<f64>("y")
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .copied()
            .collect();
        assert_eq!(y, vec![1000.0, 0.0, -1000.0]);
        let t: Vec<f64> = nc
            .read_variable::<f64>("time")
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .copied()
            .collect();
        assert_eq!(t[1] - issued.timestamp() as f64, 600.0);
    }
}
