//! How the runtime starts and runs: [`Options`], and the deployment
//! settings [`Options::from_env`] reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aws::Endpoint;
use crate::aws::retry::Backoff;
use crate::license;
use crate::time::Clock;

/// The deployment setting that picks the product (Helm value, task
/// definition environment).
pub const PRODUCT_CODE_ENV: &str = "MARKETGATE_PRODUCT_CODE";
/// Start-up retry budget in seconds (default 1800, AWS's 30 minutes).
pub const STARTUP_TIMEOUT_ENV: &str = "MARKETGATE_STARTUP_TIMEOUT_SECS";
/// Seconds `main` gets to return after SIGTERM/SIGINT before the process
/// exits (default 10). With the report before it and the flush and check-in
/// after it, see [`Options::max_exit_after_signal`] for the stop timeout a
/// task needs.
pub const SIGNAL_GRACE_ENV: &str = "MARKETGATE_SIGNAL_GRACE_SECS";
/// The longest signal grace [`SIGNAL_GRACE_ENV`] can set. Usage recorded
/// after a signal goes into the next hour's report, which a container that
/// is being replaced may never make: the deployment cannot stretch that.
pub const MAX_SIGNAL_GRACE_FROM_ENV: Duration = Duration::from_secs(30);
/// Shortens (never lengthens) the product's `max-unreported` bound, in
/// seconds.
pub const MAX_UNREPORTED_ENV: &str = "MARKETGATE_MAX_UNREPORTED_SECS";

/// How long a contract product's start-up waits for a license seat when
/// every unit is in use, in seconds (default 300, at most 3900).
pub const SEAT_WAIT_ENV: &str = "MARKETGATE_SEAT_WAIT_SECS";
/// The longest [`SEAT_WAIT_ENV`] can set: a seat held by a task that was
/// killed without checking in comes back within AWS's 60 minutes.
pub const MAX_SEAT_WAIT: Duration = Duration::from_mins(65);

/// Checkpoint interval in milliseconds; only shorter than the 10 s default
/// is accepted (a longer one would let a buyer lose more usage to a kill).
pub const CHECKPOINT_INTERVAL_ENV: &str = "MARKETGATE_CHECKPOINT_INTERVAL_MS";
/// Directory of the metering journal (default [`DEFAULT_STATE_DIR`]).
pub const STATE_DIR_ENV: &str = "MARKETGATE_STATE_DIR";
/// Where the metering journal lives unless [`STATE_DIR_ENV`] says otherwise:
/// mount a volume here in a container with a read-only root file system.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/marketgate";

/// The signal grace the deployment asked for, at most
/// [`MAX_SIGNAL_GRACE_FROM_ENV`].
fn grace_from_env(grace: Duration) -> Duration {
    if grace > MAX_SIGNAL_GRACE_FROM_ENV {
        tracing::warn!(
            target: "marketgate",
            ?grace,
            max = ?MAX_SIGNAL_GRACE_FROM_ENV,
            "{SIGNAL_GRACE_ENV} is longer than allowed; using the maximum"
        );
    }
    grace.min(MAX_SIGNAL_GRACE_FROM_ENV)
}

