//! The one signal-handling style of the services, `tokio::signal`: SIGTERM and SIGINT (Ctrl-C)
//! ask a service to stop cleanly. `serve` awaits [`terminated`] as its graceful shutdown;
//! `watch`, a synchronous loop, has [`stop_on_signals`] set its stop flag from its runtime
//! thread, and a second signal while it is stopping exits at once with code 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::Handle;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The process exit code when a second signal cuts the clean stop short.
pub const EXIT_INTERRUPTED: i32 = 1;

/// SIGTERM and SIGINT, listened to from now on (the handlers are installed at once, so a
/// signal arriving before the first `recv` is not lost).
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    /// Must run within a runtime (`Handle::enter` or a task).
    fn listen() -> std::io::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT (never, if the handlers cannot be installed).
pub async fn terminated() {
    match Stop::listen() {
        Ok(mut s) => {
            let name = s.recv().await;
            tracing::info!(signal = name, "stopping");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for signals");
            std::future::pending::<()>().await;
        }
    }
}

/// Installs SIGTERM/SIGINT handlers on `runtime`: a signal sets `stop`; a signal arriving
/// while `stop` is already set (a second signal, or one during the final cleanup) exits the
/// process at once with [`EXIT_INTERRUPTED`].
pub fn stop_on_signals(runtime: &Handle, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut signals = {
        let _entered = runtime.enter();
        Stop::listen()?
    };
    runtime.spawn(async move {
        loop {
            let name = signals.recv().await;
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("{name} while stopping: exiting at once");
                std::process::exit(EXIT_INTERRUPTED);
            }
            tracing::info!(signal = name, "stopping after the current cycle");
        }
    });
    Ok(())
}
