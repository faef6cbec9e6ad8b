//! The one HTTP server stack of the services, axum on tokio: [`bind`] a listener (errors name
//! the address), [`serve`] a router until a shutdown future resolves (in-flight requests
//! finish first), and, for the synchronous callers (watch's `/metrics`, tests, benchmarks), a
//! tokio runtime on its own thread ([`RuntimeThread`]) and a [`Server`] started on it that
//! stops cleanly when told or dropped.
//!
//! Slow and idle clients cannot starve the others ([`Limits`]): at most `max_connections`
//! connections are served at once (an accept-side semaphore: beyond it, new connections wait
//! in the kernel's backlog and use no file descriptor of ours), and a request's header must
//! arrive within `header_timeout` — which is also how long an idle keep-alive connection is
//! kept. (`axum::serve` sets neither: it builds hyper's connection without a timer, so
//! hyper's `header_read_timeout` never fires.) The body's deadline is the handler's (serve
//! answers 408). [`fit_connections`] keeps the cap below the process's file-descriptor limit.
//!
//! A response sent before its request's body was read to the end says `Connection: close`
//! ([`close_unless_body_read`], on every router served here). hyper closes such a connection
//! after the response (its dispatcher drops the unread rest: `poll_drain_or_close_read` in
//! hyper 1.12's `proto/h1/dispatch.rs`) but announces it only when it knew before writing the
//! head, which it does not when the handler answers without reading; a client that pooled
//! the connection then sent its next request into a closing socket and lost it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{debug, warn};

/// How a server protects itself from slow and idle clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's header (line and fields) must arrive whole within this time after the
    /// connection is accepted or the previous response was sent; otherwise the connection
    /// is closed.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Default of [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// File descriptors kept for everything but connections (git, files, logs, the listener).
