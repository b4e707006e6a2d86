//! Start-up and shutdown: what `#[marketgate::main]` wraps around `main`,
//! and the explicit [`start`] / [`Guard`] API for programs that cannot use
//! the attribute.
//!
//! The runtime's AWS work runs on a dedicated thread with its own
//! current-thread tokio runtime, so it works the same under a sync `main`,
//! under any async runtime, and never competes with the application's
//! executor.

mod error;
mod options;
mod shutdown;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use error::StartError;
pub use options::{
    CHECKPOINT_INTERVAL_ENV, DEFAULT_STATE_DIR, MAX_SEAT_WAIT, MAX_SIGNAL_GRACE_FROM_ENV,
    MAX_UNREPORTED_ENV, Options, PRODUCT_CODE_ENV, SEAT_WAIT_ENV, SIGNAL_GRACE_ENV,
    STARTUP_TIMEOUT_ENV, STATE_DIR_ENV,
};
use shutdown::{Command, ShutdownWork};

use crate::aws;
use crate::catalog::{Catalog, Product};
use crate::entitlement;
use crate::license;
use crate::metering::{self, Pipeline};
use crate::region::{RegionSource, RegionSources};
use crate::status::{self, ProductStatus, RegionStatus, RunState};

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
/// product: an unknown code must not start, so that a buyer cannot run under
/// another product's code.
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
    lease_clock: &license::Monotonic,
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
    let provider = aws::credentials::provider(
        &aws_types::region::Region::new(region.region.clone()),
        options.dev_credentials.clone(),
    )
    .await;
    let clients = aws::clients(
        &region.region,
        &options.endpoint,
        provider.clone(),
        options.call_timeout,
    )
    .await
    .map_err(|error| StartError::Endpoint {
        error,
        region_source: region.source,
    })?;
    let credentials = identify_credentials(
        &provider,
        options.dev_credentials.is_some(),
        product,
        options,
    )
    .await?;
    tracing::info!(
        target: "marketgate",
        region = %region.region,
        source = %region.source,
        %credentials,
        product = product.name(),
        pricing = %product.pricing(),
        "verifying AWS Marketplace entitlement"
    );
    let cx = verify::Context {
        catalog,
        product,
        region: &region,
        clients: &clients,
        backoff: options.backoff(),
        clock: &options.clock,
        lease_clock,
        seat_wait: options.seat_wait,
        credentials,
    };
    let verified = verify::verify(&cx).await?;
    Ok((clients, verified))
}

/// Resolves the credentials once, before the first AWS call: their source
/// goes into the log and `status()`, with a warning and the fix when AWS
/// Marketplace refuses (or may refuse) it. No credentials at all refuses
/// start-up; a provider failing in a way that may pass (an endpoint not
/// answering yet) leaves it to the calls' retries.
async fn identify_credentials(
    provider: &aws_credential_types::provider::SharedCredentialsProvider,
    is_static: bool,
    product: &'static Product,
    options: &Options,
) -> Result<aws::credentials::CredentialSource, StartError> {
    use aws::credentials::{CredentialSource, Resolved, Verdict};
    let limit = options.call_timeout.max(Duration::from_secs(10));
    let source = match aws::credentials::resolve(provider, is_static, limit).await {
        Resolved::From(source) => source,
        Resolved::Nothing(tried) => {
            status::set_credentials(status::CredentialsStatus {
                source: CredentialSource::Unknown,
                marketplace_accepts: None,
                warning: None,
                error: Some(tried.clone()),
            });
            return Err(StartError::NoCredentials { tried });
        }
        Resolved::Failed(error) => {
            tracing::warn!(
                target: "marketgate",
                %error,
                "cannot resolve AWS credentials yet; start-up verification will retry"
            );
            status::set_credentials(status::CredentialsStatus {
                source: CredentialSource::Unknown,
                marketplace_accepts: None,
                warning: None,
                error: Some(error),
            });
            return Ok(CredentialSource::Unknown);
        }
    };
    let pricing = product.pricing();
    let warning =
        aws::credentials::warning(source, pricing, options.endpoint == aws::Endpoint::Aws);
    if let Some(warning) = &warning {
        tracing::warn!(target: "marketgate", credentials = %source, "{warning}");
    }
    status::set_credentials(status::CredentialsStatus {
        source,
        marketplace_accepts: match source.verdict(pricing) {
            Verdict::Accepted => Some(true),
            Verdict::Refused => Some(false),
            Verdict::Unverified => None,
        },
        warning,
        error: None,
    });
    Ok(source)
}

/// How long `checkout!` retries transient failures before it reports
/// License Manager unavailable.
const UNITS_CHECKOUT_BUDGET: Duration = Duration::from_secs(20);

