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
//! - Only errors no retry can ever fix for this product (the product
//!   definition: `InvalidProductCodeException`, `InvalidUsageDimensionException`,
//!   `InvalidTagException`, `InvalidUsageAllocationsException`,
//!   `InvalidEndpointRegionException`, `CustomerNotEntitledException`) write a
//!   record off; it is logged at error level and listed in `status()`. Every
//!   other error (access denied, expired credentials, a proxy's 403, 5xx, ...)
//!   is retried until the record's window closes. A server error leaves the
//!   record in doubt: AWS may have stored it.
//! - A request is sent only while every event is durable, or no journal
//!   file exists that a restart could replay. A journal that falls behind
//!   memory (disk full, EIO, read-only) is removed; if it cannot be, nothing
//!   is sent until it can be written again, since replaying a stale journal
//!   would bill hours again under new tokens.
//! - Usage that stays unreported past the end of its hour for longer than
//!   the product's `max-unreported` bound denies `#[metered]` calls until a
//!   report succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_journal;
mod journal;
mod ledger;
mod overdue;
mod recovery;
pub(crate) mod run;
mod send;
#[cfg(any(all(feature = "testing", feature = "dev"), feature = "fuzzing"))]
pub(crate) mod sim_fs;
pub(crate) mod storage;

use crate::aws::{AwsFailure, Clients};
use crate::catalog::{Catalog, MAX_DIMENSIONS, Product};
use crate::counters;
use crate::entitlement;
use crate::metrics;
use crate::random::random_hex;
use crate::status;
use crate::time::{Clock, HOUR, epoch_secs, hour_label, hour_of};
use crate::usage::{Tags, take_tagged};
use journal::{Event, Journal};
use ledger::{Ledger, RecordState, alloc_field};
use overdue::Overdue;
use storage::{RealFs, Storage};

/// At most 2500 allocations per record (the Metering model's
/// `UsageAllocations`).
const MAX_ALLOCATIONS: usize = 2500;
/// Compact the journal beyond this size.
const COMPACT_AT: u64 = 256 * 1024;

// ---- the pipeline ----------------------------------------------------------

/// Where metering state lives, and its bounds.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) state_dir: PathBuf,
    pub(crate) flush_budget: Duration,
    /// How long usage may stay unreported after its hour ends before
    /// `#[metered]` calls are denied.
    pub(crate) max_unreported: Duration,
}

/// Where recorded usage comes from.
pub(crate) trait UsageSource: Send + Sync {
    /// Units recorded per dimension index since the process started.
    fn totals(&self) -> [u64; MAX_DIMENSIONS];
    /// Tagged usage recorded since the last call, taken.
    fn take_tagged(&self) -> Vec<((usize, Tags), u64)>;
}

/// The process's `#[metered]` counters.
struct Counters;

impl UsageSource for Counters {
    fn totals(&self) -> [u64; MAX_DIMENSIONS] {
        counters::totals()
    }

    fn take_tagged(&self) -> Vec<((usize, Tags), u64)> {
        take_tagged().into_iter().collect()
    }
}

/// What the pipeline uses besides AWS and the wall clock: the journal's file
/// system, the usage counters and a monotonic clock. Production uses the
/// real ones ([`Environment::real`]); the fault simulation substitutes its
/// own, so that it can inject disk faults and replay a run exactly.
#[derive(Clone)]
pub(crate) struct Environment {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) usage: Arc<dyn UsageSource>,
    /// Time elapsed on a monotonic clock since some fixed origin.
    pub(crate) elapsed: Arc<dyn Fn() -> Duration + Send + Sync>,
}

impl Environment {
    /// The real file system, the process's counters, `Instant`.
    pub(crate) fn real() -> Environment {
        let origin = Instant::now();
        Environment {
            storage: Arc::new(RealFs),
            usage: Arc::new(Counters),
            elapsed: Arc::new(move || origin.elapsed()),
        }
    }
}

/// Why sending stopped for now.
#[derive(Debug)]
pub(crate) enum SendStop {
    /// AWS (or the way to it) failed; retry later.
    Transient(AwsFailure),
    /// The journal cannot be kept in step and cannot be removed.
    JournalStale,
    /// The task sending reports ended abnormally.
    Failed,
}

