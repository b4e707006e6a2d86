//! The pure, event-sourced state of the metering pipeline: buckets of
//! recorded units per (dimension, hour, tags) and the `MeterUsage` records
//! made from them. Every change is an [`Event`] that the journal stores
//! first, so replaying a journal rebuilds exactly this state.

use std::collections::BTreeMap;

use super::journal::{Event, RestoredState};
use crate::time::{HOUR, hour_label};
use crate::usage::Tags;

/// AWS refuses records more than 6 hours old (`TimestampOutOfBoundsException`).
pub(super) const WINDOW: i64 = 6 * HOUR;
/// Records are carried forward this long before they would fall out.
pub(super) const WINDOW_MARGIN: i64 = 10 * 60;
/// A new record keeps at least this much of AWS's window, so one short
/// outage cannot push it out again at once.
pub(super) const MIN_WINDOW_LEFT: i64 = HOUR;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RecordState {
    Pending,
    Sent(String),
    Rejected(String),
    Unbillable { code: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) from: i64,
    pub(super) quantity: u32,
    pub(super) token: String,
    pub(super) parts: Vec<(Tags, u32)>,
    /// Attempts whose outcome is unknown; while non-zero the record may
    /// have been stored and is never re-billed for another hour.
    pub(super) doubt: u32,
    /// Recovered from a damaged journal, whose lost bytes may have hidden
    /// that this record was already refused and its units carried: it is
    /// resent identically or reported, never carried.
    pub(super) suspect: bool,
    pub(super) state: RecordState,
}

/// State rebuilt from journal events: unassigned units per (dimension,
/// hour, tags) and records per (dimension, hour).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) buckets: BTreeMap<(String, i64, Tags), u64>,
    pub(super) records: BTreeMap<(String, i64), Record>,
}

