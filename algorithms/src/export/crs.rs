//! A grid's PROJ.4 string as the coordinate reference system descriptions
//! GIS formats carry: GeoTIFF GeoKeys, a CF-1.8 `grid_mapping` and OGC WKT
//! (version 1, GDAL's dialect, which CF's `crs_wkt` accepts).
//!
//! Supported: the projections Raincast's products use (`aeqd` for polar
//! scans and the synthetic radars, `aea` BOM, `laea` OPERA, `lcc` RMI,
//! polar `stere` FMI, `somerc` MeteoSwiss) and `longlat`. Ellipsoids come from
//! `+R`, `+ellps` (with an optional `+a` override), `+datum=WGS84`, `+a`
//! with `+b` or `+rf` (a sphere without them) or, without any of these,
//! WGS84, in `proj4rs`'s order of precedence. `+towgs84` is carried over.
//! Units must be metres. Anything else is a [`CrsError`] naming the parameter.

use geotiff_core::geokeys::{GeoKeyDirectory, GeoKeyValue};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Why a PROJ string cannot be described for export.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrsError {
    /// The projection (`+proj=`) has no export mapping.
    #[error("projection {0:?} cannot be exported (supported: aeqd, aea, laea, lcc, polar stere, somerc, longlat)")]
    Unsupported(String),
    /// A parameter is missing, not a number, or outside what the mapping covers.
    #[error("PROJ parameter +{name}: {reason}")]
    BadParameter { name: String, reason: String },
}

/// The map projection and its parameters (degrees; scale factors unitless).
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    LongLat,
    AzimuthalEquidistant {
        lat0: f64,
        lon0: f64,
    },
    LambertAzimuthalEqualArea {
        lat0: f64,
        lon0: f64,
    },
    AlbersEqualArea {
        lat1: f64,
        lat2: f64,
        lat0: f64,
        lon0: f64,
    },
    /// Two standard parallels (equal for a tangent cone).
    LambertConformalConic {
        lat1: f64,
        lat2: f64,
        lat0: f64,
        lon0: f64,
    },
    /// Centred on a pole; `lat_ts` is the latitude of true scale (variant B),
    /// or the pole itself with scale factor `k0` (variant A).
    PolarStereographic {
        north: bool,
        lat_ts: Option<f64>,
        lon0: f64,
        k0: f64,
    },
    /// Swiss oblique Mercator (`somerc`), which GDAL and PROJ write as Hotine
    /// oblique Mercator (variant B) with azimuth and rectified grid angle 90°.
    SwissObliqueMercator {
        lat0: f64,
        lon0: f64,
        k0: f64,
    },
}

/// The ellipsoid: semi-major axis (m) and inverse flattening (0 for a sphere).
#[derive(Debug, Clone, PartialEq)]
pub struct Ellipsoid {
    pub name: String,
    /// EPSG code of a named ellipsoid.
    pub epsg: Option<u16>,
    pub a_m: f64,
    pub inv_flattening: f64,
}

impl Ellipsoid {
    fn is_sphere(&self) -> bool {
        self.inv_flattening == 0.0
    }

    fn b_m(&self) -> f64 {
        if self.is_sphere() {
            self.a_m
        } else {
            self.a_m * (1.0 - 1.0 / self.inv_flattening)
        }
    }
}

/// A coordinate reference system parsed from a grid's PROJ.4 string.
#[derive(Debug, Clone, PartialEq)]
pub struct Crs {
    pub method: Method,
    /// `+x_0`, `+y_0`, metres.
    pub false_easting_m: f64,
    pub false_northing_m: f64,
    pub ellipsoid: Ellipsoid,
    /// The datum is WGS84 itself (`+datum=WGS84`).
    pub wgs84_datum: bool,
    /// `+towgs84`: 3 or 7 Helmert parameters to WGS84.
    pub towgs84: Option<Vec<f64>>,
}

