//! AWS License Manager, as a contract product's container uses it:
//! `CheckoutLicense`, `ExtendLicenseConsumption`, `CheckInLicense`,
//! `GetLicense` and `ListReceivedLicenses`.
//!
//! The rules, from the model and the seller guide:
//! - A checkout names the license by `ProductSKU` and issuer
//!   `KeyFingerprint`; when several licenses match, the newest usable one is
//!   used (aws/aws-sdk#506). Each requested entitlement is allowed when the
//!   license has it with the same unit and, for counted units, enough of
//!   `MaxCount` is free (or `Overage` is on). None allowed, or seats
//!   exhausted, is `NoEntitlementsAllowedException`.
//! - `PROVISIONAL` holds what it took for 60 minutes ("A floating checkout is
//!   automatically checked back in after 60 minutes"),
//!   `ExtendLicenseConsumption` keeps it "for another 60 minutes",
//!   `CheckInLicense` returns it. `PERPETUAL` (drawdown) keeps it for good.
//! - Licenses that are not `AVAILABLE`, not yet valid or past their validity
//!   allow nothing.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::catalog::{Issuer, LicenseSpec};
use crate::config::{EntitlementConfig, EntitlementUnit, LicenseStatus};
use crate::constraints;
use crate::dispatch::Call;
use crate::ids;
use crate::jws;
use crate::keys::KeyError;
use crate::operation::{
    CheckInLicenseError, CheckoutLicenseError, ExtendLicenseConsumptionError, Failure,
    GetLicenseError, ListReceivedLicensesError, fail,
};
use crate::protocol::Input;
use crate::state::State;
use crate::timestamp;

/// How long a provisional checkout holds its entitlements: Marketplace
/// products set `ProvisionalConfiguration.MaxTimeToLiveInMinutes` to 60.
pub(crate) const PROVISIONAL_TTL: Duration = Duration::from_hours(1);

/// The model's minimum length of `SignedToken`.
const SIGNED_TOKEN_MIN_LEN: usize = 4096;

/// `ListReceivedLicenses` returns at most this many per page (`MaxSize100`).
const MAX_PAGE: usize = 100;

/// The filter names `ListReceivedLicenses` accepts (case-sensitive).
const FILTER_NAMES: [&str; 5] = [
    "ProductSKU",
    "Status",
    "Fingerprint",
    "IssuerName",
    "Beneficiary",
];

/// `CheckoutType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckoutType {
    /// Held for 60 minutes unless extended or checked in.
    Provisional,
    /// Consumed for good (drawdown).
    Perpetual,
}

impl CheckoutType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Provisional => "PROVISIONAL",
            Self::Perpetual => "PERPETUAL",
        }
    }
}

/// Where a checkout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckoutState {
    /// Holds its entitlements.
    Active,
    /// Returned with `CheckInLicense`.
    CheckedIn,
    /// Provisional and not extended in time: checked in automatically.
    Expired,
}

/// A checkout as `GET /_marketgate/licenses` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkout {
    /// The `LicenseConsumptionToken`.
    pub license_consumption_token: String,
    /// The license it draws on.
    pub license_arn: String,
    /// Provisional or perpetual.
    pub checkout_type: CheckoutType,
    /// The task (access key id) that checked out.
    pub access_key_id: String,
    /// The request's `NodeId`.
    pub node_id: Option<String>,
    /// The request's `ClientToken`.
    pub client_token: String,
    /// What was allowed and is held.
    pub entitlements: Vec<HeldEntitlement>,
    /// When it was issued, simulated clock, epoch seconds.
    pub issued_at: i64,
    /// When it expires, epoch seconds.
    pub expiration: i64,
    /// Where it stands.
    pub state: CheckoutState,
    /// When it was checked in or expired, epoch seconds.
    pub ended_at: Option<i64>,
    /// How often it was extended.
    pub extensions: u32,
}

/// One entitlement a checkout holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldEntitlement {
    /// The entitlement name.
    pub name: String,
    /// Its unit.
    pub unit: EntitlementUnit,
    /// The value returned in `EntitlementsAllowed`.
    pub value: Option<String>,
    /// How much of `MaxCount` it holds (0 for `Unit = None`).
    pub count: u64,
}

/// Licenses and checkouts, as `GET /_marketgate/licenses` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicensesView {
    /// Every license with its consumption.
    pub licenses: Vec<LicenseInfo>,
    /// Every checkout ever made, active or not.
    pub checkouts: Vec<Checkout>,
}

