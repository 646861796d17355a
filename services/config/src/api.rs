//! The `[api]` section: settings of the HTTP API. Every key can be
//! overridden by `RAINCAST_API__{KEY}`, and `cors_origins` by
//! `RAINCAST_CORS_ORIGINS` (comma-separated).

use serde::Deserialize;
use std::time::Duration;

/// HTTP API settings. Every field has a default, so an empty `[api]` table
/// (or none) is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Origins allowed by CORS: `["*"]` allows any origin; an empty list
    /// turns CORS off (only same-origin pages, such as the map page, call the API).
    pub cors_origins: Vec<String>,
    /// Longest time a request may take, seconds; slower ones get a 503 problem.
    pub request_timeout_s: f64,
    /// Largest request body accepted, bytes (only `POST /v1/subscriptions` takes one); larger: 413.
    pub body_limit_bytes: usize,
    /// `/readyz` fails when the newest scan of every radar is older than
    /// this, seconds. A radar whose newest scan is older is also `stale` in
    /// `/v1/radars`.
    pub ready_max_age_s: u64,
    /// Longest `from..to` range accepted by the scan listing, hours.
    pub max_scan_range_h: u64,
    /// Animations kept in memory (each is a few hundred KB).
    pub gif_cache_entries: usize,
    /// Rendered PNG frames kept in memory.
    pub png_cache_entries: usize,
    /// Threshold of the probability given by `/v1/forecast`, mm/h.
    pub forecast_threshold_mm_h: f32,
    /// Largest width or height of map-ready PNG frames, pixels.
    pub map_max_side_px: usize,
    /// Longest time a client may take to send a request's headers, seconds
    /// (default 10), counted from the connection or from the previous
    /// response on a keep-alive connection; slower connections are closed.
    pub header_read_timeout_s: f64,
    /// A connection with no request in flight and no bytes moving for this
    /// long is closed, seconds (default 60): chiefly clients that stop
    /// reading their response (an idle keep-alive connection is already
    /// closed by the header-read timeout when that is shorter).
    pub idle_timeout_s: f64,
    /// Most open client connections (default 1024); further ones wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
    /// CPU-heavy work (decoding scans, JSON fields, PNG frames and
    /// animations not in cache) running at once; 0 (the default) = the
    /// number of cores.
    pub cpu_workers: usize,
    /// Requests waiting for a CPU worker (default 32); when this many wait,
    /// further CPU-heavy requests get 503 `busy` with `Retry-After`.
    pub cpu_queue: usize,
    /// Whether the `/v1` read endpoints need an API key (`Authorization:
    /// Bearer KEY`). Default false: they stay open, as before keys existed.
    /// The Dark Sky compatible endpoint (key in its path) and the
    /// subscription endpoints always need one.
    pub require_keys: bool,
    /// Requests a key may make per minute (default 600, bursts up to the
    /// same number); past it a request gets 429 with `Retry-After`.
    pub rate_limit_per_minute: u32,
    /// How long a key check is remembered, seconds (default 30): a revoked
    /// key stops working within this time on every instance. 0 = ask the
    /// state store on every request.
    pub key_cache_s: u64,
    /// Memory for rendered map tiles (`/v2/radar/...`), MB (default 64; 0
    /// turns the cache off): a least-recently-used cache bounded by the
    /// tiles' bytes.
    pub tile_cache_mb: usize,
    /// The base URL clients reach this service at (`https://rain.example`),
    /// given as `host` in `/public/weather-maps.json`. Default: `http://`
    /// and the request's `Host` header.
    pub public_url: Option<String>,
    /// An online XYZ basemap for the map page instead of the embedded
    /// offline one (`https://tile.example/{z}/{x}/{y}.png`; `{s}` and `{r}`
    /// are also allowed, as Leaflet expands them). Default: none, the page
    /// draws the embedded basemap and makes no request to another host.
    pub basemap_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            request_timeout_s: 10.0,
            body_limit_bytes: 64 * 1024,
            ready_max_age_s: 1800,
            max_scan_range_h: 7 * 24,
            gif_cache_entries: 16,
            png_cache_entries: 512,
            forecast_threshold_mm_h: 0.1,
            map_max_side_px: 1024,
            header_read_timeout_s: 10.0,
            idle_timeout_s: 60.0,
            max_connections: 1024,
            cpu_workers: 0,
            cpu_queue: 32,
            require_keys: false,
            rate_limit_per_minute: 600,
            key_cache_s: 30,
            tile_cache_mb: 64,
            public_url: None,
            basemap_url: None,
        }
    }
}

