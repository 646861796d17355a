//! Australian Bureau of Meteorology Rainfields netCDF files (`prcp-cscn`,
//! 6-minute, and `prcp-c10`, 10-minute): bytes in, a [`RadarScan`] out.
//!
//! Read with the pure-Rust `netcdf-reader` crate, so netCDF-4 (HDF5 inside,
//! the files we have) and classic netCDF (CDF-1/2/5) both work.
//!
//! # What is read
//! * **Data**: variable `precipitation` (int16 in the files we have; any
//!   numeric type is accepted), dimensions `(y, x)` with optional leading
//!   dimensions of length 1. The value is an accumulation in mm
//!   (`kg m-2`) over `start_time` .. `valid_time`, so the scan carries
//!   [`Quantity::Accumulation`] with `seconds = valid_time − start_time`;
//!   prep divides by it to get mm/h.
//! * **Scaling and masking** follow the CF conventions as netCDF-C readers
//!   apply them: physical = raw × `scale_factor` + `add_offset`; a cell is
//!   no data (`NaN`) when raw equals `_FillValue` (read from the file: −32768
//!   in `prcp-cscn`, −1 in `prcp-c10`; when absent, netCDF's default fill
//!   value of the type, except for bytes), equals `missing_value`, lies
//!   outside `valid_range`/`valid_min`/`valid_max` (packed units), or is a
//!   float NaN. A raw 0 is measured no rain (0 mm).
//! * **Time**: `valid_time` (end of the accumulation), UTC. Both times are
//!   converted with their `units` (`seconds since 1970-01-01 00:00:00 UTC`
//!   in these files; minutes, hours and days and other epochs also work).
//! * **Source**: `"BOM radar <station_id>"` from the global attribute
//!   (`"BOM radar"` alone when absent).
//!
//! # Grid
//! The projection comes from the variable named by `precipitation:grid_mapping`
//! (`proj`), which must be `albers_conical_equal_area`: `standard_parallel`
//! (one or two values), `longitude_of_central_meridian`,
//! `latitude_of_projection_origin`, `false_easting`, `false_northing`, and
//! the ellipsoid from `semi_major_axis` + `inverse_flattening` (or
//! `semi_minor_axis`, or `earth_radius`; GRS80 when none is given). The
//! resulting PROJ string is `+proj=aea +lat_1 +lat_2 +lat_0 +lon_0 +x_0 +y_0
//! +a +rf +units=m +no_defs`.
//!
//! `x` and `y` (km, or m when their `units` say so) give one value per column
//! and row. **Edges or centres?** When `x_bounds`/`y_bounds` exist (the
//! `prcp-c10` files, or any variable named by a `bounds` attribute) the
//! outer edges come from them. Otherwise (`prcp-cscn`) Raincast reads each
//! `x` as the **west edge** of its column and each `y` as the **north edge**
//! of its row (the cell's north-west corner): the coordinates run from −128 to +127.5 km in 0.5 km steps, so
//! reading them as edges gives a domain of exactly ±128 km around the radar
//! (the product's nominal 256 km square), while reading them as centres
//! would shift it by a quarter of a kilometre to −128.25 .. +127.75 km.
//! The difference (half a cell, 250 m) is below the data's own accuracy,
//! but it is a choice, and this is where it is made. Rows are reordered so
//! that row 0 is north (y decreasing) and column 0 west, whatever the file's
//! order.

use super::h5::{self, Raw};
use super::HDF5_MAGIC;
use crate::grid::Grid;
use crate::scan::{DecodeError, Format, Quantity, RadarScan, DEFAULT_MAX_CELLS, MAX_CELLS};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use netcdf_reader::{
    NcAttribute, NcFile, NcMetadataMode, NcOpenOptions, NcReadable, NcType, NcVariable,
};

const F: Format = Format::Bom;
const VAR: &str = "precipitation";
/// Classic netCDF signature (`CDF\x01`, `\x02` or `\x05` follow).
const CDF_MAGIC: &[u8; 3] = b"CDF";

/// True for netCDF bytes that are a Rainfields product: the file name holds
/// `prcp-c`, or the root has the variable `precipitation` or `valid_time`
/// (both are required: the decoder's error names the one that is missing).
pub fn looks_like(bytes: &[u8], file_name: Option<&str>) -> bool {
    let hdf5 = bytes.starts_with(HDF5_MAGIC);
    if !(hdf5 || bytes.starts_with(CDF_MAGIC)) {
        return false;
    }
    if file_name.is_some_and(|n| n.contains("prcp-c")) {
        return true;
    }
    if hdf5 {
        // Cheaper than building the netCDF model: list the root datasets.
        let Ok(file) = hdf5_reader::Hdf5File::from_bytes_with_options(
            bytes,
            h5::open_options(DEFAULT_MAX_CELLS),
        ) else {
            return false;
        };
        return file
            .root_group()
            .and_then(|g| g.member_names())
            .map(|(_, datasets)| {
                // Either of the two: a Rainfields file that lacks the other
                // gets the BOM decoder's error naming it, not ODIM's.
                datasets.iter().any(|d| d == VAR || d == "valid_time")
            })
            .unwrap_or(false);
    }
    NcFile::from_bytes(bytes)
        .map(|f| f.variable(VAR).is_ok() || f.variable("valid_time").is_ok())
        .unwrap_or(false)
}

