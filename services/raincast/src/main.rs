//! `raincast`: the command-line entry point.

use clap::{Parser, Subcommand};

mod cli;
mod files;
mod ingest_cmd;
mod keys_cmd;
mod notify_cmd;
mod nowcast_cmd;
mod prep_cmd;
mod run_cmd;
mod scans_cmd;
mod serve_cmd;
mod verify_cmd;

/// Raincast: rain-radar nowcasting. Decode radar scans, ingest them from S3,
/// nowcast the next two hours, serve an HTTP API and post rain alerts.
#[derive(Parser, Debug)]
#[command(name = "raincast", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "RAINCAST_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode one scan (or every scan below a folder), run the hot prep and print a JSON summary.
    Prep(prep_cmd::PrepArgs),
    /// One notifier pass: rain events for places, posted to X or the outbox (one JSON line per event).
    Notify(notify_cmd::NotifyArgs),
    /// Ingest raw scans from a bucket or folder into the store: one pass
    /// with --once (JSON summary), else the scheduled jobs until Ctrl-C.
    Ingest(ingest_cmd::IngestArgs),
    /// Inspect stored and quarantined scans.
    Scans(scans_cmd::ScansArgs),
    /// Create, list and revoke API keys.
    Keys(keys_cmd::KeysArgs),
    /// Run every job (ingest, nowcast, notifier) and the HTTP API with the
    /// map page until Ctrl-C; with no source and no radar configured, on the synthetic
    /// demo radar.
    Run(run_cmd::RunArgs),
    /// Serve the HTTP API and map page over an existing store (no ingest).
    Api(serve_cmd::ApiArgs),
    /// Nowcast from consecutive scans of one radar: writes one .npy per lead.
    Nowcast(nowcast_cmd::NowcastArgs),
    /// Nowcast at every start time of a day of scans and score against persistence.
    Verify(verify_cmd::VerifyArgs),
}

/// The top-level `log_json` of the `--config` file among `args`, read
/// before logging starts (the configuration itself is loaded, and checked,
/// by the command); false when there is none or it does not parse.
fn file_log_json(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<String> = args.filter_map(|a| a.into_string().ok()).collect();
    let path = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("log_json").and_then(toml::Value::as_bool))
        .unwrap_or(false)
}

/// The log filter without `RAINCAST_LOG`. rustls' certificate verifier logs
/// each failed check at ERROR itself: one subscriber's broken webhook
/// certificate would page whoever alerts on ERROR lines. The delivery's own
/// warning names the failure.
const DEFAULT_LOG_FILTER: &str = "info,tokio_cron_scheduler=warn,rustls_platform_verifier=off";

fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAINCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a journal or a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// glibc allocator settings for a process that allocates and frees
/// scan-sized arrays on many threads (docs/ARCHITECTURE.md, "Allocator
/// settings"). Each is skipped when the environment sets it
/// (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`, or
/// the same tunable in `GLIBC_TUNABLES`), so it can be measured or
/// overridden without a rebuild.
///
/// * `M_MMAP_THRESHOLD` 32 MB (glibc's largest): freed scan-sized buffers (a
///   2200 × 1900 f32 field is 17 MB) stay in the heap instead of going back
///   to the kernel, so a scan does not pay its page faults again: a third of
///   the OPERA hot prep (70 ms instead of 46 ms, docs/PERFORMANCE.md).
/// * `M_TRIM_THRESHOLD` 512 MB: the heap keeps that much free memory at its
///   top instead of shrinking.
/// * `M_ARENA_MAX` 2: with the two settings above every arena keeps the
///   high-water mark of whatever ran on it, and glibc gives each new thread
///   (tokio's blocking pool starts and ends many) one of up to 8 × cores
///   arenas. In the `raincast run` soak 11 arenas held 382 MB for 86 MB in
///   use and the resident size kept growing; with 2 arenas it peaked at
///   245 MB instead of 360 MB and stopped climbing (docs/PERFORMANCE.md,
///   "Soak").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let settings = [
        (
            "MALLOC_MMAP_THRESHOLD_",
            "mmap_threshold",
            libc::M_MMAP_THRESHOLD,
            32 << 20,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            "trim_threshold",
            libc::M_TRIM_THRESHOLD,
            512 << 20,
        ),
        ("MALLOC_ARENA_MAX", "arena_max", libc::M_ARENA_MAX, 2),
    ];
    for (env, tunable, param, value) in settings {
        if std::env::var_os(env).is_some() || tunables.contains(&format!("glibc.malloc.{tunable}="))
        {
            continue;
        }
        // SAFETY: mallopt only sets glibc allocator parameters; it is called
        // at the start of main, before any other thread exists.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Exit status of a configuration error (sysexits' `EX_CONFIG`): the
/// packaged unit does not restart on it (`RestartPreventExitStatus=78`),
/// since a restart cannot mend the file.
const EXIT_CONFIG: u8 = 78;

/// Runs the command; an error ends the process with status 1 (78 for a
/// configuration error) after its message and causes, one per line (one
/// JSON line under `--log-json`), and never a stack backtrace: these are
/// operators' errors (a bad flag value, a file that is not there), which
/// anyhow would print with a backtrace of the binary whenever
/// `RUST_BACKTRACE` is set. Panics keep theirs.
fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // The flag or RAINCAST_LOG_JSON first, else the file's `log_json`.
    let json = if std::env::var_os("RAINCAST_LOG_JSON").is_some() || cli.log_json {
        cli.log_json
    } else {
        file_log_json(std::env::args_os())
    };
    init_tracing(json);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", error_json(&e, chrono::Utc::now()));
            } else {
                eprintln!("{}", error_report(&e));
            }
            if is_config_error(&e) {
                std::process::ExitCode::from(EXIT_CONFIG)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Whether the error comes from reading or validating the configuration.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<raincast_config::ConfigError>().is_some())
}

