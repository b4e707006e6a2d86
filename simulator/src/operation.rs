//! The operations the simulator serves and, per operation, the error shapes
//! it can answer with.
//!
//! Each operation's handler returns a [`Failure`] of that operation's own
//! error enum, so it cannot answer with a shape the enum does not list. The
//! enums list only shapes the service model declares for the operation, and
//! `tests/model_errors.rs` checks that against the models.

use serde::{Deserialize, Serialize};

/// One of the two emulated services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// AWS Marketplace Metering Service.
    Metering,
    /// AWS License Manager.
    LicenseManager,
}

impl Service {
    /// The `X-Amz-Target` prefix (the model's `targetPrefix`).
    #[must_use]
    pub fn target_prefix(self) -> &'static str {
        match self {
            Self::Metering => "AWSMPMeteringService",
            Self::LicenseManager => "AWSLicenseManager",
        }
    }

    /// The `SigV4` signing name the credential scope must carry. Metering's is
    /// `aws-marketplace`, not its endpoint prefix `metering.marketplace`
    /// (<https://github.com/aws/aws-sdk-go/issues/1034>).
    #[must_use]
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::Metering => "aws-marketplace",
            Self::LicenseManager => "license-manager",
        }
    }

    /// The member error bodies carry their text in: Metering's shapes declare
    /// `message`, License Manager's `Message`.
    pub(crate) fn message_member(self) -> &'static str {
        match self {
            Self::Metering => "message",
            Self::LicenseManager => "Message",
        }
    }

    /// The shape this service throttles with.
    pub(crate) fn throttling_shape(self) -> &'static str {
        match self {
            Self::Metering => "ThrottlingException",
            Self::LicenseManager => "RateLimitExceededException",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        [Self::Metering, Self::LicenseManager]
            .into_iter()
            .find(|s| s.target_prefix() == prefix)
    }
}

/// An operation the simulator emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// Metering `RegisterUsage`.
    RegisterUsage,
    /// Metering `MeterUsage`.
    MeterUsage,
    /// License Manager `CheckoutLicense`.
    CheckoutLicense,
    /// License Manager `ExtendLicenseConsumption`.
    ExtendLicenseConsumption,
    /// License Manager `CheckInLicense`.
    CheckInLicense,
    /// License Manager `GetLicense`.
    GetLicense,
    /// License Manager `ListReceivedLicenses`.
    ListReceivedLicenses,
}

/// The errors AWS answers any signed API with when authentication fails,
/// whatever the operation.
pub const AUTH_ERROR_CODES: [&str; 4] = [
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
];

/// The authentication and authorization errors any AWS JSON-protocol API can
/// answer, whatever its model declares, with the HTTP status AWS sends them
/// with; [`crate::Fault::Error`] accepts them for every operation.
///
/// Sources: AWS API references' "Common Errors" pages (e.g.
/// <https://docs.aws.amazon.com/emr/latest/APIReference/CommonErrors.html>:
/// `AccessDeniedException` 400, `IncompleteSignature` 400,
/// `MissingAuthenticationToken` 403); a JSON-protocol service's
/// `ExpiredTokenException` on the wire is `HTTP/1.1 400 Bad Request`
/// (<https://github.com/guregu/dynamo/issues/68>); the `DynamoDB` error guide
/// lists `UnrecognizedClientException`, `InvalidSignatureException` and
/// `IncompleteSignatureException` as 400
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html>).
/// Newer "Common Errors" pages give `AccessDeniedException` and
/// `ExpiredTokenException` 403; the older pages and the wire agree on 400.
/// `IncompleteSignature` is the name the common-errors pages use,
/// `IncompleteSignatureException` the one JSON-protocol services send (and
/// the simulator's own authentication answers with): both are accepted.
pub const ACCESS_ERRORS: [(&str, u16); 7] = [
    ("AccessDeniedException", 400),
    ("ExpiredTokenException", 400),
    ("UnrecognizedClientException", 400),
    ("InvalidSignatureException", 400),
    ("IncompleteSignature", 400),
    ("IncompleteSignatureException", 400),
    ("MissingAuthenticationTokenException", 403),
];

/// The error for a request that names no operation the simulator serves
/// (unknown or missing `X-Amz-Target`, wrong method, path or content type).
/// It belongs to no operation, so no model declares it.
pub const UNKNOWN_OPERATION_CODE: &str = "UnknownOperationException";

impl Operation {
    /// Every emulated operation.
    pub const ALL: [Self; 7] = [
        Self::RegisterUsage,
        Self::MeterUsage,
        Self::CheckoutLicense,
        Self::ExtendLicenseConsumption,
        Self::CheckInLicense,
        Self::GetLicense,
        Self::ListReceivedLicenses,
    ];

