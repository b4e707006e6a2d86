//! The crash-safe metering journal.
//!
//! An append-only file of frames, each `[length u32][checksum u64][JSON]`,
//! little-endian, the checksum being the first 8 bytes of the payload's
//! SHA-256 (aws-lc-rs, already linked). Every append is written and
//! `fsync`ed before the pipeline acts on it, so after a crash (`SIGKILL`,
//! power loss) the file holds every event that was acknowledged, plus at
//! most one torn frame at the end.
//!
//! Recovery tells two kinds of bad bytes apart:
//!
//! - a **torn tail**: the last frame is incomplete (its header or payload runs
//!   past the end of the file), or the file ends in zeros. That is what a crash
//!   in the middle of an append leaves; the events in it were never acted on
//!   (the pipeline acts only after the `fsync`), so dropping it loses nothing
//!   that was billed.
//! - **damage**: any other frame that fails its checksum or does not parse.
//!   Recovery skips to the next intact frame and reads on, but the damaged
//!   bytes may have hidden any event, so the pipeline treats what it recovered
//!   with suspicion (see `Pipeline::recover`). The damaged file is kept beside
//!   the journal for inspection (the newest few copies only).
//!
//! A journal written by a newer format version is refused, never truncated.
//!
//! Why not an embedded database: a store such as redb refuses to open a
//! corrupted file, while the requirement here is to keep every intact record
//! and say what was lost. A checksummed log gives exactly that, and its crash
//! behaviour is exercised by the SIGKILL tests.
//!
//! Compaction (rewriting the current state as a fresh journal) writes a
//! temporary file, `fsync`s it, renames it over the journal and `fsync`s the
//! directory, so a crash leaves either the old or the new journal. Each of
//! these steps, and the directory `fsync` after a discard, is checked: a
//! journal that cannot be kept in step with memory must be known as such.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::storage::{LockGuard, Storage, StoredFile};
use crate::frames;
use crate::usage::Tags;

/// Frames larger than this are treated as corruption. The largest real one
/// is a record with 2500 allocations of 5 maximal tags (about 4.5 MB).
const MAX_FRAME: usize = 8 << 20;
/// Journal format version, in the header frame.
const VERSION: u32 = 1;

/// One journaled state change. Hours are epoch seconds of the hour's start.
///
/// The one-letter names on disk (`d`, `h`, `q`, `t`) keep frames small and
/// the format unchanged since version 1; in code the fields have their
/// names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e")]
pub(crate) enum Event {
    /// First frame of every journal file.
    Header {
        /// Format version.
        version: u32,
        /// The product code the journal belongs to.
        product: String,
    },
    /// Units recorded (a checkpoint) into the bucket of hour `h`.
    Add {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
        #[serde(rename = "q")]
        quantity: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[serde(rename = "t")]
        tags: Tags,
    },
    /// Units moved from the bucket of hour `from` to the bucket of hour `to`.
    Carry {
        #[serde(rename = "d")]
        dimension: String,
        from: i64,
        to: i64,
        #[serde(rename = "q")]
        quantity: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[serde(rename = "t")]
        tags: Tags,
    },
    /// A `MeterUsage` record for hour `h`, made from units of the bucket of
    /// hour `from`; from now on it is sent with exactly these parameters.
    Assign {
        #[serde(rename = "d")]
        dimension: String,
        from: i64,
        #[serde(rename = "h")]
        hour: i64,
        #[serde(rename = "q")]
        quantity: u32,
        token: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alloc: Vec<(Tags, u32)>,
    },
    /// A request for record (d, h) is about to be sent. Until an answer
    /// shows it was not stored (`NotDelivered`), it may have been: such a
    /// record is never re-billed for another hour.
    Attempt {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
    },
    /// The last attempt for (d, h) was certainly not stored (AWS answered
    /// with an error, or the request never left).
    NotDelivered {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
    },
    /// AWS accepted record (d, h).
    Sent {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
        id: String,
    },
    /// AWS refused record (d, h) for its hour (duplicate, out of bounds,
    /// or the window closed): its units go to the bucket of hour `to`. The
    /// hour stays taken.
    Rejected {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
        code: String,
        to: i64,
    },
    /// Record (d, h) can never be billed; kept for reporting.
    Unbillable {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
        code: String,
        message: String,
    },
    /// A record as it stands, written by compaction (does not touch buckets).
    Restore {
        #[serde(rename = "d")]
        dimension: String,
        #[serde(rename = "h")]
        hour: i64,
        from: i64,
        #[serde(rename = "q")]
        quantity: u32,
        token: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alloc: Vec<(Tags, u32)>,
        /// Attempts whose outcome is unknown.
        #[serde(default, skip_serializing_if = "is_zero")]
        doubt: u32,
        /// Recovered from a damaged journal: never carried (see `Record`).
        #[serde(default, skip_serializing_if = "is_false")]
        suspect: bool,
        state: RestoredState,
    },
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_false(b: &bool) -> bool {
    !*b
}

/// A record's state in a compacted journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RestoredState {
    Pending,
    Sent(String),
    Rejected(String),
    Unbillable { code: String, message: String },
}