/// Named ellipsoids: PROJ name, EPSG code, a, 1/f.
const ELLIPSOIDS: [(&str, u16, &str, f64, f64); 6] = [
    ("WGS84", 7030, "WGS 84", 6_378_137.0, 298.257_223_563),
    ("GRS80", 7019, "GRS 1980", 6_378_137.0, 298.257_222_101),
    ("bessel", 7004, "Bessel 1841", 6_377_397.155, 299.152_812_8),
    ("intl", 7022, "International 1924", 6_378_388.0, 297.0),
    (
        "clrk66",
        7008,
        "Clarke 1866",
        6_378_206.4,
        294.978_698_213_898,
    ),
    ("sphere", 7035, "Sphere", 6_370_997.0, 0.0),
];

struct Params(HashMap<String, Option<String>>);

impl Params {
    fn parse(proj: &str) -> Self {
        let mut m = HashMap::new();
        for tok in proj.split_whitespace() {
            let tok = tok.trim_start_matches('+');
            match tok.split_once('=') {
                Some((k, v)) => m.insert(k.to_string(), Some(v.to_string())),
                None => m.insert(tok.to_string(), None),
            };
        }
        Params(m)
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_deref())
    }

    fn num(&self, name: &str) -> Result<Option<f64>, CrsError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| bad(name, format!("{v:?} is not a number"))),
        }
    }

    fn num_or(&self, name: &str, default: f64) -> Result<f64, CrsError> {
        Ok(self.num(name)?.unwrap_or(default))
    }

    fn required(&self, name: &str) -> Result<f64, CrsError> {
        self.num(name)?
            .ok_or_else(|| bad(name, "is required for this projection".into()))
    }
}

fn bad(name: &str, reason: String) -> CrsError {
    CrsError::BadParameter {
        name: name.to_string(),
        reason,
    }
}

