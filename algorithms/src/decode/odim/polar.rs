//! ODIM_H5 polar data (`/what/object` = `PVOL` or `SCAN`): the lowest
//! reflectivity sweep of a single radar, gridded like a NEXRAD volume.
//!
//! Most European weather services publish their radars as ODIM_H5 polar
//! volumes (or one file per sweep, `SCAN`); composites (`COMP`) are read by
//! the parent module. A polar file holds no map projection, so it goes
//! through the same gridding as NEXRAD Level II ([`crate::polar`]): a
//! radar-centred azimuthal equidistant grid (1 km cells to 250 km by
//! default), nearest gate, the 4/3 Earth beam model, gates below 5 dBZ and
//! isolated gates set to undetect.
//!
//! # What is read
//! * **Site**: root `where/lat`, `where/lon` (required) and `where/height`
//!   (metres, 0 when absent); the scan's source is `ODIM:` + root
//!   `what/source`, as for composites.
//! * **Sweep**: among the `/datasetN` whose `what/product` is `SCAN` (or
//!   absent), those holding `DBZH` (corrected reflectivity), else `TH`
//!   (total reflectivity, when no sweep has `DBZH`); of these the one with
//!   the lowest `where/elangle`, the first in numeric order on a tie. The
//!   lowest sweep sees the rain closest to the ground.
//! * **Geometry**: `where/nrays` radials of `where/nbins` gates (both checked
//!   against the data's shape when present), `where/rscale` metres per gate
//!   and `where/rstart` (km, default 0) to the start of the first gate, so
//!   gate 0's centre lies at `rstart · 1000 + rscale / 2` m. Row `i` is the
//!   radial centred on azimuth `(i + ½) · 360° / nrays`: ODIM stores the
//!   radials clockwise from north (`a1gate`, the first radial radiated,
//!   only says when each one was measured).
//! * **Values**: physical = raw × `gain` + `offset` from `dataM/what`, else
//!   `datasetN/what`; raw `nodata` → NaN (not measured), raw `undetect` →
//!   `-inf` dBZ (measured, no echo), as for composites. **When `nodata` and
//!   `undetect` are one raw value** (the Bureau of Meteorology's volumes
//!   write 0 for both), that value is read as undetect: ODIM's `nodata`
//!   means "never radiated", and every gate of a sweep up to its `nbins`
//!   was radiated; what the sweep does not cover (beyond its last gate,
//!   inside `rstart`) stays no data. Read as no data, such a volume's dry
//!   area (85 % of the gates of a BOM volume) would be unknown and only its
//!   echoes known. A composite keeps the value as no data: there a cell
//!   outside every radar's coverage is common, and no data is never read as
//!   no rain.
//! * **Time**: root `what/date` + `what/time`, the volume's nominal time
//!   (scans of one radar then fall on its regular cadence, which the
//!   nowcast's spacing check wants).

use super::{
    data_groups, datasets, open_data, read_values, root_time, source_of, Kind, Scaling, F,
};
use crate::decode::h5::{self, Attrs};
use crate::polar::{PolarGridder, RadarSite, Sweep};
use crate::scan::{DecodeError, Quantity, RadarScan};
use hdf5_reader::Hdf5File;

/// True when root `what/object` names polar data.
pub(super) fn is_polar(object: &str) -> bool {
    matches!(object.trim(), "PVOL" | "SCAN")
}

/// Reflectivity quantities, most preferred first.
const REFLECTIVITY: [&str; 2] = ["DBZH", "TH"];

/// One sweep holding a reflectivity quantity.
struct Candidate {
    dataset: String,
    data: String,
    /// Index in [`REFLECTIVITY`].
    rank: usize,
    elangle: f64,
    /// Position of the dataset in numeric order (1 = first).
    number: usize,
}