/// An unusable API setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid api.{field}: {reason}")]
pub struct ApiConfigError {
    pub field: &'static str,
    pub reason: String,
}

/// Checks an XYZ tile URL template: `http(s)://`, visible ASCII without
/// quotes or angle brackets, `{z}`, `{x}` and `{y}` each exactly once, and
/// no placeholder but those and Leaflet's `{s}` and `{r}`.
fn check_xyz_template(t: &str) -> Result<(), String> {
    if !(t.starts_with("http://") || t.starts_with("https://")) {
        return Err("must start with http:// or https://".into());
    }
    if let Some(b) = t
        .bytes()
        .find(|b| !(0x21..0x7f).contains(b) || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\'))
    {
        return Err(format!("the character {:?} is not allowed", b as char));
    }
    for p in ["{z}", "{x}", "{y}"] {
        let n = t.matches(p).count();
        if n != 1 {
            return Err(format!("must hold {p} exactly once (found {n})"));
        }
    }
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else {
            return Err("an unclosed '{'".into());
        };
        let name = &rest[i..i + j + 1];
        if !matches!(name, "{z}" | "{x}" | "{y}" | "{s}" | "{r}") {
            return Err(format!(
                "unknown placeholder {name} (allowed: {{z}} {{x}} {{y}} {{s}} {{r}})"
            ));
        }
        rest = &rest[i + j + 1..];
    }
    if rest.contains('}') || t.split('{').next().is_some_and(|h| h.contains('}')) {
        return Err("a stray '}'".into());
    }
    Ok(())
}

