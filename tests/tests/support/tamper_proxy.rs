//! A man in the middle on loopback: forwards AWS requests to the simulator
//! after rewriting their JSON body, as an attacker who controls DNS or the
//! network path could.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Sets a top-level member of a JSON request body.
pub(crate) fn replace_member(body: &[u8], member: &str, value: &str) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(object) = json.as_object_mut()
        && object.contains_key(member)
    {
        object.insert(member.to_owned(), serde_json::Value::from(value));
    }
    serde_json::to_vec(&json).unwrap_or_default()
}

/// Starts the proxy; returns its endpoint URL.
pub(crate) async fn start<F>(upstream: &str, rewrite: F) -> String
where
    F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream: hyper::Uri = upstream.parse().expect("upstream");
    let rewrite = Arc::new(rewrite);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (rewrite, client, upstream) =
                (Arc::clone(&rewrite), client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (rewrite, client, upstream) =
                        (Arc::clone(&rewrite), client.clone(), upstream.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let body = rewrite(&body);
                        let mut uri = upstream.into_parts();
                        uri.path_and_query = parts.uri.path_and_query().cloned();
                        parts.uri = hyper::Uri::from_parts(uri).expect("uri");
                        parts.headers.remove(hyper::header::CONTENT_LENGTH);
                        parts.headers.remove(hyper::header::HOST);
                        let forwarded = Request::from_parts(parts, Full::new(Bytes::from(body)));
                        let response = match client.request(forwarded).await {
                            Ok(response) => {
                                let (parts, body) = response.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(http_body_util::Collected::to_bytes)
                                    .unwrap_or_default();
                                Response::from_parts(parts, Full::new(body))
                            }
                            Err(_) => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::BAD_GATEWAY;
                                r
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}
