//! The metering pipeline: per-hour totals to `MeterUsage`, each unit billed
//! exactly once across restarts, crashes, throttling and outages.
//!
//! AWS rules (AWS-FACTS §2): one record per dimension per hour per task or
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_marketplacemetering::types::{Tag, UsageAllocation};
use aws_smithy_types::DateTime;

use crate::aws::{AwsFailure, Clients, Delivery, Retry, classify};
use crate::catalog::{Catalog, MAX_DIMENSIONS, Product};
use crate::counters;
use crate::journal::{Damage, Event, Journal, JournalError, RestoredState, Tags};
use crate::status;
use crate::verify::random_hex;

/// Seconds in an hour.
const HOUR: i64 = 3600;
/// AWS refuses records more than 6 hours old.
const WINDOW: i64 = 6 * HOUR;
/// Records are carried forward this long before they would fall out.
const WINDOW_MARGIN: i64 = 10 * 60;
/// At most 5 tags per allocation and 2500 allocations per record (model).
const MAX_TAGS: usize = 5;
const MAX_ALLOCATIONS: usize = 2500;
/// Tags of untagged usage in a record that also has tagged usage (AWS
/// requires allocations to cover the whole quantity).
const UNTAGGED_KEY: &str = "marketgate:untagged";
/// Compact the journal beyond this size.
const COMPACT_AT: u64 = 256 * 1024;

/// The wall clock. Production uses `SystemTime::now`; `dev` builds may
/// substitute the simulator's clock.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The hour (epoch seconds of its start) that `t` falls in.
pub(crate) fn hour_of(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    secs - secs.rem_euclid(HOUR)
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn at_hour(hour: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(hour).unwrap_or(0))
}

fn hour_label(hour: i64) -> String {
    let t = DateTime::from_secs(hour);
    t.fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| hour.to_string())
}

// ---- tagged usage --------------------------------------------------------

static TAGGED: Mutex<Option<HashMap<(usize, Tags), u64>>> = Mutex::new(None);

/// Why a tag set was not used.
fn invalid_tags(tags: &Tags) -> Option<String> {
    let valid = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.bytes().all(|b| {
                // `^[a-zA-Z0-9+ -=._:\/@]+$`: ` -=` is the range 0x20..=0x3D.
                b.is_ascii_alphanumeric() || b"+._:/@".contains(&b) || (b' '..=b'=').contains(&b)
            })
    };
    if tags.len() > MAX_TAGS {
        return Some(format!(
            "{} tags; AWS allows at most {MAX_TAGS}",
            tags.len()
        ));
    }
    tags.iter()
        .find(|(k, v)| !valid(k, 100) || !valid(v, 256))
        .map(|(k, v)| format!("tag `{k}` = `{v}` does not match AWS's tag pattern or length"))
}

/// Records tagged usage (the slow path: a lock and an allocation). Invalid
/// tag sets are recorded untagged, never dropped, and reported.
pub fn record_tagged(index: usize, quantity: u64, mut tags: Tags) {
    if quantity == 0 {
        return;
    }
    tags.sort();
    tags.dedup_by(|a, b| a.0 == b.0);
    if let Some(why) = invalid_tags(&tags) {
        tracing::warn!(target: "marketgate", %why, "usage recorded without its tags");
        status::degrade(
            "invalid-tags",
            format!("usage recorded without tags: {why}"),
        );
        tags.clear();
    }
    let mut map = TAGGED.lock().unwrap_or_else(PoisonError::into_inner);
    *map.get_or_insert_with(HashMap::new)
        .entry((index, tags))
        .or_default() += quantity;
}

fn take_tagged() -> HashMap<(usize, Tags), u64> {
    TAGGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default()
}

// ---- the ledger ----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum RecordState {
    Pending,
    Sent(String),
    Rejected(String),
    Unbillable { code: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    from: i64,
    quantity: u32,
    token: String,
    parts: Vec<(Tags, u32)>,
    /// Attempts whose outcome is unknown; while non-zero the record may
    /// have been stored and is never re-billed for another hour.
    doubt: u32,
    state: RecordState,
}

