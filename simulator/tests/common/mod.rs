//! Helpers shared by the integration tests: real AWS SDK clients pointed at
//! a simulator, with static dummy credentials and retries off unless a test
//! asks for them.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_licensemanager as lm;
use aws_sdk_marketplacemetering as metering;
use aws_sdk_marketplacemetering::error::SdkError;
use aws_sdk_marketplacemetering::operation::meter_usage::{MeterUsageError, MeterUsageOutput};
use aws_sdk_marketplacemetering::operation::register_usage::{
    RegisterUsageError, RegisterUsageOutput,
};
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
    UNIX_EPOCH + Duration::from_hours(498_804)
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

    pub(crate) async fn sdk_config(&self, sim: &Simulator) -> aws_config::SdkConfig {
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

/// `MeterUsage` of `quantity` `api_calls` of the example's custom product
/// for the hour starting at [`noon`].
pub(crate) async fn meter_at_noon(
    client: &metering::Client,
    quantity: i32,
) -> Result<MeterUsageOutput, SdkError<MeterUsageError>> {
    client
        .meter_usage()
        .product_code(USAGE)
        .timestamp(sdk_time(noon()))
        .usage_dimension("api_calls")
        .usage_quantity(quantity)
        .send()
        .await
}

/// `RegisterUsage` of the example's paid hourly product, key version 1.
pub(crate) async fn register_pro(
    client: &metering::Client,
) -> Result<RegisterUsageOutput, SdkError<RegisterUsageError>> {
    client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .send()
        .await
}

/// An SDK error's `is_*` method: which error a case expects.
pub(crate) type Is<E> = fn(&E) -> bool;

/// Checks that a call was refused with the error `is` recognizes (an SDK
/// `is_*` method), and answers the error; `case` names the call in the
/// failure message.
#[track_caller]
pub(crate) fn refused<T: Debug, E: Debug>(result: Result<T, E>, is: Is<E>, case: &str) -> E {
    match result {
        Ok(out) => panic!("{case}: expected an error, got {out:?}"),
        Err(err) => {
            assert!(is(&err), "{case}: {err:?}");
            err
        }
    }
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

/// An HTTP response read off the wire.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// Sends one HTTP/1.1 request to the simulator over a fresh connection and
/// reads the whole response: for what an SDK cannot be made to send.
pub(crate) async fn raw(
    sim: &Simulator,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.local_addr())
        .await
        .expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        sim.local_addr(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An AWS request's headers with a structurally valid (never verified)
/// `SigV4` `Authorization` for `service`.
pub(crate) fn signed(target: &str, service: &str, access_key_id: &str) -> Vec<(String, String)> {
    vec![
        (
            "Content-Type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("X-Amz-Target".to_owned(), target.to_owned()),
        ("X-Amz-Date".to_owned(), "20261126T120000Z".to_owned()),
        (
            "Authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key_id}/20261126/{REGION}/{service}/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                 Signature={}",
                "ab".repeat(32)
            ),
        ),
    ]
}

/// Sends `body` as the operation `target` with `headers`.
pub(crate) async fn raw_aws(
    sim: &Simulator,
    headers: &[(String, String)],
    body: &str,
) -> RawResponse {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    raw(sim, "POST", "/", &headers, body).await
}
