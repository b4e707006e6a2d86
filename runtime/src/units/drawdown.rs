//! Drawdown units: counted on the hot path, drawn for good in batches.
//!
//! `draw!` adds to its thread's shard of its entitlement's counter, as
//! `#[metered]` does for a dimension (`crate::counters`): one uncontended
//! relaxed add, no lock, no I/O, no network. Counters only grow; a batch is
//! the difference between their sum now and the sum the last batch took. Every checkpoint
//! interval the runtime's thread takes each counter's units as a batch,
//! journals it with a fresh client token ([`journal`](super::journal),
//! written and `fsync`ed first), then draws it with one `PERPETUAL`
//! `CheckoutLicense` of `Value = units`. The answer is journaled too. A
//! batch without an answer (a failure, a crash, a shutdown) is sent again,
//! with the same client token and units, until AWS answers: AWS returns the
//! consumption it already made for that token, so nothing is drawn twice.
//!
//! Bounds, stated in `docs/contract.md`:
//! - never drawn more than was counted (a batch is what `draw!` counted);
//! - a crash loses the units counted since the last batch was journaled
//!   (one checkpoint interval);
//! - counting stops (`draw!` denies) while the license's lease has lapsed
//!   (License Manager unreachable past the lease's deadline) and while a
//!   batch has waited [`BLOCK_AFTER`] for an answer: a buyer who blocks
//!   License Manager cannot keep drawing for free;
//! - the balance is known to run out only when AWS refuses a batch
//!   (`NoEntitlementsAllowedException`): the refused batch's units were used
//!   but are not drawn (at most one interval's units), and `draw!` denies
//!   from then on, until the license read back shows a change (the buyer
//!   bought more).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};

use super::journal::{Batch, DrawJournal, Outcome};
use super::state::{Drawing, Shared, lock};
use crate::aws::{AwsFailure, Retry, classify};
use crate::catalog::UnitModel;
use crate::counters::{SHARDS, shard};
use crate::denied::{DenialReason, Denied, Subject};
use crate::metering::storage::RealFs;

/// Drawdown entitlements one process can count (across every catalog it
/// starts with).
const SLOTS: usize = 64;

/// How long a journaled batch may wait for AWS's answer before `draw!`
/// denies (with `DenialReason::Unavailable`) until it is answered.
pub(crate) const BLOCK_AFTER: std::time::Duration = std::time::Duration::from_mins(10);

const NOT_VERIFIED: u8 = 0;
const OPEN: u8 = 1;
const EXHAUSTED: u8 = 2;
const STOPPED: u8 = 3;
const NOT_IN_PRODUCT: u8 = 4;
const NO_JOURNAL: u8 = 5;
/// A batch has waited too long for an answer.
const BLOCKED: u8 = 6;
/// The license's lease has lapsed.
const LAPSED: u8 = 7;

struct Slot {
    state: AtomicU8,
    /// The counters' sum the last journaled batch took.
    batched: AtomicU64,
    /// The most one `draw!` may ask for: the license's `MaxCount` (no limit
    /// with overage or before the license is read). A bigger draw could
    /// never be drawn, and would spoil its whole batch.
    limit: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU8::new(NOT_VERIFIED),
        batched: AtomicU64::new(0),
        limit: AtomicU64::new(UNLIMITED),
    }
}; SLOTS];

/// The largest single draw without a known `MaxCount` (or with overage):
/// far beyond any use, and far from wrapping the counters.
const UNLIMITED: u64 = 1 << 40;

/// One thread's counters, a cache line pair apart from the next.
#[repr(align(128))]
struct Shard([AtomicU64; SLOTS]);

static COUNTED: [Shard; SHARDS] = [const { Shard([const { AtomicU64::new(0) }; SLOTS]) }; SHARDS];

/// Everything `draw!` ever counted into slot `i` (0-based), over shards.
fn counted_total(i: usize) -> u64 {
    COUNTED.iter().fold(0u64, |sum, shard| {
        sum.wrapping_add(shard.0[i].load(Ordering::Acquire))
    })
}

