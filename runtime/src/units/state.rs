//! The counted-units state of the running contract product, shared by
//! the seller-facing calls, the floating schedule and the drawdown task.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::journal::DrawJournal;
use crate::aws::Clients;
use crate::catalog::{EntitlementSpec, LicenseSpec, Product};
use crate::denied::{DenialReason, Denied, Subject};
use crate::license::Monotonic;
use crate::time::Clock;

/// What the runtime passes when a contract product starts.
pub(crate) struct Settings {
    pub(crate) state_dir: PathBuf,
    /// How often counted drawdown units are journaled and drawn.
    pub(crate) draw_every: Duration,
    /// How long a checkout of floating units retries transient failures.
    pub(crate) checkout_budget: Duration,
}

/// What the buyer's license says of one entitlement (`GetLicense`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purchased {
    pub(crate) unit: String,
    pub(crate) max_count: Option<u64>,
    pub(crate) overage: bool,
    pub(crate) allow_check_in: bool,
}

/// The counted-units state of the running contract product.
pub(crate) struct Shared {
    pub(crate) product: &'static Product,
    pub(crate) spec: &'static LicenseSpec,
    pub(crate) clients: Clients,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) clock: Monotonic,
    pub(crate) wall: Clock,
    pub(crate) settings: Settings,
    /// The license read back last, by entitlement name, and when.
    pub(crate) read: Mutex<Option<(BTreeMap<String, Purchased>, SystemTime)>>,
    pub(crate) pool: Mutex<Pool>,
    pub(crate) pool_changed: tokio::sync::Notify,
    pub(crate) drawing: Mutex<Drawing>,
    /// Check-ins of dropped guards under way: shutdown waits for them.
    pub(crate) check_ins: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub(crate) static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);
/// Set from shutdown until the next start: denials then say `Stopped`.
pub(crate) static STOPPED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running contract product's state, if any.
pub(crate) fn shared() -> Option<Arc<Shared>> {
    SHARED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The entitlement `name` of the running product, or why not.
pub(crate) fn spec_of(
    shared: &Shared,
    name: &'static str,
) -> Result<&'static EntitlementSpec, Denied> {
    shared
        .spec
        .entitlements()
        .iter()
        .find(|e| e.name() == name)
        .ok_or(Denied::new(
            Subject::Entitlement(name),
            DenialReason::NotInProduct {
                product: shared.product.name(),
            },
        ))
}

/// A denial of `name` when no contract product runs.
pub(crate) fn not_running(name: &'static str) -> Denied {
    Denied::new(
        Subject::Entitlement(name),
        if STOPPED.load(std::sync::atomic::Ordering::Acquire) {
            DenialReason::Stopped
        } else {
            DenialReason::NotVerified
        },
    )
}

/// Every live guard's consumption, by guard id.
#[derive(Default)]
pub(crate) struct Pool {
    pub(crate) held: BTreeMap<u64, Held>,
    /// Set by shutdown's check-in: no guard may join after it.
    pub(crate) closed: bool,
}

pub(crate) struct Held {
    pub(crate) name: &'static str,
    pub(crate) count: u64,
    pub(crate) token: String,
    /// Lease-clock time after which the consumption may have expired.
    pub(crate) deadline: Duration,
    /// Lease-clock time of the next extension.
    pub(crate) next: Duration,
    pub(crate) failures: u32,
    pub(crate) lost: Arc<Lost>,
}

impl Pool {
    /// Units of `name` held by live guards.
    pub(crate) fn held(&self, name: &str) -> u64 {
        self.held
            .values()
            .filter(|h| h.name == name)
            .map(|h| h.count)
            .sum()
    }
}

/// The journal and what it says, behind the runtime's lock.
#[derive(Default)]
pub(crate) struct Drawing {
    pub(crate) journal: Option<DrawJournal>,
    /// Per entitlement: units drawn and units journaled but not answered.
    pub(crate) totals: BTreeMap<String, (u64, u64)>,
    /// Why the journal is not open.
    pub(crate) error: Option<String>,
    /// Lease-clock time each unanswered batch (by seq) was first seen by
    /// this process.
    pub(crate) waiting_since: BTreeMap<u64, std::time::Duration>,
}

/// Whether a guard's units are gone (given up at their deadline, or checked
/// in by shutdown), and a way to wait for it.
#[derive(Debug, Default)]
pub(crate) struct Lost {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Lost {
    pub(crate) fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once [`Lost::set`] has been called.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
