//! Start-up and shutdown: what `#[marketgate::main]` wraps around `main`,
//! and the explicit [`start`] / [`Guard`] API for programs that cannot use
//! the attribute.
//!
//! The runtime's AWS work runs on a dedicated thread with its own
//! current-thread tokio runtime, so it works the same under a sync `main`,
//! under any async runtime, and never competes with the application's
//! executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::aws::{self, AwsFailure, Endpoint};
use crate::catalog::{Catalog, Product};
use crate::entitlement::{self, InstallError};
use crate::license;
use crate::metering::{self, Clock, Pipeline};
use crate::region::{RegionError, RegionSource, RegionSources};
use crate::retry::Backoff;
use crate::signature::SignatureError;
use crate::status::{self, ProductStatus, RegionStatus, RunState};
use crate::transport::endpoints::EndpointError;
use crate::verify::{self, Consumption};

/// The deployment setting that picks the product (Helm value, task
/// definition environment).
pub const PRODUCT_CODE_ENV: &str = "MARKETGATE_PRODUCT_CODE";
/// Start-up retry budget in seconds (default 1800, AWS's 30 minutes).
pub const STARTUP_TIMEOUT_ENV: &str = "MARKETGATE_STARTUP_TIMEOUT_SECS";
/// Seconds `main` gets to return after SIGTERM/SIGINT before the process
/// exits (default 10). With the check-in before it and the flush after it,
/// see [`Options::max_exit_after_signal`] for the stop timeout a task needs.
pub const SIGNAL_GRACE_ENV: &str = "MARKETGATE_SIGNAL_GRACE_SECS";

/// Checkpoint interval in milliseconds; only shorter than the 10 s default
/// is accepted (a longer one would let a buyer lose more usage to a kill).
pub const CHECKPOINT_INTERVAL_ENV: &str = "MARKETGATE_CHECKPOINT_INTERVAL_MS";
/// Directory of the metering journal (default [`DEFAULT_STATE_DIR`]).
pub const STATE_DIR_ENV: &str = "MARKETGATE_STATE_DIR";
/// Where the metering journal lives unless [`STATE_DIR_ENV`] says otherwise:
/// mount a volume here in a container with a read-only root file system.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/marketgate";

