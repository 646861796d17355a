//! ODIM_H5 composites (EUMETNET OPERA, RMI Belgium, ...): HDF5 bytes in, a
//! [`RadarScan`] out. Polar volumes and scans of a single radar
//! (`what/object` `PVOL` or `SCAN`) are gridded by the `odim/polar.rs` child
//! module; what follows describes composites.
//!
//! # What is read
//! * **Data**: the first `/datasetN/dataM/data` (in numeric order of `N`,
//!   then `M`) whose `what/quantity` is `RATE` (mm/h →
//!   [`Quantity::RainRate`]), `DBZH` (dBZ → [`Quantity::Reflectivity`]) or
//!   `ACRR` (mm → [`Quantity::Accumulation`]). Other quantities (`QIND`,
//!   ...) are skipped. `quantity` is looked up in `dataM/what`, then in
//!   `datasetN/what`.
//! * **Scaling**: physical = raw × `gain` + `offset`, with `gain`, `offset`,
//!   `nodata` and `undetect` taken from `dataM/what`, else `datasetN/what`
//!   (defaults 1, 0, none, none). Any integer or float storage type is
//!   accepted; raw → physical is done in one pass into the output array.
//! * **Cell states**: raw == `nodata` → `NaN` (not scanned); raw ==
//!   `undetect` → `0.0` for rates and accumulations, `-inf` for dBZ (scanned,
//!   no echo); a raw float `NaN` → `NaN`. Where `nodata` and `undetect` are
//!   one raw value, a composite reads it as no data (polar sweeps read it
//!   as undetect: `odim/polar.rs`). The two special values are compared
//!   in the storage type, so an f32 dataset with an f64 `nodata` attribute
//!   still matches.
//! * **Time**: root `what/date` (`YYYYMMDD`) + `what/time` (`HHMMSS`), UTC.
//!   For `ACRR` the accumulation length is `startdate/starttime` ..
//!   `enddate/endtime` of `dataM/what` or `datasetN/what`; a missing end falls
//!   back to the root time (the nominal time is the end of the period), a
//!   missing start is an error (a guessed period would silently scale every
//!   rate).
//! * **Source**: `"ODIM:"` + root `what/source` (e.g. `ODIM:ORG:247`).
//!
//! # Grid
//! The projection is root `where/projdef` (a PROJ.4 string). `xsize`,
//! `ysize`, `xscale`, `yscale` come from `datasetN/where`, else root `where`;
//! the sizes fall back to the data shape. The north-west corner is, in order
//! of preference:
//! 1. `UL_x`/`UL_y` (projected metres, `datasetN/where` or root `where`; RMI
//!    writes them);
//! 2. root `where/UL_lon`/`UL_lat` projected with `projdef` (OPERA);
//! 3. `LL_lon`/`LL_lat` projected, moved up by `ysize × yscale`.
//!
//! **Cell edges, not centres.** ODIM defines the corner coordinates as the
//! *outer* corners of the corner pixels, and `UL_x`/`UL_y` likewise as the
//! outer north-west corner. That is what [`Grid`] wants (`x_west_m`,
//! `y_north_m` are edges), so no half-cell shift is applied. The real-data
//! tests confirm it: all four corners of the grid, inverse-projected, match
//! the file's own `UL/UR/LL/LR_lon/lat` to a small fraction of a cell (a
//! half-cell error would show up as ~0.5 cell).

use super::h5::{self, Attrs, Raw};
use super::HDF5_MAGIC;
use crate::grid::Grid;
use crate::polar::PolarGridder;
use crate::scan::{DecodeError, Format, Quantity, RadarScan, DEFAULT_MAX_CELLS};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use hdf5_reader::{Dataset, Datatype, Hdf5File};

mod polar;

const F: Format = Format::Odim;

/// True for HDF5 bytes whose root has a `Conventions` attribute starting
/// with `ODIM`, or a `/dataset1` group (older files without `Conventions`).
pub fn looks_like(bytes: &[u8], _file_name: Option<&str>) -> bool {
    if !bytes.starts_with(HDF5_MAGIC) {
        return false;
    }
    Hdf5File::from_bytes(bytes).is_ok_and(|file| is_odim(&file))
}

/// The test of [`looks_like`] on an opened file.
fn is_odim(file: &Hdf5File) -> bool {
    if let Ok(root) = Attrs::of_group(file, "/", F) {
        if let Ok(Some(conv)) = root.string("Conventions", F) {
            if conv.starts_with("ODIM") {
                return true;
            }
        }
    }
    file.root_group()
        .and_then(|g| g.member_names())
        .map(|(groups, _)| groups.iter().any(|g| g == "dataset1"))
        .unwrap_or(false)
}

/// Which physical quantity a `dataM` holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Rate,
    Dbzh,
    Acrr,
}

impl Kind {
    fn from_quantity(q: &str) -> Option<Self> {
        match q {
            "RATE" => Some(Kind::Rate),
            "DBZH" => Some(Kind::Dbzh),
            "ACRR" => Some(Kind::Acrr),
            _ => None,
        }
    }
}

/// The selected `/datasetN` and `/datasetN/dataM` paths.
struct Pick {
    dataset: String,
    data: String,
    kind: Kind,
}

/// Decodes an ODIM_H5 composite, or the lowest reflectivity sweep of a
/// polar volume or scan; see the module docs.
pub fn decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    decode_limited(bytes, file_name, DEFAULT_MAX_CELLS)
}

/// [`decode`], rejecting a declared grid above `max_cells` cells
/// ([`DecodeError::TooLarge`]) before reading its data.
pub fn decode_limited(
    bytes: &[u8],
    file_name: Option<&str>,
    max_cells: u64,
) -> Result<RadarScan, DecodeError> {
    let mut gridder = PolarGridder::default();
    decode_with(bytes, file_name, max_cells, &mut gridder)
}