/// A license and how much of it is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseInfo {
    /// The config name.
    pub name: String,
    /// The ARN.
    pub arn: String,
    /// The `ProductSKU`.
    pub sku: String,
    /// The status now (`EXPIRED` once its validity has ended).
    pub status: LicenseStatus,
    /// Validity start, epoch seconds.
    pub begin: i64,
    /// Validity end, epoch seconds.
    pub end: Option<i64>,
    /// Entitlements with their use.
    pub entitlements: Vec<EntitlementUsage>,
}

/// An entitlement and how much of it active checkouts hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementUsage {
    /// The name.
    pub name: String,
    /// The unit.
    pub unit: EntitlementUnit,
    /// The value (`Unit = None`).
    pub value: Option<String>,
    /// The maximum count (other units).
    pub max_count: Option<i64>,
    /// Whether overage is allowed.
    pub overage: bool,
    /// Whether check-in is allowed.
    pub allow_check_in: bool,
    /// Held by active checkouts.
    pub in_use: u64,
    /// Still free (counted units); may be 0 when overage pushed use past
    /// the maximum.
    pub available: Option<u64>,
}

/// License state that changes: statuses and consumptions.
#[derive(Debug)]
pub(crate) struct Licensing {
    licenses: Vec<(LicenseSpec, LicenseStatus)>,
    consumptions: Vec<Consumption>,
    /// Client token → index of the consumption it created.
    client_tokens: HashMap<String, usize>,
}

#[derive(Debug)]
struct Consumption {
    token: String,
    license: usize,
    checkout_type: CheckoutType,
    access_key_id: String,
    node_id: Option<String>,
    client_token: String,
    request: CheckoutRequest,
    held: Vec<HeldEntitlement>,
    issued_at: SystemTime,
    expiration: SystemTime,
    state: CheckoutState,
    ended_at: Option<SystemTime>,
    extensions: u32,
    response: Value,
}

/// The parameters of a checkout that idempotency compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckoutRequest {
    sku: String,
    checkout_type: CheckoutType,
    key_fingerprint: String,
    entitlements: Vec<(String, Option<String>, EntitlementUnit)>,
    beneficiary: Option<String>,
    node_id: Option<String>,
}

impl Licensing {
    pub(crate) fn new(specs: &[LicenseSpec]) -> Self {
        Self {
            licenses: specs.iter().map(|s| (s.clone(), s.status)).collect(),
            consumptions: Vec::new(),
            client_tokens: HashMap::new(),
        }
    }

    /// Checks in every provisional consumption whose time ran out on the
    /// simulated clock. Called before every License Manager call and every
    /// read, so a clock jump takes effect at once.
    pub(crate) fn sweep(&mut self, now: SystemTime) {
        for c in &mut self.consumptions {
            if c.state == CheckoutState::Active
                && c.checkout_type == CheckoutType::Provisional
                && c.expiration <= now
            {
                c.state = CheckoutState::Expired;
                c.ended_at = Some(c.expiration);
            }
        }
    }

    /// A license by ARN or config name.
    pub(crate) fn find(&self, arn_or_name: &str) -> Option<usize> {
        self.licenses
            .iter()
            .position(|(s, _)| s.arn == arn_or_name || s.name == arn_or_name)
    }

    /// Replaces a license's entitlements (an upgrade or downgrade by the
    /// seller); active consumptions keep what they hold.
    pub(crate) fn set_entitlements(&mut self, index: usize, entitlements: Vec<EntitlementConfig>) {
        if let Some((spec, _)) = self.licenses.get_mut(index) {
            spec.entitlements = entitlements;
        }
    }

    pub(crate) fn set_status(&mut self, index: usize, status: LicenseStatus) {
        if let Some((_, current)) = self.licenses.get_mut(index) {
            *current = status;
        }
    }

    /// The status a caller sees: a license whose validity ended reads as
    /// `EXPIRED`.
    fn status(&self, index: usize, now: SystemTime) -> LicenseStatus {
        let (spec, status) = &self.licenses[index];
        if *status == LicenseStatus::Available && spec.end.is_some_and(|end| end <= now) {
            LicenseStatus::Expired
        } else {
            *status
        }
    }

    fn in_use(&self, license: usize, entitlement: &str) -> u64 {
        self.consumptions
            .iter()
            .filter(|c| c.license == license && c.state == CheckoutState::Active)
            .flat_map(|c| &c.held)
            .filter(|h| h.name == entitlement)
            .map(|h| h.count)
            .sum()
    }

