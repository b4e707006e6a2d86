//! An HTTP service sold on AWS Marketplace, built with axum.
//!
//! The same image is listed twice (see `Marketplace.toml`): a paid product
//! billed by custom dimensions (`api_calls`, `gb_scanned`) and a free hourly
//! listing. The route handlers below are the annotated functions: marketgate
//! checks the entitlement inside each handler, so no middleware, router
//! order or overridden entrypoint can skip it.
//!
//! | route | guard | free listing | paid listing |
//! |---|---|---|---|
//! | `GET /healthz` | none | `marketgate::status()` | same |
//! | `GET /search?q=..` | `#[entitled("search")]` | 200 | 200 |
//! | `POST /export?report=..` | `#[entitled("export")]` | 403 | 200 |
//! | `GET /items/{id}` | `#[metered(api_calls)]` | 403 | 200, one `api_calls` unit |
//! | `GET /scan?bytes=..` | `#[metered(gb_scanned, quantity = ..)]` | 403 | 200, one unit per started GiB |
//! | `GET /metrics` | none | Prometheus text ([`metrics_router`]) | same |
//!
//! A denied call answers 403 with a JSON body naming the feature or
//! dimension and the reason (see [`ApiError`]).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use marketgate::{DenialReason, Denied, RunState, Subject, entitled, metered};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The highest item id that exists; [`item`] answers 404 above it.
pub const MAX_ITEM_ID: u64 = 1000;

/// The service's routes.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/search", get(search))
        .route("/export", post(export))
        .route("/items/{id}", get(item))
        .route("/scan", get(scan))
}

/// The name of the histogram of AWS call latencies, which `/metrics`
/// renders with [`AWS_CALL_BUCKETS`].
const AWS_CALL_DURATION: &str = "marketgate_aws_call_duration_seconds";

/// Bucket bounds (seconds) of `marketgate_aws_call_duration_seconds`: AWS
/// answers in tens of milliseconds; a call is cut off at the runtime's call
/// timeout.
pub const AWS_CALL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the Prometheus recorder as the process's `metrics` recorder and
/// returns the handle `/metrics` renders. Call it once, in `main`: the
/// runtime publishes its counters as totals since the process started, so
/// installing after `#[marketgate::main]` has verified loses nothing.
///
/// # Errors
/// When a recorder is already installed.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(AWS_CALL_DURATION.to_owned()),
            AWS_CALL_BUCKETS,
        )?
        .install_recorder()
}

/// `GET /metrics`: what `handle` has recorded, in the Prometheus text
/// format. Unguarded, like `/healthz`: a scraper must reach it under every
/// listing. docs/operations.md lists the runtime's metrics.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// The catalog compiled from this crate's `Marketplace.toml`.
#[must_use]
pub fn catalog() -> &'static marketgate::Catalog {
    marketgate::catalog!()
}

/// An error answered to the client.
#[derive(Debug)]
pub enum ApiError {
    /// marketgate refused the call: 403 with a JSON body
    /// `{"error": <message>, "feature" | "dimension": <name>, "reason": <code>}`,
    /// plus `"product"` when the reason names the running product. `reason`
    /// is one of `not_verified`, `free_tier`, `not_in_product`,
    /// `not_licensed`, `stopped`, `catalog_mismatch` (`denied` for reasons
    /// added to marketgate later).
    NotEntitled(Denied),
    /// No such resource: 404. Not billed, since a metered handler only counts
    /// calls that return `Ok`.
    NotFound(String),
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::NotEntitled(denied)
    }
}

/// The machine-readable code of a denial reason, and the product it names.
#[must_use]
pub fn reason_code(reason: DenialReason) -> (&'static str, Option<&'static str>) {
    match reason {
        DenialReason::NotVerified => ("not_verified", None),
        DenialReason::FreeTier { product } => ("free_tier", Some(product)),
        DenialReason::NotInProduct { product } => ("not_in_product", Some(product)),
        DenialReason::NotLicensed { product } => ("not_licensed", Some(product)),
        DenialReason::Stopped => ("stopped", None),
        DenialReason::CatalogMismatch => ("catalog_mismatch", None),
        _ => ("denied", None),
    }
}

/// The JSON body of a denial.
#[must_use]
pub fn denial_body(denied: &Denied) -> serde_json::Value {
    let (code, product) = reason_code(denied.reason());
    let mut body = json!({ "error": denied.to_string(), "reason": code });
    let (key, name) = match denied.subject() {
        Subject::Feature(name) => ("feature", name),
        Subject::Dimension(name) => ("dimension", name),
        Subject::Entitlement(name) => ("entitlement", name),
    };
    body[key] = json!(name);
    if let Some(product) = product {
        body["product"] = json!(product);
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotEntitled(denied) => {
                (StatusCode::FORBIDDEN, Json(denial_body(&denied))).into_response()
            }
            ApiError::NotFound(what) => {
                (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
            }
        }
    }
}

