//! The HTTP server and the in-process handle to it.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::calls::CallRecord;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{Config, EntitlementConfig, LicenseStatus, Subscription};
use crate::dispatch::{self, Reply};
use crate::error::Error;
use crate::faults::{Fault, FaultRule, Trigger};
use crate::inspect;
use crate::license_manager::LicensesView;
use crate::metering::UsageRecord;
use crate::operation::Operation;
use crate::protocol::Body;
use crate::state::{Shared, TaskInfo};

/// How long shutdown waits for requests in flight before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. Dropping it stops the server in the background;
/// [`Simulator::shutdown`] stops it and waits.
///
/// ```no_run
/// # async fn demo() -> Result<(), marketgate_simulator::Error> {
/// use marketgate_simulator::{Config, Simulator};
///
/// let sim = Simulator::start(Config::example()).await?;
/// let endpoint = sim.endpoint(); // http://127.0.0.1:PORT: give it to the AWS SDK
/// # let _ = endpoint;
/// sim.clock().advance(std::time::Duration::from_secs(3600));
/// assert!(sim.usage().is_empty());
/// sim.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// The error a dropped-connection fault returns to hyper, which then closes
/// the connection without answering.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

impl Simulator {
    /// Starts a simulator on an ephemeral port of 127.0.0.1. Must be called
    /// inside a Tokio runtime, which then runs the server.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, [`Error::Bind`] if no port
    /// can be bound.
    pub async fn start(config: Config) -> Result<Self, Error> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a simulator on `addr`, which must be a loopback address.
    ///
    /// # Errors
    /// As [`Simulator::start`], and [`Error::NonLoopback`] for any other
    /// address.
    pub async fn start_on(addr: SocketAddr, config: Config) -> Result<Self, Error> {
        if !addr.ip().is_loopback() {
            return Err(Error::NonLoopback(addr));
        }
        Self::bind(addr, config).await
    }

    /// Starts a simulator on any address, loopback or not. The simulator has
    /// no real authentication: only use this on a network you control.
    ///
    /// # Errors
    /// As [`Simulator::start`].
    pub async fn start_on_any_interface(addr: SocketAddr, config: Config) -> Result<Self, Error> {
        Self::bind(addr, config).await
    }

