//! Checking one request's SigV4 `Authorization` header.
//!
//! What is checked, in AWS's order: the header is there and well formed
//! (`AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`); the credential scope is
//! `<date>/<region>/<service>/aws4_request` for this endpoint's service (and region, when the
//! server pins one) with the date of `X-Amz-Date`; `host` and `x-amz-date` are signed; the
//! request time is within [`MAX_SKEW`] of the server's clock; the access key is known; and the
//! signature, recomputed over the raw body and the headers the client signed (the received
//! `Host` included), is the one sent. Session tokens (temporary credentials) are not issued
//! by mapfleet, so a request carrying one is refused as an unknown token.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, NaiveDateTime, Utc};
use subtle::ConstantTimeEq;

use crate::keys::KeyStore;

/// The clock skew AWS allows between a signed request and the server.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Why a request was refused, as AWS's JSON services say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (an unsigned request, `aws --no-sign-request`).
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is there but cannot be read.
    #[error("{0}")]
    Incomplete(String),
    /// The access key (or a session token) is not one this server knows.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// Wrong scope, stale or future time.
    #[error("{0}")]
    Invalid(String),
    /// The recomputed signature differs.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    )]
    Mismatch,
}

impl AuthError {
    /// AWS's error code (`__type` and `X-Amzn-ErrorType`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Invalid(_) | AuthError::Mismatch => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS's JSON protocols answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Who called: the access key that signed, and the region it signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
    pub region: String,
}

/// The parts of an HTTP request the signature covers, as received.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query exactly as on the request line (`/`, `/?a=b`).
    pub path_and_query: &'a str,
    /// Every header, in any case; repeated names allowed. Values that are not UTF-8 cannot
    /// be signed by any SDK: leave them out.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The raw body bytes, before any parsing.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.values(name).next()
    }
}

/// Checks requests against a [`KeyStore`] for one service.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeyStore,
    service: String,
    region: Option<String>,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl Verifier {
    /// A verifier for `service` (the signing name: `states`, `rekognition`), any region.
    pub fn new(keys: KeyStore, service: &str) -> Self {
        Self {
            keys,
            service: service.into(),
            region: None,
        }
    }

    /// Accepts only signatures scoped to `region`.
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = Some(region.into());
        self
    }

    /// How many key pairs it knows.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Whether `secret` is the secret of key `access_key_id` (the web console's login form),
    /// compared in constant time.
    pub fn accepts_pair(&self, access_key_id: &str, secret: &str) -> bool {
        match self.keys.secret(access_key_id) {
            Some(known) => bool::from(known.expose().as_bytes().ct_eq(secret.as_bytes())),
            None => false,
        }
    }

    /// Checks `req` at server time `now`.
    pub fn verify(&self, req: &Request<'_>, now: SystemTime) -> Result<Caller, AuthError> {
        let header = req.header("authorization").ok_or(AuthError::Missing)?;
        let auth = parse_authorization(header)?;
        self.check_scope(&auth)?;
        for required in ["host", "x-amz-date"] {
            if !auth.signed_headers.contains(&required) {
                return Err(AuthError::Invalid(format!(
                    "'{required}' must be a 'SignedHeader' in the AWS Authorization."
                )));
            }
        }
        let amz_date = req.header("x-amz-date").ok_or_else(|| {
            AuthError::Incomplete(
                "Authorization header requires existence of 'X-Amz-Date' header.".into(),
            )
        })?;
        let signed_at = NaiveDateTime::parse_from_str(amz_date, AMZ_DATE_FORMAT)
            .map_err(|_| {
                AuthError::Incomplete(format!(
                    "X-Amz-Date must be in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."
                ))
            })?
            .and_utc();
        if !amz_date.starts_with(auth.date) {
            return Err(AuthError::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8.min(amz_date.len())]
            )));
        }
        check_skew(signed_at, now)?;

        let secret = self
            .keys
            .secret(auth.access_key_id)
            .ok_or(AuthError::UnknownKey)?;
        if req.header("x-amz-security-token").is_some() {
            return Err(AuthError::UnknownKey);
        }

        let host = req
            .header("host")
            .ok_or_else(|| AuthError::Incomplete("The request has no Host header.".into()))?;
        // The client's own list of signed headers (each SDK signs a different set), less
        // `x-amz-date`, which the signer adds from the time it is given.
        let mut joined: Vec<(&str, String)> = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            if *name == "x-amz-date" {
                continue;
            }
            let values: Vec<&str> = req.values(name).collect();
            if values.is_empty() {
                return Err(AuthError::Mismatch);
            }
            joined.push((name, values.join(",")));
        }
        let uri = format!("http://{host}{}", req.path_and_query);
        let signable = SignableRequest::new(
            req.method,
            uri,
            joined.iter().map(|(n, v)| (*n, v.as_str())),
            SignableBody::Bytes(req.body),
        )
        .map_err(|_| AuthError::Mismatch)?;
        let identity: Identity = Credentials::new(
            auth.access_key_id,
            secret.expose(),
            None,
            None,
            "mapfleet-api-keys",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.excluded_headers = None;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(auth.region)
            .name(auth.service)
            .time(SystemTime::from(signed_at))
            .settings(settings)
            .build()
            .map_err(|_| AuthError::Mismatch)?
            .into();
        let expected = sign(signable, &params).map_err(|_| AuthError::Mismatch)?;
        let same: bool = expected
            .signature()
            .as_bytes()
            .ct_eq(auth.signature.to_ascii_lowercase().as_bytes())
            .into();
        if !same {
            return Err(AuthError::Mismatch);
        }
        Ok(Caller {
            access_key_id: auth.access_key_id.into(),
            region: auth.region.into(),
        })
    }

    fn check_scope(&self, auth: &Authorization<'_>) -> Result<(), AuthError> {
        if auth.terminator != "aws4_request" {
            return Err(AuthError::Invalid(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
                auth.terminator
            )));
        }
        if auth.service != self.service {
            return Err(AuthError::Invalid(format!(
                "Credential should be scoped to correct service: '{}'.",
                self.service
            )));
        }
        if let Some(region) = &self.region
            && auth.region != region
        {
            return Err(AuthError::Invalid(format!(
                "Credential should be scoped to a valid region, not '{}'.",
                auth.region
            )));
        }
        Ok(())
    }
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            AuthError::Incomplete(format!(
                "Unsupported AWS 'algorithm': only '{ALGORITHM}' is accepted."
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if !missing.is_empty() {
        return Err(AuthError::Incomplete(missing.trim_end().into()));
    }
    let credential = credential.unwrap_or_default();
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    };
    let signature = signature.unwrap_or_default();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Mismatch);
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: signed.unwrap_or_default().split(';').collect(),
        signature,
    })
}

