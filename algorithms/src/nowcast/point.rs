//! Point series (step 5 of the nowcast): rate and probability per lead at
//! one cell, intensity bands and a one-line summary.

use super::probability::window_fraction;
use super::Nowcast;
use std::fmt;

impl Nowcast {
    /// Rate and probability of rain ≥ `threshold_mm_h` per lead at one cell,
    /// with a summary sentence. `None` outside the grid.
    pub fn point(&self, row: usize, col: usize, threshold_mm_h: f32) -> Option<PointSeries> {
        let (rows, cols) = self.grid.shape();
        if row >= rows || col >= cols {
            return None;
        }
        let mut rate = Vec::with_capacity(self.leads_min.len());
        let mut prob = Vec::with_capacity(self.leads_min.len());
        for (f, &lead) in self.rate_mm_h.iter().zip(&self.leads_min) {
            let v = f[[row, col]];
            rate.push(v);
            prob.push(if v.is_nan() {
                f32::NAN
            } else {
                window_fraction(
                    &f.view(),
                    row,
                    col,
                    self.prob_radius_cells(lead),
                    threshold_mm_h,
                )
            });
        }
        let now = self.observed_mm_h[[row, col]];
        let summary = summary_text(now, &self.leads_min, &rate, &prob);
        Some(PointSeries {
            row,
            col,
            now_mm_h: now,
            leads_min: self.leads_min.clone(),
            rate_mm_h: rate,
            probability: prob,
            summary,
        })
    }

    /// [`Nowcast::point`] at a WGS84 lon/lat; `None` outside the grid.
    pub fn point_lonlat(&self, lon: f64, lat: f64, threshold_mm_h: f32) -> Option<PointSeries> {
        let (row, col) = self.grid.cell_at_lonlat(lon, lat)?;
        self.point(row, col, threshold_mm_h)
    }
}

/// The forecast at one place.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSeries {
    pub row: usize,
    pub col: usize,
    /// Observed rate at the base time, mm/h (NaN = no data).
    pub now_mm_h: f32,
    /// Leads, minutes.
    pub leads_min: Vec<u32>,
    /// Forecast rate per lead, mm/h (NaN = unknown).
    pub rate_mm_h: Vec<f32>,
    /// Probability of rain at or above the requested threshold per lead.
    pub probability: Vec<f32>,
    /// One line such as "Light rain starting in about 15 min, easing after 40 min".
    pub summary: String,
}

/// Rain intensity bands, mm/h: dry < 0.1 ≤ light < 2.5 ≤ moderate < 10 ≤ heavy
/// (the usual meteorological rain-rate classes). The one intensity type of
/// the workspace: the point summary, the API's `intensity` field and the
/// notifier's post texts all use it.
///
/// Serialised (serde) as `"none"`, `"light"`, `"moderate"`, `"heavy"`, the
/// API's words; with the `openapi` feature it is the API's `IntensityWord`
/// schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        as = IntensityWord,
        description = "Rain intensity band: none < 0.1 mm/h ≤ light < 2.5 ≤ moderate < 10 ≤ heavy."
    )
)]
pub enum Intensity {
    /// < 0.1 mm/h (serialised `"none"`).
    #[serde(rename = "none")]
    Dry,
    /// 0.1 – 2.5 mm/h.
    Light,
    /// 2.5 – 10 mm/h.
    Moderate,
    /// ≥ 10 mm/h.
    Heavy,
}

impl Intensity {
    /// Lower bound of light rain, mm/h.
    pub const LIGHT_MM_H: f32 = 0.1;
    /// Lower bound of moderate rain, mm/h.
    pub const MODERATE_MM_H: f32 = 2.5;
    /// Lower bound of heavy rain, mm/h.
    pub const HEAVY_MM_H: f32 = 10.0;

    /// The band of a rate (NaN counts as dry; callers check unknowns first).
    pub fn of(rate_mm_h: f32) -> Self {
        if rate_mm_h >= Self::HEAVY_MM_H {
            Intensity::Heavy
        } else if rate_mm_h >= Self::MODERATE_MM_H {
            Intensity::Moderate
        } else if rate_mm_h >= Self::LIGHT_MM_H {
            Intensity::Light
        } else {
            Intensity::Dry
        }
    }

