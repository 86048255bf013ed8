//! How the worker reaches AWS, or an AWS-compatible endpoint (an S3-compatible server,
//! `mapfleet rekognition serve`): one SDK configuration, shared by the S3 object store
//! ([`crate::store::S3Store`]) and the Rekognition face engine
//! ([`crate::face::RekognitionEngine`]).
//!
//! Region and credentials come from the standard chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...,
//! `~/.aws/config` profiles, web identity, ECS and EC2 instance roles); the region defaults to
//! `us-east-1` when none is configured, because an endpoint override still needs one to sign.
//! Each service's endpoint can be overridden on its own (`--s3-endpoint`,
//! `--rekognition-endpoint`); the standard `AWS_ENDPOINT_URL_S3` and
//! `AWS_ENDPOINT_URL_REKOGNITION` variables work too.
//!
//! The HTTPS client is rustls with the `ring` provider and the system's root certificates,
//! instead of the SDK's default (rustls on aws-lc-rs), whose C build dominates a cold build.

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The region used when the chain finds none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The HTTP(S) client of every SDK client the worker builds.
pub fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The standard configuration chain with mapfleet's HTTP client; callers may override more
/// (tests pin credentials and region) before `load()`.
pub fn config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client())
}

/// The SDK configuration from the standard chain, in [`DEFAULT_REGION`] when it names none.
pub async fn load_config() -> SdkConfig {
    with_default_region(config_loader().load().await)
}

/// `config`, in [`DEFAULT_REGION`] when it has no region. (Applied after loading: a region
/// provider built outside the loader would not get the loader's HTTP client for its EC2
/// metadata lookups.)
pub fn with_default_region(config: SdkConfig) -> SdkConfig {
    if config.region().is_some() {
        return config;
    }
    config
        .into_builder()
        .region(Region::new(DEFAULT_REGION))
        .build()
}

/// An SDK error as one line with its causes ("service error: NoSuchBucket: ..." or
/// "dispatch failure: io error: Connection refused"), never the request itself, so that no
/// signature or credential reaches a log.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
