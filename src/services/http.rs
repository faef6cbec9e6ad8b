//! The one HTTP server stack of the services, axum on tokio: [`bind`] a listener (errors name
//! the address), [`serve`] a router until a shutdown future resolves (in-flight requests
//! finish first), and, for the synchronous callers (watch's `/metrics`, tests, benchmarks), a
//! tokio runtime on its own thread ([`RuntimeThread`]) and a [`Server`] started on it that
//! stops cleanly when told or dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

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

/// How long a stopping [`Server`] waits for in-flight requests.
pub const GRACE: Duration = Duration::from_secs(5);

/// Binds `addr` (port 0: any free port), ready for tokio.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HttpError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(HttpError::Io)?;
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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
    ) -> Result<Server, HttpError> {
        let addr = listener.local_addr().map_err(HttpError::Io)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(HttpError::Io)?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let result = serve(listener, router, async move {
                let _ = stopped.await;
            })
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

    #[test]
    fn serves_on_a_runtime_thread_and_stops_cleanly() {
        let runtime = RuntimeThread::start("test-http", 0).unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let router = Router::new().route("/x", axum::routing::get(|| async { "hello" }));
        let server = Server::start(runtime.handle(), listener, router).unwrap();
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
