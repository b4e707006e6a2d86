//! Reading and steering the simulator from outside the AWS API: the
//! operations behind both the in-process API ([`crate::Simulator`]) and the
//! HTTP inspection API under `/_marketgate/` on the same port.

use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::calls::CallRecord;
use crate::catalog;
use crate::config::{EntitlementConfig, LicenseStatus, Subscription};
use crate::error::Error;
use crate::faults::FaultRule;
use crate::license_manager::LicensesView;
use crate::license_manager::state::Licensing;
use crate::metering::UsageRecord;
use crate::protocol::Body;
use crate::state::{Shared, TaskInfo};
use crate::timestamp;

/// The path prefix of the inspection API.
pub(crate) const PREFIX: &str = "/_marketgate/";

/// Inspection bodies are small JSON objects.
const MAX_BODY: usize = 64 * 1024;

impl Shared {
    pub(crate) fn usage(&self) -> Vec<UsageRecord> {
        self.state().metering.records.clone()
    }

    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.state().calls.clone()
    }

    pub(crate) fn licenses(&self) -> LicensesView {
        let now = self.clock.now();
        self.state().licensing.view(now)
    }

    pub(crate) fn tasks(&self) -> Vec<TaskInfo> {
        self.state()
            .tasks
            .iter()
            .map(|(key, task)| TaskInfo::new(key, task))
            .collect()
    }

    pub(crate) fn start_task(&self, access_key_id: &str, at: SystemTime) -> TaskInfo {
        let mut state = self.state();
        let task = state.task(access_key_id, at);
        task.started_at = at;
        TaskInfo::new(access_key_id, task)
    }

    pub(crate) fn subscriptions(&self) -> Vec<(String, Subscription)> {
        let state = self.state();
        self.catalog
            .products
            .iter()
            .map(|p| (p.code.clone(), state.subscription(&p.code)))
            .collect()
    }

    pub(crate) fn set_subscription(
        &self,
        product: &str,
        status: Subscription,
    ) -> Result<(), Error> {
        let code = self
            .catalog
            .resolve_product(product)
            .ok_or_else(|| Error::UnknownProduct(product.to_owned()))?
            .code
            .clone();
        self.state().subscriptions.insert(code, status);
        Ok(())
    }

    pub(crate) fn set_license_status(
        &self,
        license: &str,
        status: LicenseStatus,
    ) -> Result<(), Error> {
        self.change_license(license, |licensing, index| {
            licensing.set_status(index, status);
        })
    }

    pub(crate) fn set_license_entitlements(
        &self,
        license: &str,
        entitlements: Vec<EntitlementConfig>,
    ) -> Result<(), Error> {
        let mut state = self.state();
        let index = state
            .licensing
            .find(license)
            .ok_or_else(|| Error::UnknownLicense(license.to_owned()))?;
        // The config's rules, so GetLicense never answers what no config
        // could hold (a counted unit without MaxCount, a name twice).
        let name = state.licensing.name(index).to_owned();
        catalog::check_entitlements(&entitlements, &format!("license {name:?}"))?;
        state.licensing.set_entitlements(index, entitlements);
        Ok(())
    }

    /// Applies `change` to a license by ARN or config name.
    fn change_license(
        &self,
        license: &str,
        change: impl FnOnce(&mut Licensing, usize),
    ) -> Result<(), Error> {
        let mut state = self.state();
        let index = state
            .licensing
            .find(license)
            .ok_or_else(|| Error::UnknownLicense(license.to_owned()))?;
        change(&mut state.licensing, index);
        Ok(())
    }

    pub(crate) fn inject(&self, rule: FaultRule) -> Result<FaultRule, Error> {
        let mut rule = rule.validated()?;
        rule.id = self.faults.add(rule.clone());
        Ok(rule)
    }
}

