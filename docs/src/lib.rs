//! The marketgate guides, compiled.
//!
//! The guides are the Markdown files in `docs/`; each is this crate's
//! documentation of one module, so `cargo test -p marketgate-guides` compiles
//! (and where marked, runs) every Rust block in them against
//! `docs/Marketplace.toml`, and so does the repository README's example.
//! `tests/guides.rs` validates their `Marketplace.toml` blocks and commands.
#![doc = include_str!("../README.md")]

#[doc = include_str!("../hourly.md")]
pub mod hourly {}

#[doc = include_str!("../monthly.md")]
pub mod monthly {}

#[doc = include_str!("../custom.md")]
pub mod custom {}

#[doc = include_str!("../contract.md")]
pub mod contract {}

#[doc = include_str!("../operations.md")]
pub mod operations {}

/// The repository README (its example compiles here too).
#[doc = include_str!("../../README.md")]
pub mod readme {}
