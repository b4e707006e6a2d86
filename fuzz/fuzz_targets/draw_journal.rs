//! Drawdown journal recovery: arbitrary bytes as the `drawdown.journal` a
//! previous run left (a buyer can write anything on the state volume; a
//! disk can tear or corrupt it). `marketgate::fuzzing::recover_draw_journal`
//! asserts the properties (see `runtime/src/units/fuzz_journal.rs`).
//!
//! With the first byte's high bit clear the rest is the file as it is; with
//! it set the rest is lines of JSON, each framed with a valid checksum, as a
//! buyer who forges records would write them (random bytes almost never
//! pass a 64-bit checksum).
#![no_main]

#[path = "common/framed.rs"]
mod common;

use common::framed;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x80 == 0 {
        marketgate::fuzzing::recover_draw_journal(rest);
    } else {
        marketgate::fuzzing::recover_draw_journal(&framed(rest));
    }
});
