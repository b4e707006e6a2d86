//! The metering pipeline: per-hour totals to `MeterUsage`, each unit billed
//! exactly once across restarts, crashes, throttling and outages.
//!
//! AWS rules (docs/aws-rules.md, "MeterUsage"): one record per dimension per hour per task or
//! pod; the timestamp is rounded down to the hour; an identical request is
//! idempotent; another quantity for the same hour is
//! `DuplicateRequestException`; records more than 6 hours old are
//! `TimestampOutOfBoundsException`; a quantity is at most 2147483647; missed
//! usage may be added to a later hour.
//!
//! How the pipeline keeps to them:
//!
//! - Every checkpoint (at most 10 s apart) moves what the lock-free counters
//!   gained into the journal as `Add` events for the current hour's bucket.
//!   A `SIGKILL` loses at most the units since the last checkpoint.
//! - When an hour has ended, its bucket becomes a record: an `Assign` event
//!   fixes the hour, the quantity and a client token **before** anything is
//!   sent, and every retry, in this process or after a restart, sends
//!   exactly that request. AWS answers an identical request with the same
//!   record, so a retry after a lost response never bills twice.
//! - A record becomes `Sent` only when AWS confirms it.
//! - Units that cannot go to their own hour (the hour was already reported
//!   by this task, AWS refused it as a duplicate or out of bounds, it is
//!   leaving the 6-hour window, or it exceeds the i32 limit) are carried into
//!   the next hour this task has not reported. A record whose fate is
//!   unknown (the connection broke after it was sent) is never re-billed for
//!   another hour: if the window closes on it, it is reported as
//!   unconfirmed instead.
//! - Errors that retrying cannot fix (`CustomerNotEntitledException`,
//!   `InvalidUsageDimensionException`, ...) mark the record unbillable; it
//!   is logged at error level and listed in `status()`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aws::{AwsFailure, Clients};
use crate::catalog::{Catalog, MAX_DIMENSIONS, Product};
use crate::counters;
mod journal;
mod ledger;
mod send;

use crate::aws::retry::Backoff;
use crate::random::random_hex;
use crate::status;
use crate::time::{Clock, HOUR, epoch_secs, hour_label, hour_of};
use crate::usage::{Tags, take_tagged};
use journal::{Damage, Event, Journal, JournalError};
use ledger::{Ledger, RecordState, WINDOW, WINDOW_MARGIN, alloc_field};

/// At most 2500 allocations per record (the Metering model's
/// `UsageAllocations`).
const MAX_ALLOCATIONS: usize = 2500;
/// Compact the journal beyond this size.
const COMPACT_AT: u64 = 256 * 1024;

// ---- the pipeline ----------------------------------------------------------

/// Where metering state lives.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) state_dir: PathBuf,
    pub(crate) flush_budget: Duration,
}

/// Why sending stopped for now.
enum SendStop {
    Transient(AwsFailure),
}