/// State rebuilt from journal events: unassigned units per (dimension,
/// hour, tags) and records per (dimension, hour).
#[derive(Debug, Default)]
struct Ledger {
    buckets: BTreeMap<(String, i64, Tags), u64>,
    records: BTreeMap<(String, i64), Record>,
}

impl Ledger {
    fn take(&mut self, d: &str, h: i64, t: &Tags, q: u64) {
        let key = (d.to_owned(), h, t.clone());
        if let Some(b) = self.buckets.get_mut(&key) {
            *b = b.saturating_sub(q);
            if *b == 0 {
                self.buckets.remove(&key);
            }
        }
    }

    fn give(&mut self, d: &str, h: i64, t: &Tags, q: u64) {
        if q > 0 {
            *self
                .buckets
                .entry((d.to_owned(), h, t.clone()))
                .or_default() += q;
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per event kind
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Header { .. } => {}
            Event::Add { d, h, q, t } => self.give(d, *h, t, *q),
            Event::Carry { d, from, to, q, t } => {
                self.take(d, *from, t, *q);
                self.give(d, *to, t, *q);
            }
            Event::Assign {
                d,
                from,
                h,
                q,
                token,
                alloc,
            } => {
                let parts = if alloc.is_empty() {
                    vec![(Tags::new(), *q)]
                } else {
                    alloc.clone()
                };
                for (t, amount) in &parts {
                    self.take(d, *from, t, u64::from(*amount));
                }
                self.records.insert(
                    (d.clone(), *h),
                    Record {
                        from: *from,
                        quantity: *q,
                        token: token.clone(),
                        parts,
                        doubt: 0,
                        state: RecordState::Pending,
                    },
                );
            }
            Event::Attempt { d, h } => {
                if let Some(r) = self.records.get_mut(&(d.clone(), *h)) {
                    r.doubt += 1;
                }
            }
            Event::NotDelivered { d, h } => {
                if let Some(r) = self.records.get_mut(&(d.clone(), *h)) {
                    r.doubt = r.doubt.saturating_sub(1);
                }
            }
            Event::Sent { d, h, id } => {
                if let Some(r) = self.records.get_mut(&(d.clone(), *h)) {
                    r.state = RecordState::Sent(id.clone());
                }
            }
            Event::Rejected { d, h, code, to } => {
                if let Some(r) = self.records.get_mut(&(d.clone(), *h)) {
                    r.state = RecordState::Rejected(code.clone());
                    let parts = r.parts.clone();
                    for (t, amount) in &parts {
                        self.give(d, *to, t, u64::from(*amount));
                    }
                }
            }
            Event::Unbillable {
                d,
                h,
                code,
                message,
            } => {
                if let Some(r) = self.records.get_mut(&(d.clone(), *h)) {
                    r.state = RecordState::Unbillable {
                        code: code.clone(),
                        message: message.clone(),
                    };
                }
            }
            Event::Restore {
                d,
                h,
                from,
                q,
                token,
                alloc,
                doubt,
                state,
            } => {
                let parts = if alloc.is_empty() {
                    vec![(Tags::new(), *q)]
                } else {
                    alloc.clone()
                };
                let state = match state {
                    RestoredState::Pending => RecordState::Pending,
                    RestoredState::Sent(id) => RecordState::Sent(id.clone()),
                    RestoredState::Rejected(code) => RecordState::Rejected(code.clone()),
                    RestoredState::Unbillable { code, message } => RecordState::Unbillable {
                        code: code.clone(),
                        message: message.clone(),
                    },
                };
                self.records.insert(
                    (d.clone(), *h),
                    Record {
                        from: *from,
                        quantity: *q,
                        token: token.clone(),
                        parts,
                        doubt: *doubt,
                        state,
                    },
                );
            }
        }
    }

