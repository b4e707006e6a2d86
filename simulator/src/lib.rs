//! # marketgate-simulator
//!
//! A local emulator of AWS Marketplace Metering (`RegisterUsage`,
//! `MeterUsage`) and AWS License Manager (`CheckoutLicense`,
//! `ExtendLicenseConsumption`, `CheckInLicense`, `GetLicense`,
//! `ListReceivedLicenses`) that the real AWS SDKs talk to over loopback HTTP,
//! speaking `awsJson1_1` exactly as the service models define it.
//!
//! Start it in-process, point the SDK's `endpoint_url` at
//! [`Simulator::endpoint`], drive its [`Clock`], inject [`Fault`]s and read
//! what it recorded:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use marketgate_simulator::{Config, Fault, Operation, Simulator, Trigger};
//!
//! let sim = Simulator::start(Config::example()).await?;
//! sim.inject(Operation::MeterUsage, Fault::Throttling, Trigger::NextCalls(1))?;
//! // ... run the code under test against sim.endpoint() ...
//! for record in sim.usage() {
//!     println!("{} {} {}", record.dimension, record.timestamp, record.quantity);
//! }
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The `marketgate-sim` binary runs the same server from the command line;
//! `simulator/README.md` documents the config file, the binary, the
//! inspection API under `/_marketgate/` and the emulated rules.

mod calls;
mod catalog;
mod clock;
mod config;
mod constraints;
mod dispatch;
mod error;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod inspect;
mod jws;
mod keys;
mod license_manager;
mod metering;
mod operation;
mod protocol;
mod server;
mod sigv4;
mod state;
mod timestamp;

pub use calls::{CallRecord, Outcome};
pub use clock::Clock;
pub use config::{
    BuyerConfig, ClockConfig, Config, EXAMPLE_TOML, EntitlementConfig, EntitlementUnit,
    IssuerConfig, KeyConfig, LicenseConfig, LicenseStatus, MARKETPLACE_KEY_FINGERPRINT, Platform,
    Pricing, ProductConfig, Subscription, SubscriptionConfig, TaskConfig, Tier,
};
pub use error::{ConfigError, Error};
pub use faults::{Fault, FaultKind, FaultRule, Trigger};
pub use license_manager::{
    Checkout, CheckoutState, CheckoutType, EntitlementUsage, HeldEntitlement, LicenseInfo,
    LicensesView,
};
pub use metering::{Allocation, Quantity, Tag, UsageRecord};
pub use operation::{ACCESS_ERRORS, AUTH_ERROR_CODES, Operation, Service, UNKNOWN_OPERATION_CODE};
pub use server::{BlockingSimulator, Simulator};
pub use state::TaskInfo;
