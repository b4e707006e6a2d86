//! The crash-safe journal of drawdown batches.
//!
//! Contract products can sell drawdown units, which AWS License Manager
//! consumes for good with a `PERPETUAL` `CheckoutLicense`, idempotent by its
//! `ClientToken`. The runtime turns counted units into a *batch* (an
//! entitlement, a number of units, a fresh client token), journals it here
//! durably **before** sending it, and journals its outcome after AWS
//! answers. After a crash, every batch without an outcome is sent again with
//! the same token: AWS answers a repeated token with the same consumption, so
//! a crash never draws twice and never loses a journaled batch.
//!
//! # File format
//!
//! `drawdown.journal` in the state directory is an append-only sequence of
//! frames `[length u32][checksum u64][JSON payload]`, little-endian, the
//! checksum being the first 8 bytes of the payload's SHA-256: the metering
//! journal's framing. Each payload is one [`Record`], tagged by `"k"`:
//!
//! - `header` `{version, next_seq}`: the first frame of every file. Every
//!   batch journaled after it has a `seq` of at least `next_seq`, the next
//!   one exactly `next_seq`, then one more each time.
//! - `totals` `{entitlement, drawn, refused}`: units of batches finished
//!   before the last compaction, once per entitlement.
//! - `begin` `{seq, entitlement, units, client_token, at}`: a batch.
//! - `finish` `{seq, outcome}`: its outcome, `Drawn` or `Refused`.
//!
//! Opening the journal reads every intact frame and then rewrites the file
//! from what it recovered (a *compaction*: temporary file, `fsync`, rename,
//! directory `fsync`), so a crash leaves either the old or the new file.
//! The file is compacted again whenever it grows past [`COMPACT_AT`].
//!
//! # What recovery trusts
//!
//! - A last frame that runs past the end of the file, or a tail of zeros, is
//!   a **torn tail**: a crash in the middle of an append. That batch or
//!   outcome was never acknowledged, so dropping it loses nothing.
//! - Any other frame that fails its checksum or does not parse is
//!   **damage**: recovery reads on from the next intact frame. Damage can
//!   hide a batch (its units are then never drawn: the customer is never
//!   charged twice) or an outcome (the batch is sent again with its own
//!   token: AWS draws nothing more). A copy of the damaged file is kept as
//!   `drawdown.journal.damaged`.
//! - Intact frames that no writer of this format produces (a batch of 0
//!   units, an empty or malformed token, a `seq` that does not increase, a
//!   token used twice, an outcome for an unknown or finished batch, totals
//!   twice for an entitlement) are counted as implausible and ignored.
//! - Sequence numbers that damaged or torn bytes may hide are never handed
//!   out again: recovery skips one `seq` per such byte (and 2^40 when the
//!   header is unreadable), which the rewritten header then keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::frames;
use crate::metering::storage::{LockGuard, Storage, StoredFile};

/// File names in the state directory.
pub(crate) const JOURNAL_FILE: &str = "drawdown.journal";
pub(crate) const LOCK_FILE: &str = "drawdown.lock";
/// Where compaction writes the new journal before renaming it.
pub(crate) const TEMP_FILE: &str = "drawdown.journal.tmp";
/// The copy of a damaged journal, kept for inspection (the latest only).
pub(crate) const DAMAGED_FILE: &str = "drawdown.journal.damaged";

/// Journal format version, in the header.
const VERSION: u32 = 1;
/// Compact the journal once it is larger than this (and than twice its
/// size after the last compaction, so many pending batches cannot make every
/// append compact).
pub(crate) const COMPACT_AT: u64 = 1 << 20;
/// Frames larger than this are damage: the largest real one, a batch with
/// the longest entitlement name, is under 1 KiB.
const MAX_FRAME: usize = 64 << 10;
/// The longest entitlement name journaled, in bytes.
pub(crate) const MAX_ENTITLEMENT: usize = 512;
/// The longest client token, in characters.
pub(crate) const MAX_TOKEN: usize = 64;
/// Sequence numbers skipped when the header cannot be read: the file's
/// `next_seq` floor is unknown.
const HEADERLESS_SKIP: u64 = 1 << 40;

/// A batch of drawdown units, journaled before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    /// Strictly increasing per journal, never reused (also across
    /// compaction and recovery).
    pub(crate) seq: u64,
    /// The entitlement's `Name`.
    pub(crate) entitlement: String,
    /// Units to draw, at least 1.
    pub(crate) units: u64,
    /// The `CheckoutLicense` `ClientToken`: 1 to 64 printable ASCII
    /// characters, no whitespace.
    pub(crate) client_token: String,
    /// Epoch seconds when journaled.
    pub(crate) at: u64,
}

/// How AWS answered a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The units were drawn.
    Drawn,
    /// AWS answered `NoEntitlementsAllowed` (the balance is exhausted) or
    /// another definitive refusal: nothing was drawn.
    Refused,
}

/// Units of one entitlement over the journal's whole life.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) drawn: u64,
    pub(crate) refused: u64,
    pub(crate) pending: u64,
}

