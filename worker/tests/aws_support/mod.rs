//! Shared set-up of the AWS-path tests: a real S3-compatible server (s3s-fs on a temporary
//! directory, with signature checking) and mapfleet's Rekognition-compatible endpoint, both
//! in-process on 127.0.0.1 port 0, and an SDK configuration with the test credentials.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_s3::config::{Credentials, Region};
use tokio::net::TcpListener;
use worker::endpoint::{Endpoint, EndpointOptions};
use worker::face::FaceEngine;

/// The one key pair the S3 server accepts (it checks SigV4 signatures).
pub const ACCESS_KEY: &str = "mapfleet-test-access-key";
pub const SECRET_KEY: &str = "mapfleet-test-secret-key";

/// The standard chain with the test key pair and region pinned, so the machine's own AWS
/// settings cannot leak into the tests.
pub async fn sdk_config() -> SdkConfig {
    worker::aws::config_loader()
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            None,
            None,
            "mapfleet-tests",
        ))
        .region(Region::new("us-east-1"))
        .load()
        .await
}

/// A running server; dropping it stops accepting.
pub struct Server {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An s3s-fs server keeping its buckets under `root`.
pub async fn start_s3(root: &Path) -> Server {
    std::fs::create_dir_all(root).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = b.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { url, task }
}

/// mapfleet's Rekognition-compatible endpoint serving `engine`, accepting requests signed
/// with the test key pair.
pub async fn start_rekognition(engine: Arc<dyn FaceEngine>) -> Server {
    let keys = mapfleet_auth::KeyStore::parse_list(&format!("{ACCESS_KEY}:{SECRET_KEY}")).unwrap();
    let verifier = mapfleet_auth::Verifier::new(keys, worker::endpoint::SIGNING_NAME);
    let access = mapfleet_auth::Access::Signed(Arc::new(verifier));
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        engine,
        EndpointOptions::new(access),
    )
    .await
    .unwrap();
    let url = format!("http://{}", ep.local_addr().unwrap());
    let task = tokio::spawn(ep.run(std::future::pending()));
    Server { url, task }
}

/// A URL where nothing listens (a port just bound and released).
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// How [`raw_request_as`] signs.
#[derive(Debug, Clone, Copy)]
pub enum Signing<'a> {
    /// No `Authorization` header at all.
    Unsigned,
    /// SigV4 for service `rekognition` with this access key and secret, at this offset from now.
    Key(&'a str, &'a str, i64),
}

/// One raw HTTP/1.1 request (for what the SDK would never send), signed with the test key
/// pair as an SDK would; returns status and body.
pub async fn raw_request(url: &str, target: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    raw_request_as(url, target, body, Signing::Key(ACCESS_KEY, SECRET_KEY, 0)).await
}

/// [`raw_request`] signed as `signing` says.
pub async fn raw_request_as(
    url: &str,
    target: Option<&str>,
    body: &str,
    signing: Signing<'_>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), addr.into()),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target".into(), t.into()));
    }
    if let Signing::Key(id, secret, offset_secs) = signing {
        headers.extend(sign(
            url,
            &headers,
            body.as_bytes(),
            id,
            secret,
            offset_secs,
        ));
    }
    let head: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let req = format!(
        "POST / HTTP/1.1\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    assert!(
        out.to_ascii_lowercase()
            .contains("content-type: application/x-amz-json-1.1"),
        "{out}"
    );
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap())
}

/// The `X-Amz-Date` and `Authorization` headers an SDK would add.
fn sign(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    id: &str,
    secret: &str,
    offset_secs: i64,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let now = std::time::SystemTime::now();
    let at = if offset_secs >= 0 {
        now + std::time::Duration::from_secs(offset_secs as u64)
    } else {
        now - std::time::Duration::from_secs(offset_secs.unsigned_abs())
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(id, secret, None, None, "raw").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(worker::endpoint::SIGNING_NAME)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("{url}/"),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}