/// Damaged copies kept beside a journal; older ones are removed, so a
/// flapping disk cannot fill itself with copies.
const KEEP_DAMAGED: usize = 3;

/// What recovery could not read, other than a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte offset of the first unreadable frame.
    pub(crate) offset: u64,
    /// Bytes that could not be read, in all.
    pub(crate) bytes: u64,
    /// Where the damaged file was kept, if a copy could be written.
    pub(crate) kept_as: Option<PathBuf>,
}

/// The result of reading a journal file.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Every intact event after the header.
    pub(crate) events: Vec<Event>,
    /// Bytes of an incomplete last frame, dropped.
    pub(crate) torn_tail: u64,
    /// Damage before the end, if any.
    pub(crate) damage: Option<Damage>,
}

/// Journal errors. The pipeline keeps working in memory when they happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("cannot use the metering journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metering journal {0} is in use by another process; give every task its own \
         state directory (MARKETGATE_STATE_DIR)"
    )]
    Locked(PathBuf),
    #[error("the metering journal {path} belongs to product {found}, not {expected}")]
    WrongProduct {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the metering journal {path} was written by a newer marketgate (format {found}; this \
         build reads up to {VERSION}); it is left untouched for that version to report"
    )]
    NewerVersion { path: PathBuf, found: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode(events: &[Event]) -> Vec<u8> {
    frames::encode(events)
}

/// An open journal.
#[derive(Debug)]
pub(crate) struct Journal {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    file: Box<dyn StoredFile>,
    /// Held for the life of the process: a separate file that compaction
    /// never replaces, so the lock cannot slip to another process.
    _lock: LockGuard,
    /// Bytes in the file, for deciding when to compact.
    pub(crate) size: u64,
}

impl Journal {
    /// Opens (or creates) the journal of `product` in `dir`, recovering what
    /// it holds. Takes an exclusive lock for the life of the process.
    pub(crate) fn open(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        product: &str,
    ) -> Result<(Journal, Recovered), JournalError> {
        storage.create_dir_all(dir).map_err(io(dir))?;
        let safe: String = product
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("metering-{safe}.journal"));
        let lock_path = dir.join(format!("metering-{safe}.lock"));
        let Some(lock) = storage.try_lock(&lock_path).map_err(io(&lock_path))? else {
            return Err(JournalError::Locked(path));
        };
        let mut file = storage.open(&path, true).map_err(io(&path))?;
        let bytes = file.read_all().map_err(io(&path))?;
        let decoded = frames::decode::<Event>(&bytes, MAX_FRAME);
        let mut events: Vec<Event> = decoded.items.into_iter().map(|(_, e)| e).collect();
        let mut damaged = decoded.damaged;
        match events.first() {
            Some(Event::Header { version, .. }) if *version > VERSION => {
                return Err(JournalError::NewerVersion {
                    path,
                    found: *version,
                });
            }
            Some(Event::Header { product: found, .. }) if found != product => {
                return Err(JournalError::WrongProduct {
                    path,
                    found: found.clone(),
                    expected: product.to_owned(),
                });
            }
            Some(Event::Header { .. }) => {
                events.remove(0);
            }
            // Events without the header that starts every journal: the
            // start of the file is damaged.
            Some(_) if damaged.first().is_none_or(|(at, _)| *at != 0) => damaged.insert(0, (0, 0)),
            _ => {}
        }
        let damage = damaged.first().map(|(offset, _)| Damage {
            offset: *offset as u64,
            bytes: damaged.iter().map(|(_, n)| *n as u64).sum(),
            kept_as: keep_damaged_copy(storage.as_ref(), &path, &bytes),
        });
        let size = bytes.len() as u64;
        let mut journal = Journal {
            storage: storage.clone(),
            path,
            file,
            _lock: lock,
            size,
        };
        if size == 0 {
            // A new journal: its header first.
            journal.compact(product, &events)?;
        } else if damage.is_some() {
            // Left as it is: the pipeline rewrites it at once from what it
            // makes of the recovered events (distrusting what the damage may
            // have hidden). A clean copy of the raw events written here
            // first would, after a crash, hide that there was damage.
        } else if decoded.torn_tail > 0 {
            // Cut the torn frame off, so appends follow intact frames.
            journal.size = size - decoded.torn_tail;
            journal
                .file
                .set_len(journal.size)
                .and_then(|()| journal.file.sync_data())
                .map_err(io(&journal.path))?;
        }
        Ok((
            journal,
            Recovered {
                events,
                torn_tail: decoded.torn_tail,
                damage,
            },
        ))
    }

    /// The journal file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the journal file and makes the removal durable: used when the
    /// file can no longer be kept in step with memory, since a stale journal
    /// replayed after a crash could re-bill usage under new client tokens.
    pub(crate) fn discard(&self) -> Result<(), JournalError> {
        match self.storage.remove(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.path)(e)),
        }
        self.sync_dir()
    }

    /// Appends `events` and waits until they are on disk. On failure the
    /// file is cut back to its last intact frame where possible; the caller
    /// must treat the journal as out of step either way.
    pub(crate) fn append(&mut self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let bytes = encode(events);
        let written = self
            .file
            .append(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.size);
            return Err(io(&self.path)(e));
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `fsync`s the journal's directory, so a rename or removal in it
    /// survives a power loss.
    fn sync_dir(&self) -> Result<(), JournalError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.storage.sync_dir(dir).map_err(io(dir))
    }

    /// Replaces the journal with `events` (the current state), atomically.
    pub(crate) fn compact(&mut self, product: &str, events: &[Event]) -> Result<(), JournalError> {
        let mut all = vec![Event::Header {
            version: VERSION,
            product: product.to_owned(),
        }];
        all.extend_from_slice(events);
        let bytes = encode(&all);
        let tmp = self.path.with_extension("journal.tmp");
        // A fresh file: whatever sits at that name (a leftover, or a FIFO
        // or link someone planted) is removed, never opened.
        let _ = self.storage.remove(&tmp);
        let written = self
            .storage
            .create_new(&tmp, &bytes, true)
            .and_then(|()| self.storage.rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = self.storage.remove(&tmp);
            return Err(io(&tmp)(e));
        }
        self.sync_dir()?;
        let file = self
            .storage
            .open(&self.path, false)
            .map_err(io(&self.path))?;
        self.file = file;
        self.size = bytes.len() as u64;
        Ok(())
    }
}

/// Keeps a copy of a damaged journal for inspection, and removes all but
/// the newest [`KEEP_DAMAGED`] copies. Best effort: a full disk must not
/// stop recovery.
fn keep_damaged_copy(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let kept_as = path.with_extension(format!("damaged-{}", crate::status::now_secs()));
    let _ = storage.remove(&kept_as);
    storage.create_new(&kept_as, bytes, false).ok()?;
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = name.trim_end_matches("journal");
    let copies = storage
        .list(path.parent()?, &format!("{stem}damaged-"))
        .ok()?;
    let excess = copies.len().saturating_sub(KEEP_DAMAGED);
    for old in copies.into_iter().take(excess) {
        let _ = storage.remove(&old);
    }
    Some(kept_as)
}

#[cfg(test)]
mod tests;
