//! Reading licenses: `GetLicense` and `ListReceivedLicenses`, and the
//! `License` structure both return.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::state::PROVISIONAL_TTL;
use crate::catalog::LicenseSpec;
use crate::config::LicenseStatus;
use crate::constraints;
use crate::operation::{Failure, GetLicenseError, ListReceivedLicensesError, fail};
use crate::protocol::{Call, Input, Output, validation};
use crate::state::State;
use crate::timestamp;

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

/// `GetLicense`.
pub(crate) fn get_license(call: &Call<'_>, state: &mut State) -> Output<GetLicenseError> {
    use GetLicenseError as E;
    let input = call.input;
    let arn = input.required_str("LicenseArn", E::ValidationException)?;
    if !constraints::is_arn(arn) {
        return Err(Failure::new(
            E::ValidationException,
            validation(
                "LicenseArn",
                "Member must satisfy regular expression pattern: ^arn:aws[a-zA-Z-]*:...$",
            ),
        ));
    }
    let version = input.str("Version", E::ValidationException)?;
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
    let arns = match input.list("LicenseArns", E::ValidationException)? {
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
        .list("Filters", E::ValidationException)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let filter = Input::structure(item, &format!("Filters.{}", i + 1), E::ValidationException)?;
        let name = filter
            .str("Name", E::ValidationException)?
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
            .list("Values", E::ValidationException)?
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
    let page_size = match input.int("MaxResults", E::ValidationException)? {
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
    let offset = match input.str("NextToken", E::ValidationException)? {
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
) -> Output<ListReceivedLicensesError> {
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
}
