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
    pub(super) fn take(&mut self, d: &str, h: i64, t: &Tags, q: u64) {
        let key = (d.to_owned(), h, t.clone());
        if let Some(b) = self.buckets.get_mut(&key) {
            *b = b.saturating_sub(q);
            if *b == 0 {
                self.buckets.remove(&key);
            }
        }
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
                self.take(dimension, *from, tags, *quantity);
                self.give(dimension, *to, tags, *quantity);
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
                    self.take(dimension, *from, tags, u64::from(*amount));
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
            Event::Sent {
                dimension,
                hour,
                id,
            } => {
                if let Some(r) = self.record_mut(dimension, *hour) {
                    r.state = RecordState::Sent(id.clone());
                }
            }
            Event::Rejected {
                dimension,
                hour,
                code,
                to,
            } => {
                if let Some(r) = self.record_mut(dimension, *hour) {
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
                if let Some(r) = self.record_mut(dimension, *hour) {
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
fn parts_of(alloc: &[(Tags, u32)], quantity: u32) -> Vec<(Tags, u32)> {
    if alloc.is_empty() {
        vec![(Tags::new(), quantity)]
    } else {
        alloc.to_vec()
    }
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
                    dimension: d,
                    hour: h,
                    quantity: r(50) + 1,
                    tags: t,
                },
                2 => {
                    let q = *ledger.buckets.get(&(d.clone(), h, t.clone())).unwrap_or(&0);
                    if q == 0 {
                        continue;
                    }
                    Event::Carry {
                        dimension: d,
                        from: h,
                        to: h + HOUR,
                        quantity: r(q) + 1,
                        tags: t,
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
                        dimension: d,
                        from: h,
                        hour: target,
                        quantity: q,
                        token: format!("t{}", r(1000)),
                        alloc: alloc_field(&[(t, q)]),
                    }
                }
                4 => Event::Attempt {
                    dimension: d,
                    hour: h,
                },
                5 => match r(4) {
                    0 => Event::NotDelivered {
                        dimension: d,
                        hour: h,
                    },
                    1 => Event::Sent {
                        dimension: d,
                        hour: h,
                        id: "id".to_owned(),
                    },
                    2 => Event::Unbillable {
                        dimension: d,
                        hour: h,
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
                            dimension: d,
                            hour: h,
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
                dimension: "a".into(),
                hour: 0,
                quantity: 5,
                tags: Vec::new(),
            },
            Event::Assign {
                dimension: "a".into(),
                from: 0,
                hour: 0,
                quantity: 5,
                token: "mine".into(),
                alloc: Vec::new(),
            },
        ] {
            memory.apply(&e);
        }
        let mut disk = Ledger::default();
        for e in [
            Event::Add {
                dimension: "a".into(),
                hour: 0,
                quantity: 7,
                tags: Vec::new(),
            },
            Event::Assign {
                dimension: "a".into(),
                from: 0,
                hour: 0,
                quantity: 7,
                token: "old".into(),
                alloc: Vec::new(),
            },
            Event::Add {
                dimension: "a".into(),
                hour: HOUR,
                quantity: 3,
                tags: Vec::new(),
            },
            Event::Add {
                dimension: "b".into(),
                hour: 0,
                quantity: 2,
                tags: Vec::new(),
            },
            Event::Assign {
                dimension: "b".into(),
                from: 0,
                hour: 0,
                quantity: 2,
                token: "old2".into(),
                alloc: Vec::new(),
            },
            Event::Attempt {
                dimension: "b".into(),
                hour: 0,
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

    fn assign(d: &str, from: i64, hour: i64, q: u32, token: &str) -> Event {
        Event::Assign {
            dimension: d.into(),
            from,
            hour,
            quantity: q,
            token: token.into(),
            alloc: Vec::new(),
        }
    }

    fn add(d: &str, hour: i64, q: u64) -> Event {
        Event::Add {
            dimension: d.into(),
            hour,
            quantity: q,
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_forged_future_record_cannot_keep_an_hour_from_being_reported() {
        let now_hour = 10 * HOUR;
        let mut ledger = Ledger::default();
        for e in [
            add("a", now_hour, 5),
            // "Already reported" for the current hour, the next, and later.
            add("a", now_hour + 5 * HOUR, 1),
            assign("a", now_hour, now_hour, 5, "t0"),
            assign("a", now_hour + 5 * HOUR, now_hour + HOUR, 1, "t1"),
            add("a", now_hour + 5 * HOUR, 1),
            assign("a", now_hour + 5 * HOUR, now_hour + 2 * HOUR, 1, "t2"),
            add("b", now_hour + 3 * HOUR, 7),
            add("b", now_hour + 2 * HOUR, 3),
        ] {
            ledger.apply(&e);
        }
        let (records, units) = ledger.drop_implausible(now_hour);
        // Records up to the next hour and buckets up to the one after could
        // have been written by a flush; anything later could not.
        assert_eq!((records, units), (1, 7));
        assert!(ledger.taken("a", now_hour) && ledger.taken("a", now_hour + HOUR));
        assert!(!ledger.taken("a", now_hour + 2 * HOUR));
        assert_eq!(
            ledger
                .buckets
                .get(&("b".to_owned(), now_hour + 2 * HOUR, Vec::new())),
            Some(&3)
        );
    }

    #[test]
    fn after_damage_unassigned_units_are_dropped_and_pending_records_never_carried() {
        let mut ledger = Ledger::default();
        for e in [
            add("a", 0, 5),
            assign("a", 0, 0, 5, "t0"),
            add("a", HOUR, 9),
            add("a", HOUR, 4),
            assign("a", HOUR, HOUR, 9, "t1"),
            Event::Sent {
                dimension: "a".into(),
                hour: 0,
                id: "r".into(),
            },
        ] {
            ledger.apply(&e);
        }
        assert_eq!(ledger.distrust(), 4);
        assert!(ledger.buckets.is_empty());
        assert!(ledger.records[&("a".to_owned(), HOUR)].suspect);
        assert!(!ledger.records[&("a".to_owned(), 0)].suspect, "finished");
        // Suspicion survives compaction.
        let mut replayed = Ledger::default();
        for e in ledger.snapshot(HOUR) {
            replayed.apply(&e);
        }
        assert_eq!(replayed.records, ledger.records);
    }

    #[test]
    fn a_new_record_keeps_an_hour_of_window_and_never_predates_the_process() {
        let mut ledger = Ledger::default();
        let now = 20 * HOUR + 30 * 60;
        // An hour whose window closes in 40 minutes is not offered.
        let five_and_a_half_ago = now - WINDOW + 40 * 60;
        let h = ledger
            .free_hour("a", 0, 20 * HOUR, now, 0)
            .expect("an hour");
        assert!(h + WINDOW - WINDOW_MARGIN - now >= MIN_WINDOW_LEFT, "{h}");
        assert!(h > five_and_a_half_ago - HOUR);
        // Nor an hour before the process started.
        assert_eq!(
            ledger.free_hour("a", 0, 20 * HOUR, now, 19 * HOUR),
            Some(19 * HOUR)
        );
        ledger.apply(&add("a", 19 * HOUR, 1));
        ledger.apply(&assign("a", 19 * HOUR, 19 * HOUR, 1, "t"));
        assert_eq!(
            ledger.free_hour("a", 0, 20 * HOUR, now, 19 * HOUR),
            Some(20 * HOUR)
        );
        assert_eq!(ledger.free_hour("a", 0, 19 * HOUR, now, 19 * HOUR), None);
    }

    #[test]
    fn a_forged_huge_quantity_saturates_and_never_subtracts_from_real_usage() {
        let mut ledger = Ledger::default();
        ledger.apply(&add("a", 0, u64::MAX - 5));
        ledger.apply(&add("a", 0, 10));
        assert_eq!(
            ledger.buckets.get(&("a".to_owned(), 0, Vec::new())),
            Some(&u64::MAX)
        );
    }
}