impl ApiConfig {
    /// Checks ranges; call once at start-up.
    pub fn validate(&self) -> Result<(), ApiConfigError> {
        let bad = |field, reason: &str| {
            Err(ApiConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        for (field, v) in [
            ("request_timeout_s", self.request_timeout_s),
            ("header_read_timeout_s", self.header_read_timeout_s),
            ("idle_timeout_s", self.idle_timeout_s),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return bad(field, "must be in (0, 3600]");
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return bad("max_connections", "must be in 1..=1000000");
        }
        if self.cpu_workers > 1024 {
            return bad(
                "cpu_workers",
                "must be in 0..=1024 (0 = the number of cores)",
            );
        }
        if self.cpu_queue > 100_000 {
            return bad("cpu_queue", "must be in 0..=100000");
        }
        if !(1..=1_000_000).contains(&self.rate_limit_per_minute) {
            return bad("rate_limit_per_minute", "must be in 1..=1000000");
        }
        if self.key_cache_s > 3600 {
            return bad("key_cache_s", "must be in 0..=3600");
        }
        if self.tile_cache_mb > 65_536 {
            return bad("tile_cache_mb", "must be in 0..=65536");
        }
        if let Some(u) = &self.public_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > "https://".len()
                && !u.ends_with('/')
                && u.bytes().all(|b| (0x21..0x7f).contains(&b));
            if !ok {
                return Err(ApiConfigError {
                    field: "public_url",
                    reason: format!("{u:?} is not an http(s) base URL without a trailing slash"),
                });
            }
        }
        if let Some(t) = &self.basemap_url {
            check_xyz_template(t).map_err(|reason| ApiConfigError {
                field: "basemap_url",
                reason: format!("{t:?} is not an XYZ tile URL template: {reason}"),
            })?;
        }
        if self.body_limit_bytes == 0 {
            return bad("body_limit_bytes", "must be positive");
        }
        if self.ready_max_age_s == 0 {
            return bad("ready_max_age_s", "must be positive");
        }
        if self.max_scan_range_h == 0 || self.max_scan_range_h > 24 * 366 {
            return bad("max_scan_range_h", "must be in 1..=8784");
        }
        if !(self.forecast_threshold_mm_h.is_finite() && self.forecast_threshold_mm_h > 0.0) {
            return bad("forecast_threshold_mm_h", "must be a positive number");
        }
        if !(16..=4096).contains(&self.map_max_side_px) {
            return bad("map_max_side_px", "must be in 16..=4096");
        }
        for o in &self.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(ApiConfigError {
                    field: "cors_origins",
                    reason: format!("{o:?} is neither \"*\" nor an http(s) origin"),
                });
            }
            // What an HTTP header value may hold: visible ASCII and spaces.
            if o != "*" && !o.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(ApiConfigError {
                    field: "cors_origins",
                    reason: format!("{o:?} is not a valid header value"),
                });
            }
        }
        Ok(())
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_s)
    }

    /// The header-read timeout as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_read_timeout_s)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_s)
    }

    /// CPU workers: `cpu_workers`, or the number of cores when it is 0.
    pub fn cpu_worker_count(&self) -> usize {
        match self.cpu_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basemap_url_must_be_an_xyz_template() {
        for ok in [
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            "https://{s}.tiles.example/{z}/{x}/{y}{r}.png?key=abc",
        ] {
            let c = ApiConfig {
                basemap_url: Some(ok.into()),
                ..ApiConfig::default()
            };
            assert!(c.validate().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("tile.example/{z}/{x}/{y}.png", "http"),
            ("https://tile.example/{z}/{x}.png", "{y} exactly once"),
            (
                "https://tile.example/{z}/{x}/{y}/{y}.png",
                "{y} exactly once",
            ),
            (
                "https://tile.example/{zoom}/{z}/{x}/{y}.png",
                "unknown placeholder {zoom}",
            ),
            (
                "https://tile.example/{z}/{x}/{y}.png\"><script>",
                "not allowed",
            ),
            ("https://tile.example/{z}/{x}/{y}.png{", "unclosed"),
            ("https://tile.example/}{z}/{x}/{y}.png", "stray"),
        ] {
            let c = ApiConfig {
                basemap_url: Some(bad.into()),
                ..ApiConfig::default()
            };
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, "basemap_url", "{bad}");
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
            assert!(
                e.to_string().starts_with("invalid api.basemap_url: "),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        assert!(ApiConfig::default().validate().is_ok());
        let c = ApiConfig {
            request_timeout_s: 0.0,
            ..ApiConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "request_timeout_s");
        for (c, field) in [
            (
                ApiConfig {
                    header_read_timeout_s: f64::NAN,
                    ..ApiConfig::default()
                },
                "header_read_timeout_s",
            ),
            (
                ApiConfig {
                    idle_timeout_s: -1.0,
                    ..ApiConfig::default()
                },
                "idle_timeout_s",
            ),
            (
                ApiConfig {
                    max_connections: 0,
                    ..ApiConfig::default()
                },
                "max_connections",
            ),
            (
                ApiConfig {
                    cpu_workers: 5000,
                    ..ApiConfig::default()
                },
                "cpu_workers",
            ),
        ] {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field);
            assert!(
                e.to_string().starts_with(&format!("invalid api.{field}:")),
                "{e}"
            );
        }
        assert!(ApiConfig::default().cpu_worker_count() >= 1);
        for (c, field) in [
            (
                ApiConfig {
                    tile_cache_mb: 100_000,
                    ..ApiConfig::default()
                },
                "tile_cache_mb",
            ),
            (
                ApiConfig {
                    public_url: Some("rain.example".into()),
                    ..ApiConfig::default()
                },
                "public_url",
            ),
            (
                ApiConfig {
                    public_url: Some("https://rain.example/".into()),
                    ..ApiConfig::default()
                },
                "public_url",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
        let c = ApiConfig {
            public_url: Some("https://rain.example".into()),
            tile_cache_mb: 0,
            ..ApiConfig::default()
        };
        assert!(c.validate().is_ok());
        let c = ApiConfig {
            cors_origins: vec!["example.org".into()],
            ..ApiConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "cors_origins");
        let c = ApiConfig {
            cors_origins: vec!["*".into(), "https://maps.example.org".into()],
            ..ApiConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn parses_from_toml_like_json_with_defaults() {
        let c: ApiConfig =
            serde_json::from_str(r#"{"cors_origins": ["*"], "ready_max_age_s": 60}"#)
                .expect("valid");
        assert_eq!(c.cors_origins, vec!["*".to_string()]);
        assert_eq!(c.ready_max_age_s, 60);
        assert_eq!(c.request_timeout_s, 10.0);
        assert!(serde_json::from_str::<ApiConfig>(r#"{"nonsense": 1}"#).is_err());
    }
}