/// Units counted into slot `i` and not yet taken by a batch.
fn unbatched(i: usize) -> u64 {
    counted_total(i).wrapping_sub(TABLE[i].batched.load(Ordering::Acquire))
}
/// Which entitlement each slot counts; slots are never reused, so a call
/// site's cached slot stays right across restarts of the runtime.
static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
/// The running (or last) product's name, for denials.
static PRODUCT: Mutex<Option<&'static str>> = Mutex::new(None);

/// The slot counting `name` (1-based), made on first use; 0 when every
/// slot is taken.
fn slot_of(name: &'static str) -> usize {
    let mut names = lock(&NAMES);
    if let Some(i) = names.iter().position(|n| *n == name) {
        return i + 1;
    }
    if names.len() == SLOTS {
        return 0;
    }
    names.push(name);
    let i = names.len();
    // A slot made while a product runs that has no such drawdown
    // entitlement (those it has were made at start).
    if lock(&PRODUCT).is_some() {
        let state = if super::state::shared().is_some() {
            NOT_IN_PRODUCT
        } else {
            STOPPED
        };
        TABLE[i - 1].state.store(state, Ordering::Release);
    }
    i
}

/// `testing`: lets `draw!` count units of `name` without a runtime.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn testing_open(name: &'static str) {
    let slot = slot_of(name);
    if slot != 0 {
        TABLE[slot - 1].state.store(OPEN, Ordering::Release);
    }
}

/// `testing`: the units `draw!` counted for `name` and not yet batched.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn testing_counted(name: &'static str) -> u64 {
    match slot_of(name) {
        0 => 0,
        slot => unbatched(slot - 1),
    }
}

/// One `draw!` call site: its entitlement and, once resolved, its slot.
#[doc(hidden)]
#[derive(Debug)]
pub struct DrawSite {
    name: &'static str,
    slot: AtomicUsize,
}

impl DrawSite {
    /// A call site drawing from entitlement `name`.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        DrawSite {
            name,
            slot: AtomicUsize::new(0),
        }
    }

    /// Counts `units` to be drawn, or says why not.
    ///
    /// # Errors
    /// [`Denied`] when the entitlement cannot be drawn from now.
    #[inline]
    pub fn draw(&self, units: u64) -> Result<(), Denied> {
        let mut slot = self.slot.load(Ordering::Relaxed);
        if slot == 0 {
            slot = slot_of(self.name);
            if slot == 0 {
                return Err(self.denied(NOT_IN_PRODUCT));
            }
            self.slot.store(slot, Ordering::Relaxed);
        }
        let index = slot - 1;
        let slot = &TABLE[index];
        let state = slot.state.load(Ordering::Acquire);
        if state == OPEN && units > 0 && units <= slot.limit.load(Ordering::Relaxed) {
            COUNTED[shard() & (SHARDS - 1)].0[index].fetch_add(units, Ordering::Relaxed);
            return Ok(());
        }
        Err(self.denied(match (units, state) {
            (0, _) => u8::MAX,
            (_, OPEN) => EXHAUSTED,
            (_, state) => state,
        }))
    }

    #[cold]
    #[inline(never)]
    fn denied(&self, state: u8) -> Denied {
        let product = lock(&PRODUCT).unwrap_or("");
        let reason = match state {
            u8::MAX => DenialReason::ZeroUnits,
            EXHAUSTED => DenialReason::Exhausted { product },
            STOPPED => DenialReason::Stopped,
            NOT_IN_PRODUCT => DenialReason::NotInProduct { product },
            NO_JOURNAL => DenialReason::JournalUnavailable,
            BLOCKED => DenialReason::Unavailable { product },
            LAPSED => DenialReason::LicenseNotRenewed { product },
            _ => DenialReason::NotVerified,
        };
        Denied::new(Subject::Entitlement(self.name), reason)
    }
}

/// The drawdown entitlements of the running product, with their slots.
fn entitlements(shared: &Shared) -> Vec<(&'static str, &'static str, usize)> {
    shared
        .spec
        .entitlements()
        .iter()
        .filter(|e| e.model() == Some(UnitModel::Drawdown))
        .map(|e| (e.name(), e.unit(), slot_of(e.name())))
        .filter(|(_, _, slot)| *slot != 0)
        .collect()
}