pub(crate) struct Pipeline {
    product: &'static Product,
    clients: Clients,
    clock: Clock,
    settings: Settings,
    journal: Option<Journal>,
    journal_error: Option<String>,
    damage: Option<Damage>,
    ledger: Ledger,
    baseline: [u64; MAX_DIMENSIONS],
    dims: Vec<(usize, &'static str)>,
    sent_units: BTreeMap<String, u64>,
    carried_units: u64,
    reported_unbillable: BTreeSet<(String, i64)>,
    last_flush: Option<u64>,
    checkpoints: u64,
    /// Whether the previous run's journal has been read into the ledger.
    recovered: bool,
}

impl Pipeline {
    /// Opens the journal (or runs in memory, degraded) and recovers what a
    /// previous run left.
    pub(crate) fn new(
        catalog: &'static Catalog,
        product: &'static Product,
        clients: Clients,
        clock: Clock,
        settings: Settings,
        baseline: &[u64; MAX_DIMENSIONS],
    ) -> Pipeline {
        let dims = catalog
            .dimensions()
            .iter()
            .enumerate()
            .filter(|(i, _)| product.meters(*i))
            .map(|(i, d)| (i, *d))
            .collect();
        let mut pipeline = Pipeline {
            product,
            clients,
            clock,
            settings,
            journal: None,
            journal_error: None,
            damage: None,
            ledger: Ledger::default(),
            baseline: *baseline,
            dims,
            sent_units: BTreeMap::new(),
            carried_units: 0,
            reported_unbillable: BTreeSet::new(),
            last_flush: None,
            checkpoints: 0,
            recovered: false,
        };
        pipeline.open_journal();
        pipeline.publish();
        pipeline
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Opens the journal; on success after running in memory, writes the
    /// in-memory state into it.
    fn open_journal(&mut self) {
        match Journal::open(&self.settings.state_dir, self.product.code()) {
            Ok((mut journal, events, damage)) => {
                let now_hour = hour_of(self.now());
                if self.recovered {
                    // This run's own journal, rewritten from memory (which
                    // holds everything it held, and more).
                } else {
                    // The previous run's journal, first readable now.
                    let mut disk = Ledger::default();
                    for event in &events {
                        disk.apply(event);
                    }
                    for note in self.ledger.merge(disk, now_hour) {
                        tracing::warn!(target: "marketgate", "{note}");
                    }
                    self.recovered = true;
                    if !events.is_empty() {
                        tracing::info!(
                            target: "marketgate",
                            journal = %journal.path().display(),
                            events = events.len(),
                            "metering journal recovered"
                        );
                    }
                }
                let snapshot = self.ledger.snapshot(now_hour);
                if let Err(e) = journal.compact(self.product.code(), &snapshot) {
                    self.journal_failed(&e);
                    return;
                }
                if let Some(d) = &damage {
                    let message = format!(
                        "the metering journal was damaged: {} bytes from offset {} could not be \
                         read (kept in {}); every record before them was recovered",
                        d.bytes,
                        d.offset,
                        d.kept_as.display()
                    );
                    tracing::error!(target: "marketgate", "{message}");
                    status::degrade("journal-damage", message);
                    self.damage = damage;
                }
                self.journal = Some(journal);
                self.journal_error = None;
                status::recover("journal");
            }
            Err(e) => self.journal_failed(&e),
        }
    }

    fn journal_failed(&mut self, error: &JournalError) {
        let message = format!(
            "{error}; usage is kept in memory and the journal retried at every checkpoint (a \
             crash now would lose it). Mount a writable volume at the state directory or set \
             MARKETGATE_STATE_DIR"
        );
        if self.journal_error.as_deref() != Some(message.as_str()) {
            tracing::error!(target: "marketgate", "{message}");
        }
        status::degrade("journal", message.clone());
        self.journal = None;
        self.journal_error = Some(message);
    }

    /// Records `events`: journal first (when it works), then memory.
    fn commit(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if self.journal.is_none() {
            self.open_journal();
        }
        if let Some(journal) = &mut self.journal
            && let Err(e) = journal.append(events)
        {
            // The file no longer matches memory; replayed after a crash it
            // could re-bill usage under new tokens. Drop it; the next
            // checkpoint writes the whole state afresh.
            if let Some(journal) = self.journal.take() {
                journal.discard();
            }
            self.journal_failed(&e);
        }
        for event in events {
            self.ledger.apply(event);
        }
    }

    /// Moves what the counters gained since the last checkpoint into the
    /// current hour's bucket.
    fn checkpoint(&mut self, now: SystemTime) {
        let hour = hour_of(now);
        let totals = counters::totals();
        let mut events = Vec::new();
        for (index, name) in &self.dims {
            let delta = totals[*index].wrapping_sub(self.baseline[*index]);
            if delta > 0 {
                events.push(Event::Add {
                    dimension: (*name).to_owned(),
                    hour,
                    quantity: delta,
                    tags: Tags::new(),
                });
            }
        }
        for ((index, tags), q) in take_tagged() {
            if let Some((_, name)) = self.dims.iter().find(|(i, _)| *i == index) {
                events.push(Event::Add {
                    dimension: (*name).to_owned(),
                    hour,
                    quantity: q,
                    tags,
                });
            }
        }
        self.baseline = totals;
        self.commit(&events);
        self.checkpoints += 1;
    }

    /// The first hour from `start` up to `last` (inclusive) that this task
    /// has not reported for `d` and AWS still accepts.
    fn free_hour(&self, d: &str, start: i64, last: i64, now: SystemTime) -> Option<i64> {
        // The oldest hour AWS accepts for a while yet (see `expire`).
        let now_secs = epoch_secs(now);
        let oldest = now_secs - WINDOW + WINDOW_MARGIN + 1;
        let earliest = oldest + (HOUR - oldest.rem_euclid(HOUR)) % HOUR;
        let mut h = start.max(earliest);
        while h <= last {
            if !self.ledger.taken(d, h) {
                return Some(h);
            }
            h += HOUR;
        }
        None
    }

    /// Turns ended hours' buckets into records (and, when `flushing`, the
    /// current hour's too).
    fn close(&mut self, now: SystemTime, flushing: bool) {
        let now_hour = hour_of(now);
        let last = if flushing { now_hour } else { now_hour - HOUR };
        let mut groups: BTreeMap<(String, i64), Vec<(Tags, u64)>> = BTreeMap::new();
        for ((d, h, t), q) in &self.ledger.buckets {
            if *h <= last && *q > 0 {
                groups
                    .entry((d.clone(), *h))
                    .or_default()
                    .push((t.clone(), *q));
            }
        }
        for ((d, h), mut parts) in groups {
            // Untagged usage first, then tag sets in order.
            parts.sort();
            let Some(target) = self.free_hour(&d, h, last, now) else {
                // No hour left for it yet: wait in the next hour this task
                // can report.
                let to = if flushing { now_hour + HOUR } else { now_hour };
                let to = if self.ledger.taken(&d, to) {
                    to + HOUR
                } else {
                    to
                };
                if to != h {
                    self.carry(&d, h, to, &parts, "no unreported hour is left before it");
                }
                continue;
            };
            let mut taken: Vec<(Tags, u32)> = Vec::new();
            let mut total: u32 = 0;
            let mut rest: Vec<(Tags, u64)> = Vec::new();
            for (t, q) in parts {
                let room = u64::from(i32::MAX.unsigned_abs() - total);
                if room == 0 || taken.len() == MAX_ALLOCATIONS {
                    rest.push((t, q));
                    continue;
                }
                let part = q.min(room);
                let part32 = u32::try_from(part).unwrap_or(u32::MAX);
                taken.push((t.clone(), part32));
                total += part32;
                if q > part {
                    rest.push((t, q - part));
                }
            }
            if !rest.is_empty() {
                // The hour after the record's: at most the open hour when
                // closing ended hours, the next one when flushing.
                let to = target + HOUR;
                self.carry(
                    &d,
                    h,
                    to,
                    &rest,
                    "one record holds at most 2147483647 units and 2500 allocations",
                );
            }
            if total > 0 {
                self.commit(&[Event::Assign {
                    dimension: d,
                    from: h,
                    hour: target,
                    quantity: total,
                    token: random_hex(16),
                    alloc: alloc_field(&taken),
                }]);
            }
        }
    }

    fn carry(&mut self, d: &str, from: i64, to: i64, parts: &[(Tags, u64)], why: &str) {
        let units: u64 = parts.iter().map(|(_, q)| q).sum();
        tracing::warn!(
            target: "marketgate",
            dimension = d,
            units,
            from = %hour_label(from),
            to = %hour_label(to),
            why,
            "usage carried to a later hour"
        );
        self.carried_units += units;
        let events: Vec<Event> = parts
            .iter()
            .map(|(t, q)| Event::Carry {
                dimension: d.to_owned(),
                from,
                to,
                quantity: *q,
                tags: t.clone(),
            })
            .collect();
        self.commit(&events);
    }

    fn compact_if_large(&mut self) {
        let now_hour = hour_of(self.now());
        if let Some(journal) = &mut self.journal
            && journal.size > COMPACT_AT
        {
            let snapshot = self.ledger.snapshot(now_hour);
            if let Err(e) = journal.compact(self.product.code(), &snapshot) {
                self.journal_failed(&e);
            }
        }
    }

    /// One round of background work.
    pub(crate) async fn tick(&mut self, may_send: bool) -> Result<(), AwsFailure> {
        let now = self.now();
        self.checkpoint(now);
        self.close(now, false);
        let result = if may_send {
            match self.send(now).await {
                Ok(()) => {
                    status::recover("metering");
                    Ok(())
                }
                Err(SendStop::Transient(failure)) => {
                    status::degrade(
                        "metering",
                        format!("usage reports are waiting for AWS: {failure}"),
                    );
                    Err(failure)
                }
            }
        } else {
            Ok(())
        };
        self.compact_if_large();
        self.publish();
        result
    }

    /// Reports everything, the open hour included, within the flush budget.
    /// The caller has stopped new metering first.
    pub(crate) async fn flush(&mut self) {
        let budget = self.settings.flush_budget;
        let now = self.now();
        self.checkpoint(now);
        self.close(now, true);
        let sending = async {
            let mut delay = Duration::from_millis(50);
            loop {
                match self.send(self.now()).await {
                    Ok(()) => return,
                    Err(SendStop::Transient(failure)) => {
                        tracing::warn!(target: "marketgate", %failure, "flush retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
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
        // Calls admitted before metering stopped may have recorded since:
        // keep them for the next start.
        self.checkpoint(self.now());
        self.last_flush = Some(status::now_secs());
        self.publish();
    }

    /// Mirrors the ledger into the status snapshot.
    fn publish(&mut self) {
        let mut unreported: BTreeMap<String, u64> = BTreeMap::new();
        for ((d, _, _), q) in &self.ledger.buckets {
            *unreported.entry(d.clone()).or_default() += q;
        }
        let mut pending = Vec::new();
        let mut unbillable = Vec::new();
        for ((d, h), r) in &self.ledger.records {
            match &r.state {
                RecordState::Pending => pending.push(status::PendingRecord {
                    dimension: d.clone(),
                    hour: *h,
                    quantity: r.quantity,
                    unconfirmed: r.doubt > 0,
                }),
                RecordState::Unbillable { code, message } => {
                    if self.reported_unbillable.insert((d.clone(), *h)) {
                        status::degrade("unbillable", message.clone());
                    }
                    unbillable.push(status::UnbillableRecord {
                        dimension: d.clone(),
                        hour: *h,
                        quantity: r.quantity,
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
                RecordState::Sent(_) | RecordState::Rejected(_) => {}
            }
        }
        status::set_metering(status::MeteringStatus {
            journal: self
                .journal
                .as_ref()
                .map(|j| j.path().display().to_string()),
            journal_error: self.journal_error.clone(),
            journal_damage: self.damage.as_ref().map(|d| {
                format!(
                    "{} bytes from offset {} unreadable (kept in {})",
                    d.bytes,
                    d.offset,
                    d.kept_as.display()
                )
            }),
            unreported,
            pending,
            reported: self.sent_units.clone(),
            carried: self.carried_units,
            unbillable,
            last_flush: self.last_flush,
            checkpoints: self.checkpoints,
        });
    }
}

/// The background loop: checkpoint every interval, close ended hours,
/// send with backoff while AWS is unavailable (from one interval up to 30,
/// i.e. 5 minutes with the default 10 s).
pub(crate) async fn run(pipeline: Arc<tokio::sync::Mutex<Pipeline>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_send = tokio::time::Instant::now();
    let backoff = Backoff {
        initial: every,
        max: every * 30,
        budget: Duration::MAX,
    };
    let mut failures = 0u32;
    loop {
        ticker.tick().await;
        let may_send = tokio::time::Instant::now() >= next_send;
        let result = pipeline.lock().await.tick(may_send).await;
        match result {
            Ok(()) if may_send => failures = 0,
            Ok(()) => {}
            Err(failure) => {
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures);
                tracing::warn!(target: "marketgate", %failure, ?delay, "usage reports deferred");
                next_send = tokio::time::Instant::now() + delay;
            }
        }
    }
}

/// After a signal: keep checkpointing (and closing ended hours) without
/// sending, until the final flush.
pub(crate) async fn checkpoint_only(pipeline: Arc<tokio::sync::Mutex<Pipeline>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let _ = pipeline.lock().await.tick(false).await;
    }
}