    /// Folds in `disk`, the journal a previous run left, which could not be
    /// read when this run started. Buckets add up. Where both hold a record
    /// for the same hour, this run's stays; the disk's is returned to a
    /// bucket when it was certainly never stored, reported unconfirmed when
    /// it may have been, and dropped when it was finished.
    fn merge(&mut self, disk: Ledger, now_hour: i64) -> Vec<String> {
        let mut notes = Vec::new();
        for ((d, h, t), q) in disk.buckets {
            self.give(&d, h, &t, q);
        }
        for (key, mut record) in disk.records {
            let std::collections::btree_map::Entry::Occupied(_) = self.records.entry(key.clone())
            else {
                self.records.insert(key, record);
                continue;
            };
            let (d, h) = key;
            match record.state {
                RecordState::Pending if record.doubt == 0 => {
                    for (t, q) in &record.parts {
                        self.give(&d, now_hour, t, u64::from(*q));
                    }
                    notes.push(format!(
                        "{} units of `{d}` for {} from the previous run moved to {}",
                        record.quantity,
                        hour_label(h),
                        hour_label(now_hour)
                    ));
                }
                RecordState::Pending => {
                    record.state = RecordState::Unbillable {
                        code: "Unconfirmed".to_owned(),
                        message: format!(
                            "{} units of `{d}` for {} from the previous run are unconfirmed and \
                             collide with this run's record; not billed again",
                            record.quantity,
                            hour_label(h)
                        ),
                    };
                    notes.push(format!("unconfirmed record of `{d}` for {}", hour_label(h)));
                }
                _ => {}
            }
        }
        notes
    }

    fn taken(&self, d: &str, h: i64) -> bool {
        self.records.contains_key(&(d.to_owned(), h))
    }

    /// Events that rebuild this state, forgetting finished records too old
    /// to matter (AWS would refuse their hour anyway).
    fn snapshot(&self, now_hour: i64) -> Vec<Event> {
        let mut events = Vec::new();
        for ((d, h, t), q) in &self.buckets {
            events.push(Event::Add {
                d: d.clone(),
                h: *h,
                q: *q,
                t: t.clone(),
            });
        }
        for ((d, h), r) in &self.records {
            let finished = r.state != RecordState::Pending;
            if finished && *h < now_hour - WINDOW - HOUR {
                continue;
            }
            events.push(Event::Restore {
                d: d.clone(),
                h: *h,
                from: r.from,
                q: r.quantity,
                token: r.token.clone(),
                alloc: alloc_field(&r.parts),
                doubt: r.doubt,
                state: match &r.state {
                    RecordState::Pending => RestoredState::Pending,
                    RecordState::Sent(id) => RestoredState::Sent(id.clone()),
                    RecordState::Rejected(code) => RestoredState::Rejected(code.clone()),
                    RecordState::Unbillable { code, message } => RestoredState::Unbillable {
                        code: code.clone(),
                        message: message.clone(),
                    },
                },
            });
        }
        events
    }
}

