//! The pipeline's tasks: the background loop (checkpoints on a ticker,
//! sending in a task of its own), the flush at a signal and at the end, and
//! checkpointing alone after a signal.

use std::sync::Arc;
use std::time::Duration;

use super::send::send_pending;
use super::{Pipeline, SendStop};
use crate::aws::retry::Backoff;
use crate::random::fraction;
use crate::status;

/// The first report of an hour waits a random part of this window (or of
/// six checkpoint intervals, if shorter), so that tasks started together do
/// not all call AWS in the same second.
const SEND_SPREAD: Duration = Duration::from_mins(1);

/// Sends every pending record (the lock is held only between calls), then
/// publishes. Used by the background loop and by flushes.
pub(crate) async fn send_all(pipeline: &tokio::sync::Mutex<Pipeline>) -> Result<(), SendStop> {
    let result = send_pending(pipeline).await;
    pipeline.lock().await.publish();
    result
}

/// Reports everything, the open hour included, within the flush budget.
/// Used at a signal and at the end.
pub(crate) async fn flush(pipeline: &tokio::sync::Mutex<Pipeline>) {
    let budget = {
        let mut p = pipeline.lock().await;
        p.close_all();
        p.settings.flush_budget
    };
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        budget,
    };
    let sending = async {
        let mut failures = 0;
        loop {
            match send_pending(pipeline).await {
                Ok(()) => return,
                Err(stop) => {
                    failures += 1;
                    tracing::warn!(target: "marketgate", ?stop, "flush retrying");
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
    };
    if tokio::time::timeout(budget, sending).await.is_err() {
        tracing::error!(
            target: "marketgate",
            ?budget,
            "metering flush ran out of time; unconfirmed records stay in the journal and \
             are resent, identically, at the next start"
        );
    }
    let mut p = pipeline.lock().await;
    // Calls admitted meanwhile: kept for the next report.
    let now = p.now();
    p.checkpoint(now);
    p.last_flush = Some(status::now_secs());
    p.publish();
}

/// The send in flight, aborted when dropped (when the loop that owns it is
/// aborted at shutdown; an aborted request stays in doubt and is resent
/// identically).
#[derive(Default)]
struct InFlight(Option<tokio::task::JoinHandle<Result<(), SendStop>>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// The background loop: checkpoint every interval, close ended hours, and
/// send in a task of its own (so a slow AWS never delays a checkpoint), with
/// backoff while AWS is unavailable (from one interval up to 30, i.e. 5
/// minutes with the default 10 s).
pub(crate) async fn run(pipeline: Arc<tokio::sync::Mutex<Pipeline>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let spread = SEND_SPREAD.min(every * 6);
    let backoff = Backoff {
        initial: every,
        max: every * 30,
        budget: Duration::MAX,
    };
    let mut next_send = tokio::time::Instant::now();
    let mut failures = 0u32;
    let mut in_flight = InFlight::default();
    let mut hour = None;
    loop {
        ticker.tick().await;
        if let Some(handle) = in_flight.0.take_if(|h| h.is_finished()) {
            let result = match handle.await {
                Ok(result) => result,
                Err(join) => {
                    tracing::error!(target: "marketgate", %join, "a usage report task failed");
                    Err(SendStop::Failed)
                }
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    status::recover("metering");
                }
                Err(stop) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff.delay(failures);
                    tracing::warn!(target: "marketgate", ?stop, ?delay, "usage reports deferred");
                    let why = match &stop {
                        SendStop::Transient(failure) => {
                            format!("usage reports are waiting for AWS: {failure}")
                        }
                        SendStop::JournalStale => {
                            "usage reports are held back until the journal can be written"
                                .to_owned()
                        }
                        SendStop::Failed => "a usage report task failed; retrying".to_owned(),
                    };
                    status::degrade("metering", why);
                    next_send = tokio::time::Instant::now() + delay;
                }
            }
        }
        let now_hour = pipeline.lock().await.tick();
        if hour.is_some_and(|h| h != now_hour) {
            // An hour just closed: report it a random moment later.
            let wait = spread.mul_f64(fraction());
            next_send = next_send.max(tokio::time::Instant::now() + wait);
        }
        hour = Some(now_hour);
        if in_flight.0.is_none() && tokio::time::Instant::now() >= next_send {
            let pipeline = pipeline.clone();
            in_flight.0 = Some(tokio::spawn(async move { send_all(&pipeline).await }));
        }
    }
}

/// After the report at a signal: keep checkpointing (and closing ended
/// hours) without sending, until the final flush.
pub(crate) async fn checkpoint_only(pipeline: Arc<tokio::sync::Mutex<Pipeline>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        pipeline.lock().await.tick();
    }
}