impl Ledger {
    /// Takes up to `q` units from a bucket; returns how many it held of them.
    pub(super) fn take(&mut self, d: &str, h: i64, t: &Tags, q: u64) -> u64 {
        let key = (d.to_owned(), h, t.clone());
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return 0;
        };
        let taken = q.min(*bucket);
        *bucket -= taken;
        if *bucket == 0 {
            self.buckets.remove(&key);
        }
        taken
    }

    pub(super) fn give(&mut self, d: &str, h: i64, t: &Tags, q: u64) {
        if q > 0 {
            // Saturating: a forged quantity near u64::MAX must not wrap
            // around and subtract from real usage.
            let bucket = self
                .buckets
                .entry((d.to_owned(), h, t.clone()))
                .or_default();
            *bucket = bucket.saturating_add(q);
        }
    }

    fn record_mut(&mut self, dimension: &str, hour: i64) -> Option<&mut Record> {
        self.records.get_mut(&(dimension.to_owned(), hour))
    }

    /// Applies one journaled change. Events naming a record this ledger does
    /// not hold change nothing.
    pub(super) fn apply(&mut self, event: &Event) {
        match event {
            Event::Header { .. } => {}
            Event::Add {
                dimension,
                hour,
                quantity,
                tags,
            } => {
                self.give(dimension, *hour, tags, *quantity);
            }
            Event::Carry {
                dimension,
                from,
                to,
                quantity,
                tags,
            } => {
                // Only what the bucket held moves: a forged or damaged
                // journal must not make units.
                let moved = self.take(dimension, *from, tags, *quantity);
                self.give(dimension, *to, tags, moved);
            }
            Event::Assign {
                dimension,
                from,
                hour,
                quantity,
                token,
                alloc,
            } => {
                let parts = parts_of(alloc, *quantity);
                for (tags, amount) in &parts {
                    let _ = self.take(dimension, *from, tags, u64::from(*amount));
                }
                let record = Record {
                    from: *from,
                    quantity: *quantity,
                    token: token.clone(),
                    parts,
                    doubt: 0,
                    suspect: false,
                    state: RecordState::Pending,
                };
                self.records.insert((dimension.clone(), *hour), record);
            }
            Event::Attempt { .. }
            | Event::NotDelivered { .. }
            | Event::Sent { .. }
            | Event::Rejected { .. }
            | Event::Unbillable { .. } => self.apply_outcome(event),
            Event::Restore {
                dimension,
                hour,
                from,
                quantity,
                token,
                alloc,
                doubt,
                suspect,
                state,
            } => {
                let record = Record {
                    from: *from,
                    quantity: *quantity,
                    token: token.clone(),
                    parts: parts_of(alloc, *quantity),
                    doubt: *doubt,
                    suspect: *suspect,
                    state: RecordState::from(state),
                };
                self.records.insert((dimension.clone(), *hour), record);
            }
        }
    }

    /// What an attempt to send a record, or AWS's answer, did to it.
    fn apply_outcome(&mut self, event: &Event) {
        match event {
            Event::Attempt { dimension, hour } => {
                if let Some(r) = self.record_mut(dimension, *hour) {
                    r.doubt = r.doubt.saturating_add(1);
                }
            }
            Event::NotDelivered { dimension, hour } => {
                if let Some(r) = self.record_mut(dimension, *hour) {
                    r.doubt = r.doubt.saturating_sub(1);
                }
            }
            // Like a refusal below, an acceptance or a write-off decides
            // only a pending record: a sent record is never refused and
            // resent, a refused one never counted as sent too.
            Event::Sent {
                dimension,
                hour,
                id,
            } => {
                if let Some(r) = self.record_mut(dimension, *hour)
                    && r.state == RecordState::Pending
                {
                    r.state = RecordState::Sent(id.clone());
                }
            }
            Event::Rejected {
                dimension,
                hour,
                code,
                to,
            } => {
                // Only a pending record can be refused (its units returned
                // once): the pipeline never journals another.
                if let Some(r) = self.record_mut(dimension, *hour)
                    && r.state == RecordState::Pending
                {
                    r.state = RecordState::Rejected(code.clone());
                    let parts = r.parts.clone();
                    for (tags, amount) in &parts {
                        self.give(dimension, *to, tags, u64::from(*amount));
                    }
                }
            }
            Event::Unbillable {
                dimension,
                hour,
                code,
                message,
            } => {
                if let Some(r) = self.record_mut(dimension, *hour)
                    && r.state == RecordState::Pending
                {
                    let (code, message) = (code.clone(), message.clone());
                    r.state = RecordState::Unbillable { code, message };
                }
            }
            _ => {}
        }
    }

    /// Folds in `disk`, the journal a previous run left, which could not be
    /// read when this run started. Buckets add up. Where both hold a record
    /// for the same hour, this run's stays; the disk's is returned to a
    /// bucket when it was certainly never stored, reported unconfirmed when
    /// it may have been, and dropped when it was finished.
    pub(super) fn merge(&mut self, disk: Ledger, now_hour: i64) -> Vec<String> {
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
                RecordState::Pending if record.doubt == 0 && !record.suspect => {
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

    /// After damage: the lost bytes may have hidden any event, so units not
    /// yet in a record may already have been billed (an `Assign` or `Carry`
    /// that took them could be among the lost bytes). They are dropped, and
    /// every pending record becomes suspect. Returns the units dropped.
    /// Damaging a journal can thus do no more than deleting it.
    pub(super) fn distrust(&mut self) -> u64 {
        let dropped = self.buckets.values().sum();
        self.buckets.clear();
        for record in self.records.values_mut() {
            if record.state == RecordState::Pending {
                record.suspect = true;
            }
        }
        dropped
    }

    /// Drops what no run could have written by `now_hour`: records for hours
    /// after the next one and buckets after the one after (a flush carries
    /// to the next hour, and past a taken hour to the one after). A forged
    /// "already reported" record for a future hour would otherwise keep
    /// this task from reporting it. Returns the records and units dropped.
    pub(super) fn drop_implausible(&mut self, now_hour: i64) -> (usize, u64) {
        let records = self.records.len();
        self.records.retain(|(_, h), _| *h <= now_hour + HOUR);
        let mut units = 0;
        self.buckets.retain(|(_, h, _), q| {
            let keep = *h <= now_hour + 2 * HOUR;
            if !keep {
                units += *q;
            }
            keep
        });
        (records - self.records.len(), units)
    }

    /// The first hour from `start` up to `last` (inclusive) that this task
    /// has not reported for `d`, that AWS accepts for at least another
    /// [`MIN_WINDOW_LEFT`] after `now`, and that is not before
    /// `started_hour` (AWS: a timestamp must not precede the start of the
    /// software's usage).
    pub(super) fn free_hour(
        &self,
        d: &str,
        start: i64,
        last: i64,
        now: i64,
        started_hour: i64,
    ) -> Option<i64> {
        let oldest = now - WINDOW + WINDOW_MARGIN + MIN_WINDOW_LEFT;
        let earliest = oldest + (HOUR - oldest.rem_euclid(HOUR)) % HOUR;
        let mut h = start.max(earliest).max(started_hour);
        while h <= last {
            if !self.taken(d, h) {
                return Some(h);
            }
            h += HOUR;
        }
        None
    }

    pub(super) fn taken(&self, d: &str, h: i64) -> bool {
        self.records.contains_key(&(d.to_owned(), h))
    }

    /// Events that rebuild this state, forgetting finished records too old
    /// to matter (AWS would refuse their hour anyway).
    pub(super) fn snapshot(&self, now_hour: i64) -> Vec<Event> {
        let mut events = Vec::new();
        for ((d, h, t), q) in &self.buckets {
            events.push(Event::Add {
                dimension: d.clone(),
                hour: *h,
                quantity: *q,
                tags: t.clone(),
            });
        }
        for ((d, h), r) in &self.records {
            let finished = r.state != RecordState::Pending;
            if finished && *h < now_hour - WINDOW - HOUR {
                continue;
            }
            events.push(Event::Restore {
                dimension: d.clone(),
                hour: *h,
                from: r.from,
                quantity: r.quantity,
                token: r.token.clone(),
                alloc: alloc_field(&r.parts),
                doubt: r.doubt,
                suspect: r.suspect,
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
/// A record's parts: its allocations, or all of it untagged.
///
/// The runtime writes allocations with distinct tags, no empty part, at
/// least one tagged, summing to the quantity; for those this is the
/// identity (order kept: a resent record must carry the same parameters).
/// Anything else only damage or forgery writes; it is made consistent the
/// same way on every replay, so that compaction keeps it as it is: parts
/// with the same tags merged, empty parts dropped, and a record whose parts
/// are all untagged or do not add up to its quantity held untagged whole.
fn parts_of(alloc: &[(Tags, u32)], quantity: u32) -> Vec<(Tags, u32)> {
    let mut parts: Vec<(Tags, u32)> = Vec::with_capacity(alloc.len());
    let mut sum = 0u64;
    for (tags, amount) in alloc {
        sum += u64::from(*amount);
        if *amount == 0 {
            continue;
        }
        match parts.iter_mut().find(|(t, _)| t == tags) {
            Some((_, merged)) => *merged = merged.saturating_add(*amount),
            None => parts.push((tags.clone(), *amount)),
        }
    }
    if sum != u64::from(quantity) || parts.iter().all(|(t, _)| t.is_empty()) {
        return vec![(Tags::new(), quantity)];
    }
    parts
}

impl From<&RestoredState> for RecordState {
    fn from(state: &RestoredState) -> Self {
        match state {
            RestoredState::Pending => RecordState::Pending,
            RestoredState::Sent(id) => RecordState::Sent(id.clone()),
            RestoredState::Rejected(code) => RecordState::Rejected(code.clone()),
            RestoredState::Unbillable { code, message } => RecordState::Unbillable {
                code: code.clone(),
                message: message.clone(),
            },
        }
    }
}

pub(super) fn alloc_field(parts: &[(Tags, u32)]) -> Vec<(Tags, u32)> {
    if parts.iter().all(|(t, _)| t.is_empty()) {
        Vec::new()
    } else {
        parts.to_vec()
    }
}

#[cfg(test)]
mod tests;
