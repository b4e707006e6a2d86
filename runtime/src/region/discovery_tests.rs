//! Region discovery against fake metadata servers on loopback: every source,
//! the order between them, and the error that lists what was tried.
//! (A unit-test module: `RegionSources` is not part of the public API.)

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{RegionSource, RegionSources};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `answer(method, path, token header)` on an ephemeral loopback port;
/// returns its base URL and the requests it saw.
async fn fake<F>(answer: F) -> (String, Seen)
where
    F: Fn(&str, &str, Option<&str>) -> (StatusCode, String) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Seen = Arc::default();
    let answer = Arc::new(answer);
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let token = req
                        .headers()
                        .get("x-aws-ec2-metadata-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
                    log.lock().expect("log").push(format!("{method} {path}"));
                    let (status, body) = answer(&method, &path, token.as_deref());
                    let is_put = method == "PUT";
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    if is_put {
                        // Real IMDS states the token's lifetime; SDK clients require it.
                        response.headers_mut().insert(
                            "x-aws-ec2-metadata-token-ttl-seconds",
                            hyper::header::HeaderValue::from_static("21600"),
                        );
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn sources() -> RegionSources {
    RegionSources {
        aws_region: None,
        aws_default_region: None,
        ecs_metadata_uri: None,
        imds_endpoint: None,
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn environment_variables_come_first_in_order() {
    let mut s = sources();
    s.aws_default_region = Some("eu-west-1".into());
    let r = s.discover().await.expect("region");
    assert_eq!(
        (r.region.as_str(), r.source),
        ("eu-west-1", RegionSource::AwsDefaultRegion)
    );
    s.aws_region = Some("ap-south-1".into());
    let r = s.discover().await.expect("region");
    assert_eq!(
        (r.region.as_str(), r.source),
        ("ap-south-1", RegionSource::AwsRegion)
    );
}

#[tokio::test]
async fn ecs_task_metadata_gives_the_region_of_the_task_arn() {
    let (url, seen) = fake(|_, path, _| match path {
        "/v4/abc/task" => (
            StatusCode::OK,
            r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:sa-east-1:123456789012:task/c/0123","AvailabilityZone":"sa-east-1b"}"#.to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, String::new()),
    })
    .await;
    let mut s = sources();
    s.ecs_metadata_uri = Some(format!("{url}/v4/abc"));
    let r = s.discover().await.expect("region");
    assert_eq!(
        (r.region.as_str(), r.source),
        ("sa-east-1", RegionSource::EcsTaskMetadata)
    );
    assert_eq!(*seen.lock().expect("log"), ["GET /v4/abc/task"]);
}

#[tokio::test]
async fn imdsv2_needs_a_token_and_gives_the_placement_region() {
    let (url, seen) = fake(|method, path, token| match (method, path, token) {
        ("PUT", "/latest/api/token", _) => (StatusCode::OK, "tok-123".to_owned()),
        ("GET", "/latest/meta-data/placement/region", Some("tok-123")) => {
            (StatusCode::OK, "ca-central-1".to_owned())
        }
        _ => (StatusCode::UNAUTHORIZED, String::new()),
    })
    .await;
    let mut s = sources();
    s.imds_endpoint = Some(url);
    let r = s.discover().await.expect("region");
    assert_eq!(
        (r.region.as_str(), r.source),
        ("ca-central-1", RegionSource::Imds)
    );
    let seen = seen.lock().expect("log").clone();
    assert_eq!(
        seen,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/placement/region"
        ]
    );
}

#[tokio::test]
async fn a_failing_ecs_source_falls_through_to_imds() {
    let (ecs, _) = fake(|_, _, _| (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned())).await;
    let (imds, _) = fake(|method, _, _| match method {
        "PUT" => (StatusCode::OK, "t".to_owned()),
        _ => (StatusCode::OK, "us-west-2".to_owned()),
    })
    .await;
    let mut s = sources();
    s.ecs_metadata_uri = Some(ecs);
    s.imds_endpoint = Some(imds);
    let r = s.discover().await.expect("region");
    assert_eq!(
        (r.region.as_str(), r.source),
        ("us-west-2", RegionSource::Imds)
    );
}

#[tokio::test]
async fn no_region_lists_every_source_tried() {
    // A loopback port nobody listens on: IMDS is unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut s = sources();
    s.aws_region = Some("not a region".into());
    s.imds_endpoint = Some(closed);
    let err = s.discover().await.expect_err("no region");
    let sources: Vec<RegionSource> = err.tried.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sources,
        [
            RegionSource::AwsRegion,
            RegionSource::AwsDefaultRegion,
            RegionSource::EcsTaskMetadata,
            RegionSource::Imds
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("AWS_REGION: `not a region` is not a Region name"),
        "{message}"
    );
    assert!(message.contains("AWS_DEFAULT_REGION: not set"), "{message}");
    assert!(
        message.contains("ECS_CONTAINER_METADATA_URI_V4 not set"),
        "{message}"
    );
    assert!(
        message.contains("EC2 instance metadata (IMDSv2)"),
        "{message}"
    );
}