fn env_secs(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// How the runtime starts and runs. [`Options::from_env`] is what
/// `#[marketgate::main]` uses.
#[derive(Clone)]
pub struct Options {
    pub(super) product_code: Option<String>,
    pub(super) startup_timeout: Duration,
    pub(super) call_timeout: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) handle_signals: bool,
    pub(super) signal_grace: Duration,
    pub(super) license_check: Duration,
    pub(super) license_extend: Duration,
    pub(super) endpoint: Endpoint,
    pub(super) state_dir: PathBuf,
    pub(super) checkpoint_every: Duration,
    pub(super) flush_budget: Duration,
    pub(super) max_unreported: Option<Duration>,
    pub(super) clock: Clock,
    /// Whether `clock` was replaced (`dev` builds): the lease then follows it.
    pub(super) clock_replaced: bool,
    pub(super) seat_wait: Duration,
    /// Development overrides (`dev` builds only): Region and static credentials.
    pub(super) dev_region: Option<String>,
    pub(super) dev_credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("product_code", &self.product_code)
            .field("startup_timeout", &self.startup_timeout)
            .field("endpoint", &self.endpoint)
            .field("state_dir", &self.state_dir)
            .field("checkpoint_every", &self.checkpoint_every)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            product_code: None,
            startup_timeout: Duration::from_mins(30),
            call_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(20),
            handle_signals: true,
            signal_grace: Duration::from_secs(10),
            license_check: license::LICENSE_CHECK,
            license_extend: license::LICENSE_EXTEND,
            endpoint: Endpoint::Aws,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            checkpoint_every: Duration::from_secs(10),
            flush_budget: Duration::from_secs(10),
            max_unreported: None,
            clock: Arc::new(SystemTime::now),
            clock_replaced: false,
            seat_wait: Duration::from_mins(5),
            dev_region: None,
            dev_credentials: None,
        }
    }
}