    /// Starts a simulator on an ephemeral loopback port with its own
    /// background runtime, for synchronous code such as tests that drive
    /// child processes. Do not call it from inside an async runtime.
    ///
    /// # Errors
    /// As [`Simulator::start`], and [`Error::Runtime`] if the runtime cannot
    /// be created.
    pub fn start_blocking(config: Config) -> Result<BlockingSimulator, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("marketgate-sim")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let simulator = runtime.block_on(Self::start(config))?;
        Ok(BlockingSimulator {
            simulator: Some(simulator),
            runtime: Some(runtime),
        })
    }

    async fn bind(addr: SocketAddr, config: Config) -> Result<Self, Error> {
        let catalog = Catalog::build(&config)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let shared = Arc::new(Shared::new(catalog));
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        tracing::info!(%addr, "marketgate simulator listening");
        Ok(Self {
            shared,
            addr,
            stop,
            server,
        })
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the AWS SDK (`endpoint_url`), like
    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated clock.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Injects a fault for an operation; returns its id.
    ///
    /// # Errors
    /// [`Error::Fault`] when the fault does not fit the operation's service
    /// or a parameter is out of range.
    pub fn inject(
        &self,
        operation: Operation,
        fault: Fault,
        trigger: Trigger,
    ) -> Result<u64, Error> {
        let rule = FaultRule::new(operation, fault, trigger)?;
        Ok(self.shared.faults.add(rule))
    }

    /// Injects a fault for an operation that fires only on the calls of one
    /// task, the one whose requests are signed with the access key id
    /// `task`; returns its id. Other tasks' calls neither fire it nor count
    /// towards a [`Trigger::NextCalls`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), marketgate_simulator::Error> {
    /// use marketgate_simulator::{Config, Fault, Operation, Simulator, Trigger};
    ///
    /// let sim = Simulator::start(Config::example()).await?;
    /// let id = sim.inject_for(
    ///     "AKIDREPLICA2",
    ///     Operation::ExtendLicenseConsumption,
    ///     Fault::DropConnection,
    ///     Trigger::Probability(1.0),
    /// )?;
    /// // ... only AKIDREPLICA2's extensions lose their connection ...
    /// assert!(sim.remove_fault(id));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Simulator::inject`], and [`Error::Fault`] when `task` is empty.
    pub fn inject_for(
        &self,
        task: &str,
        operation: Operation,
        fault: Fault,
        trigger: Trigger,
    ) -> Result<u64, Error> {
        let rule = FaultRule::new(operation, fault, trigger)?.for_task(task);
        self.shared.inject(rule).map(|rule| rule.id)
    }

    /// Removes the injected fault with this id; whether it was still there
    /// (a spent [`Trigger::NextCalls`] fault is removed by itself).
    #[allow(
        clippy::must_use_candidate,
        reason = "removing is the point; whether it was there is optional"
    )]
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.faults.remove(id)
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The injected faults still active, with how often each fired.
    #[must_use]
    pub fn faults(&self) -> Vec<FaultRule> {
        self.shared.faults.list()
    }

    /// Every accepted `MeterUsage` record, in order of acceptance.
    #[must_use]
    pub fn usage(&self) -> Vec<UsageRecord> {
        self.shared.usage()
    }

    /// Every AWS API call received, in order.
    #[must_use]
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls()
    }

    /// Licenses with their use, and every checkout.
    #[must_use]
    pub fn licenses(&self) -> LicensesView {
        self.shared.licenses()
    }

    /// Every task (access key id) seen or started.
    #[must_use]
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.shared.tasks()
    }

    /// Starts a task at `at` before its first request, or moves an existing
    /// task's start; `MeterUsage` refuses usage from before the start hour.
    pub fn start_task(&self, access_key_id: &str, at: SystemTime) {
        self.shared.start_task(access_key_id, at);
    }

    /// Changes the buyer's subscription to a product (by code or name).
    ///
    /// # Errors
    /// [`Error::UnknownProduct`] when no product has that code or name.
    pub fn set_subscription(&self, product: &str, status: Subscription) -> Result<(), Error> {
        self.shared.set_subscription(product, status)
    }

    /// The buyer's subscription to a product (by code or name).
    ///
    /// # Errors
    /// [`Error::UnknownProduct`] when no product has that code or name.
    pub fn subscription(&self, product: &str) -> Result<Subscription, Error> {
        let code = &self
            .shared
            .catalog
            .resolve_product(product)
            .ok_or_else(|| Error::UnknownProduct(product.to_owned()))?
            .code;
        Ok(self.shared.state().subscription(code))
    }

    /// Changes a license's status (by ARN or config name), e.g. to suspend it.
    ///
    /// # Errors
    /// [`Error::UnknownLicense`] when no license has that ARN or name.
    pub fn set_license_status(&self, license: &str, status: LicenseStatus) -> Result<(), Error> {
        self.shared.set_license_status(license, status)
    }

    /// The emulated task's Region.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.shared.catalog.region
    }

    /// A command that runs a seller program against this simulator as the
    /// task `access_key_id`: `MARKETGATE_ENDPOINT` points here, the Region
    /// is the task's, the credentials are a throwaway static pair, and every
    /// other AWS setting that could send the program elsewhere (profiles,
    /// container or web-identity credentials, instance metadata, endpoint
    /// overrides) is removed. The program must be built with marketgate's
    /// `dev` feature, the only build that reads `MARKETGATE_ENDPOINT`.
    #[must_use]
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        access_key_id: &str,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        for var in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "ECS_CONTAINER_METADATA_URI_V4",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
            "AWS_ENDPOINT_URL_LICENSE_MANAGER",
        ] {
            command.env_remove(var);
        }
        command
            .env("MARKETGATE_ENDPOINT", self.endpoint())
            .env("AWS_REGION", self.region())
            .env("AWS_ACCESS_KEY_ID", access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", "marketgate-simulator")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/marketgate-simulator")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/marketgate-simulator",
            );
        command
    }

    /// Replaces a license's entitlements, as a seller's upgrade or downgrade
    /// of the buyer's contract would. Active consumptions keep what they hold.
    ///
    /// # Errors
    /// [`Error::UnknownLicense`] when no license has that ARN or name;
    /// [`Error::Config`] when the entitlements break the config's rules
    /// (none, a name twice, `max_count` missing for a counted unit or given
    /// for `None`, `value` on a counted unit); the license is then unchanged.
    pub fn set_license_entitlements(
        &self,
        license: &str,
        entitlements: Vec<EntitlementConfig>,
    ) -> Result<(), Error> {
        self.shared.set_license_entitlements(license, entitlements)
    }

    /// The public key (`SubjectPublicKeyInfo` PEM) of a product's `RegisterUsage`
    /// key version, by product code or name.
    #[must_use]
    pub fn product_public_key_pem(&self, product: &str, version: i32) -> Option<&str> {
        self.shared
            .catalog
            .resolve_product(product)?
            .key(version)
            .map(|k| k.signing.public_key_pem())
    }

    /// The public key (`SubjectPublicKeyInfo` PEM) that verifies
    /// `CheckoutLicense`'s `SignedToken`.
    #[must_use]
    pub fn license_issuer_public_key_pem(&self) -> &str {
        self.shared.catalog.issuer.key.public_key_pem()
    }

    /// Stops accepting connections, lets requests in flight finish (up to
    /// five seconds) and returns when the server has stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.server.await {
            tracing::warn!(%error, "simulator server task ended abnormally");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop_signal(&mut stopped) => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.spawn(serve_connection(stream, Arc::clone(&shared), stopped.clone()));
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        connections.abort_all();
    }
}

