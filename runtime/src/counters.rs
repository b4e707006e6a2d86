//! Usage counters for `#[metered]`: sharded, monotonic, lock-free.
//!
//! Each thread adds into its own shard (a cache-line-aligned block of one
//! counter per dimension), so a record is one uncontended relaxed
//! `fetch_add`: no allocation, no lock, no clock read, no syscall.
//!
//! Counters only grow. The metering pipeline closes an hour by reading the
//! sum of all shards and subtracting the sum it read at the previous close;
//! nothing on the hot path knows about hours, and no reset can race with an
//! add.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::catalog::MAX_DIMENSIONS;

/// Shards; a power of two. More threads than this share shards (still
/// correct, only contended).
pub(crate) const SHARDS: usize = 16;

#[repr(align(128))] // two cache lines: keeps adjacent-line prefetch from pairing shards
struct Shard([AtomicU64; MAX_DIMENSIONS]);

static COUNTERS: [Shard; SHARDS] =
    [const { Shard([const { AtomicU64::new(0) }; MAX_DIMENSIONS]) }; SHARDS];

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: access is a plain TLS load.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard (shared with `draw!`'s counters).
#[inline]
pub(crate) fn shard() -> usize {
    SHARD.with(|cell| {
        let shard = cell.get();
        if shard == usize::MAX {
            assign_shard(cell)
        } else {
            shard
        }
    })
}

#[cold]
fn assign_shard(cell: &Cell<usize>) -> usize {
    let shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
    cell.set(shard);
    shard
}

/// Adds `quantity` units to dimension `index`. The hot path of `#[metered]`.
#[inline]
pub fn record(index: usize, quantity: u64) {
    COUNTERS[shard() & (SHARDS - 1)].0[index % MAX_DIMENSIONS]
        .fetch_add(quantity, Ordering::Relaxed);
}

/// Everything ever recorded, per dimension index, summed over shards.
///
/// A `u64` per dimension wraps only after 1.8e19 units; the pipeline works
/// on differences, which stay correct across one wrap.
#[must_use]
pub(crate) fn totals() -> [u64; MAX_DIMENSIONS] {
    let mut totals = [0u64; MAX_DIMENSIONS];
    for shard in &COUNTERS {
        for (total, counter) in totals.iter_mut().zip(&shard.0) {
            *total = total.wrapping_add(counter.load(Ordering::Relaxed));
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_sum_exactly() {
        // Dimension 63 is used by no other unit test.
        let before = totals()[63];
        std::thread::scope(|s| {
            for t in 0..8u64 {
                s.spawn(move || {
                    for _ in 0..10_000 {
                        record(63, t + 1);
                    }
                });
            }
        });
        assert_eq!(totals()[63] - before, 10_000 * (1..=8).sum::<u64>());
    }
}
