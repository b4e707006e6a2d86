//! Drawdown journal recovery as the `draw_journal` fuzz target drives it
//! (`fuzzing` feature only): arbitrary bytes as the `drawdown.journal` a
//! previous run left on the state volume (a buyer can write anything there;
//! a disk can tear or corrupt it).
//!
//! What must hold, whatever the bytes (a panic reports a violation):
//!
//! - opening never panics: the file is recovered or refused (locked, a
//!   newer format);
//! - every unanswered batch it hands back is one the runtime could have
//!   written: at least one unit, a token that is non-empty, without blanks
//!   and at most 64 characters, batches in increasing `seq` order, no token
//!   twice, and the per-entitlement `pending` totals are exactly their
//!   units;
//! - a batch journaled after recovery gets a `seq` above every recovered
//!   one (a `seq` that damaged bytes may hide is never reused);
//! - recovery is stable: reopened, the journal holds the same unanswered
//!   batches and totals (plus the new batch), with nothing torn or damaged.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::journal::{DrawJournal, JOURNAL_FILE, MAX_TOKEN};
use crate::metering::sim_fs::SimFs;
use crate::metering::storage::Storage;

/// Recovers `bytes` as a drawdown journal and checks the properties above.
pub(crate) fn check(bytes: &[u8]) {
    let dir = Path::new("/state");
    let fs = SimFs::new(0);
    fs.write(&dir.join(JOURNAL_FILE), bytes);
    let storage: Arc<dyn Storage> = Arc::new(fs);
    let Ok((mut journal, _recovery)) = DrawJournal::open(storage.clone(), dir) else {
        return;
    };
    let pending = journal.pending();
    let totals = journal.totals();
    let mut tokens = BTreeSet::new();
    let mut last_seq = None;
    for b in &pending {
        assert!(b.units >= 1, "a batch of no units: {b:?}");
        assert!(
            !b.client_token.is_empty()
                && b.client_token.chars().count() <= MAX_TOKEN
                && !b.client_token.contains(char::is_whitespace),
            "a token the runtime never makes: {b:?}"
        );
        assert!(
            tokens.insert(b.client_token.clone()),
            "a token twice: {b:?}"
        );
        assert!(
            last_seq.is_none_or(|s| b.seq > s),
            "seq out of order: {b:?}"
        );
        last_seq = Some(b.seq);
    }
    for (name, t) in &totals {
        let units: u64 = pending
            .iter()
            .filter(|b| b.entitlement == *name)
            .map(|b| b.units)
            .sum();
        assert_eq!(t.pending, units, "pending total of {name}");
    }
    let added = journal
        .begin("FuzzEntitlement", 7, "fuzz-new-batch-token".to_owned(), 0)
        .ok();
    if let (Some(added), Some(last)) = (&added, last_seq) {
        assert!(added.seq > last, "seq {} reused (last {last})", added.seq);
    }
    drop(journal);
    let (again, recovery) = DrawJournal::open(storage, dir).expect("a recovered journal reopens");
    assert_eq!(
        (recovery.torn_tail_bytes, recovery.damaged_frames),
        (0, 0),
        "the rewritten journal reads back damaged"
    );
    let mut expected = pending;
    expected.extend(added);
    assert_eq!(again.pending(), expected, "unanswered batches changed");
    for (name, t) in &totals {
        let now = again.totals().get(name).cloned().unwrap_or_default();
        assert_eq!(
            (now.drawn, now.refused),
            (t.drawn, t.refused),
            "totals of {name}"
        );
    }
}
