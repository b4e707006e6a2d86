//! Shutdown: on `main`'s return or on SIGTERM/SIGINT, the usage is
//! checkpointed and reported and the license checked in, within bounds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::aws;
use crate::entitlement;
use crate::license::{self, Consumption};
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
    handle_signals: bool,
    grace: Duration,
) -> Option<Command> {
    tokio::select! {
        command = commands.recv() => {
            work.run().await;
            command
        }
        signo = wait_for_signal(handle_signals) => {
            tracing::info!(target: "marketgate", signal = signo, "signal received: reporting usage and checking in");
            // At once: every unit recorded so far reported, the seat
            // returned; neither waits for main or the grace, which the
            // deployment controls. Units the program records while it winds
            // down go into the next hour's report (see the README).
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
    pub(super) clients: aws::Clients,
    pub(super) consumption: Option<Consumption>,
    pub(super) maintenance: Option<tokio::task::JoinHandle<()>>,
    /// The pipeline and its background task (reporting, or after a signal
    /// checkpointing only).
    pub(super) metering: Option<(
        Arc<tokio::sync::Mutex<Pipeline>>,
        tokio::task::JoinHandle<()>,
    )>,
    pub(super) checkpoint_every: Duration,
    pub(super) checked_in: bool,
    pub(super) flushed: bool,
}

impl ShutdownWork {
    async fn check_in(&mut self) {
        if std::mem::replace(&mut self.checked_in, true) {
            return;
        }
        if let Some(task) = self.maintenance.take() {
            task.abort();
        }
        if let Some(consumption) = self.consumption.take() {
            license::check_in(&self.clients, &consumption).await;
        }
    }

    /// Signal received: all usage so far reported now (the open hour
    /// included, within the flush budget), licenses back at the same time.
    /// Until the final flush, usage keeps being checkpointed (a send in
    /// flight is aborted; it stays in doubt and is resent identically).
    async fn on_signal(&mut self) {
        status::set_state(RunState::ShuttingDown);
        let report = async {
            if let Some((pipeline, task)) = &mut self.metering {
                task.abort();
                metering::run::flush(pipeline).await;
                *task = tokio::spawn(metering::run::checkpoint_only(
                    pipeline.clone(),
                    self.checkpoint_every,
                ));
            }
        };
        let check_in = async {
            if !std::mem::replace(&mut self.checked_in, true) {
                if let Some(task) = self.maintenance.take() {
                    task.abort();
                }
                if let Some(consumption) = self.consumption.take() {
                    license::check_in(&self.clients, &consumption).await;
                }
            }
        };
        tokio::join!(report, check_in);
    }

    /// The end: stop metering, report all usage, the open hour included,
    /// and check in.
    async fn run(&mut self) {
        status::set_state(RunState::ShuttingDown);
        if !std::mem::replace(&mut self.flushed, true)
            && let Some((pipeline, task)) = &self.metering
        {
            // Calls from here on are denied rather than counted into a
            // report that has already gone.
            entitlement::stop_metering();
            task.abort();
            metering::run::flush(pipeline).await;
        }
        self.check_in().await;
    }
}

/// Resolves with the signal number on SIGTERM or SIGINT; never if disabled.
async fn wait_for_signal(enabled: bool) -> i32 {
    if !enabled {
        return std::future::pending().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            },
            _ => {
                tracing::warn!(target: "marketgate", "cannot install signal handlers");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        2
    }
}
