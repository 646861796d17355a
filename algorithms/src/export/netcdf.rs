//! A whole nowcast as a CF-1.8 netCDF file (classic 64-bit offset format),
//! written in memory by the `netcdf-writer` crate.
//!
//! Contents:
//! * dimensions `time` (one per lead), `y` (rows, north first), `x` (columns);
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

/// Encodes the nowcast; returns the file's bytes.
pub fn encode_nowcast_netcdf(n: &NowcastFile<'_>) -> Result<Vec<u8>, ExportError> {
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

    let t = b
        .add_dimension("time", n.leads_min.len() as u64)
        .map_err(nc_err)?;
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
    let valid: Vec<f64> = n
        .leads_min
        .iter()
        .map(|l| issued_s + 60.0 * f64::from(*l))
        .collect();
    b.write_variable(time, &valid).map_err(nc_err)?;
    let leads: Vec<f64> = n.leads_min.iter().map(|l| f64::from(*l)).collect();
    b.write_variable(period, &leads).map_err(nc_err)?;
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
    let mut all = Vec::with_capacity(grid.rows * grid.cols * n.rate_mm_h.len());
    for f in n.rate_mm_h {
        match f.as_slice() {
            Some(s) => all.extend_from_slice(s),
            None => all.extend(f.iter().copied()),
        }
    }
    b.write_variable(rain, &all).map_err(nc_err)?;
    drop(all);
    let (_, bytes) = b.to_vec(NcWriteOptions::offset64()).map_err(nc_err)?;
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use netcdf_reader::NcFile;

    #[test]
    fn the_file_reads_back() {
        let grid = Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            3,
            4,
            1000.0,
            1000.0,
            -2000.0,
            1500.0,
        )
        .unwrap_or_else(|e| panic!("{e}"));
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
