//! Forged journal frames for the journal targets: each line of JSON framed
//! with a valid checksum, as a buyer who forges records would write them
//! (random bytes almost never pass a 64-bit checksum, so this is how the
//! fuzzer reaches what recovery does with well-framed but hostile records).

use aws_lc_rs::digest::{SHA256, digest};

/// `lines` (split at `\n`) as journal frames.
pub fn framed(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in lines.split(|b| *b == b'\n') {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&digest(&SHA256, payload).as_ref()[..8]);
        out.extend_from_slice(payload);
    }
    out
}