    /// The operation's model name, as in `X-Amz-Target`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::RegisterUsage => "RegisterUsage",
            Self::MeterUsage => "MeterUsage",
            Self::CheckoutLicense => "CheckoutLicense",
            Self::ExtendLicenseConsumption => "ExtendLicenseConsumption",
            Self::CheckInLicense => "CheckInLicense",
            Self::GetLicense => "GetLicense",
            Self::ListReceivedLicenses => "ListReceivedLicenses",
        }
    }

    /// The service the operation belongs to.
    #[must_use]
    pub fn service(self) -> Service {
        match self {
            Self::RegisterUsage | Self::MeterUsage => Service::Metering,
            _ => Service::LicenseManager,
        }
    }

    /// The member that carries the request's idempotency token, for the
    /// operations that take one.
    pub(crate) fn client_token_member(self) -> Option<&'static str> {
        match self {
            Self::MeterUsage | Self::CheckoutLicense => Some("ClientToken"),
            _ => None,
        }
    }

    /// The operation an `X-Amz-Target` value names, if the simulator serves
    /// it; otherwise the service the prefix names, if any.
    pub(crate) fn from_target(target: &str) -> Result<Self, Option<Service>> {
        let (prefix, name) = target.split_once('.').ok_or(None)?;
        let service = Service::from_prefix(prefix).ok_or(None)?;
        Self::ALL
            .into_iter()
            .find(|op| op.service() == service && op.name() == name)
            .ok_or(Some(service))
    }

    /// Every error shape the simulator can answer this operation with, apart
    /// from [`AUTH_ERROR_CODES`]. Derived from the handler's error enum.
    #[must_use]
    pub fn error_codes(self) -> Vec<&'static str> {
        (self.errors().codes)()
    }

    /// Every error shape the service model declares for the operation (the
    /// botocore models in `shared/aws-models`), including those the
    /// simulator's own handling never answers with; `tests/model_errors.rs`
    /// checks the lists against the models.
    #[must_use]
    pub fn declared_errors(self) -> &'static [&'static str] {
        match self {
            Self::RegisterUsage => &[
                "InvalidProductCodeException",
                "InvalidRegionException",
                "InvalidPublicKeyVersionException",
                "PlatformNotSupportedException",
                "CustomerNotEntitledException",
                "ThrottlingException",
                "InternalServiceErrorException",
                "DisabledApiException",
            ],
            Self::MeterUsage => &[
                "InternalServiceErrorException",
                "InvalidProductCodeException",
                "InvalidUsageDimensionException",
                "InvalidTagException",
                "InvalidUsageAllocationsException",
                "InvalidEndpointRegionException",
                "TimestampOutOfBoundsException",
                "DuplicateRequestException",
                "IdempotencyConflictException",
                "ThrottlingException",
                "CustomerNotEntitledException",
            ],
            Self::CheckoutLicense => &[
                "ValidationException",
                "InvalidParameterValueException",
                "ResourceNotFoundException",
                "NoEntitlementsAllowedException",
                "UnsupportedDigitalSignatureMethodException",
                "RedirectException",
                "AuthorizationException",
                "AccessDeniedException",
                "RateLimitExceededException",
                "ServerInternalException",
            ],
            Self::ExtendLicenseConsumption => &[
                "ValidationException",
                "InvalidParameterValueException",
                "AuthorizationException",
                "AccessDeniedException",
                "RateLimitExceededException",
                "ServerInternalException",
                "ResourceNotFoundException",
            ],
            Self::CheckInLicense => &[
                "ValidationException",
                "InvalidParameterValueException",
                "ResourceNotFoundException",
                "ConflictException",
                "AuthorizationException",
                "AccessDeniedException",
                "RateLimitExceededException",
                "ServerInternalException",
            ],
            Self::GetLicense => &[
                "ValidationException",
                "InvalidParameterValueException",
                "AuthorizationException",
                "AccessDeniedException",
                "RateLimitExceededException",
                "ServerInternalException",
            ],
            Self::ListReceivedLicenses => &[
                "ValidationException",
                "InvalidParameterValueException",
                "ResourceLimitExceededException",
                "ServerInternalException",
                "AuthorizationException",
                "AccessDeniedException",
                "RateLimitExceededException",
            ],
        }
    }

    /// The errors [`crate::Fault::Error`] can make the operation answer with,
    /// and the HTTP status of each: every error its model declares
    /// ([`Operation::declared_errors`]), then the [`ACCESS_ERRORS`] it does
    /// not declare.
    #[must_use]
    pub fn injectable_errors(self) -> Vec<(&'static str, u16)> {
        let declared = self.declared_errors();
        declared
            .iter()
            .map(|&code| (code, shape_status(code)))
            .chain(
                ACCESS_ERRORS
                    .into_iter()
                    .filter(|(code, _)| !declared.contains(code)),
            )
            .collect()
    }

    /// The HTTP status of an error [`crate::Fault::Error`] accepts for this
    /// operation; `None` for any other name.
    #[must_use]
    pub fn error_status(self, code: &str) -> Option<u16> {
        self.injectable_errors()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, status)| status)
    }

    /// The shapes the operation answers with when the answer does not come
    /// from its handler.
    pub(crate) fn generic_shapes(self) -> GenericShapes {
        self.errors().generic
    }

    /// The operation's error enum, as data: the one place that maps an
    /// operation to its handler's error type.
    fn errors(self) -> Errors {
        match self {
            Self::RegisterUsage => Errors::of::<RegisterUsageError>(),
            Self::MeterUsage => Errors::of::<MeterUsageError>(),
            Self::CheckoutLicense => Errors::of::<CheckoutLicenseError>(),
            Self::ExtendLicenseConsumption => Errors::of::<ExtendLicenseConsumptionError>(),
            Self::CheckInLicense => Errors::of::<CheckInLicenseError>(),
            Self::GetLicense => Errors::of::<GetLicenseError>(),
            Self::ListReceivedLicenses => Errors::of::<ListReceivedLicensesError>(),
        }
    }
}

