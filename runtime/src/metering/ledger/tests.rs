//! Unit tests of the ledger.

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

/// Found by fuzzing journal recovery: well-framed but hostile events (a
/// buyer can write the journal volume) must not make units. A carry moves
/// only what its bucket holds, and only a pending record can be refused
/// (returning its units once).
#[test]
fn forged_carries_and_refusals_make_no_units() {
    let untagged = Tags::new();
    let mut ledger = Ledger::default();
    for event in [
        Event::Add {
            dimension: "a".into(),
            hour: 0,
            quantity: 50,
            tags: untagged.clone(),
        },
        // Carries 80 out of a bucket of 50, then out of an empty one.
        Event::Carry {
            dimension: "a".into(),
            from: 0,
            to: HOUR,
            quantity: 80,
            tags: untagged.clone(),
        },
        Event::Carry {
            dimension: "a".into(),
            from: 5 * HOUR,
            to: HOUR,
            quantity: 1000,
            tags: untagged.clone(),
        },
    ] {
        ledger.apply(&event);
    }
    assert_eq!(ledger.buckets.values().sum::<u64>(), 50);
    ledger.apply(&Event::Assign {
        dimension: "a".into(),
        from: HOUR,
        hour: HOUR,
        quantity: 50,
        token: "t".into(),
        alloc: Vec::new(),
    });
    ledger.apply(&Event::Sent {
        dimension: "a".into(),
        hour: HOUR,
        id: "r".into(),
    });
    // Refused after it was sent, then twice: nothing comes back.
    for _ in 0..2 {
        ledger.apply(&Event::Rejected {
            dimension: "a".into(),
            hour: HOUR,
            code: "DuplicateRequestException".into(),
            to: 2 * HOUR,
        });
    }
    assert!(ledger.buckets.is_empty(), "{:?}", ledger.buckets);
    assert_eq!(
        ledger
            .records
            .get(&("a".to_owned(), HOUR))
            .map(|r| &r.state),
        Some(&RecordState::Sent("r".into()))
    );
}

/// Found by fuzzing journal recovery: a forged `Sent` after a `Rejected`
/// must not count the record as sent while its units are back in a bucket
/// (they would be billed twice).
#[test]
fn a_refused_record_is_never_counted_as_sent() {
    let mut ledger = Ledger::default();
    for event in [
        Event::Add {
            dimension: "b".into(),
            hour: 0,
            quantity: 7,
            tags: Tags::new(),
        },
        Event::Assign {
            dimension: "b".into(),
            from: 0,
            hour: 0,
            quantity: 7,
            token: "u".into(),
            alloc: Vec::new(),
        },
        Event::Rejected {
            dimension: "b".into(),
            hour: 0,
            code: "TimestampOutOfBoundsException".into(),
            to: HOUR,
        },
        Event::Sent {
            dimension: "b".into(),
            hour: 0,
            id: "r2".into(),
        },
        Event::Unbillable {
            dimension: "b".into(),
            hour: 0,
            code: "InvalidTagException".into(),
            message: "m".into(),
        },
    ] {
        ledger.apply(&event);
    }
    assert_eq!(
        ledger.records.get(&("b".to_owned(), 0)).map(|r| &r.state),
        Some(&RecordState::Rejected(
            "TimestampOutOfBoundsException".into()
        ))
    );
    assert_eq!(ledger.buckets.values().sum::<u64>(), 7);
}

/// Allocations only damage or forgery writes (parts that do not add up to
/// the quantity, untagged or empty parts, the same tags twice) are made
/// consistent on replay, the same way every time, so that a compacted
/// journal holds the record exactly as the journal it replaced (fuzzing
/// found the compaction round trip changing such a record).
#[test]
fn inconsistent_allocations_replay_the_same_after_compaction() {
    let team = |v: &str| vec![("team".to_owned(), v.to_owned())];
    let forged: [Vec<(Tags, u32)>; 5] = [
        vec![(Tags::new(), 0)],
        vec![(Tags::new(), 5), (Tags::new(), 10)],
        vec![(team("x"), 10)],
        vec![(team("x"), 5), (team("y"), 0), (team("x"), 10)],
        vec![(team("x"), 5), (team("y"), 9), (Tags::new(), 1)],
    ];
    for alloc in forged {
        let mut ledger = Ledger::default();
        ledger.apply(&add("a", 0, 15));
        ledger.apply(&Event::Assign {
            dimension: "a".into(),
            from: 0,
            hour: 0,
            quantity: 15,
            token: "t".into(),
            alloc: alloc.clone(),
        });
        let record = &ledger.records[&("a".to_owned(), 0)];
        let sum: u64 = record.parts.iter().map(|(_, q)| u64::from(*q)).sum();
        assert_eq!(sum, 15, "{alloc:?} gave parts {:?}", record.parts);
        let mut replayed = Ledger::default();
        for event in ledger.snapshot(0) {
            replayed.apply(&event);
        }
        assert_eq!(replayed.records, ledger.records, "{alloc:?}");
        assert_eq!(replayed.buckets, ledger.buckets, "{alloc:?}");
    }
    // What the runtime writes is kept as it is, order included.
    let written = vec![(team("y"), 9), (team("x"), 6)];
    assert_eq!(parts_of(&written, 15), written);
}