/// Maps a `netcdf-reader` error.
fn nc_err(layer: &'static str, len: usize, err: netcdf_reader::Error) -> DecodeError {
    use netcdf_reader::Error as E;
    match err {
        E::Hdf5(e) => h5::map_err(F, layer, len, e),
        E::UnexpectedEof { offset, needed, .. } if offset.saturating_add(needed) > len as u64 => {
            DecodeError::Truncated {
                format: F,
                what: layer,
                needed: usize::try_from(offset.saturating_add(needed)).unwrap_or(usize::MAX),
                available: len,
            }
        }
        other => DecodeError::Container {
            format: F,
            layer,
            reason: other.to_string(),
        },
    }
}

fn missing(path: impl Into<String>) -> DecodeError {
    DecodeError::Missing {
        format: F,
        path: path.into(),
    }
}

fn bad(field: impl Into<String>, value: impl ToString, reason: &str) -> DecodeError {
    DecodeError::BadValue {
        format: F,
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn attr<'a>(var: &'a NcVariable, name: &str) -> Option<&'a NcAttribute> {
    var.attribute(name)
}

/// A numeric attribute (first element), `None` when absent.
fn attr_f64(var: &NcVariable, name: &str) -> Result<Option<f64>, DecodeError> {
    match attr(var, name) {
        None => Ok(None),
        Some(a) => a.value.as_f64().map(Some).ok_or_else(|| {
            bad(
                format!("{}:{name}", var.name()),
                format!("{:?}", a.value),
                "expected a number",
            )
        }),
    }
}

fn attr_string(var: &NcVariable, name: &str) -> Option<String> {
    attr(var, name)
        .and_then(|a| a.value.as_string())
        .map(|s| s.trim_matches(char::from(0)).trim().to_string())
}

/// Decodes a Rainfields file; see the module docs.
pub fn decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    decode_limited(bytes, file_name, DEFAULT_MAX_CELLS)
}

/// [`decode`], rejecting a declared grid above `max_cells` cells
/// ([`DecodeError::TooLarge`]) before reading its data.
pub fn decode_limited(
    bytes: &[u8],
    _file_name: Option<&str>,
    max_cells: u64,
) -> Result<RadarScan, DecodeError> {
    if !bytes.starts_with(CDF_MAGIC) {
        h5::check_signature_and_length(
            bytes,
            F,
            "netCDF-4 (HDF5 89 48 44 46 0d 0a 1a 0a) or classic netCDF (CDF) signature",
        )?;
    }
    let options = NcOpenOptions {
        chunk_cache_bytes: 0,
        metadata_mode: NcMetadataMode::Lossy,
        max_read_bytes: usize::try_from(max_cells.min(MAX_CELLS).saturating_mul(8))
            .unwrap_or(usize::MAX),
        ..Default::default()
    };
    let len = bytes.len();
    if bytes.starts_with(HDF5_MAGIC) {
        // netcdf-reader recurses into every group without a cycle check.
        let file = h5::open(bytes, F, max_cells)?;
        h5::check_group_tree(&file, F)?;
    }
    let nc = NcFile::from_bytes_with_options(bytes, options)
        .map_err(|e| nc_err("netCDF file", len, e))?;
    let var = nc.variable(VAR).map_err(|_| missing(VAR))?;

    // Shape: (..1, y, x).
    let shape = var.shape();
    let n = shape.len();
    if n < 2 || shape[..n - 2].iter().any(|&d| d != 1) {
        return Err(DecodeError::Shape {
            format: F,
            field: VAR.into(),
            expected: "(y, x), optionally after dimensions of length 1".into(),
            found: format!("{shape:?}"),
        });
    }
    let (rows, cols) = (shape[n - 2], shape[n - 1]);
    h5::check_shape(F, rows, cols, VAR, max_cells)?;
    let (rows, cols) = (rows as usize, cols as usize);
    let dims = var.dimensions();
    let dim_name = |i: usize, fallback: &str| -> String {
        let name = &dims[i].name;
        if nc.variable(name).is_ok() {
            name.clone()
        } else {
            fallback.to_string()
        }
    };
    let (y_name, x_name) = (dim_name(n - 2, "y"), dim_name(n - 1, "x"));

    // Times.
    let valid = time_var(&nc, "valid_time", len)?;
    let start = time_var(&nc, "start_time", len)?;
    let seconds = (valid - start).num_milliseconds() as f64 / 1000.0;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(bad(
            "valid_time - start_time",
            seconds,
            "the accumulation period must be positive",
        ));
    }

    // Geometry.
    let x = Axis::read(&nc, &x_name, true, cols, len)?;
    let y = Axis::read(&nc, &y_name, false, rows, len)?;
    let projection = projection(&nc, var)?;
    let grid = Grid::new(
        projection,
        rows,
        cols,
        x.step_m,
        y.step_m,
        x.low_edge_m,
        y.high_edge_m,
    )
    .map_err(|source| DecodeError::Grid { format: F, source })?;

    // Values.
    let masking = Masking::read(var)?;
    let layout = Layout {
        rows,
        cols,
        flip_rows: y.ascending,
        flip_cols: !x.ascending,
    };
    let values = match var.dtype() {
        NcType::Byte => convert::<i8>(&nc, &masking, layout, len),
        NcType::UByte => convert::<u8>(&nc, &masking, layout, len),
        NcType::Short => convert::<i16>(&nc, &masking, layout, len),
        NcType::UShort => convert::<u16>(&nc, &masking, layout, len),
        NcType::Int => convert::<i32>(&nc, &masking, layout, len),
        NcType::UInt => convert::<u32>(&nc, &masking, layout, len),
        NcType::Int64 => convert::<i64>(&nc, &masking, layout, len),
        NcType::UInt64 => convert::<u64>(&nc, &masking, layout, len),
        NcType::Float => convert::<f32>(&nc, &masking, layout, len),
        NcType::Double => convert::<f64>(&nc, &masking, layout, len),
        other => Err(DecodeError::Unsupported {
            format: F,
            what: format!("{VAR} of type {other:?}"),
        }),
    }?;
    let values = h5::into_array(F, VAR, rows, cols, values)?;

    let station = nc
        .global_attributes()
        .ok()
        .and_then(|attrs| attrs.iter().find(|a| a.name == "station_id"))
        .and_then(|a| {
            a.value
                .as_f64()
                .map(|v| format!("{v}"))
                .or_else(|| a.value.as_string())
        });
    let source = match station {
        Some(id) => format!("BOM radar {}", id.trim()),
        None => "BOM radar".into(),
    };
    Ok(RadarScan {
        format: F,
        source,
        time: valid,
        quantity: Quantity::Accumulation { seconds },
        grid,
        values,
        zr_hint: None,
    })
}