/// The shapes an operation answers with when the answer does not come from
/// its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GenericShapes {
    /// HTTP 500.
    pub(crate) internal: &'static str,
    /// The service's throttling error, which every emulated operation declares.
    pub(crate) throttling: &'static str,
    /// A body that is not a JSON object.
    pub(crate) malformed: &'static str,
}

/// What [`Operation`] needs from an error enum [`ErrorShape`].
struct Errors {
    codes: fn() -> Vec<&'static str>,
    generic: GenericShapes,
}

impl Errors {
    fn of<E: ErrorShape>() -> Self {
        fn codes<E: ErrorShape>() -> Vec<&'static str> {
            E::ALL.iter().map(|e| e.shape()).collect()
        }
        Self {
            codes: codes::<E>,
            generic: GenericShapes {
                internal: E::INTERNAL.shape(),
                throttling: E::by_shape(E::SERVICE.throttling_shape())
                    .unwrap_or(E::INTERNAL)
                    .shape(),
                malformed: E::MALFORMED.shape(),
            },
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|op| op.name()).collect();
                format!(
                    "unknown operation {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// An error enum whose variants are model error shapes.
pub(crate) trait ErrorShape: Copy + 'static {
    /// The service whose model declares the shapes.
    const SERVICE: Service;
    /// Every variant.
    const ALL: &'static [Self];
    /// The variant for a server fault (HTTP 500).
    const INTERNAL: Self;
    /// The variant for a body that is not a JSON object: `ValidationException`
    /// where the model declares it; Metering declares none, so its operations
    /// use the error of their first required member, `ProductCode`.
    const MALFORMED: Self;
    /// The model's shape name, written to `__type`.
    fn shape(self) -> &'static str;

    /// HTTP status; see [`shape_status`].
    fn status(self) -> u16 {
        shape_status(self.shape())
    }

    /// The variant with this shape name, if the operation declares it.
    fn by_shape(shape: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.shape() == shape)
    }
}

/// The HTTP status of a modelled error shape: Smithy's defaults (400 client,
/// 500 server) as no `httpError` is modelled, except
/// `IdempotencyConflictException`, the one shape AWS's Smithy model gives
/// `httpError: 409`.
fn shape_status(shape: &str) -> u16 {
    match shape {
        "InternalServiceErrorException" | "ServerInternalException" => 500,
        "IdempotencyConflictException" => 409,
        _ => 400,
    }
}

/// An operation's error answer: a shape from its enum and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure<E> {
    pub(crate) kind: E,
    pub(crate) message: String,
}

