//! Cancellation and draining: a token every task watches, and a tracker every task is
//! spawned through, so shutdown can stop accepting and wait for sessions to end. Also the
//! process signals: SIGTERM/SIGINT ([`signal`]) and SIGHUP ([`Hangup`], reload requests).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown signal and the set of running tasks.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered shutdown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` as a tracked task.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Resolves once shutdown is triggered. Cancel-safe.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Whether shutdown was triggered.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The underlying token (for child tokens per session).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Triggers shutdown without waiting.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Triggers shutdown and waits up to `grace` for every task. Returns false when
    /// tasks were still running at the end of the grace period.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Number of tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP as reload requests. [`Hangup::install`] replaces the default action
/// (terminate) at once, so a SIGHUP that arrives during startup is kept and answered by
/// a reload once the daemon serves, instead of killing the process.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Installs the SIGHUP handler (must run inside the runtime). When it cannot be
    /// installed, says so and never yields.
    pub fn install() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::hangup()) {
                Ok(s) => Hangup { signal: Some(s) },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle SIGHUP; configuration reload is unavailable");
                    Hangup { signal: None }
                }
            }
        }
        #[cfg(not(unix))]
        {
            Hangup {}
        }
    }

    /// No reload requests ever (commands that do not reload).
    pub fn none() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: None,
        }
    }

    /// Resolves at the next SIGHUP (several arriving together count as one); never
    /// when not installed. Cancel-safe.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}
