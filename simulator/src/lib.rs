//! # marketgate-simulator
//!
//! A local emulator of AWS Marketplace Metering and AWS License Manager (work
//! in progress: configuration first).

mod catalog;
mod config;
mod constraints;
mod error;
mod ids;
mod jws;
mod keys;
mod timestamp;

pub use config::{
    BuyerConfig, ClockConfig, Config, EXAMPLE_TOML, EntitlementConfig, EntitlementUnit,
    IssuerConfig, KeyConfig, LicenseConfig, LicenseStatus, MARKETPLACE_KEY_FINGERPRINT, Platform,
    Pricing, ProductConfig, Subscription, SubscriptionConfig, TaskConfig, Tier,
};
pub use error::{ConfigError, Error};