    /// The band of a rate, `None` where the rate is unknown (NaN).
    pub fn of_known(rate_mm_h: f32) -> Option<Self> {
        rate_mm_h.is_finite().then(|| Self::of(rate_mm_h))
    }

    /// The band of a rate known to be rain (an event's rate): at least
    /// [`Intensity::Light`], so a rate under 0.1 mm/h still reads "light".
    pub fn of_rain(rate_mm_h: f32) -> Self {
        Self::of(rate_mm_h).max(Intensity::Light)
    }

    /// Lower-case word: "dry", "light", "moderate", "heavy".
    pub fn word(self) -> &'static str {
        match self {
            Intensity::Dry => "dry",
            Intensity::Light => "light",
            Intensity::Moderate => "moderate",
            Intensity::Heavy => "heavy",
        }
    }

    fn capitalised(self) -> &'static str {
        match self {
            Intensity::Dry => "Dry",
            Intensity::Light => "Light",
            Intensity::Moderate => "Moderate",
            Intensity::Heavy => "Heavy",
        }
    }
}

impl fmt::Display for Intensity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One line describing a point forecast, e.g. "Light rain starting in about
/// 15 min, easing after 40 min". `now_mm_h` is the observed rate, `rates`
/// and `probs` (same length as `leads_min`, probability of rain, may be empty)
/// the forecast. Only the leads before the first unknown (NaN) one are
/// told, and nothing is said beyond them ("continuing for at least 30 min",
/// "no forecast here" when the first lead is unknown): an unknown lead
/// is never summarised as dry.
pub fn summary_text(now_mm_h: f32, leads_min: &[u32], rates: &[f32], probs: &[f32]) -> String {
    let series: Vec<(u32, f32, f32)> = leads_min
        .iter()
        .zip(rates)
        .enumerate()
        .take_while(|(_, (_, r))| r.is_finite())
        .map(|(i, (l, r))| (*l, *r, probs.get(i).copied().unwrap_or(f32::NAN)))
        .collect();
    if !now_mm_h.is_finite() && !series.is_empty() {
        // Not seen now (outside the scan), but a lead is known there.
        let leads = summary_text(0.0, leads_min, rates, probs);
        let (first, rest) = leads.split_at(leads.chars().next().map_or(0, char::len_utf8));
        return format!("No radar data here now; {}{rest}", first.to_lowercase());
    }
    let horizon = leads_min.iter().copied().max().unwrap_or(0);
    let band = |r: f32| Intensity::of(r);
    // Only what is known is told: the last known lead bounds every "next
    // N min" (the rain's source may lie outside the radar's view upwind).
    let Some(known) = series.last().map(|s| s.0) else {
        return if !now_mm_h.is_finite() {
            "No radar data here".to_string()
        } else if band(now_mm_h) == Intensity::Dry {
            "No rain now, no forecast here".to_string()
        } else {
            format!(
                "{} rain now, no forecast here",
                band(now_mm_h).capitalised()
            )
        };
    };
    let now = if now_mm_h.is_finite() {
        band(now_mm_h)
    } else {
        Intensity::Dry
    };
    if now == Intensity::Dry {
        let Some(start) = series.iter().position(|s| band(s.1) > Intensity::Dry) else {
            return format!("No rain expected in the next {known} min");
        };
        // The spell: from `start` while it keeps raining.
        let end = series[start..]
            .iter()
            .position(|s| band(s.1) == Intensity::Dry)
            .map(|p| start + p);
        let spell = &series[start..end.unwrap_or(series.len())];
        let peak = spell
            .iter()
            .map(|s| band(s.1))
            .max()
            .unwrap_or(Intensity::Light);
        let (t0, _, p0) = series[start];
        let mut text = if p0.is_finite() && p0 < 0.5 {
            format!("{} rain possible in about {t0} min", peak.capitalised())
        } else {
            format!("{} rain starting in about {t0} min", peak.capitalised())
        };
        let last_peak = spell
            .iter()
            .rposition(|s| band(s.1) == peak)
            .map(|p| spell[p].0);
        match (end, last_peak) {
            (Some(e), Some(lp))
                if peak > Intensity::Light && spell.last().map(|s| s.0) != Some(lp) =>
            {
                text.push_str(&format!(
                    ", easing after {lp} min, stopping by {} min",
                    series[e].0
                ));
            }
            (Some(e), _) => text.push_str(&format!(", stopping by {} min", series[e].0)),
            (None, Some(lp)) if spell.last().map(|s| s.0) != Some(lp) => {
                text.push_str(&format!(", easing after {lp} min"));
            }
            _ => {}
        }
        text
    } else {
        let end = series.iter().position(|s| band(s.1) == Intensity::Dry);
        let upto = &series[..end.unwrap_or(series.len())];
        let peak = upto.iter().map(|s| band(s.1)).max().unwrap_or(now);
        let mut text = format!("{} rain now", now.capitalised());
        if peak > now {
            if let Some(s) = upto.iter().find(|s| band(s.1) == peak) {
                text.push_str(&format!(", turning {} in about {} min", peak.word(), s.0));
            }
        } else if let Some(s) = upto.iter().find(|s| band(s.1) < now) {
            if end.is_none() || series[end.unwrap_or(0)].0 != s.0 {
                text.push_str(&format!(", easing in about {} min", s.0));
            }
        }
        match end {
            Some(e) => text.push_str(&format!(", stopping in about {} min", series[e].0)),
            None if known < horizon => {
                text.push_str(&format!(", continuing for at least {known} min"))
            }
            None => text.push_str(&format!(", continuing for the next {horizon} min")),
        }
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::nowcast::{nowcast, NowcastConfig};
    use crate::synth::{local_grid, SynthConfig, SynthRadar};

    #[test]
    fn summaries() {
        let leads = [10, 20, 30, 40, 50, 60];
        let p = [0.9f32; 6];
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, 0.5, 1.0, 1.2, 0.0, 0.0], &p),
            "Light rain starting in about 20 min, stopping by 50 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, 1.0, 4.0, 3.0, 1.0, 0.5], &p),
            "Moderate rain starting in about 20 min, easing after 40 min"
        );
        assert_eq!(
            summary_text(
                0.0,
                &leads,
                &[0.0, 0.0, 12.0, 0.0, 0.0, 0.0],
                &[0.0, 0.0, 0.3, 0.0, 0.0, 0.0]
            ),
            "Heavy rain possible in about 30 min, stopping by 40 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[0.0; 6], &p),
            "No rain expected in the next 60 min"
        );
        assert_eq!(
            summary_text(3.0, &leads, &[3.0, 2.0, 1.0, 0.0, 0.0, 0.0], &p),
            "Moderate rain now, easing in about 20 min, stopping in about 40 min"
        );
        assert_eq!(
            summary_text(1.0, &leads, &[1.0, 3.0, 12.0, 12.0, 12.0, 5.0], &p),
            "Light rain now, turning heavy in about 30 min, continuing for the next 60 min"
        );
        assert_eq!(
            summary_text(f32::NAN, &leads, &[f32::NAN; 6], &p),
            "No radar data here"
        );
        // Leads without data (the rain's source outside the radar's view)
        // bound what is said.
        assert_eq!(
            summary_text(6.4, &leads, &[f32::NAN; 6], &p),
            "Moderate rain now, no forecast here"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[f32::NAN; 6], &p),
            "No rain now, no forecast here"
        );
        let nan = f32::NAN;
        assert_eq!(
            summary_text(3.0, &leads, &[3.0, 3.0, 3.0, nan, nan, nan], &p),
            "Moderate rain now, continuing for at least 30 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, 0.0, nan, nan, nan, nan], &p),
            "No rain expected in the next 20 min"
        );
        // An unknown lead between known ones ends what is told: it is not dry.
        assert_eq!(
            summary_text(0.0, &leads, &[0.0, nan, 0.0, 0.0, 0.0, 0.0], &p),
            "No rain expected in the next 10 min"
        );
        assert_eq!(
            summary_text(3.0, &leads, &[3.0, 3.0, nan, 3.0, 3.0, 3.0], &p),
            "Moderate rain now, continuing for at least 20 min"
        );
        assert_eq!(
            summary_text(0.0, &leads, &[nan, 0.0, 0.0, 0.0, 0.0, 0.0], &p),
            "No rain now, no forecast here"
        );
        // Nothing seen now, leads known (rain advected out of the scan).
        assert_eq!(
            summary_text(nan, &leads, &[0.0, 1.0, 1.0, 0.0, nan, nan], &p),
            "No radar data here now; light rain starting in about 20 min, stopping by 40 min"
        );
        assert_eq!(Intensity::of(2.49), Intensity::Light);
        assert_eq!(Intensity::of(2.5), Intensity::Moderate);
        assert_eq!(Intensity::of(10.0), Intensity::Heavy);
        assert_eq!(Intensity::of(0.05), Intensity::Dry);
    }

    #[test]
    fn intensity_known_rain_and_json_words() {
        assert_eq!(Intensity::of_known(f32::NAN), None);
        assert_eq!(Intensity::of_known(0.0), Some(Intensity::Dry));
        assert_eq!(Intensity::of_known(12.0), Some(Intensity::Heavy));
        assert_eq!(Intensity::of_rain(0.05), Intensity::Light);
        assert_eq!(Intensity::of_rain(3.0), Intensity::Moderate);
        let words: Vec<String> = [
            Intensity::Dry,
            Intensity::Light,
            Intensity::Moderate,
            Intensity::Heavy,
        ]
        .iter()
        .map(|i| serde_json::to_string(i).unwrap())
        .collect();
        assert_eq!(
            words,
            ["\"none\"", "\"light\"", "\"moderate\"", "\"heavy\""]
        );
        let back: Intensity = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(back, Intensity::Dry);
    }

    #[test]
    fn rain_arriving_at_a_point_is_announced() {
        // One cell moving east at 3 px/step towards a point 30 px downstream.
        let grid = local_grid(5.0, 50.0, 80, 160, 1000.0).expect("grid");
        let cfg = SynthConfig {
            velocity_px_per_step: (3.0, 0.0),
            cells: 1,
            peak_mm_h: (8.0, 8.0),
            sigma_px: (6.0, 6.0),
            lifetime_steps: (400, 400),
            ..SynthConfig::for_shape(80, 160)
        };
        let r = SynthRadar::new(grid, cfg);
        // Find steps where the cell centre is around column 40.
        let step = (2..800)
            .find(|s| {
                let f = r.field(*s);
                let (mut best, mut at) = (0.0, (0, 0));
                for ((row, col), v) in f.rate_mm_h.indexed_iter() {
                    if *v > best {
                        best = *v;
                        at = (row, col);
                    }
                }
                best > 4.0 && (38..42).contains(&at.1) && (12..68).contains(&at.0)
            })
            .expect("cell crosses the domain");
        let frames = r.fields(step - 2, 3);
        let peak_row = frames[2]
            .rate_mm_h
            .indexed_iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((row, _), _)| row)
            .expect("cells");
        let nc = nowcast(
            &frames,
            &[10, 20, 30, 40, 50, 60],
            &NowcastConfig::default(),
        )
        .expect("nowcast");
        // 40 + 30 px east: the centre arrives after 10 steps = 50 min; rain
        // (≥ 0.1 mm/h) reaches the point well before.
        let p = nc.point(peak_row, 70, 0.1).expect("inside");
        assert!(p.now_mm_h < 0.1, "dry now: {}", p.now_mm_h);
        assert!(
            p.summary.contains("rain") && p.summary.contains("in about"),
            "{}",
            p.summary
        );
        assert!(p.rate_mm_h[5] > p.rate_mm_h[0], "{:?}", p.rate_mm_h);
    }
}