/// Allocations are stored only when some part is tagged.
fn alloc_field(parts: &[(Tags, u32)]) -> Vec<(Tags, u32)> {
    if parts.iter().all(|(t, _)| t.is_empty()) {
        Vec::new()
    } else {
        parts.to_vec()
    }
}

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
                    d: (*name).to_owned(),
                    h: hour,
                    q: delta,
                    t: Tags::new(),
                });
            }
        }
        for ((index, tags), q) in take_tagged() {
            if let Some((_, name)) = self.dims.iter().find(|(i, _)| *i == index) {
                events.push(Event::Add {
                    d: (*name).to_owned(),
                    h: hour,
                    q,
                    t: tags,
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
                    d,
                    from: h,
                    h: target,
                    q: total,
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
                d: d.to_owned(),
                from,
                to,
                q: *q,
                t: t.clone(),
            })
            .collect();
        self.commit(&events);
    }

    fn allocations(parts: &[(Tags, u32)]) -> Option<Vec<UsageAllocation>> {
        if parts.iter().all(|(t, _)| t.is_empty()) {
            return None;
        }
        let built: Vec<UsageAllocation> = parts
            .iter()
            .filter_map(|(tags, q)| {
                let tags: Vec<Tag> = if tags.is_empty() {
                    vec![
                        Tag::builder()
                            .key(UNTAGGED_KEY)
                            .value("true")
                            .build()
                            .ok()?,
                    ]
                } else {
                    tags.iter()
                        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                        .collect()
                };
                UsageAllocation::builder()
                    .allocated_usage_quantity(i32::try_from(*q).unwrap_or(i32::MAX))
                    .set_tags(Some(tags))
                    .build()
                    .ok()
            })
            .collect();
        Some(built)
    }

    /// Sends pending records, oldest first. Stops at the first transient
    /// failure (the caller backs off).
    async fn send(&mut self, now: SystemTime) -> Result<(), SendStop> {
        let now_hour = hour_of(now);
        let pending: Vec<((String, i64), Record)> = self
            .ledger
            .records
            .iter()
            .filter(|(_, r)| r.state == RecordState::Pending)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let now_secs = epoch_secs(now);
        for ((d, h), record) in pending {
            if h + WINDOW - WINDOW_MARGIN <= now_secs {
                self.expire(&d, h, &record, now_hour);
                continue;
            }
            // Journaled before the request leaves: a crash or an abort
            // mid-request leaves the record in doubt, never re-billable.
            self.commit(&[Event::Attempt { d: d.clone(), h }]);
            let result = self
                .clients
                .metering
                .meter_usage()
                .product_code(self.product.code())
                .usage_dimension(&d)
                .timestamp(DateTime::from(at_hour(h)))
                .usage_quantity(i32::try_from(record.quantity).unwrap_or(i32::MAX))
                .set_usage_allocations(Self::allocations(&record.parts))
                .client_token(&record.token)
                .send()
                .await;
            let failure = match result {
                Ok(output) => {
                    status::record_call("MeterUsage", Ok(()));
                    let id = output.metering_record_id().unwrap_or_default().to_owned();
                    *self.sent_units.entry(d.clone()).or_default() += u64::from(record.quantity);
                    tracing::info!(
                        target: "marketgate",
                        dimension = %d,
                        hour = %hour_label(h),
                        quantity = record.quantity,
                        record = %id,
                        "usage reported"
                    );
                    self.commit(&[Event::Sent { d, h, id }]);
                    continue;
                }
                Err(e) => classify("MeterUsage", &e),
            };
            status::record_call("MeterUsage", Err(&failure));
            if failure.delivery != Delivery::Unknown {
                self.commit(&[Event::NotDelivered { d: d.clone(), h }]);
            }
            let in_doubt = self
                .ledger
                .records
                .get(&(d.clone(), h))
                .is_some_and(|r| r.doubt > 0);
            match failure.code.as_deref() {
                // Another record of this task holds the hour (ours would
                // have been answered as identical): this one was not stored.
                Some(code @ "DuplicateRequestException") => {
                    self.reject(&d, h, &record, code, now_hour);
                }
                // The hour is no longer accepted. Carry the units, unless an
                // earlier attempt may have been stored while it still was.
                Some(code @ ("TimestampOutOfBoundsException" | "IdempotencyConflictException")) => {
                    if in_doubt {
                        self.unconfirmed(&d, h, &record);
                    } else {
                        self.reject(&d, h, &record, code, now_hour);
                    }
                }
                _ if failure.retry == Retry::Transient => {
                    return Err(SendStop::Transient(failure));
                }
                _ => {
                    let code = failure.code.clone().unwrap_or_else(|| "Error".to_owned());
                    let message = format!(
                        "{} units of `{d}` for {} cannot be billed: {failure}",
                        record.quantity,
                        hour_label(h)
                    );
                    tracing::error!(target: "marketgate", "{message}");
                    self.commit(&[Event::Unbillable {
                        d,
                        h,
                        code,
                        message,
                    }]);
                }
            }
        }
        Ok(())
    }

    /// AWS refused the record's hour: its units go to the next hour.
    fn reject(&mut self, d: &str, h: i64, record: &Record, code: &str, now_hour: i64) {
        tracing::warn!(
            target: "marketgate",
            dimension = d,
            hour = %hour_label(h),
            quantity = record.quantity,
            code,
            "AWS will not take this hour; usage carried to a later hour"
        );
        self.carried_units += u64::from(record.quantity);
        self.commit(&[Event::Rejected {
            d: d.to_owned(),
            h,
            code: code.to_owned(),
            to: now_hour,
        }]);
    }

    /// A record that may have been stored and can no longer be confirmed.
    fn unconfirmed(&mut self, d: &str, h: i64, record: &Record) {
        let message = format!(
            "{} units of `{d}` for {} are unconfirmed: a request for them may have reached AWS \
             before the connection failed, and AWS no longer accepts that hour; they are not \
             billed again to avoid billing twice",
            record.quantity,
            hour_label(h)
        );
        tracing::error!(target: "marketgate", "{message}");
        self.commit(&[Event::Unbillable {
            d: d.to_owned(),
            h,
            code: "Unconfirmed".to_owned(),
            message,
        }]);
    }

    /// A record about to leave the 6-hour window without confirmation.
    fn expire(&mut self, d: &str, h: i64, record: &Record, now_hour: i64) {
        if record.doubt > 0 {
            self.unconfirmed(d, h, record);
        } else {
            tracing::error!(
                target: "marketgate",
                dimension = d,
                hour = %hour_label(h),
                quantity = record.quantity,
                "AWS could not be reached for almost 6 hours; usage carried to the current hour"
            );
            self.reject(d, h, record, "OutOfWindow", now_hour);
        }
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
    let max_backoff = every * 30;
    let mut backoff = every;
    loop {
        ticker.tick().await;
        let may_send = tokio::time::Instant::now() >= next_send;
        let result = pipeline.lock().await.tick(may_send).await;
        match result {
            Ok(()) if may_send => backoff = every,
            Ok(()) => {}
            Err(failure) => {
                let delay = backoff.mul_f64(0.5 + random_fraction() / 2.0);
                tracing::warn!(target: "marketgate", %failure, ?delay, "usage reports deferred");
                next_send = tokio::time::Instant::now() + delay;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

fn random_fraction() -> f64 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        move |n| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        }
    }

    /// A random but valid history: the events a pipeline could write.
    #[allow(clippy::many_single_char_names)] // the events' own field names
    fn history(seed: u64) -> Vec<Event> {
        let mut r = lcg(seed);
        let dims = ["a", "b"];
        let tags: [Tags; 2] = [Vec::new(), vec![("k".to_owned(), "v".to_owned())]];
        let mut ledger = Ledger::default();
        let mut events = Vec::new();
        for _ in 0..200 {
            let d = dims[usize::try_from(r(2)).unwrap_or(0)].to_owned();
            let t = tags[usize::try_from(r(2)).unwrap_or(0)].clone();
            let h = i64::try_from(r(8)).unwrap_or(0) * HOUR;
            let event = match r(7) {
                0 | 1 => Event::Add {
                    d,
                    h,
                    q: r(50) + 1,
                    t,
                },
                2 => {
                    let q = *ledger.buckets.get(&(d.clone(), h, t.clone())).unwrap_or(&0);
                    if q == 0 {
                        continue;
                    }
                    Event::Carry {
                        d,
                        from: h,
                        to: h + HOUR,
                        q: r(q) + 1,
                        t,
                    }
                }
                3 => {
                    let target = i64::try_from(r(8)).unwrap_or(0) * HOUR;
                    let q = *ledger.buckets.get(&(d.clone(), h, t.clone())).unwrap_or(&0);
                    if q == 0 || ledger.taken(&d, target) {
                        continue;
                    }
                    let q = u32::try_from(q).unwrap_or(u32::MAX);
                    Event::Assign {
                        d,
                        from: h,
                        h: target,
                        q,
                        token: format!("t{}", r(1000)),
                        alloc: alloc_field(&[(t, q)]),
                    }
                }
                4 => Event::Attempt { d, h },
                5 => match r(4) {
                    0 => Event::NotDelivered { d, h },
                    1 => Event::Sent {
                        d,
                        h,
                        id: "id".to_owned(),
                    },
                    2 => Event::Unbillable {
                        d,
                        h,
                        code: "X".to_owned(),
                        message: "m".to_owned(),
                    },
                    _ => {
                        if ledger
                            .records
                            .get(&(d.clone(), h))
                            .is_none_or(|r| r.state != RecordState::Pending)
                        {
                            continue;
                        }
                        Event::Rejected {
                            d,
                            h,
                            code: "Duplicate".to_owned(),
                            to: 7 * HOUR,
                        }
                    }
                },
                _ => continue,
            };
            ledger.apply(&event);
            events.push(event);
        }
        events
    }

    #[test]
    fn a_snapshot_replays_to_the_same_state() {
        for seed in 0..200 {
            let mut original = Ledger::default();
            for e in history(seed) {
                original.apply(&e);
            }
            let mut replayed = Ledger::default();
            for e in original.snapshot(0) {
                replayed.apply(&e);
            }
            assert_eq!(original.buckets, replayed.buckets, "seed {seed}");
            assert_eq!(original.records, replayed.records, "seed {seed}");
        }
    }

    #[test]
    fn merging_a_late_journal_keeps_every_unit_and_bills_no_hour_twice() {
        let mut memory = Ledger::default();
        for e in [
            Event::Add {
                d: "a".into(),
                h: 0,
                q: 5,
                t: Vec::new(),
            },
            Event::Assign {
                d: "a".into(),
                from: 0,
                h: 0,
                q: 5,
                token: "mine".into(),
                alloc: Vec::new(),
            },
        ] {
            memory.apply(&e);
        }
        let mut disk = Ledger::default();
        for e in [
            Event::Add {
                d: "a".into(),
                h: 0,
                q: 7,
                t: Vec::new(),
            },
            Event::Assign {
                d: "a".into(),
                from: 0,
                h: 0,
                q: 7,
                token: "old".into(),
                alloc: Vec::new(),
            },
            Event::Add {
                d: "a".into(),
                h: HOUR,
                q: 3,
                t: Vec::new(),
            },
            Event::Add {
                d: "b".into(),
                h: 0,
                q: 2,
                t: Vec::new(),
            },
            Event::Assign {
                d: "b".into(),
                from: 0,
                h: 0,
                q: 2,
                token: "old2".into(),
                alloc: Vec::new(),
            },
            Event::Attempt {
                d: "b".into(),
                h: 0,
            },
        ] {
            disk.apply(&e);
        }
        memory.merge(disk, 2 * HOUR);
        // This run's record for (a, 0) stays; the disk's (never attempted)
        // goes back to a bucket; (b, 0) comes over as it was.
        assert_eq!(memory.records[&("a".to_owned(), 0)].token, "mine");
        assert_eq!(
            memory.buckets.get(&("a".to_owned(), 2 * HOUR, Vec::new())),
            Some(&7)
        );
        assert_eq!(
            memory.buckets.get(&("a".to_owned(), HOUR, Vec::new())),
            Some(&3)
        );
        assert_eq!(memory.records[&("b".to_owned(), 0)].doubt, 1);
    }

    #[test]
    fn tags_follow_aws_pattern_and_limits() {
        let ok: Tags = vec![("team".into(), "search & ranking (1)".into())];
        assert_eq!(invalid_tags(&ok), None);
        let bad: Tags = vec![("team".into(), "naïve".into())];
        assert!(invalid_tags(&bad).is_some());
        let many: Tags = (0..6).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(invalid_tags(&many).is_some());
        assert_eq!(hour_of(UNIX_EPOCH + Duration::from_secs(7199)), 3600);
    }
}