pub const RESERVED_FDS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Raises the process's soft file-descriptor limit to its hard limit (as Go's runtime does
/// at start) and returns how many connections fit: `wanted`, or fewer (with the reason) when
/// the limit leaves less than `wanted` + [`RESERVED_FDS`].
pub fn fit_connections(wanted: usize) -> (usize, Option<String>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (wanted, None);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let limit = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    let room = limit.saturating_sub(RESERVED_FDS).max(1);
    if wanted > room {
        (
            room,
            Some(format!(
                "the file-descriptor limit is {limit}: serving at most {room} connections at once instead of {wanted} (raise `ulimit -n` for more)"
            )),
        )
    } else {
        (wanted, None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address is taken, or not ours to listen on.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The runtime or the server failed.
    #[error("the HTTP server failed")]
    Io(#[source] std::io::Error),
}

/// How much of a request body its handler left unread is read and dropped after it, so that
/// the connection carries the next request ([`close_unless_body_read`]); the largest POST
/// body Go's net/http drains the same way (`maxPostHandlerReadBytes`).
pub const MAX_DISCARD: usize = 256 * 1024;

/// How long a stopping [`Server`] waits for in-flight requests.
pub const GRACE: Duration = Duration::from_secs(5);

/// Binds `addr` (port 0: any free port), ready for tokio.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HttpError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(HttpError::Io)?;
    Ok(listener)
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets
/// in-flight requests finish (idle connections are closed at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    // An unread body is drained within the header deadline: the time a client may take to
    // send the next request's header is the time it may take to finish this one's body.
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.header_timeout,
        close_unless_body_read,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropped to tell every connection to finish; each holds a receiver of `open` until it
    // ends, so `open.closed()` resolves once all are gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (open, _) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or memory, or a connection reset before it
                    // was accepted: wait a little rather than spin (as axum does).
                    debug!(error = %e, "accept failed");
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        warn!(error = %e, "cannot accept connections");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let still_open = open.subscribe();
        tokio::spawn(async move {
            let _slot = slot;
            let _still_open = still_open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(stop_rx);
    open.closed().await;
    Ok(())
}

/// Reads and drops what the handler left of a request body it never touched, up to
/// [`MAX_DISCARD`] bytes and within `deadline` (a refusal that did not need the body: a
/// 404, a 405, a GET that carried one); then adds `Connection: close` to a response whose
/// request body was still not read to its end (or failed): the connection cannot carry
/// another request, and the client must not pool it.
///
/// Without the drain hyper closes the socket with the rest of the body unread; the kernel
/// then answers the client's further bytes with a reset, and a client still writing its
/// body (most do so before reading) gets an error instead of the answer. A body the
/// handler began to read is not drained: the handler decided how much to read (serve's 413
/// past [`MAX_DISCARD`], its 408), and neither is one declared over [`MAX_DISCARD`] or
/// announced with `Expect: 100-continue` (reading it would ask the client to send it).
pub async fn close_unless_body_read(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let expects = parts.headers.contains_key(header::EXPECT);
    let shared = Arc::new(Shared {
        // A request without a body (most GETs) has been read whole before anyone looks.
        read: AtomicBool::new(body.is_end_stream()),
        touched: AtomicBool::new(false),
        rest: Mutex::new(None),
    });
    let body = Body::new(Tracked {
        shared: shared.clone(),
        inner: Some(body),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !shared.read.load(Ordering::Acquire) {
        let rest = shared.rest.lock().unwrap_or_else(|e| e.into_inner()).take();
        let drained = match rest {
            Some(rest)
                if !expects
                    && !shared.touched.load(Ordering::Acquire)
                    && rest.size_hint().lower() <= MAX_DISCARD as u64 =>
            {
                // Nothing kept; drained when read to its end within the bound.
                tokio::time::timeout(deadline, read_capped(rest, 0))
                    .await
                    .is_ok_and(|r| {
                        matches!(r, BodyRead::Whole(_) | BodyRead::TooLarge { ended: true })
                    })
            }
            _ => false,
        };
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// What [`read_capped`] found.
pub enum BodyRead {
    /// Read to its end: what was kept (all of it).
    Whole(Bytes),
    /// Longer than the bytes to keep; read (and dropped) to its end (`ended`) or to
    /// [`MAX_DISCARD`] bytes in all.
    TooLarge { ended: bool },
    /// The body's framing was broken or the sender went away.
    Broken(axum::Error),
}

/// Reads `body` to its end keeping at most `keep` bytes; past them, reads on without keeping
/// anything until the end or [`MAX_DISCARD`] bytes in all (trailers are skipped).
pub async fn read_capped(mut body: Body, keep: usize) -> BodyRead {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
            Err(e) => return BodyRead::Broken(e),
        };
        seen = seen.saturating_add(data.len());
        if seen <= keep {
            kept.extend_from_slice(&data);
        } else if seen > MAX_DISCARD {
            return BodyRead::TooLarge { ended: false };
        }
    }
    if seen > keep {
        BodyRead::TooLarge { ended: true }
    } else {
        BodyRead::Whole(kept.into())
    }
}

/// What [`close_unless_body_read`] learns of a request body.
struct Shared {
    /// Read to its end.
    read: AtomicBool,
    /// Polled at least once.
    touched: AtomicBool,
    /// The body, handed back when the handler dropped it unread.
    rest: Mutex<Option<Body>>,
}

/// A request body that records when it has been read to its end, and hands itself back
/// when dropped before.
struct Tracked {
    shared: Arc<Shared>,
    inner: Option<Body>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.shared.touched.store(true, Ordering::Release);
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let end = inner.is_end_stream();
        if matches!(polled, Poll::Ready(None)) || matches!(polled, Poll::Ready(Some(Ok(_))) if end)
        {
            self.shared.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.shared.read.load(Ordering::Acquire)
            && let Some(inner) = self.inner.take()
        {
            *self.shared.rest.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        }
    }
}

/// A tokio runtime driven by a thread of its own, for synchronous code that needs async
/// pieces (signals, an HTTP server). Stopping (or dropping) it ends the thread; tasks still
/// running are cancelled.
pub struct RuntimeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts a runtime with `workers` worker threads; 0: everything runs on the runtime's
    /// own thread (enough for signals and `/metrics`).
    pub fn start(name: &str, workers: usize) -> Result<RuntimeThread, HttpError> {
        let mut builder = if workers == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        if workers > 0 {
            builder.worker_threads(workers);
        }
        let runtime = builder
            .enable_all()
            .thread_name(name)
            .build()
            .map_err(HttpError::Io)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(HttpError::Io)?;
        Ok(RuntimeThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Ends the runtime and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A router served on a runtime (see [`Server::start`]). Stopping (or dropping) it stops
/// accepting and waits up to [`GRACE`] for in-flight requests.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<std::io::Result<()>>>,
}

impl Server {
    /// Serves `router` on `listener` (from [`bind`]) as a task of `runtime`.
    pub fn start(
        runtime: &Handle,
        listener: std::net::TcpListener,
        router: Router,
        limits: Limits,
    ) -> Result<Server, HttpError> {
        let addr = listener.local_addr().map_err(HttpError::Io)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(HttpError::Io)?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let result = serve(
                listener,
                router,
                async move {
                    let _ = stopped.await;
                },
                limits,
            )
            .await;
            let _ = finished.send(result);
        });
        Ok(Server {
            addr,
            stop: Some(stop),
            done: Some(done),
        })
    }

    /// The bound address (the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, waits for in-flight requests (at most [`GRACE`]), returns the
    /// server's result.
    pub fn stop(mut self) -> Result<(), HttpError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), HttpError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.done.take().map(|d| d.recv_timeout(GRACE)) {
            Some(Ok(result)) => result.map_err(HttpError::Io),
            // Already stopped with its runtime, or still draining: the runtime's end
            // cancels it.
            Some(Err(_)) | None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Answers to the requests in `sent`, written at once on one connection, until the
    /// server closes it.
    fn exchange(addr: SocketAddr, sent: &str) -> Vec<String> {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(sent.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split("HTTP/1.1 ")
            .skip(1)
            .map(|a| a.to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn an_answer_before_the_body_was_read_closes_the_connection() {
        let runtime = RuntimeThread::start("test-http", 0).unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let router = Router::new()
            .route("/read", axum::routing::post(|b: String| async move { b }))
            .route("/ignore", axum::routing::post(|| async { "ignored" }))
            .route("/x", axum::routing::get(|| async { "hello" }));
        // The body that never comes (below) is waited for this long; an answer "at once"
        // comes well within it, even on a loaded machine.
        let limits = Limits {
            header_timeout: Duration::from_secs(3),
            ..Limits::default()
        };
        let server = Server::start(runtime.handle(), listener, router, limits).unwrap();
        let addr = server.addr();
        let last = "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

        // Bodiless and fully read requests keep the connection: all three answered.
        let a = exchange(
            addr,
            &format!(
                "GET /x HTTP/1.1\r\nHost: x\r\n\r\n\
                 POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc{last}"
            ),
        );
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a[1].starts_with("200") && a[1].ends_with("abc"), "{a:?}");
        assert!(
            a[..2].iter().all(|a| !a.contains("connection: close")),
            "{a:?}"
        );

        // A handler that answers without reading a body that has not all arrived: the
        // answer says the connection ends, and it does.
        let a = exchange(
            addr,
            &format!(
                "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial{last}"
            ),
        );
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].contains("connection: close"), "{a:?}");
        assert!(a[0].ends_with("ignored"), "{a:?}");

        // A body the handler ignored but that is sent whole (a GET's, a refused POST's of
        // up to 256 KiB) is read and dropped after the handler: the connection carries the
        // next request. Before, the answer said close; and hyper closed the socket with the
        // rest of the body unread, so that a client still writing it got a reset (EPIPE)
        // instead of its answer.
        let big = " ".repeat(MAX_DISCARD);
        let a = exchange(
            addr,
            &format!(
                "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                 POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_DISCARD}\r\n\r\n{big}\
                 POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3\r\nabc\r\n0\r\n\r\n{last}"
            ),
        );
        assert_eq!(a.len(), 4, "{a:?}");
        assert!(a[0].starts_with("200") && a[0].ends_with("hello"), "{a:?}");
        assert!(
            a[1].starts_with("200") && a[1].ends_with("ignored"),
            "{a:?}"
        );
        assert!(a[2].starts_with("404"), "{a:?}");
        assert!(
            a[..3].iter().all(|a| !a.contains("connection: close")),
            "{a:?}"
        );

        // Declared over 256 KiB, or announced with `Expect: 100-continue` (the client waits
        // to be told to send it): answered at once, and closed.
        for head in [
            format!("Content-Length: {}\r\n", MAX_DISCARD + 1),
            "Content-Length: 10\r\nExpect: 100-continue\r\n".to_owned(),
        ] {
            let started = std::time::Instant::now();
            let a = exchange(
                addr,
                &format!("POST /ignore HTTP/1.1\r\nHost: x\r\n{head}\r\n"),
            );
            assert!(started.elapsed() < Duration::from_secs(2), "{head}: {a:?}");
            assert_eq!(a.len(), 1, "{head}: {a:?}");
            assert!(a[0].starts_with("200"), "{head}: {a:?}");
            assert!(a[0].contains("connection: close"), "{head}: {a:?}");
        }
        server.stop().unwrap();
        runtime.stop();
    }

    #[test]
    fn serves_on_a_runtime_thread_and_stops_cleanly() {
        let runtime = RuntimeThread::start("test-http", 0).unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let router = Router::new().route("/x", axum::routing::get(|| async { "hello" }));
        let server = Server::start(runtime.handle(), listener, router, Limits::default()).unwrap();
        let addr = server.addr();
        assert!(get(addr, "/x").ends_with("hello"));
        server.stop().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening"
        );
        runtime.stop();

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind(taken.local_addr().unwrap()).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot listen on 127.0.0.1:"),
            "{e}"
        );
    }
}
