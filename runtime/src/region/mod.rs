//! Which AWS Region the task runs in.
//!
//! Never configured by the seller and never hard-coded: `RegisterUsage` must
//! be called in the Region where the task or pod was launched
//! (`InvalidRegionException` otherwise; docs/aws-rules.md, "Region"). Sources,
//! in order:
//! `AWS_REGION`, `AWS_DEFAULT_REGION` (ECS sets both; the EKS pod-identity
//! webhook may), the ECS task metadata endpoint v4 (`TaskARN` or
//! `AvailabilityZone`), then EC2 IMDSv2 (`placement/region`).

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where the Region came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// The `AWS_REGION` environment variable.
    AwsRegion,
    /// The `AWS_DEFAULT_REGION` environment variable.
    AwsDefaultRegion,
    /// The ECS task metadata endpoint v4.
    EcsTaskMetadata,
    /// EC2 instance metadata (IMDSv2).
    Imds,
    /// Set explicitly (`dev` builds only).
    Configured,
}

impl fmt::Display for RegionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionSource::AwsRegion => "AWS_REGION",
            RegionSource::AwsDefaultRegion => "AWS_DEFAULT_REGION",
            RegionSource::EcsTaskMetadata => "ECS task metadata (ECS_CONTAINER_METADATA_URI_V4)",
            RegionSource::Imds => "EC2 instance metadata (IMDSv2)",
            RegionSource::Configured => "development options",
        })
    }
}

/// A Region and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRegion {
    /// The Region name, e.g. `us-east-1`.
    pub region: String,
    /// Where it came from.
    pub source: RegionSource,
}

/// No source named a Region. Lists every source and why it gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot determine the AWS Region this task runs in; tried: {}. On ECS, AWS_REGION is set \
     for you; on EKS set AWS_REGION in the pod spec (or give the node IMDSv2 a hop limit of 2)",
    .tried.iter().map(|(s, why)| format!("{s}: {why}")).collect::<Vec<_>>().join("; ")
)]
pub struct RegionError {
    /// Each source with the reason it gave no Region.
    pub tried: Vec<(RegionSource, String)>,
}

/// The inputs of Region discovery, read from the environment by
/// [`RegionSources::from_env`] (the tests in `discovery_tests.rs` build them
/// directly, pointing the metadata sources at fakes on loopback).
#[derive(Debug, Clone)]
pub(crate) struct RegionSources {
    /// `AWS_REGION`.
    pub(crate) aws_region: Option<String>,
    /// `AWS_DEFAULT_REGION`.
    pub(crate) aws_default_region: Option<String>,
    /// `ECS_CONTAINER_METADATA_URI_V4`.
    pub(crate) ecs_metadata_uri: Option<String>,
    /// IMDS base URL; `None` when IMDS is disabled (`AWS_EC2_METADATA_DISABLED`).
    pub(crate) imds_endpoint: Option<String>,
    /// Timeout of each metadata request.
    pub(crate) timeout: Duration,
}

const IMDS_DEFAULT: &str = "http://169.254.169.254";

fn non_empty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