fn env_secs(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Why the process may not start. Every message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Call sites disagree with the catalog (or another catalog is installed).
    #[error(transparent)]
    Catalog(#[from] InstallError),
    /// `start` was called while the runtime is already running.
    #[error("marketgate is already started in this process; start it once (or shut down first)")]
    AlreadyStarted,
    /// Several products are trusted and none was selected.
    #[error(
        "{PRODUCT_CODE_ENV} is not set and this binary trusts several products: {trusted}; \
         set it to the product code of the listing this container runs under"
    )]
    NoProductSelected {
        /// The trusted products.
        trusted: String,
    },
    /// The selected product code is not one the binary trusts.
    #[error(
        "{PRODUCT_CODE_ENV}=`{code}` is not a product this binary trusts; trusted products: \
         {trusted}"
    )]
    UnknownProduct {
        /// The code given.
        code: String,
        /// The trusted products.
        trusted: String,
    },
    /// No Region could be determined.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The Region cannot be turned into AWS endpoints.
    #[error("{error} (the Region came from {region_source})")]
    Endpoint {
        /// What is wrong with it.
        error: EndpointError,
        /// Where it came from.
        region_source: RegionSource,
    },
    /// Whatever answered at AWS's address is not AWS.
    #[error(
        "{0}. Something between this task and AWS is impersonating it: an intercepting (TLS \
         inspecting) proxy named by HTTPS_PROXY or ALL_PROXY, a custom certificate authority, or \
         a DNS or /etc/hosts override of the AWS host name. Remove it, or let the proxy tunnel \
         the connection (CONNECT) without inspecting it"
    )]
    UntrustedPeer(AwsFailure),
    /// The AWS credentials chain found nothing.
    #[error(
        "no AWS credentials ({0}): give the ECS task a task role, or the EKS pod an IAM role \
         through IRSA, with the AWS Marketplace policy for its pricing model \
         (AWSMarketplaceMeteringRegisterUsage, AWSMarketplaceMeteringFullAccess or \
         AWSLicenseManagerConsumptionPolicy)"
    )]
    Credentials(AwsFailure),
    /// AWS says this is not ECS, EKS or Fargate.
    #[error(
        "not running on Amazon ECS, Amazon EKS or AWS Fargate with task-role or IRSA \
         credentials ({0}); AWS Marketplace answers only there. For local runs use the \
         simulator: start `marketgate-sim` and run a build with the `dev` feature and \
         MARKETGATE_ENDPOINT set to it"
    )]
    NotOnAws(AwsFailure),
    /// The Region called is not the task's.
    #[error(
        "AWS Marketplace was called in {region} (from {region_source}) but this task runs in \
         another Region ({failure}); never hard-code the Region: on ECS AWS_REGION is set for \
         you, on EKS set it in the pod spec"
    )]
    RegionMismatch {
        /// The Region used.
        region: String,
        /// Where it came from.
        region_source: RegionSource,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The buyer is not subscribed.
    #[error(
        "the buyer's AWS account is not subscribed to product `{product}` ({failure}); \
         subscribe in AWS Marketplace, or deploy with the product code they subscribed to"
    )]
    NotSubscribed {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS does not know the product code.
    #[error(
        "AWS does not recognise code `{code}` of product `{product}` ({failure}); check \
         Marketplace.toml against the AWS Marketplace Management Portal"
    )]
    InvalidProductCode {
        /// Product name.
        product: &'static str,
        /// Its code.
        code: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS rejected the public key version.
    #[error(
        "AWS rejected public key version {version} of product `{product}` ({failure}); put the \
         current key and version from the AWS Marketplace Management Portal in Marketplace.toml"
    )]
    InvalidPublicKeyVersion {
        /// Product name.
        product: &'static str,
        /// The version sent.
        version: u32,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS rejected a metering dimension.
    #[error(
        "AWS rejected a metering dimension of product `{product}` ({failure}); the manifest's \
         dimensions must be the listing's dimension API names"
    )]
    InvalidDimension {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The license allows none of the requested entitlements.
    #[error(
        "the buyer's license for product `{product}` allows none of the requested \
         entitlements ({failure}): the contract expired or was suspended, or every seat is in \
         use"
    )]
    NotLicensed {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The RegisterUsage signature failed verification.
    #[error("start-up verification of product `{product}` failed: {source}")]
    Signature {
        /// Product name.
        product: &'static str,
        /// What was wrong.
        source: SignatureError,
    },
    /// Transient failures until the start-up budget ran out.
    #[error(
        "AWS did not answer successfully within the start-up budget ({elapsed:?}, {attempts} \
         attempts); last failure: {last}. Check that the task can reach AWS endpoints \
         (the budget is {STARTUP_TIMEOUT_ENV})"
    )]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        last: AwsFailure,
    },
    /// Any other refusal from AWS.
    #[error("AWS refused start-up verification: {0}")]
    Aws(AwsFailure),
    /// The runtime's background thread could not run.
    #[error("marketgate's background thread failed: {0}")]
    Runtime(String),
}