impl Crs {
    /// Parses a PROJ.4 string (as in [`crate::Grid::projection`]).
    pub fn from_proj4(proj: &str) -> Result<Self, CrsError> {
        let p = Params::parse(proj);
        let name = p
            .text("proj")
            .ok_or_else(|| bad("proj", "is missing".into()))?;
        if let Some(u) = p.text("units") {
            if u != "m" {
                return Err(bad("units", format!("{u:?}: only metres are supported")));
            }
        }
        if p.text("to_meter").is_some() {
            return Err(bad("to_meter", "only metres are supported".into()));
        }
        let lat0 = p.num_or("lat_0", 0.0)?;
        let lon0 = p.num_or("lon_0", 0.0)?;
        let k0 = match p.num("k_0")? {
            Some(k) => k,
            None => p.num_or("k", 1.0)?,
        };
        let method = match name {
            "longlat" | "latlong" | "lonlat" | "latlon" => Method::LongLat,
            "aeqd" => Method::AzimuthalEquidistant { lat0, lon0 },
            "laea" => Method::LambertAzimuthalEqualArea { lat0, lon0 },
            "aea" => {
                let lat1 = p.required("lat_1")?;
                Method::AlbersEqualArea {
                    lat1,
                    lat2: p.num_or("lat_2", lat1)?,
                    lat0,
                    lon0,
                }
            }
            "lcc" => {
                let lat1 = p.required("lat_1")?;
                if k0 != 1.0 {
                    return Err(bad(
                        "k_0",
                        "lcc is exported with two standard parallels and no scale factor".into(),
                    ));
                }
                Method::LambertConformalConic {
                    lat1,
                    lat2: p.num_or("lat_2", lat1)?,
                    lat0: p.num_or("lat_0", lat1)?,
                    lon0,
                }
            }
            "stere" => {
                if (lat0.abs() - 90.0).abs() > 1e-9 {
                    return Err(bad(
                        "lat_0",
                        format!("{lat0}: only polar stereographic (lat_0 = ±90) is supported"),
                    ));
                }
                Method::PolarStereographic {
                    north: lat0 > 0.0,
                    lat_ts: p.num("lat_ts")?,
                    lon0,
                    k0,
                }
            }
            "somerc" => Method::SwissObliqueMercator { lat0, lon0, k0 },
            other => return Err(CrsError::Unsupported(other.to_string())),
        };
        let (ellipsoid, wgs84_datum) = ellipsoid_of(&p)?;
        let towgs84 = match p.text("towgs84") {
            None => None,
            Some(v) => {
                let vals: Vec<f64> = v
                    .split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("towgs84", format!("{v:?} is not a list of numbers")))?;
                if vals.len() != 3 && vals.len() != 7 {
                    return Err(bad(
                        "towgs84",
                        format!("needs 3 or 7 values, got {}", vals.len()),
                    ));
                }
                Some(vals)
            }
        };
        Ok(Crs {
            method,
            false_easting_m: p.num_or("x_0", 0.0)?,
            false_northing_m: p.num_or("y_0", 0.0)?,
            ellipsoid,
            wgs84_datum,
            towgs84,
        })
    }

    fn is_geographic(&self) -> bool {
        self.method == Method::LongLat
    }

    /// The GeoTIFF 1.1 GeoKey directory of this CRS, for a raster whose
    /// georeferencing tags give the outer corner of its first cell
    /// (`PixelIsArea`).
    pub fn geokeys(&self) -> GeoKeyDirectory {
        let mut dir = GeoKeyDirectory::new();
        for (id, value) in self.geokey_list() {
            dir.set(id, value);
        }
        dir
    }

    fn geokey_list(&self) -> Vec<(u16, GeoKeyValue)> {
        use GeoKeyValue::{Ascii, Double, Short};
        let mut k = vec![
            (
                keys::GT_MODEL_TYPE,
                Short(if self.is_geographic() { 2 } else { 1 }),
            ),
            (keys::GT_RASTER_TYPE, Short(1)),
            (keys::GT_CITATION, Ascii(self.name())),
        ];
        if self.wgs84_datum && self.towgs84.is_none() {
            k.push((keys::GEOGRAPHIC_TYPE, Short(4326)));
        } else {
            let e = &self.ellipsoid;
            k.push((keys::GEOGRAPHIC_TYPE, Short(USER_DEFINED)));
            k.push((keys::GEOG_CITATION, Ascii(self.geographic_name())));
            k.push((keys::GEOG_GEODETIC_DATUM, Short(USER_DEFINED)));
            k.push((keys::GEOG_PRIME_MERIDIAN, Short(8901)));
            k.push((keys::GEOG_ANGULAR_UNITS, Short(9102)));
            match e.epsg {
                Some(code) => k.push((keys::GEOG_ELLIPSOID, Short(code))),
                None => {
                    k.push((keys::GEOG_ELLIPSOID, Short(USER_DEFINED)));
                    k.push((keys::GEOG_SEMI_MAJOR_AXIS, Double(vec![e.a_m])));
                    k.push((keys::GEOG_SEMI_MINOR_AXIS, Double(vec![e.b_m()])));
                }
            }
            if let Some(t) = &self.towgs84 {
                k.push((keys::GEOG_TOWGS84, Double(t.clone())));
            }
        }
        if self.is_geographic() {
            return k;
        }
        k.push((keys::PROJECTED_CS_TYPE, Short(USER_DEFINED)));
        k.push((keys::PROJ_CITATION, Ascii(self.name())));
        k.push((keys::PROJECTION, Short(USER_DEFINED)));
        k.push((keys::PROJ_LINEAR_UNITS, Short(9001)));
        let (fe, fnorth) = (self.false_easting_m, self.false_northing_m);
        use keys::*;
        let (ct, params): (u16, Vec<(u16, f64)>) = match self.method {
            Method::LongLat => return k,
            Method::AzimuthalEquidistant { lat0, lon0 } => (
                CT_AZIMUTHAL_EQUIDISTANT,
                vec![(PROJ_CENTER_LAT, lat0), (PROJ_CENTER_LONG, lon0)],
            ),
            Method::LambertAzimuthalEqualArea { lat0, lon0 } => (
                CT_LAMBERT_AZIM_EQUAL_AREA,
                vec![(PROJ_CENTER_LAT, lat0), (PROJ_CENTER_LONG, lon0)],
            ),
            Method::AlbersEqualArea {
                lat1,
                lat2,
                lat0,
                lon0,
            } => (
                CT_ALBERS_EQUAL_AREA,
                vec![
                    (PROJ_STD_PARALLEL1, lat1),
                    (PROJ_STD_PARALLEL2, lat2),
                    (PROJ_NAT_ORIGIN_LAT, lat0),
                    (PROJ_NAT_ORIGIN_LONG, lon0),
                ],
            ),
            // The false origin's easting and northing replace the plain ones.
            Method::LambertConformalConic {
                lat1,
                lat2,
                lat0,
                lon0,
            } => {
                k.push((PROJ_COORD_TRANS, Short(CT_LAMBERT_CONF_CONIC_2SP)));
                for (id, v) in [
                    (PROJ_STD_PARALLEL1, lat1),
                    (PROJ_STD_PARALLEL2, lat2),
                    (PROJ_FALSE_ORIGIN_LAT, lat0),
                    (PROJ_FALSE_ORIGIN_LONG, lon0),
                    (PROJ_FALSE_ORIGIN_EASTING, fe),
                    (PROJ_FALSE_ORIGIN_NORTHING, fnorth),
                ] {
                    k.push((id, Double(vec![v])));
                }
                return k;
            }
            Method::PolarStereographic {
                north,
                lat_ts,
                lon0,
                k0,
            } => (
                CT_POLAR_STEREOGRAPHIC,
                vec![
                    (
                        PROJ_NAT_ORIGIN_LAT,
                        lat_ts.unwrap_or(if north { 90.0 } else { -90.0 }),
                    ),
                    (PROJ_STRAIGHT_VERT_POLE_LONG, lon0),
                    (
                        PROJ_SCALE_AT_NAT_ORIGIN,
                        if lat_ts.is_some() { 1.0 } else { k0 },
                    ),
                ],
            ),
            Method::SwissObliqueMercator { lat0, lon0, k0 } => (
                CT_HOTINE_OBLIQUE_MERCATOR_AZIMUTH_CENTER,
                vec![
                    (PROJ_CENTER_LAT, lat0),
                    (PROJ_CENTER_LONG, lon0),
                    (PROJ_AZIMUTH_ANGLE, 90.0),
                    (PROJ_RECTIFIED_GRID_ANGLE, 90.0),
                    (PROJ_SCALE_AT_CENTER, k0),
                ],
            ),
        };
        k.push((PROJ_COORD_TRANS, Short(ct)));
        for (id, v) in params
            .into_iter()
            .chain([(PROJ_FALSE_EASTING, fe), (PROJ_FALSE_NORTHING, fnorth)])
        {
            k.push((id, Double(vec![v])));
        }
        k
    }

    /// A short name for citations: the PROJ projection and its centre.
    pub fn name(&self) -> String {
        let what = match &self.method {
            Method::LongLat => return self.geographic_name(),
            Method::AzimuthalEquidistant { .. } => "Azimuthal Equidistant",
            Method::LambertAzimuthalEqualArea { .. } => "Lambert Azimuthal Equal Area",
            Method::AlbersEqualArea { .. } => "Albers Equal Area",
            Method::LambertConformalConic { .. } => "Lambert Conformal Conic",
            Method::PolarStereographic { .. } => "Polar Stereographic",
            Method::SwissObliqueMercator { .. } => "Swiss Oblique Mercator",
        };
        format!("Raincast grid ({what}, {})", self.ellipsoid.name)
    }

    fn geographic_name(&self) -> String {
        if self.wgs84_datum && self.towgs84.is_none() {
            "WGS 84".into()
        } else {
            format!("Unknown datum based on {}", self.ellipsoid.name)
        }
    }

    /// OGC WKT 1 in GDAL's dialect (what GDAL writes into GeoTIFF citations
    /// and netCDF `crs_wkt`).
    pub fn wkt(&self) -> String {
        let e = &self.ellipsoid;
        let mut datum = if self.wgs84_datum && self.towgs84.is_none() {
            format!(
                "DATUM[\"WGS_1984\",SPHEROID[\"WGS 84\",{},{}],AUTHORITY[\"EPSG\",\"6326\"]]",
                num(e.a_m),
                num(e.inv_flattening)
            )
        } else {
            format!(
                "DATUM[\"unknown\",SPHEROID[\"{}\",{},{}]",
                e.name,
                num(e.a_m),
                num(e.inv_flattening)
            )
        };
        if !(self.wgs84_datum && self.towgs84.is_none()) {
            if let Some(t) = &self.towgs84 {
                let mut seven = t.clone();
                seven.resize(7, 0.0);
                let list: Vec<String> = seven.iter().map(|v| num(*v)).collect();
                let _ = write!(datum, ",TOWGS84[{}]", list.join(","));
            }
            datum.push(']');
        }
        let geog = format!(
            "GEOGCS[\"{}\",{datum},PRIMEM[\"Greenwich\",0],UNIT[\"degree\",0.0174532925199433],AXIS[\"Latitude\",NORTH],AXIS[\"Longitude\",EAST]]",
            self.geographic_name()
        );
        let (projection, params): (&str, Vec<(&str, f64)>) = match self.method {
            Method::LongLat => return geog,
            Method::AzimuthalEquidistant { lat0, lon0 } => (
                "Azimuthal_Equidistant",
                vec![("latitude_of_center", lat0), ("longitude_of_center", lon0)],
            ),
            Method::LambertAzimuthalEqualArea { lat0, lon0 } => (
                "Lambert_Azimuthal_Equal_Area",
                vec![("latitude_of_center", lat0), ("longitude_of_center", lon0)],
            ),
            Method::AlbersEqualArea {
                lat1,
                lat2,
                lat0,
                lon0,
            } => (
                "Albers_Conic_Equal_Area",
                vec![
                    ("standard_parallel_1", lat1),
                    ("standard_parallel_2", lat2),
                    ("latitude_of_center", lat0),
                    ("longitude_of_center", lon0),
                ],
            ),
            Method::LambertConformalConic {
                lat1,
                lat2,
                lat0,
                lon0,
            } => (
                "Lambert_Conformal_Conic_2SP",
                vec![
                    ("standard_parallel_1", lat1),
                    ("standard_parallel_2", lat2),
                    ("latitude_of_origin", lat0),
                    ("central_meridian", lon0),
                ],
            ),
            Method::PolarStereographic {
                north,
                lat_ts,
                lon0,
                k0,
            } => (
                "Polar_Stereographic",
                vec![
                    (
                        "latitude_of_origin",
                        lat_ts.unwrap_or(if north { 90.0 } else { -90.0 }),
                    ),
                    ("central_meridian", lon0),
                    ("scale_factor", if lat_ts.is_some() { 1.0 } else { k0 }),
                ],
            ),
            Method::SwissObliqueMercator { lat0, lon0, k0 } => (
                "Hotine_Oblique_Mercator_Azimuth_Center",
                vec![
                    ("latitude_of_center", lat0),
                    ("longitude_of_center", lon0),
                    ("azimuth", 90.0),
                    ("rectified_grid_angle", 90.0),
                    ("scale_factor", k0),
                ],
            ),
        };
        let mut out = format!(
            "PROJCS[\"{}\",{geog},PROJECTION[\"{projection}\"]",
            self.name()
        );
        for (n, v) in params.iter().chain(&[
            ("false_easting", self.false_easting_m),
            ("false_northing", self.false_northing_m),
        ]) {
            let _ = write!(out, ",PARAMETER[\"{n}\",{}]", num(*v));
        }
        out.push_str(",UNIT[\"metre\",1],AXIS[\"Easting\",EAST],AXIS[\"Northing\",NORTH]]");
        out
    }

    /// The attributes of a CF-1.8 grid mapping variable (Appendix F), with
    /// `crs_wkt` ([`Crs::wkt`]) and `proj4_params` (the PROJ string).
    pub fn cf_grid_mapping(&self, proj4: &str) -> Vec<(&'static str, CfValue)> {
        use CfValue::{Number, Numbers, Text};
        let mut a: Vec<(&'static str, CfValue)> = Vec::new();
        match self.method {
            Method::LongLat => {
                a.push(("grid_mapping_name", Text("latitude_longitude".into())));
            }
            Method::AzimuthalEquidistant { lat0, lon0 }
            | Method::LambertAzimuthalEqualArea { lat0, lon0 } => {
                let name = if matches!(self.method, Method::AzimuthalEquidistant { .. }) {
                    "azimuthal_equidistant"
                } else {
                    "lambert_azimuthal_equal_area"
                };
                a.push(("grid_mapping_name", Text(name.into())));
                a.push(("longitude_of_projection_origin", Number(lon0)));
                a.push(("latitude_of_projection_origin", Number(lat0)));
            }
            Method::AlbersEqualArea {
                lat1,
                lat2,
                lat0,
                lon0,
            }
            | Method::LambertConformalConic {
                lat1,
                lat2,
                lat0,
                lon0,
            } => {
                let name = if matches!(self.method, Method::AlbersEqualArea { .. }) {
                    "albers_conical_equal_area"
                } else {
                    "lambert_conformal_conic"
                };
                a.push(("grid_mapping_name", Text(name.into())));
                a.push(("standard_parallel", Numbers(vec![lat1, lat2])));
                a.push(("longitude_of_central_meridian", Number(lon0)));
                a.push(("latitude_of_projection_origin", Number(lat0)));
            }
            Method::PolarStereographic {
                north,
                lat_ts,
                lon0,
                k0,
            } => {
                a.push(("grid_mapping_name", Text("polar_stereographic".into())));
                a.push(("straight_vertical_longitude_from_pole", Number(lon0)));
                a.push((
                    "latitude_of_projection_origin",
                    Number(if north { 90.0 } else { -90.0 }),
                ));
                match lat_ts {
                    Some(t) => a.push(("standard_parallel", Number(t))),
                    None => a.push(("scale_factor_at_projection_origin", Number(k0))),
                }
            }
            Method::SwissObliqueMercator { lat0, lon0, k0 } => {
                a.push(("grid_mapping_name", Text("oblique_mercator".into())));
                a.push(("azimuth_of_central_line", Number(90.0)));
                a.push(("latitude_of_projection_origin", Number(lat0)));
                a.push(("longitude_of_projection_origin", Number(lon0)));
                a.push(("scale_factor_at_projection_origin", Number(k0)));
            }
        }
        if !self.is_geographic() {
            a.push(("false_easting", Number(self.false_easting_m)));
            a.push(("false_northing", Number(self.false_northing_m)));
        }
        let e = &self.ellipsoid;
        if e.is_sphere() {
            a.push(("earth_radius", Number(e.a_m)));
        } else {
            a.push(("semi_major_axis", Number(e.a_m)));
            a.push(("inverse_flattening", Number(e.inv_flattening)));
        }
        a.push(("longitude_of_prime_meridian", Number(0.0)));
        if let Some(t) = &self.towgs84 {
            let mut seven = t.clone();
            seven.resize(7, 0.0);
            a.push(("towgs84", Numbers(seven)));
        }
        a.push(("crs_wkt", Text(self.wkt())));
        a.push(("proj4_params", Text(proj4.trim().to_string())));
        a
    }
}