/// Reads a scalar time variable and converts it with its CF `units`.
fn time_var(nc: &NcFile, name: &str, len: usize) -> Result<DateTime<Utc>, DecodeError> {
    let var = nc.variable(name).map_err(|_| missing(name))?;
    let values = nc
        .read_variable_as_f64(name)
        .map_err(|e| nc_err("netCDF time variable", len, e))?;
    let v = values
        .iter()
        .next()
        .copied()
        .ok_or_else(|| missing(format!("{name} (empty)")))?;
    let units =
        attr_string(var, "units").unwrap_or_else(|| "seconds since 1970-01-01 00:00:00 UTC".into());
    let (unit_s, epoch) = parse_time_units(&units).ok_or_else(|| {
        bad(
            format!("{name}:units"),
            &units,
            "expected '<seconds|minutes|hours|days> since <date>'",
        )
    })?;
    let ms = v * unit_s * 1000.0;
    if !(ms.is_finite() && ms.abs() < 1e16) {
        return Err(bad(name, v, "not a usable time"));
    }
    epoch
        .checked_add_signed(chrono::Duration::milliseconds(ms.round() as i64))
        .ok_or_else(|| bad(name, v, "time out of range"))
}

/// `"<unit> since <date>[ time][ UTC]"` → (seconds per unit, epoch).
fn parse_time_units(units: &str) -> Option<(f64, DateTime<Utc>)> {
    let (unit, since) = units.trim().split_once(" since ")?;
    let unit_s = match unit.trim().to_ascii_lowercase().as_str() {
        "seconds" | "second" | "secs" | "sec" | "s" => 1.0,
        "minutes" | "minute" | "mins" | "min" => 60.0,
        "hours" | "hour" | "hrs" | "hr" | "h" => 3600.0,
        "days" | "day" | "d" => 86_400.0,
        _ => return None,
    };
    let s = since.trim();
    let s = s
        .strip_suffix("UTC")
        .or_else(|| s.strip_suffix('Z'))
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s)
        .trim();
    let epoch = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Some((unit_s, epoch.and_utc()))
}

/// One grid axis in metres.
struct Axis {
    /// Cell size (m, > 0).
    step_m: f64,
    /// Lowest outer edge (west for x, south for y), m.
    low_edge_m: f64,
    /// Highest outer edge (east for x, north for y), m.
    high_edge_m: f64,
    /// True when the file's coordinates increase with the index.
    ascending: bool,
}

