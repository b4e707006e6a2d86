//! Journal recovery as the `journal` fuzz target drives it (`fuzzing`
//! feature only): arbitrary bytes as the journal file a previous run left.
//!
//! What must hold, whatever the bytes (a panic reports a violation):
//!
//! - opening and recovering never panics: the file is read, refused (another
//!   product, a newer format) or recovered;
//! - what recovery keeps is plausible: no record dated after the next hour,
//!   no bucket after the one after it;
//! - recovery never makes usage: the units it holds (unreported buckets and
//!   the records not refused) are at most the units the intact frames
//!   brought in (`Add`, compacted records, and records whose units were not
//!   in their bucket, which only damage or forgery produce);
//! - the recovered state survives compaction: written out as a fresh journal
//!   and read back, it is the same.

use std::path::Path;
use std::sync::Arc;

use super::journal::{Event, Journal, RestoredState};
use super::ledger::{Ledger, RecordState};
use super::sim_fs::SimFs;
use super::storage::Storage;
use crate::time::HOUR;

const PRODUCT: &str = "fuzz-product";

/// Recovers `bytes` as the journal of `PRODUCT` at `now_hour` and checks
/// the properties above.
pub(crate) fn check(bytes: &[u8], now_hour: i64) {
    let dir = Path::new("/state");
    let fs = SimFs::new(0);
    fs.write(&dir.join(format!("metering-{PRODUCT}.journal")), bytes);
    let storage: Arc<dyn Storage> = Arc::new(fs);
    let Ok((journal, recovered)) = Journal::open(&storage, dir, PRODUCT) else {
        return;
    };
    drop(journal);
    let mut ledger = Ledger::default();
    let mut brought = 0u128;
    for event in &recovered.events {
        brought += units_brought(&ledger, event);
        ledger.apply(event);
    }
    if recovered.damage.is_some() {
        ledger.distrust();
    }
    ledger.drop_implausible(now_hour);

    for (d, h) in ledger.records.keys() {
        assert!(*h <= now_hour + HOUR, "record {d}@{h} after the next hour");
    }
    for (d, h, _) in ledger.buckets.keys() {
        assert!(*h <= now_hour + 2 * HOUR, "bucket {d}@{h} too far ahead");
    }
    let held = held_units(&ledger);
    assert!(
        held <= brought,
        "recovery holds {held} units; the journal brought in {brought}"
    );

    // Compaction round trip.
    let snapshot = ledger.snapshot(now_hour);
    let fresh: Arc<dyn Storage> = Arc::new(SimFs::new(0));
    let (mut journal, _) = Journal::open(&fresh, dir, PRODUCT).expect("a fresh journal");
    journal
        .compact(PRODUCT, &snapshot)
        .expect("compaction in memory");
    drop(journal);
    let (_, again) = Journal::open(&fresh, dir, PRODUCT).expect("the compacted journal");
    assert!(again.damage.is_none() && again.torn_tail == 0);
    let mut replayed = Ledger::default();
    for event in &again.events {
        replayed.apply(event);
    }
    let mut expected = ledger.records.clone();
    expected.retain(|(_, h), r| r.state == RecordState::Pending || *h >= now_hour - 7 * HOUR);
    assert_eq!(
        replayed.buckets, ledger.buckets,
        "buckets changed by compaction"
    );
    assert_eq!(replayed.records, expected, "records changed by compaction");
}

/// Units `event` brings into `ledger` from outside it.
fn units_brought(ledger: &Ledger, event: &Event) -> u128 {
    match event {
        Event::Add { quantity, .. } => u128::from(*quantity),
        Event::Restore {
            quantity, state, ..
        } if !matches!(state, RestoredState::Rejected(_)) => u128::from(*quantity),
        // A record made from units its bucket does not hold.
        Event::Assign {
            dimension,
            from,
            quantity,
            ..
        } => {
            let in_bucket: u64 = ledger
                .buckets
                .iter()
                .filter(|((d, h, _), _)| d == dimension && h == from)
                .map(|(_, q)| *q)
                .sum();
            u128::from(u64::from(*quantity).saturating_sub(in_bucket))
        }
        _ => 0,
    }
}

/// Units the ledger holds: unreported, and in records not refused (whose
/// units went back to a bucket).
fn held_units(ledger: &Ledger) -> u128 {
    let buckets: u128 = ledger.buckets.values().map(|q| u128::from(*q)).sum();
    let records: u128 = ledger
        .records
        .values()
        .filter(|r| !matches!(r.state, RecordState::Rejected(_)))
        .map(|r| u128::from(r.quantity))
        .sum();
    buckets + records
}