    /// The inspection view.
    pub(crate) fn view(&mut self, now: SystemTime) -> LicensesView {
        self.sweep(now);
        let licenses = (0..self.licenses.len())
            .map(|i| {
                let (spec, _) = &self.licenses[i];
                LicenseInfo {
                    name: spec.name.clone(),
                    arn: spec.arn.clone(),
                    sku: spec.sku.clone(),
                    status: self.status(i, now),
                    begin: timestamp::epoch_secs(spec.begin),
                    end: spec.end.map(timestamp::epoch_secs),
                    entitlements: spec
                        .entitlements
                        .iter()
                        .map(|e| {
                            let in_use = self.in_use(i, &e.name);
                            EntitlementUsage {
                                name: e.name.clone(),
                                unit: e.unit,
                                value: e.value.clone(),
                                max_count: e.max_count,
                                overage: e.overage,
                                allow_check_in: e.allow_check_in,
                                in_use,
                                available: e.max_count.map(|max| {
                                    u64::try_from(max).unwrap_or(0).saturating_sub(in_use)
                                }),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let checkouts = self
            .consumptions
            .iter()
            .map(|c| Checkout {
                license_consumption_token: c.token.clone(),
                license_arn: self.licenses[c.license].0.arn.clone(),
                checkout_type: c.checkout_type,
                access_key_id: c.access_key_id.clone(),
                node_id: c.node_id.clone(),
                client_token: c.client_token.clone(),
                entitlements: c.held.clone(),
                issued_at: timestamp::epoch_secs(c.issued_at),
                expiration: timestamp::epoch_secs(c.expiration),
                state: c.state,
                ended_at: c.ended_at.map(timestamp::epoch_secs),
                extensions: c.extensions,
            })
            .collect();
        LicensesView {
            licenses,
            checkouts,
        }
    }

    fn active(&self, token: &str) -> Option<usize> {
        self.consumptions
            .iter()
            .position(|c| c.token == token && c.state == CheckoutState::Active)
    }
}

/// "1 validation error detected: ..." in the style AWS's validation uses.
fn validation(member: &str, constraint: &str) -> String {
    format!(
        "1 validation error detected: Value at '{member}' failed to satisfy constraint: {constraint}"
    )
}

fn required_str<'a, E: Copy>(
    input: Input<'a>,
    member: &str,
    invalid: E,
) -> Result<&'a str, Failure<E>> {
    input
        .str(member)
        .map_err(|m| Failure::new(invalid, m))?
        .ok_or_else(|| Failure::new(invalid, validation(member, "Member must not be null")))
}

fn parse_unit<E: Copy>(
    text: &str,
    member: &str,
    invalid: E,
) -> Result<EntitlementUnit, Failure<E>> {
    EntitlementUnit::from_wire(text).ok_or_else(|| {
        let names: Vec<&str> = EntitlementUnit::ALL.iter().map(|u| u.as_str()).collect();
        Failure::new(
            invalid,
            validation(
                member,
                &format!("Member must satisfy enum value set: [{}]", names.join(", ")),
            ),
        )
    })
}

fn parse_checkout(
    input: Input<'_>,
) -> Result<(CheckoutRequest, String), Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let sku = required_str(input, "ProductSKU", E::ValidationException)?;
    let checkout_type = match required_str(input, "CheckoutType", E::ValidationException)? {
        "PROVISIONAL" => CheckoutType::Provisional,
        "PERPETUAL" => CheckoutType::Perpetual,
        _ => {
            return Err(fail(
                E::ValidationException,
                validation(
                    "CheckoutType",
                    "Member must satisfy enum value set: [PROVISIONAL, PERPETUAL]",
                ),
            ));
        }
    };
    let key_fingerprint = required_str(input, "KeyFingerprint", E::ValidationException)?;
    let list = input
        .list("Entitlements")
        .map_err(|m| fail(E::ValidationException, m))?
        .ok_or_else(|| {
            fail(
                E::ValidationException,
                validation("Entitlements", "Member must not be null"),
            )
        })?;
    let mut entitlements = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = format!("Entitlements.{}", i + 1);
        let data = Input::structure(item, &what).map_err(|m| fail(E::ValidationException, m))?;
        let name = required_str(data, "Name", E::ValidationException)?;
        let value = data
            .str("Value")
            .map_err(|m| fail(E::ValidationException, m))?;
        let unit = required_str(data, "Unit", E::ValidationException)?;
        let unit = parse_unit(unit, &format!("{what}.Unit"), E::ValidationException)?;
        entitlements.push((name.to_owned(), value.map(str::to_owned), unit));
    }
    let client_token = required_str(input, "ClientToken", E::ValidationException)?;
    if !constraints::is_lm_client_token(client_token) {
        return Err(fail(
            E::ValidationException,
            validation(
                "ClientToken",
                "Member must have length less than or equal to 2048 and satisfy regular expression pattern: \\S+",
            ),
        ));
    }
    let beneficiary = input
        .str("Beneficiary")
        .map_err(|m| fail(E::ValidationException, m))?;
    let node_id = input
        .str("NodeId")
        .map_err(|m| fail(E::ValidationException, m))?;
    let request = CheckoutRequest {
        sku: sku.to_owned(),
        checkout_type,
        key_fingerprint: key_fingerprint.to_owned(),
        entitlements,
        beneficiary: beneficiary.map(str::to_owned),
        node_id: node_id.map(str::to_owned),
    };
    Ok((request, client_token.to_owned()))
}

type CheckoutResult = Result<Value, Failure<CheckoutLicenseError>>;

/// `CheckoutLicense`.
pub(crate) fn checkout_license(call: &Call<'_>, state: &mut State) -> CheckoutResult {
    use CheckoutLicenseError as E;
    let (request, client_token) = parse_checkout(call.input)?;
    let now = call.now;
    let licensing = &mut state.licensing;
    licensing.sweep(now);

    // A retried checkout (same ClientToken) must not take a second seat.
    if let Some(&index) = licensing.client_tokens.get(&client_token) {
        let previous = &licensing.consumptions[index];
        if previous.state == CheckoutState::Active {
            if previous.request == request {
                return Ok(previous.response.clone());
            }
            return Err(fail(
                E::ValidationException,
                format!(
                    "ClientToken {client_token:?} was already used for a checkout with different parameters."
                ),
            ));
        }
    }

    let license = choose_license(licensing, &request, now)?;
    let held = allow(licensing, license, &request.entitlements)?;
    let spec = &licensing.licenses[license].0;
    let token = ids::hex::<16>();
    let expiration = now + PROVISIONAL_TTL;
    let signed_token = signed_token(
        &call.catalog.issuer,
        &held,
        &request,
        &token,
        &spec.arn,
        now,
        expiration,
    )
    .map_err(|e| fail(E::ServerInternalException, e.to_string()))?;
    let response = checkout_response(
        &request,
        &held,
        &token,
        signed_token,
        &spec.arn,
        now,
        expiration,
    );

    licensing.consumptions.push(Consumption {
        token,
        license,
        checkout_type: request.checkout_type,
        access_key_id: call.caller.access_key_id.clone(),
        node_id: request.node_id.clone(),
        client_token: client_token.clone(),
        request,
        held,
        issued_at: now,
        expiration,
        state: CheckoutState::Active,
        ended_at: None,
        extensions: 0,
        response: response.clone(),
    });
    licensing
        .client_tokens
        .insert(client_token, licensing.consumptions.len() - 1);
    Ok(response)
}

/// The license a checkout draws on: the newest usable one with the SKU and
/// issuer fingerprint.
fn choose_license(
    licensing: &Licensing,
    request: &CheckoutRequest,
    now: SystemTime,
) -> Result<usize, Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let candidates: Vec<usize> = (0..licensing.licenses.len())
        .filter(|&i| licensing.licenses[i].0.sku == request.sku)
        .collect();
    if candidates.is_empty() {
        return Err(fail(
            E::ResourceNotFoundException,
            format!("No license found for ProductSKU {:?}.", request.sku),
        ));
    }
    let from_issuer: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| licensing.licenses[i].0.key_fingerprint == request.key_fingerprint)
        .collect();
    if from_issuer.is_empty() {
        return Err(fail(
            E::ResourceNotFoundException,
            format!(
                "No license for ProductSKU {:?} was issued with KeyFingerprint {:?}.",
                request.sku, request.key_fingerprint
            ),
        ));
    }
    let usable = |i: &usize| {
        let spec = &licensing.licenses[*i].0;
        licensing.status(*i, now) == LicenseStatus::Available
            && spec.begin <= now
            && spec.end.is_none_or(|end| now < end)
    };
    let Some(license) = from_issuer
        .iter()
        .copied()
        .filter(usable)
        .max_by_key(|&i| licensing.licenses[i].0.begin)
    else {
        let reasons: Vec<String> = from_issuer
            .iter()
            .map(|&i| unusable_reason(&licensing.licenses[i].0, licensing.status(i, now), now))
            .collect();
        return Err(fail(
            E::NoEntitlementsAllowedException,
            format!("No Entitlements Allowed: {}", reasons.join("; ")),
        ));
    };