/// The counted-units work of a contract product whose lease holds license
/// `arn`.
async fn launch_units(
    product: &'static Product,
    clients: &aws::Clients,
    lease_clock: &license::Monotonic,
    options: &Options,
    arn: String,
) -> Option<crate::units::Running> {
    crate::units::launch(
        product,
        clients.clone(),
        lease_clock.clone(),
        options.clock.clone(),
        arn,
        crate::units::Settings {
            state_dir: options.state_dir.clone(),
            draw_every: options.checkpoint_every,
            checkout_budget: UNITS_CHECKOUT_BUDGET,
        },
    )
    .await
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
    let lease_clock = options.lease_clock();
    let verifying = std::time::Instant::now();
    let verification = verify_product(catalog, product, &options, &lease_clock).await;
    crate::metrics::startup_verified(verifying.elapsed());
    let (clients, verified) = match verification {
        Ok(v) => v,
        Err(e) => {
            status::set_refusal(e.to_string());
            crate::metrics::publish();
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
    let license_arn = verified
        .lease
        .as_ref()
        .map(|(grant, _)| grant.license_arn.clone());
    let lease = verified.lease.map(|(grant, sent)| {
        let policy = license::policy(options.license_extend, options.license_check);
        let lease: license::SharedLease = Arc::new(std::sync::Mutex::new(license::Lease::new(
            policy, grant, sent,
        )));
        let driver = license::Driver {
            catalog,
            product,
            clients: clients.clone(),
            clock: lease_clock.clone(),
            wall: options.clock.clone(),
            lease: lease.clone(),
            on_license: Some(crate::units::license_read),
        };
        (lease, tokio::spawn(driver.run()))
    });
    // Counted units seller code takes (contract products): what the buyer
    // bought, floating guards, drawdown batches.
    let units = match license_arn {
        Some(arn) => Box::pin(launch_units(product, &clients, &lease_clock, &options, arn)).await,
        None => None,
    };
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
                // The deployment may shorten the seller's bound, never lengthen it.
                max_unreported: options
                    .max_unreported
                    .map_or(product.max_unreported(), |d| {
                        d.min(product.max_unreported())
                    }),
            },
            &baseline,
            metering::Environment::real(),
        )));
        let ticker = tokio::spawn(metering::run::run(
            pipeline.clone(),
            options.checkpoint_every,
        ));
        (pipeline, ticker)
    });
    // Published from this thread, every checkpoint interval: never from
    // the checks or the usage counters.
    #[cfg(feature = "metrics")]
    tokio::spawn(crate::metrics::run(options.checkpoint_every));
    // Before main's body runs: a signal from then on is the runtime's.
    let signals = shutdown::Signals::install(options.handle_signals);
    reply.send(Ok(()));
    let work = ShutdownWork {
        catalog,
        product,
        clients,
        lease,
        units,
        metering,
        checkpoint_every: options.checkpoint_every,
        check_in_budget: options.flush_budget,
        checked_in: false,
        flushed: false,
    };
    stopped(shutdown::serve(work, commands, signals, options.signal_grace).await);
}

/// `dev` builds: with `MARKETGATE_DEV_CLOCK=simulator`, hours follow the
/// simulator's clock instead of the local one.
#[cfg(feature = "dev")]
async fn follow_simulator_clock(mut options: Options) -> Options {
    let wanted = std::env::var(crate::dev_clock::DEV_CLOCK_ENV).is_ok_and(|v| v == "simulator");
    if let (true, aws::Endpoint::Dev(url)) = (wanted, &options.endpoint) {
        match crate::dev_clock::follow(url).await {
            Some(clock) => {
                options.clock = clock;
                options.clock_replaced = true;
            }
            None => tracing::warn!(target: "marketgate", "cannot read the simulator's clock"),
        }
    }
    options
}

/// Ends the runtime: no grants, stopped, startable again.
fn stopped(command: Option<Command>) {
    entitlement::revoke_all();
    status::set_state(RunState::Stopped);
    crate::metrics::publish();
    STARTED.store(false, Ordering::Release);
    if let Some(Command::Shutdown(done)) = command {
        let _ = done.send(());
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
    fn the_exit_after_a_signal_adds_report_check_in_grace_and_flush() {
        assert_eq!(
            Options::default().max_exit_after_signal(),
            Duration::from_secs(35)
        );
        let options = Options::default()
            .call_timeout(Duration::from_secs(2))
            .handle_signals(true)
            .signal_grace(Duration::from_secs(30))
            .flush_budget(Duration::from_secs(4));
        assert_eq!(options.max_exit_after_signal(), Duration::from_secs(40));
    }

    const FREE: Product = Product::__new(
        "a",
        "code-a",
        crate::Tier::Free,
        crate::Pricing::Hourly,
        crate::FeatureSet::EMPTY,
        0,
        7200,
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
                7200,
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
