//! Places the notifier watches, and their thresholds.
//!
//! A place is a point (WGS84 lon/lat) with a radius: rain anywhere inside the
//! disk counts for the place (see the notifier's `outlook`). Thresholds are rain
//! rates in mm/h; every "on" threshold has a lower "off" threshold so that a
//! rate wobbling around one value cannot flip the state on every scan
//! (hysteresis, see the notifier's `events`).
//!
//! In a TOML configuration a place looks like:
//! ```toml
//! [[places]]
//! name = "Brussels"
//! lat = 50.85
//! lon = 4.35
//! radius_km = 10
//! time_zone = "Europe/Brussels"
//! hashtags = ["Brussels", "rain"]
//! [places.thresholds]
//! rain_mm_h = 0.5
//! heavy_mm_h = 10
//! ```

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Errors raised when a place or its thresholds are not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    /// `--place` text not of the form `NAME,LAT,LON[,RADIUS_KM]`.
    #[error("place {text:?}: expected NAME,LAT,LON[,RADIUS_KM]")]
    Syntax { text: String },
    /// A numeric field could not be parsed or is out of range.
    #[error("place {place:?}: invalid {field} {value:?}")]
    BadValue {
        place: String,
        field: &'static str,
        value: String,
    },
    /// The time zone is not an IANA name known to chrono-tz.
    #[error("place {place:?}: unknown time zone {zone:?}")]
    UnknownZone { place: String, zone: String },
    /// Two places share an id (their `id`, else their name, as a slug):
    /// their events would share keys, and one place's alerts would be lost.
    #[error("places {first:?} and {second:?} have the same id {slug:?}; give one an `id`")]
    Duplicate {
        first: String,
        second: String,
        slug: String,
    },
}

/// Ids that configured places may not take: webhook subscriptions' places
/// have them (the notifier tells its channels apart by it).
pub const RESERVED_ID_PREFIX: &str = "sub_";

/// Checks that no two places share an id ([`Place::slug`]) and that none
/// takes a subscription's id ([`RESERVED_ID_PREFIX`]).
pub fn check_unique(places: &[Place]) -> Result<(), PlaceError> {
    let mut seen: std::collections::HashMap<String, &Place> = std::collections::HashMap::new();
    for p in places {
        if let Some(id) =
            p.id.as_deref()
                .filter(|i| i.starts_with(RESERVED_ID_PREFIX))
        {
            return Err(PlaceError::BadValue {
                place: p.name.clone(),
                field: "id",
                value: format!(
                    "{id} (ids starting {RESERVED_ID_PREFIX} are webhook subscriptions')"
                ),
            });
        }
        if let Some(first) = seen.insert(p.slug(), p) {
            return Err(PlaceError::Duplicate {
                first: first.name.clone(),
                second: p.name.clone(),
                slug: p.slug(),
            });
        }
    }
    Ok(())
}

/// Rain thresholds and timings for one place. Rates in mm/h, times in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Rain "on": the area rate (see the notifier's area rate) at or above
    /// this counts as rain at the place. Default 0.5 mm/h.
    pub rain_mm_h: f32,
    /// Rain "off": once raining, the place stays raining until the area rate
    /// falls below this for [`Self::dry_scans`] consecutive scans. Default 0.2.
    pub rain_off_mm_h: f32,
    /// Heavy rain "on". Default 10 mm/h (the top of the "moderate" band, see
    /// the intensity words).
    pub heavy_mm_h: f32,
    /// Heavy rain "off". Default 5 mm/h.
    pub heavy_off_mm_h: f32,
    /// Smallest nowcast probability (0–1) for a lead to count as "rain
    /// expected", when the nowcast gives probabilities. The probability is
    /// the nowcast's own (rain ≥ `[nowcast].probability_threshold_mm_h`, the
    /// one `/v1/forecast` gives); `rain_mm_h` applies to the rate. Default 0.5.
    pub min_probability: f32,
    /// How far ahead "rain expected" looks, minutes. Default 60.
    pub horizon_min: u32,
    /// Cool-down per place and event kind, minutes: an event of the same kind
    /// for the same place is not posted again within this time. Default 120.
    pub cooldown_min: u32,
    /// Consecutive scans below the "off" threshold before a state resets.
    /// Default 2.
    pub dry_scans: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rain_mm_h: 0.5,
            rain_off_mm_h: 0.2,
            heavy_mm_h: 10.0,
            heavy_off_mm_h: 5.0,
            min_probability: 0.5,
            horizon_min: 60,
            cooldown_min: 120,
            dry_scans: 2,
        }
    }
}