    Ok(license)
}

/// The `CheckoutLicense` response.
fn checkout_response(
    request: &CheckoutRequest,
    held: &[HeldEntitlement],
    token: &str,
    signed_token: String,
    arn: &str,
    now: SystemTime,
    expiration: SystemTime,
) -> Value {
    let allowed: Vec<Value> = held
        .iter()
        .map(|h| {
            let mut e = Map::new();
            e.insert("Name".to_owned(), Value::from(h.name.clone()));
            if let Some(value) = &h.value {
                e.insert("Value".to_owned(), Value::from(value.clone()));
            }
            e.insert("Unit".to_owned(), Value::from(h.unit.as_str()));
            Value::Object(e)
        })
        .collect();
    let mut response = Map::new();
    response.insert(
        "CheckoutType".to_owned(),
        Value::from(request.checkout_type.as_str()),
    );
    response.insert("LicenseConsumptionToken".to_owned(), Value::from(token));
    response.insert("EntitlementsAllowed".to_owned(), Value::Array(allowed));
    response.insert("SignedToken".to_owned(), Value::from(signed_token));
    if let Some(node) = &request.node_id {
        response.insert("NodeId".to_owned(), Value::from(node.clone()));
    }
    response.insert("IssuedAt".to_owned(), Value::from(timestamp::iso8601(now)));
    response.insert(
        "Expiration".to_owned(),
        Value::from(timestamp::iso8601(expiration)),
    );
    response.insert("LicenseArn".to_owned(), Value::from(arn));
    Value::Object(response)
}

