//! Journal recovery as the `journal` fuzz target drives it (`fuzzing`
//! feature only): arbitrary bytes as the journal file a previous run left.
//!
//! What must hold, whatever the bytes (a panic reports a violation):
//!
//! - opening and recovering never panics: the file is read, refused (another
//!   product, a newer format) or recovered;
//! - what recovery keeps is plausible: no record dated after the next hour,
//!   no bucket after the one after it;
//! - replay never makes usage: the units held (unreported buckets and the
//!   records not refused) grow only by an `Add` or a compacted record, each
//!   by at most its quantity, or by a record made from units its bucket
//!   does not hold (which only damage or forgery writes); no other event
//!   adds a unit, and what recovery keeps is at most what replay made;
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
        let before = held_units(&ledger);
        ledger.apply(event);
        let made = held_units(&ledger).saturating_sub(before);
        match event {
            Event::Add { quantity, .. } => {
                assert!(made <= u128::from(*quantity), "{event:?} made {made} units");
            }
            Event::Restore {
                quantity, state, ..
            } if !matches!(state, RestoredState::Rejected(_)) => {
                assert!(made <= u128::from(*quantity), "{event:?} made {made} units");
            }
            // A record made from units its bucket does not hold: only damage
            // or forgery writes one, and it is kept as journaled (it may
            // have been sent so); counted as units the journal claims.
            Event::Assign { .. } => {}
            _ => assert!(made == 0, "{event:?} made {made} units"),
        }
        brought += made;
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
