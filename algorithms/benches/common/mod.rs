//! Shared by the criterion benches: a measurement of the benchmarking
//! thread's CPU time.
//!
//! Times are the **CPU time of the benchmarking thread** (from
//! `/proc/thread-self/schedstat`), not wall-clock: the project machine has
//! 2 cores shared by several jobs, and wall-clock would count the time spent
//! waiting for a core. Where that file is missing (not Linux), wall-clock is
//! used and the bench says so.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};

const SCHEDSTAT: &str = "/proc/thread-self/schedstat";

/// Criterion measurement: CPU time of the calling thread in nanoseconds.
pub struct ThreadCpuTime {
    wall: std::time::Instant,
    proc_available: bool,
}

impl ThreadCpuTime {
    pub fn new() -> Self {
        let proc_available = std::fs::read_to_string(SCHEDSTAT).is_ok();
        if !proc_available {
            eprintln!("note: {SCHEDSTAT} not readable; measuring wall-clock time");
        }
        Self {
            wall: std::time::Instant::now(),
            proc_available,
        }
    }

    /// Nanoseconds the thread has run on a CPU (first field of schedstat).
    fn now_ns(&self) -> u64 {
        if self.proc_available {
            if let Some(ns) = std::fs::read_to_string(SCHEDSTAT)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
            {
                return ns;
            }
        }
        self.wall.elapsed().as_nanos() as u64
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds as ns, µs, ms or s.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e3, "µs"),
            t if t < 1e9 => (1e6, "ms"),
            _ => (1e9, "s"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (n, unit) = match throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => (*b as f64, "B/s"),
            Throughput::Elements(e) => (*e as f64, "elem/s"),
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

pub type Crit = Criterion<ThreadCpuTime>;