/// The HTTP status of `GET /healthz` for a runtime state: 200 while
/// [`RunState::Running`], 503 in every other state.
///
/// The server only accepts connections once `#[marketgate::main]` has
/// verified entitlement, so in practice a probe sees `running`, or
/// `shutting_down` on a connection still open after SIGTERM (503 then takes
/// the replica out of a load balancer; a liveness probe cannot restart a
/// container that is already stopping). `not_started`, `starting`, `refused`
/// and `stopped` are 503 too: in none of them does a check pass.
///
/// The status's `degraded` list never changes the answer. The runtime is
/// degraded when, for example, the metering journal cannot be written or AWS
/// is unreachable; it keeps the usage in memory and retries. A liveness
/// probe that failed on that would restart the container and lose exactly
/// the usage the runtime is holding on to. Alert on `degraded` instead.
#[must_use]
pub fn health_code(state: RunState) -> StatusCode {
    match state {
        RunState::Running => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /healthz`: [`marketgate::status()`] as JSON, with the status code of
/// [`health_code`]. Unguarded: probes must work under every listing.
pub async fn healthz() -> (StatusCode, Json<marketgate::Status>) {
    let status = marketgate::status();
    (health_code(status.state), Json(status))
}

/// The query of `GET /search`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// What to search for.
    #[serde(default)]
    pub q: String,
}

/// The answer of `GET /search`.
#[derive(Debug, Serialize)]
pub struct SearchResults {
    /// The query searched for.
    pub query: String,
    /// What was found.
    pub results: Vec<String>,
}

/// `GET /search?q=..`: free in the community listing, included in the paid
/// one.
///
/// # Errors
/// [`ApiError::NotEntitled`] when the running product does not grant
/// `search` (only before verification, with this manifest).
#[entitled("search")]
pub async fn search(Query(query): Query<SearchQuery>) -> Result<Json<SearchResults>, ApiError> {
    Ok(Json(SearchResults {
        results: vec![format!("result for {}", query.q)],
        query: query.q,
    }))
}

/// The query of `POST /export`.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// The report to export.
    pub report: String,
}

/// The answer of `POST /export`.
#[derive(Debug, Serialize)]
pub struct Exported {
    /// The report exported.
    pub report: String,
    /// The file it was exported to.
    pub file: String,
}

/// `POST /export?report=..`: a paid feature.
///
/// # Errors
/// [`ApiError::NotEntitled`] under the free listing.
#[entitled("export")]
pub async fn export(Query(query): Query<ExportQuery>) -> Result<Json<Exported>, ApiError> {
    Ok(Json(Exported {
        file: format!("{}.csv", query.report),
        report: query.report,
    }))
}

/// The answer of `GET /items/{id}`.
#[derive(Debug, Serialize)]
pub struct Item {
    /// The item's id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// `GET /items/{id}`: an API call, one `api_calls` unit when it answers 200.
///
/// # Errors
/// [`ApiError::NotEntitled`] unless the running product meters `api_calls`;
/// [`ApiError::NotFound`] (not billed) for an id that does not exist.
#[metered(api_calls)]
pub async fn item(Path(id): Path<u64>) -> Result<Json<Item>, ApiError> {
    if id == 0 || id > MAX_ITEM_ID {
        return Err(ApiError::NotFound(format!("no item {id}")));
    }
    Ok(Json(Item {
        id,
        name: format!("item {id}"),
    }))
}

/// The query of `GET /scan`.
#[derive(Debug, Deserialize)]
pub struct ScanQuery {
    /// How many bytes to scan.
    pub bytes: u64,
}

/// The answer of `GET /scan`.
#[derive(Debug, Serialize)]
pub struct Scanned {
    /// Bytes scanned.
    pub bytes: u64,
    /// `gb_scanned` units billed for them.
    pub gb_scanned: u64,
}

/// `GET /scan?bytes=..`: a scan, `gb_scanned` units rounded up per started
/// GiB.
///
/// # Errors
/// [`ApiError::NotEntitled`] unless the running product meters `gb_scanned`.
#[metered(gb_scanned, quantity = query.bytes.div_ceil(1 << 30))]
pub async fn scan(Query(query): Query<ScanQuery>) -> Result<Json<Scanned>, ApiError> {
    Ok(Json(Scanned {
        bytes: query.bytes,
        gb_scanned: query.bytes.div_ceil(1 << 30),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_runtime_is_healthy() {
        assert_eq!(health_code(RunState::Running), StatusCode::OK);
        for state in [
            RunState::NotStarted,
            RunState::Starting,
            RunState::Refused,
            RunState::ShuttingDown,
            RunState::Stopped,
        ] {
            assert_eq!(
                health_code(state),
                StatusCode::SERVICE_UNAVAILABLE,
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_denial_body_names_the_subject_the_reason_and_the_product() {
        let body = denial_body(&Denied::new(
            Subject::Feature("export"),
            DenialReason::FreeTier {
                product: "community",
            },
        ));
        assert_eq!(body["feature"], "export");
        assert_eq!(body["reason"], "free_tier");
        assert_eq!(body["product"], "community");
        assert!(body.get("dimension").is_none());
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("`export` is a paid feature")),
            "{body}"
        );
        let body = denial_body(&Denied::new(
            Subject::Dimension("api_calls"),
            DenialReason::NotVerified,
        ));
        assert_eq!(body["dimension"], "api_calls");
        assert_eq!(body["reason"], "not_verified");
        assert!(body.get("product").is_none() && body.get("feature").is_none());
    }
}