/// Decodes the lowest reflectivity sweep of a polar file and grids it with
/// `gridder`.
pub(super) fn decode(
    file: &Hdf5File,
    what: &Attrs,
    len: usize,
    max_cells: u64,
    gridder: &mut PolarGridder,
) -> Result<RadarScan, DecodeError> {
    let root_where = Attrs::of_group(file, "/where", F)?;
    let time = root_time(what)?;
    let source = source_of(what)?;
    let site = site(&root_where, &source)?;
    let pick = pick_sweep(file)?;
    let ds_what = Attrs::of_group(file, &format!("{}/what", pick.dataset), F)?;
    let ds_where = Attrs::of_group(file, &format!("{}/where", pick.dataset), F)?;
    let data_what = Attrs::of_group(file, &format!("{}/what", pick.data), F)?;

    let data_path = format!("{}/data", pick.data);
    let dataset = open_data(file, &data_path, len)?;
    let shape = dataset.shape();
    if shape.len() != 2 {
        return Err(DecodeError::Shape {
            format: F,
            field: data_path,
            expected: "2 dimensions (rays, bins)".into(),
            found: format!("{shape:?}"),
        });
    }
    let (rays, bins) = (shape[0], shape[1]);
    h5::check_shape(F, rays, bins, &data_path, max_cells)?;
    for (name, found) in [("nrays", rays), ("nbins", bins)] {
        if let Some(v) = ds_where.f64(name, F)? {
            if v != found as f64 {
                return Err(DecodeError::Shape {
                    format: F,
                    field: data_path,
                    expected: format!("{}/{name} = {v}", ds_where.path),
                    found: format!("{rays} rays x {bins} bins"),
                });
            }
        }
    }
    let (rays, bins) = (rays as usize, bins as usize);

    let number = |name: &str, default: Option<f64>| -> Result<f64, DecodeError> {
        match (ds_where.f64(name, F)?, default) {
            (Some(v), _) if v.is_finite() => Ok(v),
            (Some(v), _) => Err(DecodeError::BadValue {
                format: F,
                field: format!("{}/{name}", ds_where.path),
                value: v.to_string(),
                reason: "must be a finite number".into(),
            }),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(DecodeError::Missing {
                format: F,
                path: format!("{}/{name}", ds_where.path),
            }),
        }
    };
    let rscale_m = number("rscale", None)?;
    let rstart_km = number("rstart", Some(0.0))?;

    let mut scaling = Scaling::read(&data_what, &ds_what, Kind::Dbzh)?;
    if scaling.nodata.is_some() && scaling.nodata == scaling.undetect {
        // One raw value for both (the Bureau of Meteorology's volumes write
        // 0 for each): a sweep holds radiated gates only, so it reads as
        // "measured, no echo" (see the module docs).
        scaling.nodata = None;
    }
    let values = read_values(&dataset, &scaling, (rays, bins), &data_path, len)?;
    let dbz = h5::into_array(F, &data_path, rays, bins, values)?;
    let spacing = 360.0 / rays as f64;
    let sweep = Sweep {
        site,
        elevation_number: u8::try_from(pick.number).unwrap_or(u8::MAX),
        elevation_deg: pick.elangle as f32,
        time,
        first_gate_m: rstart_km * 1000.0 + rscale_m / 2.0,
        gate_m: rscale_m,
        azimuth_deg: (0..rays)
            .map(|i| ((i as f64 + 0.5) * spacing) as f32)
            .collect(),
        dbz,
    };
    let gridded = gridder
        .grid(&sweep)
        .map_err(|e| crate::decode::polar_error(F, Some(&pick.dataset), e))?;
    Ok(RadarScan {
        format: F,
        source: format!("ODIM:{source}"),
        time,
        quantity: Quantity::Reflectivity,
        grid: gridded.grid,
        values: gridded.dbz,
        zr_hint: None,
    })
}

/// The radar's position from root `where`, named by `source`.
fn site(root_where: &Attrs, source: &str) -> Result<RadarSite, DecodeError> {
    let get = |name: &str| -> Result<Option<f64>, DecodeError> { root_where.f64(name, F) };
    let need = |name: &str| -> Result<f64, DecodeError> {
        get(name)?.ok_or_else(|| DecodeError::Missing {
            format: F,
            path: format!("/where/{name} (the radar's position)"),
        })
    };
    Ok(RadarSite {
        id: source.to_string(),
        lat_deg: need("lat")?,
        lon_deg: need("lon")?,
        height_m: get("height")?.filter(|h| h.is_finite()).unwrap_or(0.0),
    })
}