impl Options {
    /// Defaults plus the deployment's environment: [`PRODUCT_CODE_ENV`],
    /// [`STARTUP_TIMEOUT_ENV`], [`SIGNAL_GRACE_ENV`], and (`dev` builds
    /// only) `MARKETGATE_ENDPOINT`. None of them can widen what the process
    /// is entitled to.
    #[must_use]
    pub fn from_env() -> Self {
        let mut options = Options {
            product_code: std::env::var(PRODUCT_CODE_ENV)
                .ok()
                .filter(|c| !c.trim().is_empty()),
            ..Options::default()
        };
        if let Some(timeout) = env_secs(STARTUP_TIMEOUT_ENV) {
            options.startup_timeout = timeout;
        }
        if let Some(grace) = env_secs(SIGNAL_GRACE_ENV) {
            options.signal_grace = grace_from_env(grace);
        }
        if let Some(wait) = env_secs(SEAT_WAIT_ENV) {
            options = options.seat_wait(wait);
        }
        if let Some(bound) = env_secs(MAX_UNREPORTED_ENV) {
            options = options.max_unreported(bound);
        }
        if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            options.state_dir = PathBuf::from(dir);
        }
        if let Some(ms) = std::env::var(CHECKPOINT_INTERVAL_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            options = options.checkpoint_interval(Duration::from_millis(ms));
        }
        #[cfg(feature = "dev")]
        if let Some(url) = std::env::var(crate::aws::DEV_ENDPOINT)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            options.endpoint = Endpoint::Dev(url);
        }
        options
    }

    /// Selects the product by its AWS product code.
    #[must_use]
    pub fn product_code(mut self, code: impl Into<String>) -> Self {
        self.product_code = Some(code.into());
        self
    }

    /// How long start-up retries throttling and server faults (default 30
    /// minutes, AWS's guidance).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Timeout of each AWS call attempt (default 5 s).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long shutdown after `main` returns may take (default 20 s).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether SIGTERM and SIGINT trigger the shutdown work (default on).
    #[must_use]
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }

    /// How long `main` gets to return after SIGTERM or SIGINT before the
    /// runtime reports the usage and ends the process (default 10 s,
    /// [`SIGNAL_GRACE_ENV`]).
    #[must_use]
    pub fn signal_grace(mut self, grace: Duration) -> Self {
        self.signal_grace = grace;
        self
    }

    /// Interval of license re-checks (default 15 minutes, at most a day).
    #[must_use]
    pub fn license_check_interval(mut self, interval: Duration) -> Self {
        self.license_check = interval.clamp(Duration::from_millis(10), Duration::from_hours(24));
        self
    }

    /// How long a contract product's start-up waits for a license seat when
    /// every unit of a counted entitlement is in use (default 5 minutes, at
    /// most [`MAX_SEAT_WAIT`]; [`SEAT_WAIT_ENV`]). In a rolling deployment
    /// the task being replaced returns its seat when it checks in on SIGTERM.
    #[must_use]
    pub fn seat_wait(mut self, wait: Duration) -> Self {
        self.seat_wait = wait.min(MAX_SEAT_WAIT);
        self
    }

    /// Makes license consumption extensions at least this frequent. They
    /// happen at half the time left before the lease's deadline (27.5
    /// minutes after a 60-minute checkout), so only an interval shorter than
    /// that changes anything; nothing can make them rarer (default 30
    /// minutes, at most 45).
    #[must_use]
    pub fn license_extend_interval(mut self, interval: Duration) -> Self {
        self.license_extend =
            interval.clamp(Duration::from_millis(10), license::LICENSE_EXTEND_MAX);
        self
    }

    /// Directory of the metering journal (default: [`STATE_DIR_ENV`], else
    /// [`DEFAULT_STATE_DIR`]).
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// How often recorded usage is written to the journal (default and
    /// maximum 10 s: a `SIGKILL` loses at most this much usage).
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_every = interval.clamp(Duration::from_millis(10), Duration::from_secs(10));
        self
    }

    /// How long the final flush may try to report usage (default 10 s).
    #[must_use]
    pub fn flush_budget(mut self, budget: Duration) -> Self {
        self.flush_budget = budget;
        self
    }

    /// Denies `#[metered]` calls sooner than the product's `max-unreported`
    /// bound when usage waits for a report: the shorter of the two applies
    /// (nothing can lengthen the seller's bound). Also
    /// `MARKETGATE_MAX_UNREPORTED_SECS`.
    #[must_use]
    pub fn max_unreported(mut self, bound: Duration) -> Self {
        self.max_unreported = Some(self.max_unreported.map_or(bound, |b| b.min(bound)));
        self
    }

    /// The longest the runtime can take from SIGTERM or SIGINT to the end
    /// of the process: the report of all usage so far (one flush budget),
    /// then `main`'s grace, then the final flush and the license check-in
    /// at once (the check-in retries for one flush budget, and its last try
    /// may take one call timeout): 35 s with the defaults. Give the task
    /// more than this to stop (ECS `stopTimeout`, Kubernetes
    /// `terminationGracePeriodSeconds`), or the last report can be cut off
    /// by SIGKILL.
    #[must_use]
    pub fn max_exit_after_signal(&self) -> Duration {
        self.flush_budget + self.call_timeout + self.signal_grace + self.flush_budget
    }

    /// Replaces the wall clock that decides hours (`dev` builds only: tests
    /// follow the simulator's clock, so hours pass instantly).
    #[cfg(feature = "dev")]
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self.clock_replaced = true;
        self
    }

    /// Sends both services to `url` (the simulator). Only builds with the
    /// `dev` feature have this; release builds cannot be redirected.
    #[cfg(feature = "dev")]
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Endpoint::Dev(url.into());
        self
    }

    /// Uses this Region instead of discovering it (`dev` builds only).
    #[cfg(feature = "dev")]
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.dev_region = Some(region.into());
        self
    }

    /// Signs with these static credentials instead of the default chain
    /// (`dev` builds only; the simulator identifies a task by its access key).
    #[cfg(feature = "dev")]
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.dev_credentials = Some((access_key_id.into(), secret.into()));
        self
    }

    /// The lease's clock: monotonic, or (`dev`) following a replaced clock.
    pub(super) fn lease_clock(&self) -> license::Monotonic {
        if self.clock_replaced {
            license::Monotonic::follow(self.clock.clone())
        } else {
            license::Monotonic::tokio()
        }
    }

    pub(super) fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            budget: self.startup_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_can_shorten_but_never_lengthen_metering_deadlines() {
        assert_eq!(
            grace_from_env(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            grace_from_env(Duration::from_hours(1)),
            MAX_SIGNAL_GRACE_FROM_ENV
        );
        let options = Options::default()
            .max_unreported(Duration::from_mins(40))
            .max_unreported(Duration::from_hours(9));
        assert_eq!(options.max_unreported, Some(Duration::from_mins(40)));
        let options = Options::default().checkpoint_interval(Duration::from_mins(5));
        assert_eq!(options.checkpoint_every, Duration::from_secs(10));
    }
}
