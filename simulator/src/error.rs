//! The errors the simulator's library API returns.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the simulator could not start or could not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// A non-loopback address was asked for without explicitly allowing it.
    #[error(
        "refusing to listen on {0}: it is not a loopback address; the simulator \
         must not be reachable from other machines (use 127.0.0.1 or [::1], or \
         opt in explicitly with --allow-non-loopback / Simulator::start_on_any_interface)"
    )]
    NonLoopback(SocketAddr),
    /// A fault could not be injected as asked.
    #[error("invalid fault: {0}")]
    Fault(String),
    /// No configured product has this code or name.
    #[error("unknown product {0:?}: give a product code or name from the config")]
    UnknownProduct(String),
    /// No configured license has this ARN or name.
    #[error("unknown license {0:?}: give a license ARN or name from the config")]
    UnknownLicense(String),
    /// The background runtime of a blocking simulator could not be created.
    #[error("cannot start the simulator's background runtime: {0}")]
    Runtime(io::Error),
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text does not parse or does not match the config schema.
    #[error("config is not valid TOML for marketgate-sim: {0}")]
    Toml(#[from] toml::de::Error),
    /// A file named by the config could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The config parses but breaks a rule; the message names the entry.
    #[error("invalid config: {0}")]
    Invalid(String),
}