fn unusable_reason(spec: &LicenseSpec, status: LicenseStatus, now: SystemTime) -> String {
    if status != LicenseStatus::Available {
        format!("license {} is {}", spec.arn, status.as_str())
    } else if now < spec.begin {
        format!(
            "license {} is not valid before {}",
            spec.arn,
            timestamp::iso8601(spec.begin)
        )
    } else {
        format!("license {} is no longer valid", spec.arn)
    }
}

/// Decides which requested entitlements the license allows and how much of
/// each is taken.
fn allow(
    licensing: &Licensing,
    license: usize,
    requested: &[(String, Option<String>, EntitlementUnit)],
) -> Result<Vec<HeldEntitlement>, Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let spec = &licensing.licenses[license].0;
    let mut held: Vec<HeldEntitlement> = Vec::new();
    let mut refused = Vec::new();
    for (name, value, unit) in requested {
        let Some(entitlement) = spec.entitlements.iter().find(|e| e.name == *name) else {
            refused.push(format!("{name} is not an entitlement of the license"));
            continue;
        };
        if entitlement.unit != *unit {
            refused.push(format!(
                "{name} has unit {} on the license, the request asked for {}",
                entitlement.unit.as_str(),
                unit.as_str()
            ));
            continue;
        }
        if *unit == EntitlementUnit::None {
            held.push(HeldEntitlement {
                name: name.clone(),
                unit: *unit,
                value: entitlement.value.clone().or_else(|| value.clone()),
                count: 0,
            });
            continue;
        }
        let count = match value.as_deref() {
            None => 1,
            Some(text) => text.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Failure::new(
                    E::InvalidParameterValueException,
                    format!("Entitlement {name} asks for Value {text:?}; a counted unit takes a whole number of at least 1."),
                )
            })?,
        };
        let in_use = licensing.in_use(license, name)
            + held
                .iter()
                .filter(|h| h.name == *name)
                .map(|h| h.count)
                .sum::<u64>();
        if fits(entitlement, in_use, count) {
            held.push(HeldEntitlement {
                name: name.clone(),
                unit: *unit,
                value: Some(count.to_string()),
                count,
            });
        } else {
            refused.push(format!(
                "{name}: {in_use} of {} in use, {count} more requested",
                entitlement.max_count.unwrap_or(0)
            ));
        }
    }
    if held.is_empty() {
        return Err(Failure::new(
            E::NoEntitlementsAllowedException,
            format!("No Entitlements Allowed: {}", refused.join("; ")),
        ));
    }
    Ok(held)
}

fn fits(entitlement: &EntitlementConfig, in_use: u64, count: u64) -> bool {
    let max = entitlement
        .max_count
        .and_then(|m| u64::try_from(m).ok())
        .unwrap_or(0);
    entitlement.overage || in_use.saturating_add(count) <= max
}

