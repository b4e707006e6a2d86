//! Counted units of contract products, as seller code uses them: what the
//! buyer bought ([`entitlement`](crate::entitlement!)), floating units held
//! for a piece of work ([`checkout`](crate::checkout!)) and drawdown units
//! consumed for good ([`draw`](crate::draw!)).
//!
//! AWS Marketplace's contract models (Seller Guide, "Contract pricing for
//! container products"; `docs/contract.md`):
//!
//! - **tiered**: `Unit = None` entitlements, checked out once by the
//!   process's lease (`crate::license`);
//! - **configurable floating**: counted units returned to the pool. Each
//!   [`Units`] guard is one `PROVISIONAL` consumption, extended by one shared
//!   schedule ([`floating`]) and checked in when dropped or at shutdown; AWS
//!   checks it in by itself 60 minutes after the last extension, which is
//!   what a crash costs;
//! - **configurable drawdown**: counted units consumed for good. `draw!`
//!   counts units on the hot path; every checkpoint interval the background
//!   task journals the count as a batch with a fresh client token, then
//!   draws it with one `PERPETUAL` checkout ([`drawdown`]). A crash before
//!   the batch is journaled loses at most one interval's units; a journaled
//!   batch is resent with the same client token until AWS answers, so it is
//!   never drawn twice.

pub(crate) mod drawdown;
mod floating;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_journal;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod journal;
mod quantity;
mod state;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use drawdown::DrawSite;
pub use floating::Units;
pub use quantity::Quantity;

pub(crate) use state::Settings;
use state::{SHARED, STOPPED, Shared, not_running, shared};

use crate::aws::Clients;
use crate::catalog::{Product, UnitModel};
use crate::denied::Denied;
use crate::license::Monotonic;
use crate::time::Clock;

/// Starts the counted-units work of a contract product: the license is read
/// back once (what the buyer bought), the floating schedule and the
/// drawdown task start.
pub(crate) async fn launch(
    product: &'static Product,
    clients: Clients,
    clock: Monotonic,
    wall: Clock,
    license_arn: String,
    settings: Settings,
) -> Option<Running> {
    let spec = product.license()?;
    let shared = Arc::new(Shared {
        product,
        spec,
        clients,
        handle: tokio::runtime::Handle::current(),
        clock,
        wall,
        settings,
        read: Mutex::new(None),
        pool: Mutex::new(state::Pool::default()),
        pool_changed: tokio::sync::Notify::new(),
        drawing: Mutex::new(state::Drawing::default()),
        check_ins: Mutex::new(Vec::new()),
    });
    STOPPED.store(false, std::sync::atomic::Ordering::Release);
    *SHARED.write().unwrap_or_else(PoisonError::into_inner) = Some(shared.clone());
    drawdown::open(&shared);
    // After `open`, which forgets what an earlier run read.
    quantity::read_license(&shared, &license_arn).await;
    let mut tasks = vec![tokio::spawn(floating::run(shared.clone()))];
    if spec
        .entitlements()
        .iter()
        .any(|e| e.model() == Some(UnitModel::Drawdown))
    {
        tasks.push(tokio::spawn(drawdown::run(shared.clone())));
    }
    Some(Running { shared, tasks })
}

/// The counted-units work of one run of the runtime, for its shutdown.
pub(crate) struct Running {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// At shutdown, within `budget`: the last counted drawdown units are drawn
/// and every floating guard still held is checked in. From here on,
/// checkouts and draws are denied.
pub(crate) async fn shutdown(running: Running, budget: Duration) {
    let Running { shared, tasks } = running;
    {
        // This run's state only: a late shutdown never stops a newer run.
        let mut current = SHARED.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &shared)) {
            *current = None;
            STOPPED.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    for task in tasks {
        task.abort();
        // Gone before the final flush: an aborted task still holding the
        // journal would keep it locked.
        let _ = task.await;
    }
    drawdown::close(&shared);
    let draw = tokio::time::timeout(budget, drawdown::flush(&shared));
    let check_in = floating::check_in_all(&shared, budget);
    let (drawn, ()) = tokio::join!(draw, check_in);
    if drawn.is_err() {
        tracing::warn!(
            target: "marketgate",
            "the last drawdown batch was not answered within the shutdown budget; it stays in \
             the journal and is sent again, with the same client token, at the next start"
        );
    }
}

/// The license read back by the lease's periodic re-check: what the buyer
/// bought now.
pub(crate) fn license_read(license: &aws_sdk_licensemanager::types::License) {
    if let Some(shared) = shared() {
        quantity::store(&shared, license);
    }
}

#[doc(hidden)]
/// `marketgate::entitlement!`: what the buyer bought of entitlement `name`.
///
/// # Errors
/// [`Denied`] when no contract product runs, it has no entitlement `name`,
/// or the buyer's license does not list it.
pub fn entitlement(name: &'static str) -> Result<Quantity, Denied> {
    let shared = shared().ok_or_else(|| not_running(name))?;
    quantity::quantity(&shared, name)
}

#[doc(hidden)]
/// `marketgate::checkout!`: takes `count` floating units of `name`.
///
/// # Errors
/// [`Denied`] with [`DenialReason::Exhausted`] when the pool has not
/// `count` units free, [`DenialReason::Unavailable`] when License Manager
/// cannot be reached.
pub async fn checkout(name: &'static str, count: u64) -> Result<Units, Denied> {
    floating::checkout(name, count).await
}
