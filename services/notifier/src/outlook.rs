//! What the radar says about one place: rain now and per nowcast lead,
//! summarised over the disk around the place.
//!
//! The event logic ([`crate::events`]) only sees an [`Outlook`]: numbers, no
//! fields. This module turns fields into outlooks:
//! * [`DiskMask`] lists the grid cells whose centres lie within the place's
//!   radius (great-circle distance, so it works for metric and lon/lat grids);
//! * [`area_rain`] summarises one rain field (mm/h, `(rows, cols)`, row 0 north,
//!   NaN = no data) over that disk.
//!
//! **Area rate.** A single cell is too noisy to decide "it rains at the place"
//! (one speckle would post an alert) and the mean is too strict (a shower
//! covering a quarter of the disk would not count). The area rate is a robust
//! maximum: the `k`-th largest finite value in the disk, with
//! `k = max(3, 2 % of the disk's cells)` (1 for disks of fewer than 3 cells).
//! So at least `k` cells must reach a rate for the area to reach it.
//!
//! **No data.** When fewer than half the disk's cells have data, the area is
//! unknown (`None`): the event logic then holds its state instead of
//! concluding "dry".

use chrono::{DateTime, Utc};
use ndarray::ArrayView2;
use raincast_algorithms::Grid;
use serde::{Deserialize, Serialize};

/// Mean Earth radius used for distances, metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Errors raised when a place cannot be mapped onto a grid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutlookError {
    /// The place's disk does not touch the grid.
    #[error("place at ({lat}, {lon}) is outside the radar grid")]
    OutsideGrid { lat: f64, lon: f64 },
    /// The projection could not map a point.
    #[error("cannot map place onto the grid: {reason}")]
    Projection { reason: String },
    /// A field's shape differs from the grid's.
    #[error("field shape {got:?} differs from grid shape {want:?}")]
    Shape {
        got: (usize, usize),
        want: (usize, usize),
    },
}

/// Great-circle distance in metres between two WGS84 points (degrees).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// The point at `distance_m` from `(lat, lon)` along the initial bearing (degrees).
fn destination(lat: f64, lon: f64, bearing_deg: f64, distance_m: f64) -> (f64, f64) {
    let d = distance_m / EARTH_RADIUS_M;
    let (p1, l1, b) = (lat.to_radians(), lon.to_radians(), bearing_deg.to_radians());
    let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * b.cos()).asin();
    let l2 = l1 + (b.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
    (p2.to_degrees(), l2.to_degrees())
}

/// The grid cells of a place's disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskMask {
    /// `(row, col)` of every cell whose centre lies within the radius.
    pub cells: Vec<(usize, usize)>,
    /// Grid shape the mask was built for.
    pub shape: (usize, usize),
    /// Fractional `(row, col)` of the place itself (may lie off the grid
    /// when only part of the disk overlaps it).
    pub center: (f64, f64),
    /// Radius, km.
    pub radius_km: f64,
}

