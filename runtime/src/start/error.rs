//! Why start-up refused, with what to do about it.

use std::time::Duration;

use super::options::{PRODUCT_CODE_ENV, STARTUP_TIMEOUT_ENV};
use crate::aws::AwsFailure;
use crate::aws::credentials::CredentialSource;
use crate::aws::transport::endpoints::EndpointError;
use crate::entitlement::InstallError;
use crate::region::{RegionError, RegionSource};
use crate::signature::SignatureError;

/// Why the process may not start. Every message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Call sites disagree with the catalog (or another catalog is installed).
    #[error(transparent)]
    Catalog(#[from] InstallError),
    /// `start` was called while the runtime is already running.
    #[error("marketgate is already started in this process; start it once (or shut down first)")]
    AlreadyStarted,
    /// Several products are trusted and none was selected.
    #[error(
        "{PRODUCT_CODE_ENV} is not set and this binary trusts several products: {trusted}; \
         set it to the product code of the listing this container runs under"
    )]
    NoProductSelected {
        /// The trusted products.
        trusted: String,
    },
    /// The selected product code is not one the binary trusts.
    #[error(
        "{PRODUCT_CODE_ENV}=`{code}` is not a product this binary trusts; trusted products: \
         {trusted}"
    )]
    UnknownProduct {
        /// The code given.
        code: String,
        /// The trusted products.
        trusted: String,
    },
    /// No Region could be determined.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The Region cannot be turned into AWS endpoints.
    #[error("{error} (the Region came from {region_source})")]
    Endpoint {
        /// What is wrong with it.
        error: EndpointError,
        /// Where it came from.
        region_source: RegionSource,
    },
    /// Whatever answered at AWS's address is not AWS.
    #[error(
        "{0}. Something between this task and AWS is impersonating it: an intercepting (TLS \
         inspecting) proxy named by HTTPS_PROXY or ALL_PROXY, a custom certificate authority, or \
         a DNS or /etc/hosts override of the AWS host name. Remove it, or let the proxy tunnel \
         the connection (CONNECT) without inspecting it"
    )]
    UntrustedPeer(AwsFailure),
    /// The AWS credentials chain found nothing.
    #[error(
        "no AWS credentials ({0}): give the ECS task a task role, or the EKS pod an IAM role \
         through IRSA, with the AWS Marketplace policy for its pricing model \
         (AWSMarketplaceMeteringRegisterUsage, AWSMarketplaceMeteringFullAccess or \
         AWSLicenseManagerConsumptionPolicy)"
    )]
    Credentials(AwsFailure),
    /// The AWS SDK's default credentials chain found no credentials (or a
    /// link of it is misconfigured), before any AWS call.
    #[error(
        "no AWS credentials: the AWS SDK's default chain tried {tried}. Give the ECS task a task \
         role (taskRoleArn), or the EKS pod an IAM role through IRSA (annotate its Kubernetes \
         ServiceAccount with eks.amazonaws.com/role-arn), with the AWS Marketplace policy for \
         its pricing model (AWSMarketplaceMeteringRegisterUsage, \
         AWSMarketplaceMeteringFullAccess or AWSLicenseManagerConsumptionPolicy)"
    )]
    NoCredentials {
        /// Each link of the chain and what it said.
        tried: String,
    },
    /// AWS refused the start-up call and the credentials come from a source
    /// AWS Marketplace Metering does not accept (EKS Pod Identity, the node
    /// role): that is the likely reason, and AWS's answer does not say so.
    #[error(
        "AWS refused start-up verification ({failure}); the AWS credentials come from \
         {credentials}, which AWS Marketplace Metering does not accept (only the ECS task role \
         or, on EKS, IRSA). To fix it, {}",
        .credentials.fix()
    )]
    RefusedCredentials {
        /// Where the credentials came from.
        credentials: CredentialSource,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS says this is not ECS, EKS or Fargate.
    #[error(
        "not running on Amazon ECS, Amazon EKS or AWS Fargate with task-role or IRSA \
         credentials ({0}); AWS Marketplace answers only there. For local runs use the \
         simulator: start `marketgate-sim` and run a build with the `dev` feature and \
         MARKETGATE_ENDPOINT set to it"
    )]
    NotOnAws(AwsFailure),
    /// The Region called is not the task's.
    #[error(
        "AWS Marketplace was called in {region} (from {region_source}) but this task runs in \
         another Region ({failure}); never hard-code the Region: on ECS AWS_REGION is set for \
         you, on EKS set it in the pod spec"
    )]
    RegionMismatch {
        /// The Region used.
        region: String,
        /// Where it came from.
        region_source: RegionSource,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The buyer is not subscribed.
    #[error(
        "the buyer's AWS account is not subscribed to product `{product}` ({failure}); \
         subscribe in AWS Marketplace, or deploy with the product code they subscribed to"
    )]
    NotSubscribed {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS does not know the product code.
    #[error(
        "AWS does not recognise code `{code}` of product `{product}` ({failure}); check \
         Marketplace.toml against the AWS Marketplace Management Portal"
    )]
    InvalidProductCode {
        /// Product name.
        product: &'static str,
        /// Its code.
        code: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS rejected the public key version.
    #[error(
        "AWS rejected public key version {version} of product `{product}` ({failure}); put the \
         current key and version from the AWS Marketplace Management Portal in Marketplace.toml"
    )]
    InvalidPublicKeyVersion {
        /// Product name.
        product: &'static str,
        /// The version sent.
        version: u32,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// AWS rejected a metering dimension.
    #[error(
        "AWS rejected a metering dimension of product `{product}` ({failure}); the manifest's \
         dimensions must be the listing's dimension API names"
    )]
    InvalidDimension {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The license allows none of the requested entitlements.
    #[error(
        "the buyer's license for product `{product}` allows none of the requested \
         entitlements ({failure}): the contract expired or was suspended, or every seat is in \
         use"
    )]
    NotLicensed {
        /// Product name.
        product: &'static str,
        /// AWS's answer.
        failure: AwsFailure,
    },
    /// The RegisterUsage signature failed verification.
    #[error("start-up verification of product `{product}` failed: {source}")]
    Signature {
        /// Product name.
        product: &'static str,
        /// What was wrong.
        source: SignatureError,
    },
    /// Transient failures until the start-up budget ran out.
    #[error(
        "AWS did not answer successfully within the start-up budget ({elapsed:?}, {attempts} \
         attempts); last failure: {last}. Check that the task can reach AWS endpoints \
         (the budget is {STARTUP_TIMEOUT_ENV})"
    )]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        last: AwsFailure,
    },
    /// Any other refusal from AWS.
    #[error("AWS refused start-up verification: {0}")]
    Aws(AwsFailure),
    /// The runtime's background thread could not run.
    #[error("marketgate's background thread failed: {0}")]
    Runtime(String),
}