/// What opening the journal recovered and what it could not read.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Batches without an outcome, oldest first: send each again with its
    /// own client token.
    pub(crate) pending: Vec<Batch>,
    /// Bytes of an incomplete last frame (a crash during an append), dropped.
    pub(crate) torn_tail_bytes: u64,
    /// Unreadable stretches before the end (each may hide several frames);
    /// an unreadable header counts as one.
    pub(crate) damaged_frames: u64,
    /// Bytes in those stretches.
    pub(crate) damaged_bytes: u64,
    /// Intact frames that were not trusted (see the module documentation).
    pub(crate) implausible_frames: u64,
    /// Where a copy of the damaged file was kept, if damage was found and
    /// the copy could be written.
    pub(crate) damaged_copy: Option<PathBuf>,
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error(
        "the drawdown journal in {path} is in use by another process; give every task its own \
         state directory (MARKETGATE_STATE_DIR)"
    )]
    Locked { path: PathBuf },
    #[error(
        "cannot {op} {path} (drawdown journal): {source}; check that the state directory is a \
         writable local directory with free space"
    )]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(
        "the drawdown journal {path} was written by a newer marketgate (format {version}; this \
         build reads up to {VERSION}); it is left untouched: run that version or a newer one \
         (moving the file away would leave its pending batches undrawn)"
    )]
    NewerFormat { path: PathBuf, version: u32 },
    #[error("refusing to journal a drawdown batch for {entitlement:?}: {reason}")]
    InvalidBatch {
        entitlement: String,
        reason: &'static str,
    },
    #[error(
        "the drawdown journal {path} has no sequence numbers left; move it away after every \
         pending batch has an outcome"
    )]
    Exhausted { path: PathBuf },
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { path, op, source }
}

/// One frame's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Record {
    Header {
        version: u32,
        next_seq: u64,
    },
    Totals {
        entitlement: String,
        drawn: u64,
        refused: u64,
    },
    Begin(Batch),
    Finish {
        seq: u64,
        outcome: Outcome,
    },
}

// ---- frames ----------------------------------------------------------------

fn encode(records: &[Record]) -> Vec<u8> {
    frames::encode(records)
}

// ---- state -----------------------------------------------------------------

/// Why an entitlement name is not plausible, if it is not.
fn invalid_name(entitlement: &str) -> Option<&'static str> {
    if entitlement.is_empty() {
        Some("the entitlement name is empty")
    } else if entitlement.len() > MAX_ENTITLEMENT {
        Some("the entitlement name is longer than 512 bytes")
    } else if entitlement.chars().any(char::is_control) {
        Some("the entitlement name holds control characters")
    } else {
        None
    }
}

/// Why a batch is not plausible, if it is not.
fn invalid(entitlement: &str, units: u64, token: &str) -> Option<&'static str> {
    if let Some(reason) = invalid_name(entitlement) {
        Some(reason)
    } else if units == 0 {
        Some("a batch draws at least 1 unit")
    } else if token.is_empty() {
        Some("the client token is empty")
    } else if token.chars().count() > MAX_TOKEN {
        Some("the client token is longer than 64 characters")
    } else if !token.chars().all(|c| c.is_ascii_graphic()) {
        Some("the client token must be printable ASCII without whitespace")
    } else {
        None
    }
}

/// What the journal holds, in memory.
#[derive(Debug, Default)]
struct State {
    pending: BTreeMap<u64, Batch>,
    /// Per entitlement: units drawn and refused by finished batches.
    finished: BTreeMap<String, (u64, u64)>,
    /// Tokens of the batches in the current file (pending, or finished
    /// since the last compaction): a token is never journaled twice.
    tokens: BTreeSet<String>,
}

impl State {
    fn add_finished(&mut self, entitlement: &str, outcome: Outcome, units: u64) {
        let (drawn, refused) = self.finished.entry(entitlement.to_owned()).or_default();
        let total = match outcome {
            Outcome::Drawn => drawn,
            Outcome::Refused => refused,
        };
        *total = total.saturating_add(units);
    }

    /// The compacted file: header, totals, pending batches.
    fn snapshot(&self, next_seq: u64) -> Vec<Record> {
        let mut records = vec![Record::Header {
            version: VERSION,
            next_seq,
        }];
        records.extend(self.finished.iter().map(|(entitlement, (drawn, refused))| {
            Record::Totals {
                entitlement: entitlement.clone(),
                drawn: *drawn,
                refused: *refused,
            }
        }));
        records.extend(self.pending.values().cloned().map(Record::Begin));
        records
    }
}

/// Replays the records after the header. Returns the state, the highest
/// `seq` any intact frame names, and the implausible frames.
fn replay(records: impl Iterator<Item = Record>) -> (State, Option<u64>, u64) {
    let mut state = State::default();
    let mut max_seq: Option<u64> = None;
    let mut last_begin: Option<u64> = None;
    let mut totals_seen = BTreeSet::new();
    let mut implausible = 0u64;
    for record in records {
        match record {
            Record::Header { .. } => implausible += 1,
            Record::Totals {
                entitlement,
                drawn,
                refused,
            } => {
                if invalid_name(&entitlement).is_some() || !totals_seen.insert(entitlement.clone())
                {
                    implausible += 1;
                    continue;
                }
                state.add_finished(&entitlement, Outcome::Drawn, drawn);
                state.add_finished(&entitlement, Outcome::Refused, refused);
            }
            Record::Begin(batch) => {
                max_seq = max_seq.max(Some(batch.seq));
                if invalid(&batch.entitlement, batch.units, &batch.client_token).is_some()
                    || last_begin.is_some_and(|last| batch.seq <= last)
                    || state.tokens.contains(&batch.client_token)
                {
                    implausible += 1;
                    continue;
                }
                last_begin = Some(batch.seq);
                state.tokens.insert(batch.client_token.clone());
                state.pending.insert(batch.seq, batch);
            }
            Record::Finish { seq, outcome } => {
                max_seq = max_seq.max(Some(seq));
                match state.pending.remove(&seq) {
                    Some(batch) => state.add_finished(&batch.entitlement, outcome, batch.units),
                    None => implausible += 1,
                }
            }
        }
    }
    (state, max_seq, implausible)
}