/// [`decode_limited`], gridding polar data with `gridder` (which keeps the
/// polar → grid mappings between calls: keep one per radar, as for NEXRAD);
/// composites do not use it.
pub fn decode_with(
    bytes: &[u8],
    _file_name: Option<&str>,
    max_cells: u64,
    gridder: &mut PolarGridder,
) -> Result<RadarScan, DecodeError> {
    let file = h5::open(bytes, F, max_cells)?;
    if !is_odim(&file) {
        return Err(DecodeError::Unsupported {
            format: F,
            what: "HDF5 layout: this file is not ODIM_H5 (no root Conventions \"ODIM_H5/...\" \
                   and no /dataset1 group; other HDF5 layouts such as KNMI's own, GAMIC or NWC \
                   SAF are not read)"
                .into(),
        });
    }
    let what = Attrs::of_group(&file, "/what", F)?;
    if what
        .string("object", F)?
        .is_some_and(|o| polar::is_polar(&o))
    {
        return polar::decode(&file, &what, bytes.len(), max_cells, gridder);
    }
    let root_where = Attrs::of_group(&file, "/where", F)?;

    let pick = pick_data(&file)?;
    let ds_what = Attrs::of_group(&file, &format!("{}/what", pick.dataset), F)?;
    let ds_where = Attrs::of_group(&file, &format!("{}/where", pick.dataset), F)?;
    let data_what = Attrs::of_group(&file, &format!("{}/what", pick.data), F)?;

    let time = root_time(&what)?;
    let source = source_of(&what)?;

    let data_path = format!("{}/data", pick.data);
    let dataset = open_data(&file, &data_path, bytes.len())?;
    let (rows, cols) = data_shape(&dataset, &data_path, &root_where, &ds_where, max_cells)?;
    let grid = grid(&root_where, &ds_where, rows, cols)?;

    let scaling = Scaling::read(&data_what, &ds_what, pick.kind)?;
    let values = read_values(&dataset, &scaling, (rows, cols), &data_path, bytes.len())?;
    let values = h5::into_array(F, &data_path, rows, cols, values)?;

    let quantity = match pick.kind {
        Kind::Rate => Quantity::RainRate,
        Kind::Dbzh => Quantity::Reflectivity,
        Kind::Acrr => Quantity::Accumulation {
            seconds: accumulation_seconds(&data_what, &ds_what, time)?,
        },
    };
    Ok(RadarScan {
        format: F,
        source: format!("ODIM:{source}"),
        time,
        quantity,
        grid,
        values,
        zr_hint: None,
    })
}

/// Root `what/source`, `"unknown"` when absent or empty.
fn source_of(what: &Attrs) -> Result<String, DecodeError> {
    Ok(what
        .string("source", F)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into()))
}

/// The HDF5 dataset at `path` (a missing one named as such).
fn open_data(file: &Hdf5File, path: &str, len: usize) -> Result<Dataset, DecodeError> {
    file.dataset(path).map_err(|e| {
        if h5::is_not_found(&e) {
            DecodeError::Missing {
                format: F,
                path: path.to_string(),
            }
        } else {
            h5::map_err(F, "HDF5 dataset", len, e)
        }
    })
}

/// Children of `group` named `prefix` + number, sorted by the number.
fn numbered(file: &Hdf5File, group: &str, prefix: &str) -> Result<Vec<String>, DecodeError> {
    let (groups, _) = file
        .group(group)
        .and_then(|g| g.member_names())
        .map_err(|e| h5::map_err(F, "HDF5 group", h5::file_len(file), e))?;
    let mut found: Vec<(u32, String)> = groups
        .into_iter()
        .filter_map(|name| {
            let n = name.strip_prefix(prefix)?.parse::<u32>().ok()?;
            Some((n, name))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, name)| name).collect())
}

/// Finds the first dataN whose quantity Raincast can use.
/// The `/datasetN` groups in numeric order (an error when there are none).
fn datasets(file: &Hdf5File) -> Result<Vec<String>, DecodeError> {
    let datasets = numbered(file, "/", "dataset")?;
    if datasets.is_empty() {
        return Err(DecodeError::Missing {
            format: F,
            path: "/dataset1 (no /datasetN group)".into(),
        });
    }
    Ok(datasets.into_iter().map(|d| format!("/{d}")).collect())
}

/// The `dataM` groups of `dataset` in numeric order, each with its
/// `what/quantity` (else the dataset's).
fn data_groups(
    file: &Hdf5File,
    dataset: &str,
    ds_what: &Attrs,
) -> Result<Vec<(String, Option<String>)>, DecodeError> {
    let mut out = Vec::new();
    for d in numbered(file, dataset, "data")? {
        let data = format!("{dataset}/{d}");
        let data_what = Attrs::of_group(file, &format!("{data}/what"), F)?;
        let quantity = match data_what.string("quantity", F)? {
            Some(q) => Some(q),
            None => ds_what.string("quantity", F)?,
        };
        out.push((data, quantity));
    }
    Ok(out)
}

fn pick_data(file: &Hdf5File) -> Result<Pick, DecodeError> {
    let datasets = datasets(file)?;
    let mut seen = Vec::new();
    for dataset in &datasets {
        let ds_what = Attrs::of_group(file, &format!("{dataset}/what"), F)?;
        for (data, quantity) in data_groups(file, dataset, &ds_what)? {
            match quantity {
                Some(q) => match Kind::from_quantity(&q) {
                    Some(kind) => {
                        return Ok(Pick {
                            dataset: dataset.clone(),
                            data,
                            kind,
                        })
                    }
                    None => seen.push(format!("{data}: {q}")),
                },
                None => seen.push(format!("{data}: no quantity")),
            }
        }
    }
    if seen.is_empty() {
        return Err(DecodeError::Missing {
            format: F,
            path: format!("{}/data1", datasets[0]),
        });
    }
    Err(DecodeError::Unsupported {
        format: F,
        what: format!(
            "quantities [{}]; Raincast reads RATE, DBZH or ACRR",
            seen.join(", ")
        ),
    })
}

