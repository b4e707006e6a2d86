//! # marketgate-simulator
//!
//! A local emulator of AWS Marketplace Metering and AWS License Manager (work
//! in progress: configuration and the wire protocol).

mod calls;
mod catalog;
mod clock;
mod config;
mod constraints;
mod error;
mod faults;
mod ids;
mod jws;
mod keys;
mod operation;
mod protocol;
mod sigv4;
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
pub use operation::{AUTH_ERROR_CODES, Operation, Service, UNKNOWN_OPERATION_CODE};