/// Each drawdown entitlement's largest single draw, from the license read
/// back: its `MaxCount`, or no limit with overage or without a count.
pub(super) fn set_limits(shared: &Shared, read: &BTreeMap<String, super::state::Purchased>) {
    for (name, _, slot) in entitlements(shared) {
        let limit = read
            .get(name)
            .filter(|p| !p.overage)
            .and_then(|p| p.max_count)
            .map_or(UNLIMITED, |max| max.min(UNLIMITED));
        TABLE[slot - 1].limit.store(limit, Ordering::Relaxed);
    }
}

/// Whether `batch` is a drawdown entitlement of the running product (the
/// only batches sent: one left by another product or version is kept).
fn is_mine(shared: &Shared, batch: &Batch) -> bool {
    shared
        .spec
        .entitlements()
        .iter()
        .any(|e| e.name() == batch.entitlement && e.model() == Some(UnitModel::Drawdown))
}

/// At start: every slot says what this product allows, and the journal is
/// opened. While it holds unanswered batches of this product, `draw!` waits
/// for them to be answered (a restart must not reset how long they waited).
pub(super) fn open(shared: &Shared) {
    *lock(&PRODUCT) = Some(shared.product.name());
    let mine = entitlements(shared);
    let names = lock(&NAMES).len();
    for (i, slot) in TABLE.iter().enumerate().take(names) {
        if !mine.iter().any(|(_, _, s)| *s == i + 1) {
            slot.state.store(NOT_IN_PRODUCT, Ordering::Release);
        }
    }
    if mine.is_empty() {
        return;
    }
    // A fresh start: whatever an earlier run in this process left (stopped,
    // exhausted) is decided again.
    for (_, _, slot) in &mine {
        TABLE[slot - 1].state.store(NOT_VERIFIED, Ordering::Release);
        TABLE[slot - 1].limit.store(UNLIMITED, Ordering::Relaxed);
    }
    let mut drawing = lock(&shared.drawing);
    reopen_journal(shared, &mut drawing);
    let waiting = drawing
        .journal
        .as_ref()
        .is_some_and(|j| j.pending().iter().any(|b| is_mine(shared, b)));
    drop(drawing);
    if waiting {
        block(shared, BLOCKED);
    }
}

/// Opens the journal if it is not open; sets the product's slots to match.
fn reopen_journal(shared: &Shared, drawing: &mut Drawing) {
    if drawing.journal.is_none() {
        match DrawJournal::open(Arc::new(RealFs), &shared.settings.state_dir) {
            Ok((journal, recovery)) => {
                if recovery.torn_tail_bytes > 0 || recovery.damaged_frames > 0 {
                    tracing::warn!(
                        target: "marketgate",
                        torn_tail_bytes = recovery.torn_tail_bytes,
                        damaged_frames = recovery.damaged_frames,
                        "the drawdown journal was damaged; intact batches were kept"
                    );
                }
                drawing.journal = Some(journal);
                drawing.error = None;
                refresh_totals(drawing);
            }
            Err(e) => {
                if drawing.error.is_none() {
                    tracing::error!(
                        target: "marketgate",
                        error = %e,
                        "the drawdown journal cannot be opened: draw! is denied until it can"
                    );
                }
                drawing.error = Some(e.to_string());
            }
        }
    }
    let state = if drawing.journal.is_some() {
        OPEN
    } else {
        NO_JOURNAL
    };
    for (_, _, slot) in entitlements(shared) {
        let slot = &TABLE[slot - 1];
        let current = slot.state.load(Ordering::Acquire);
        // Opened: only from not yet verified or journal trouble (blocking
        // states are the flush's to lift). Trouble: from anything but
        // exhausted or stopped.
        let moves = if state == OPEN {
            matches!(current, NOT_VERIFIED | NO_JOURNAL)
        } else {
            current != EXHAUSTED && current != STOPPED
        };
        if moves {
            slot.state.store(state, Ordering::Release);
        }
    }
}

fn refresh_totals(drawing: &mut Drawing) {
    if let Some(journal) = &drawing.journal {
        drawing.totals = journal
            .totals()
            .into_iter()
            .map(|(name, t)| (name, (t.drawn, t.pending)))
            .collect();
    }
}

