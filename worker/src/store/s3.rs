//! The S3 object store: [`ObjectStore`] on `aws-sdk-s3`, for Amazon S3 or any S3-compatible
//! server (MinIO, Ceph, s3s, ...) through an endpoint override.
//!
//! Addressing is path-style (`<endpoint>/<bucket>/<key>`), which every S3-compatible server
//! understands and which needs no wildcard DNS. Because a path-style key becomes part of the
//! URL path, keys with `.` or `..` components are refused here, as by the local store: a
//! server or proxy that normalises paths would otherwise resolve them into another bucket.
//!
//! Errors: a missing bucket or key is [`Error::NoSuchBucket`] / [`Error::NoSuchKey`] (which the
//! face engine reports as Rekognition's `InvalidS3ObjectException`); an endpoint that cannot be
//! reached, times out, throttles or answers 5xx is [`Error::Unavailable`] (worth retrying);
//! any other refusal (`AccessDenied`, ...) is [`Error::Refused`]. Messages name the endpoint,
//! the bucket and the key, never the request's signature or credentials.

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::local::validate_bucket;
use super::{Error, Object, ObjectInfo, ObjectStore};
use crate::aws::describe;

/// Buckets and objects in S3 (or an S3-compatible server).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    /// Where requests go, for error messages: the override, or `AWS S3 (<region>)`.
    endpoint: String,
    region: Option<String>,
}

impl S3Store {
    /// A store on `config`'s region and credentials, at `endpoint` when given (else the
    /// standard S3 endpoint of the region, or `AWS_ENDPOINT_URL_S3`).
    pub fn new(config: &SdkConfig, endpoint: Option<&str>) -> Self {
        let mut b = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            // Many S3-compatible servers reject the SDK's default streaming checksum trailers
            // (`aws-chunked`); send checksums only where S3 requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = endpoint {
            b = b.endpoint_url(url);
        }
        let region = config.region().map(|r| r.to_string());
        let endpoint = match (endpoint, config.endpoint_url()) {
            (Some(url), _) | (None, Some(url)) => url.to_owned(),
            (None, None) => format!("AWS S3 ({})", region.as_deref().unwrap_or("no region")),
        };
        Self {
            client: Client::from_conf(b.build()),
            endpoint,
            region,
        }
    }

    /// Where this store sends its requests (the endpoint override, or `AWS S3 (<region>)`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Maps an SDK error of an operation on `bucket`/`key` (`key` empty for bucket operations).
    fn error<E>(
        &self,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        bucket: &str,
        key: &str,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_owned);
        let no_key = || Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        match &e {
            SdkError::ServiceError(_) => match (code.as_deref(), status) {
                (Some("NoSuchKey" | "NotFound"), _) if !key.is_empty() => no_key(),
                (Some("NoSuchBucket"), _) => Error::NoSuchBucket(bucket.to_owned()),
                // HEAD answers carry no body, hence no code: the status says it.
                (None | Some("NotFound"), Some(404)) if key.is_empty() => {
                    Error::NoSuchBucket(bucket.to_owned())
                }
                (None, Some(404)) => no_key(),
                (Some("SlowDown" | "Throttling" | "RequestTimeout" | "ServiceUnavailable"), _) => {
                    self.unavailable(&e)
                }
                (_, Some(s)) if s >= 500 => self.unavailable(&e),
                _ => Error::Refused {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    message: format!(
                        "{}: {}",
                        code.as_deref().unwrap_or("error"),
                        e.message()
                            .map(str::to_owned)
                            .unwrap_or_else(|| describe(&e))
                    ),
                },
            },
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => self.unavailable(&e),
            // The request could not be built: missing credentials or region, a bad endpoint.
            _ => Error::Refused {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: format!("cannot call {}: {}", self.endpoint, describe(&e)),
            },
        }
    }

    fn unavailable(&self, e: &(dyn std::error::Error + 'static)) -> Error {
        Error::Unavailable(format!("S3 endpoint {}: {}", self.endpoint, describe(e)))
    }
}