impl Axis {
    fn read(
        nc: &NcFile,
        name: &str,
        is_x: bool,
        n: usize,
        len: usize,
    ) -> Result<Self, DecodeError> {
        let var = nc.variable(name).map_err(|_| missing(name))?;
        let scale = match attr_string(var, "units").as_deref() {
            None | Some("km") | Some("kilometre") | Some("kilometer") | Some("kilometres")
            | Some("kilometers") => 1000.0,
            Some("m") | Some("metre") | Some("meter") | Some("metres") | Some("meters") => 1.0,
            Some(other) => return Err(bad(format!("{name}:units"), other, "expected km or m")),
        };
        let coords: Vec<f64> = nc
            .read_variable_as_f64(name)
            .map_err(|e| nc_err("netCDF coordinate variable", len, e))?
            .iter()
            .map(|v| v * scale)
            .collect();
        if coords.len() != n {
            return Err(DecodeError::Shape {
                format: F,
                field: name.into(),
                expected: format!("{n} values"),
                found: format!("{} values", coords.len()),
            });
        }
        let first = coords[0];
        let last = coords[n - 1];
        let step = if n > 1 {
            (last - first) / (n - 1) as f64
        } else {
            0.0
        };
        // The grid must be regular (to a thousandth of a cell).
        if n > 1 {
            for (i, w) in coords.windows(2).enumerate() {
                if !((w[1] - w[0]) - step).abs().le(&(step.abs() * 1e-3)) {
                    return Err(DecodeError::Unsupported {
                        format: F,
                        what: format!(
                            "irregular {name} coordinates (step {} at index {i}, expected {step})",
                            w[1] - w[0]
                        ),
                    });
                }
            }
        }
        // Bounds: a `bounds` attribute, else `<name>_bounds`.
        let bounds_name = attr_string(var, "bounds").unwrap_or_else(|| format!("{name}_bounds"));
        if nc.variable(&bounds_name).is_ok() {
            let b: Vec<f64> = nc
                .read_variable_as_f64(&bounds_name)
                .map_err(|e| nc_err("netCDF bounds variable", len, e))?
                .iter()
                .map(|v| v * scale)
                .collect();
            if b.len() != 2 * n {
                return Err(DecodeError::Shape {
                    format: F,
                    field: bounds_name,
                    expected: format!("({n}, 2)"),
                    found: format!("{} values", b.len()),
                });
            }
            let lo = b.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = b.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let step_m = (hi - lo) / n as f64;
            let cell0 = (b[1] - b[0]).abs();
            if !(step_m.is_finite() && step_m > 0.0) || (cell0 - step_m).abs() > step_m * 1e-3 {
                return Err(bad(
                    bounds_name,
                    format!("{lo} .. {hi}"),
                    "bounds must tile the axis with equal cells",
                ));
            }
            let ascending = if n > 1 { last > first } else { b[1] >= b[0] };
            return Ok(Self {
                step_m,
                low_edge_m: lo,
                high_edge_m: hi,
                ascending,
            });
        }
        if !(step.is_finite() && step != 0.0) {
            return Err(bad(
                name,
                format!("{first} .. {last}"),
                "need at least two distinct coordinates (or bounds) to know the cell size",
            ));
        }
        // Edges convention (see the module docs): each coordinate is the
        // north-west corner of its cell, whatever the storage order.
        let step_m = step.abs();
        let (lo, hi) = (first.min(last), first.max(last));
        let (low_edge_m, high_edge_m) = if is_x {
            (lo, lo + n as f64 * step_m)
        } else {
            (hi - n as f64 * step_m, hi)
        };
        Ok(Self {
            step_m,
            low_edge_m,
            high_edge_m,
            ascending: step > 0.0,
        })
    }
}

/// The PROJ string of the `grid_mapping` variable; see the module docs.
fn projection(nc: &NcFile, var: &NcVariable) -> Result<String, DecodeError> {
    let name = attr_string(var, "grid_mapping").unwrap_or_else(|| "proj".into());
    let gm = nc
        .variable(&name)
        .map_err(|_| missing(format!("{name} (grid_mapping of {VAR})")))?;
    let kind = attr_string(gm, "grid_mapping_name")
        .ok_or_else(|| missing(format!("{name}:grid_mapping_name")))?;
    if kind != "albers_conical_equal_area" {
        return Err(DecodeError::Unsupported {
            format: F,
            what: format!("grid mapping {kind:?} (Raincast reads albers_conical_equal_area)"),
        });
    }
    let num = |attr_name: &str| -> Result<f64, DecodeError> {
        let v = attr_f64(gm, attr_name)?.ok_or_else(|| missing(format!("{name}:{attr_name}")))?;
        if !v.is_finite() {
            return Err(bad(format!("{name}:{attr_name}"), v, "must be finite"));
        }
        Ok(v)
    };
    let parallels = attr(gm, "standard_parallel")
        .and_then(|a| a.value.as_f64_vec())
        .filter(|v| !v.is_empty() && v.iter().all(|p| p.is_finite()))
        .ok_or_else(|| missing(format!("{name}:standard_parallel")))?;
    let (lat_1, lat_2) = (parallels[0], *parallels.get(1).unwrap_or(&parallels[0]));
    let lon_0 = num("longitude_of_central_meridian")?;
    let lat_0 = num("latitude_of_projection_origin")?;
    let x_0 = attr_f64(gm, "false_easting")?.unwrap_or(0.0);
    let y_0 = attr_f64(gm, "false_northing")?.unwrap_or(0.0);
    let ellipsoid = match (
        attr_f64(gm, "semi_major_axis")?,
        attr_f64(gm, "inverse_flattening")?,
        attr_f64(gm, "semi_minor_axis")?,
        attr_f64(gm, "earth_radius")?,
    ) {
        (Some(a), Some(rf), _, _) if rf > 0.0 => format!("+a={a} +rf={rf}"),
        (Some(a), _, Some(b), _) => format!("+a={a} +b={b}"),
        (_, _, _, Some(r)) => format!("+R={r}"),
        // A semi-major axis alone (or with inverse_flattening 0) is a sphere.
        (Some(a), _, _, _) => format!("+R={a}"),
        _ => "+ellps=GRS80".into(),
    };
    Ok(format!(
        "+proj=aea +lat_1={lat_1} +lat_2={lat_2} +lat_0={lat_0} +lon_0={lon_0} +x_0={x_0} +y_0={y_0} {ellipsoid} +units=m +no_defs"
    ))
}

/// CF scaling and masking of `precipitation`; see the module docs.
struct Masking {
    scale: f64,
    offset: f64,
    /// `_FillValue` (or the type's default), and `missing_value`.
    fill: Option<f64>,
    missing: Option<f64>,
    valid_min: Option<f64>,
    valid_max: Option<f64>,
}

