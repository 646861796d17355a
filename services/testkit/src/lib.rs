//! Test support for Raincast's tests against real servers.
//!
//! * [`Server::moto`] and [`Server::dynalite`] find `moto_server` /
//!   `dynalite` on `PATH` (`.ci/services.sh` installs them), start them on a
//!   free 127.0.0.1 port (one no other server of the process was given),
//!   wait until they answer, check that the process answering is the one
//!   started, and kill them on drop.
//!   When a binary is missing they print `skipped: NAME not on PATH` and
//!   return `None`, except when the environment variable `CI` is set: then
//!   a missing server is a failure.
//! * [`TcpProxy`] forwards a port to a server and can be switched off to
//!   simulate an outage without losing the server's data.
//! * [`shared_data`] finds `../shared/data` next to the repository.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// True when running under CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Reports a missing prerequisite: a skip outside CI, a panic under CI.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("{reason} (CI is set, so this is a failure: run `. .ci/services.sh` first)");
    }
    eprintln!("skipped: {reason}");
}

/// Looks a binary up on `PATH`.
pub fn find_on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, read, released), never one this
/// process handed out before: the tests of one binary run in parallel, and
/// the kernel can give a port just released to the next caller, so two
/// servers could otherwise be told to bind the same port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A server process started for one test; killed when dropped.
pub struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// moto's server (S3 and DynamoDB, among others), or `None` with a
    /// printed skip reason when `moto_server` is not on PATH.
    pub fn moto() -> Option<Server> {
        let bin = Self::locate("moto_server")?;
        Some(Self::start("moto_server", &bin, |port| {
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]
        }))
    }

    /// dynalite (DynamoDB with its exact size and batch limits), or `None`
    /// with a printed skip reason when `dynalite` is not on PATH.
    pub fn dynalite() -> Option<Server> {
        let bin = Self::locate("dynalite")?;
        Some(Self::start("dynalite", &bin, |port| {
            vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--createTableMs".into(),
                "20".into(),
                "--deleteTableMs".into(),
                "20".into(),
                "--updateTableMs".into(),
                "20".into(),
            ]
        }))
    }

    fn locate(bin: &str) -> Option<PathBuf> {
        let found = find_on_path(bin);
        if found.is_none() {
            skip_or_fail(&format!("{bin} not on PATH"));
        }
        found
    }

    fn start(name: &'static str, bin: &Path, args: impl Fn(u16) -> Vec<String>) -> Server {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // A port can be taken between free_port() and the server's bind:
        // try a few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!(
                "raincast-{name}-{}-{}-{port}.log",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let out = std::fs::File::create(&log).expect("server log file");
            let err = out.try_clone().expect("server log file");
            let child = Command::new(bin)
                .args(args(port))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = Server {
                name,
                child,
                port,
                log,
            };
            match server.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("{name} did not start: {last_err}");
    }

    /// Polls `GET /` until the server answers with any HTTP status, and
    /// checks that the process listening is this child: when another
    /// process holds the port, the child fails to bind and exits, but the
    /// other one answers (CI once saw two tests share one dynalite that
    /// way, and one test's server vanish when the other test ended).
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}; log: {}", self.log_text()));
            }
            if http_get_status(self.port, "/").is_some() {
                return match listener_is(self.child.id(), self.port) {
                    Some(false) => Err(format!(
                        "port {} answers, but from another process",
                        self.port
                    )),
                    // `None`: no /proc to tell (not Linux); trusted.
                    Some(true) | None => Ok(()),
                };
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "no answer after {limit:?}; log: {}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its name (`moto_server`, `dynalite`).
    pub fn name(&self) -> &str {
        self.name
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`,
/// from `/proc/net/tcp` (the listening sockets' inodes) and
/// `/proc/PID/fd`; `None` when `/proc` cannot tell.
fn listener_is(pid: u32, port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Lines: "sl local_address rem_address st ... inode": local
    // "0100007F:1F90" (hex port), st "0A" (LISTEN), inode the 10th field.
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let (state, inode) = (*f.get(3)?, *f.get(9)?);
            (local_port == port && state == "0A").then(|| format!("socket:[{inode}]"))
        })
        .collect();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    }))
}

/// A bare HTTP/1.0 GET on loopback; the status code, or `None` when nothing answers.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Environment variables that point an AWS SDK process (the `raincast`
/// binary) at local servers with dummy credentials.
pub fn aws_env(s3: Option<&Server>, dynamodb: Option<&Server>) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    if let Some(s) = s3 {
        env.push(("AWS_ENDPOINT_URL_S3".into(), s.endpoint()));
    }
    if let Some(d) = dynamodb {
        env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), d.endpoint()));
    }
    env
}

/// The directory of the package whose test is running, as cargo says at
/// run time (`CARGO_MANIFEST_DIR` in the test's environment). The value
/// compiled in is only the fallback for a test binary started by hand: CI
/// reuses one target folder for clones at different paths, and cargo does
/// not rebuild a test binary because its checkout moved.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The workspace root: the nearest folder above [`package_dir`] that holds
/// `Cargo.lock`.
pub fn workspace_root() -> PathBuf {
    let dir = package_dir();
    dir.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(dir)
}

/// `../shared/data` (the real radar scans) next to the repository, or `None`
/// with the printed reason `skipped: ../shared/data not found`.
pub fn shared_data() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip_or_fail("../shared/data not found");
        None
    }
}

/// A TCP forwarder from a loopback port to `target` that can be switched
/// off: while down it closes every open connection and every new one at
/// once, as an unreachable server would look to a client. The target keeps
/// its data. It can also stall ([`Self::stall`]): connections are accepted
/// and held, and nothing is forwarded or answered, as a server that hangs
/// (a frozen process, a black-holed network) looks to a client.
pub struct TcpProxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    stalled: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding (up) on a free port. Needs a tokio runtime.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (tx, rx) = tokio::sync::watch::channel(true);
        let (stall_tx, stall_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = rx.clone();
                let mut stalled = stall_rx.clone();
                tokio::spawn(async move {
                    let stall_now = *stalled.borrow();
                    if stall_now {
                        // Held open, never answered, until the proxy is
                        // down or dropped.
                        let _ = down.wait_for(|up| !*up).await.is_ok();
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let stall_now = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        _ = async { down.wait_for(|up| !*up).await.is_ok() } => false,
                        _ = async { stalled.wait_for(|s| *s).await.is_ok() } => true,
                    };
                    if stall_now {
                        // Stop forwarding; the connection stays open.
                        let _ = down.wait_for(|up| !*up).await.is_ok();
                    }
                });
            }
        });
        TcpProxy {
            port,
            up: tx,
            stalled: stall_tx,
            task,
        }
    }

    /// From now on nothing is forwarded: open and new connections are held
    /// and never answered (until [`Self::set_up`]`(false)` closes them).
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Switches forwarding on or off.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A folder under the system temp dir, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty folder whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("raincast-{prefix}-")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shared counter handy for unique names across tests in one process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_loopback_bindable() {
        let p = free_port();
        assert!(p > 0);
        assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..1000).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 1000);
    }

    #[test]
    fn the_listener_of_a_port_is_told_apart_from_another_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let Some(mine) = listener_is(std::process::id(), port) else {
            // No /proc (not Linux): nothing to check here.
            assert!(!in_ci(), "CI runs on Linux, where /proc tells");
            return;
        };
        assert!(mine);
        // Another process does not hold it (the case of a server that
        // failed to bind a port some other process answers on).
        let mut other = Command::new("sleep").arg("5").spawn().unwrap();
        let theirs = listener_is(other.id(), port);
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(theirs, Some(false));
        // Nothing listens on a released port.
        drop(listener);
        assert_eq!(listener_is(std::process::id(), port), Some(false));
    }

    #[test]
    fn missing_binaries_are_not_found() {
        assert!(find_on_path("raincast-no-such-binary").is_none());
        assert!(http_get_status(free_port(), "/").is_none());
    }
}