/// `GET /_marketgate/keys`: the public keys a seller embeds or verifies with.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Keys {
    products: Vec<ProductKey>,
    license_issuer: IssuerKey,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductKey {
    name: String,
    code: String,
    version: i32,
    public_key_pem: String,
    expires_at: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuerKey {
    name: String,
    key_fingerprint: String,
    public_key_pem: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockChange {
    set: Option<f64>,
    advance: Option<f64>,
    frozen: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionChange {
    product: String,
    status: Subscription,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseChange {
    license: String,
    status: LicenseStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskStart {
    access_key_id: String,
    started_at: Option<f64>,
}

type Answer = Result<Value, (StatusCode, String)>;

fn bad(message: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message.into())
}

fn to_json<T: Serialize>(value: &T) -> Answer {
    serde_json::to_value(value).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn body<T: for<'de> Deserialize<'de>, B>(
    request: Request<B>,
) -> Result<T, (StatusCode, String)>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| bad(format!("cannot read the body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// Serves one `/_marketgate/...` request.
pub(crate) async fn serve<B>(shared: &Shared, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let method = request.method().clone();
    let answer = route(shared, &method, &path, request).await;
    let (status, value) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err((status, message)) => (status, json!({"error": message})),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn route<B>(shared: &Shared, method: &Method, path: &str, request: Request<B>) -> Answer
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match (method.as_str(), path) {
        ("GET", "usage") => to_json(&shared.usage()),
        ("GET", "calls") => to_json(&shared.calls()),
        ("GET", "licenses") => to_json(&shared.licenses()),
        ("POST", "licenses") => {
            let change: LicenseChange = body(request).await?;
            shared
                .set_license_status(&change.license, change.status)
                .map_err(|e| bad(e.to_string()))?;
            to_json(&shared.licenses())
        }
        ("GET", "tasks") => to_json(&shared.tasks()),
        ("POST", "tasks") => {
            let start: TaskStart = body(request).await?;
            let at = match start.started_at {
                Some(secs) => timestamp::from_epoch_secs(secs)
                    .ok_or_else(|| bad(format!("startedAt {secs} is not a valid time")))?,
                None => shared.clock.now(),
            };
            to_json(&shared.start_task(&start.access_key_id, at))
        }
        ("GET", "clock") => Ok(clock_json(shared)),
        ("POST", "clock") => {
            let change: ClockChange = body(request).await?;
            if let Some(secs) = change.set {
                let at = timestamp::from_epoch_secs(secs)
                    .ok_or_else(|| bad(format!("set {secs} is not a valid time")))?;
                shared.clock.set(at);
            }
            if let Some(secs) = change.advance {
                let by = Duration::try_from_secs_f64(secs).map_err(|_| {
                    bad(format!(
                        "advance {secs} must be a non-negative number of seconds"
                    ))
                })?;
                let latest = timestamp::latest();
                if !shared.clock.advance_until(by, latest) {
                    return Err(bad(format!(
                        "advance {secs} would move the clock past {} seconds after the epoch, \
                         the latest time the simulator represents",
                        timestamp::epoch_secs(latest)
                    )));
                }
            }
            match change.frozen {
                Some(true) => shared.clock.freeze(),
                Some(false) => shared.clock.resume(),
                None => {}
            }
            Ok(clock_json(shared))
        }
        ("GET", "faults") => to_json(&shared.faults.list()),
        ("POST", "faults") => {
            let rule: FaultRule = body(request).await?;
            to_json(&shared.inject(rule).map_err(|e| bad(e.to_string()))?)
        }
        ("DELETE", "faults") => {
            shared.faults.clear();
            Ok(json!([]))
        }
        (_, fault) if fault.starts_with("faults/") => remove_fault(shared, method, path),
        ("GET", "subscriptions") => Ok(subscriptions_json(shared)),
        ("POST", "subscriptions") => {
            let change: SubscriptionChange = body(request).await?;
            shared
                .set_subscription(&change.product, change.status)
                .map_err(|e| bad(e.to_string()))?;
            Ok(subscriptions_json(shared))
        }
        ("GET", "keys") => to_json(&keys(shared)),
        (
            _,
            "usage" | "calls" | "licenses" | "tasks" | "clock" | "faults" | "subscriptions"
            | "keys",
        ) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {PREFIX}{path}"),
        )),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!(
                "no inspection endpoint {PREFIX}{path}; see simulator/README.md for usage, calls, \
                 licenses, tasks, clock, faults, subscriptions and keys"
            ),
        )),
    }
}

/// `DELETE /_marketgate/faults/{id}`: removes one fault and answers the
/// remaining ones.
fn remove_fault(shared: &Shared, method: &Method, path: &str) -> Answer {
    if method != Method::DELETE {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {PREFIX}{path}; DELETE removes the fault"),
        ));
    }
    let id = path.strip_prefix("faults/").unwrap_or_default();
    let id: u64 = id
        .parse()
        .map_err(|_| bad(format!("fault id {id:?} is not a number")))?;
    if !shared.faults.remove(id) {
        return Err((StatusCode::NOT_FOUND, format!("no fault has id {id}")));
    }
    to_json(&shared.faults.list())
}

fn clock_json(shared: &Shared) -> Value {
    let now = shared.clock.now();
    json!({
        "now": timestamp::epoch_json(now),
        "iso": timestamp::iso8601(now),
        "frozen": shared.clock.is_frozen(),
    })
}

fn subscriptions_json(shared: &Shared) -> Value {
    let map: serde_json::Map<String, Value> = shared
        .subscriptions()
        .into_iter()
        .map(|(code, status)| (code, serde_json::to_value(status).unwrap_or(Value::Null)))
        .collect();
    Value::Object(map)
}

fn keys(shared: &Shared) -> Keys {
    let catalog = &shared.catalog;
    Keys {
        products: catalog
            .products
            .iter()
            .flat_map(|p| {
                p.keys.iter().map(|(version, key)| ProductKey {
                    name: p.name.clone(),
                    code: p.code.clone(),
                    version: *version,
                    public_key_pem: key.signing.public_key_pem().to_owned(),
                    expires_at: key.expires_at.map(timestamp::epoch_secs),
                })
            })
            .collect(),
        license_issuer: IssuerKey {
            name: catalog.issuer.name.clone(),
            key_fingerprint: catalog.issuer.key_fingerprint.clone(),
            public_key_pem: catalog.issuer.key.public_key_pem().to_owned(),
        },
    }
}
