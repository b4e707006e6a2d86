//! Journal recovery: arbitrary bytes as the metering journal a previous run
//! left (a buyer can write anything on the journal volume; a disk can tear
//! or corrupt it). `marketgate::fuzzing::recover_journal` asserts the
//! properties (see `runtime/src/metering/fuzz_journal.rs`).
//!
//! The first byte: its low 7 bits pick the current hour (0 to 127 hours
//! after 2026-01-01, where the seeds' hours lie), so plausibility is
//! exercised both ways. With its high bit clear the rest is the file as it
//! is; with it set the rest is lines of JSON, each framed with a valid
//! checksum, as a buyer who forges events would write them (random bytes
//! almost never pass a 64-bit checksum, so this is how the fuzzer reaches
//! what recovery does with well-framed but hostile events).
#![no_main]

#[path = "common/framed.rs"]
mod common;

use common::framed;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let now_hour = 1_767_225_600 + i64::from(first & 0x7f) * 3600;
    if first & 0x80 == 0 {
        marketgate::fuzzing::recover_journal(rest, now_hour);
    } else {
        marketgate::fuzzing::recover_journal(&framed(rest), now_hour);
    }
});
