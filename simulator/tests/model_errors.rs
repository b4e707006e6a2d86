//! Checks the simulator against the official service models: every error
//! code it can answer an operation with must be declared by the model for
//! that operation (or be one of AWS's common authentication errors), and the
//! protocol metadata it routes and authenticates by must match.
//!
//! The models are read from `$MARKETGATE_AWS_MODELS` if set, else from
//! `shared/aws-models` next to the workspace.

use std::collections::BTreeSet;
use std::path::PathBuf;

use marketgate_simulator::{AUTH_ERROR_CODES, Operation, Service};
use serde_json::Value;

fn models_dir() -> PathBuf {
    std::env::var_os("MARKETGATE_AWS_MODELS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/aws-models"),
        PathBuf::from,
    )
}

fn model(service: Service) -> Value {
    let file = match service {
        Service::Metering => "meteringmarketplace-2016-01-14.json",
        Service::LicenseManager => "license-manager-2018-08-01.json",
    };
    let path = models_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the AWS service model {}: {e}. Put the botocore models \
             (meteringmarketplace-2016-01-14.json, license-manager-2018-08-01.json) there \
             or set MARKETGATE_AWS_MODELS to the folder that holds them.",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

fn declared_errors(model: &Value, operation: Operation) -> BTreeSet<String> {
    let op = &model["operations"][operation.name()];
    assert!(
        op.is_object(),
        "the model has no operation {operation}: the simulator emulates something that does not exist"
    );
    op["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["shape"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_error_the_simulator_answers_is_declared_for_its_operation() {
    let metering = model(Service::Metering);
    let license_manager = model(Service::LicenseManager);
    let mut undeclared = Vec::new();
    for operation in Operation::ALL {
        let model = match operation.service() {
            Service::Metering => &metering,
            Service::LicenseManager => &license_manager,
        };
        let declared = declared_errors(model, operation);
        let codes = operation.error_codes();
        assert!(!codes.is_empty(), "{operation} answers no error at all?");
        for code in codes {
            if !declared.contains(code) && !AUTH_ERROR_CODES.contains(&code) {
                undeclared.push(format!("{operation}: {code}"));
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "the simulator can answer errors the models do not declare: {undeclared:#?}"
    );
}

#[test]
fn declared_errors_are_exactly_the_models() {
    for operation in Operation::ALL {
        let model = model(operation.service());
        let listed: BTreeSet<String> = operation
            .declared_errors()
            .iter()
            .map(|&code| code.to_owned())
            .collect();
        assert_eq!(
            listed,
            declared_errors(&model, operation),
            "{operation}: Operation::declared_errors must list what the model declares"
        );
        // Fault::Error accepts each of them, with the model's statuses: the
        // server fault is 500, the rest client errors.
        for &code in operation.declared_errors() {
            let shape = &model["shapes"][code];
            let expected = if shape["fault"] == true {
                500
            } else if code == "IdempotencyConflictException" {
                409
            } else {
                400
            };
            assert_eq!(operation.error_status(code), Some(expected), "{code}");
        }
    }
}

#[test]
fn error_shapes_exist_and_carry_the_services_message_member() {
    for operation in Operation::ALL {
        let service = operation.service();
        let model = model(service);
        let member = match service {
            Service::Metering => "message",
            Service::LicenseManager => "Message",
        };
        for code in operation.error_codes() {
            let shape = &model["shapes"][code];
            assert_eq!(shape["exception"], true, "{code} is not an exception shape");
            assert!(
                shape["members"][member].is_object(),
                "{code} of {operation} has no `{member}` member"
            );
        }
    }
}

#[test]
fn routing_and_signing_names_match_the_models() {
    for service in [Service::Metering, Service::LicenseManager] {
        let metadata = &model(service)["metadata"];
        assert_eq!(metadata["targetPrefix"], service.target_prefix());
        assert_eq!(metadata["protocol"], "json");
        assert_eq!(metadata["jsonVersion"], "1.1");
        // Without signingName, SigV4 signs with the endpoint prefix.
        let signing = metadata["signingName"]
            .as_str()
            .or_else(|| metadata["endpointPrefix"].as_str());
        assert_eq!(signing, Some(service.signing_name()), "{service:?}");
    }
}
