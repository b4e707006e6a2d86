//! Where the AWS credentials come from, and whether AWS Marketplace takes
//! them.
//!
//! AWS Marketplace Metering accepts only the ECS task role and, on EKS, IAM
//! roles for service accounts (IRSA); "EKS Pod Identity, the node role, or
//! long-term access keys are not supported" (seller guide,
//! container-metering-registerusage and container-metering-meterusage;
//! docs/aws-rules.md, "Credentials"). The SDK's default chain signs with
//! whatever it finds first, and AWS's answer to the wrong kind does not say
//! why. So start-up resolves the credentials once before the first AWS call,
//! names their source in the log and in `status()`, and warns, with the
//! fix, when the source is one Metering refuses.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::meta::ProviderChainError;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_types::region::Region;

use crate::catalog::Pricing;

/// The name the runtime gives the `dev` builds' static credentials.
const DEV_PROVIDER: &str = "marketgate-dev";

/// ECS's credentials endpoint for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// A full URL of a container credentials endpoint (EKS Pod Identity's agent,
/// or another).
const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";

/// Where the credentials that sign AWS calls came from: the link of the AWS
/// SDK's default credentials chain that answered (or the `dev` builds'
/// static credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`: usually long-term
    /// access keys, which AWS Marketplace Metering refuses.
    Environment,
    /// A profile in the AWS config or credentials file (static keys, SSO, a
    /// credential process or a role assumed from one of them).
    Profile,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`: on EKS, an IAM role
    /// for the pod's service account (IRSA), which AWS Marketplace accepts.
    WebIdentity,
    /// The ECS task role, from the ECS agent's endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), which AWS Marketplace
    /// accepts.
    EcsTaskRole,
    /// EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` at the Pod
    /// Identity agent (`169.254.170.23` or `fd00:ec2::23`), which AWS
    /// Marketplace Metering refuses.
    EksPodIdentity,
    /// Another container credentials endpoint named by
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (loopback or HTTPS).
    ContainerEndpoint,
    /// EC2 instance metadata (IMDS): the node's or container instance's
    /// role, which AWS Marketplace Metering refuses.
    InstanceMetadata,
    /// Static credentials set with `Options::credentials` (`dev` builds, for
    /// the simulator).
    DevStatic,
    /// Credentials the runtime cannot place, or none resolved yet.
    Unknown,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialSource::Environment => {
                "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            }
            CredentialSource::Profile => "an AWS config or credentials file profile",
            CredentialSource::WebIdentity => {
                "web identity (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
            }
            CredentialSource::EcsTaskRole => {
                "the ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
            }
            CredentialSource::EksPodIdentity => {
                "EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI at the Pod Identity agent)"
            }
            CredentialSource::ContainerEndpoint => {
                "a container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
            }
            CredentialSource::InstanceMetadata => {
                "EC2 instance metadata (IMDS: the node's instance role)"
            }
            CredentialSource::DevStatic => "static development credentials (Options::credentials)",
            CredentialSource::Unknown => "an unknown source",
        })
    }
}

/// What AWS Marketplace is documented to do with a source, for the product's
/// pricing model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The ECS task role or IRSA (Metering), or any source (License Manager).
    Accepted,
    /// Documented as not supported: EKS Pod Identity, the node role.
    Refused,
    /// Depends on what the credentials are (long-term keys are refused).
    Unverified,
}

impl CredentialSource {
    /// What AWS Marketplace does with this source for `pricing`. The
    /// restriction is documented for Metering (`RegisterUsage`,
    /// `MeterUsage`); License Manager's `CheckoutLicense` takes any IAM
    /// principal with the consumption policy.
    pub(crate) fn verdict(self, pricing: Pricing) -> Verdict {
        if pricing == Pricing::Contract {
            return Verdict::Accepted;
        }
        match self {
            CredentialSource::WebIdentity
            | CredentialSource::EcsTaskRole
            | CredentialSource::DevStatic => Verdict::Accepted,
            CredentialSource::EksPodIdentity | CredentialSource::InstanceMetadata => {
                Verdict::Refused
            }
            CredentialSource::Environment
            | CredentialSource::Profile
            | CredentialSource::ContainerEndpoint
            | CredentialSource::Unknown => Verdict::Unverified,
        }
    }