/// Resolves once shutdown is signalled or the [`Simulator`] is dropped (the
/// sender gone, which `wait_for` reports as an error). Unlike `changed()` it
/// also sees a signal sent before this receiver was cloned.
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { handle(&shared, request).await }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            }
        }
        () = stop_signal(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Answers one request; generic over the body so that the fuzz targets can
/// call it in-process (`crate::fuzzing`).
pub(crate) async fn handle<B>(
    shared: &Shared,
    request: Request<B>,
) -> Result<Response<Body>, DropConnection>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.uri().path().starts_with(inspect::PREFIX) {
        return Ok(inspect::serve(shared, request).await);
    }
    match dispatch::aws(shared, request).await {
        Reply::Respond(response) => Ok(response),
        Reply::Drop => Err(DropConnection),
    }
}

/// A simulator with its own runtime, for synchronous code; see
/// [`Simulator::start_blocking`]. It dereferences to [`Simulator`] for every
/// read and control method.
#[derive(Debug)]
pub struct BlockingSimulator {
    simulator: Option<Simulator>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingSimulator {
    /// Stops the server and its runtime, waiting for both.
    pub fn shutdown(mut self) {
        if let (Some(simulator), Some(runtime)) = (self.simulator.take(), self.runtime.take()) {
            runtime.block_on(simulator.shutdown());
        }
    }
}

impl Deref for BlockingSimulator {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        // Both are only taken by shutdown(self) and drop, after which no
        // deref can happen.
        match &self.simulator {
            Some(simulator) => simulator,
            None => unreachable!("BlockingSimulator used after shutdown"),
        }
    }
}

impl Drop for BlockingSimulator {
    fn drop(&mut self) {
        drop(self.simulator.take());
        if let Some(runtime) = self.runtime.take() {
            // Must not block: drop may run inside another runtime.
            runtime.shutdown_background();
        }
    }
}
