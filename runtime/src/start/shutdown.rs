//! Shutdown: on SIGTERM/SIGINT the usage so far is reported at once; when
//! `main` returns (or the signal's grace runs out) the rest is reported and
//! the license checked in, at the same time and within bounds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::aws;
use crate::catalog::{Catalog, Product};
use crate::entitlement;
use crate::license::{self, SharedLease};
use crate::metering::{self, Pipeline};
use crate::status::{self, RunState};

/// What the [`super::Guard`] asks of the runtime's thread.
pub(super) enum Command {
    /// Do the shutdown work, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// Waits for the guard's shutdown or a signal.
/// Returns the guard's command once the shutdown work is done; after a
/// signal whose grace ends first, ends the process itself.
pub(super) async fn serve(
    mut work: ShutdownWork,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut signals: Signals,
    grace: Duration,
) -> Option<Command> {
    tokio::select! {
        command = commands.recv() => {
            work.run().await;
            command
        }
        signo = signals.recv() => {
            tracing::info!(target: "marketgate", signal = signo, "signal received: reporting usage");
            // At once: every unit recorded so far reported, without waiting
            // for main or the grace, which the deployment controls. Units the
            // program records while it winds down go into the next hour's
            // report (see the README). The license stays held while main
            // winds down (its features may still be in use), and is checked
            // in when main returns or the grace ends.
            work.on_signal().await;
            tokio::select! {
                command = commands.recv() => {
                    work.run().await;
                    command
                }
                () = tokio::time::sleep(grace) => {
                    tracing::warn!(target: "marketgate", ?grace, "main did not return after the signal; flushing and exiting");
                    work.run().await;
                    std::process::exit(128 + signo);
                }
            }
        }
    }
}

/// What must happen before the process ends.
pub(super) struct ShutdownWork {
    pub(super) catalog: &'static Catalog,
    pub(super) product: &'static Product,
    pub(super) clients: aws::Clients,
    /// The license lease and its driver (contract products).
    pub(super) lease: Option<(SharedLease, tokio::task::JoinHandle<()>)>,
    /// The counted-units tasks (contract products).
    pub(super) units: Option<crate::units::Running>,
    /// The pipeline and its background task (reporting, or after a signal
    /// checkpointing only).
    pub(super) metering: Option<(
        Arc<tokio::sync::Mutex<Pipeline>>,
        tokio::task::JoinHandle<()>,
    )>,
    pub(super) checkpoint_every: Duration,
    /// How long check-in retries transient failures.
    pub(super) check_in_budget: Duration,
    pub(super) checked_in: bool,
    pub(super) flushed: bool,
}

impl ShutdownWork {
    /// Signal received: all usage so far reported now (the open hour
    /// included, within the flush budget). Until the final flush, usage
    /// keeps being checkpointed (a send in flight is aborted; it stays in
    /// doubt and is resent identically).
    async fn on_signal(&mut self) {
        status::set_state(RunState::ShuttingDown);
        if let Some((pipeline, task)) = &mut self.metering {
            task.abort();
            metering::run::flush(pipeline).await;
            *task = tokio::spawn(metering::run::checkpoint_only(
                pipeline.clone(),
                self.checkpoint_every,
            ));
        }
    }

    /// The end: stop metering and report all usage, the open hour included;
    /// at the same time check the license in (retrying within its budget).
    async fn run(&mut self) {
        status::set_state(RunState::ShuttingDown);
        let ShutdownWork {
            catalog,
            product,
            clients,
            lease,
            units,
            metering,
            check_in_budget,
            checked_in,
            flushed,
            ..
        } = self;
        let report = async {
            if !std::mem::replace(flushed, true)
                && let Some((pipeline, task)) = metering
            {
                // Calls from here on are denied rather than counted into a
                // report that has already gone.
                entitlement::stop_metering();
                task.abort();
                metering::run::flush(pipeline).await;
            }
        };
        let check_in = async {
            if !std::mem::replace(checked_in, true)
                && let Some((lease, driver)) = lease.take()
            {
                driver.abort();
                license::check_in(catalog, product, clients, &lease, *check_in_budget).await;
            }
        };
        // Floating guards checked in and drawdown drawn alongside; the
        // lease's own check-in is unaffected by them.
        let units_done = async {
            if let Some(running) = units.take() {
                Box::pin(crate::units::shutdown(running, *check_in_budget)).await;
            }
        };
        tokio::join!(report, check_in, units_done);
    }
}

/// SIGTERM and SIGINT handlers, installed when this is made.
///
/// Made before start-up lets `main`'s body run: a signal that arrives as
/// soon as the program says it is ready must already reach the runtime
/// (installed later, on the runtime's thread, a signal in between killed the
/// process without a check-in or a report).
pub(super) struct Signals {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    #[cfg(not(unix))]
    enabled: bool,
}

impl Signals {
    /// Installs the handlers (none if `enabled` is false). Inside a tokio
    /// runtime.
    pub(super) fn install(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let handlers = enabled
                .then(|| {
                    match (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) {
                        (Ok(term), Ok(int)) => Some((term, int)),
                        _ => {
                            tracing::warn!(target: "marketgate", "cannot install signal handlers");
                            None
                        }
                    }
                })
                .flatten();
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals { enabled }
    }

    /// Resolves with the signal number on SIGTERM or SIGINT; never if not
    /// installed.
    async fn recv(&mut self) -> i32 {
        #[cfg(unix)]
        {
            let Some((term, int)) = &mut self.handlers else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            }
        }
        #[cfg(not(unix))]
        {
            if !self.enabled {
                return std::future::pending().await;
            }
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}
