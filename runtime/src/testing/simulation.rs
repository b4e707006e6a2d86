//! The metering pipeline as the fault simulation drives it: one process
//! life at a time, each step called by the test, on the test's clocks,
//! file system and usage counters.
//!
//! This is the production pipeline (ledger, journal, recovery, sending with
//! the official SDK), not a model of it. What the background loop does on
//! its ticker, the test does by calling [`Process::tick`] and
//! [`Process::send`]; a crash is dropping the [`Process`] (every in-memory
//! state goes with it) and crashing its [`SimFs`]. Nothing here starts a
//! task or a timer, so the same seed replays the same run.
//!
//! Requires the `testing` and `dev` features (it points the SDK at any
//! endpoint): never in a binary you ship.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::TestingError;
use crate::aws::{Clients, Endpoint, clients};
use crate::catalog::{Catalog, MAX_DIMENSIONS};
use crate::license::{self, Driver, Lease, Monotonic, SharedLease, Turn};
pub use crate::metering::sim_fs::{FsFault, FsStats, SimFs};
use crate::metering::{Environment, Pipeline, Settings, UsageSource, run::send_all};
use crate::status::{LeaseState, MeteringStatus};
use crate::usage::Tags;

/// Makes this thread's tokens and jitter a fixed sequence from `seed`
/// (`None`: the system generator again).
pub fn seed_thread(seed: Option<u64>) {
    crate::random::seed_thread(seed);
}

/// One process's `#[metered]` counters: record from any thread.
#[derive(Debug)]
pub struct Usage {
    catalog: &'static Catalog,
    totals: [AtomicU64; MAX_DIMENSIONS],
    tagged: Mutex<HashMap<(usize, Tags), u64>>,
}

impl Usage {
    fn index(&self, dimension: &str) -> Result<usize, TestingError> {
        self.catalog
            .dimension_index(dimension)
            .ok_or_else(|| TestingError::UnknownDimension(dimension.to_owned()))
    }

    /// Records `units` of `dimension`, as a `#[metered]` call does.
    ///
    /// # Errors
    /// Unknown dimension.
    pub fn record(&self, dimension: &str, units: u64) -> Result<(), TestingError> {
        let index = self.index(dimension)?;
        self.totals[index].fetch_add(units, Ordering::Relaxed);
        Ok(())
    }

    /// Records `units` of `dimension` under cost-allocation `tags`.
    ///
    /// # Errors
    /// Unknown dimension.
    pub fn record_tagged(
        &self,
        dimension: &str,
        tags: &[(&str, &str)],
        units: u64,
    ) -> Result<(), TestingError> {
        let index = self.index(dimension)?;
        let mut tags: Tags = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tags.sort();
        *self
            .tagged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((index, tags))
            .or_default() += units;
        Ok(())
    }
}

impl UsageSource for Usage {
    fn totals(&self) -> [u64; MAX_DIMENSIONS] {
        std::array::from_fn(|i| self.totals[i].load(Ordering::Relaxed))
    }