/// How the runtime starts and runs. [`Options::from_env`] is what
/// `#[marketgate::main]` uses.
#[derive(Clone)]
pub struct Options {
    product_code: Option<String>,
    startup_timeout: Duration,
    call_timeout: Duration,
    shutdown_timeout: Duration,
    handle_signals: bool,
    signal_grace: Duration,
    license_check: Duration,
    license_extend: Duration,
    endpoint: Endpoint,
    state_dir: PathBuf,
    checkpoint_every: Duration,
    flush_budget: Duration,
    clock: Clock,
    /// Development overrides (`dev` builds only): Region and static credentials.
    dev_region: Option<String>,
    dev_credentials: Option<(String, String)>,
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
            license_check: verify::LICENSE_CHECK,
            license_extend: verify::LICENSE_EXTEND,
            endpoint: Endpoint::Aws,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            checkpoint_every: Duration::from_secs(10),
            flush_budget: Duration::from_secs(10),
            clock: Arc::new(SystemTime::now),
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
            options.signal_grace = grace;
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
        if let Some(url) = std::env::var(aws::DEV_ENDPOINT)
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
    /// After it, the process exits once `grace` has passed unless `main`
    /// returned first.
    #[must_use]
    pub fn handle_signals(mut self, handle: bool, grace: Duration) -> Self {
        self.handle_signals = handle;
        self.signal_grace = grace;
        self
    }

    /// Interval of license re-checks (default 15 minutes).
    #[must_use]
    pub fn license_check_interval(mut self, interval: Duration) -> Self {
        self.license_check = interval.max(Duration::from_millis(10));
        self
    }

    /// Interval of license consumption extensions (default 30 minutes; at
    /// most 45 so a consumption never lapses while the process runs).
    #[must_use]
    pub fn license_extend_interval(mut self, interval: Duration) -> Self {
        self.license_extend = interval.clamp(Duration::from_millis(10), verify::LICENSE_EXTEND_MAX);
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

    /// The longest the runtime can take from SIGTERM or SIGINT to the end
    /// of the process: the license check-in (one call attempt), `main`'s
    /// grace, then the final flush (25 s with the defaults). Give the task
    /// more than this to stop (ECS `stopTimeout`, Kubernetes
    /// `terminationGracePeriodSeconds`), or the last report can be cut off
    /// by SIGKILL.
    #[must_use]
    pub fn max_exit_after_signal(&self) -> Duration {
        self.call_timeout + self.signal_grace + self.flush_budget
    }

    /// Replaces the wall clock that decides hours (`dev` builds only: tests
    /// follow the simulator's clock, so hours pass instantly).
    #[cfg(feature = "dev")]
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
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

    fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            budget: self.startup_timeout,
        }
    }
}

enum Command {
    Shutdown(oneshot::Sender<()>),
}

enum Reply {
    Blocking(std::sync::mpsc::Sender<Result<(), StartError>>),
    Async(oneshot::Sender<Result<(), StartError>>),
}

impl Reply {
    fn send(self, result: Result<(), StartError>) {
        match self {
            Reply::Blocking(tx) => drop(tx.send(result)),
            Reply::Async(tx) => drop(tx.send(result)),
        }
    }
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Keeps the runtime's background work alive; shut it down when the
/// program ends (`#[marketgate::main]` does).
#[derive(Debug)]
#[must_use = "dropping the guard skips the final flush and license check-in"]
pub struct Guard {
    catalog: &'static Catalog,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

impl Guard {
    /// The catalog this process runs under.
    #[must_use]
    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    fn request_shutdown(&self) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Shutdown(tx)).ok().map(|()| rx)
    }

    fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn shutdown_in_place(&mut self) {
        if self.thread.is_none() {
            return;
        }
        if let Some(rx) = self.request_shutdown() {
            let timeout = self.shutdown_timeout;
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done_tx.send(rx.blocking_recv());
            });
            if done_rx.recv_timeout(timeout).is_err() {
                tracing::error!(target: "marketgate", ?timeout, "shutdown did not finish in time");
                self.thread = None;
                return;
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Checks licenses in and flushes usage, within the shutdown timeout.
    pub fn shutdown_blocking(mut self) {
        self.shutdown_in_place();
    }

    /// Async form of [`Guard::shutdown_blocking`].
    pub async fn shutdown(mut self) {
        if let Some(rx) = self.request_shutdown()
            && tokio::time::timeout(self.shutdown_timeout, rx)
                .await
                .is_err()
        {
            tracing::error!(target: "marketgate", "shutdown did not finish in time");
            // Leave the thread; dropping the guard must not wait for it again.
            self.thread = None;
            return;
        }
        // The thread has replied and is exiting; joining is immediate.
        self.finish();
    }
}

/// A guard dropped without `shutdown` (a panic unwinding out of `main`, an
/// early `return` of the explicit API) still flushes and checks in.
impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown_in_place();
    }
}

