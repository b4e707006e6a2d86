//! The crash-safe metering journal.
//!
//! An append-only file of frames, each `[length u32][checksum u64][JSON]`,
//! little-endian, the checksum being the first 8 bytes of the payload's
//! SHA-256 (aws-lc-rs, already linked). Every append is written and
//! `fsync`ed before the pipeline acts on it, so after a crash (`SIGKILL`,
//! power loss) the file holds every event that was acknowledged, plus at
//! most one torn frame at the end.
//!
//! Recovery reads frames until the first one that is truncated or fails its
//! checksum, keeps everything before it, and reports how many bytes it could
//! not read; the damaged file is kept beside the new one for inspection, and
//! a compacted journal is written from what was recovered.
//!
//! Why not an embedded database: a store such as redb refuses to open a
//! corrupted file, while the requirement here is to keep every intact record
//! and say what was lost. A checksummed log gives exactly that, and its crash
//! behaviour is exercised by the SIGKILL tests.
//!
//! Compaction (rewriting the current state as a fresh journal) writes a
//! temporary file, `fsync`s it, renames it over the journal and `fsync`s the
//! directory, so a crash leaves either the old or the new journal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

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
        state: RestoredState,
    },
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(n: &u32) -> bool {
    *n == 0
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

/// What recovery could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte offset of the first unreadable frame.
    pub(crate) offset: u64,
    /// Bytes from there to the end of the file.
    pub(crate) bytes: u64,
    /// Where the damaged file was kept.
    pub(crate) kept_as: PathBuf,
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn checksum(payload: &[u8]) -> u64 {
    let hash = digest(&SHA256, payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_le_bytes(first)
}

fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        // Serialising these plain enums cannot fail.
        let payload = serde_json::to_vec(event).unwrap_or_default();
        out.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&checksum(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// Decodes frames until the end or the first bad frame.
fn decode(bytes: &[u8]) -> (Vec<Event>, Option<usize>) {
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else {
            return (events, Some(at));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let sum = u64::from_le_bytes([
            header[4], header[5], header[6], header[7], header[8], header[9], header[10],
            header[11],
        ]);
        let Some(payload) = bytes
            .get(at + 12..at + 12 + len)
            .filter(|_| len <= MAX_FRAME)
        else {
            return (events, Some(at));
        };
        if checksum(payload) != sum {
            return (events, Some(at));
        }
        match serde_json::from_slice(payload) {
            Ok(event) => events.push(event),
            Err(_) => return (events, Some(at)),
        }
        at += 12 + len;
    }
    (events, None)
}

/// An open journal.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    /// Held for the life of the process: a separate file that compaction
    /// never replaces, so the lock cannot slip to another process.
    _lock: File,
    /// Bytes in the file, for deciding when to compact.
    pub(crate) size: u64,
}

impl Journal {
    /// Opens (or creates) the journal of `product` in `dir`, recovering what
    /// it holds. Takes an exclusive lock for the life of the process.
    pub(crate) fn open(
        dir: &Path,
        product: &str,
    ) -> Result<(Journal, Vec<Event>, Option<Damage>), JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
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
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let (mut events, bad) = decode(&bytes);
        if let Some(Event::Header { product: found, .. }) = events.first()
            && found != product
        {
            return Err(JournalError::WrongProduct {
                path,
                found: found.clone(),
                expected: product.to_owned(),
            });
        }
        let damage = match bad {
            Some(offset) => {
                let kept_as = path.with_extension(format!("damaged-{}", crate::status::now_secs()));
                std::fs::write(&kept_as, &bytes).map_err(io(&kept_as))?;
                Some(Damage {
                    offset: offset as u64,
                    bytes: (bytes.len() - offset) as u64,
                    kept_as,
                })
            }
            None => None,
        };
        if !events.is_empty() {
            events.remove(0);
        }
        let size = bytes.len() as u64;
        let mut journal = Journal {
            path,
            file,
            _lock: lock,
            size,
        };
        if damage.is_some() || size == 0 {
            // Start from a clean file holding exactly what was recovered.
            journal.compact(product, &events)?;
        }
        Ok((journal, events, damage))
    }

    /// The journal file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the journal file (best effort): used when it can no longer
    /// be kept in step with memory, since a stale journal replayed after a
    /// crash could re-bill usage under new client tokens.
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Appends `events` and waits until they are on disk.
    pub(crate) fn append(&mut self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let bytes = encode(events);
        self.file.write_all(&bytes).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.size += bytes.len() as u64;
        Ok(())
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
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        file.try_lock()
            .map_err(|_| JournalError::Locked(self.path.clone()))?;
        self.file = file;
        self.size = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("marketgate-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn add(q: u64) -> Event {
        Event::Add {
            dimension: "api_calls".into(),
            hour: 3600,
            quantity: q,
            tags: Vec::new(),
        }
    }

    #[test]
    fn events_keep_their_version_1_field_names_on_disk() {
        let add = Event::Add {
            dimension: "api_calls".to_owned(),
            hour: 3600,
            quantity: 7,
            tags: vec![("team".to_owned(), "a".to_owned())],
        };
        let json = serde_json::to_value(&add).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"e": "Add", "d": "api_calls", "h": 3600, "q": 7, "t": [["team", "a"]]})
        );
        let attempt: Event =
            serde_json::from_str(r#"{"e":"Attempt","d":"api_calls","h":7200}"#).expect("parse");
        assert_eq!(
            attempt,
            Event::Attempt {
                dimension: "api_calls".to_owned(),
                hour: 7200
            }
        );
    }

    #[test]
    fn events_survive_reopening() {
        let d = dir("reopen");
        {
            let (mut j, events, damage) = Journal::open(&d, "p1").expect("open");
            assert!(events.is_empty() && damage.is_none());
            j.append(&[add(1), add(2)]).expect("append");
            j.append(&[add(3)]).expect("append");
        }
        let (_, events, damage) = Journal::open(&d, "p1").expect("reopen");
        assert_eq!(events, [add(1), add(2), add(3)]);
        assert!(damage.is_none());
    }

    #[test]
    fn a_torn_or_corrupt_tail_keeps_every_intact_frame_and_says_what_was_lost() {
        let d = dir("tail");
        let path = {
            let (mut j, _, _) = Journal::open(&d, "p1").expect("open");
            j.append(&[add(1), add(2), add(3)]).expect("append");
            j.path().to_path_buf()
        };
        let full = std::fs::read(&path).expect("read");
        // Truncate in the middle of the last frame.
        std::fs::write(&path, &full[..full.len() - 5]).expect("truncate");
        let (_, events, damage) = Journal::open(&d, "p1").expect("reopen");
        assert_eq!(events, [add(1), add(2)]);
        let damage = damage.expect("damage reported");
        assert!(damage.bytes > 0 && damage.kept_as.exists());
        // The journal was rewritten clean: reopening finds no damage.
        let (mut j, events, damage) = Journal::open(&d, "p1").expect("reopen");
        assert_eq!(events, [add(1), add(2)]);
        assert!(damage.is_none());
        // Flip a byte inside the second frame's payload.
        j.append(&[add(4)]).expect("append");
        drop(j);
        let mut bytes = std::fs::read(&path).expect("read");
        let second = bytes.len() - 1 - 40;
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).expect("corrupt");
        let (_, events, damage) = Journal::open(&d, "p1").expect("reopen");
        assert!(events.len() < 3, "{events:?}");
        assert!(damage.is_some());
    }

    #[test]
    fn a_second_process_cannot_open_the_same_journal() {
        let d = dir("lock");
        let (_j, _, _) = Journal::open(&d, "p1").expect("open");
        assert!(matches!(
            Journal::open(&d, "p1"),
            Err(JournalError::Locked(_))
        ));
    }

    #[test]
    fn another_products_journal_is_refused() {
        let d = dir("product");
        drop(Journal::open(&d, "p1").expect("open"));
        std::fs::rename(d.join("metering-p1.journal"), d.join("metering-p2.journal")).expect("mv");
        assert!(matches!(
            Journal::open(&d, "p2"),
            Err(JournalError::WrongProduct { .. })
        ));
    }

    #[test]
    fn compaction_replaces_the_contents_atomically() {
        let d = dir("compact");
        let (mut j, _, _) = Journal::open(&d, "p1").expect("open");
        j.append(&[add(1), add(2), add(3)]).expect("append");
        j.compact("p1", &[add(6)]).expect("compact");
        j.append(&[add(7)]).expect("append");
        drop(j);
        let (_, events, _) = Journal::open(&d, "p1").expect("reopen");
        assert_eq!(events, [add(6), add(7)]);
    }
}