/// Shortest round-tripping decimal of a number (WKT and citations).
fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn ellipsoid_of(p: &Params) -> Result<(Ellipsoid, bool), CrsError> {
    let named = |n: &str| -> Option<Ellipsoid> {
        ELLIPSOIDS.iter().find(|e| e.0 == n).map(|e| Ellipsoid {
            name: e.2.to_string(),
            epsg: Some(e.1),
            a_m: e.3,
            inv_flattening: e.4,
        })
    };
    let with_shape = |a: f64, default_rf: f64| -> Result<f64, CrsError> {
        if let Some(rf) = p.num("rf")? {
            return Ok(rf);
        }
        if let Some(b) = p.num("b")? {
            return Ok(if (a - b).abs() < 1e-9 {
                0.0
            } else {
                a / (a - b)
            });
        }
        for unsupported in ["f", "es", "e"] {
            if p.text(unsupported).is_some() {
                return Err(bad(unsupported, "give the ellipsoid as +rf or +b".into()));
            }
        }
        Ok(default_rf)
    };
    let custom = |a: f64, rf: f64| Ellipsoid {
        name: if rf == 0.0 {
            format!("Sphere {}", num(a))
        } else {
            format!("Ellipsoid {} {}", num(a), num(rf))
        },
        epsg: None,
        a_m: a,
        inv_flattening: rf,
    };
    if let Some(r) = p.num("R")? {
        return Ok((custom(r, 0.0), false));
    }
    let wgs84_datum = match p.text("datum") {
        None => false,
        Some("WGS84") => true,
        Some(other) => {
            return Err(bad(
                "datum",
                format!("{other:?}: only WGS84 is named; give +ellps and +towgs84"),
            ))
        }
    };
    let base = match p.text("ellps") {
        Some(n) => Some(named(n).ok_or_else(|| bad("ellps", format!("{n:?} is not known")))?),
        None if wgs84_datum => named("WGS84"),
        None => None,
    };
    let e = match (base, p.num("a")?) {
        (Some(e), None) if p.text("rf").is_none() && p.text("b").is_none() => e,
        (Some(e), a) => {
            let a = a.unwrap_or(e.a_m);
            custom(a, with_shape(a, e.inv_flattening)?)
        }
        (None, Some(a)) => custom(a, with_shape(a, 0.0)?),
        (None, None) => named("WGS84").ok_or_else(|| bad("ellps", "WGS84 missing".into()))?,
    };
    Ok((e, wgs84_datum))
}

