//! What the fuzz target `sim_request` in `fuzz/` calls: the handler the
//! server runs for every request, in-process and without sockets. Only with
//! the `fuzzing` feature. **Not public API**, and never enabled in a build
//! you ship.

use std::time::SystemTime;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::Error;
use crate::server;
use crate::state::{Shared, State};

/// A simulator without a listener: requests go straight to the server's
/// request handler.
#[derive(Debug)]
pub struct Harness {
    shared: Shared,
    start: SystemTime,
    frozen: bool,
}

impl Harness {
    /// A simulator for `config`. Give it a frozen clock with a `start` for
    /// runs that replay exactly.
    ///
    /// # Errors
    /// As [`crate::Simulator::start`] for an invalid config.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let shared = Shared::new(Catalog::build(config)?);
        let start = shared.clock.now();
        let frozen = shared.clock.is_frozen();
        Ok(Self {
            shared,
            start,
            frozen,
        })
    }

    /// Back to the state of a new simulator: no calls, tasks, usage,
    /// checkouts or faults, subscriptions and licenses as configured, the
    /// clock at its start.
    pub fn reset(&self) {
        *self.shared.state() = State::new(&self.shared.catalog);
        self.shared.faults.clear();
        self.shared.clock.set(self.start);
        if self.frozen {
            self.shared.clock.freeze();
        } else {
            self.shared.clock.resume();
        }
    }

    /// Answers `request` as the server would; `None` when the server drops
    /// the connection instead (an injected fault).
    pub async fn handle(&self, request: Request<Bytes>) -> Option<Response<Bytes>> {
        let response = server::handle(&self.shared, request.map(Full::new))
            .await
            .ok()?;
        let (parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        Some(Response::from_parts(parts, bytes))
    }
}