/// Refuses keys that S3 would take but that could leave the bucket in a path-style URL.
fn validate_key(bucket: &str, key: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty key");
    }
    if key.len() > 1024 {
        return invalid("key longer than 1024 bytes");
    }
    if key.contains('\0') {
        return invalid("key contains NUL");
    }
    if key.split('/').any(|p| p == "." || p == "..") {
        return invalid("key has a '.' or '..' path component");
    }
    Ok(())
}

/// S3 quotes entity tags; the store's tags are bare.
fn bare_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object, Error> {
        validate_bucket(bucket)?;
        validate_key(bucket, key)?;
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(e, bucket, key))?;
        let too_large = || Error::TooLarge {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            limit: max_bytes,
        };
        // Refuse by the announced length before reading; the body is dropped unread.
        let announced = out.content_length().and_then(|n| u64::try_from(n).ok());
        if announced.is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        let etag = bare_etag(out.e_tag());
        let mut body = out.body;
        let mut bytes = Vec::with_capacity(announced.unwrap_or(0) as usize);
        // The announced length could lie (or be absent): count as the chunks come.
        while let Some(chunk) = body.try_next().await.map_err(|e| self.unavailable(&e))? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Object {
            bytes: bytes.into(),
            etag,
        })
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<String, Error> {
        validate_bucket(bucket)?;
        validate_key(bucket, key)?;
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error(e, bucket, key))?;
        Ok(bare_etag(out.e_tag()))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        validate_bucket(bucket)?;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => match self.error(e, bucket, "") {
                Error::NoSuchBucket(_) => {}
                other => return Err(other),
            },
        }
        let mut req = self.client.create_bucket().bucket(bucket);
        // Outside us-east-1, S3 wants the region named in the request.
        if let Some(region) = self.region.as_deref().filter(|r| *r != "us-east-1") {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            // Created meanwhile by another worker.
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(self.error(e, bucket, "")),
        }
    }

    async fn list(&self, bucket: &str) -> Result<Vec<String>, Error> {
        validate_bucket(bucket)?;
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(e, bucket, ""))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Error> {
        validate_bucket(bucket)?;
        validate_key(bucket, key)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset.saturating_add(len - 1));
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(range)
            .send()
            .await
        {
            Ok(out) => out,
            // A range that starts past the end: there is nothing more.
            Err(e) if e.code() == Some("InvalidRange") => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e, bucket, key)),
        };
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| self.unavailable(&e))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > len {
                // A server that ignored the range: keep only what was asked for.
                bytes.truncate(len as usize);
                break;
            }
        }
        Ok(bytes)
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectInfo>, Error> {
        validate_bucket(bucket)?;
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(i32::try_from(max.min(1000)).unwrap_or(1000));
        if !prefix.is_empty() {
            req = req.prefix(prefix);
        }
        if let Some(after) = start_after {
            req = req.start_after(after);
        }
        let out = req.send().await.map_err(|e| self.error(e, bucket, ""))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_owned(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    etag: bare_etag(o.e_tag()),
                    last_modified: o.last_modified().map(|t| t.secs()).unwrap_or(0),
                })
            })
            .collect())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, Error> {
        validate_bucket(bucket)?;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.error(e, bucket, "") {
                Error::NoSuchBucket(_) => Ok(false),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_leave_the_bucket_are_refused() {
        for bad in ["", "..", "../other/x", "a/./b", "a/../../b", "a\0b"] {
            assert!(
                matches!(validate_key("b", bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        for ok in [
            "a",
            "a/b.jpg",
            "resized-1_happy_face.jpg",
            "a..b",
            ".hidden",
            "a//b",
        ] {
            assert!(validate_key("b", ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn entity_tags_lose_their_quotes() {
        assert_eq!(bare_etag(Some("\"abc\"")), "abc");
        assert_eq!(bare_etag(None), "");
    }
}