    /// What to do instead, for a source AWS Marketplace Metering refuses (or
    /// may refuse).
    pub(crate) fn fix(self) -> &'static str {
        match self {
            CredentialSource::EksPodIdentity => {
                "give the pod an IAM role through IRSA: annotate its Kubernetes ServiceAccount \
                 with eks.amazonaws.com/role-arn set to the role's ARN (the role trusting the \
                 cluster's OIDC provider); IRSA comes before Pod Identity in the AWS SDK's chain, \
                 so the Pod Identity association may stay"
            }
            CredentialSource::InstanceMetadata => {
                "on EKS, annotate the pod's Kubernetes ServiceAccount with \
                 eks.amazonaws.com/role-arn set to an IAM role's ARN (IRSA); on ECS, give the \
                 task definition a task role (taskRoleArn), not only the container instance's \
                 role"
            }
            _ => {
                "use the ECS task role (taskRoleArn in the task definition) or, on EKS, IRSA \
                 (annotate the pod's Kubernetes ServiceAccount with eks.amazonaws.com/role-arn); \
                 remove AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_PROFILE from the \
                 container"
            }
        }
    }

    /// Places credentials resolved by the default chain: by the provider
    /// that produced them (the SDK records it on the credentials), and for
    /// container endpoints by the endpoint `env` names.
    pub(crate) fn of(
        credentials: &aws_credential_types::Credentials,
        env: impl Fn(&str) -> Option<String>,
    ) -> CredentialSource {
        use AwsCredentialFeature as F;
        let features: &[AwsCredentialFeature] = credentials
            .get_property::<Vec<AwsCredentialFeature>>()
            .map_or(&[], Vec::as_slice);
        let has = |f: &AwsCredentialFeature| features.contains(f);
        // A profile wraps the provider it configures (which records itself
        // too): the profile is the source.
        if [
            F::CredentialsProfile,
            F::CredentialsProfileSourceProfile,
            F::CredentialsProfileNamedProvider,
            F::CredentialsProfileSso,
            F::CredentialsProfileProcess,
            F::CredentialsProfileLogin,
            F::CredentialsSso,
            F::CredentialsProcess,
        ]
        .iter()
        .any(has)
        {
            CredentialSource::Profile
        } else if has(&F::CredentialsProfileStsWebIdToken)
            || has(&F::CredentialsEnvVarsStsWebIdToken)
            || has(&F::CredentialsStsAssumeRoleWebId)
        {
            CredentialSource::WebIdentity
        } else if has(&F::CredentialsHttp) {
            container_source(env(RELATIVE_URI), env(FULL_URI))
        } else if has(&F::CredentialsImds) {
            CredentialSource::InstanceMetadata
        } else if has(&F::CredentialsEnvVars) {
            CredentialSource::Environment
        } else {
            CredentialSource::Unknown
        }
    }
}

/// The container endpoint the ECS provider used: the relative URI (ECS's
/// agent) wins over the full URI, as in the SDK.
fn container_source(relative: Option<String>, full: Option<String>) -> CredentialSource {
    if relative.is_some_and(|r| !r.is_empty()) {
        return CredentialSource::EcsTaskRole;
    }
    let Some(full) = full else {
        return CredentialSource::ContainerEndpoint;
    };
    let host = full
        .parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
    match host.and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(ip) if ip == IpAddr::from([169, 254, 170, 23]) => CredentialSource::EksPodIdentity,
        Some(ip) if ip == IpAddr::from([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23]) => {
            CredentialSource::EksPodIdentity
        }
        Some(ip) if ip == IpAddr::from([169, 254, 170, 2]) => CredentialSource::EcsTaskRole,
        _ => CredentialSource::ContainerEndpoint,
    }
}

/// The provider both clients sign with: the `dev` builds' static pair, or
/// the SDK's default chain for `region`.
pub(crate) async fn provider(
    region: &Region,
    static_credentials: Option<(String, String)>,
) -> SharedCredentialsProvider {
    match static_credentials {
        Some((key, secret)) => dev_static(key, secret),
        None => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(region.clone())
                .build()
                .await,
        ),
    }
}

/// Static credentials (`dev` builds and simulations).
pub(crate) fn dev_static(key: String, secret: String) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        key,
        secret,
        None,
        None,
        DEV_PROVIDER,
    ))
}

/// What resolving the credentials at start-up found.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Credentials from `source`.
    From(CredentialSource),
    /// The chain found none, or is misconfigured: what each link said.
    Nothing(String),
    /// A provider failed in a way that may pass (an endpoint not answering
    /// yet): the calls will retry.
    Failed(String),
}

/// Resolves `provider` once (at most `limit`), as the first AWS call will.
pub(crate) async fn resolve(
    provider: &SharedCredentialsProvider,
    is_static: bool,
    limit: Duration,
) -> Resolved {
    let Ok(result) = tokio::time::timeout(limit, provider.provide_credentials()).await else {
        return Resolved::Failed(format!(
            "the AWS credentials chain did not answer within {limit:?}"
        ));
    };
    match result {
        Ok(_) if is_static => Resolved::From(CredentialSource::DevStatic),
        Ok(credentials) => Resolved::From(CredentialSource::of(&credentials, |v| {
            std::env::var(v).ok()
        })),
        Err(e @ CredentialsError::CredentialsNotLoaded(_)) => Resolved::Nothing(tried(&e)),
        Err(e @ CredentialsError::InvalidConfiguration(_)) => Resolved::Nothing(format!(
            "a provider is misconfigured: {}",
            super::failure::error_chain(&e)
        )),
        Err(e) => Resolved::Failed(super::failure::error_chain(&e)),
    }
}

