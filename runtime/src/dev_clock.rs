//! `dev` builds only: follow the simulator's clock, so that a test can move
//! separate seller processes through simulated hours (`MARKETGATE_DEV_CLOCK=
//! simulator`). Reads `GET <MARKETGATE_ENDPOINT>/_marketgate/clock` every
//! 50 ms and keeps the offset from the local clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::time::Clock;

/// The variable that turns it on.
pub(crate) const DEV_CLOCK_ENV: &str = "MARKETGATE_DEV_CLOCK";

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn offset(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &hyper::Uri,
) -> Option<i64> {
    let response = client.get(url.clone()).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let now = json.get("now")?.as_f64()?;
    #[allow(clippy::cast_possible_truncation)] // epoch milliseconds fit an i64
    let simulated = (now * 1000.0) as i64;
    Some(simulated - millis(SystemTime::now()))
}

/// A clock that follows the simulator at `endpoint`, or `None` when it
/// cannot be read.
pub(crate) async fn follow(endpoint: &str) -> Option<Clock> {
    let url: hyper::Uri = format!("{}/_marketgate/clock", endpoint.trim_end_matches('/'))
        .parse()
        .ok()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let shared = Arc::new(AtomicI64::new(offset(&client, &url).await?));
    let poll = Arc::clone(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(o) = offset(&client, &url).await {
                poll.store(o, Ordering::Relaxed);
            }
        }
    });
    Some(Arc::new(move || {
        let o = shared.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if o >= 0 {
            now + Duration::from_millis(o.unsigned_abs())
        } else {
            now - Duration::from_millis(o.unsigned_abs())
        }
    }))
}
