//! The simulator's shared state: the checked config, the clock, the faults
//! and everything that changes as calls arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::calls::CallRecord;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Subscription;
use crate::faults::Faults;
use crate::license_manager::state::Licensing;
use crate::metering::state::Metering;
use crate::timestamp;

/// Everything a request handler can reach.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) catalog: Catalog,
    pub(crate) clock: Clock,
    pub(crate) faults: Faults,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(catalog: Catalog) -> Self {
        let start = catalog.clock.start.unwrap_or_else(SystemTime::now);
        let clock = Clock::new(start, catalog.clock.frozen);
        let state = State::new(&catalog);
        Self {
            catalog,
            clock,
            faults: Faults::default(),
            state: Mutex::new(state),
        }
    }

    /// Locks the mutable state. Never held across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // Handlers validate before they mutate, so a panic mid-request leaves
        // at worst one half-recorded call; serving on beats refusing service.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What changes while the simulator runs.
#[derive(Debug)]
pub(crate) struct State {
    /// Subscription per product code; absent means never subscribed.
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    /// Tasks by access key id.
    pub(crate) tasks: BTreeMap<String, Task>,
    pub(crate) metering: Metering,
    pub(crate) licensing: Licensing,
    pub(crate) calls: Vec<CallRecord>,
    /// Counts the changes API calls made, so that a call can tell whether it
    /// stored anything ([`CallRecord::stored`]). Each handler bumps it where
    /// it changes state; clock-driven expiry and the inspection API do not.
    pub(crate) revision: u64,
}

impl State {
    /// The state before any call: the configured subscriptions and licenses.
    pub(crate) fn new(catalog: &Catalog) -> Self {
        Self {
            subscriptions: catalog.subscriptions.clone(),
            tasks: BTreeMap::new(),
            metering: Metering::default(),
            licensing: Licensing::new(&catalog.licenses),
            calls: Vec::new(),
            revision: 0,
        }
    }

    pub(crate) fn subscription(&self, product_code: &str) -> Subscription {
        self.subscriptions
            .get(product_code)
            .copied()
            .unwrap_or(Subscription::Never)
    }

    /// The task behind an access key id, starting it now if this is its
    /// first request.
    pub(crate) fn task(&mut self, access_key_id: &str, now: SystemTime) -> &mut Task {
        self.tasks
            .entry(access_key_id.to_owned())
            .or_insert_with(|| Task {
                started_at: now,
                registered: BTreeSet::new(),
            })
    }
}

/// An emulated ECS task or EKS pod, identified by its access key id.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// The simulated time of its first request (or as registered in-process).
    pub(crate) started_at: SystemTime,
    /// Product codes it has successfully called `RegisterUsage` for.
    pub(crate) registered: BTreeSet<String>,
}

/// A task as the inspection API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    /// The access key id that identifies it.
    pub access_key_id: String,
    /// When it started, simulated clock, epoch seconds.
    pub started_at: i64,
    /// Product codes it has registered with `RegisterUsage`.
    pub registered_products: Vec<String>,
}

impl TaskInfo {
    pub(crate) fn new(access_key_id: &str, task: &Task) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            started_at: timestamp::epoch_secs(task.started_at),
            registered_products: task.registered.iter().cloned().collect(),
        }
    }
}