impl DiskMask {
    /// Cells of `grid` within `radius_km` of `(lat, lon)`. The place itself
    /// may lie off the grid as long as part of the disk overlaps it; at least
    /// one cell must lie inside the disk.
    pub fn new(grid: &Grid, lat: f64, lon: f64, radius_km: f64) -> Result<Self, OutlookError> {
        let proj_err = |e: raincast_algorithms::GridError| OutlookError::Projection {
            reason: e.to_string(),
        };
        let center = grid.lonlat_to_rowcol(lon, lat).map_err(proj_err)?;
        let radius_m = radius_km * 1000.0;
        // Bounding box in (row, col): the centre and the four points one radius
        // away to the N, E, S and W, plus a cell of margin.
        let (mut r0, mut r1, mut c0, mut c1) = (center.0, center.0, center.1, center.1);
        for bearing in [0.0, 90.0, 180.0, 270.0, 45.0, 135.0, 225.0, 315.0] {
            let (plat, plon) = destination(lat, lon, bearing, radius_m);
            let (r, c) = grid.lonlat_to_rowcol(plon, plat).map_err(proj_err)?;
            r0 = r0.min(r);
            r1 = r1.max(r);
            c0 = c0.min(c);
            c1 = c1.max(c);
        }
        let (rows, cols) = grid.shape();
        let clamp = |v: f64, n: usize| -> usize { v.floor().clamp(0.0, n as f64) as usize };
        let (r0, r1) = (clamp(r0 - 1.0, rows), clamp(r1 + 2.0, rows));
        let (c0, c1) = (clamp(c0 - 1.0, cols), clamp(c1 + 2.0, cols));
        let mut cells = Vec::new();
        for r in r0..r1 {
            for c in c0..c1 {
                let (clon, clat) = grid
                    .rowcol_to_lonlat(r as f64 + 0.5, c as f64 + 0.5)
                    .map_err(proj_err)?;
                if distance_m(lat, lon, clat, clon) <= radius_m {
                    cells.push((r, c));
                }
            }
        }
        if cells.is_empty() {
            // A disk smaller than a cell: take the cell under the place, if any.
            match grid.cell_at_lonlat(lon, lat) {
                Some(cell) => cells.push(cell),
                None => return Err(OutlookError::OutsideGrid { lat, lon }),
            }
        }
        Ok(Self {
            cells,
            shape: (rows, cols),
            center,
            radius_km,
        })
    }
}

/// Rain over a place's disk at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AreaRain {
    /// Area rate, mm/h: the robust maximum described in the module docs.
    pub rate_mm_h: f32,
    /// Largest finite cell value in the disk, mm/h.
    pub max_mm_h: f32,
    /// Fraction (0–1) of the disk's cells with data whose rate is ≥ the
    /// place's rain threshold.
    pub wet_fraction: f32,
    /// Fraction (0–1) of the disk's cells with data.
    pub valid_fraction: f32,
}

/// Summarises `field` (mm/h, NaN = no data) over `mask`. `None` when fewer than
/// half the cells have data. `rain_mm_h` is the threshold for `wet_fraction`.
pub fn area_rain(
    field: ArrayView2<'_, f32>,
    mask: &DiskMask,
    rain_mm_h: f32,
) -> Result<Option<AreaRain>, OutlookError> {
    if field.dim() != mask.shape {
        return Err(OutlookError::Shape {
            got: field.dim(),
            want: mask.shape,
        });
    }
    let n = mask.cells.len();
    let mut values: Vec<f32> = mask
        .cells
        .iter()
        .map(|&(r, c)| field[[r, c]])
        .filter(|v| v.is_finite())
        .collect();
    if n == 0 || values.len() * 2 < n {
        return Ok(None);
    }
    values.sort_by(|a, b| b.total_cmp(a));
    let k = if n < 3 {
        1
    } else {
        ((n as f64 * 0.02).ceil() as usize).max(3)
    };
    let rate = values.get(k - 1).copied().unwrap_or(0.0).max(0.0);
    let wet = values.iter().filter(|v| **v >= rain_mm_h).count();
    Ok(Some(AreaRain {
        rate_mm_h: rate,
        max_mm_h: values[0].max(0.0),
        wet_fraction: wet as f32 / values.len() as f32,
        valid_fraction: values.len() as f32 / n as f32,
    }))
}

/// Largest finite probability (0–1) in the disk, or `None` when the disk has no data.
pub fn area_probability(
    prob: ArrayView2<'_, f32>,
    mask: &DiskMask,
) -> Result<Option<f32>, OutlookError> {
    if prob.dim() != mask.shape {
        return Err(OutlookError::Shape {
            got: prob.dim(),
            want: mask.shape,
        });
    }
    Ok(mask
        .cells
        .iter()
        .map(|&(r, c)| prob[[r, c]])
        .filter(|v| v.is_finite())
        .fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.max(v)))))
}