// ---- the journal -----------------------------------------------------------

/// The open journal of one state directory; holds its lock.
#[derive(Debug)]
pub(crate) struct DrawJournal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    path: PathBuf,
    /// `None` when the file must be (re)opened before the next append.
    file: Option<Box<dyn StoredFile>>,
    /// Whether the directory is known durable since the last rename.
    dir_synced: bool,
    /// An append failed and could not be cut back: the file may hold a
    /// frame memory does not. Rewritten from memory before anything else
    /// is journaled.
    dirty: bool,
    /// Held for the life of the journal: a separate file that compaction
    /// never replaces.
    _lock: LockGuard,
    state: State,
    next_seq: u64,
    /// Bytes in the file.
    size: u64,
    /// Bytes after the last compaction.
    compacted_size: u64,
    compact_at: u64,
}

impl DrawJournal {
    /// Takes the lock, reads and recovers the journal (dropping a torn
    /// tail, skipping damaged frames and reporting them), creating it if
    /// missing, and rewrites it from what was recovered.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
    ) -> Result<(DrawJournal, Recovery), JournalError> {
        storage
            .create_dir_all(dir)
            .map_err(io(dir, "create the directory"))?;
        let path = dir.join(JOURNAL_FILE);
        let lock_path = dir.join(LOCK_FILE);
        let Some(lock) = storage
            .try_lock(&lock_path)
            .map_err(io(&lock_path, "lock"))?
        else {
            return Err(JournalError::Locked {
                path: dir.to_path_buf(),
            });
        };
        let mut file = storage.open(&path, true).map_err(io(&path, "open"))?;
        let bytes = file.read_all().map_err(io(&path, "read"))?;
        let decoded = frames::decode::<Record>(&bytes, MAX_FRAME);
        let mut records = decoded.items.into_iter().peekable();
        let mut damaged = decoded.damaged;
        let mut floor = 0;
        let mut headerless = false;
        match records.peek() {
            Some((0, Record::Header { version, .. })) if *version > VERSION => {
                return Err(JournalError::NewerFormat {
                    path,
                    version: *version,
                });
            }
            Some((0, Record::Header { next_seq, .. })) => {
                floor = *next_seq;
                records.next();
            }
            // Bytes, but no header where every journal starts (compaction
            // writes every file, header first, before renaming it into
            // place: even a torn header is damage).
            _ if !bytes.is_empty() => {
                headerless = true;
                if damaged.first().is_none_or(|(at, _)| *at != 0) {
                    damaged.insert(0, (0, 0));
                }
            }
            _ => {}
        }
        let (state, max_seq, implausible) = replay(records.map(|(_, r)| r));
        let damaged_bytes: u64 = damaged.iter().map(|(_, n)| *n as u64).sum();
        // Frames the unreadable bytes may hide are at most one per byte, and
        // their `seq`s follow the last one read (or the header's floor).
        let next_seq = max_seq
            .map_or(0, |s| s.saturating_add(1))
            .max(floor)
            .saturating_add(damaged_bytes)
            .saturating_add(decoded.torn_tail)
            .saturating_add(if headerless { HEADERLESS_SKIP } else { 0 });
        let damaged_copy = if damaged.is_empty() && implausible == 0 {
            None
        } else {
            keep_damaged_copy(storage.as_ref(), dir, &bytes)
        };
        let recovery = Recovery {
            pending: state.pending.values().cloned().collect(),
            torn_tail_bytes: decoded.torn_tail,
            damaged_frames: damaged.len() as u64,
            damaged_bytes,
            implausible_frames: implausible,
            damaged_copy,
        };
        let mut journal = DrawJournal {
            storage,
            dir: dir.to_path_buf(),
            path,
            file: Some(file),
            dir_synced: true,
            dirty: false,
            _lock: lock,
            state,
            next_seq,
            size: bytes.len() as u64,
            compacted_size: 0,
            compact_at: COMPACT_AT,
        };
        // A fresh file without torn, damaged or untrusted frames, holding the
        // new `seq` floor; and the header of a new journal.
        journal.compact()?;
        Ok((journal, recovery))
    }

    /// Journals a new batch durably (append + `fsync`) and returns it; only
    /// then may it be sent.
    ///
    /// On an error the batch is not journaled in this process and must not
    /// be sent: keep its units counted. (Should the failed append have
    /// reached the disk after all, it is erased before anything else is
    /// journaled; if the process dies first, recovery sends it instead of
    /// the counted units, which the crash loses.)
    pub(crate) fn begin(
        &mut self,
        entitlement: &str,
        units: u64,
        client_token: String,
        at: u64,
    ) -> Result<Batch, JournalError> {
        let refuse = |reason| JournalError::InvalidBatch {
            entitlement: entitlement.to_owned(),
            reason,
        };
        if let Some(reason) = invalid(entitlement, units, &client_token) {
            return Err(refuse(reason));
        }
        if self.state.tokens.contains(&client_token) {
            return Err(refuse("the client token was already used"));
        }
        if self.next_seq == u64::MAX {
            return Err(JournalError::Exhausted {
                path: self.path.clone(),
            });
        }
        let batch = Batch {
            seq: self.next_seq,
            entitlement: entitlement.to_owned(),
            units,
            client_token,
            at,
        };
        self.append(&Record::Begin(batch.clone()))?;
        self.next_seq += 1;
        self.state.tokens.insert(batch.client_token.clone());
        self.state.pending.insert(batch.seq, batch.clone());
        self.compact_if_large();
        Ok(batch)
    }

    /// Journals the outcome of batch `seq` durably. Unknown or already
    /// finished `seq`: `Ok`, no change (idempotent). On an error the batch
    /// stays pending (send it again with its token, or retry).
    pub(crate) fn finish(&mut self, seq: u64, outcome: Outcome) -> Result<(), JournalError> {
        let Some(batch) = self.state.pending.get(&seq) else {
            return Ok(());
        };
        let (entitlement, units) = (batch.entitlement.clone(), batch.units);
        self.append(&Record::Finish { seq, outcome })?;
        self.state.pending.remove(&seq);
        self.state.add_finished(&entitlement, outcome, units);
        self.compact_if_large();
        Ok(())
    }

    /// Batches journaled without an outcome, oldest first.
    pub(crate) fn pending(&self) -> Vec<Batch> {
        self.state.pending.values().cloned().collect()
    }

    /// Per entitlement: units drawn, refused and pending, over the
    /// journal's whole life (they survive compaction).
    pub(crate) fn totals(&self) -> BTreeMap<String, Totals> {
        let mut totals: BTreeMap<String, Totals> = self
            .state
            .finished
            .iter()
            .map(|(entitlement, (drawn, refused))| {
                (
                    entitlement.clone(),
                    Totals {
                        drawn: *drawn,
                        refused: *refused,
                        pending: 0,
                    },
                )
            })
            .collect();
        for batch in self.state.pending.values() {
            let entry = totals.entry(batch.entitlement.clone()).or_default();
            entry.pending = entry.pending.saturating_add(batch.units);
        }
        totals
    }

    /// The `seq` the next batch gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes in the journal file.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Rewrites the journal as its totals and pending batches only
    /// (temporary file, `fsync`, rename, directory `fsync`): a crash leaves
    /// the old file or the new one.
    pub(crate) fn compact(&mut self) -> Result<(), JournalError> {
        let bytes = encode(&self.state.snapshot(self.next_seq));
        let tmp = self.dir.join(TEMP_FILE);
        // A fresh file: whatever sits at that name (a leftover of a crash,
        // or a link someone planted) is removed, never opened.
        let _ = self.storage.remove(&tmp);
        if let Err(e) = self.storage.create_new(&tmp, &bytes, true) {
            let _ = self.storage.remove(&tmp);
            return Err(io(&tmp, "write")(e));
        }
        if let Err(e) = self.storage.rename(&tmp, &self.path) {
            let _ = self.storage.remove(&tmp);
            return Err(io(&self.path, "replace")(e));
        }
        // The name now holds the new file: appends must go to it, whatever
        // fails next.
        self.file = None;
        self.dirty = false;
        self.dir_synced = false;
        self.size = bytes.len() as u64;
        self.compacted_size = self.size;
        self.state.tokens = self
            .state
            .pending
            .values()
            .map(|b| b.client_token.clone())
            .collect();
        self.ready()
    }

    /// Sets the size beyond which the journal is compacted.
    pub(crate) fn set_compact_at(&mut self, bytes: u64) {
        self.compact_at = bytes;
    }

    fn compact_if_large(&mut self) {
        if self.size > self.compact_at.max(self.compacted_size.saturating_mul(2))
            && let Err(e) = self.compact()
        {
            // The journal is still whole (appends go on to the old file, or
            // wait for the new one to be durable); compaction is retried.
            tracing::warn!(target: "marketgate", error = %e, "drawdown journal not compacted");
        }
    }

    /// Makes the file ready for an append: rewritten if an append could not
    /// be cut back, its rename durable, open.
    fn ready(&mut self) -> Result<(), JournalError> {
        if self.dirty {
            self.compact()?;
        }
        if !self.dir_synced {
            self.storage
                .sync_dir(&self.dir)
                .map_err(io(&self.dir, "sync the directory"))?;
            self.dir_synced = true;
        }
        if self.file.is_none() {
            self.file = Some(
                self.storage
                    .open(&self.path, false)
                    .map_err(io(&self.path, "open"))?,
            );
        }
        Ok(())
    }

    /// Appends one record and waits until it is durable. On failure the
    /// file is cut back to its last intact frame, or marked for a rewrite.
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.ready()?;
        let bytes = encode(std::slice::from_ref(record));
        let Some(file) = self.file.as_mut() else {
            return Err(io(&self.path, "open")(std::io::Error::other("not open")));
        };
        if let Err(e) = file.append(&bytes).and_then(|()| file.sync_data()) {
            if file
                .set_len(self.size)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                self.dirty = true;
                self.file = None;
            }
            return Err(io(&self.path, "append to")(e));
        }
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Keeps a copy of a damaged journal for inspection (the latest only).
/// Best effort: a full disk must not stop recovery.
fn keep_damaged_copy(storage: &dyn Storage, dir: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let path = dir.join(DAMAGED_FILE);
    let _ = storage.remove(&path);
    storage.create_new(&path, bytes, false).ok()?;
    Some(path)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::metering::storage::RealFs;

    /// A scratch state directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("marketgate-drawdown-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join(JOURNAL_FILE)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn real() -> Arc<dyn Storage> {
        Arc::new(RealFs)
    }

    fn open(dir: &Scratch) -> (DrawJournal, Recovery) {
        DrawJournal::open(real(), &dir.0).expect("open")
    }

    fn units(batches: &[Batch]) -> u64 {
        batches.iter().map(|b| b.units).sum()
    }

    /// splitmix64, for reproducible damage.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }
    }

    #[test]
    fn a_batch_survives_reopening_and_its_outcome_updates_the_totals() {
        let dir = Scratch::new("reopen");
        let (mut j, r) = open(&dir);
        assert!(r.pending.is_empty() && r.torn_tail_bytes == 0 && r.damaged_frames == 0);
        let a = j.begin("seats", 3, "tok-a".into(), 100).expect("begin");
        let b = j.begin("storage", 5, "tok-b".into(), 101).expect("begin");
        assert!(b.seq > a.seq);
        drop(j);

        let (mut j, r) = open(&dir);
        assert_eq!(r.pending, [a.clone(), b.clone()]);
        assert_eq!(j.pending(), [a.clone(), b.clone()]);
        assert_eq!(
            r.damaged_frames + r.implausible_frames + r.torn_tail_bytes,
            0
        );
        j.finish(a.seq, Outcome::Drawn).expect("finish");
        j.finish(b.seq, Outcome::Refused).expect("finish");
        drop(j);

        let (j, r) = open(&dir);
        assert!(r.pending.is_empty() && j.pending().is_empty());
        let totals = j.totals();
        assert_eq!(
            totals["seats"],
            Totals {
                drawn: 3,
                refused: 0,
                pending: 0
            }
        );
        assert_eq!(
            totals["storage"],
            Totals {
                drawn: 0,
                refused: 5,
                pending: 0
            }
        );
        assert!(j.next_seq() > b.seq);
    }

    #[test]
    fn finishing_an_unknown_or_finished_batch_changes_nothing() {
        let dir = Scratch::new("finish-twice");
        let (mut j, _) = open(&dir);
        let a = j.begin("seats", 2, "tok-a".into(), 1).expect("begin");
        let b = j.begin("seats", 5, "tok-b".into(), 1).expect("begin");
        j.finish(a.seq, Outcome::Drawn).expect("finish");
        let size = j.size();
        j.finish(a.seq, Outcome::Refused).expect("finish again");
        j.finish(b.seq + 7, Outcome::Drawn).expect("unknown");
        let expected = Totals {
            drawn: 2,
            refused: 0,
            pending: 5,
        };
        assert_eq!(j.size(), size);
        assert_eq!(j.totals()["seats"], expected);
        assert_eq!(j.pending(), std::slice::from_ref(&b));
        drop(j);
        let (j, r) = open(&dir);
        assert_eq!(r.implausible_frames, 0);
        assert_eq!(j.totals()["seats"], expected);
    }

    #[test]
    fn begin_refuses_implausible_batches() {
        let dir = Scratch::new("refuse");
        let (mut j, _) = open(&dir);
        j.begin("seats", 1, "used".into(), 1).expect("begin");
        for (entitlement, units, token) in [
            ("seats", 0, "t0"),
            ("seats", 1, ""),
            ("seats", 1, "has space"),
            ("seats", 1, "tab\t"),
            ("seats", 1, "é"),
            ("", 1, "t1"),
            ("seats", 1, "used"),
        ] {
            let e = j
                .begin(entitlement, units, token.into(), 1)
                .expect_err(token);
            assert!(matches!(e, JournalError::InvalidBatch { .. }), "{e}");
        }
        j.begin("seats", 1, "x".repeat(65), 1)
            .expect_err("long token");
        j.begin("seats", 1, "x".repeat(64), 1)
            .expect("64 characters");
        assert_eq!(j.pending().len(), 2);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_locked() {
        let dir = Scratch::new("lock");
        let (j, _) = open(&dir);
        let e = DrawJournal::open(real(), &dir.0).expect_err("locked");
        assert!(matches!(e, JournalError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("MARKETGATE_STATE_DIR"), "{e}");
        drop(j);
        open(&dir);
    }

    /// The file before and after appending one more frame, the state before
    /// it, and the `seq` the frame names.
    type TornCase = (Vec<u8>, Vec<u8>, Vec<Batch>, BTreeMap<String, Totals>, u64);

    fn torn_setup(dir: &Scratch, last: &str) -> TornCase {
        let (mut j, _) = open(dir);
        let a = j.begin("seats", 3, "tok-a".into(), 1).expect("begin");
        j.begin("seats", 4, "tok-b".into(), 2).expect("begin");
        j.finish(a.seq, Outcome::Drawn).expect("finish");
        let before = std::fs::read(dir.file()).expect("read");
        let (pending, totals) = (j.pending(), j.totals());
        let seq = match last {
            "begin" => j.begin("seats", 9, "tok-c".into(), 3).expect("begin").seq,
            _ => {
                let b = j.pending()[0].seq;
                j.finish(b, Outcome::Drawn).expect("finish");
                b
            }
        };
        drop(j);
        let after = std::fs::read(dir.file()).expect("read");
        assert!(after.starts_with(&before) && after.len() > before.len());
        (before, after, pending, totals, seq)
    }

    #[test]
    fn a_torn_last_frame_recovers_the_state_before_it() {
        for last in ["begin", "finish"] {
            let dir = Scratch::new(&format!("torn-{last}"));
            let (before, after, pending, totals, seq) = torn_setup(&dir, last);
            for cut in before.len() + 1..after.len() {
                std::fs::write(dir.file(), &after[..cut]).expect("write");
                let (mut j, r) = open(&dir);
                assert_eq!(
                    r.torn_tail_bytes,
                    (cut - before.len()) as u64,
                    "{last} {cut}"
                );
                assert_eq!(
                    (r.damaged_frames, r.implausible_frames),
                    (0, 0),
                    "{last} {cut}"
                );
                assert_eq!(r.pending, pending, "{last} {cut}");
                assert_eq!(j.pending(), pending, "{last} {cut}");
                assert_eq!(j.totals(), totals, "{last} {cut}");
                let next = j.begin("seats", 1, "tok-new".into(), 4).expect("begin");
                assert!(next.seq > seq, "{last} {cut}: seq {} reused", next.seq);
            }
            // Zeros after the last frame (a crash that extended the file).
            let mut zeros = before.clone();
            zeros.extend_from_slice(&[0; 40]);
            std::fs::write(dir.file(), &zeros).expect("write");
            let (j, r) = open(&dir);
            assert_eq!((r.torn_tail_bytes, r.damaged_frames), (40, 0));
            assert_eq!(j.pending(), pending);
        }
    }

    /// Everything a history of batches wrote, for checking what recovery
    /// makes of damaged copies.
    struct Written {
        bytes: Vec<u8>,
        batches: Vec<Batch>,
        max_seq: u64,
    }

    fn history(dir: &Scratch) -> Written {
        let (mut j, _) = open(dir);
        let mut batches = Vec::new();
        for i in 0..12u64 {
            let entitlement = if i % 3 == 0 { "storage" } else { "seats" };
            let b = j
                .begin(entitlement, i + 1, format!("tok-{i}"), 1000 + i)
                .expect("begin");
            batches.push(b.clone());
            if i % 2 == 0 {
                let outcome = if i % 4 == 0 {
                    Outcome::Drawn
                } else {
                    Outcome::Refused
                };
                j.finish(b.seq, outcome).expect("finish");
            }
        }
        drop(j);
        let max_seq = batches.iter().map(|b| b.seq).max().unwrap_or(0);
        Written {
            bytes: std::fs::read(dir.file()).expect("read"),
            batches,
            max_seq,
        }
    }

    /// Recovery from `bytes` trusts nothing it was not given, and never
    /// reuses a `seq`.
    fn check_recovery(dir: &Scratch, written: &Written, bytes: &[u8], what: &str) {
        std::fs::write(dir.file(), bytes).expect("write");
        let (mut j, r) = open(dir);
        assert_eq!(r.pending, j.pending(), "{what}");
        for b in &r.pending {
            assert!(written.batches.contains(b), "{what}: invented {b:?}");
        }
        for (entitlement, t) in j.totals() {
            let begun: u64 = written
                .batches
                .iter()
                .filter(|b| b.entitlement == entitlement)
                .map(|b| b.units)
                .sum();
            assert!(
                t.drawn + t.refused + t.pending <= begun,
                "{what}: {entitlement} {t:?}"
            );
        }
        assert!(units(&r.pending) <= units(&written.batches), "{what}");
        let next = j.begin("seats", 1, "tok-after".into(), 1).expect("begin");
        assert!(
            next.seq > written.max_seq,
            "{what}: seq {} reused",
            next.seq
        );
        let pending = j.pending();
        drop(j);
        // What recovery rewrote reads back the same.
        let (j, r) = open(dir);
        assert_eq!(j.pending(), pending, "{what}");
        assert_eq!(
            (r.damaged_frames, r.torn_tail_bytes, r.implausible_frames),
            (0, 0, 0),
            "{what}"
        );
    }

    #[test]
    fn damage_anywhere_never_panics_invents_units_or_reuses_a_seq() {
        let dir = Scratch::new("damage");
        let written = history(&dir);
        let original = &written.bytes;
        let mut rng = Rng(0x5eed);
        for round in 0..150 {
            let mut bytes = original.clone();
            let what = match round % 5 {
                0 => {
                    for _ in 0..=rng.below(3) {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                    "flipped bits"
                }
                1 => {
                    let at = rng.below(bytes.len());
                    let len = rng.below(40).min(bytes.len() - at);
                    for b in &mut bytes[at..at + len] {
                        *b = rng.byte();
                    }
                    "random run"
                }
                2 => {
                    let at = rng.below(bytes.len());
                    let junk: Vec<u8> = (0..rng.below(30)).map(|_| rng.byte()).collect();
                    bytes.splice(at..at, junk);
                    "inserted bytes"
                }
                3 => {
                    let at = rng.below(bytes.len());
                    let len = rng.below(30).min(bytes.len() - at);
                    bytes.drain(at..at + len);
                    "removed bytes"
                }
                _ => {
                    let len = 1 + rng.below(300);
                    bytes = (0..len).map(|_| rng.byte()).collect();
                    "random file"
                }
            };
            check_recovery(&dir, &written, &bytes, &format!("round {round}: {what}"));
        }
        // Every single byte flipped in turn.
        for at in 0..original.len() {
            let mut bytes = original.clone();
            bytes[at] ^= 0x40;
            check_recovery(&dir, &written, &bytes, &format!("byte {at} flipped"));
        }
    }

    #[test]
    fn damage_is_reported_and_kept_and_later_frames_still_count() {
        let dir = Scratch::new("damage-report");
        let written = history(&dir);
        // Flip a byte in the middle of the file: one frame is lost, the
        // ones after it are read.
        let mut bytes = written.bytes.clone();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(dir.file(), &bytes).expect("write");
        let (_, r) = open(&dir);
        assert_eq!(r.damaged_frames, 1);
        assert!(r.damaged_bytes > 0 && r.damaged_bytes < bytes.len() as u64 / 2);
        let kept = r.damaged_copy.expect("copy");
        assert_eq!(std::fs::read(kept).expect("read copy"), bytes);
        // An unreadable header: everything else still read, seq skipped far.
        let mut bytes = written.bytes.clone();
        bytes[14] ^= 0xff;
        std::fs::write(dir.file(), &bytes).expect("write");
        let (j, r) = open(&dir);
        assert_eq!(r.damaged_frames, 1);
        assert!(!r.pending.is_empty());
        assert!(j.next_seq() > written.max_seq + HEADERLESS_SKIP);
    }

    #[test]
    fn implausible_frames_are_ignored_and_reported() {
        let dir = Scratch::new("implausible");
        std::fs::create_dir_all(&dir.0).expect("mkdir");
        let batch = |seq, units, token: &str| {
            Record::Begin(Batch {
                seq,
                entitlement: "seats".into(),
                units,
                client_token: token.into(),
                at: 1,
            })
        };
        let records = [
            Record::Header {
                version: VERSION,
                next_seq: 3,
            },
            Record::Totals {
                entitlement: "seats".into(),
                drawn: 10,
                refused: 1,
            },
            Record::Totals {
                entitlement: "seats".into(),
                drawn: 1000,
                refused: 1000,
            },
            Record::Totals {
                entitlement: String::new(),
                drawn: 1000,
                refused: 1000,
            },
            batch(3, 0, "zero"),
            batch(4, 2, ""),
            batch(5, 2, "has space"),
            batch(6, 2, "good"),
            batch(6, 9, "duplicate-seq"),
            batch(7, 9, "good"),
            batch(2, 9, "going-back"),
            batch(8, 4, "also-good"),
            Record::Finish {
                seq: 99,
                outcome: Outcome::Drawn,
            },
            Record::Finish {
                seq: 6,
                outcome: Outcome::Drawn,
            },
            Record::Finish {
                seq: 6,
                outcome: Outcome::Refused,
            },
            Record::Header {
                version: VERSION,
                next_seq: 0,
            },
        ];
        std::fs::write(dir.file(), encode(&records)).expect("write");
        let (mut j, r) = open(&dir);
        assert_eq!(r.implausible_frames, 11);
        assert_eq!((r.damaged_frames, r.torn_tail_bytes), (0, 0));
        assert!(r.damaged_copy.is_some());
        assert_eq!(r.pending.len(), 1);
        assert_eq!(r.pending[0].client_token, "also-good");
        assert_eq!(j.totals().len(), 1, "{:?}", j.totals());
        assert_eq!(
            j.totals()["seats"],
            Totals {
                drawn: 12,
                refused: 1,
                pending: 4
            }
        );
        // No seq any frame named is handed out again.
        assert!(j.begin("seats", 1, "next".into(), 1).expect("begin").seq > 99);
    }

    #[test]
    fn compaction_keeps_pending_batches_totals_and_seq_order() {
        let dir = Scratch::new("compact");
        let (mut j, _) = open(&dir);
        j.set_compact_at(2048);
        let mut seqs = Vec::new();
        let mut drawn = 0;
        let mut compactions = 0;
        for i in 0..400u64 {
            let before = j.size();
            let b = j
                .begin("seats", i % 7 + 1, format!("tok-{i}"), i)
                .expect("begin");
            seqs.push(b.seq);
            if i % 10 != 0 {
                j.finish(b.seq, Outcome::Drawn).expect("finish");
                drawn += b.units;
            }
            if j.size() < before {
                compactions += 1;
            }
        }
        assert!(compactions > 5, "{compactions} compactions");
        assert!(j.size() < 16 * 1024, "{} bytes", j.size());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq must increase");
        let pending = j.pending();
        assert_eq!(pending.len(), 40);
        let totals = j.totals();
        assert_eq!(totals["seats"].drawn, drawn);
        assert_eq!(totals["seats"].pending, units(&pending));
        j.compact().expect("compact");
        for b in &pending {
            j.finish(b.seq, Outcome::Refused).expect("finish");
        }
        j.compact().expect("compact");
        let last = *seqs.last().expect("seq");
        drop(j);
        // Everything finished and compacted away: totals and the seq
        // floor remain.
        let (mut j, r) = open(&dir);
        assert!(r.pending.is_empty());
        assert_eq!(
            j.totals()["seats"],
            Totals {
                drawn,
                refused: units(&pending),
                pending: 0
            }
        );
        assert_eq!(
            j.begin("seats", 1, "tok-x".into(), 1).expect("begin").seq,
            last + 1
        );
    }

    #[test]
    fn a_crash_during_compaction_leaves_the_old_journal() {
        let dir = Scratch::new("compact-crash");
        let (mut j, _) = open(&dir);
        let a = j.begin("seats", 2, "tok-a".into(), 1).expect("begin");
        let b = j.begin("seats", 3, "tok-b".into(), 1).expect("begin");
        j.finish(a.seq, Outcome::Drawn).expect("finish");
        let (pending, totals) = (j.pending(), j.totals());
        drop(j);
        // The new journal half written to the temporary file, not renamed.
        let bytes = std::fs::read(dir.file()).expect("read");
        std::fs::write(dir.0.join(TEMP_FILE), &bytes[..bytes.len() / 2]).expect("write tmp");
        let (mut j, r) = open(&dir);
        assert_eq!(r.pending, pending);
        assert_eq!(j.totals(), totals);
        assert!(!dir.0.join(TEMP_FILE).exists());
        assert!(j.begin("seats", 1, "tok-c".into(), 1).expect("begin").seq > b.seq);
    }

    #[test]
    fn a_newer_format_is_refused_and_left_untouched() {
        let dir = Scratch::new("newer");
        std::fs::create_dir_all(&dir.0).expect("mkdir");
        let bytes = encode(&[Record::Header {
            version: VERSION + 1,
            next_seq: 0,
        }]);
        std::fs::write(dir.file(), &bytes).expect("write");
        let e = DrawJournal::open(real(), &dir.0).expect_err("newer");
        assert!(
            matches!(e, JournalError::NewerFormat { version: 2, .. }),
            "{e}"
        );
        assert_eq!(std::fs::read(dir.file()).expect("read"), bytes);
    }

    /// The real file system, with appends' `fsync` and truncation failing
    /// on demand.
    #[derive(Debug, Default)]
    struct Faulty {
        fail_sync: Mutex<u32>,
        fail_set_len: Mutex<u32>,
    }

    #[derive(Debug)]
    struct FaultyFile(Box<dyn StoredFile>, Arc<Faulty>);

    fn take(fault: &Mutex<u32>) -> io::Result<()> {
        let mut n = fault.lock().expect("lock");
        if *n > 0 {
            *n -= 1;
            return Err(io::Error::other("injected"));
        }
        Ok(())
    }

    impl StoredFile for FaultyFile {
        fn read_all(&mut self) -> io::Result<Vec<u8>> {
            self.0.read_all()
        }
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.append(bytes)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            take(&self.1.fail_sync)?;
            self.0.sync_data()
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            take(&self.1.fail_set_len)?;
            self.0.set_len(len)
        }
    }

    #[derive(Debug)]
    struct FaultyFs(Arc<Faulty>);

    impl Storage for FaultyFs {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            RealFs.create_dir_all(dir)
        }
        fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
            RealFs.try_lock(path)
        }
        fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StoredFile>> {
            Ok(Box::new(FaultyFile(
                RealFs.open(path, create)?,
                self.0.clone(),
            )))
        }
        fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
            RealFs.create_new(path, bytes, sync)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealFs.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            RealFs.remove(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            RealFs.sync_dir(dir)
        }
        fn list(&self, dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
            RealFs.list(dir, prefix)
        }
    }

    #[test]
    fn a_failed_append_journals_nothing() {
        let dir = Scratch::new("failed-append");
        let faults = Arc::new(Faulty::default());
        let (mut j, _) =
            DrawJournal::open(Arc::new(FaultyFs(faults.clone())), &dir.0).expect("open");
        let a = j.begin("seats", 2, "tok-a".into(), 1).expect("begin");
        let size = std::fs::metadata(dir.file()).expect("stat").len();

        // The fsync fails; the frame is cut off again.
        *faults.fail_sync.lock().expect("lock") = 1;
        j.begin("seats", 5, "tok-b".into(), 1)
            .expect_err("sync fails");
        assert_eq!(j.pending(), std::slice::from_ref(&a));
        assert_eq!(std::fs::metadata(dir.file()).expect("stat").len(), size);
        *faults.fail_sync.lock().expect("lock") = 1;
        j.finish(a.seq, Outcome::Drawn).expect_err("sync fails");
        assert_eq!(j.pending(), std::slice::from_ref(&a));

        // The fsync fails and so does cutting the frame off: the file holds
        // a batch that was never sent. It is erased before the next append.
        *faults.fail_sync.lock().expect("lock") = 1;
        *faults.fail_set_len.lock().expect("lock") = 1;
        j.begin("seats", 7, "tok-c".into(), 1)
            .expect_err("sync fails");
        assert!(std::fs::metadata(dir.file()).expect("stat").len() > size);
        let c = j.begin("seats", 1, "tok-dir".into(), 1).expect("begin");
        assert!(c.seq > a.seq);
        drop(j);
        let (j, r) = open(&dir);
        assert_eq!(r.pending, [a, c]);
        assert_eq!(j.totals()["seats"].pending, 3);
    }
}