/// A CF attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum CfValue {
    Text(String),
    Number(f64),
    Numbers(Vec<f64>),
}

/// "User-defined" in GeoTIFF code spaces.
const USER_DEFINED: u16 = 32767;
// Coordinate transformation codes (GeoTIFF 1.1, Annex C).
const CT_LAMBERT_CONF_CONIC_2SP: u16 = 8;
const CT_LAMBERT_AZIM_EQUAL_AREA: u16 = 10;
const CT_ALBERS_EQUAL_AREA: u16 = 11;
const CT_AZIMUTHAL_EQUIDISTANT: u16 = 12;
const CT_POLAR_STEREOGRAPHIC: u16 = 15;
const CT_HOTINE_OBLIQUE_MERCATOR_AZIMUTH_CENTER: u16 = 9815;

/// GeoKey ids (GeoTIFF 1.1, OGC 19-008r4, section 7).
pub mod keys {
    pub const GT_MODEL_TYPE: u16 = 1024;
    pub const GT_RASTER_TYPE: u16 = 1025;
    pub const GT_CITATION: u16 = 1026;
    pub const GEOGRAPHIC_TYPE: u16 = 2048;
    pub const GEOG_CITATION: u16 = 2049;
    pub const GEOG_GEODETIC_DATUM: u16 = 2050;
    pub const GEOG_PRIME_MERIDIAN: u16 = 2051;
    pub const GEOG_ANGULAR_UNITS: u16 = 2054;
    pub const GEOG_ELLIPSOID: u16 = 2056;
    pub const GEOG_SEMI_MAJOR_AXIS: u16 = 2057;
    pub const GEOG_SEMI_MINOR_AXIS: u16 = 2058;
    pub const GEOG_TOWGS84: u16 = 2062;
    pub const PROJECTED_CS_TYPE: u16 = 3072;
    pub const PROJ_CITATION: u16 = 3073;
    pub const PROJECTION: u16 = 3074;
    pub const PROJ_COORD_TRANS: u16 = 3075;
    pub const PROJ_LINEAR_UNITS: u16 = 3076;
    pub const PROJ_STD_PARALLEL1: u16 = 3078;
    pub const PROJ_STD_PARALLEL2: u16 = 3079;
    pub const PROJ_NAT_ORIGIN_LONG: u16 = 3080;
    pub const PROJ_NAT_ORIGIN_LAT: u16 = 3081;
    pub const PROJ_FALSE_EASTING: u16 = 3082;
    pub const PROJ_FALSE_NORTHING: u16 = 3083;
    pub const PROJ_FALSE_ORIGIN_LONG: u16 = 3084;
    pub const PROJ_FALSE_ORIGIN_LAT: u16 = 3085;
    pub const PROJ_FALSE_ORIGIN_EASTING: u16 = 3086;
    pub const PROJ_FALSE_ORIGIN_NORTHING: u16 = 3087;
    pub const PROJ_CENTER_LONG: u16 = 3088;
    pub const PROJ_CENTER_LAT: u16 = 3089;
    pub const PROJ_SCALE_AT_NAT_ORIGIN: u16 = 3092;
    pub const PROJ_SCALE_AT_CENTER: u16 = 3093;
    pub const PROJ_AZIMUTH_ANGLE: u16 = 3094;
    pub const PROJ_STRAIGHT_VERT_POLE_LONG: u16 = 3095;
    pub const PROJ_RECTIFIED_GRID_ANGLE: u16 = 3096;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_product_projection_parses() {
        for proj in [
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            "+proj=aea +lat_1=-18 +lat_2=-36 +lat_0=-37.852 +lon_0=144.752 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs",
            "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84",
            "+proj=lcc +lat_1=49.83333333333334 +lat_2=51.16666666666666 +lat_0=50.797815 +lon_0=4.359215833333333 +x_0=649328 +y_0=665262 +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs",
            "+proj=stere +lon_0=25 +lat_0=90 +lat_ts=60 +a=6371288 +x_0=380886.310 +y_0=3395677.920 +no_defs",
            crate::decode::mch_gif::CCS4_PROJ,
        ] {
            let crs = Crs::from_proj4(proj).unwrap_or_else(|e| panic!("{proj}: {e}"));
            assert!(crs.geokeys().get_short(keys::PROJ_COORD_TRANS).is_some());
            assert!(crs.wkt().starts_with("PROJCS["), "{}", crs.wkt());
        }
    }

