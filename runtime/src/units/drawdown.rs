//! Drawdown units: counted on the hot path, drawn for good in batches.
//!
//! `draw!` adds to an atomic counter of its entitlement, as `#[metered]`
//! does for a dimension: no lock, no I/O, no network. Every checkpoint
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

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};

use super::journal::{Batch, DrawJournal, Outcome};
use super::state::{Drawing, Shared, lock};
use crate::aws::{AwsFailure, Retry, classify};
use crate::catalog::UnitModel;
use crate::denied::{DenialReason, Denied, Subject};
use crate::metering::storage::RealFs;

/// Drawdown entitlements one process can count (across every catalog it
/// starts with).
const SLOTS: usize = 64;

/// How long a journaled batch may wait for AWS's answer before `draw!`
/// denies (with `DenialReason::Unavailable`) until it is answered.
pub(crate) const BLOCK_AFTER: std::time::Duration = std::time::Duration::from_mins(30);

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
    counted: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU8::new(NOT_VERIFIED),
        counted: AtomicU64::new(0),
    }
}; SLOTS];
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
    if lock(&PRODUCT).is_some() && super::state::shared().is_some() {
        TABLE[i - 1].state.store(NOT_IN_PRODUCT, Ordering::Release);
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
        slot => TABLE[slot - 1].counted.load(Ordering::Acquire),
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
        let slot = &TABLE[slot - 1];
        let state = slot.state.load(Ordering::Acquire);
        if state == OPEN && units > 0 {
            slot.counted.fetch_add(units, Ordering::Relaxed);
            return Ok(());
        }
        Err(self.denied(if units == 0 { u8::MAX } else { state }))
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

/// At start: every slot says what this product allows, and the journal is
/// opened (its unanswered batches are sent by the first flush).
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
    }
    let mut drawing = lock(&shared.drawing);
    reopen_journal(shared, &mut drawing);
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
        .map_or(0, |i| TABLE[i].counted.load(Ordering::Relaxed));
    (drawn, journaled + counted)
}

/// The license changed: entitlements refused for an exhausted balance may
/// be drawn from again.
pub(super) fn reopen_exhausted(shared: &Shared) {
    for (_, _, slot) in entitlements(shared) {
        let _ = TABLE[slot - 1].state.compare_exchange(
            EXHAUSTED,
            OPEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Shutdown: `draw!` denies from here on.
pub(super) fn close() {
    let names = lock(&NAMES).len();
    for slot in TABLE.iter().take(names) {
        slot.state.store(STOPPED, Ordering::Release);
    }
}

/// Draws every checkpoint interval until the runtime stops.
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        flush(&shared).await;
        tokio::time::sleep(shared.settings.draw_every).await;
    }
}

/// Sends every unanswered batch again, then journals and sends what was
/// counted since the last flush.
pub(super) async fn flush(shared: &Shared) {
    let mut journal = {
        let mut drawing = lock(&shared.drawing);
        reopen_journal(shared, &mut drawing);
        match drawing.journal.take() {
            Some(journal) => journal,
            None => return,
        }
    };
    for batch in journal.pending() {
        send(shared, &mut journal, &batch).await;
    }
    let at = u64::try_from(crate::time::epoch_secs((shared.wall)())).unwrap_or(0);
    let now = shared.clock.now();
    let mut broken = None;
    for (name, _, slot) in entitlements(shared) {
        let counted = &TABLE[slot - 1].counted;
        let units = counted.swap(0, Ordering::AcqRel);
        if units == 0 {
            continue;
        }
        match journal.begin(name, units, crate::random::random_hex(32), at) {
            Ok(batch) => send(shared, &mut journal, &batch).await,
            Err(e) => {
                // Not journaled, so not sent: the units wait in memory.
                counted.fetch_add(units, Ordering::AcqRel);
                broken = Some(e.to_string());
                break;
            }
        }
    }
    let mut drawing = lock(&shared.drawing);
    if let Some(error) = broken {
        tracing::error!(
            target: "marketgate",
            %error,
            "the drawdown journal cannot be written: draw! is denied until it can"
        );
        drawing.error = Some(error);
        // Not put back: closed (its lock released) when this returns; the
        // next flush opens it again.
        for (_, _, slot) in entitlements(shared) {
            let _ = TABLE[slot - 1].state.compare_exchange(
                OPEN,
                NO_JOURNAL,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    } else {
        // How long the oldest unanswered batch has waited, as this process
        // saw it (on the lease's monotonic clock).
        let pending: Vec<u64> = journal.pending().iter().map(|b| b.seq).collect();
        drawing.waiting_since.retain(|seq, _| pending.contains(seq));
        for seq in pending {
            drawing.waiting_since.entry(seq).or_insert(now);
        }
        let stuck = drawing
            .waiting_since
            .values()
            .min()
            .is_some_and(|since| now.saturating_sub(*since) >= BLOCK_AFTER);
        drawing.journal = Some(journal);
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
                    "a drawdown batch has waited 30 minutes for License Manager: draw! is \
                     denied until it is answered"
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
        .find(|e| e.name() == batch.entitlement)
    else {
        tracing::warn!(
            target: "marketgate",
            entitlement = %batch.entitlement,
            units = batch.units,
            "a journaled drawdown batch names an entitlement this product does not have; kept"
        );
        return;
    };
    let answer = perpetual_checkout(shared, spec.unit(), batch).await;
    let outcome = match answer {
        Ok(()) => Outcome::Drawn,
        Err(f)
            if f.retry == Retry::Permanent
                && matches!(
                    f.code.as_deref(),
                    Some("NoEntitlementsAllowedException" | "ResourceNotFoundException")
                ) =>
        {
            tracing::warn!(
                target: "marketgate",
                failure = %f,
                entitlement = %batch.entitlement,
                units = batch.units,
                "drawdown balance exhausted: these units were used but cannot be drawn; draw! \
                 denies until the license changes"
            );
            if let Some(slot) = lock(&NAMES).iter().position(|n| *n == batch.entitlement) {
                TABLE[slot].state.store(EXHAUSTED, Ordering::Release);
            }
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
