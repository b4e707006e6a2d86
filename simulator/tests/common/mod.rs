//! Helpers shared by the integration tests: real AWS SDK clients pointed at
//! a simulator, with static dummy credentials and retries off unless a test
//! asks for them.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_licensemanager as lm;
use aws_sdk_marketplacemetering as metering;
use marketgate_simulator::{Config, Simulator};

/// The Region of the example config's task.
pub(crate) const REGION: &str = "us-east-1";
/// The example config's products.
pub(crate) const PRO: &str = "mgsim-pro-hourly";
pub(crate) const COMMUNITY: &str = "mgsim-community-free";
pub(crate) const USAGE: &str = "mgsim-usage-custom";
pub(crate) const ENTERPRISE_SKU: &str = "8e6f1d2c-4b3a-4f5e-9d8c-7b6a5f4e3d2c";
pub(crate) const FINGERPRINT: &str = "aws:294406891311:AWS/Marketplace:issuer-fingerprint";

/// 2026-11-26T12:00:00Z, an hour start.
pub(crate) fn noon() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_694_400)
}

/// A simulator running the example config with its clock frozen at `at`.
pub(crate) async fn start_at(at: SystemTime) -> Simulator {
    start_with(Config::example(), at).await
}

/// A simulator running `config` with its clock frozen at `at`.
pub(crate) async fn start_with(mut config: Config, at: SystemTime) -> Simulator {
    config.clock.start = Some(at);
    config.clock.frozen = true;
    Simulator::start(config).await.expect("simulator starts")
}

/// Which client settings a test wants.
#[derive(Debug, Clone)]
pub(crate) struct Client<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) region: &'a str,
    pub(crate) retries: bool,
}

impl Default for Client<'_> {
    fn default() -> Self {
        Self {
            access_key_id: "AKIDSIMULATORTASK1",
            region: REGION,
            retries: false,
        }
    }
}

impl Client<'_> {
    pub(crate) fn key(access_key_id: &str) -> Client<'_> {
        Client {
            access_key_id,
            ..Client::default()
        }
    }

    async fn sdk_config(&self, sim: &Simulator) -> aws_config::SdkConfig {
        let retry = if self.retries {
            // Real backoff would slow the suite down; the count is what matters.
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5))
        } else {
            RetryConfig::disabled()
        };
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.to_owned()))
            .credentials_provider(Credentials::new(
                self.access_key_id,
                "secret",
                None,
                None,
                "marketgate-simulator-tests",
            ))
            .endpoint_url(sim.endpoint())
            .retry_config(retry)
            .load()
            .await
    }

    pub(crate) async fn metering(&self, sim: &Simulator) -> metering::Client {
        metering::Client::new(&self.sdk_config(sim).await)
    }

    pub(crate) async fn license_manager(&self, sim: &Simulator) -> lm::Client {
        lm::Client::new(&self.sdk_config(sim).await)
    }
}

/// A metering client for the default task.
pub(crate) async fn metering_client(sim: &Simulator) -> metering::Client {
    Client::default().metering(sim).await
}

/// A License Manager client for the default task.
pub(crate) async fn lm_client(sim: &Simulator) -> lm::Client {
    Client::default().license_manager(sim).await
}

/// A time as the SDK's `DateTime`.
pub(crate) fn sdk_time(t: SystemTime) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from(t)
}

/// Splits a compact JWS and decodes its header and payload.
pub(crate) fn decode_jws(token: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS has three parts: {token}");
    let json = |part: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    };
    (
        json(parts[0]),
        json(parts[1]),
        URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url"),
        format!("{}.{}", parts[0], parts[1]),
    )
}

/// Verifies a PS256 signature with a `SubjectPublicKeyInfo` PEM public key.
pub(crate) fn verify_ps256(public_pem: &str, signing_input: &str, signature: &[u8]) -> bool {
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
    use base64::Engine;
    let body: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body");
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, der)
        .verify(signing_input.as_bytes(), signature)
        .is_ok()
}
