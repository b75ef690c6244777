//! The daemon's stop: SIGTERM or SIGINT raise it; the engine checks it before each measurement
//! and the daemon's sleeps wake up for it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use vantage_engine::schedule::Stop;

/// A stop raised by SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> anyhow::Result<Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let shutdown = Shutdown::new();
    let raise = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: no new measurements; the running ones finish");
        raise.raise();
    });
    Ok(shutdown)
}

/// The daemon's stop: a flag the engine checks before each measurement, and a wake-up for the
/// daemon's sleeps.
#[derive(Clone, Debug)]
pub struct Shutdown {
    pub(super) stop: Stop,
    pub(super) tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// Not raised yet.
    pub fn new() -> Shutdown {
        Shutdown { stop: Stop::new(), tx: Arc::new(watch::channel(false).0) }
    }

    /// Stop starting work, and wake the daemon.
    pub fn raise(&self) {
        self.stop.stop();
        self.tx.send_replace(true);
    }

    pub(super) fn is_raised(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Sleep `nap`, or less if the stop is raised meanwhile.
    pub(super) async fn nap(&self, nap: Duration) {
        let mut rx = self.tx.subscribe();
        if *rx.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = rx.changed() => {}
        }
    }
}