fn trusted_list(catalog: &Catalog) -> String {
    catalog
        .products()
        .iter()
        .map(|p| format!("{} ({}, {} {})", p.name(), p.code(), p.tier(), p.pricing()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the product to verify: the configured code if trusted, or the only
/// product (DESIGN §3).
fn select(catalog: &'static Catalog, code: Option<&str>) -> Result<&'static Product, StartError> {
    match code {
        Some(code) => {
            catalog
                .product_by_code(code.trim())
                .ok_or_else(|| StartError::UnknownProduct {
                    code: code.to_owned(),
                    trusted: trusted_list(catalog),
                })
        }
        None => match catalog.products() {
            [only] => Ok(only),
            _ => Err(StartError::NoProductSelected {
                trusted: trusted_list(catalog),
            }),
        },
    }
}

fn launch(catalog: &'static Catalog, options: Options, reply: Reply) -> Result<Guard, StartError> {
    if STARTED.swap(true, Ordering::AcqRel) {
        return Err(StartError::AlreadyStarted);
    }
    let prepared = entitlement::install(catalog)
        .map_err(StartError::from)
        .and_then(|()| select(catalog, options.product_code.as_deref()));
    let product = match prepared {
        Ok(product) => product,
        Err(e) => {
            STARTED.store(false, Ordering::Release);
            return Err(e);
        }
    };
    status::reset();
    status::set_state(RunState::Starting);
    status::set_product(ProductStatus {
        name: product.name(),
        code: product.code(),
        tier: product.tier(),
        pricing: product.pricing(),
    });
    announce_development_build();
    let (commands, receiver) = mpsc::unbounded_channel();
    let shutdown_timeout = options.shutdown_timeout;
    let thread = std::thread::Builder::new()
        .name("marketgate".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    STARTED.store(false, Ordering::Release);
                    reply.send(Err(StartError::Runtime(e.to_string())));
                    return;
                }
            };
            runtime.block_on(run(catalog, product, options, reply, receiver));
        })
        .map_err(|e| {
            STARTED.store(false, Ordering::Release);
            StartError::Runtime(e.to_string())
        })?;
    Ok(Guard {
        catalog,
        commands,
        thread: Some(thread),
        shutdown_timeout,
    })
}

/// Says loudly, at every start, that this is not a build to ship: the
/// features it was compiled with and what they allow. `status()` carries the
/// same flags (`dev_build`, `testing_build`).
fn announce_development_build() {
    #[cfg(feature = "dev")]
    tracing::warn!(
        target: "marketgate",
        feature = "dev",
        "built with marketgate's `dev` feature: MARKETGATE_ENDPOINT (or Options::endpoint) can \
         send every AWS call to another endpoint, trusting the system's certificate \
         authorities, and the Region, credentials and clock can be overridden; never ship this \
         build (build the image with --no-default-features)"
    );
    #[cfg(feature = "testing")]
    tracing::warn!(
        target: "marketgate",
        feature = "testing",
        "built with marketgate's `testing` feature: code in this process can grant entitlements \
         without AWS (marketgate::testing); never ship this build"
    );
}

/// Region, clients and the pricing model's verification.
async fn verify_product(
    catalog: &'static Catalog,
    product: &'static Product,
    options: &Options,
) -> Result<(aws::Clients, verify::Verified), StartError> {
    let region = match &options.dev_region {
        Some(region) => crate::region::DiscoveredRegion {
            region: region.clone(),
            source: RegionSource::Configured,
        },
        None => RegionSources::from_env().discover().await?,
    };
    status::set_region(RegionStatus {
        name: region.region.clone(),
        source: region.source,
    });
    tracing::info!(
        target: "marketgate",
        region = %region.region,
        source = %region.source,
        product = product.name(),
        pricing = %product.pricing(),
        "verifying AWS Marketplace entitlement"
    );
    let clients = aws::clients(
        &region.region,
        &options.endpoint,
        options.dev_credentials.clone(),
        options.call_timeout,
    )
    .await
    .map_err(|error| StartError::Endpoint {
        error,
        region_source: region.source,
    })?;
    let cx = verify::Context {
        catalog,
        product,
        region: &region,
        clients: &clients,
        backoff: options.backoff(),
        clock: &options.clock,
    };
    let verified = verify::verify(&cx).await?;
    Ok((clients, verified))
}

/// The background thread: verify, then serve until shutdown.
async fn run(
    catalog: &'static Catalog,
    product: &'static Product,
    options: Options,
    reply: Reply,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    aws::report_ignored_overrides(&options.endpoint);
    #[cfg(feature = "dev")]
    let options = follow_simulator_clock(options).await;
    let (clients, verified) = match verify_product(catalog, product, &options).await {
        Ok(v) => v,
        Err(e) => {
            status::set_refusal(e.to_string());
            STARTED.store(false, Ordering::Release);
            reply.send(Err(e));
            return;
        }
    };
    // Counted from here on: what the counters already hold was recorded
    // before this run's metering existed (an earlier run in this process).
    let baseline = crate::counters::totals();
    entitlement::activate(catalog, product, verified.granted);
    status::set_state(RunState::Running);
    tracing::info!(
        target: "marketgate",
        product = product.name(),
        features = ?catalog.feature_names(entitlement::granted()).collect::<Vec<_>>(),
        "entitlement verified"
    );
    let maintenance = verified.consumption.clone().map(|consumption| {
        tokio::spawn(license::maintain(
            catalog,
            product,
            clients.clone(),
            consumption,
            license::Schedule {
                extend_every: options.license_extend,
                check_every: options.license_check,
            },
        ))
    });
    // Metered dimensions exist only for custom pricing (a paid product).
    let metering = (product.dimension_mask() != 0).then(|| {
        let pipeline = Arc::new(tokio::sync::Mutex::new(Pipeline::new(
            catalog,
            product,
            clients.clone(),
            options.clock.clone(),
            metering::Settings {
                state_dir: options.state_dir.clone(),
                flush_budget: options.flush_budget,
            },
            &baseline,
        )));
        let ticker = tokio::spawn(metering::run(pipeline.clone(), options.checkpoint_every));
        (pipeline, ticker)
    });
    reply.send(Ok(()));
    let work = ShutdownWork {
        clients,
        consumption: verified.consumption,
        maintenance,
        metering,
        checkpoint_every: options.checkpoint_every,
        checked_in: false,
        flushed: false,
    };
    serve(work, commands, &options).await;
}

/// `dev` builds: with `MARKETGATE_DEV_CLOCK=simulator`, hours follow the
/// simulator's clock instead of the local one.
#[cfg(feature = "dev")]
async fn follow_simulator_clock(mut options: Options) -> Options {
    let wanted = std::env::var(crate::dev_clock::DEV_CLOCK_ENV).is_ok_and(|v| v == "simulator");
    if let (true, Endpoint::Dev(url)) = (wanted, &options.endpoint) {
        match crate::dev_clock::follow(url).await {
            Some(clock) => options.clock = clock,
            None => tracing::warn!(target: "marketgate", "cannot read the simulator's clock"),
        }
    }
    options
}

/// Ends the runtime: no grants, stopped, startable again.
fn stopped(command: Option<Command>) {
    entitlement::revoke_all();
    status::set_state(RunState::Stopped);
    STARTED.store(false, Ordering::Release);
    if let Some(Command::Shutdown(done)) = command {
        let _ = done.send(());
    }
}

/// Waits for the guard's shutdown or a signal.
async fn serve(
    mut work: ShutdownWork,
    mut commands: mpsc::UnboundedReceiver<Command>,
    options: &Options,
) {
    tokio::select! {
        command = commands.recv() => {
            work.run().await;
            stopped(command);
        }
        signo = wait_for_signal(options.handle_signals) => {
            tracing::info!(target: "marketgate", signal = signo, "signal received: checkpointing and checking in");
            // At once: usage on disk, the seat returned. The usage report
            // itself waits until main returns (or the grace ends), so units
            // the program records while it winds down are in it too.
            work.on_signal().await;
            let grace = options.signal_grace;
            tokio::select! {
                command = commands.recv() => {
                    work.run().await;
                    stopped(command);
                }
                () = tokio::time::sleep(grace) => {
                    tracing::warn!(target: "marketgate", ?grace, "main did not return after the signal; flushing and exiting");
                    work.run().await;
                    std::process::exit(128 + signo);
                }
            }
        }
    }
}

/// What must happen before the process ends.
struct ShutdownWork {
    clients: aws::Clients,
    consumption: Option<Consumption>,
    maintenance: Option<tokio::task::JoinHandle<()>>,
    /// The pipeline and its background task (reporting, or after a signal
    /// checkpointing only).
    metering: Option<(
        Arc<tokio::sync::Mutex<Pipeline>>,
        tokio::task::JoinHandle<()>,
    )>,
    checkpoint_every: Duration,
    checked_in: bool,
    flushed: bool,
}

impl ShutdownWork {
    async fn check_in(&mut self) {
        if std::mem::replace(&mut self.checked_in, true) {
            return;
        }
        if let Some(task) = self.maintenance.take() {
            task.abort();
        }
        if let Some(consumption) = self.consumption.take() {
            license::check_in(&self.clients, &consumption).await;
        }
    }

    /// Signal received: usage to the journal now, licenses back now. Until
    /// the final flush, usage keeps being checkpointed but not sent (a send
    /// in flight would delay the exit; an aborted one stays in doubt).
    async fn on_signal(&mut self) {
        status::set_state(RunState::ShuttingDown);
        if let Some((pipeline, task)) = &mut self.metering {
            task.abort();
            let _ = pipeline.lock().await.tick(false).await;
            *task = tokio::spawn(metering::checkpoint_only(
                pipeline.clone(),
                self.checkpoint_every,
            ));
        }
        self.check_in().await;
    }

    /// The end: stop metering, report all usage, the open hour included,
    /// and check in.
    async fn run(&mut self) {
        status::set_state(RunState::ShuttingDown);
        if !std::mem::replace(&mut self.flushed, true)
            && let Some((pipeline, task)) = &self.metering
        {
            // Calls from here on are denied rather than counted into a
            // report that has already gone.
            entitlement::stop_metering();
            task.abort();
            pipeline.lock().await.flush().await;
        }
        self.check_in().await;
    }
}

/// Resolves with the signal number on SIGTERM or SIGINT; never if disabled.
async fn wait_for_signal(enabled: bool) -> i32 {
    if !enabled {
        return std::future::pending().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            },
            _ => {
                tracing::warn!(target: "marketgate", "cannot install signal handlers");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        2
    }
}

/// Verifies entitlement for `catalog` (options from the environment) and
/// starts the runtime's background work. `#[marketgate::main]` calls this
/// for you.
///
/// # Errors
/// [`StartError`] when the process must not run.
pub fn start_blocking(catalog: &'static Catalog) -> Result<Guard, StartError> {
    start_blocking_with(catalog, Options::from_env())
}

/// [`start_blocking`] with explicit [`Options`].
///
/// # Errors
/// [`StartError`] when the process must not run.
pub fn start_blocking_with(
    catalog: &'static Catalog,
    options: Options,
) -> Result<Guard, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let guard = launch(catalog, options, Reply::Blocking(tx))?;
    match rx.recv() {
        Ok(Ok(())) => Ok(guard),
        Ok(Err(e)) => {
            guard.finish();
            Err(e)
        }
        Err(_) => Err(StartError::Runtime(
            "the background thread ended".to_owned(),
        )),
    }
}