    #[test]
    fn ellipsoids_follow_proj_precedence() {
        let sphere = Crs::from_proj4("+proj=stere +lat_0=90 +a=6371288").unwrap();
        assert_eq!(sphere.ellipsoid.inv_flattening, 0.0);
        assert_eq!(sphere.ellipsoid.a_m, 6_371_288.0);
        let grs = Crs::from_proj4("+proj=aeqd +ellps=GRS80").unwrap();
        assert_eq!(grs.ellipsoid.epsg, Some(7019));
        let b = Crs::from_proj4("+proj=aeqd +a=6378137 +b=6356752.314245").unwrap();
        assert!((b.ellipsoid.inv_flattening - 298.257_223_563).abs() < 1e-3);
        let default = Crs::from_proj4("+proj=aeqd +lat_0=1").unwrap();
        assert_eq!(default.ellipsoid.epsg, Some(7030));
        assert!(
            Crs::from_proj4("+proj=aeqd +datum=WGS84")
                .unwrap()
                .wgs84_datum
        );
    }

    #[test]
    fn unsupported_input_names_the_parameter() {
        let e = Crs::from_proj4("+proj=tmerc +lat_0=1").unwrap_err();
        assert!(e.to_string().contains("tmerc"), "{e}");
        let e = Crs::from_proj4("+proj=aeqd +units=km").unwrap_err();
        assert!(e.to_string().contains("+units"), "{e}");
        let e = Crs::from_proj4("+proj=stere +lat_0=50").unwrap_err();
        assert!(e.to_string().contains("+lat_0"), "{e}");
        let e = Crs::from_proj4("+proj=aea +lat_0=1").unwrap_err();
        assert!(e.to_string().contains("+lat_1"), "{e}");
        let e = Crs::from_proj4("+proj=aeqd +towgs84=1,2").unwrap_err();
        assert!(e.to_string().contains("+towgs84"), "{e}");
    }

    #[test]
    fn wkt_numbers_round_trip() {
        assert_eq!(num(90.0), "90");
        assert_eq!(num(-37.852), "-37.852");
        assert_eq!(num(298.257_223_563), "298.257223563");
    }
}
