//! The frames behind a post's GIF: the last hour of observations plus the
//! nowcast of one radar, and the crop around a place.
//!
//! A continental grid is far too large for a post about one town, so the GIF
//! shows a square window around the place ([`crop_window`], default ±80 km).
//! Small windows are enlarged by an integer factor (nearest neighbour, each
//! cell becomes `k × k` cells of a finer grid with the same origin) so the
//! map is drawn at a legible size; the finer grid is an exact subdivision,
//! so markers and rings stay where they belong.

use crate::outlook::{distance_m, OutlookError};
use chrono::{DateTime, Utc};
use ndarray::{Array2, ArrayView2};
use raincast_algorithms::Grid;
use raincast_nowcast::{LatestNowcast, NowcastService, NowcastServiceError};
use std::sync::Arc;

/// One radar's frames: the observations before a nowcast (oldest first,
/// spaced at its lead step, by the nowcast service's frames builder) and the
/// nowcast itself, shared with the API (never copied).
#[derive(Debug, Clone)]
pub struct RadarFrames {
    /// Display name of the radar.
    pub radar_name: String,
    /// The nowcast: grid, issue time, leads, rate (mm/h) and probability fields.
    pub nowcast: Arc<LatestNowcast>,
    /// Observed rain rates, mm/h, `(rows, cols)`, NaN = no data, oldest
    /// first; the last is the nowcast's issue time.
    pub observed: Vec<(DateTime<Utc>, Array2<f32>)>,
}

impl RadarFrames {
    /// Radar id.
    pub fn radar(&self) -> &str {
        &self.nowcast.radar
    }

    /// Grid of every frame.
    pub fn grid(&self) -> &Grid {
        &self.nowcast.grid
    }

    /// Issue time of the nowcast: the latest observation (UTC).
    pub fn base_time(&self) -> DateTime<Utc> {
        self.nowcast.base_time
    }

    /// The frames of `nowcast`: its observations of the last `past_min`
    /// minutes through the nowcast service's frames builder (the scans the
    /// nowcast was built from are not decoded again).
    pub async fn load(
        nowcasts: &NowcastService,
        nowcast: Arc<LatestNowcast>,
        radar_name: &str,
        past_min: u32,
        now: DateTime<Utc>,
    ) -> Result<Self, NowcastServiceError> {
        let scans = nowcasts.past_scans(&nowcast, past_min, now).await?;
        let observed = nowcasts
            .observed_fields(&nowcast, &scans, now)
            .await?
            .into_iter()
            .map(|f| (f.time, f.rate_mm_h))
            .collect();
        Ok(Self {
            radar_name: radar_name.to_string(),
            nowcast,
            observed,
        })
    }
}

/// A rectangular window of a grid: rows `r0..r1`, columns `c0..c1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub r0: usize,
    /// One past the last row.
    pub r1: usize,
    /// First column.
    pub c0: usize,
    /// One past the last column.
    pub c1: usize,
}

impl Window {
    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.r1 - self.r0, self.c1 - self.c0)
    }
}

/// The window of `grid` covering ±`half_km` around `(lat, lon)`, clipped to
/// the grid. Errors when the window misses the grid entirely.
pub fn crop_window(grid: &Grid, lat: f64, lon: f64, half_km: f64) -> Result<Window, OutlookError> {
    let proj = |e: raincast_algorithms::GridError| OutlookError::Projection {
        reason: e.to_string(),
    };
    let (rc, cc) = grid.lonlat_to_rowcol(lon, lat).map_err(proj)?;
    // Cells per km near the place, measured along the grid axes.
    let (lon_e, lat_e) = grid.rowcol_to_lonlat(rc, cc + 1.0).map_err(proj)?;
    let (lon_s, lat_s) = grid.rowcol_to_lonlat(rc + 1.0, cc).map_err(proj)?;
    let km_per_col = (distance_m(lat, lon, lat_e, lon_e) / 1000.0).max(1e-6);
    let km_per_row = (distance_m(lat, lon, lat_s, lon_s) / 1000.0).max(1e-6);
    let (hr, hc) = (half_km / km_per_row, half_km / km_per_col);
    let clamp = |v: f64, n: usize| v.round().clamp(0.0, n as f64) as usize;
    let w = Window {
        r0: clamp(rc - hr, grid.rows),
        r1: clamp(rc + hr, grid.rows),
        c0: clamp(cc - hc, grid.cols),
        c1: clamp(cc + hc, grid.cols),
    };
    if w.r1 <= w.r0 || w.c1 <= w.c0 {
        return Err(OutlookError::OutsideGrid { lat, lon });
    }
    Ok(w)
}

/// Integer enlargement so that the window's long side reaches about
/// `target_px` cells (1–8).
pub fn upscale_factor(window: Window, target_px: u32) -> usize {
    let (r, c) = window.shape();
    let long = r.max(c).max(1);
    (target_px as usize).div_ceil(long).clamp(1, 8)
}