impl Thresholds {
    /// Checks ordering and ranges (off < on, probabilities in 0–1, non-zero times).
    pub fn validate(&self, place: &str) -> Result<(), PlaceError> {
        let bad = |field: &'static str, value: String| PlaceError::BadValue {
            place: place.to_string(),
            field,
            value,
        };
        let finite_pos = |v: f32| v.is_finite() && v > 0.0;
        if !finite_pos(self.rain_mm_h) {
            return Err(bad("rain_mm_h", self.rain_mm_h.to_string()));
        }
        if !(self.rain_off_mm_h.is_finite()
            && self.rain_off_mm_h >= 0.0
            && self.rain_off_mm_h <= self.rain_mm_h)
        {
            return Err(bad("rain_off_mm_h", self.rain_off_mm_h.to_string()));
        }
        if !(finite_pos(self.heavy_mm_h) && self.heavy_mm_h > self.rain_mm_h) {
            return Err(bad("heavy_mm_h", self.heavy_mm_h.to_string()));
        }
        if !(self.heavy_off_mm_h.is_finite()
            && self.heavy_off_mm_h >= self.rain_off_mm_h
            && self.heavy_off_mm_h <= self.heavy_mm_h)
        {
            return Err(bad("heavy_off_mm_h", self.heavy_off_mm_h.to_string()));
        }
        if !(0.0..=1.0).contains(&self.min_probability) {
            return Err(bad("min_probability", self.min_probability.to_string()));
        }
        if self.horizon_min == 0 || self.horizon_min > 240 {
            return Err(bad("horizon_min", self.horizon_min.to_string()));
        }
        if self.cooldown_min == 0 {
            return Err(bad("cooldown_min", self.cooldown_min.to_string()));
        }
        if self.dry_scans == 0 {
            return Err(bad("dry_scans", self.dry_scans.to_string()));
        }
        Ok(())
    }
}

/// Default radius around a place, km.
pub const DEFAULT_RADIUS_KM: f64 = 10.0;

/// A place to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// Display name, used in texts, on the GIF and (slugged) in event keys.
    pub name: String,
    /// Latitude, WGS84 degrees.
    pub lat: f64,
    /// Longitude, WGS84 degrees.
    pub lon: f64,
    /// Radius of the disk around the point, km. Default 10.
    #[serde(default = "default_radius")]
    pub radius_km: f64,
    /// IANA time zone for local times in texts. Default UTC.
    #[serde(default = "default_tz", with = "tz_serde")]
    pub time_zone: Tz,
    /// Thresholds and timings.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Hashtags appended to posts (without `#`), dropped first when a text is too long.
    #[serde(default)]
    pub hashtags: Vec<String>,
    /// Also post "clearing" events. Default off.
    #[serde(default)]
    pub clearing: bool,
    /// Stable identity in event keys and stored states instead of the
    /// name's slug (webhook subscriptions: their id, so two subscriptions
    /// of the same name never share events). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn default_radius() -> f64 {
    DEFAULT_RADIUS_KM
}

fn default_tz() -> Tz {
    Tz::UTC
}

mod tz_serde {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>()
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {name:?}")))
    }
}

impl Place {
    /// A place with default radius, UTC and default thresholds.
    pub fn new(name: impl Into<String>, lat: f64, lon: f64) -> Self {
        Self {
            name: name.into(),
            lat,
            lon,
            radius_km: DEFAULT_RADIUS_KM,
            time_zone: Tz::UTC,
            thresholds: Thresholds::default(),
            hashtags: Vec::new(),
            clearing: false,
            id: None,
        }
    }

    /// Sets the time zone from an IANA name (e.g. `Europe/Brussels`).
    pub fn with_time_zone(mut self, zone: &str) -> Result<Self, PlaceError> {
        self.time_zone = zone.parse().map_err(|_| PlaceError::UnknownZone {
            place: self.name.clone(),
            zone: zone.to_string(),
        })?;
        Ok(self)
    }

    /// Parses the command-line form `NAME,LAT,LON[,RADIUS_KM]`.
    pub fn parse_arg(text: &str) -> Result<Self, PlaceError> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if !(3..=4).contains(&parts.len()) || parts[0].is_empty() {
            return Err(PlaceError::Syntax {
                text: text.to_string(),
            });
        }
        let name = parts[0];
        let num = |field: &'static str, s: &str| {
            s.parse::<f64>().map_err(|_| PlaceError::BadValue {
                place: name.to_string(),
                field,
                value: s.to_string(),
            })
        };
        let mut place = Place::new(name, num("lat", parts[1])?, num("lon", parts[2])?);
        if let Some(r) = parts.get(3) {
            place.radius_km = num("radius_km", r)?;
        }
        place.validate()?;
        Ok(place)
    }

    /// Checks coordinates, radius and thresholds (a bad value is quoted
    /// short: 1e308, not 309 digits).
    pub fn validate(&self) -> Result<(), PlaceError> {
        use raincast_algorithms::scan::short_number;
        let bad = |field: &'static str, value: String| PlaceError::BadValue {
            place: self.name.clone(),
            field,
            value,
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", self.name.clone()));
        }
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            return Err(bad("lat", short_number(self.lat)));
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            return Err(bad("lon", short_number(self.lon)));
        }
        if !(self.radius_km.is_finite() && self.radius_km > 0.0 && self.radius_km <= 200.0) {
            return Err(bad("radius_km", short_number(self.radius_km)));
        }
        self.thresholds.validate(&self.name)
    }

    /// Lower-case ASCII slug of the id, else of the name, for event keys
    /// and file names: letters and digits kept, every other run of
    /// characters becomes `-`.
    pub fn slug(&self) -> String {
        slug(self.id.as_deref().unwrap_or(&self.name))
    }
}