/// Each link the default chain tried and what it said.
fn tried(error: &CredentialsError) -> String {
    let attempts = error
        .source()
        .and_then(|s| s.downcast_ref::<ProviderChainError<CredentialsError>>());
    match attempts {
        Some(chain_error) if !chain_error.attempts().is_empty() => chain_error
            .attempts()
            .iter()
            .map(|a| {
                let why = a
                    .error()
                    .source()
                    .map_or_else(|| a.error().to_string(), super::failure::error_chain);
                format!("{}: {why}", a.name())
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => super::failure::error_chain(error),
    }
}

/// The warning for `source` under `pricing`, if any: always for a source
/// Metering refuses; for one that may be refused (long-term keys, a
/// profile) only when the calls go to AWS (the simulator accepts any).
pub(crate) fn warning(source: CredentialSource, pricing: Pricing, to_aws: bool) -> Option<String> {
    match source.verdict(pricing) {
        Verdict::Refused => Some(format!(
            "the AWS credentials come from {source}, which AWS Marketplace Metering does not \
             accept: RegisterUsage and MeterUsage must be signed with the ECS task role or, on \
             EKS, an IAM role for the service account (IRSA). To fix it, {}",
            source.fix()
        )),
        Verdict::Unverified if to_aws => Some(format!(
            "the AWS credentials come from {source}; AWS Marketplace Metering accepts only the \
             ECS task role or, on EKS, IRSA (long-term access keys, EKS Pod Identity and the \
             node role are refused). If start-up is refused, {}",
            source.fix()
        )),
        Verdict::Accepted | Verdict::Unverified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(features: &[AwsCredentialFeature]) -> aws_credential_types::Credentials {
        let mut credentials =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        credentials.set_property(features.to_vec());
        credentials
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn each_provider_is_placed_by_what_it_records_on_the_credentials() {
        use AwsCredentialFeature as F;
        for (features, source) in [
            (vec![F::CredentialsEnvVars], CredentialSource::Environment),
            (
                vec![F::CredentialsProfileStsWebIdToken],
                CredentialSource::WebIdentity,
            ),
            (vec![F::CredentialsImds], CredentialSource::InstanceMetadata),
            (
                vec![
                    F::CredentialsImds,
                    F::CredentialsStsAssumeRole,
                    F::CredentialsProfile,
                ],
                CredentialSource::Profile,
            ),
            (vec![], CredentialSource::Unknown),
        ] {
            assert_eq!(CredentialSource::of(&with(&features), no_env), source);
        }
    }

    #[test]
    fn container_endpoints_are_told_apart_by_their_address() {
        let http = with(&[AwsCredentialFeature::CredentialsHttp]);
        let env = |relative: Option<&'static str>, full: Option<&'static str>| {
            move |v: &str| match v {
                RELATIVE_URI => relative.map(str::to_owned),
                FULL_URI => full.map(str::to_owned),
                _ => None,
            }
        };
        for (relative, full, source) in [
            (
                Some("/v2/credentials/x"),
                None,
                CredentialSource::EcsTaskRole,
            ),
            (
                Some("/v2/credentials/x"),
                Some("http://169.254.170.23/v1/credentials"),
                CredentialSource::EcsTaskRole,
            ),
            (
                None,
                Some("http://169.254.170.23/v1/credentials"),
                CredentialSource::EksPodIdentity,
            ),
            (
                None,
                Some("http://[fd00:ec2::23]/v1/credentials"),
                CredentialSource::EksPodIdentity,
            ),
            (
                None,
                Some("http://169.254.170.2/creds"),
                CredentialSource::EcsTaskRole,
            ),
            (
                None,
                Some("http://127.0.0.1:8080/creds"),
                CredentialSource::ContainerEndpoint,
            ),
        ] {
            assert_eq!(
                CredentialSource::of(&http, env(relative, full)),
                source,
                "{relative:?} {full:?}"
            );
        }
    }

    #[test]
    fn metering_refuses_pod_identity_and_the_node_role_and_license_manager_does_not() {
        for refused in [
            CredentialSource::EksPodIdentity,
            CredentialSource::InstanceMetadata,
        ] {
            for pricing in [Pricing::Hourly, Pricing::Monthly, Pricing::Custom] {
                assert_eq!(refused.verdict(pricing), Verdict::Refused);
                let text = warning(refused, pricing, false).expect("a warning");
                assert!(text.contains("eks.amazonaws.com/role-arn"), "{text}");
            }
            assert_eq!(refused.verdict(Pricing::Contract), Verdict::Accepted);
            assert_eq!(warning(refused, Pricing::Contract, true), None);
        }
        for accepted in [CredentialSource::WebIdentity, CredentialSource::EcsTaskRole] {
            assert_eq!(accepted.verdict(Pricing::Hourly), Verdict::Accepted);
            assert_eq!(warning(accepted, Pricing::Custom, true), None);
        }
        // Keys in the environment: warned about against AWS, not against
        // the simulator (which is how every simulator run signs).
        let env = CredentialSource::Environment;
        assert!(
            warning(env, Pricing::Hourly, true)
                .is_some_and(|w| w.contains("long-term access keys"))
        );
        assert_eq!(warning(env, Pricing::Hourly, false), None);
    }
}