/// The grid of `window` subdivided `k` times along each axis.
pub fn window_grid(
    grid: &Grid,
    window: Window,
    k: usize,
) -> Result<Grid, raincast_algorithms::GridError> {
    let (rows, cols) = window.shape();
    Grid::new(
        grid.projection.clone(),
        rows * k,
        cols * k,
        grid.cell_x_m / k as f64,
        grid.cell_y_m / k as f64,
        grid.x_west_m + window.c0 as f64 * grid.cell_x_m,
        grid.y_north_m - window.r0 as f64 * grid.cell_y_m,
    )
}

/// The cells of `window` in `field`, each repeated `k × k` times.
pub fn crop_field(field: ArrayView2<'_, f32>, window: Window, k: usize) -> Array2<f32> {
    let (rows, cols) = window.shape();
    Array2::from_shape_fn((rows * k, cols * k), |(r, c)| {
        field[[window.r0 + r / k, window.c0 + c / k]]
    })
}

/// The outlook of every place covered by `frames` (places whose disk misses
/// the grid are left out), from the nowcast's observed field, rates and
/// probabilities: the same nowcast the API serves.
pub fn jobs_for(frames: &RadarFrames, places: &[crate::Place]) -> Vec<crate::notify::Job> {
    let n = &frames.nowcast;
    let observed = &n.observed_mm_h;
    let mut jobs = Vec::new();
    for place in places {
        let mask = match crate::outlook::DiskMask::new(
            &n.grid,
            place.lat,
            place.lon,
            place.radius_km,
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(place = %place.name, radar = %n.radar, error = %e, "place not covered");
                continue;
            }
        };
        let leads: Vec<crate::outlook::LeadField<'_>> = n
            .leads_min
            .iter()
            .zip(&n.rate_mm_h)
            .enumerate()
            .map(|(i, (lead, f))| crate::outlook::LeadField {
                lead_min: *lead,
                rate_mm_h: f.view(),
                probability: n.probability.get(i).map(|p| p.view()),
            })
            .collect();
        match crate::outlook::build_outlook(
            &n.radar,
            &frames.radar_name,
            n.base_time,
            &mask,
            place.thresholds.rain_mm_h,
            observed.view(),
            &leads,
        ) {
            Ok(outlook) => jobs.push(crate::notify::Job {
                place: place.clone(),
                outlook,
                post: true,
            }),
            Err(e) => {
                tracing::warn!(place = %place.name, radar = %n.radar, error = %e, "no outlook")
            }
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid::new(
            "+proj=aeqd +lat_0=50 +lon_0=4 +ellps=WGS84 +units=m",
            400,
            300,
            1000.0,
            1000.0,
            -150_000.0,
            200_000.0,
        )
        .expect("grid")
    }

    #[test]
    fn window_is_centred_and_clipped() {
        let g = grid();
        let w = crop_window(&g, 50.0, 4.0, 80.0).expect("window");
        assert_eq!(
            w,
            Window {
                r0: 120,
                r1: 280,
                c0: 70,
                c1: 230
            }
        );
        // Near the west edge the window is clipped.
        let (lon_w, lat_w) = g.rowcol_to_lonlat(200.0, 10.0).expect("lonlat");
        let w = crop_window(&g, lat_w, lon_w, 80.0).expect("window");
        assert_eq!(w.c0, 0);
        assert!((w.c1 as i64 - 90).abs() <= 1);
        assert!(crop_window(&g, 70.0, 4.0, 80.0).is_err());
    }

    #[test]
    fn enlarged_window_keeps_geometry() {
        let g = grid();
        let w = crop_window(&g, 50.0, 4.0, 80.0).expect("window");
        let k = upscale_factor(w, 480);
        assert_eq!(k, 3);
        let sub = window_grid(&g, w, k).expect("grid");
        assert_eq!(sub.shape(), (480, 480));
        // The place sits at the same spot in both grids.
        let (r, c) = sub.lonlat_to_rowcol(4.0, 50.0).expect("rowcol");
        assert!(
            (r - 240.0).abs() < 0.01 && (c - 240.0).abs() < 0.01,
            "{r} {c}"
        );
        let mut f = Array2::<f32>::zeros((400, 300));
        f[[200, 150]] = 7.0;
        f[[120, 70]] = f32::NAN;
        let cropped = crop_field(f.view(), w, k);
        assert_eq!(cropped.dim(), (480, 480));
        assert_eq!(cropped[[240, 240]], 7.0);
        assert_eq!(cropped[[242, 242]], 7.0);
        assert_eq!(cropped[[243, 243]], 0.0);
        assert!(cropped[[0, 0]].is_nan() && cropped[[2, 2]].is_nan());
        assert_eq!(
            upscale_factor(
                Window {
                    r0: 0,
                    r1: 2000,
                    c0: 0,
                    c1: 10
                },
                480
            ),
            1
        );
    }
}
