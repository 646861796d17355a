//! GIS exports checked with the ecosystem's own tools:
//! * GDAL (`gdalinfo -json`, Debian's `gdal-bin`) opens the GeoTIFF and the
//!   netCDF and must report the grid's geotransform, NaN as no data, the
//!   overviews and tiles, and a CRS that puts the grid's corners where
//!   `proj4rs` (the project's projection code) puts them;
//! * the IOOS compliance checker (`cchecker.py --test cf:1.8`, PyPI) passes
//!   the netCDF;
//! * netCDF4 + pyproj (installed with it) decode the times and build the CRS
//!   from the CF grid-mapping parameters and from `crs_wkt` separately.
//!
//! `.ci/services.sh` installs the tools; without them these tests skip
//! outside CI and fail under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use ndarray::Array2;
use raincast_algorithms::export::{self, BandInfo, NowcastFile};
use raincast_algorithms::Grid;
use raincast_testkit::{find_on_path, skip_or_fail, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Tools {
    gdalinfo: PathBuf,
    cchecker: PathBuf,
    python: PathBuf,
}

fn tools() -> Option<Tools> {
    let Some(gdalinfo) = find_on_path("gdalinfo") else {
        skip_or_fail("gdalinfo not on PATH (Debian package gdal-bin)");
        return None;
    };
    let Some(cchecker) = find_on_path("cchecker.py") else {
        skip_or_fail("cchecker.py not on PATH (PyPI compliance-checker)");
        return None;
    };
    let python = cchecker.with_file_name("python");
    if !python.is_file() {
        skip_or_fail("no python next to cchecker.py (its venv)");
        return None;
    }
    Some(Tools {
        gdalinfo,
        cchecker,
        python,
    })
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn gdalinfo(t: &Tools, target: &str) -> Value {
    let out = Command::new(&t.gdalinfo)
        .args(["-json", "-stats", target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gdalinfo {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Warning") && !stderr.contains("ERROR"),
        "gdalinfo {target} complained: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// GDAL's geotransform, no-data value and WGS84 corners against the grid.
fn check_georeference(info: &Value, grid: &Grid, what: &str) {
    let gt: Vec<f64> = info["geoTransform"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no geoTransform: {info}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = [
        grid.x_west_m,
        grid.cell_x_m,
        0.0,
        grid.y_north_m,
        0.0,
        -grid.cell_y_m,
    ];
    for (g, w) in gt.iter().zip(want) {
        assert!(
            close(*g, w, 1e-6 * w.abs().max(1.0)),
            "{what}: geotransform {gt:?}, want {want:?}"
        );
    }
    assert_eq!(
        info["bands"][0]["noDataValue"], "NaN",
        "{what}: no-data value"
    );
    assert!(
        info["coordinateSystem"]["wkt"].as_str().is_some_and(|w| [
            "PROJCRS", "GEOGCRS", "BOUNDCRS"
        ]
        .iter()
        .any(|k| w.starts_with(k))),
        "{what}: no CRS: {}",
        info["coordinateSystem"]
    );
    // GDAL's lon/lat of the outer corners against proj4rs's.
    let extent: Vec<(f64, f64)> = info["wgs84Extent"]["coordinates"][0]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no wgs84Extent"))
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    for (lon, lat) in grid.corners_lonlat().unwrap() {
        assert!(
            extent
                .iter()
                .any(|(x, y)| close(*x, lon, 1e-5) && close(*y, lat, 1e-5)),
            "{what}: corner ({lon}, {lat}) not in GDAL's extent {extent:?}"
        );
    }
}

/// Finite count, minimum, maximum of a field.
fn stats(f: &Array2<f32>) -> (usize, f64, f64) {
    f.iter()
        .filter(|v| v.is_finite())
        .fold((0, f64::MAX, f64::MIN), |(n, lo, hi), v| {
            (n + 1, lo.min(f64::from(*v)), hi.max(f64::from(*v)))
        })
}

fn check_band_values(band: &Value, field: &Array2<f32>, what: &str) {
    let (n, lo, hi) = stats(field);
    let md = &band["metadata"][""];
    let valid: f64 = md["STATISTICS_VALID_PERCENT"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no statistics: {band}"))
        .parse()
        .unwrap();
    let want = 100.0 * n as f64 / field.len() as f64;
    assert!(
        close(valid, want, 0.01),
        "{what}: {valid}% valid, want {want}%"
    );
    assert!(
        close(band["minimum"].as_f64().unwrap(), lo, 1e-4),
        "{what}: minimum"
    );
    assert!(
        close(band["maximum"].as_f64().unwrap(), hi, 1e-4),
        "{what}: maximum"
    );
}

/// The IOOS compliance checker's CF-1.8 report: no failed high or medium
/// priority check. Its oblique_mercator table requires an attribute named
/// `azimuth`, where CF-1.8 Appendix F names it `azimuth_of_central_line`
/// (which the file has): that one message is the checker's error.
fn check_cf(t: &Tools, nc: &Path) {
    let report = nc.with_extension("cf.json");
    let (_, text) = run(Command::new(&t.cchecker).args([
        "--test",
        "cf:1.8",
        "--criteria",
        "strict",
        "--format",
        "json",
        "--output",
        report.to_str().unwrap(),
        nc.to_str().unwrap(),
    ]));
    let r: Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}): {text}")),
    )
    .unwrap();
    let r = &r["cf:1.8"];
    assert!(
        r["scored_points"].as_u64().unwrap() > 0,
        "nothing checked: {r}"
    );
    let mut failures = Vec::new();
    for level in ["high_priorities", "medium_priorities"] {
        for check in r[level].as_array().unwrap() {
            for msg in check["msgs"].as_array().unwrap() {
                let msg = msg.as_str().unwrap();
                if msg != "azimuth is a required attribute for grid mapping oblique_mercator" {
                    failures.push(format!("{level}: {}: {msg}", check["name"]));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}: CF check failed:\n{}",
        nc.display(),
        failures.join("\n")
    );
}

const NETCDF_CHECK: &str = r#"
import json, sys
import netCDF4, numpy as np, pyproj
d = netCDF4.Dataset(sys.argv[1])
crs = d["crs"]
attrs = {k: crs.getncattr(k) for k in crs.ncattrs()}
plain = lambda v: v.tolist() if hasattr(v, "tolist") else v
cf = {k: plain(v) for k, v in attrs.items() if k not in ("crs_wkt", "proj4_params")}
out = {
    "reference": netCDF4.num2date(d["forecast_reference_time"][...], d["forecast_reference_time"].units,
                                  only_use_cftime_datetimes=False).isoformat(),
    "valid": [t.isoformat() for t in netCDF4.num2date(d["time"][:], d["time"].units,
                                                       only_use_cftime_datetimes=False)],
    "leads": [float(v) for v in d["forecast_period"][:]],
    "units": d["rainfall_rate"].units,
    "shape": list(d["rainfall_rate"].shape),
    "grid_mapping_name": attrs["grid_mapping_name"],
}
x, y = d["x"][:], d["y"][:]
for name, c in (("from_cf_parameters", pyproj.CRS.from_cf(cf)), ("from_crs_wkt", pyproj.CRS.from_wkt(attrs["crs_wkt"]))):
    t = pyproj.Transformer.from_crs(c, "EPSG:4326", always_xy=True)
    out[name] = [t.transform(float(x[0]), float(y[0])), t.transform(float(x[-1]), float(y[-1]))]
rain = np.ma.filled(d["rainfall_rate"][:].astype("f8"), np.nan)
out["finite"] = int(np.isfinite(rain).sum())
print(json.dumps(out))
"#;

/// netCDF4 and pyproj: times, leads, units, and both CRS descriptions.
fn check_with_netcdf4(
    t: &Tools,
    nc: &Path,
    grid: &Grid,
    issued: DateTime<Utc>,
    leads: &[u32],
    fields: &[Array2<f32>],
) {
    let (ok, text) = run(Command::new(&t.python).args(["-c", NETCDF_CHECK, nc.to_str().unwrap()]));
    assert!(ok, "netCDF4/pyproj check: {text}");
    let v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    assert_eq!(
        v["reference"].as_str().unwrap().get(..19),
        Some(iso(issued).as_str())
    );
    let valid: Vec<String> = v["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap()[..19].to_string())
        .collect();
    let want: Vec<String> = leads
        .iter()
        .map(|l| iso(issued + chrono::Duration::minutes(i64::from(*l))))
        .collect();
    assert_eq!(valid, want, "valid times");
    let got_leads: Vec<u32> = v["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap() as u32)
        .collect();
    assert_eq!(got_leads, leads);
    assert_eq!(v["units"], "mm h-1");
    assert_eq!(
        v["shape"],
        serde_json::json!([leads.len(), grid.rows, grid.cols])
    );
    let finite: usize = fields.iter().map(|f| stats(f).0).sum();
    assert_eq!(
        v["finite"].as_u64().unwrap() as usize,
        finite,
        "cells with data"
    );
    let first = grid.rowcol_to_lonlat(0.5, 0.5).unwrap();
    let last = grid
        .rowcol_to_lonlat(grid.rows as f64 - 0.5, grid.cols as f64 - 0.5)
        .unwrap();
    // CF's oblique_mercator has no rectified grid angle, so its parameters
    // cannot carry the Swiss oblique Mercator (pyproj's own `to_cf` writes
    // the same attributes and warns that the angle is lost); `crs_wkt` does.
    let how: &[&str] = if v["grid_mapping_name"] == "oblique_mercator" {
        &["from_crs_wkt"]
    } else {
        &["from_cf_parameters", "from_crs_wkt"]
    };
    for how in how {
        let p = &v[*how];
        for (k, (lon, lat)) in [first, last].into_iter().enumerate() {
            let (x, y) = (p[k][0].as_f64().unwrap(), p[k][1].as_f64().unwrap());
            assert!(
                close(x, lon, 1e-5) && close(y, lat, 1e-5),
                "{how}: cell centre {k} at ({x}, {y}), proj4rs says ({lon}, {lat})"
            );
        }
    }
}

/// The nowcast's GeoTIFF and netCDF, through the API, open in GDAL with the
/// grid's CRS and values, and pass the CF check.
#[tokio::test]
async fn the_nowcast_exports_open_in_gdal_and_pass_the_cf_check() {
    let Some(t) = tools() else { return };
    let f = fixture().await;
    let dir = TempDir::new("gis-api");
    let n = f
        .state
        .nowcasts()
        .ensure(RADAR, f.state.now())
        .await
        .unwrap()
        .expect("a nowcast");
    let grid = grid();
    assert_eq!(n.grid, grid);

    // One lead as GeoTIFF.
    let i = 5;
    let lead = n.leads_min[i];
    let resp = get(&f.state, &format!("/v1/radars/{RADAR}/nowcast/{lead}.tif")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "image/tiff; application=geotiff"
    );
    assert_eq!(resp.headers()["cache-control"], "public, max-age=60");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .ends_with(&format!("_{lead:03}.tif\"")));
    let etag = resp.headers()["etag"].clone();
    let tif = dir.path().join("lead.tif");
    std::fs::write(&tif, body_bytes(resp).await).unwrap();
    let info = gdalinfo(&t, tif.to_str().unwrap());
    assert_eq!(info["driverShortName"], "GTiff");
    check_georeference(&info, &grid, "GeoTIFF");
    let band = &info["bands"][0];
    assert_eq!(band["type"], "Float32");
    assert_eq!(band["block"], serde_json::json!([256, 256]));
    assert_eq!(band["unit"], "mm/h");
    assert_eq!(
        band["overviews"][0]["size"],
        serde_json::json!([grid.cols.div_ceil(2), grid.rows.div_ceil(2)]),
        "overviews: {band}"
    );
    check_band_values(band, &n.rate_mm_h[i], "GeoTIFF");
    assert_eq!(
        info["metadata"][""]["VALID_TIME"].as_str(),
        Some(
            n.valid_time(i)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
                .as_str()
        )
    );

    // Conditional request: 304 without a body.
    let req = axum::http::Request::get(format!("/v1/radars/{RADAR}/nowcast/{lead}.tif"))
        .header("if-none-match", etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = call(&f.state, req).await;
    assert_eq!(resp.status(), 304);
    assert!(body_bytes(resp).await.is_empty());

    // The whole nowcast as netCDF.
    let resp = get(&f.state, &format!("/v1/radars/{RADAR}/nowcast.nc")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-netcdf");
    assert!(resp.headers().contains_key("etag"));
    // Streamed with its exact length (the Content-Length).
    let exact = axum::body::HttpBody::size_hint(resp.body()).exact();
    let bytes = body_bytes(resp).await;
    assert_eq!(exact, Some(bytes.len() as u64));
    let nc = dir.path().join("nowcast.nc");
    std::fs::write(&nc, bytes).unwrap();
    let info = gdalinfo(&t, &format!("NETCDF:{}:rainfall_rate", nc.display()));
    check_georeference(&info, &grid, "netCDF");
    let bands = info["bands"].as_array().unwrap();
    assert_eq!(bands.len(), n.leads_min.len());
    assert_eq!(bands[i]["unit"], "mm h-1");
    check_band_values(&bands[i], &n.rate_mm_h[i], "netCDF");
    check_cf(&t, &nc);
    check_with_netcdf4(&t, &nc, &grid, n.base_time, &n.leads_min, &n.rate_mm_h);
}

/// The netCDF export carries `ETag` and `Last-Modified` (the nowcast's
/// creation) and answers `If-None-Match` and `If-Modified-Since` with an
/// empty 304; a stale validator gets the file.
#[tokio::test]
async fn the_netcdf_export_answers_conditional_requests() {
    let f = fixture().await;
    let n = f
        .state
        .nowcasts()
        .ensure(RADAR, f.state.now())
        .await
        .unwrap()
        .expect("a nowcast");
    let url = format!("/v1/radars/{RADAR}/nowcast.nc");
    let resp = get(&f.state, &url).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].clone();
    let last_modified = resp.headers()["last-modified"].clone();
    assert_eq!(
        last_modified.to_str().unwrap(),
        n.created_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    );
    assert!(!body_bytes(resp).await.is_empty());
    let conditional = |name: &'static str, value: axum::http::HeaderValue| {
        axum::http::Request::get(&url)
            .header(name, value)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for (name, value) in [
        ("if-none-match", etag),
        ("if-modified-since", last_modified),
    ] {
        let resp = call(&f.state, conditional(name, value)).await;
        assert_eq!(resp.status(), 304, "{name}");
        assert!(body_bytes(resp).await.is_empty(), "{name}");
    }
    let stale = [
        ("if-none-match", "\"an-older-version\""),
        ("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ];
    for (name, value) in stale {
        let resp = call(
            &f.state,
            conditional(name, axum::http::HeaderValue::from_static(value)),
        )
        .await;
        assert_eq!(resp.status(), 200, "{name}: {value}");
        assert!(!body_bytes(resp).await.is_empty(), "{name}: {value}");
    }
}

/// The projections of every supported product, exported directly: GDAL and
/// pyproj place the grid where proj4rs does, and the CF check passes.
#[test]
fn every_product_projection_exports_with_its_crs() {
    let Some(t) = tools() else { return };
    let dir = TempDir::new("gis-crs");
    let grids = [
        ("demo_aeqd", "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m", 300, 400, 2000.0, -400_000.0, 300_000.0),
        ("bom_aea", "+proj=aea +lat_1=-18 +lat_2=-36 +lat_0=-37.852 +lon_0=144.752 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs", 512, 512, 500.0, -128_000.0, 128_000.0),
        ("opera_laea", "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84", 220, 190, 20_000.0, 0.0, 0.0),
        ("rmi_lcc", "+proj=lcc +lat_1=49.83333333333334 +lat_2=51.16666666666666 +lat_0=50.797815 +lon_0=4.359215833333333 +x_0=649328 +y_0=665262 +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs", 70, 70, 10_000.0, 300_000.0, 1_000_000.0),
        ("fmi_stere", "+proj=stere +lon_0=25 +lat_0=90 +lat_ts=60 +a=6371288 +x_0=380886.310 +y_0=3395677.920 +no_defs", 122, 76, 10_000.0, 0.0, 1_226_000.0),
        ("mch_somerc", raincast_algorithms::decode::mch_gif::CCS4_PROJ, 64, 71, 10_000.0, 255_000.0, 480_000.0),
    ];
    let issued = common::t0();
    for (name, proj, rows, cols, cell, x0, y0) in grids {
        let grid = Grid::new(proj, rows, cols, cell, cell, x0, y0).unwrap();
        let field = Array2::from_shape_fn((rows, cols), |(r, c)| {
            if r < 3 && c < 5 {
                f32::NAN
            } else {
                ((r * 7 + c * 3) % 40) as f32 * 0.5
            }
        });
        let tif = export::encode_geotiff(&grid, field.view(), &BandInfo::default()).unwrap();
        let path = dir.path().join(format!("{name}.tif"));
        std::fs::write(&path, tif).unwrap();
        let info = gdalinfo(&t, path.to_str().unwrap());
        check_georeference(&info, &grid, name);
        check_band_values(&info["bands"][0], &field, name);

        let fields = [field.clone(), field.mapv(|v| v * 2.0)];
        let nc = export::encode_nowcast_netcdf(&NowcastFile {
            grid: &grid,
            radar: name,
            radar_name: name,
            issued,
            leads_min: &[10, 20],
            rate_mm_h: &fields,
            created: issued,
            source: "Raincast test",
        })
        .unwrap();
        let path = dir.path().join(format!("{name}.nc"));
        std::fs::write(&path, nc).unwrap();
        let info = gdalinfo(&t, &format!("NETCDF:{}:rainfall_rate", path.display()));
        check_georeference(&info, &grid, &format!("{name}.nc"));
        check_band_values(&info["bands"][1], &fields[1], &format!("{name}.nc"));
        check_cf(&t, &path);
        check_with_netcdf4(&t, &path, &grid, issued, &[10, 20], &fields);
    }
}

/// The checks above can fail: a file without units or grid mapping does
/// not pass the CF check, and a GeoTIFF placed elsewhere does not match.
#[test]
fn the_checks_catch_broken_files() {
    let Some(t) = tools() else { return };
    let dir = TempDir::new("gis-broken");
    let grid = grid();
    let field = Array2::from_elem(grid.shape(), 1.0f32);
    // A netCDF whose rain variable lacks units and a valid standard name.
    let nc = dir.path().join("broken.nc");
    let (ok, text) = run(Command::new(&t.python).args([
        "-c",
        "import sys, netCDF4\nd = netCDF4.Dataset(sys.argv[1], 'w')\nd.Conventions = 'CF-1.8'\nd.createDimension('x', 2)\nv = d.createVariable('rain', 'f4', ('x',))\nv.standard_name = 'rain_of_frogs'\nv[:] = [1, 2]\nd.close()",
        nc.to_str().unwrap(),
    ]));
    assert!(ok, "{text}");
    let caught = std::panic::catch_unwind(|| check_cf(&t, &nc));
    assert!(caught.is_err(), "the CF check passed a broken file");
    // A GeoTIFF of a grid shifted by one cell is not this grid.
    let shifted = Grid::new(
        grid.projection.clone(),
        grid.rows,
        grid.cols,
        grid.cell_x_m,
        grid.cell_y_m,
        grid.x_west_m + grid.cell_x_m,
        grid.y_north_m,
    )
    .unwrap();
    let tif = dir.path().join("shifted.tif");
    std::fs::write(
        &tif,
        export::encode_geotiff(&shifted, field.view(), &BandInfo::default()).unwrap(),
    )
    .unwrap();
    let info = gdalinfo(&t, tif.to_str().unwrap());
    let caught = std::panic::catch_unwind(|| check_georeference(&info, &grid, "shifted"));
    assert!(caught.is_err(), "a shifted GeoTIFF passed");
}

/// Errors are the API's problem responses.
#[tokio::test]
async fn export_errors_are_problems() {
    let f = fixture().await;
    let s = &f.state;
    expect_problem(
        get(s, "/v1/radars/nope/nowcast.nc").await,
        404,
        "unknown_radar",
    )
    .await;
    expect_problem(
        get(s, "/v1/radars/nope/nowcast/5.tif").await,
        404,
        "unknown_radar",
    )
    .await;
    expect_problem(
        get(s, &format!("/v1/radars/{RADAR}/nowcast/7.tif")).await,
        404,
        "unknown_lead",
    )
    .await;
    expect_problem(
        get(s, &format!("/v1/radars/{RADAR}/nowcast/x.tif")).await,
        404,
        "unknown_lead",
    )
    .await;
    expect_problem(
        get(s, &format!("/v1/radars/{RADAR}/nowcast/5.png")).await,
        404,
        "no_such_route",
    )
    .await;
    expect_problem(
        get(
            s,
            &format!("/v1/radars/{RADAR}/nowcast/5.tif?issued=2020-01-01T00:00:00Z"),
        )
        .await,
        410,
        "nowcast_superseded",
    )
    .await;
    expect_problem(
        get(
            s,
            &format!("/v1/radars/{RADAR}/nowcast.nc?issued=yesterday"),
        )
        .await,
        400,
        "invalid_time",
    )
    .await;
    expect_problem(
        get(s, "/v1/radars/empty/nowcast.nc").await,
        503,
        "nowcast_unavailable",
    )
    .await;
    // The frames of the current nowcast, pinned by `issued`, are cacheable for a day.
    let n = s.nowcasts().ensure(RADAR, s.now()).await.unwrap().unwrap();
    let pinned = get(
        s,
        &format!(
            "/v1/radars/{RADAR}/nowcast.nc?issued={}",
            n.base_time.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
    .await;
    assert_eq!(pinned.status(), 200);
    assert_eq!(pinned.headers()["cache-control"], "public, max-age=86400");
}

/// A radar whose projection has no export mapping gets a 422 naming it.
#[tokio::test]
async fn an_unsupported_projection_is_a_422() {
    let dir = TempDir::new("gis-tmerc");
    let store = std::sync::Arc::new(
        raincast_store::EmbeddedStore::open(
            dir.path().join("store.redb"),
            chrono::Duration::days(3650),
        )
        .await
        .unwrap(),
    );
    let g = grid();
    let tmerc = Grid::new(
        format!("+proj=tmerc +lat_0={LAT0} +lon_0={LON0} +k=1 +ellps=WGS84 +units=m"),
        g.rows,
        g.cols,
        g.cell_x_m,
        g.cell_y_m,
        g.x_west_m,
        g.y_north_m,
    )
    .unwrap();
    put_scans_on(store.as_ref(), "tm", 12, &tmerc).await;
    let radars = vec![raincast_api::RadarInfo {
        id: "tm".into(),
        name: "Transverse Mercator radar".into(),
        location: None,
    }];
    let s = state_for(
        store,
        radars,
        scan_time(11) + chrono::Duration::minutes(2),
        raincast_api::ApiConfig::default(),
    );
    for uri in ["/v1/radars/tm/nowcast.nc", "/v1/radars/tm/nowcast/5.tif"] {
        let p = expect_problem(get(&s, uri).await, 422, "export_unsupported").await;
        assert!(p["detail"].as_str().unwrap().contains("tmerc"), "{p}");
    }
}