pub(crate) struct Pipeline {
    product: &'static Product,
    clients: Clients,
    clock: Clock,
    env: Environment,
    settings: Settings,
    journal: Option<Journal>,
    journal_error: Option<String>,
    /// A journal file holding this run's history that fell behind memory
    /// and could not be removed: nothing is sent while it exists.
    stale: Option<PathBuf>,
    damage: Option<String>,
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
    /// The hour this process started: no record it makes is dated earlier.
    started_hour: i64,
    /// How long due usage has waited for a report.
    overdue: Overdue,
    /// When the bound was last enforced, on `env.elapsed`.
    last_enforced: Option<Duration>,
    /// Whether `#[metered]` calls are denied because reporting is blocked.
    blocked: bool,
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
        env: Environment,
    ) -> Pipeline {
        let dims = catalog
            .dimensions()
            .iter()
            .enumerate()
            .filter(|(i, _)| product.meters(*i))
            .map(|(i, d)| (i, *d))
            .collect();
        let started_hour = hour_of(clock());
        let mut pipeline = Pipeline {
            product,
            clients,
            clock,
            env,
            settings,
            journal: None,
            journal_error: None,
            stale: None,
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
            started_hour,
            overdue: Overdue::default(),
            last_enforced: None,
            blocked: false,
        };
        pipeline.open_journal();
        pipeline.publish();
        pipeline
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
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
            self.journal_failed(&e, true);
        }
        for event in events {
            self.ledger.apply(event);
        }
    }

    /// Whether a request may be sent: every event so far is durable, or no
    /// journal file that a restart would replay is behind memory.
    fn may_send(&mut self) -> bool {
        if self.stale.is_some() && self.journal.is_none() {
            self.open_journal();
        }
        self.stale.is_none()
    }

    /// Moves what the counters gained since the last checkpoint into the
    /// current hour's bucket.
    fn checkpoint(&mut self, now: SystemTime) {
        let hour = hour_of(now);
        let totals = self.env.usage.totals();
        let mut events = Vec::new();
        for (index, name) in &self.dims {
            let delta = totals[*index].wrapping_sub(self.baseline[*index]);
            if delta > 0 {
                metrics::recorded(name, delta);
                events.push(Event::Add {
                    dimension: (*name).to_owned(),
                    hour,
                    quantity: delta,
                    tags: Tags::new(),
                });
            }
        }
        // In a fixed order, so that the same usage makes the same journal.
        let mut tagged = self.env.usage.take_tagged();
        tagged.sort();
        for ((index, tags), q) in tagged {
            if let Some((_, name)) = self.dims.iter().find(|(i, _)| *i == index) {
                metrics::recorded(name, q);
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
        metrics::checkpoint();
    }

    /// See [`Ledger::free_hour`].
    fn free_hour(&self, d: &str, start: i64, last: i64, now: SystemTime) -> Option<i64> {
        self.ledger
            .free_hour(d, start, last, epoch_secs(now), self.started_hour)
    }

    /// Turns ended hours' buckets into records (and, when `flushing`, the
    /// current hour's too).
    fn close(&mut self, now: SystemTime, flushing: bool) {
        let now_hour = hour_of(now);
        let last = if flushing { now_hour } else { now_hour - HOUR };
        if !flushing {
            self.redate_future(now_hour);
        }
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

    /// Buckets dated after the current hour (the clock moved back, or a
    /// flush carried to the next hour and the process restarted within the
    /// hour) join the current hour instead of waiting for theirs.
    fn redate_future(&mut self, now_hour: i64) {
        let future: Vec<(String, i64, Tags, u64)> = self
            .ledger
            .buckets
            .iter()
            .filter(|((_, h, _), _)| *h > now_hour)
            .map(|((d, h, t), q)| (d.clone(), *h, t.clone(), *q))
            .collect();
        for (d, h, t, q) in future {
            self.carry(
                &d,
                h,
                now_hour,
                &[(t, q)],
                "it was dated after the current hour",
            );
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
            "usage carried to another hour"
        );
        self.carried_units += units;
        metrics::carried(d, units);
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
                self.journal_failed(&e, true);
            }
        }
    }

    /// One round of bookkeeping: checkpoint, close ended hours, compact,
    /// publish. Short: never waits for AWS. Returns the current hour.
    pub(crate) fn tick(&mut self) -> i64 {
        let now = self.now();
        self.checkpoint(now);
        self.close(now, false);
        if self.stale.is_some() {
            self.may_send();
        }
        self.compact_if_large();
        self.publish();
        hour_of(now)
    }

    /// What a flush does before sending: checkpoint, then close every hour,
    /// the open one included.
    pub(crate) fn close_all(&mut self) {
        let now = self.now();
        self.checkpoint(now);
        self.close(now, true);
    }

    /// Whether usage is due (its hour ended) and not yet confirmed.
    fn due(&self, now_hour: i64) -> Option<i64> {
        let buckets = self
            .ledger
            .buckets
            .keys()
            .filter(|(_, h, _)| *h < now_hour)
            .map(|(_, h, _)| *h);
        let records = self
            .ledger
            .records
            .iter()
            .filter(|(_, r)| r.state == RecordState::Pending)
            .map(|((_, h), r)| r.from.min(*h));
        buckets.chain(records).min()
    }

    /// Denies or allows `#[metered]` calls by how long due usage has waited
    /// (see [`Overdue`]). `reported`: a report just went through.
    fn enforce_bound(&mut self, now: SystemTime, reported: bool) {
        let due = self
            .due(hour_of(now))
            .map(|hour| crate::time::at_hour(hour + HOUR).min(now));
        let elapsed = (self.env.elapsed)();
        let ticked = self
            .last_enforced
            .replace(elapsed)
            .map(|t| elapsed.saturating_sub(t))
            .unwrap_or_default();
        let overdue = self.overdue.update(now, due, reported, ticked);
        let blocked = overdue > self.settings.max_unreported;
        if blocked != self.blocked {
            self.blocked = blocked;
            if blocked {
                let message = format!(
                    "usage has waited {}s past its hour for a report (the product allows {}s): \
                     metered calls are denied until a report to AWS succeeds",
                    overdue.as_secs(),
                    self.settings.max_unreported.as_secs()
                );
                tracing::error!(target: "marketgate", "{message}");
                status::degrade("reporting-blocked", message);
                entitlement::block_metering();
            } else {
                tracing::info!(target: "marketgate", "usage reports go through again: metered calls allowed");
                status::recover("reporting-blocked");
                entitlement::unblock_metering();
            }
        }
    }

    /// Mirrors the ledger into the status snapshot.
    fn publish(&mut self) {
        let snapshot = self.status();
        status::set_metering(snapshot);
    }

    /// The ledger as `status()` shows it (enforcing the unreported bound
    /// on the way).
    pub(crate) fn status(&mut self) -> status::MeteringStatus {
        let now = self.now();
        self.enforce_bound(now, false);
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
                    unconfirmed: r.doubt > 0 || r.suspect,
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
        let oldest = self
            .ledger
            .buckets
            .keys()
            .map(|(_, h, _)| *h)
            .chain(
                self.ledger
                    .records
                    .iter()
                    .filter(|(_, r)| r.state == RecordState::Pending)
                    .map(|((_, h), r)| r.from.min(*h)),
            )
            .min();
        status::MeteringStatus {
            journal: self
                .journal
                .as_ref()
                .map(|j| j.path().display().to_string()),
            journal_error: self.journal_error.clone(),
            journal_damage: self.damage.clone(),
            unreported,
            pending,
            reported: self.sent_units.clone(),
            carried: self.carried_units,
            unbillable,
            last_flush: self.last_flush,
            checkpoints: self.checkpoints,
            oldest_unreported_secs: oldest.map(|h| u64::try_from(epoch_secs(now) - h).unwrap_or(0)),
            overdue_secs: self.overdue.waiting().map(|d| d.as_secs()),
            max_unreported_secs: self.settings.max_unreported.as_secs(),
            reporting_blocked: self.blocked,
        }
    }
}