fn check_skew(signed_at: DateTime<Utc>, now: SystemTime) -> Result<(), AuthError> {
    let now: DateTime<Utc> = now.into();
    let skew = chrono::Duration::from_std(MAX_SKEW).unwrap_or_default();
    let fmt = |t: DateTime<Utc>| t.format(AMZ_DATE_FORMAT).to_string();
    if signed_at < now - skew {
        return Err(AuthError::Invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            fmt(signed_at),
            fmt(now - skew),
            fmt(now)
        )));
    }
    if signed_at > now + skew {
        return Err(AuthError::Invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            fmt(signed_at),
            fmt(now + skew),
            fmt(now)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request the aws CLI sent in the capture of the handout on the API (ListStateMachines
    /// with body `{}`), re-signed here with a known secret by the same algorithm the SDKs use.
    fn signed(
        secret: &str,
        at: SystemTime,
        service: &str,
        body: &[u8],
    ) -> (Vec<(String, String)>, String) {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("host", "127.0.0.1:18777"),
            ("x-amz-target", "AWSStepFunctions.ListStateMachines"),
        ];
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:18777/",
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let identity: Identity = Credentials::new("AKIDEXAMPLE", secret, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let (instructions, signature) = sign(signable, &params).unwrap().into_parts();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for (n, v) in instructions.headers() {
            all.push((n.to_string(), v.to_string()));
        }
        (all, signature)
    }

    fn request<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            path_and_query: "/",
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
            body,
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(
            KeyStore::parse_list("AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap(),
            "states",
        )
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn a_correctly_signed_request_passes_and_names_its_caller() {
        let now = SystemTime::now();
        let (headers, _) = signed(SECRET, now, "states", b"{}");
        let caller = verifier().verify(&request(&headers, b"{}"), now).unwrap();
        assert_eq!(caller.access_key_id, "AKIDEXAMPLE");
        assert_eq!(caller.region, "us-east-1");
    }

    #[test]
    fn a_changed_body_header_or_secret_is_a_mismatch() {
        let now = SystemTime::now();
        let (headers, _) = signed(SECRET, now, "states", b"{}");
        let v = verifier();
        assert_eq!(
            v.verify(&request(&headers, b"{\"x\":1}"), now),
            Err(AuthError::Mismatch)
        );
        let mut tampered = headers.clone();
        for (n, v) in &mut tampered {
            if n == "x-amz-target" {
                *v = "AWSStepFunctions.DeleteStateMachine".into();
            }
        }
        assert_eq!(
            v.verify(&request(&tampered, b"{}"), now),
            Err(AuthError::Mismatch)
        );
        let (wrong, _) = signed("not-the-secret", now, "states", b"{}");
        let err = v.verify(&request(&wrong, b"{}"), now).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
    }

    #[test]
    fn unsigned_unknown_and_malformed_requests_get_aws_codes() {
        let now = SystemTime::now();
        let v = verifier();
        let none: Vec<(String, String)> = vec![("host".into(), "h".into())];
        let err = v.verify(&request(&none, b"{}"), now).unwrap_err();
        assert_eq!(err.code(), "MissingAuthenticationTokenException");

        let (headers, _) = signed(SECRET, now, "states", b"{}");
        let stranger = Verifier::new(KeyStore::parse_list("OTHER:key").unwrap(), "states");
        let err = stranger.verify(&request(&headers, b"{}"), now).unwrap_err();
        assert_eq!(err.code(), "UnrecognizedClientException");

        let bad: Vec<(String, String)> = vec![
            ("host".into(), "h".into()),
            (
                "authorization".into(),
                "AWS4-HMAC-SHA256 Signature=abc".into(),
            ),
        ];
        let err = v.verify(&request(&bad, b"{}"), now).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignatureException");
        assert!(err.to_string().contains("'Credential'"), "{err}");

        let basic: Vec<(String, String)> = vec![("authorization".into(), "Basic Zm9v".into())];
        let err = v.verify(&request(&basic, b"{}"), now).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignatureException");
    }

    #[test]
    fn the_scope_must_be_this_service_and_region() {
        let now = SystemTime::now();
        let (headers, _) = signed(SECRET, now, "rekognition", b"{}");
        let err = verifier()
            .verify(&request(&headers, b"{}"), now)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Credential should be scoped to correct service: 'states'."
        );
        let (headers, _) = signed(SECRET, now, "states", b"{}");
        let err = verifier()
            .with_region("eu-west-1")
            .verify(&request(&headers, b"{}"), now)
            .unwrap_err();
        assert!(err.to_string().contains("'us-east-1'"), "{err}");
    }

    #[test]
    fn more_than_fifteen_minutes_of_skew_is_refused_either_way() {
        let now = SystemTime::now();
        let v = verifier();
        let (old, _) = signed(SECRET, now - Duration::from_secs(16 * 60), "states", b"{}");
        let err = v.verify(&request(&old, b"{}"), now).unwrap_err();
        assert!(err.to_string().starts_with("Signature expired: "), "{err}");
        let (future, _) = signed(SECRET, now + Duration::from_secs(16 * 60), "states", b"{}");
        let err = v.verify(&request(&future, b"{}"), now).unwrap_err();
        assert!(
            err.to_string().starts_with("Signature not yet current: "),
            "{err}"
        );
        let (close, _) = signed(SECRET, now - Duration::from_secs(14 * 60), "states", b"{}");
        assert!(v.verify(&request(&close, b"{}"), now).is_ok());
    }

    #[test]
    fn session_tokens_are_not_accepted() {
        let now = SystemTime::now();
        let (mut headers, _) = signed(SECRET, now, "states", b"{}");
        headers.push(("x-amz-security-token".into(), "token".into()));
        assert_eq!(
            verifier().verify(&request(&headers, b"{}"), now),
            Err(AuthError::UnknownKey)
        );
    }
}

#[cfg(test)]
mod pair_tests {
    use super::*;

    #[test]
    fn a_key_pair_is_accepted_only_with_its_own_secret() {
        let v = Verifier::new(KeyStore::parse_list("AKID:right-secret").unwrap(), "states");
        assert!(v.accepts_pair("AKID", "right-secret"));
        assert!(!v.accepts_pair("AKID", "wrong-secret"));
        assert!(!v.accepts_pair("AKID", "right-secre"));
        assert!(!v.accepts_pair("OTHER", "right-secret"));
        assert!(!v.accepts_pair("", ""));
    }
}