/// Parses ODIM `YYYYMMDD` + `HHMMSS` (or `HHMM`) as UTC.
fn parse_datetime(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(date.trim(), "%Y%m%d").ok()?;
    let time = time.trim();
    let t = match time.len() {
        6 => NaiveTime::parse_from_str(time, "%H%M%S").ok()?,
        4 => NaiveTime::parse_from_str(time, "%H%M").ok()?,
        _ => return None,
    };
    Some(d.and_time(t).and_utc())
}

fn root_time(what: &Attrs) -> Result<DateTime<Utc>, DecodeError> {
    let missing = |name: &str| DecodeError::Missing {
        format: F,
        path: format!("/what/{name}"),
    };
    let date = what.string("date", F)?.ok_or_else(|| missing("date"))?;
    let time = what.string("time", F)?.ok_or_else(|| missing("time"))?;
    parse_datetime(&date, &time).ok_or_else(|| DecodeError::BadValue {
        format: F,
        field: "/what/date + /what/time".into(),
        value: format!("{date} {time}"),
        reason: "expected YYYYMMDD and HHMMSS".into(),
    })
}

/// Seconds of an `ACRR` accumulation; see the module docs.
fn accumulation_seconds(
    data_what: &Attrs,
    ds_what: &Attrs,
    root_time: DateTime<Utc>,
) -> Result<f64, DecodeError> {
    let pair = |date: &str, time: &str| -> Result<Option<DateTime<Utc>>, DecodeError> {
        for attrs in [data_what, ds_what] {
            if let (Some(d), Some(t)) = (attrs.string(date, F)?, attrs.string(time, F)?) {
                return parse_datetime(&d, &t)
                    .map(Some)
                    .ok_or_else(|| DecodeError::BadValue {
                        format: F,
                        field: format!("{}/{date} + {time}", attrs.path),
                        value: format!("{d} {t}"),
                        reason: "expected YYYYMMDD and HHMMSS".into(),
                    });
            }
        }
        Ok(None)
    };
    let start = pair("startdate", "starttime")?.ok_or_else(|| DecodeError::Missing {
        format: F,
        path: format!(
            "{}/startdate + starttime (accumulation period of ACRR)",
            ds_what.path
        ),
    })?;
    let end = pair("enddate", "endtime")?.unwrap_or(root_time);
    let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(DecodeError::BadValue {
            format: F,
            field: format!("{}/startdate..enddate", ds_what.path),
            value: format!("{start} .. {end}"),
            reason: "the accumulation period must be positive".into(),
        });
    }
    Ok(seconds)
}

/// A `where` attribute from `datasetN/where`, else root `where`.
fn where_f64(ds_where: &Attrs, root_where: &Attrs, name: &str) -> Result<Option<f64>, DecodeError> {
    match ds_where.f64(name, F)? {
        Some(v) => Ok(Some(v)),
        None => root_where.f64(name, F),
    }
}

/// Validates a declared size attribute (must be a positive integer).
fn declared_size(v: f64, field: &str) -> Result<u64, DecodeError> {
    if !(v.is_finite() && v >= 1.0 && v.fract() == 0.0) {
        return Err(DecodeError::BadValue {
            format: F,
            field: field.into(),
            value: v.to_string(),
            reason: "expected a positive integer".into(),
        });
    }
    Ok(if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    })
}

/// `(rows, cols)` of the data, checked against `ysize`/`xsize` and the limits.
fn data_shape(
    dataset: &Dataset,
    data_path: &str,
    root_where: &Attrs,
    ds_where: &Attrs,
    max_cells: u64,
) -> Result<(usize, usize), DecodeError> {
    let xsize = where_f64(ds_where, root_where, "xsize")?
        .map(|v| declared_size(v, "where/xsize"))
        .transpose()?;
    let ysize = where_f64(ds_where, root_where, "ysize")?
        .map(|v| declared_size(v, "where/ysize"))
        .transpose()?;
    if let (Some(x), Some(y)) = (xsize, ysize) {
        h5::check_shape(F, y, x, "where/ysize x where/xsize", max_cells)?;
    }
    let shape = dataset.shape();
    if shape.len() != 2 {
        return Err(DecodeError::Shape {
            format: F,
            field: data_path.into(),
            expected: "2 dimensions (rows, cols)".into(),
            found: format!("{shape:?}"),
        });
    }
    let (rows, cols) = (shape[0], shape[1]);
    h5::check_shape(F, rows, cols, data_path, max_cells)?;
    if xsize.is_some_and(|x| x != cols) || ysize.is_some_and(|y| y != rows) {
        return Err(DecodeError::Shape {
            format: F,
            field: data_path.into(),
            expected: format!(
                "ysize x xsize = {} x {}",
                ysize.unwrap_or(rows),
                xsize.unwrap_or(cols)
            ),
            found: format!("{rows} x {cols}"),
        });
    }
    Ok((rows as usize, cols as usize))
}

/// Builds the grid; see the module docs for the corner conventions.
fn grid(
    root_where: &Attrs,
    ds_where: &Attrs,
    rows: usize,
    cols: usize,
) -> Result<Grid, DecodeError> {
    let projdef = match root_where.string("projdef", F)? {
        Some(p) => p,
        None => ds_where
            .string("projdef", F)?
            .ok_or_else(|| DecodeError::Missing {
                format: F,
                path: "/where/projdef".into(),
            })?,
    };
    let scale = |name: &str| -> Result<f64, DecodeError> {
        let v = where_f64(ds_where, root_where, name)?.ok_or_else(|| DecodeError::Missing {
            format: F,
            path: format!("/where/{name}"),
        })?;
        if !(v.is_finite() && v > 0.0) {
            return Err(DecodeError::BadValue {
                format: F,
                field: format!("where/{name}"),
                value: v.to_string(),
                reason: "the cell size must be a positive number of metres".into(),
            });
        }
        Ok(v)
    };
    let (xscale, yscale) = (scale("xscale")?, scale("yscale")?);
    let grid_err = |source| DecodeError::Grid { format: F, source };
    let make = |x: f64, y: f64| {
        Grid::new(projdef.trim(), rows, cols, xscale, yscale, x, y).map_err(grid_err)
    };

    if let (Some(x), Some(y)) = (
        where_f64(ds_where, root_where, "UL_x")?,
        where_f64(ds_where, root_where, "UL_y")?,
    ) {
        return make(x, y);
    }
    // Project a corner given in lon/lat: first a grid at (0, 0) to reach
    // the projection, then the real one.
    let probe = make(0.0, 0.0)?;
    let lonlat = |lon: &str, lat: &str| -> Result<Option<(f64, f64)>, DecodeError> {
        match (
            where_f64(ds_where, root_where, lon)?,
            where_f64(ds_where, root_where, lat)?,
        ) {
            (Some(lon), Some(lat)) => probe.lonlat_to_xy(lon, lat).map(Some).map_err(grid_err),
            _ => Ok(None),
        }
    };
    // Corner lon/lat carry ~1e-9 degree of rounding (~0.1 mm): snap the
    // projected origin to the millimetre so OPERA's (0, 0) reads as such.
    let mm = |v: f64| (v * 1000.0).round() / 1000.0;
    if let Some((x, y)) = lonlat("UL_lon", "UL_lat")? {
        return make(mm(x), mm(y));
    }
    if let Some((x, y)) = lonlat("LL_lon", "LL_lat")? {
        return make(mm(x), mm(y + rows as f64 * yscale));
    }
    Err(DecodeError::Missing {
        format: F,
        path: "/where/UL_lon + UL_lat (or datasetN/where/UL_x + UL_y)".into(),
    })
}