impl<E> Failure<E> {
    pub(crate) fn new(kind: E, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Shorthand for [`Failure::new`].
pub(crate) fn fail<E>(kind: E, message: impl Into<String>) -> Failure<E> {
    Failure::new(kind, message)
}

macro_rules! operation_errors {
    ($(
        $service:ident (internal = $internal:ident, malformed = $malformed:ident) {$(
            $(#[$doc:meta])*
            $name:ident { $($shape:ident),+ $(,)? }
        )*}
    )*) => {$($(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(
            clippy::enum_variant_names,
            reason = "the variants are the model's error shape names, which all end in Exception"
        )]
        pub(crate) enum $name { $($shape),+ }

        impl ErrorShape for $name {
            const SERVICE: Service = Service::$service;
            const ALL: &'static [Self] = &[$(Self::$shape),+];
            const INTERNAL: Self = Self::$internal;
            const MALFORMED: Self = Self::$malformed;
            fn shape(self) -> &'static str {
                match self { $(Self::$shape => stringify!($shape)),+ }
            }
        }
    )*)*};
}

// Per service: its server fault, and what answers a body that is not a JSON
// object (see `ErrorShape::MALFORMED`); then each operation's declared errors.
operation_errors! {
    Metering (internal = InternalServiceErrorException, malformed = InvalidProductCodeException) {
        /// What `RegisterUsage` answers with.
        RegisterUsageError {
            InvalidProductCodeException,
            InvalidRegionException,
            InvalidPublicKeyVersionException,
            PlatformNotSupportedException,
            CustomerNotEntitledException,
            ThrottlingException,
            InternalServiceErrorException,
        }

        /// What `MeterUsage` answers with.
        MeterUsageError {
            InvalidProductCodeException,
            InvalidUsageDimensionException,
            InvalidTagException,
            InvalidUsageAllocationsException,
            InvalidEndpointRegionException,
            TimestampOutOfBoundsException,
            DuplicateRequestException,
            IdempotencyConflictException,
            ThrottlingException,
            CustomerNotEntitledException,
            InternalServiceErrorException,
        }
    }

    LicenseManager (internal = ServerInternalException, malformed = ValidationException) {
        /// What `CheckoutLicense` answers with.
        CheckoutLicenseError {
            ValidationException,
            InvalidParameterValueException,
            ResourceNotFoundException,
            NoEntitlementsAllowedException,
            RateLimitExceededException,
            ServerInternalException,
        }

        /// What `ExtendLicenseConsumption` answers with.
        ExtendLicenseConsumptionError {
            ValidationException,
            ResourceNotFoundException,
            RateLimitExceededException,
            ServerInternalException,
        }

        /// What `CheckInLicense` answers with.
        CheckInLicenseError {
            ValidationException,
            ResourceNotFoundException,
            ConflictException,
            RateLimitExceededException,
            ServerInternalException,
        }

        /// What `GetLicense` answers with. The model declares no
        /// `ResourceNotFoundException` here, so an unknown ARN is an
        /// `InvalidParameterValueException`.
        GetLicenseError {
            ValidationException,
            InvalidParameterValueException,
            RateLimitExceededException,
            ServerInternalException,
        }

        /// What `ListReceivedLicenses` answers with.
        ListReceivedLicensesError {
            ValidationException,
            InvalidParameterValueException,
            RateLimitExceededException,
            ServerInternalException,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_route_to_operations() {
        assert_eq!(
            Operation::from_target("AWSMPMeteringService.MeterUsage"),
            Ok(Operation::MeterUsage)
        );
        assert_eq!(
            Operation::from_target("AWSLicenseManager.CheckoutLicense"),
            Ok(Operation::CheckoutLicense)
        );
        assert_eq!(
            Operation::from_target("AWSMPMeteringService.CheckoutLicense"),
            Err(Some(Service::Metering))
        );
        assert_eq!(
            Operation::from_target("AWSLicenseManager.CreateLicense"),
            Err(Some(Service::LicenseManager))
        );
        assert_eq!(
            Operation::from_target("DynamoDB_20120810.GetItem"),
            Err(None)
        );
        assert_eq!(Operation::from_target("MeterUsage"), Err(None));
    }

    #[test]
    fn every_operation_can_throttle_and_fail_internally_with_its_services_shapes() {
        for op in Operation::ALL {
            let codes = op.error_codes();
            let generic = op.generic_shapes();
            assert_eq!(generic.throttling, op.service().throttling_shape(), "{op}");
            assert!(codes.contains(&generic.malformed), "{op}");
            assert!(codes.contains(&op.service().throttling_shape()), "{op}");
            let internal = match op.service() {
                Service::Metering => "InternalServiceErrorException",
                Service::LicenseManager => "ServerInternalException",
            };
            assert!(codes.contains(&internal), "{op}");
        }
    }

    #[test]
    fn statuses_follow_smithy_defaults_and_the_409() {
        assert_eq!(MeterUsageError::IdempotencyConflictException.status(), 409);
        assert_eq!(MeterUsageError::InternalServiceErrorException.status(), 500);
        assert_eq!(CheckoutLicenseError::ServerInternalException.status(), 500);
        assert_eq!(MeterUsageError::ThrottlingException.status(), 400);
        assert_eq!(
            CheckoutLicenseError::RateLimitExceededException.status(),
            400
        );
    }

    #[test]
    fn operation_names_parse() {
        for op in Operation::ALL {
            assert_eq!(op.name().parse::<Operation>(), Ok(op));
        }
        assert!(
            "Nope"
                .parse::<Operation>()
                .unwrap_err()
                .contains("MeterUsage")
        );
    }
}
