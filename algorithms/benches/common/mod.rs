//! Shared by the criterion benches: a measurement of the benchmarking
//! thread's CPU time.
//!
//! Times are the **CPU time of the benchmarking thread** (from
//! `/proc/thread-self/schedstat`), not wall-clock: the project machine has
//! 2 cores shared by several jobs, and wall-clock would count the time spent
//! waiting for a core. Where that file is missing (not Linux), wall-clock is
//! used and the bench says so.
//!
//! The benches also run with **the `raincast` binary's allocator settings**
//! ([`binary_allocator`]): with glibc's defaults, a 1 MB field freed and
//! allocated again each iteration could come from fresh `mmap` pages every
//! time (glibc's dynamic mmap and trim thresholds settle differently from
//! one process to the next), and a bench then measured page faults: e.g.
//! `stage_warp/bom` took 0.93 ms in some processes and 1.8–2.0 ms in others,
//! with 95,000 against 800,000 page faults (`perf stat -e page-faults`).
//! The binary fixes both thresholds at start, so it never pays that.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};
use raincast_algorithms::decode;
use raincast_algorithms::prep::{self, RainField};
use std::path::{Path, PathBuf};

const SCHEDSTAT: &str = "/proc/thread-self/schedstat";

/// Criterion measurement: CPU time of the calling thread in nanoseconds.
pub struct ThreadCpuTime {
    wall: std::time::Instant,
    proc_available: bool,
}

/// The allocator thresholds of `tune_allocator` in
/// `services/raincast/src/main.rs`: no `mmap` below 32 MB, no trimming
/// below 512 MB (the benches run on one thread, so its arena limit does
/// not matter here). Called by [`ThreadCpuTime::new`], i.e. before any
/// bench runs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt, as in the binary
pub fn binary_allocator() {
    // SAFETY: mallopt only sets glibc allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn binary_allocator() {}

impl ThreadCpuTime {
    /// Also applies [`binary_allocator`].
    pub fn new() -> Self {
        binary_allocator();
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

// The shared radar days. Each bench uses some of these helpers, so the
// ones a bench does not use are not dead code of the project.

/// `../shared/data` beside the workspace.
#[allow(dead_code)]
pub fn data_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../shared/data")
}

/// The files of a folder of scans, sorted by name (i.e. by time).
#[allow(dead_code)]
pub fn scan_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// One scan file decoded and prepared with the default options.
#[allow(dead_code)]
pub fn read_scan(path: &Path) -> Result<RainField, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_name().and_then(|n| n.to_str());
    let scan =
        decode::decode(&bytes, name, None).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(prep::prep(&scan, &Default::default()))
}