/// Async form of [`start_blocking`].
///
/// # Errors
/// [`StartError`] when the process must not run.
pub async fn start(catalog: &'static Catalog) -> Result<Guard, StartError> {
    start_with(catalog, Options::from_env()).await
}

/// Async form of [`start_blocking_with`].
///
/// # Errors
/// [`StartError`] when the process must not run.
pub async fn start_with(catalog: &'static Catalog, options: Options) -> Result<Guard, StartError> {
    let (tx, rx) = oneshot::channel();
    let guard = launch(catalog, options, Reply::Async(tx))?;
    match rx.await {
        Ok(Ok(())) => Ok(guard),
        Ok(Err(e)) => {
            // The thread has replied and is exiting.
            guard.finish();
            Err(e)
        }
        Err(_) => Err(StartError::Runtime(
            "the background thread ended".to_owned(),
        )),
    }
}

fn refuse(error: &StartError) -> ! {
    tracing::error!(target: "marketgate", %error, "refusing to start");
    // main's body, which would install a tracing subscriber, has not run:
    // stderr is the one place an operator is sure to see this.
    eprintln!("marketgate: refusing to start: {error}");
    std::process::exit(1)
}

#[doc(hidden)]
pub fn main_start_blocking(catalog: &'static Catalog) -> Guard {
    start_blocking(catalog).unwrap_or_else(|e| refuse(&e))
}

