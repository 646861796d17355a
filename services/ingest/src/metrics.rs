//! Prometheus metrics of the ingest job.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `raincast_ingest_scans_total` | counter: scans stored | radar |
//! | `raincast_ingest_skipped_total` | counter: scans found already stored | radar |
//! | `raincast_ingest_failures_total` | counter: quarantined files and failed runs | radar, reason |
//! | `raincast_ingest_lag_seconds` | gauge: now minus the newest stored scan's time | radar |
//! | `raincast_ingest_job_duration_seconds` | histogram: one run of the job | radar |
//! | `raincast_ingest_lease_takeovers_total` | counter: leases taken from an expired holder | radar |
//! | `raincast_ingest_reconciled_total` | counter: files the reconciling listing stored that the queue missed | radar |
//! | `raincast_ingest_late_total` | counter: files found timed before the listing window (uploaded after a newer scan) and ingested or quarantined | radar |
//! | `raincast_ingest_queue_messages_total` | counter: queue messages by outcome (`done`, `test_event`, `not_s3`, `retry`) | outcome |
//! | `raincast_ingest_queue_records_skipped_total` | counter: notified objects not ingested (`outside_source`, `unconfigured_radar`, `no_match`, `not_created`) | reason |
//! | `raincast_ingest_queue_lag_seconds` | histogram: notification's event time to the scan stored | |
//! | `raincast_ingest_queue_receive_failures_total` | counter: receives from the queue that failed (SQS unreachable, access denied) | |

use prometheus::{GaugeVec, TextEncoder};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The ingest metrics, registered in one [`Registry`]. Cheap to clone.
#[derive(Clone)]
pub struct IngestMetrics {
    registry: Registry,
    pub scans: IntCounterVec,
    pub skipped: IntCounterVec,
    pub failures: IntCounterVec,
    pub lag_seconds: GaugeVec,
    pub job_duration: HistogramVec,
    pub lease_takeovers: IntCounterVec,
    pub reconciled: IntCounterVec,
    pub late: IntCounterVec,
    pub queue_messages: IntCounterVec,
    pub queue_records_skipped: IntCounterVec,
    pub queue_receive_failures: prometheus::IntCounter,
    pub queue_lag: prometheus::Histogram,
}

impl std::fmt::Debug for IngestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestMetrics")
    }
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `registry` (share one
    /// registry with the HTTP service's `/metrics`).
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let scans = IntCounterVec::new(
            Opts::new("raincast_ingest_scans_total", "Scans decoded and stored"),
            &["radar"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_skipped_total",
                "Listed scans that were already stored",
            ),
            &["radar"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_failures_total",
                "Quarantined files (by decode or encode reason) and failed runs (by error kind)",
            ),
            &["radar", "reason"],
        )?;
        let lag_seconds = GaugeVec::new(
            Opts::new(
                "raincast_ingest_lag_seconds",
                "Seconds from the newest stored scan's time to now (set as each scan is stored and after each ingest run): it grows while a radar is quiet",
            ),
            &["radar"],
        )?;
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "raincast_ingest_job_duration_seconds",
                "Duration of one ingest run",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["radar"],
        )?;
        let lease_takeovers = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_lease_takeovers_total",
                "Ingest leases taken over from a holder whose lease had run out",
            ),
            &["radar"],
        )?;
        let reconciled = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_reconciled_total",
                "Files the reconciling listing found and stored that the queue missed \
                 (growing: notifications are being lost)",
            ),
            &["radar"],
        )?;
        let late = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_late_total",
                "Files timed before the listing window (uploaded after a newer scan had \
                 moved the checkpoint) found and ingested or quarantined",
            ),
            &["radar"],
        )?;
        let queue_messages = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_queue_messages_total",
                "Queue messages handled: done (deleted after its records), test_event and \
                 not_s3 (deleted, ignored), retry (left in the queue to come back)",
            ),
            &["outcome"],
        )?;
        let queue_records_skipped = IntCounterVec::new(
            Opts::new(
                "raincast_ingest_queue_records_skipped_total",
                "Notified objects not ingested, by reason",
            ),
            &["reason"],
        )?;
        let queue_receive_failures = prometheus::IntCounter::new(
            "raincast_ingest_queue_receive_failures_total",
            "Receives from the queue that failed (SQS unreachable, access denied); \
             the consumer keeps trying with a backoff of up to 32 s",
        )?;
        let queue_lag = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "raincast_ingest_queue_lag_seconds",
                "Seconds from a notification's event time (object created) to its scan stored",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0,
            ]),
        )?;
        registry.register(Box::new(reconciled.clone()))?;
        registry.register(Box::new(late.clone()))?;
        registry.register(Box::new(queue_messages.clone()))?;
        registry.register(Box::new(queue_records_skipped.clone()))?;
        registry.register(Box::new(queue_lag.clone()))?;
        registry.register(Box::new(queue_receive_failures.clone()))?;
        registry.register(Box::new(scans.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(lag_seconds.clone()))?;
        registry.register(Box::new(job_duration.clone()))?;
        registry.register(Box::new(lease_takeovers.clone()))?;
        Ok(Self {
            registry: registry.clone(),
            scans,
            skipped,
            failures,
            lag_seconds,
            job_duration,
            lease_takeovers,
            reconciled,
            late,
            queue_messages,
            queue_records_skipped,
            queue_receive_failures,
            queue_lag,
        })
    }

    /// Metrics in a private registry (tests, one-shot commands).
    pub fn standalone() -> Self {
        // Registering fresh collectors in a fresh registry cannot collide.
        #[allow(clippy::unwrap_used)]
        Self::new(&Registry::new()).unwrap()
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_text_format() {
        let m = IngestMetrics::standalone();
        m.scans.with_label_values(&["bom02"]).inc_by(3);
        m.failures.with_label_values(&["bom02", "bad_magic"]).inc();
        m.lag_seconds.with_label_values(&["bom02"]).set(42.0);
        m.job_duration.with_label_values(&["bom02"]).observe(0.3);
        m.lease_takeovers.with_label_values(&["bom02"]).inc();
        let text = m.render();
        assert!(
            text.contains("raincast_ingest_scans_total{radar=\"bom02\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("raincast_ingest_failures_total{radar=\"bom02\",reason=\"bad_magic\"} 1")
        );
        assert!(text.contains("raincast_ingest_lag_seconds{radar=\"bom02\"} 42"));
        assert!(text.contains("raincast_ingest_job_duration_seconds_count{radar=\"bom02\"} 1"));
        assert!(text.contains("raincast_ingest_lease_takeovers_total{radar=\"bom02\"} 1"));
        // Registering twice in one registry is refused, not silently doubled.
        let r = Registry::new();
        IngestMetrics::new(&r).unwrap();
        assert!(IngestMetrics::new(&r).is_err());
    }
}