impl Masking {
    fn read(var: &NcVariable) -> Result<Self, DecodeError> {
        let field = |n: &str| format!("{VAR}:{n}");
        let scale = attr_f64(var, "scale_factor")?.unwrap_or(1.0);
        if !(scale.is_finite() && scale != 0.0) {
            return Err(bad(
                field("scale_factor"),
                scale,
                "must be a finite non-zero number",
            ));
        }
        let offset = attr_f64(var, "add_offset")?.unwrap_or(0.0);
        if !offset.is_finite() {
            return Err(bad(field("add_offset"), offset, "must be finite"));
        }
        let fill = match attr_f64(var, "_FillValue")? {
            Some(v) => Some(v),
            None => default_fill(var.dtype()),
        };
        let (mut valid_min, mut valid_max) =
            (attr_f64(var, "valid_min")?, attr_f64(var, "valid_max")?);
        if let Some(range) = attr(var, "valid_range").and_then(|a| a.value.as_f64_vec()) {
            if range.len() == 2 {
                valid_min = Some(range[0]);
                valid_max = Some(range[1]);
            }
        }
        Ok(Self {
            scale,
            offset,
            fill,
            missing: attr_f64(var, "missing_value")?,
            valid_min,
            valid_max,
        })
    }
}

/// netCDF's default fill value of a type (used by netCDF-C readers for
/// masking when `_FillValue` is absent; not for bytes).
fn default_fill(t: &NcType) -> Option<f64> {
    match t {
        NcType::Short => Some(-32_767.0),
        NcType::UShort => Some(65_535.0),
        NcType::Int => Some(-2_147_483_647.0),
        NcType::UInt => Some(4_294_967_295.0),
        NcType::Float | NcType::Double => Some(9.969_209_968_386_869e36),
        _ => None,
    }
}

/// Output order of the cells.
#[derive(Clone, Copy)]
struct Layout {
    rows: usize,
    cols: usize,
    flip_rows: bool,
    flip_cols: bool,
}