/// Nowcast rain over the disk at one lead time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeadRain {
    /// Minutes after the scan time.
    pub lead_min: u32,
    /// Area rate, mm/h (see [`AreaRain::rate_mm_h`]); `None` when unknown
    /// (the rain there comes from outside the domain or from no-data).
    pub rate_mm_h: Option<f32>,
    /// Probability (0–1) of rain ≥ the place's threshold somewhere in the
    /// disk, when the nowcast provides one.
    pub probability: Option<f32>,
}

/// Everything the event logic needs about one place and one radar scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outlook {
    /// Radar id (part of event keys).
    pub radar: String,
    /// Human name of the radar, for texts.
    pub radar_name: String,
    /// Time of the latest observed scan (UTC): the nowcast's base time.
    pub scan_time: DateTime<Utc>,
    /// Observed rain over the disk at `scan_time`; `None` = no data.
    pub now: Option<AreaRain>,
    /// Nowcast per lead, ascending lead times.
    pub leads: Vec<LeadRain>,
}

/// One nowcast lead as fields: rate (mm/h) and, optionally, probability (0–1).
#[derive(Debug, Clone, Copy)]
pub struct LeadField<'a> {
    /// Minutes after the base time.
    pub lead_min: u32,
    /// Rain rate, mm/h, NaN = unknown.
    pub rate_mm_h: ArrayView2<'a, f32>,
    /// Probability of rain ≥ threshold, 0–1, NaN = unknown.
    pub probability: Option<ArrayView2<'a, f32>>,
}