/// The `SignedToken`: a compact JWS, PS256, by the license issuer's key,
/// over the plaintext fields License Manager's guide lists
/// (`entitlementsAllowed`, `expiration`, `issuedAt`, `licenseArn`,
/// `licenseConsumptionToken`, `nodeId`, `checkoutMetadata`). The model
/// requires at least 4096 characters, so when the token is shorter its
/// payload gets a `padding` claim of `-` characters, which verifiers ignore.
fn signed_token(
    issuer: &Issuer,
    held: &[HeldEntitlement],
    request: &CheckoutRequest,
    token: &str,
    arn: &str,
    now: SystemTime,
    expiration: SystemTime,
) -> Result<String, KeyError> {
    let header = json!({"alg": "PS256", "typ": "JWT", "kid": issuer.key_fingerprint});
    let entitlements: Vec<Value> = held
        .iter()
        .map(|h| json!({"name": h.name, "unit": h.unit.as_str(), "value": h.value}))
        .collect();
    let mut claims = Map::new();
    claims.insert("entitlementsAllowed".to_owned(), Value::Array(entitlements));
    claims.insert(
        "expiration".to_owned(),
        Value::from(timestamp::iso8601(expiration)),
    );
    claims.insert("issuedAt".to_owned(), Value::from(timestamp::iso8601(now)));
    claims.insert("licenseArn".to_owned(), Value::from(arn));
    claims.insert("licenseConsumptionToken".to_owned(), Value::from(token));
    claims.insert(
        "nodeId".to_owned(),
        request.node_id.clone().map_or(Value::Null, Value::from),
    );
    claims.insert(
        "checkoutMetadata".to_owned(),
        json!({
            "checkoutType": request.checkout_type.as_str(),
            "productSKU": request.sku,
            "keyFingerprint": request.key_fingerprint,
            "issuer": issuer.name,
        }),
    );
    let mut signed = jws::sign(&issuer.key, &header, &Value::Object(claims.clone()))?;
    while signed.len() < SIGNED_TOKEN_MIN_LEN {
        // base64url turns 3 payload bytes into 4 characters, so this many
        // bytes more is enough in one round; the loop is only a guard.
        let missing = SIGNED_TOKEN_MIN_LEN - signed.len();
        let current = claims
            .get("padding")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        claims.insert(
            "padding".to_owned(),
            Value::from("-".repeat(current + missing * 3 / 4 + 1)),
        );
        signed = jws::sign(&issuer.key, &header, &Value::Object(claims.clone()))?;
    }
    Ok(signed)
}

/// `ExtendLicenseConsumption`.
pub(crate) fn extend_license_consumption(
    call: &Call<'_>,
    state: &mut State,
) -> Result<Value, Failure<ExtendLicenseConsumptionError>> {
    use ExtendLicenseConsumptionError as E;
    let input = call.input;
    let token = required_str(input, "LicenseConsumptionToken", E::ValidationException)?;
    let dry_run = input
        .bool("DryRun")
        .map_err(|m| Failure::new(E::ValidationException, m))?
        .unwrap_or(false);
    let licensing = &mut state.licensing;
    licensing.sweep(call.now);
    let index = licensing.active(token).ok_or_else(|| {
        Failure::new(
            E::ResourceNotFoundException,
            format!(
                "License consumption {token} not found: it was checked in, expired after 60 minutes, or never existed."
            ),
        )
    })?;
    let consumption = &mut licensing.consumptions[index];
    if !dry_run {
        consumption.expiration = call.now + PROVISIONAL_TTL;
        consumption.extensions += 1;
    }
    Ok(json!({
        "LicenseConsumptionToken": consumption.token,
        "Expiration": timestamp::iso8601(consumption.expiration),
    }))
}

/// `CheckInLicense`.
pub(crate) fn check_in_license(
    call: &Call<'_>,
    state: &mut State,
) -> Result<Value, Failure<CheckInLicenseError>> {
    use CheckInLicenseError as E;
    let input = call.input;
    let token = required_str(input, "LicenseConsumptionToken", E::ValidationException)?;
    input
        .str("Beneficiary")
        .map_err(|m| Failure::new(E::ValidationException, m))?;
    let licensing = &mut state.licensing;
    licensing.sweep(call.now);
    let index = licensing.active(token).ok_or_else(|| {
        Failure::new(
            E::ResourceNotFoundException,
            format!(
                "License consumption {token} not found: it was already checked in, expired after 60 minutes, or never existed."
            ),
        )
    })?;
    let spec = &licensing.licenses[licensing.consumptions[index].license].0;
    // Drawdown entitlements (AllowCheckIn false) cannot be given back.
    if let Some(locked) = licensing.consumptions[index].held.iter().find(|h| {
        h.count > 0
            && spec
                .entitlements
                .iter()
                .any(|e| e.name == h.name && !e.allow_check_in)
    }) {
        return Err(Failure::new(
            E::ConflictException,
            format!(
                "Entitlement {} of license {} does not allow check-in.",
                locked.name, spec.arn
            ),
        ));
    }
    let consumption = &mut licensing.consumptions[index];
    consumption.state = CheckoutState::CheckedIn;
    consumption.ended_at = Some(call.now);
    Ok(json!({}))
}