impl RegionSources {
    /// Reads the sources from the process environment.
    #[must_use]
    pub(crate) fn from_env() -> Self {
        let imds_disabled =
            non_empty("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        RegionSources {
            aws_region: non_empty("AWS_REGION"),
            aws_default_region: non_empty("AWS_DEFAULT_REGION"),
            ecs_metadata_uri: non_empty("ECS_CONTAINER_METADATA_URI_V4"),
            imds_endpoint: (!imds_disabled).then(|| {
                non_empty("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                    .unwrap_or_else(|| IMDS_DEFAULT.to_owned())
            }),
            timeout: Duration::from_secs(2),
        }
    }

    /// Finds the Region, trying each source in order.
    ///
    /// # Errors
    /// [`RegionError`] naming every source tried, when none gives a Region.
    pub(crate) async fn discover(&self) -> Result<DiscoveredRegion, RegionError> {
        let mut tried = Vec::new();
        let env = [
            (RegionSource::AwsRegion, &self.aws_region),
            (RegionSource::AwsDefaultRegion, &self.aws_default_region),
        ];
        for (source, value) in env {
            match value {
                Some(v) if is_region_name(v.trim()) => {
                    return Ok(DiscoveredRegion {
                        region: v.trim().to_owned(),
                        source,
                    });
                }
                Some(v) => tried.push((source, format!("`{v}` is not a Region name"))),
                None => tried.push((source, "not set".to_owned())),
            }
        }
        match &self.ecs_metadata_uri {
            Some(uri) => match self.ecs_region(uri).await {
                Ok(region) => {
                    return Ok(DiscoveredRegion {
                        region,
                        source: RegionSource::EcsTaskMetadata,
                    });
                }
                Err(why) => tried.push((RegionSource::EcsTaskMetadata, why)),
            },
            None => tried.push((
                RegionSource::EcsTaskMetadata,
                "ECS_CONTAINER_METADATA_URI_V4 not set (not on ECS)".to_owned(),
            )),
        }
        match &self.imds_endpoint {
            Some(endpoint) => match self.imds_region(endpoint).await {
                Ok(region) => {
                    return Ok(DiscoveredRegion {
                        region,
                        source: RegionSource::Imds,
                    });
                }
                Err(why) => tried.push((RegionSource::Imds, why)),
            },
            None => tried.push((
                RegionSource::Imds,
                "disabled by AWS_EC2_METADATA_DISABLED".to_owned(),
            )),
        }
        Err(RegionError { tried })
    }

    async fn ecs_region(&self, base: &str) -> Result<String, String> {
        let url = format!("{}/task", base.trim_end_matches('/'));
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URI `{url}`: {e}"))?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = async {
            let response = client.get(uri).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| format!("{url} did not answer within {:?}", self.timeout))??;
        region_from_task_metadata(&body)
    }

    async fn imds_region(&self, endpoint: &str) -> Result<String, String> {
        let client = aws_config::imds::Client::builder()
            .endpoint(endpoint)
            .map_err(|e| format!("bad IMDS endpoint `{endpoint}`: {e}"))?
            .max_attempts(1)
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .build();
        let region = tokio::time::timeout(
            self.timeout * 3,
            client.get("/latest/meta-data/placement/region"),
        )
        .await
        .map_err(|_| {
            format!("{endpoint} did not answer; inside a container IMDSv2 needs a hop limit of 2")
        })?
        .map_err(|e| format!("{e}"))?;
        let region = region.as_ref().trim().to_owned();
        if is_region_name(&region) {
            Ok(region)
        } else {
            Err(format!("answered `{region}`, which is not a Region name"))
        }
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, ...
fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// The Region in an ECS task metadata v4 `/task` document: from `TaskARN`
/// (`arn:aws:ecs:<region>:<account>:task/...`), else `AvailabilityZone`
/// (Fargate; `us-east-1a` → `us-east-1`).
fn region_from_task_metadata(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Task {
        #[serde(rename = "TaskARN")]
        task_arn: Option<String>,
        #[serde(rename = "AvailabilityZone")]
        availability_zone: Option<String>,
    }
    let task: Task = serde_json::from_slice(body)
        .map_err(|e| format!("task metadata is not the expected JSON: {e}"))?;
    if let Some(region) = task
        .task_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(3))
        .filter(|r| is_region_name(r))
    {
        return Ok(region.to_owned());
    }
    if let Some(region) = task
        .availability_zone
        .as_deref()
        .map(|az| az.trim_end_matches(|c: char| c.is_ascii_lowercase()))
        .filter(|r| is_region_name(r))
    {
        return Ok(region.to_owned());
    }
    Err("task metadata has neither a TaskARN nor an AvailabilityZone with a Region".to_owned())
}

#[cfg(test)]
mod discovery_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-5",
        ] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "us-east-1a",
            "-east-1",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn task_metadata_documents() {
        let arn = br#"{"Cluster":"c","TaskARN":"arn:aws:ecs:eu-west-3:123456789012:task/c/abc"}"#;
        assert_eq!(region_from_task_metadata(arn), Ok("eu-west-3".to_owned()));
        let az = br#"{"TaskARN":"garbage","AvailabilityZone":"us-west-2b"}"#;
        assert_eq!(region_from_task_metadata(az), Ok("us-west-2".to_owned()));
        assert!(region_from_task_metadata(b"{}").is_err());
        assert!(region_from_task_metadata(b"not json").is_err());
    }
}