/// The lowest sweep of the most preferred reflectivity quantity present.
fn pick_sweep(file: &Hdf5File) -> Result<Candidate, DecodeError> {
    let mut found: Vec<Candidate> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, dataset) in datasets(file)?.into_iter().enumerate() {
        let ds_what = Attrs::of_group(file, &format!("{dataset}/what"), F)?;
        if let Some(p) = ds_what.string("product", F)? {
            if p.trim() != "SCAN" {
                seen.push(format!("{dataset}: product {p}"));
                continue;
            }
        }
        let ds_where = Attrs::of_group(file, &format!("{dataset}/where"), F)?;
        for (data, quantity) in data_groups(file, &dataset, &ds_what)? {
            let Some(q) = quantity else {
                seen.push(format!("{data}: no quantity"));
                continue;
            };
            let Some(rank) = REFLECTIVITY.iter().position(|r| *r == q.trim()) else {
                seen.push(format!("{data}: {q}"));
                continue;
            };
            let elangle = ds_where
                .f64("elangle", F)?
                .ok_or_else(|| DecodeError::Missing {
                    format: F,
                    path: format!("{dataset}/where/elangle"),
                })?;
            if !elangle.is_finite() {
                return Err(DecodeError::BadValue {
                    format: F,
                    field: format!("{dataset}/where/elangle"),
                    value: elangle.to_string(),
                    reason: "the elevation angle must be a finite number of degrees".into(),
                });
            }
            found.push(Candidate {
                dataset: dataset.clone(),
                data,
                rank,
                elangle,
                number: i + 1,
            });
        }
    }
    let best_rank = found.iter().map(|c| c.rank).min();
    found
        .into_iter()
        .filter(|c| Some(c.rank) == best_rank)
        // `min_by` keeps the first of equal elements: the first dataset on a tie.
        .min_by(|a, b| a.elangle.total_cmp(&b.elangle))
        .ok_or_else(|| DecodeError::Unsupported {
            format: F,
            what: format!(
                "polar data without reflectivity [{}]; Raincast reads the lowest DBZH (or TH) sweep",
                seen.join(", ")
            ),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::decode::odim::{decode, decode_limited};
    use crate::encode::odim::{encode_polar, finish, PolarSweep};
    use crate::scan::{Format, Quantity};
    use chrono::{TimeZone, Utc};
    use hdf5_writer::{AttributeBuilder, DatasetBuilder, Hdf5Builder};
    use ndarray::Array2;

    const RAYS: usize = 360;
    const BINS: usize = 120;
    const SITE: (f64, f64, f64) = (50.0, 5.5, 600.0);
    const SOURCE: &str = "WMO:06477,RAD:BX41,NOD:bewid";

    fn t0() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 17, 13, 45, 0).unwrap()
    }

    /// A sweep of undetect with 40 dBZ on rays `rays` (wrapping) and gates
    /// 40..50 (1 km gates from 0: 40–50 km), and no data on rays 180..190.
    fn sweep_values(rays: std::ops::RangeInclusive<i32>) -> Array2<f32> {
        let mut v = Array2::from_elem((RAYS, BINS), f32::NEG_INFINITY);
        for r in rays {
            let r = r.rem_euclid(RAYS as i32) as usize;
            for b in 40..50 {
                v[[r, b]] = 40.0;
            }
        }
        for r in 180..190 {
            v.row_mut(r).fill(f32::NAN);
        }
        v
    }

    fn sweep<'a>(elangle_deg: f64, quantity: &'a str, values: &'a Array2<f32>) -> PolarSweep<'a> {
        PolarSweep {
            elangle_deg,
            quantity,
            gate_m: 1000.0,
            rstart_km: 0.0,
            values,
        }
    }

    /// A polar file of `object` (`PVOL`, `SCAN`) at [`SITE`] with `sweeps`.
    fn polar_file(object: &str, sweeps: &[PolarSweep]) -> Vec<u8> {
        encode_polar(object, SITE, t0(), SOURCE, sweeps).unwrap()
    }

    /// The gridded value `(east_km, north_km)` from the radar (the radar
    /// sits on the corner shared by the four middle cells of the 500 × 500
    /// grid of 1 km cells).
    fn at(values: &Array2<f32>, east_km: f64, north_km: f64) -> f32 {
        let half = values.nrows() as f64 / 2.0;
        values[[
            (half - north_km).floor() as usize,
            (half + east_km).floor() as usize,
        ]]
    }

    #[test]
    fn a_volume_is_gridded_from_its_lowest_dbzh_sweep() {
        // The higher sweep comes first in the file and has its echo to the
        // north; the lowest has it to the east.
        let (high, low) = (sweep_values(-2..=2), sweep_values(88..=92));
        let bytes = polar_file(
            "PVOL",
            &[sweep(1.5, "DBZH", &high), sweep(0.5, "DBZH", &low)],
        );
        assert_eq!(crate::decode::detect(&bytes, None), Some(Format::Odim));
        let scan = decode(&bytes, Some("bewid.pvol.h5")).unwrap();
        assert_eq!(scan.format, Format::Odim);
        assert_eq!(scan.source, format!("ODIM:{SOURCE}"));
        assert_eq!(scan.time, t0());
        assert_eq!(scan.quantity, Quantity::Reflectivity);
        assert_eq!(scan.values.dim(), (500, 500));
        assert_eq!(scan.grid.cell_x_m, 1000.0);
        assert!(
            scan.grid
                .projection
                .contains("+proj=aeqd +lat_0=50.000000 +lon_0=5.500000"),
            "{}",
            scan.grid.projection
        );
        let v = &scan.values;
        // East, 45 km: the lowest sweep's echo.
        assert_eq!(at(v, 45.5, 0.5), 40.0);
        assert_eq!(at(v, 45.5, -0.5), 40.0);
        // North, 45 km: undetect here (the echo there is the higher sweep's).
        assert_eq!(at(v, 0.5, 45.5), f32::NEG_INFINITY);
        // West at 100 km: measured, no echo.
        assert_eq!(at(v, -100.5, 0.5), f32::NEG_INFINITY);
        // South (rays 180..190, no data) and beyond the last gate: no data.
        assert!(at(v, -2.5, -30.5).is_nan());
        assert!(at(v, 200.5, 0.5).is_nan());
        // Every echo cell lies 40–50 km east.
        for ((r, c), x) in v.indexed_iter() {
            if *x == 40.0 {
                let (e, n) = (c as f64 + 0.5 - 250.0, 250.0 - r as f64 - 0.5);
                let (range, az) = (e.hypot(n), e.atan2(n).to_degrees());
                assert!(
                    (39.0..51.0).contains(&range) && (87.0..94.0).contains(&az),
                    "{r} {c}"
                );
            }
        }
    }

    #[test]
    fn dbzh_is_preferred_to_th_and_th_is_read_without_it() {
        // TH on the lowest sweep, DBZH above it: DBZH (corrected) wins.
        let (th, dbzh) = (sweep_values(88..=92), sweep_values(-2..=2));
        let bytes = polar_file("PVOL", &[sweep(0.5, "TH", &th), sweep(1.5, "DBZH", &dbzh)]);
        let v = decode(&bytes, None).unwrap().values;
        assert_eq!(at(&v, 0.5, 45.5), 40.0);
        assert_eq!(at(&v, 45.5, 0.5), f32::NEG_INFINITY);
        // A single-sweep file (SCAN) with TH only.
        let bytes = polar_file("SCAN", &[sweep(0.5, "TH", &th)]);
        let v = decode(&bytes, None).unwrap().values;
        assert_eq!(at(&v, 45.5, 0.5), 40.0);
    }

    #[test]
    fn ray_i_is_centred_half_a_ray_clockwise_of_i_rays_from_north() {
        // One ray with echo, ray 90 of 360: azimuths 90°–91°, centre 90.5°.
        // At 100–110 km a cell spans about half a degree, so the cells
        // within 0.4° of that centre hold the echo and those within 0.4° of
        // the neighbours' centres (89.5°, 91.5°) do not; rays centred on
        // whole degrees would move the echo to 89.5°–90.5°.
        let mut values = Array2::from_elem((RAYS, BINS), f32::NEG_INFINITY);
        for b in 100..110 {
            values[[90, b]] = 40.0;
        }
        let bytes = polar_file("SCAN", &[sweep(0.5, "DBZH", &values)]);
        let v = decode(&bytes, None).unwrap().values;
        let (mut inside, mut beside) = (0, 0);
        for ((r, c), x) in v.indexed_iter() {
            let (e, n) = (c as f64 + 0.5 - 250.0, 250.0 - r as f64 - 0.5);
            let (range, az) = (e.hypot(n), e.atan2(n).to_degrees());
            if !(102.0..108.0).contains(&range) {
                continue;
            }
            if (az - 90.5).abs() < 0.4 {
                assert_eq!(*x, 40.0, "azimuth {az}");
                inside += 1;
            } else if (az - 89.5).abs() < 0.4 || (az - 91.5).abs() < 0.4 {
                assert_eq!(*x, f32::NEG_INFINITY, "azimuth {az}");
                beside += 1;
            }
        }
        assert!(inside >= 5 && beside >= 10, "{inside} {beside}");
    }

    #[test]
    fn the_first_gate_starts_at_rstart() {
        // rstart 10 km moves every gate 10 km out: the echo lies 50–60 km.
        let values = sweep_values(88..=92);
        let mut s = sweep(0.5, "DBZH", &values);
        s.rstart_km = 10.0;
        let v = decode(&polar_file("SCAN", &[s]), None).unwrap().values;
        assert_eq!(at(&v, 45.5, 0.5), f32::NEG_INFINITY);
        assert_eq!(at(&v, 55.5, 0.5), 40.0);
        // Inside the first gate's start: no data (nothing measured there).
        assert!(at(&v, 5.5, 0.5).is_nan());
    }

    /// A one-sweep PVOL built attribute by attribute, so that a test can
    /// leave one out or break it.
    fn custom(root_where: &[(&str, f64)], ds_where: &[(&str, f64)], quantity: &str) -> Vec<u8> {
        custom_product("SCAN", root_where, ds_where, quantity)
    }

    /// [`custom`] with this `dataset1/what/product`.
    fn custom_product(
        product: &str,
        root_where: &[(&str, f64)],
        ds_where: &[(&str, f64)],
        quantity: &str,
    ) -> Vec<u8> {
        let sweep = (quantity, [8, 6], &[100u8; 48][..], &[][..]);
        one_sweep(product, sweep, root_where, ds_where)
    }

    /// The one `dataset1/data1` of [`one_sweep`]: quantity, shape, raw u8
    /// data and its `what` attributes.
    type SweepData<'a> = (&'a str, [u64; 2], &'a [u8], &'a [(&'a str, f64)]);

    /// A PVOL of one `dataset1/data1`, with `dataset1/what/product` and
    /// these root and sweep `where` attributes.
    fn one_sweep(
        product: &str,
        (quantity, shape, raw, data_what): SweepData,
        root_where: &[(&str, f64)],
        ds_where: &[(&str, f64)],
    ) -> Vec<u8> {
        let text = AttributeBuilder::fixed_string;
        let num = |n: &str, v: f64| AttributeBuilder::scalar(n, v).unwrap();
        let mut b = Hdf5Builder::new()
            .attribute(text("Conventions", "ODIM_H5/V2_2"))
            .group_attribute("what", text("object", "PVOL"))
            .group_attribute("what", text("date", "20240517"))
            .group_attribute("what", text("time", "134500"))
            .group_attribute("what", text("source", "RAD:NL51;PLC:nldhl"))
            .group_attribute("dataset1/what", text("product", product))
            .group_attribute("dataset1/data1/what", text("quantity", quantity))
            .dataset(
                DatasetBuilder::typed_data("dataset1/data1/data", shape.to_vec(), raw).unwrap(),
            );
        for (n, v) in data_what {
            b = b.group_attribute("dataset1/data1/what", num(n, *v));
        }
        for (n, v) in root_where {
            b = b.group_attribute("where", num(n, *v));
        }
        for (n, v) in ds_where {
            b = b.group_attribute("dataset1/where", num(n, *v));
        }
        finish(b).unwrap()
    }

    #[test]
    fn a_sweep_whose_nodata_is_its_undetect_reads_that_value_as_no_echo() {
        // As the Bureau of Meteorology writes its volumes: u8 DBZH, gain
        // 0.5, offset −32, nodata = undetect = 0. 360 rays of twenty 1-km
        // gates, raw 0 (no echo) but for an echo of 50 dBZ (raw 164) on
        // gates 8–11 of rays 80–99 (east).
        let (rays, bins) = (360usize, 20usize);
        let mut raw = vec![0u8; rays * bins];
        for ray in raw.chunks_exact_mut(bins).skip(80).take(20) {
            ray[8..12].fill(164);
        }
        let geometry = [
            ("elangle", 0.5),
            ("nrays", rays as f64),
            ("nbins", bins as f64),
            ("rscale", 1000.0),
        ];
        let file = |nodata: f64| {
            let what = [
                ("gain", 0.5),
                ("offset", -32.0),
                ("nodata", nodata),
                ("undetect", 0.0),
            ];
            let sweep = ("DBZH", [rays as u64, bins as u64], &raw[..], &what[..]);
            one_sweep("SCAN", sweep, &ROOT, &geometry)
        };
        let shared = decode(&file(0.0), None).unwrap().values;
        // With a separate nodata code (255, absent from the data) every
        // gate is measured: the reading the shared code must give.
        let apart = decode(&file(255.0), None).unwrap().values;
        let dry = shared.iter().filter(|x| **x == f32::NEG_INFINITY).count();
        let echo = shared.iter().filter(|x| **x == 50.0).count();
        assert!(dry > 500 && echo > 10, "{dry} {echo}");
        assert!(shared
            .iter()
            .zip(&apart)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(at(&shared, 9.5, 0.5), 50.0);
        assert_eq!(at(&shared, -9.5, 0.5), f32::NEG_INFINITY);
        // Beyond the sweep's 20 km: no data.
        assert!(at(&shared, 30.5, 0.5).is_nan());
    }

    const ROOT: [(&str, f64); 2] = [("lat", 52.95), ("lon", 4.79)];
    const GOOD: [(&str, f64); 4] = [
        ("elangle", 0.3),
        ("nrays", 8.0),
        ("nbins", 6.0),
        ("rscale", 1000.0),
    ];

    #[test]
    fn the_built_file_decodes_before_it_is_broken() {
        // The baseline of the error tests below: valid as built.
        let scan = decode(&custom(&ROOT, &GOOD, "DBZH"), None).unwrap();
        assert!(scan.source.ends_with("PLC:nldhl"), "{}", scan.source);
        // No gain or offset: raw 100 is 100 dBZ, within the 6 gates' 6 km
        // (8 rays of 45°: only cells near each ray's centre get it).
        let echo: Vec<_> = scan
            .values
            .indexed_iter()
            .filter(|(_, v)| **v == 100.0)
            .collect();
        assert!(!echo.is_empty());
        for ((r, c), _) in echo {
            let (e, n) = (c as f64 + 0.5 - 250.0, 250.0 - r as f64 - 0.5);
            assert!(e.hypot(n) < 6.0, "{r} {c}");
        }
    }

    #[test]
    fn only_scan_datasets_are_sweeps() {
        // An RHI (or any other product) in a polar file is not a sweep to
        // grid, even with reflectivity in it.
        let e = decode(&custom_product("RHI", &ROOT, &GOOD, "DBZH"), None).unwrap_err();
        assert_eq!(e.code(), "unsupported", "{e}");
        assert!(e.to_string().contains("/dataset1: product RHI"), "{e}");
    }

    #[test]
    fn bad_polar_files_name_what_is_wrong() {
        let without = |name: &str| -> Vec<(&'static str, f64)> {
            GOOD.iter().copied().filter(|(n, _)| *n != name).collect()
        };
        let with = |name: &'static str, v: f64| -> Vec<(&'static str, f64)> {
            let mut w = without(name);
            w.push((name, v));
            w
        };
        // (root where, sweep where, quantity, error code, text it names)
        type Case<'a> = (
            &'a [(&'a str, f64)],
            Vec<(&'a str, f64)>,
            &'a str,
            &'a str,
            &'a [&'a str],
        );
        let cases: [Case; 7] = [
            (
                &ROOT[1..],
                GOOD.to_vec(),
                "DBZH",
                "missing",
                &["/where/lat"],
            ),
            (
                &ROOT,
                without("elangle"),
                "DBZH",
                "missing",
                &["/dataset1/where/elangle"],
            ),
            (
                &ROOT,
                without("rscale"),
                "DBZH",
                "missing",
                &["/dataset1/where/rscale"],
            ),
            (
                &ROOT,
                with("rscale", 0.0),
                "DBZH",
                "bad_value",
                &["/dataset1", "gate spacing"],
            ),
            (
                &ROOT,
                with("elangle", 85.0),
                "DBZH",
                "bad_value",
                &["elevation"],
            ),
            (
                &ROOT,
                with("nrays", 9.0),
                "DBZH",
                "shape",
                &["nrays", "8 rays x 6 bins"],
            ),
            (
                &ROOT,
                GOOD.to_vec(),
                "VRADH",
                "unsupported",
                &["/dataset1/data1: VRADH"],
            ),
        ];
        for (root, ds, quantity, code, names) in cases {
            let e = decode(&custom(root, &ds, quantity), None).unwrap_err();
            let text = e.to_string();
            assert_eq!(e.code(), code, "{text}");
            assert!(names.iter().all(|n| text.contains(n)), "{names:?}: {text}");
        }
        // A declared sweep above the cell limit is refused before its data
        // is read.
        let e = decode_limited(&custom(&ROOT, &GOOD, "DBZH"), None, 40).unwrap_err();
        assert_eq!(e.code(), "too_large", "{e}");
    }
}