/// `GetLicense`.
pub(crate) fn get_license(
    call: &Call<'_>,
    state: &mut State,
) -> Result<Value, Failure<GetLicenseError>> {
    use GetLicenseError as E;
    let input = call.input;
    let arn = required_str(input, "LicenseArn", E::ValidationException)?;
    if !constraints::is_arn(arn) {
        return Err(Failure::new(
            E::ValidationException,
            validation(
                "LicenseArn",
                "Member must satisfy regular expression pattern: ^arn:aws[a-zA-Z-]*:...$",
            ),
        ));
    }
    let version = input
        .str("Version")
        .map_err(|m| Failure::new(E::ValidationException, m))?;
    let licensing = &mut state.licensing;
    licensing.sweep(call.now);
    let index = licensing
        .licenses
        .iter()
        .position(|(s, _)| s.arn == arn)
        .ok_or_else(|| {
            Failure::new(
                E::InvalidParameterValueException,
                format!("License {arn} not found."),
            )
        })?;
    let spec = &licensing.licenses[index].0;
    if version.is_some_and(|v| v != spec.version) {
        return Err(Failure::new(
            E::InvalidParameterValueException,
            format!(
                "License {arn} has no version {:?}.",
                version.unwrap_or_default()
            ),
        ));
    }
    Ok(json!({"License": license_json(spec, licensing.status(index, call.now))}))
}

/// A checked `ListReceivedLicenses` request.
struct ListRequest<'a> {
    arns: Option<Vec<&'a str>>,
    filters: Vec<(&'a str, &'a str)>,
    page_size: usize,
    offset: usize,
}

fn parse_list(input: Input<'_>) -> Result<ListRequest<'_>, Failure<ListReceivedLicensesError>> {
    use ListReceivedLicensesError as E;
    let arns = match input
        .list("LicenseArns")
        .map_err(|m| fail(E::ValidationException, m))?
    {
        Some(list) => {
            let mut arns = Vec::with_capacity(list.len());
            for v in list {
                let arn = v
                    .as_str()
                    .filter(|a| constraints::is_arn(a))
                    .ok_or_else(|| {
                        fail(
                            E::ValidationException,
                            validation("LicenseArns", "Member must be a list of ARNs"),
                        )
                    })?;
                arns.push(arn);
            }
            Some(arns)
        }
        None => None,
    };
    let mut filters = Vec::new();
    for (i, item) in input
        .list("Filters")
        .map_err(|m| fail(E::ValidationException, m))?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let filter = Input::structure(item, &format!("Filters.{}", i + 1))
            .map_err(|m| fail(E::ValidationException, m))?;
        let name = filter
            .str("Name")
            .map_err(|m| fail(E::ValidationException, m))?
            .unwrap_or_default();
        if !FILTER_NAMES.contains(&name) {
            return Err(fail(
                E::InvalidParameterValueException,
                format!(
                    "Filter name {name:?} is not supported; use one of {} (case-sensitive).",
                    FILTER_NAMES.join(", ")
                ),
            ));
        }
        let values = filter
            .list("Values")
            .map_err(|m| fail(E::ValidationException, m))?
            .unwrap_or_default();
        let [value] = values else {
            return Err(fail(
                E::InvalidParameterValueException,
                format!(
                    "Filter {name} takes exactly one value, got {}.",
                    values.len()
                ),
            ));
        };
        let value = value.as_str().ok_or_else(|| {
            fail(
                E::ValidationException,
                format!("Filter {name} values must be strings"),
            )
        })?;
        filters.push((name, value));
    }
    let page_size = match input
        .int("MaxResults")
        .map_err(|m| fail(E::ValidationException, m))?
    {
        None => MAX_PAGE,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                fail(
                    E::ValidationException,
                    validation("maxResults", "Member must have value between 1 and 100"),
                )
            })?,
    };
    let offset = match input
        .str("NextToken")
        .map_err(|m| fail(E::ValidationException, m))?
    {
        None => 0,
        Some(token) => decode_next_token(token)
            .ok_or_else(|| fail(E::InvalidParameterValueException, "Invalid NextToken."))?,
    };

    Ok(ListRequest {
        arns,
        filters,
        page_size,
        offset,
    })
}