/// raw → physical conversion parameters.
struct Scaling {
    gain: f64,
    offset: f64,
    nodata: Option<f64>,
    undetect: Option<f64>,
    /// What undetect becomes: 0 (rate, accumulation) or -inf (dBZ).
    undetect_value: f32,
}

impl Scaling {
    fn read(data_what: &Attrs, ds_what: &Attrs, kind: Kind) -> Result<Self, DecodeError> {
        let get = |name: &str| -> Result<Option<(f64, String)>, DecodeError> {
            for attrs in [data_what, ds_what] {
                if let Some(v) = attrs.f64(name, F)? {
                    return Ok(Some((v, format!("{}/{name}", attrs.path))));
                }
            }
            Ok(None)
        };
        let gain = get("gain")?;
        if let Some((g, field)) = &gain {
            if !(g.is_finite() && *g != 0.0) {
                return Err(DecodeError::BadValue {
                    format: F,
                    field: field.clone(),
                    value: g.to_string(),
                    reason: "gain must be a finite non-zero number".into(),
                });
            }
        }
        let offset = get("offset")?;
        if let Some((o, field)) = &offset {
            if !o.is_finite() {
                return Err(DecodeError::BadValue {
                    format: F,
                    field: field.clone(),
                    value: o.to_string(),
                    reason: "offset must be finite".into(),
                });
            }
        }
        Ok(Self {
            gain: gain.map_or(1.0, |g| g.0),
            offset: offset.map_or(0.0, |o| o.0),
            nodata: get("nodata")?.map(|v| v.0),
            undetect: get("undetect")?.map(|v| v.0),
            undetect_value: if kind == Kind::Dbzh {
                f32::NEG_INFINITY
            } else {
                0.0
            },
        })
    }
}

/// Reads the dataset as `T` and converts it to physical f32 in one pass.
///
/// Chunked datasets are converted chunk by chunk straight into the output,
/// so the raw array is never materialised (OPERA: 33 MB of f64 that would
/// otherwise be allocated, page-faulted and copied). Chunks absent from the
/// file hold the dataset's fill value, as in libhdf5.
fn convert<T: Raw>(
    ds: &Dataset,
    s: &Scaling,
    rows: usize,
    cols: usize,
    len: usize,
) -> Result<Vec<f32>, DecodeError> {
    let err = |e| h5::map_err(F, "HDF5 data", len, e);
    let nodata = s.nodata.and_then(T::exact);
    let undetect = s.undetect.and_then(T::exact);
    let (gain, offset, uv) = (s.gain, s.offset, s.undetect_value);
    let map = |v: T| -> f32 {
        if nodata == Some(v) {
            f32::NAN
        } else if undetect == Some(v) {
            uv
        } else {
            // A raw NaN stays NaN through the arithmetic.
            (v.to_f64() * gain + offset) as f32
        }
    };
    let big_endian = match ds.dtype() {
        Datatype::FixedPoint { byte_order, .. } | Datatype::FloatingPoint { byte_order, .. } => {
            *byte_order == hdf5_reader::ByteOrder::BigEndian
        }
        _ => false,
    };
    let chunked = ds.chunks().is_some_and(|c| c.len() == 2);
    if !chunked {
        let raw = ds.read_array::<T>().map_err(err)?;
        return Ok(match raw.as_slice_memory_order() {
            Some(slice) => slice.iter().map(|&v| map(v)).collect(),
            None => raw.iter().map(|&v| map(v)).collect(),
        });
    }
    let fill = ds
        .fill_value()
        .and_then(|f| f.value.as_deref())
        .filter(|b| b.len() == T::SIZE)
        .map_or(0.0, |b| map(T::decode_raw(b, big_endian)));
    let mut out = vec![fill; rows * cols];
    for chunk in ds.iter_chunks().map_err(err)? {
        let chunk = chunk.map_err(err)?;
        let (off, shape, bytes) = (chunk.offsets(), chunk.shape(), chunk.bytes());
        if off.len() != 2 || shape.len() != 2 {
            continue;
        }
        let (r0, c0) = (off[0] as usize, off[1] as usize);
        let (ch, cw) = (shape[0] as usize, shape[1] as usize);
        if r0 >= rows || c0 >= cols || bytes.len() < ch * cw * T::SIZE {
            continue;
        }
        let (nr, nc) = (ch.min(rows - r0), cw.min(cols - c0));
        for r in 0..nr {
            let src = &bytes[r * cw * T::SIZE..(r * cw + nc) * T::SIZE];
            let dst = &mut out[(r0 + r) * cols + c0..][..nc];
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(T::SIZE)) {
                *d = map(T::decode_raw(b, big_endian));
            }
        }
    }
    Ok(out)
}

