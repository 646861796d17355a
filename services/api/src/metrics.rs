//! Prometheus metrics of the HTTP API, registered in the registry shared
//! with the other jobs of the process (so `/metrics` shows them all).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `raincast_http_requests_total` | counter: responses sent | route, method, status |
//! | `raincast_http_request_duration_seconds` | histogram: time to the response head | route |
//! | `raincast_api_render_seconds` | histogram: PNG / GIF rendering | kind |
//! | `raincast_api_busy_total` | counter: CPU-heavy requests refused with 503 `busy` | |
//! | `raincast_http_open_connections` | gauge: client connections open | |
//! | `raincast_skill_csi` | gauge: live CSI at 1 mm/h over the last 24 h | radar, lead_min, method |
//! | `raincast_skill_brier` | gauge: live Brier score of the probability over the last 24 h | radar, lead_min, method |
//! | `raincast_skill_cases` | gauge: scans scored over the last 24 h | radar, lead_min |
//!
//! The skill gauges are set at each scrape from the nowcast service's 24 h
//! report (no I/O); `radar` is a configured radar, `lead_min` one of its
//! leads, `method` `raincast` or `persistence`. A score that is undefined
//! (no event yet) is left out.
//!
//! Label values are bounded: `route` is the matched route template
//! (`/v1/radars/{id}`), never the raw path, and unmatched paths count as
//! `unmatched`; `method` is one of the methods in [`METHODS`], any other
//! method counts as `other`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::time::Instant;

/// The API's collectors plus the registry they live in. Cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub render: HistogramVec,
    pub busy: IntCounter,
    pub open_connections: IntGauge,
    pub skill_csi: GaugeVec,
    pub skill_brier: GaugeVec,
    pub skill_cases: IntGaugeVec,
}

/// Methods counted under their own name; any other is `other`.
pub const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
];

/// The `method` label of a request: its name if it is one of [`METHODS`],
/// else `other`.
pub fn method_label(m: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|k| *k == m)
        .map_or("other", |k| k.as_str())
}

impl ApiMetrics {
    /// Creates the collectors and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("raincast_http_requests_total", "HTTP responses sent"),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "raincast_http_request_duration_seconds",
                "Time from request to response head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        let render = HistogramVec::new(
            HistogramOpts::new(
                "raincast_api_render_seconds",
                "Rendering of PNG frames and GIF animations",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["kind"],
        )?;
        let busy = IntCounter::new(
            "raincast_api_busy_total",
            "CPU-heavy requests refused with 503 busy (CPU queue full)",
        )?;
        let open_connections =
            IntGauge::new("raincast_http_open_connections", "Client connections open")?;
        let skill_csi = GaugeVec::new(
            Opts::new(
                "raincast_skill_csi",
                "Live CSI at 1 mm/h over the last 24 h",
            ),
            &["radar", "lead_min", "method"],
        )?;
        let skill_brier = GaugeVec::new(
            Opts::new(
                "raincast_skill_brier",
                "Live Brier score of the probability of rain over the last 24 h",
            ),
            &["radar", "lead_min", "method"],
        )?;
        let skill_cases = IntGaugeVec::new(
            Opts::new("raincast_skill_cases", "Scans scored over the last 24 h"),
            &["radar", "lead_min"],
        )?;
        registry.register(Box::new(skill_csi.clone()))?;
        registry.register(Box::new(skill_brier.clone()))?;
        registry.register(Box::new(skill_cases.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(busy.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(render.clone()))?;
        Ok(Self {
            registry: registry.clone(),
            requests,
            duration,
            render,
            busy,
            open_connections,
            skill_csi,
            skill_brier,
            skill_cases,
        })
    }

    /// Sets the skill gauges of `radar` from its 24 h live skill report.
    pub fn set_skill(&self, radar: &str, report: &raincast_nowcast::skill::SkillReport) {
        for l in &report.leads {
            let lead = l.lead_min.to_string();
            self.skill_cases
                .with_label_values(&[radar, lead.as_str()])
                .set(l.raincast.cases as i64);
            for (method, m) in [("raincast", &l.raincast), ("persistence", &l.persistence)] {
                let labels = [radar, lead.as_str(), method];
                match m.csi_1mm_h() {
                    Some(v) => self.skill_csi.with_label_values(&labels).set(v),
                    None => {
                        let _ = self.skill_csi.remove_label_values(&labels);
                    }
                }
                match m.brier {
                    Some(v) => self.skill_brier.with_label_values(&labels).set(v),
                    None => {
                        let _ = self.skill_brier.remove_label_values(&labels);
                    }
                }
            }
        }
    }

    /// Everything in the shared registry, in the Prometheus text format.
    pub fn render_text(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}

/// Middleware: counts and times every request by route template.
pub async fn track(State(m): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    m.duration
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.as_str(), method, resp.status().as_str()])
        .inc();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_list_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"BREW").expect("a token");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
