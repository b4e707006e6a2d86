//! The compiled-in rule from a Region to the two services' endpoints.
//!
//! The SDK's own endpoint resolution reads a partition table that the
//! environment can replace (`SMITHY_CLIENT_SDK_CUSTOM_PARTITION` renames a
//! partition's DNS suffix), besides `AWS_ENDPOINT_URL*` and `endpoint_url` in
//! AWS config files. None of that is consulted here: the host names are
//! fixed strings around a Region name that must match AWS's Region pattern,
//! so nothing but the Region — which AWS itself checks against the task's
//! (`InvalidRegionException`, `InvalidEndpointRegionException`) — can
//! change where the runtime connects.
//!
//! Partitions, from the partition table shipped with the SDKs (botocore
//! 1.44.8 `endpoints.json`, the same data as the Rust SDK's
//! `partitions.json`):
//!
//! | partition | Regions | DNS suffix | AWS Marketplace Metering |
//! |---|---|---|---|
//! | `aws` | `^(us\|eu\|ap\|sa\|ca\|me\|af\|il\|mx)-\w+-\d+$` | `amazonaws.com` | yes |
//! | `aws-us-gov` | `^us-gov-\w+-\d+$` | `amazonaws.com` | yes (`us-gov-east-1`, `us-gov-west-1`) |
//! | `aws-cn`, `aws-eusc`, `aws-iso*` | | other suffixes | some |
//!
//! Only `aws` and `aws-us-gov` are served: their endpoints carry Amazon Trust
//! Services certificates, the roots this crate compiles in. The others use
//! other DNS suffixes and certificate authorities, and AWS Marketplace
//! container listings are not sold there; a Region from them is refused with
//! an error that says so rather than sent to a host the rule cannot vouch for.

use std::fmt;

/// The AWS partitions the rule serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partition {
    /// The commercial partition (`aws`).
    Aws,
    /// AWS `GovCloud` (US) (`aws-us-gov`).
    AwsUsGov,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Partition::Aws => "aws",
            Partition::AwsUsGov => "aws-us-gov",
        })
    }
}

/// Where the two services are called for one Region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEndpoints {
    pub(crate) partition: Partition,
    /// `https://metering.marketplace.<region>.amazonaws.com`
    pub(crate) metering: String,
    /// `https://license-manager.<region>.amazonaws.com`
    pub(crate) license_manager: String,
}

/// A Region name the rule cannot turn into AWS endpoints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a Region name at all.
    #[error("`{region}` is not an AWS Region name (expected the form `us-east-1`)")]
    NotARegion {
        /// The value given.
        region: String,
    },
    /// A Region of a partition AWS Marketplace container products are not
    /// served from.
    #[error(
        "Region `{region}` belongs to a partition ({partition}) whose AWS Marketplace endpoints \
         this build does not call; marketgate serves the `aws` and `aws-us-gov` partitions"
    )]
    UnsupportedPartition {
        /// The value given.
        region: String,
        /// The partition it looks like it belongs to.
        partition: &'static str,
    },
}

/// The Region-name prefixes of the `aws` partition (its `regionRegex`).
const AWS_PREFIXES: &[&str] = &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"];

/// The endpoints for `region`, or why there are none.
pub(crate) fn for_region(region: &str) -> Result<ServiceEndpoints, EndpointError> {
    let partition = partition_of(region)?;
    // Both served partitions share the suffix; the rule is still written
    // per partition so that adding one cannot silently reuse it.
    let suffix = match partition {
        Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
    };
    Ok(ServiceEndpoints {
        partition,
        metering: format!("https://metering.marketplace.{region}.{suffix}"),
        license_manager: format!("https://license-manager.{region}.{suffix}"),
    })
}

fn partition_of(region: &str) -> Result<Partition, EndpointError> {
    let not_a_region = || EndpointError::NotARegion {
        region: region.to_owned(),
    };
    let unsupported = |partition| EndpointError::UnsupportedPartition {
        region: region.to_owned(),
        partition,
    };
    // Lower-case letters, digits and dashes only, so that nothing a Region
    // source returns can add a label, a port, a path or user info to a host.
    let labels: Vec<&str> = region.split('-').collect();
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let number = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    match labels.as_slice() {
        ["us", "gov", name, n] if letters(name) && number(n) => Ok(Partition::AwsUsGov),
        [prefix, name, n] if letters(name) && number(n) && letters(prefix) => {
            if AWS_PREFIXES.contains(prefix) {
                Ok(Partition::Aws)
            } else if *prefix == "cn" {
                Err(unsupported("aws-cn"))
            } else {
                Err(not_a_region())
            }
        }
        ["eusc", _, name, n] if letters(name) && number(n) => Err(unsupported("aws-eusc")),
        ["us" | "eu", iso, name, n]
            if iso.starts_with("iso") && letters(iso) && letters(name) && number(n) =>
        {
            Err(unsupported("aws-iso"))
        }
        _ => Err(not_a_region()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commercial_and_govcloud_regions_map_to_amazonaws_hosts() {
        for (region, partition) in [
            ("us-east-1", Partition::Aws),
            ("eu-central-2", Partition::Aws),
            ("ap-southeast-7", Partition::Aws),
            ("mx-central-1", Partition::Aws),
            ("il-central-1", Partition::Aws),
            ("us-gov-west-1", Partition::AwsUsGov),
            ("us-gov-east-1", Partition::AwsUsGov),
        ] {
            let e = for_region(region).expect(region);
            assert_eq!(e.partition, partition, "{region}");
            assert_eq!(
                e.metering,
                format!("https://metering.marketplace.{region}.amazonaws.com")
            );
            assert_eq!(
                e.license_manager,
                format!("https://license-manager.{region}.amazonaws.com")
            );
        }
    }

    #[test]
    fn anything_that_could_change_the_host_is_not_a_region() {
        for bad in [
            "",
            "us-east-1.evil.example",
            "us-east-1/",
            "us-east-1:443",
            "user@us-east-1",
            "US-EAST-1",
            "us-east-1 ",
            "us-east",
            "us-east-123",
            "us_east-1",
            "xx-east-1",
            "us-east-1-",
            "-us-east-1",
            "us--1",
            "us-gov-west",
            "us-gov-west-1.example",
            "us-east-１",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(
                matches!(for_region(bad), Err(EndpointError::NotARegion { .. })),
                "{bad:?} was accepted: {:?}",
                for_region(bad)
            );
        }
    }

    #[test]
    fn other_partitions_are_refused_by_name() {
        for (region, partition) in [
            ("cn-northwest-1", "aws-cn"),
            ("eusc-de-east-1", "aws-eusc"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso"),
            ("eu-isoe-west-1", "aws-iso"),
        ] {
            let err = for_region(region).expect_err(region);
            assert_eq!(
                err,
                EndpointError::UnsupportedPartition {
                    region: region.to_owned(),
                    partition
                }
            );
            assert!(err.to_string().contains(partition));
        }
    }
}