fn read_values(
    ds: &Dataset,
    s: &Scaling,
    (rows, cols): (usize, usize),
    path: &str,
    len: usize,
) -> Result<Vec<f32>, DecodeError> {
    match ds.dtype() {
        Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
            (1, false) => convert::<u8>(ds, s, rows, cols, len),
            (1, true) => convert::<i8>(ds, s, rows, cols, len),
            (2, false) => convert::<u16>(ds, s, rows, cols, len),
            (2, true) => convert::<i16>(ds, s, rows, cols, len),
            (4, false) => convert::<u32>(ds, s, rows, cols, len),
            (4, true) => convert::<i32>(ds, s, rows, cols, len),
            (8, false) => convert::<u64>(ds, s, rows, cols, len),
            (8, true) => convert::<i64>(ds, s, rows, cols, len),
            _ => Err(unsupported_type(path, ds.dtype())),
        },
        Datatype::FloatingPoint { size: 4, .. } => convert::<f32>(ds, s, rows, cols, len),
        Datatype::FloatingPoint { size: 8, .. } => convert::<f64>(ds, s, rows, cols, len),
        other => Err(unsupported_type(path, other)),
    }
}

fn unsupported_type(path: &str, dtype: &Datatype) -> DecodeError {
    DecodeError::Unsupported {
        format: F,
        what: format!("data type {dtype:?} of {path}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::encode::odim::{
        composite_metadata, dataset_what, encode_rate, finish, OdimRateOptions, RawType,
    };
    use crate::prep::RainField;
    use crate::scan::{DEFAULT_MAX_CELLS, MAX_CELLS};
    use chrono::TimeZone;
    use hdf5_writer::{AttributeBuilder, DatasetBuilder, Hdf5Builder};
    use ndarray::Array2;
    use std::path::Path;

    const LAEA: &str =
        "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84";

    fn small_grid() -> Grid {
        Grid::new(LAEA, 3, 4, 2000.0, 2000.0, 1_000_000.0, -1_000_000.0).expect("grid")
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 17, 13, 45, 0).unwrap()
    }

    fn meta() -> Hdf5Builder {
        composite_metadata(Hdf5Builder::new(), &small_grid(), t0(), "NOD:test").expect("meta")
    }

    /// A file with `meta()` plus one u8 `dataset1/data1` with these `what` attributes.
    fn u8_file(quantity: &str, what: Vec<AttributeBuilder>) -> Vec<u8> {
        let raw: Vec<u8> = (0..12).collect();
        let mut b = dataset_what(meta(), "dataset1", t0(), t0())
            .data("dataset1/data1", [3, 4], &raw)
            .quantity("dataset1/data1/what", quantity);
        for a in what {
            b = b.group_attribute("dataset1/data1/what", a);
        }
        finish(b).expect("file")
    }

    /// Shorthands for the files the tests build.
    trait OdimParts {
        /// `{group}/data` of this shape and content.
        fn data<T: hdf5_writer::H5WriteElement>(
            self,
            group: &str,
            shape: [u64; 2],
            v: &[T],
        ) -> Self;
        /// `{what}/quantity`.
        fn quantity(self, what: &str, q: &str) -> Self;
    }

    impl OdimParts for Hdf5Builder {
        fn data<T: hdf5_writer::H5WriteElement>(
            self,
            group: &str,
            shape: [u64; 2],
            v: &[T],
        ) -> Self {
            let name = format!("{group}/data");
            self.dataset(DatasetBuilder::typed_data(name, shape.to_vec(), v).unwrap())
        }
        fn quantity(self, what: &str, q: &str) -> Self {
            self.group_attribute(what, AttributeBuilder::fixed_string("quantity", q))
        }
    }

    fn f64_attr(name: &str, v: f64) -> AttributeBuilder {
        AttributeBuilder::scalar(name, v).unwrap()
    }

    fn field(values: &[f32]) -> RainField {
        RainField {
            grid: small_grid(),
            time: t0(),
            rate_mm_h: Array2::from_shape_vec((3, 4), values.to_vec()).unwrap(),
        }
    }

    const RATES: [f32; 12] = [
        0.0,
        f32::NAN,
        0.1,
        1.234,
        12.5,
        0.004,
        655.0,
        f32::NAN,
        2.0,
        0.0,
        30.27,
        1000.0,
    ];

    #[test]
    fn round_trip_u16_keeps_rain_undetect_and_nodata_apart() {
        let bytes = encode_rate(&field(&RATES), &OdimRateOptions::u16("NOD:xxdem")).unwrap();
        assert!(looks_like(&bytes, None));
        assert_eq!(super::super::detect(&bytes, None), Some(Format::Odim));
        let scan = decode(&bytes, Some("x.h5")).unwrap();
        assert_eq!(scan.format, Format::Odim);
        assert_eq!(scan.source, "ODIM:NOD:xxdem");
        assert_eq!(scan.time, t0());
        assert_eq!(scan.quantity, Quantity::RainRate);
        assert!(scan.grid.same_geometry(&small_grid()), "{:?}", scan.grid);
        for (i, (&want, &got)) in RATES.iter().zip(scan.values.iter()).enumerate() {
            if want.is_nan() {
                assert!(got.is_nan(), "cell {i}: {got}");
            } else if want <= 0.005 {
                // No rain, and rain below half a step, read back as undetect.
                assert_eq!(got, 0.0, "cell {i}");
            } else {
                let want = want.min(655.34);
                assert!(
                    (got - want).abs() <= 0.005 + 1e-4,
                    "cell {i}: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn a_scaling_that_decodes_to_impossible_rates_is_refused_not_stored() {
        // A real-format file whose gain makes a cell 2500 mm/h (above any
        // rain): the format's own decoder reads it, the entry point refuses
        // it (negative and infinite values: `scan::tests`).
        let mut big = RATES;
        big[4] = 2500.0;
        let mut opts = OdimRateOptions::u16("NOD:x");
        opts.gain = 0.1;
        let bytes = encode_rate(&field(&big), &opts).unwrap();
        assert!(
            decode(&bytes, None).is_ok(),
            "the ODIM layer itself reads it"
        );
        let err = super::super::decode(&bytes, None, None).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Implausible {
                    cells: 1,
                    row: 1,
                    col: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "implausible", "{err}");
        assert!(err.to_string().contains("rain rate"), "{err}");
        // The same file with a sane scaling decodes.
        let bytes = encode_rate(&field(&RATES), &OdimRateOptions::u16("NOD:x")).unwrap();
        assert!(super::super::decode(&bytes, None, None).is_ok());
    }

    #[test]
    fn round_trip_u8_uncompressed() {
        let mut opts = OdimRateOptions::u8("NOD:xxdem");
        opts.deflate_level = None;
        assert_eq!(opts.raw, RawType::U8);
        let bytes = encode_rate(&field(&RATES), &opts).unwrap();
        let scan = decode(&bytes, None).unwrap();
        let nan = scan.values.iter().filter(|v| v.is_nan()).count();
        assert_eq!(nan, 2);
        assert_eq!(scan.values[[0, 0]], 0.0);
        assert_eq!(scan.values[[1, 1]], 0.0); // 0.004 < half a step
        assert_eq!(scan.values[[0, 3]], 1.0); // 1.234 -> nearest 0.5 step
        assert_eq!(scan.values[[2, 3]], 127.0); // clamped below nodata = 255
    }

    #[test]
    fn dbzh_scaling_undetect_is_minus_infinity() {
        let bytes = u8_file(
            "DBZH",
            vec![
                f64_attr("gain", 0.5),
                f64_attr("offset", -32.0),
                f64_attr("nodata", 11.0),
                f64_attr("undetect", 0.0),
            ],
        );
        let scan = decode(&bytes, None).unwrap();
        assert_eq!(scan.quantity, Quantity::Reflectivity);
        assert_eq!(scan.values[[0, 0]], f32::NEG_INFINITY);
        assert_eq!(scan.values[[0, 1]], -31.5);
        assert_eq!(scan.values[[2, 2]], 10.0 * 0.5 - 32.0);
        assert!(scan.values[[2, 3]].is_nan());
        // A raw value that is both nodata and undetect is ambiguous in a
        // composite (cells beyond every radar are common): no data, never
        // no echo. (Polar sweeps read it as undetect; see `polar`.)
        let mut what = vec![f64_attr("gain", 0.5), f64_attr("offset", -32.0)];
        what.extend([f64_attr("nodata", 0.0), f64_attr("undetect", 0.0)]);
        let scan = decode(&u8_file("DBZH", what), None).unwrap();
        assert!(scan.values[[0, 0]].is_nan());
        assert_eq!(scan.values[[0, 1]], -31.5);
    }

    #[test]
    fn scaling_falls_back_to_dataset_what_and_acrr_has_its_period() {
        let raw: Vec<f64> = vec![
            -9_999_000.0,
            -8_888_000.0,
            0.5,
            f64::NAN,
            1.0,
            2.0,
            3.0,
            4.0,
            5.0,
            6.0,
            7.0,
            8.0,
        ];
        let start = t0() - chrono::Duration::minutes(15);
        let b = dataset_what(meta(), "dataset1", start, t0())
            .data("dataset1/data1", [3, 4], &raw)
            .quantity("dataset1/what", "ACRR")
            .group_attribute("dataset1/what", f64_attr("gain", 2.0))
            .group_attribute("dataset1/what", f64_attr("nodata", -9_999_000.0))
            .group_attribute("dataset1/what", f64_attr("undetect", -8_888_000.0));
        let scan = decode(&finish(b).unwrap(), None).unwrap();
        assert_eq!(scan.quantity, Quantity::Accumulation { seconds: 900.0 });
        assert!(scan.values[[0, 0]].is_nan());
        assert_eq!(scan.values[[0, 1]], 0.0);
        assert_eq!(scan.values[[0, 2]], 1.0);
        assert!(scan.values[[0, 3]].is_nan(), "raw NaN is no data");
        assert_eq!(scan.values[[2, 3]], 16.0);
    }

    #[test]
    fn acrr_without_start_is_an_error() {
        let raw = vec![1u8; 12];
        let b = meta()
            .data("dataset1/data1", [3, 4], &raw)
            .quantity("dataset1/data1/what", "ACRR");
        let err = decode(&finish(b).unwrap(), None).unwrap_err();
        assert_eq!(err.code(), "missing", "{err}");
        assert!(err.to_string().contains("startdate"), "{err}");
    }

    #[test]
    fn skips_quality_index_and_picks_the_rate() {
        let q = vec![7u8; 12];
        let r: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let b = meta()
            .data("dataset1/data1", [3, 4], &q)
            .quantity("dataset1/what", "QIND")
            .data("dataset2/data1", [3, 4], &r)
            .quantity("dataset2/data1/what", "RATE");
        let scan = decode(&finish(b).unwrap(), None).unwrap();
        assert_eq!(scan.quantity, Quantity::RainRate);
        assert_eq!(scan.values[[2, 3]], 5.5);

        let only_q = u8_file("QIND", vec![]);
        let err = decode(&only_q, None).unwrap_err();
        assert_eq!(err.code(), "unsupported", "{err}");
        assert!(err.to_string().contains("QIND"), "{err}");
    }

    #[test]
    fn rmi_style_grid_from_dataset_where() {
        // No root where/xsize..: sizes, scales and UL_x/UL_y sit in dataset1/where.
        let r = vec![0.5f32; 12];
        let b = Hdf5Builder::new()
            .attribute(AttributeBuilder::fixed_string(
                "Conventions",
                "ODIM_H5/V2_2",
            ))
            .group_attribute("what", AttributeBuilder::fixed_string("date", "20210704"))
            .group_attribute("what", AttributeBuilder::fixed_string("time", "155000"))
            .group_attribute("where", AttributeBuilder::fixed_string("projdef", LAEA))
            .group_attribute(
                "dataset1/where",
                AttributeBuilder::scalar("xsize", 4i64).unwrap(),
            )
            .group_attribute(
                "dataset1/where",
                AttributeBuilder::scalar("ysize", 3i64).unwrap(),
            )
            .group_attribute("dataset1/where", f64_attr("xscale", 2000.0))
            .group_attribute("dataset1/where", f64_attr("yscale", 2000.0))
            .group_attribute("dataset1/where", f64_attr("UL_x", 1_000_000.0))
            .group_attribute("dataset1/where", f64_attr("UL_y", -1_000_000.0))
            .data("dataset1/data1", [3, 4], &r)
            .quantity("dataset1/data1/what", "RATE");
        let scan = decode(&finish(b).unwrap(), None).unwrap();
        assert!(scan.grid.same_geometry(&small_grid()));
        assert_eq!(scan.source, "ODIM:unknown");
        assert_eq!(
            scan.time,
            Utc.with_ymd_and_hms(2021, 7, 4, 15, 50, 0).unwrap()
        );
    }

    #[test]
    fn truncated_and_wrong_magic_are_typed_errors() {
        let bytes = encode_rate(&field(&RATES), &OdimRateOptions::u16("NOD:x")).unwrap();
        for cut in [0, 3, 8, 20, 47, 100, bytes.len() / 2, bytes.len() - 1] {
            let err = decode(&bytes[..cut], None).unwrap_err();
            assert!(
                matches!(err.code(), "truncated" | "bad_magic" | "container"),
                "cut {cut}: {err}"
            );
            assert!(!looks_like(&bytes[..cut], None) || cut > 100);
        }
        assert_eq!(
            decode(&bytes[..bytes.len() / 2], None).unwrap_err().code(),
            "truncated"
        );
        assert_eq!(decode(&bytes[..3], None).unwrap_err().code(), "truncated");
        let mut wrong = bytes.clone();
        wrong[1] = b'X';
        let err = decode(&wrong, None).unwrap_err();
        assert_eq!(err.code(), "bad_magic", "{err}");
        assert!(!looks_like(&wrong, None));
        assert_eq!(decode(b"GIF89a....", None).unwrap_err().code(), "bad_magic");
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let bytes = encode_rate(&field(&RATES), &OdimRateOptions::u16("NOD:x")).unwrap();
        // Flip bytes all over the file: any outcome but a panic is fine.
        let step = (bytes.len() / 200).max(1);
        for i in (8..bytes.len()).step_by(step) {
            let mut bad = bytes.clone();
            bad[i] ^= 0xA5;
            let _ = decode(&bad, None);
            let _ = looks_like(&bad, None);
        }
    }

    #[test]
    fn hdf5_without_odim_groups() {
        let plain =
            finish(Hdf5Builder::new().dataset(
                DatasetBuilder::typed_data("temperature", vec![2], &[1.0f32, 2.0]).unwrap(),
            ))
            .unwrap();
        assert!(!looks_like(&plain, None));
        // Named as HDF5 that is not ODIM (GAMIC, NWC SAF, ...), not as an
        // ODIM file missing its data.
        let err = decode(&plain, None).unwrap_err();
        assert_eq!(err.code(), "unsupported", "{err}");
        assert!(err.to_string().contains("not ODIM_H5"), "{err}");

        // Root metadata but a dataset group without data.
        let b = meta().group_attribute(
            "dataset1/what",
            AttributeBuilder::fixed_string("product", "COMP"),
        );
        let err = decode(&finish(b).unwrap(), None).unwrap_err();
        assert_eq!(err.code(), "missing", "{err}");

        // Data present, but no date.
        let r = vec![0.5f32; 12];
        let b = Hdf5Builder::new()
            .group_attribute("where", AttributeBuilder::fixed_string("projdef", LAEA))
            .data("dataset1/data1", [3, 4], &r)
            .quantity("dataset1/data1/what", "RATE");
        let err = decode(&finish(b).unwrap(), None).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Missing {
                format: F,
                path: "/what/date".into()
            }
        );
    }

    #[test]
    fn nan_gain_is_a_bad_value() {
        let bytes = u8_file("RATE", vec![f64_attr("gain", f64::NAN)]);
        let err = decode(&bytes, None).unwrap_err();
        assert_eq!(err.code(), "bad_value", "{err}");
        assert!(
            err.to_string().contains("dataset1/data1/what/gain"),
            "{err}"
        );
    }

    #[test]
    fn absurd_declared_size_is_rejected_before_reading() {
        let raw = vec![1u8; 12];
        let grid = small_grid();
        let b = Hdf5Builder::new()
            .group_attribute("what", AttributeBuilder::fixed_string("date", "20240517"))
            .group_attribute("what", AttributeBuilder::fixed_string("time", "134500"))
            .group_attribute("where", AttributeBuilder::fixed_string("projdef", LAEA))
            .group_attribute(
                "where",
                AttributeBuilder::scalar("xsize", 1_000_000_000i64).unwrap(),
            )
            .group_attribute("where", AttributeBuilder::scalar("ysize", 3i64).unwrap())
            .group_attribute("where", f64_attr("xscale", grid.cell_x_m))
            .group_attribute("where", f64_attr("yscale", grid.cell_y_m))
            .data("dataset1/data1", [3, 4], &raw)
            .quantity("dataset1/data1/what", "RATE");
        let bytes = finish(b).unwrap();
        let err = decode(&bytes, None).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    limit: DEFAULT_MAX_CELLS,
                    rows: 3,
                    cols: 1_000_000_000,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "too_large");
        assert!(
            err.to_string().contains("where/ysize x where/xsize"),
            "{err}"
        );
        // The limit is the caller's: a lower one rejects a grid the default takes.
        let ok = u8_file("RATE", vec![]);
        assert!(decode_limited(&ok, None, DEFAULT_MAX_CELLS).is_ok());
        let err = decode_limited(&ok, None, 5).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 5, .. }),
            "{err}"
        );
        // Above MAX_CELLS even when the caller allows more.
        let err = decode_limited(&bytes, None, u64::MAX).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    limit: MAX_CELLS,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn declared_size_must_match_the_data() {
        let raw = vec![1u8; 10];
        let b = meta()
            .data("dataset1/data1", [2, 5], &raw)
            .quantity("dataset1/data1/what", "RATE");
        let err = decode(&finish(b).unwrap(), None).unwrap_err();
        assert_eq!(err.code(), "shape", "{err}");
    }

    #[test]
    fn bad_date_and_bad_projection() {
        let r = vec![0.5f32; 12];
        let base = || {
            Hdf5Builder::new()
                .data("dataset1/data1", [3, 4], &r)
                .quantity("dataset1/data1/what", "RATE")
                .group_attribute("where", f64_attr("xscale", 1000.0))
                .group_attribute("where", f64_attr("yscale", 1000.0))
                .group_attribute("where", f64_attr("UL_x", 0.0))
                .group_attribute("where", f64_attr("UL_y", 0.0))
                .group_attribute("what", AttributeBuilder::fixed_string("date", "20240517"))
        };
        let b = base()
            .group_attribute("what", AttributeBuilder::fixed_string("time", "25:99"))
            .group_attribute("where", AttributeBuilder::fixed_string("projdef", LAEA));
        assert_eq!(
            decode(&finish(b).unwrap(), None).unwrap_err().code(),
            "bad_value"
        );
        let b = base()
            .group_attribute("what", AttributeBuilder::fixed_string("time", "1200"))
            .group_attribute(
                "where",
                AttributeBuilder::fixed_string("projdef", "+proj=nonsense"),
            );
        assert_eq!(
            decode(&finish(b).unwrap(), None).unwrap_err().code(),
            "grid"
        );
        let b = base().group_attribute("what", AttributeBuilder::fixed_string("time", "1200"));
        assert_eq!(
            decode(&finish(b).unwrap(), None).unwrap_err(),
            DecodeError::Missing {
                format: F,
                path: "/where/projdef".into()
            }
        );
    }

    // ---- real data ------------------------------------------------------

    /// A file read the plain way (whole array through `read_array`),
    /// independent of the chunk-wise conversion.
    struct Reference {
        raw: Vec<f64>,
        nodata: Option<f64>,
        undetect: Option<f64>,
        /// UL, UR, LR, LL (lon, lat) as the file states them.
        corners: [(f64, f64); 4],
    }

    fn reference(path: &Path) -> Reference {
        let file = Hdf5File::open(path).unwrap();
        let ds = file.dataset("/dataset1/data1/data").unwrap();
        let raw: Vec<f64> = match ds.dtype() {
            Datatype::FloatingPoint { size: 4, .. } => ds
                .read_array::<f32>()
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect(),
            _ => ds.read_array::<f64>().unwrap().iter().copied().collect(),
        };
        let what = file.group("/dataset1/what").unwrap();
        let attr = |n: &str| what.attribute(n).ok().map(|a| a.read_as_f64().unwrap());
        let w = file.group("/where").unwrap();
        let c = |n: &str| w.attribute(n).unwrap().read_as_f64().unwrap();
        let corners = [
            (c("UL_lon"), c("UL_lat")),
            (c("UR_lon"), c("UR_lat")),
            (c("LR_lon"), c("LR_lat")),
            (c("LL_lon"), c("LL_lat")),
        ];
        Reference {
            raw,
            nodata: attr("nodata"),
            undetect: attr("undetect"),
            corners,
        }
    }

    #[test]
    fn real_files_decode_with_matching_corners_masks_and_times() {
        let Some(files) = super::super::shared_data_files("odim", "") else {
            return;
        };
        assert!(
            files.len() >= 33,
            "expected the RMI and OPERA files, found {}",
            files.len()
        );
        for path in &files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let bytes = std::fs::read(path).unwrap();
            assert!(looks_like(&bytes, Some(name)), "{name}");
            let scan = decode(&bytes, Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scan.quantity, Quantity::RainRate, "{name}");
            let g = &scan.grid;

            // Corners: the file's own lon/lat fall on the grid's outer corners.
            let Reference {
                raw,
                nodata,
                undetect,
                corners,
            } = reference(path);
            let want = [
                (0.0, 0.0),
                (0.0, g.cols as f64),
                (g.rows as f64, g.cols as f64),
                (g.rows as f64, 0.0),
            ];
            for ((lon, lat), (wr, wc)) in corners.iter().zip(want) {
                let (r, c) = g.lonlat_to_rowcol(*lon, *lat).unwrap();
                assert!(
                    (r - wr).abs() < 0.01 && (c - wc).abs() < 0.01,
                    "{name}: corner ({lon}, {lat}) at ({r}, {c}), want ({wr}, {wc})"
                );
            }

            // Time: the file names carry the nominal time.
            let stamp = scan.time.format("%Y%m%d%H%M%S").to_string();
            assert!(name.contains(&stamp), "{name}: time {stamp}");

            // No data: every raw nodata or NaN, and nothing else.
            let raw_nodata = raw
                .iter()
                .filter(|&&v| v.is_nan() || Some(v) == nodata)
                .count();
            let nan = scan.values.iter().filter(|v| v.is_nan()).count();
            assert_eq!(nan, raw_nodata, "{name}");
            assert!(nan > 0 && nan < raw.len(), "{name}: {nan} no-data cells");
            // Values: undetect -> 0, others equal to the plain reading.
            for (&r, &v) in raw.iter().zip(scan.values.iter()) {
                if r.is_nan() || Some(r) == nodata {
                    continue;
                }
                let want = if Some(r) == undetect { 0.0 } else { r as f32 };
                assert_eq!(v, want, "{name}");
            }
            if name.starts_with("T_PAAH21") {
                assert!(scan.source.starts_with("ODIM:ORG:247"), "{}", scan.source);
                assert_eq!((g.rows, g.cols, g.cell_x_m), (2200, 1900, 2000.0));
                assert!(raw.iter().any(|&v| Some(v) == undetect));
            } else {
                assert!(scan.source.starts_with("ODIM:NOD:"), "{}", scan.source);
                assert_eq!((g.rows, g.cols, g.cell_x_m), (700, 700, 1000.0));
            }
        }
    }
}
