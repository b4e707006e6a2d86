//! The checksummed frames both journals are made of: `[length u32][checksum
//! u64][JSON]`, little-endian, the checksum being the first 8 bytes of the
//! payload's SHA-256 (aws-lc-rs, already linked).
//!
//! Decoding tells two kinds of bad bytes apart: a **torn tail** (the last
//! frame runs past the end of the bytes, or the bytes end in zeros: what a
//! crash in the middle of an append leaves) and **damage** (any other frame
//! that fails its checksum or does not parse), after which reading resumes
//! at the next intact frame. What each journal makes of them is its own.

use aws_lc_rs::digest::{SHA256, digest};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first 8 bytes of the SHA-256 of `payload`.
fn checksum(payload: &[u8]) -> u64 {
    let hash = digest(&SHA256, payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_le_bytes(first)
}

/// `items` as frames, one after another.
pub(crate) fn encode<T: Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        // Serialising the journals' plain types cannot fail.
        let payload = serde_json::to_vec(item).unwrap_or_default();
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&checksum(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// One frame at an offset.
enum Frame<T> {
    /// An intact item and the offset after it.
    Intact(T, usize),
    /// The frame runs past the end of the bytes.
    Incomplete,
    /// Complete, but longer than allowed, failing its checksum, or not
    /// parsing.
    Bad,
}

fn frame<T: DeserializeOwned>(bytes: &[u8], at: usize, max_frame: usize) -> Frame<T> {
    let Some(head) = bytes.get(at..at.saturating_add(12)) else {
        return Frame::Incomplete;
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[..4]);
    let len = u32::from_le_bytes(len) as usize;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&head[4..]);
    if len > max_frame {
        return Frame::Bad;
    }
    let Some(payload) = bytes.get(at + 12..at + 12 + len) else {
        return Frame::Incomplete;
    };
    if checksum(payload) != u64::from_le_bytes(sum) {
        return Frame::Bad;
    }
    match serde_json::from_slice(payload) {
        Ok(item) => Frame::Intact(item, at + 12 + len),
        Err(_) => Frame::Bad,
    }
}

/// What [`decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<T> {
    /// Intact items with their offsets.
    pub(crate) items: Vec<(usize, T)>,
    /// Bytes of an incomplete or zeroed tail.
    pub(crate) torn_tail: u64,
    /// `(offset, length)` of each unreadable stretch before it.
    pub(crate) damaged: Vec<(usize, usize)>,
}

/// Every intact frame of `bytes` (frames longer than `max_frame` are bad);
/// after a bad one, reading resumes at the next offset where an intact
/// frame starts (a 64-bit checksum makes a false match practically
/// impossible).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], max_frame: usize) -> Decoded<T> {
    let mut out = Decoded {
        items: Vec::new(),
        torn_tail: 0,
        damaged: Vec::new(),
    };
    let mut at = 0;
    while at < bytes.len() {
        let bad = match frame(bytes, at, max_frame) {
            Frame::Intact(item, next) => {
                out.items.push((at, item));
                at = next;
                continue;
            }
            bad => bad,
        };
        let next = (at + 1..bytes.len())
            .find(|n| matches!(frame::<T>(bytes, *n, max_frame), Frame::Intact(..)));
        // Nothing intact follows: an incomplete last frame, or zeros a crash
        // left, is a torn tail. A complete frame failing its checksum is
        // damage even at the end.
        if next.is_none()
            && (matches!(bad, Frame::Incomplete) || bytes[at..].iter().all(|b| *b == 0))
        {
            out.torn_tail = (bytes.len() - at) as u64;
            return out;
        }
        let next = next.unwrap_or(bytes.len());
        out.damaged.push((at, next - at));
        at = next;
    }
    out
}