    fn take_tagged(&self) -> Vec<((usize, Tags), u64)> {
        std::mem::take(&mut *self.tagged.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .collect()
    }
}

/// The wall clock and the monotonic clock of a simulated process.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;
/// Time on a monotonic clock since a fixed origin.
pub type MonotonicClock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// How to start a process life.
#[derive(Clone)]
pub struct ProcessConfig {
    /// The binary's catalog.
    pub catalog: &'static Catalog,
    /// The product (by name) the process runs as; it must meter.
    pub product: String,
    /// The simulator's endpoint.
    pub endpoint: String,
    /// The Region.
    pub region: String,
    /// Static credentials (the simulator's task identity).
    pub credentials: (String, String),
    /// The state directory, on `fs`.
    pub state_dir: PathBuf,
    /// The file system the journal lives on.
    pub fs: SimFs,
    /// The wall clock.
    pub clock: WallClock,
    /// The monotonic clock.
    pub monotonic: MonotonicClock,
    /// Each AWS call's timeout (real time).
    pub call_timeout: Duration,
}

impl ProcessConfig {
    /// The SDK clients, pointed at the simulator.
    async fn clients(&self) -> Result<Clients, String> {
        clients(
            &self.region,
            &Endpoint::Dev(self.endpoint.clone()),
            crate::aws::credentials::dev_static(
                self.credentials.0.clone(),
                self.credentials.1.clone(),
            ),
            self.call_timeout,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// One life of a process: its pipeline and counters. Dropping it is a
/// crash of everything in memory.
pub struct Process {
    pipeline: tokio::sync::Mutex<Pipeline>,
    usage: Arc<Usage>,
}

impl Process {
    /// Starts a life: opens (and recovers) the journal.
    ///
    /// # Errors
    /// Unknown product, a product that does not meter, or a Region with no
    /// endpoint.
    pub async fn start(config: &ProcessConfig) -> Result<Process, TestingError> {
        let product = config
            .catalog
            .product_by_name(&config.product)
            .filter(|p| p.dimension_mask() != 0)
            .ok_or_else(|| TestingError::UnknownProduct(config.product.clone()))?;
        let clients = config
            .clients()
            .await
            .map_err(|e| TestingError::UnknownProduct(format!("{}: {e}", config.product)))?;
        let usage = Arc::new(Usage {
            catalog: config.catalog,
            totals: std::array::from_fn(|_| AtomicU64::new(0)),
            tagged: Mutex::new(HashMap::new()),
        });
        let env = Environment {
            storage: Arc::new(config.fs.clone()),
            usage: usage.clone(),
            elapsed: config.monotonic.clone(),
        };
        let pipeline = Pipeline::new(
            config.catalog,
            product,
            clients,
            config.clock.clone(),
            Settings {
                state_dir: config.state_dir.clone(),
                flush_budget: Duration::from_secs(1),
                max_unreported: product.max_unreported(),
            },
            &[0; MAX_DIMENSIONS],
            env,
        );
        Ok(Process {
            pipeline: tokio::sync::Mutex::new(pipeline),
            usage,
        })
    }

    /// The process's counters, to record usage from any thread.
    #[must_use]
    pub fn usage(&self) -> Arc<Usage> {
        self.usage.clone()
    }

    /// What the background loop does on each tick: checkpoint the counters
    /// into the journal, close ended hours into records, compact.
    pub async fn tick(&self) {
        self.pipeline.lock().await.tick();
    }

    /// What a flush does before sending: checkpoint, and close every hour
    /// including the open one.
    pub async fn close_all(&self) {
        self.pipeline.lock().await.close_all();
    }

    /// One round of sending, as the background loop starts it: every
    /// pending record in turn until one fails. `Err` says why it stopped.
    ///
    /// # Errors
    /// Why sending stopped (AWS failed, or the journal is stale).
    pub async fn send(&self) -> Result<(), String> {
        send_all(&self.pipeline)
            .await
            .map_err(|stop| format!("{stop:?}"))
    }

    /// What `status()` would show now.
    pub async fn status(&self) -> MeteringStatus {
        self.pipeline.lock().await.status()
    }
}

/// The license lease as a contract product's process holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Where the lease stands.
    pub state: LeaseState,
    /// The entitlements the held consumption grants (none once lapsed).
    pub granted: Vec<String>,
    /// When features go off unless the consumption is extended.
    pub deadline: Option<SystemTime>,
}

/// One life of a contract product's process: its license lease, driven
/// turn by turn on the test's clock. Dropping it is a crash: the
/// consumption is left for AWS to expire.
pub struct LeaseProcess {
    driver: Driver,
    lease: SharedLease,
    wall: WallClock,
}

impl LeaseProcess {
    /// Starts a life: checks a license out as start-up does (`Err` is
    /// AWS's refusal or failure: the process would not start).
    ///
    /// # Errors
    /// The checkout failed; an unknown or non-contract product.
    pub async fn start(config: &ProcessConfig) -> Result<LeaseProcess, String> {
        let product = config
            .catalog
            .product_by_name(&config.product)
            .filter(|p| p.license().is_some())
            .ok_or_else(|| format!("no contract product named `{}`", config.product))?;
        let spec = product.license().ok_or("not a contract product")?;
        let clients = config.clients().await?;
        let clock = Monotonic::follow(config.clock.clone());
        let sent = license::Sent {
            at: clock.now(),
            wall: (config.clock)(),
        };
        let grant = license::checkout(&clients, spec, &crate::random::random_hex(32))
            .await
            .map_err(|failure| failure.to_string())?;
        let policy = license::policy(license::LICENSE_EXTEND, license::LICENSE_CHECK);
        let lease: SharedLease = Arc::new(Mutex::new(Lease::new(policy, grant, sent)));
        Ok(LeaseProcess {
            driver: Driver {
                catalog: config.catalog,
                product,
                clients,
                clock,
                wall: config.clock.clone(),
                lease: lease.clone(),
                on_license: None,
            },
            lease,
            wall: config.clock.clone(),
        })
    }

    /// Does everything the lease has due at the current time (calls to
    /// License Manager, revocation at the deadline), at most 64 turns.
    pub async fn run_due(&self) {
        for _ in 0..64 {
            match self.driver.turn().await {
                Turn::Acted => {}
                Turn::Wait(_) | Turn::Done => return,
            }
        }
    }

    /// The lease now.
    #[must_use]
    pub fn view(&self) -> Option<LeaseView> {
        let lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
        let view = lease.view(self.driver.clock.now())?;
        Some(LeaseView {
            state: view.state,
            granted: lease.allowed().to_vec(),
            deadline: view.deadline_in.map(|left| (self.wall)() + left),
        })
    }

    /// Shutdown: checks the consumption in (retrying within `budget`).
    pub async fn shut_down(self, budget: Duration) {
        license::check_in(
            self.driver.catalog,
            self.driver.product,
            &self.driver.clients,
            &self.lease,
            budget,
        )
        .await;
    }
}