/// The final error as one line in the shape of the JSON logs
/// (`timestamp`, `level`, `fields.message`, `target`), its causes in
/// `fields.causes`.
fn error_json(e: &anyhow::Error, now: chrono::DateTime<chrono::Utc>) -> String {
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    serde_json::json!({
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "fields": {"message": e.to_string(), "causes": causes},
        "target": "raincast",
    })
    .to_string()
}

/// `Error: …` and a `caused by: …` line per cause whose text the lines
/// before do not already hold (many errors repeat their source's text).
fn error_report(e: &anyhow::Error) -> String {
    let mut out = format!("Error: {e}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Prep(args) => prep_cmd::run(args),
        Command::Notify(args) => notify_cmd::run(args),
        Command::Ingest(args) => ingest_cmd::run(args),
        Command::Scans(args) => scans_cmd::run(args),
        Command::Keys(args) => keys_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Api(args) => serve_cmd::run(args),
        Command::Nowcast(args) => nowcast_cmd::run(args),
        Command::Verify(args) => verify_cmd::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[test]
    fn the_default_filter_keeps_info_and_drops_rustls_own_errors() {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                super::DEFAULT_LOG_FILTER,
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            assert!(
                tracing::event_enabled!(target: "raincast_notifier::webhook", tracing::Level::INFO)
            );
            assert!(!tracing::event_enabled!(
                target: "rustls_platform_verifier::verification::others",
                tracing::Level::ERROR
            ));
            assert!(
                !tracing::event_enabled!(target: "tokio_cron_scheduler::job", tracing::Level::INFO)
            );
        });
    }

    #[test]
    fn log_json_is_read_from_the_config_file() {
        let dir = raincast_testkit::TempDir::new("log-json");
        let file = dir.path().join("raincast.toml");
        std::fs::write(&file, "log_json = true\n").expect("write");
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let f = file.display().to_string();
        assert!(super::file_log_json(
            args(&["raincast", "run", "--config", &f]).into_iter()
        ));
        assert!(super::file_log_json(
            args(&["raincast", "run", &format!("--config={f}")]).into_iter()
        ));
        assert!(!super::file_log_json(
            args(&["raincast", "run"]).into_iter()
        ));
        std::fs::write(&file, "log_json = false\n").expect("write");
        assert!(!super::file_log_json(
            args(&["raincast", "run", "--config", &f]).into_iter()
        ));
    }

    #[test]
    fn the_error_report_lists_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io).context("reading scans.toml");
        assert_eq!(
            error_report(&e),
            "Error: reading scans.toml\n  caused by: disk on fire"
        );
        // A message that already holds its cause's text says it once.
        let e = anyhow::anyhow!("inner").context("outer: inner");
        assert_eq!(error_report(&e), "Error: outer: inner");
    }
}
