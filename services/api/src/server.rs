//! The HTTP/1.1 server under [`crate::serve`]: hyper connections with
//!
//! * a **header-read timeout**: a client that has not sent a complete
//!   request head this long after the connection (or its previous
//!   response) is disconnected (hyper's `header_read_timeout`, which starts
//!   as soon as the connection waits for a request head, so it also ends
//!   idle keep-alive connections);
//! * an **idle timeout**: a connection with no request in flight and no
//!   bytes moving either way for this long is closed: clients that stop
//!   reading their response, and idle connections when it is the shorter;
//! * a **connection cap**: at most `max_connections` are open; while at the
//!   cap the server stops accepting and new connections wait in the
//!   kernel's listen backlog;
//! * **graceful shutdown**: when the shutdown future resolves, accepting
//!   stops, idle connections close, and requests in flight finish.

use crate::config::ApiConfig;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The connection limits of the server (from [`ApiConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&ApiConfig> for Limits {
    fn from(c: &ApiConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout(),
            idle_timeout: c.idle_timeout(),
            max_connections: c.max_connections.max(1),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then drains. `open` counts the open connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    open: prometheus::IntGauge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let conn = Connection {
            app: app.clone(),
            limits,
            open: open.clone(),
            _slot: slot,
        };
        tokio::spawn(conn.run(stream, stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back = drained.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Per-connection accept errors are the client's; others (out of file
/// descriptors) pass with time, so wait a little before accepting again.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing accepts for 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

struct Connection {
    app: Router,
    limits: Limits,
    open: prometheus::IntGauge,
    /// Released when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        self.open.inc();
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let act = activity.clone();
        let service = hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
            let busy = act.request_started();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await;
                drop(busy);
                resp
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let idle = idle(activity, self.limits.idle_timeout);
        tokio::pin!(idle);
        let mut stopping = false;
        if *stop.borrow_and_update() {
            conn.as_mut().graceful_shutdown();
            stopping = true;
        }
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = &mut idle => {
                    tracing::debug!("closing an idle connection");
                    break;
                }
                _ = stop.changed(), if !stopping => {
                    conn.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
        self.open.dec();
    }
}

/// When a connection last moved bytes and how many requests it has in flight.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being handled (until its response head is ready).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Resolves once the connection has been idle for `limit`.
async fn idle(a: Arc<Activity>, limit: Duration) {
    loop {
        let since = a.since_last();
        if a.in_flight.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(limit).await;
        } else if since >= limit {
            return;
        } else {
            tokio::time::sleep(limit - since).await;
        }
    }
}

/// A stream that records when bytes move through it.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