/// Units of `name` drawn, and units counted or journaled but not drawn.
pub(super) fn totals(shared: &Shared, name: &str) -> (u64, u64) {
    let (drawn, journaled) = lock(&shared.drawing)
        .totals
        .get(name)
        .copied()
        .unwrap_or_default();
    let counted = lock(&NAMES)
        .iter()
        .position(|n| *n == name)
        .map_or(0, unbatched);
    (drawn, journaled + counted)
}

/// The license's count of the entitlements `changed` changed: those
/// refused for an exhausted balance may be drawn from again.
pub(super) fn reopen_exhausted(shared: &Shared, changed: &[String]) {
    for (name, _, slot) in entitlements(shared) {
        if !changed.iter().any(|c| c == name) {
            continue;
        }
        let _ = TABLE[slot - 1].state.compare_exchange(
            EXHAUSTED,
            OPEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Shutdown: `draw!` of this product's entitlements denies from here on.
pub(super) fn close(shared: &Shared) {
    for (_, _, slot) in entitlements(shared) {
        TABLE[slot - 1].state.store(STOPPED, Ordering::Release);
    }
}

/// Draws every checkpoint interval until the runtime stops.
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        flush(&shared).await;
        tokio::time::sleep(shared.settings.draw_every).await;
    }
}

/// Journals what was counted since the last flush (no network: however
/// slowly AWS answers, a crash loses at most one interval's units), then
/// sends every unanswered batch of this product, oldest first.
pub(super) async fn flush(shared: &Shared) {
    let mut journal = {
        let mut drawing = lock(&shared.drawing);
        reopen_journal(shared, &mut drawing);
        match drawing.journal.take() {
            Some(journal) => journal,
            None => return,
        }
    };
    let at = u64::try_from(crate::time::epoch_secs((shared.wall)())).unwrap_or(0);
    let mut broken = None;
    for (name, _, slot) in entitlements(shared) {
        let total = counted_total(slot - 1);
        let units = total.wrapping_sub(TABLE[slot - 1].batched.load(Ordering::Acquire));
        if units == 0 {
            continue;
        }
        match journal.begin(name, units, crate::random::random_hex(32), at) {
            Ok(_) => TABLE[slot - 1].batched.store(total, Ordering::Release),
            Err(e) => {
                // Not journaled, so never sent: the units stay counted. The
                // journal goes back as it is: it erases a half-written
                // frame before it journals anything else.
                broken = Some(e.to_string());
                break;
            }
        }
    }
    if broken.is_none() {
        for batch in journal.pending() {
            if is_mine(shared, &batch) {
                send(shared, &mut journal, &batch).await;
            }
        }
    }
    let now = shared.clock.now();
    let wall_now = u64::try_from(crate::time::epoch_secs((shared.wall)())).unwrap_or(0);
    let mut drawing = lock(&shared.drawing);
    if let Some(error) = broken {
        tracing::error!(
            target: "marketgate",
            %error,
            "the drawdown journal cannot be written: draw! is denied until it can"
        );
        drawing.error = Some(error);
        drawing.journal = Some(journal);
        for (_, _, slot) in entitlements(shared) {
            let slot = &TABLE[slot - 1];
            for from in [OPEN, BLOCKED, LAPSED] {
                let _ = slot.state.compare_exchange(
                    from,
                    NO_JOURNAL,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
    } else {
        // How long the oldest unanswered batch of this product has waited:
        // since it was journaled (wall clock, so a restart does not reset
        // it), or since this process first saw it (monotonic, so a clock
        // set back does not either).
        let pending: Vec<Batch> = journal
            .pending()
            .into_iter()
            .filter(|b| is_mine(shared, b))
            .collect();
        drawing
            .waiting_since
            .retain(|seq, _| pending.iter().any(|b| b.seq == *seq));
        for b in &pending {
            drawing.waiting_since.entry(b.seq).or_insert(now);
        }
        let stuck = drawing
            .waiting_since
            .values()
            .min()
            .is_some_and(|since| now.saturating_sub(*since) >= BLOCK_AFTER)
            || pending
                .iter()
                .any(|b| wall_now.saturating_sub(b.at) >= BLOCK_AFTER.as_secs());
        drawing.journal = Some(journal);
        drawing.error = None;
        refresh_totals(&mut drawing);
        let lapsed = crate::status::lease_state() == Some(crate::status::LeaseState::Lapsed);
        block(
            shared,
            if lapsed {
                LAPSED
            } else if stuck {
                BLOCKED
            } else {
                OPEN
            },
        );
    }
}

/// Moves the product's slots between open and the blocking states (never
/// out of exhausted, stopped or journal trouble).
fn block(shared: &Shared, to: u8) {
    for (name, _, slot) in entitlements(shared) {
        let slot = &TABLE[slot - 1];
        let from = slot.state.load(Ordering::Acquire);
        if matches!(from, OPEN | BLOCKED | LAPSED)
            && from != to
            && slot
                .state
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            match to {
                BLOCKED => tracing::warn!(
                    target: "marketgate",
                    entitlement = name,
                    "a drawdown batch is waiting for License Manager's answer: draw! is denied \
                     until it is answered"
                ),
                LAPSED => tracing::warn!(
                    target: "marketgate",
                    entitlement = name,
                    "the license's lease has lapsed: draw! is denied until a license is held again"
                ),
                _ => {
                    tracing::info!(target: "marketgate", entitlement = name, "draw! accepted again");
                }
            }
        }
    }
}

/// Sends one journaled batch and journals AWS's answer, if definitive.
async fn send(shared: &Shared, journal: &mut DrawJournal, batch: &Batch) {
    let Some(spec) = shared
        .spec
        .entitlements()
        .iter()
        .find(|e| e.name() == batch.entitlement && e.model() == Some(UnitModel::Drawdown))
    else {
        return;
    };
    let answer = perpetual_checkout(shared, spec.unit(), batch).await;
    let outcome = match answer {
        Ok(()) => Outcome::Drawn,
        Err(f)
            if f.retry == Retry::Permanent
                && f.code.as_deref() == Some("NoEntitlementsAllowedException") =>
        {
            tracing::warn!(
                target: "marketgate",
                failure = %f,
                entitlement = %batch.entitlement,
                units = batch.units,
                "drawdown balance exhausted: these units were used but cannot be drawn; draw! \
                 denies until the license's count for it changes"
            );
            if let Some(slot) = lock(&NAMES).iter().position(|n| *n == batch.entitlement) {
                for from in [OPEN, BLOCKED, LAPSED] {
                    let _ = TABLE[slot].state.compare_exchange(
                        from,
                        EXHAUSTED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
            Outcome::Refused
        }
        // A request AWS will never accept (a malformed value): written off
        // loudly rather than blocking every later draw.
        Err(f)
            if f.retry == Retry::Permanent
                && matches!(
                    f.code.as_deref(),
                    Some("ValidationException" | "InvalidParameterValueException")
                ) =>
        {
            tracing::error!(
                target: "marketgate",
                failure = %f,
                entitlement = %batch.entitlement,
                units = batch.units,
                "drawdown batch refused as invalid: its units are written off"
            );
            Outcome::Refused
        }
        Err(f) => {
            tracing::warn!(
                target: "marketgate",
                failure = %f,
                entitlement = %batch.entitlement,
                units = batch.units,
                "drawdown batch not drawn yet; it is sent again with the same client token"
            );
            return;
        }
    };
    if let Err(e) = journal.finish(batch.seq, outcome) {
        // The answer is not journaled: the batch is sent again later, with
        // the same client token, and AWS answers the same.
        tracing::warn!(target: "marketgate", error = %e, "drawdown answer not journaled");
    }
}

async fn perpetual_checkout(shared: &Shared, unit: &str, batch: &Batch) -> Result<(), AwsFailure> {
    let data = EntitlementData::builder()
        .name(&batch.entitlement)
        .unit(EntitlementDataUnit::from(unit))
        .value(batch.units.to_string())
        .build()
        .map_err(|e| AwsFailure {
            operation: "CheckoutLicense",
            code: None,
            message: e.to_string(),
            status: None,
            retry: Retry::Permanent,
            delivery: crate::aws::Delivery::Answered,
        })?;
    let answer = shared
        .clients
        .licenses
        .checkout_license()
        .product_sku(shared.spec.sku())
        .checkout_type(CheckoutType::Perpetual)
        .key_fingerprint(shared.spec.key_fingerprint())
        .entitlements(data)
        .client_token(&batch.client_token)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("CheckoutLicense", &e));
    crate::status::record_call("CheckoutLicense", answer.as_ref().copied());
    answer
}