/// Builds an [`Outlook`] from the observed field at `scan_time` and the
/// nowcast's lead fields, all on the grid `mask` was built for.
pub fn build_outlook(
    radar: &str,
    radar_name: &str,
    scan_time: DateTime<Utc>,
    mask: &DiskMask,
    rain_mm_h: f32,
    observed: ArrayView2<'_, f32>,
    leads: &[LeadField<'_>],
) -> Result<Outlook, OutlookError> {
    let now = area_rain(observed, mask, rain_mm_h)?;
    let mut out = Vec::with_capacity(leads.len());
    for lead in leads {
        let rate = area_rain(lead.rate_mm_h, mask, rain_mm_h)?.map(|a| a.rate_mm_h);
        let probability = match lead.probability {
            Some(p) => area_probability(p, mask)?,
            None => None,
        };
        out.push(LeadRain {
            lead_min: lead.lead_min,
            rate_mm_h: rate,
            probability,
        });
    }
    out.sort_by_key(|l| l.lead_min);
    Ok(Outlook {
        radar: radar.to_string(),
        radar_name: radar_name.to_string(),
        scan_time,
        now,
        leads: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// 1 km cells, 200 × 200, an azimuthal equidistant grid centred on (50N, 4E).
    fn grid() -> Grid {
        Grid::new(
            "+proj=aeqd +lat_0=50 +lon_0=4 +ellps=WGS84 +units=m",
            200,
            200,
            1000.0,
            1000.0,
            -100_000.0,
            100_000.0,
        )
        .expect("grid")
    }

    #[test]
    fn disk_has_the_expected_area() {
        let g = grid();
        let m = DiskMask::new(&g, 50.0, 4.0, 10.0).expect("mask");
        // π r² = 314 cells of 1 km²; the discrete count is close.
        assert!((290..=340).contains(&m.cells.len()), "{}", m.cells.len());
        assert!((m.center.0 - 100.0).abs() < 0.01 && (m.center.1 - 100.0).abs() < 0.01);
        for &(r, c) in &m.cells {
            let d = ((r as f64 + 0.5 - 100.0).powi(2) + (c as f64 + 0.5 - 100.0).powi(2)).sqrt();
            assert!(d <= 10.1, "cell {r},{c} at {d} km");
        }
    }

    #[test]
    fn disk_off_the_grid_is_an_error_and_edge_disks_are_clipped() {
        let g = grid();
        assert!(matches!(
            DiskMask::new(&g, 60.0, 4.0, 10.0),
            Err(OutlookError::OutsideGrid { .. })
        ));
        // Place just outside the west edge, disk overlapping the grid.
        let (lat, lon) = destination(50.0, 4.0, 270.0, 105_000.0);
        let m = DiskMask::new(&g, lat, lon, 10.0).expect("partial disk");
        assert!(!m.cells.is_empty() && m.cells.len() < 200);
        assert!(m.cells.iter().all(|&(_, c)| c < 6));
    }

    #[test]
    fn area_rate_ignores_a_speckle_but_sees_a_shower() {
        let g = grid();
        let m = DiskMask::new(&g, 50.0, 4.0, 10.0).expect("mask");
        let mut f = Array2::<f32>::zeros((200, 200));
        f[[100, 100]] = 30.0; // one speckle
        let a = area_rain(f.view(), &m, 0.5).expect("shape").expect("data");
        assert_eq!(a.rate_mm_h, 0.0);
        assert_eq!(a.max_mm_h, 30.0);
        // A 5 × 5 km shower of 4 mm/h at the disk's edge.
        for r in 92..97 {
            for c in 100..105 {
                f[[r, c]] = 4.0;
            }
        }
        let a = area_rain(f.view(), &m, 0.5).expect("shape").expect("data");
        assert_eq!(a.rate_mm_h, 4.0);
        assert!(
            a.wet_fraction > 0.07 && a.wet_fraction < 0.1,
            "{}",
            a.wet_fraction
        );
        assert_eq!(a.valid_fraction, 1.0);
    }

    #[test]
    fn mostly_no_data_is_unknown_not_dry() {
        let g = grid();
        let m = DiskMask::new(&g, 50.0, 4.0, 10.0).expect("mask");
        let mut f = Array2::<f32>::from_elem((200, 200), f32::NAN);
        assert_eq!(area_rain(f.view(), &m, 0.5).expect("shape"), None);
        for r in 0..200 {
            for c in 0..100 {
                f[[r, c]] = 0.0;
            }
        }
        // Half the disk has data (west half): known, dry.
        let a = area_rain(f.view(), &m, 0.5).expect("shape");
        assert!(a.is_some_and(|a| a.rate_mm_h == 0.0 && a.valid_fraction >= 0.5));
        let wrong = Array2::<f32>::zeros((10, 10));
        assert!(area_rain(wrong.view(), &m, 0.5).is_err());
    }

    #[test]
    fn builds_an_outlook_with_probabilities() {
        let g = grid();
        let m = DiskMask::new(&g, 50.0, 4.0, 10.0).expect("mask");
        let obs = Array2::<f32>::zeros((200, 200));
        let wet = Array2::<f32>::from_elem((200, 200), 2.0);
        let prob = Array2::<f32>::from_elem((200, 200), 0.8);
        let t = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let o = build_outlook(
            "r1",
            "Radar one",
            t,
            &m,
            0.5,
            obs.view(),
            &[
                LeadField {
                    lead_min: 20,
                    rate_mm_h: wet.view(),
                    probability: Some(prob.view()),
                },
                LeadField {
                    lead_min: 10,
                    rate_mm_h: obs.view(),
                    probability: None,
                },
            ],
        )
        .expect("outlook");
        assert_eq!(o.now.map(|a| a.rate_mm_h), Some(0.0));
        assert_eq!(o.leads.len(), 2);
        assert_eq!(o.leads[0].lead_min, 10);
        assert_eq!(o.leads[1].rate_mm_h, Some(2.0));
        assert_eq!(o.leads[1].probability, Some(0.8));
    }

    #[test]
    fn distances() {
        // One degree of latitude ≈ 111.2 km.
        let d = distance_m(50.0, 4.0, 51.0, 4.0);
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        let (lat, lon) = destination(50.0, 4.0, 90.0, 10_000.0);
        assert!((distance_m(50.0, 4.0, lat, lon) - 10_000.0).abs() < 1.0);
    }
}