/// The ASCII base letter of a common accented Latin letter (`ü` → `u`).
fn ascii_base(c: char) -> Option<char> {
    const GROUPS: [(&str, char); 12] = [
        ("àáâãäåā", 'a'),
        ("çćč", 'c'),
        ("èéêëēę", 'e'),
        ("ìíîïī", 'i'),
        ("ñń", 'n'),
        ("òóôõöøō", 'o'),
        ("ùúûüū", 'u'),
        ("ýÿ", 'y'),
        ("śšş", 's'),
        ("źžż", 'z'),
        ("ł", 'l'),
        ("ß", 's'),
    ];
    let lower = c.to_lowercase().next()?;
    GROUPS
        .iter()
        .find(|(letters, _)| letters.contains(lower))
        .map(|(_, base)| *base)
}

/// Lower-case ASCII slug: `"São Paulo (centre)"` → `"sao-paulo-centre"`;
/// common accented letters lose their accents, other characters separate.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = ascii_base(c).unwrap_or(c);
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("place");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_form() {
        let p = Place::parse_arg("Brussels, 50.85, 4.35").expect("valid");
        assert_eq!(p.name, "Brussels");
        assert_eq!((p.lat, p.lon, p.radius_km), (50.85, 4.35, 10.0));
        let p = Place::parse_arg("Ghent,51.05,3.72,5").expect("valid");
        assert_eq!(p.radius_km, 5.0);
    }

    #[test]
    fn rejects_bad_cli_forms() {
        for bad in [
            "",
            "Brussels",
            "Brussels,50",
            ",50,4",
            "X,abc,4",
            "X,95,4",
            "X,50,200",
            "X,50,4,0",
            "X,50,4,-3",
            "X,50,4,5,6",
        ] {
            assert!(Place::parse_arg(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn deserialises_with_defaults_and_zone() {
        let json = r#"{"name":"Sydney","lat":-33.87,"lon":151.21,"time_zone":"Australia/Sydney",
                       "hashtags":["sydney"],"thresholds":{"heavy_mm_h":20}}"#;
        let p: Place = serde_json::from_str(json).expect("valid");
        assert_eq!(p.time_zone, chrono_tz::Australia::Sydney);
        assert_eq!(p.thresholds.heavy_mm_h, 20.0);
        assert_eq!(p.thresholds.rain_mm_h, 0.5);
        assert_eq!(p.radius_km, DEFAULT_RADIUS_KM);
        p.validate().expect("valid");
        let back = serde_json::to_string(&p).expect("serialise");
        assert!(back.contains("Australia/Sydney"));
        let bad = r#"{"name":"X","lat":0,"lon":0,"time_zone":"Mars/Olympus"}"#;
        assert!(serde_json::from_str::<Place>(bad).is_err());
    }

    #[test]
    fn thresholds_must_be_ordered() {
        let mut p = Place::new("X", 0.0, 0.0);
        p.thresholds.rain_off_mm_h = 1.0; // above rain_mm_h
        assert!(p.validate().is_err());
        let mut p = Place::new("X", 0.0, 0.0);
        p.thresholds.heavy_mm_h = 0.3; // below rain_mm_h
        assert!(p.validate().is_err());
        assert!(Place::new("X", 0.0, 0.0)
            .with_time_zone("Nowhere/Land")
            .is_err());
    }

    #[test]
    fn two_places_with_one_id_are_refused() {
        let a = Place::new("Zürich", 47.37, 8.54);
        let b = Place::new("Zurich", 47.38, 8.55);
        let e = check_unique(&[a.clone(), b.clone()]).expect_err("one id");
        assert!(e.to_string().contains("\"zurich\""), "{e}");
        let mut c = b.clone();
        c.id = Some("zurich-west".into());
        assert!(check_unique(&[a.clone(), c.clone()]).is_ok());
        c.id = Some("sub_1".into());
        let e = check_unique(&[a, c]).expect_err("a reserved id");
        assert!(e.to_string().contains("invalid id"), "{e}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("São Paulo (centre)"), "sao-paulo-centre");
        assert_eq!(slug("Zürich"), "zurich");
        assert_eq!(slug("Kraków – Łódź"), "krakow-lodz");
        assert_eq!(slug("Brussels"), "brussels");
        assert_eq!(slug("  "), "place");
    }
}