#[doc(hidden)]
pub async fn main_start(catalog: &'static Catalog) -> Guard {
    match start(catalog).await {
        Ok(guard) => guard,
        Err(e) => refuse(&e),
    }
}

#[doc(hidden)]
pub fn main_finish_blocking(guard: Guard) {
    guard.shutdown_blocking();
}

#[doc(hidden)]
pub async fn main_finish(guard: Guard) {
    guard.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_after_a_signal_adds_check_in_grace_and_flush() {
        assert_eq!(
            Options::default().max_exit_after_signal(),
            Duration::from_secs(25)
        );
        let options = Options::default()
            .call_timeout(Duration::from_secs(2))
            .handle_signals(true, Duration::from_secs(30))
            .flush_budget(Duration::from_secs(4));
        assert_eq!(options.max_exit_after_signal(), Duration::from_secs(36));
    }

    const FREE: Product = Product::__new(
        "a",
        "code-a",
        crate::Tier::Free,
        crate::Pricing::Hourly,
        crate::FeatureSet::EMPTY,
        0,
        None,
        None,
    );
    static CATALOG: Catalog = Catalog::__new(
        0,
        "m",
        &[
            FREE,
            Product::__new(
                "b",
                "code-b",
                crate::Tier::Paid,
                crate::Pricing::Custom,
                crate::FeatureSet::EMPTY,
                1,
                None,
                None,
            ),
        ],
        &[],
        &["d"],
    );
    static SINGLE: Catalog = Catalog::__new(0, "m", &[FREE], &[], &[]);

    #[test]
    fn product_selection() {
        assert_eq!(
            select(&CATALOG, Some("code-b")).map(Product::name).ok(),
            Some("b")
        );
        let err = select(&CATALOG, Some("free-code")).expect_err("untrusted");
        let msg = err.to_string();
        assert!(
            msg.contains("`free-code` is not a product this binary trusts"),
            "{msg}"
        );
        assert!(
            msg.contains("a (code-a, free hourly), b (code-b, paid custom)"),
            "{msg}"
        );
        let err = select(&CATALOG, None).expect_err("ambiguous");
        assert!(matches!(err, StartError::NoProductSelected { .. }));
        assert_eq!(select(&SINGLE, None).map(Product::name).ok(), Some("a"));
    }
}