/// `ListReceivedLicenses`.
pub(crate) fn list_received_licenses(
    call: &Call<'_>,
    state: &mut State,
) -> Result<Value, Failure<ListReceivedLicensesError>> {
    let ListRequest {
        arns,
        filters,
        page_size,
        offset,
    } = parse_list(call.input)?;
    let licensing = &mut state.licensing;
    licensing.sweep(call.now);
    let now = call.now;
    let mut matching: Vec<usize> = (0..licensing.licenses.len())
        .filter(|&i| {
            let spec = &licensing.licenses[i].0;
            let status = licensing.status(i, now);
            arns.as_ref().is_none_or(|a| a.contains(&spec.arn.as_str()))
                && filters.iter().all(|(name, value)| match *name {
                    "ProductSKU" => spec.sku == *value,
                    "Status" => status.as_str() == *value,
                    "Fingerprint" => spec.key_fingerprint == *value,
                    "IssuerName" => spec.issuer_name == *value,
                    _ => spec.beneficiary == *value,
                })
        })
        .collect();
    matching.sort_by(|a, b| {
        licensing.licenses[*a]
            .0
            .arn
            .cmp(&licensing.licenses[*b].0.arn)
    });
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|&i| {
            let spec = &licensing.licenses[i].0;
            let mut license = license_json(spec, licensing.status(i, now));
            license.insert(
                "ReceivedMetadata".to_owned(),
                json!({
                    "ReceivedStatus": "ACTIVE",
                    "AllowedOperations": [
                        "CheckoutLicense",
                        "CheckInLicense",
                        "ExtendConsumptionLicense",
                        "ListReceivedLicenses"
                    ],
                }),
            );
            Value::Object(license)
        })
        .collect();
    let mut output = Map::new();
    output.insert("Licenses".to_owned(), Value::Array(page));
    if offset + page_size < matching.len() {
        output.insert(
            "NextToken".to_owned(),
            Value::from(encode_next_token(offset + page_size)),
        );
    }
    Ok(Value::Object(output))
}

fn encode_next_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("mgsim:{offset}"))
}

fn decode_next_token(token: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("mgsim:")?
        .parse()
        .ok()
}

/// A `License` structure.
fn license_json(spec: &LicenseSpec, status: LicenseStatus) -> Map<String, Value> {
    let entitlements: Vec<Value> = spec
        .entitlements
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("Name".to_owned(), Value::from(e.name.clone()));
            if let Some(value) = &e.value {
                m.insert("Value".to_owned(), Value::from(value.clone()));
            }
            if let Some(max) = e.max_count {
                m.insert("MaxCount".to_owned(), Value::from(max));
            }
            m.insert("Overage".to_owned(), Value::from(e.overage));
            m.insert("Unit".to_owned(), Value::from(e.unit.as_str()));
            m.insert("AllowCheckIn".to_owned(), Value::from(e.allow_check_in));
            Value::Object(m)
        })
        .collect();
    let mut validity = Map::new();
    validity.insert(
        "Begin".to_owned(),
        Value::from(timestamp::iso8601(spec.begin)),
    );
    if let Some(end) = spec.end {
        validity.insert("End".to_owned(), Value::from(timestamp::iso8601(end)));
    }
    let mut license = Map::new();
    license.insert("LicenseArn".to_owned(), Value::from(spec.arn.clone()));
    license.insert(
        "LicenseName".to_owned(),
        Value::from(spec.license_name.clone()),
    );
    license.insert(
        "ProductName".to_owned(),
        Value::from(spec.product_name.clone()),
    );
    license.insert("ProductSKU".to_owned(), Value::from(spec.sku.clone()));
    license.insert(
        "Issuer".to_owned(),
        json!({"Name": spec.issuer_name, "KeyFingerprint": spec.key_fingerprint}),
    );
    license.insert(
        "HomeRegion".to_owned(),
        Value::from(spec.home_region.clone()),
    );
    license.insert("Status".to_owned(), Value::from(status.as_str()));
    license.insert("Validity".to_owned(), Value::Object(validity));
    license.insert(
        "Beneficiary".to_owned(),
        Value::from(spec.beneficiary.clone()),
    );
    license.insert("Entitlements".to_owned(), Value::Array(entitlements));
    license.insert(
        "ConsumptionConfiguration".to_owned(),
        json!({
            "RenewType": "None",
            "ProvisionalConfiguration": {"MaxTimeToLiveInMinutes": PROVISIONAL_TTL.as_secs() / 60},
        }),
    );
    license.insert("LicenseMetadata".to_owned(), json!([]));
    license.insert(
        "CreateTime".to_owned(),
        Value::from(timestamp::iso8601(spec.begin)),
    );
    license.insert("Version".to_owned(), Value::from(spec.version.clone()));
    license
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_next_token(&encode_next_token(42)), Some(42));
        assert_eq!(decode_next_token("garbage!"), None);
        assert_eq!(decode_next_token(&URL_SAFE_NO_PAD.encode("other:1")), None);
    }

    #[test]
    fn overage_lets_counts_exceed_the_maximum() {
        let mut e = EntitlementConfig {
            name: "Seats".to_owned(),
            unit: EntitlementUnit::Count,
            value: None,
            max_count: Some(2),
            overage: false,
            allow_check_in: true,
        };
        assert!(fits(&e, 1, 1));
        assert!(!fits(&e, 2, 1));
        e.overage = true;
        assert!(fits(&e, 2, 1));
    }
}
