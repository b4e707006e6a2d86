//! `Marketplace.toml`: locate, parse and validate the seller's products and
//! the features and dimensions they grant.
//!
//! Implementation detail of [`marketgate`](https://docs.rs/marketgate),
//! shared by its macros (where a broken manifest is a compile error naming
//! the file, line, product and fix) and by `marketgate-sim check-manifest`, which
//! checks a manifest and shows the catalog it compiles to. Not a stable API:
//! depend on `marketgate`.
//!
//! Layout, in the order dependencies run: `keys` (RSA public keys), `model`
//! (the validated types), `raw` (the TOML shapes), `diagnostics` (messages
//! that point into the file), `validate` (the rules), `fingerprint`, and
//! `load` (finding and reading the files), which the entry points below
//! come from.

mod diagnostics;
mod fingerprint;
pub mod keys;
mod load;
mod model;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

pub use load::{MANIFEST_ENV, ManifestError, load, load_cached, parse, read, read_cached};
pub use model::{
    DEFAULT_MAX_UNREPORTED, Entitlement, License, MAX_FEATURES, MAX_MAX_UNREPORTED,
    MIN_MAX_UNREPORTED, Manifest, Pricing, Product, Tier, UnitModel, duration_name, pricing_name,
};