/// Reads `precipitation` as `T` and converts it to physical f32 (mm) in
/// one pass, in north-first, west-first order.
fn convert<T: Raw + NcReadable>(
    nc: &NcFile,
    m: &Masking,
    l: Layout,
    len: usize,
) -> Result<Vec<f32>, DecodeError> {
    let raw = nc
        .read_variable::<T>(VAR)
        .map_err(|e| nc_err("netCDF data", len, e))?;
    let raw: Vec<T> = match raw.as_slice_memory_order() {
        Some(s) if raw.is_standard_layout() => s.to_vec(),
        _ => raw.iter().copied().collect(),
    };
    if raw.len() != l.rows * l.cols {
        return Err(DecodeError::Shape {
            format: F,
            field: VAR.into(),
            expected: format!("{} values", l.rows * l.cols),
            found: format!("{} values", raw.len()),
        });
    }
    let fill = m.fill.and_then(T::exact);
    let missing = m.missing.and_then(T::exact);
    let (vmin, vmax) = (
        m.valid_min.unwrap_or(f64::NEG_INFINITY),
        m.valid_max.unwrap_or(f64::INFINITY),
    );
    let (scale, offset) = (m.scale, m.offset);
    let map = |v: T| -> f32 {
        let x = v.to_f64();
        if fill == Some(v) || missing == Some(v) || x < vmin || x > vmax {
            f32::NAN
        } else {
            // A float NaN stays NaN.
            (x * scale + offset) as f32
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    for r in 0..l.rows {
        let src_r = if l.flip_rows { l.rows - 1 - r } else { r };
        let row = &raw[src_r * l.cols..(src_r + 1) * l.cols];
        if l.flip_cols {
            out.extend(row.iter().rev().map(|&v| map(v)));
        } else {
            out.extend(row.iter().map(|&v| map(v)));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use netcdf_writer::{NcAttrValue, NcFileBuilder, NcWriteFormat, NcWriteOptions};

    const VALID: i64 = 1_529_143_200; // 2018-06-16T10:00:00Z

    /// What a synthetic Rainfields file looks like.
    struct Spec {
        nc4: bool,
        /// `prcp-c10` style: bounds variables, `_FillValue` -1, 10 minutes.
        c10: bool,
        y_ascending: bool,
        scale: f64,
        grid_mapping_name: &'static str,
        period_s: i64,
    }

    impl Spec {
        fn cscn() -> Self {
            Self {
                nc4: true,
                c10: false,
                y_ascending: false,
                scale: 0.05,
                grid_mapping_name: "albers_conical_equal_area",
                period_s: 360,
            }
        }
    }

    /// 4 rows x 5 cols, 0.5 km cells; raw values 0..20 with fill in two cells.
    fn raw(fill: i16) -> Vec<i16> {
        let mut v: Vec<i16> = (0..20).collect();
        v[3] = fill;
        v[17] = fill;
        v
    }

    fn rainfields(spec: &Spec) -> Vec<u8> {
        let fill: i16 = if spec.c10 { -1 } else { -32768 };
        let xs: Vec<f32> = vec![-1.0, -0.5, 0.0, 0.5, 1.0];
        let mut ys: Vec<f32> = vec![1.0, 0.5, 0.0, -0.5];
        let mut data = raw(fill);
        if spec.y_ascending {
            ys.reverse();
            // Keep the same geography: reverse the rows too.
            data = data.chunks(5).rev().flatten().copied().collect();
        }
        let mut b = NcFileBuilder::new();
        b.add_attribute("Conventions", NcAttrValue::Chars("CF-1.6".into()))
            .unwrap();
        b.add_attribute("station_id", NcAttrValue::Ints(vec![2]))
            .unwrap();
        let x = b.add_dimension("x", 5).unwrap();
        let y = b.add_dimension("y", 4).unwrap();
        let nv = b.add_dimension("nv", 2).unwrap();
        let vt = b.add_variable::<i32>("valid_time", &[]).unwrap();
        let st = b.add_variable::<i32>("start_time", &[]).unwrap();
        for v in [vt, st] {
            b.add_variable_attribute(
                v,
                "units",
                NcAttrValue::Chars("seconds since 1970-01-01 00:00:00 UTC".into()),
            )
            .unwrap();
        }
        let proj = b.add_variable::<i8>("proj", &[]).unwrap();
        for (name, value) in [
            (
                "grid_mapping_name",
                NcAttrValue::Chars(spec.grid_mapping_name.into()),
            ),
            ("semi_major_axis", NcAttrValue::Doubles(vec![6_378_137.0])),
            (
                "inverse_flattening",
                NcAttrValue::Doubles(vec![298.257_222_101]),
            ),
            (
                "standard_parallel",
                NcAttrValue::Doubles(vec![-18.0, -36.0]),
            ),
            (
                "longitude_of_central_meridian",
                NcAttrValue::Doubles(vec![144.752]),
            ),
            (
                "latitude_of_projection_origin",
                NcAttrValue::Doubles(vec![-37.852]),
            ),
            ("false_easting", NcAttrValue::Doubles(vec![0.0])),
            ("false_northing", NcAttrValue::Doubles(vec![0.0])),
        ] {
            b.add_variable_attribute(proj, name, value).unwrap();
        }
        let xv = b.add_variable::<f32>("x", &[x]).unwrap();
        let yv = b.add_variable::<f32>("y", &[y]).unwrap();
        for v in [xv, yv] {
            b.add_variable_attribute(v, "units", NcAttrValue::Chars("km".into()))
                .unwrap();
        }
        let p = b.add_variable::<i16>("precipitation", &[y, x]).unwrap();
        b.add_variable_attribute(p, "grid_mapping", NcAttrValue::Chars("proj".into()))
            .unwrap();
        b.add_variable_attribute(p, "units", NcAttrValue::Chars("kg m-2".into()))
            .unwrap();
        b.add_variable_attribute(p, "scale_factor", NcAttrValue::Doubles(vec![spec.scale]))
            .unwrap();
        b.add_variable_attribute(p, "add_offset", NcAttrValue::Doubles(vec![0.0]))
            .unwrap();
        b.set_variable_fill_value(p, fill).unwrap();
        if spec.nc4 {
            b.set_variable_deflate(p, Some(4), false).unwrap();
        }
        b.write_variable(proj, &[0i8]).unwrap();
        b.write_variable(vt, &[VALID as i32]).unwrap();
        b.write_variable(st, &[(VALID - spec.period_s) as i32])
            .unwrap();
        b.write_variable(xv, &xs).unwrap();
        b.write_variable(yv, &ys).unwrap();
        b.write_variable(p, &data).unwrap();
        if spec.c10 {
            let xb = b.add_variable::<f32>("x_bounds", &[x, nv]).unwrap();
            let yb = b.add_variable::<f32>("y_bounds", &[y, nv]).unwrap();
            let bounds =
                |c: &[f32]| -> Vec<f32> { c.iter().flat_map(|v| [v - 0.25, v + 0.25]).collect() };
            b.write_variable(xb, &bounds(&xs)).unwrap();
            b.write_variable(yb, &bounds(&ys)).unwrap();
            b.add_variable_attribute(xv, "bounds", NcAttrValue::Chars("x_bounds".into()))
                .unwrap();
        }
        let format = if spec.nc4 {
            NcWriteFormat::Nc4
        } else {
            NcWriteFormat::Classic
        };
        b.to_vec(NcWriteOptions { format }).unwrap().1
    }

    fn check_values(scan: &RadarScan, fill_cells: &[(usize, usize)]) {
        for r in 0..4 {
            for c in 0..5 {
                let v = scan.values[[r, c]];
                if fill_cells.contains(&(r, c)) {
                    assert!(v.is_nan(), "({r}, {c}) = {v}");
                } else {
                    let want = (r * 5 + c) as f32 * 0.05;
                    assert!((v - want).abs() < 1e-6, "({r}, {c}): {v} vs {want}");
                }
            }
        }
    }

    #[test]
    fn cscn_netcdf4_round_trip() {
        let bytes = rainfields(&Spec::cscn());
        assert!(bytes.starts_with(HDF5_MAGIC));
        assert!(looks_like(&bytes, None), "content-based detection");
        assert_eq!(super::super::detect(&bytes, None), Some(Format::Bom));
        let scan = decode(&bytes, Some("2_20180616_100000.prcp-cscn.nc")).unwrap();
        assert_eq!(scan.format, Format::Bom);
        assert_eq!(scan.source, "BOM radar 2");
        assert_eq!(
            scan.time,
            Utc.with_ymd_and_hms(2018, 6, 16, 10, 0, 0).unwrap()
        );
        assert_eq!(scan.quantity, Quantity::Accumulation { seconds: 360.0 });
        check_values(&scan, &[(0, 3), (3, 2)]);
        assert_eq!(scan.values[[0, 0]], 0.0, "raw 0 is measured no rain");
        // Edges convention: x from -1 km is the west edge, y = 1 km the north edge.
        let g = &scan.grid;
        assert_eq!(
            (g.rows, g.cols, g.cell_x_m, g.cell_y_m),
            (4, 5, 500.0, 500.0)
        );
        assert_eq!((g.x_west_m, g.y_north_m), (-1000.0, 1000.0));
        assert!(
            g.projection
                .contains("+proj=aea +lat_1=-18 +lat_2=-36 +lat_0=-37.852 +lon_0=144.752"),
            "{}",
            g.projection
        );
        // The projection origin (the radar) is at x = y = 0.
        let (r, c) = g.lonlat_to_rowcol(144.752, -37.852).unwrap();
        assert!(
            (r - 2.0).abs() < 1e-6 && (c - 2.0).abs() < 1e-6,
            "({r}, {c})"
        );
    }

    #[test]
    fn c10_classic_with_bounds_and_fill_minus_one() {
        let spec = Spec {
            nc4: false,
            c10: true,
            period_s: 600,
            ..Spec::cscn()
        };
        let bytes = rainfields(&spec);
        assert!(bytes.starts_with(b"CDF"));
        assert_eq!(super::super::detect(&bytes, None), Some(Format::Bom));
        assert!(looks_like(&bytes, Some("2_20180616_100000.prcp-c10.nc")));
        let scan = super::super::decode(&bytes, None, None).unwrap();
        assert_eq!(scan.quantity, Quantity::Accumulation { seconds: 600.0 });
        check_values(&scan, &[(0, 3), (3, 2)]);
        // Bounds say the coordinates are centres: edges half a cell out.
        assert_eq!((scan.grid.x_west_m, scan.grid.y_north_m), (-1250.0, 1250.0));
        assert_eq!(scan.grid.cell_m(), 500.0);
    }

    #[test]
    fn south_up_files_are_flipped_to_north_up() {
        let spec = Spec {
            y_ascending: true,
            ..Spec::cscn()
        };
        let scan = decode(&rainfields(&spec), None).unwrap();
        check_values(&scan, &[(0, 3), (3, 2)]);
        assert_eq!((scan.grid.x_west_m, scan.grid.y_north_m), (-1000.0, 1000.0));
    }

    #[test]
    fn bad_metadata_gives_typed_errors() {
        let err = decode(
            &rainfields(&Spec {
                scale: f64::NAN,
                ..Spec::cscn()
            }),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad_value", "{err}");
        assert!(err.to_string().contains("scale_factor"), "{err}");

        let spec = Spec {
            grid_mapping_name: "transverse_mercator",
            ..Spec::cscn()
        };
        assert_eq!(
            decode(&rainfields(&spec), None).unwrap_err().code(),
            "unsupported"
        );

        let spec = Spec {
            period_s: 0,
            ..Spec::cscn()
        };
        assert_eq!(
            decode(&rainfields(&spec), None).unwrap_err().code(),
            "bad_value"
        );

        // A netCDF file without the variable.
        let mut b = NcFileBuilder::new();
        let x = b.add_dimension("x", 2).unwrap();
        let v = b.add_variable::<f32>("x", &[x]).unwrap();
        b.write_variable(v, &[0.0f32, 1.0]).unwrap();
        for format in [NcWriteFormat::Nc4, NcWriteFormat::Classic] {
            let bytes = b.to_vec(NcWriteOptions { format }).unwrap().1;
            assert!(!looks_like(&bytes, None));
            assert_eq!(
                decode(&bytes, None).unwrap_err(),
                DecodeError::Missing {
                    format: F,
                    path: VAR.into()
                }
            );
        }

        // A Rainfields file that lacks one of its two variables is still
        // detected as one, so the error names the variable (ODIM's decoder
        // would only say the file is not ODIM_H5).
        let mut b = NcFileBuilder::new();
        let vt = b.add_variable::<i32>("valid_time", &[]).unwrap();
        b.write_variable(vt, &[1_529_143_200i32]).unwrap();
        for format in [NcWriteFormat::Nc4, NcWriteFormat::Classic] {
            let bytes = b.to_vec(NcWriteOptions { format }).unwrap().1;
            assert_eq!(super::super::detect(&bytes, None), Some(F), "{format:?}");
            assert_eq!(
                super::super::decode(&bytes, None, None).unwrap_err(),
                DecodeError::Missing {
                    format: F,
                    path: VAR.into()
                },
                "{format:?}"
            );
        }
    }

    #[test]
    fn truncated_corrupt_and_foreign_bytes() {
        for spec in [
            Spec::cscn(),
            Spec {
                nc4: false,
                c10: true,
                ..Spec::cscn()
            },
        ] {
            let bytes = rainfields(&spec);
            for cut in [
                0,
                2,
                5,
                30,
                bytes.len() / 3,
                bytes.len() / 2,
                bytes.len() - 1,
            ] {
                let err = decode(&bytes[..cut], None).unwrap_err();
                assert!(
                    matches!(
                        err.code(),
                        "truncated" | "bad_magic" | "container" | "missing" | "shape"
                    ),
                    "cut {cut}: {err}"
                );
            }
            let step = (bytes.len() / 150).max(1);
            for i in (4..bytes.len()).step_by(step) {
                let mut bad = bytes.clone();
                bad[i] ^= 0x5A;
                let _ = decode(&bad, None);
                let _ = looks_like(&bad, None);
            }
        }
        let nc4 = rainfields(&Spec::cscn());
        assert_eq!(
            decode(&nc4[..nc4.len() / 2], None).unwrap_err().code(),
            "truncated"
        );
        let err = decode(b"GIF89a\x01\x00", None).unwrap_err();
        assert_eq!(err.code(), "bad_magic", "{err}");
        assert!(!looks_like(b"GIF89a", Some("x.prcp-cscn.nc")));
    }

    #[test]
    fn absurd_dimension_is_rejected() {
        // Patch the declared length of dimension "y" in a classic header
        // (name "y" padded to 4 bytes, then a big-endian u32 length).
        let mut bytes = rainfields(&Spec {
            nc4: false,
            ..Spec::cscn()
        });
        let pattern = [0, 0, 0, 1, b'y', 0, 0, 0, 0, 0, 0, 4];
        let at = bytes
            .windows(12)
            .position(|w| w == pattern)
            .expect("dimension y in header");
        bytes[at + 8..at + 12].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        let err = decode(&bytes, None).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    rows: 1_000_000_000,
                    cols: 5,
                    limit: DEFAULT_MAX_CELLS,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "too_large");
    }

    #[test]
    fn time_units() {
        let (s, e) = parse_time_units("seconds since 1970-01-01 00:00:00 UTC").unwrap();
        assert_eq!((s, e.timestamp()), (1.0, 0));
        let (s, e) = parse_time_units("minutes since 2000-01-01T00:00:00Z").unwrap();
        assert_eq!((s, e.timestamp()), (60.0, 946_684_800));
        assert_eq!(
            parse_time_units("hours since 2000-01-01").unwrap().0,
            3600.0
        );
        assert!(parse_time_units("fortnights since 2000-01-01").is_none());
        assert!(parse_time_units("seconds").is_none());
    }

    #[test]
    fn a_group_linked_back_to_its_ancestor_is_an_error_not_a_stack_overflow() {
        // An input cargo-fuzz found (session 15, decode_bom built with -O):
        // a group whose soft link leads back up the tree. netcdf-reader
        // 0.12.1 recursed into it until the stack overflowed, an abort of
        // the whole process; `h5::check_group_tree` rejects it first.
        let bytes = hex::decode(
            [
                "894844460d0a1a0a01c2010928020800ff00000000000000f1ea04000357f500",
                "020008000000080000460d0a1a0a01c231f4d7fe06002d000000000001180103",
                "0000001000000000000000000001c2010928020800ff00000000000000f10000",
                "0000000000000000000000000000000000000000000000000000000000000000",
                "00000000000033000000ea04000357f500020008000000080000460d0a1a0a01",
                "c2320c280208002d0000002700020000000000000000000000000000007e0000",
                "00010000000000441000000000000000000001c20109283f0000ff0000000000",
                "0000f100000000000000000000000000000000000000283f0000ff0000000000",
                "0000f1000000000000000000000000000000000000003b00",
            ]
            .concat(),
        )
        .unwrap();
        let err = decode(&bytes, None).unwrap_err();
        assert_eq!(err.code(), "container", "{err}");
        assert!(
            err.to_string().contains("HDF5 group tree")
                && err.to_string().contains("already reached"),
            "{err}"
        );
    }

    // ---- real data ------------------------------------------------------

    #[test]
    fn real_files_decode_with_fill_counts_times_and_radar_at_the_centre() {
        let Some(files) = super::super::shared_data_files("bom", ".nc") else {
            return;
        };
        assert!(files.len() >= 61, "found {}", files.len());
        for path in &files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let bytes = std::fs::read(path).unwrap();
            assert!(looks_like(&bytes, None), "{name}: content detection");
            assert_eq!(super::super::detect(&bytes, Some(name)), Some(Format::Bom));
            let scan = decode(&bytes, Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scan.source, "BOM radar 2");
            assert_eq!(
                scan.quantity,
                Quantity::Accumulation { seconds: 360.0 },
                "{name}"
            );
            // Time: 2_YYYYmmdd_HHMMSS.prcp-cscn.nc
            assert_eq!(
                scan.time.format("2_%Y%m%d_%H%M%S.prcp-cscn.nc").to_string(),
                name
            );
            // Grid: 512 x 512 cells of 500 m, +-128 km around the radar.
            let g = &scan.grid;
            assert_eq!(
                (g.rows, g.cols, g.cell_x_m, g.cell_y_m),
                (512, 512, 500.0, 500.0)
            );
            assert_eq!((g.x_west_m, g.y_north_m), (-128_000.0, 128_000.0));
            let (r, c) = g.lonlat_to_rowcol(144.752, -37.852).unwrap();
            assert!(
                (r - 256.0).abs() < 1e-6 && (c - 256.0).abs() < 1e-6,
                "{name}: ({r}, {c})"
            );

            // Independent reading: raw int16, fill value and scale from the file.
            let nc = NcFile::from_bytes(&bytes).unwrap();
            let var = nc.variable(VAR).unwrap();
            let fill = var.attribute("_FillValue").unwrap().value.as_f64().unwrap() as i16;
            let scale = var
                .attribute("scale_factor")
                .unwrap()
                .value
                .as_f64()
                .unwrap();
            let raw = nc.read_variable::<i16>(VAR).unwrap();
            let raw_fill = raw.iter().filter(|&&v| v == fill).count();
            let nan = scan.values.iter().filter(|v| v.is_nan()).count();
            assert_eq!(nan, raw_fill, "{name}");
            for (&r, &v) in raw.iter().zip(scan.values.iter()) {
                if r != fill {
                    assert_eq!(v, (r as f64 * scale) as f32, "{name}");
                }
            }
            assert!(scan.values.iter().any(|&v| v > 0.0), "{name}: some rain");
        }
    }
}
