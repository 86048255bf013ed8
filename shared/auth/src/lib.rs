//! Who may call mapfleet's AWS-compatible endpoints (`mapfleet rekognition serve`, and the
//! Step Functions API): AWS Signature Version 4, checked the way AWS checks it.
//!
//! # Layout
//! - [`keys`]: the access key pairs a server accepts ([`KeyStore`]), read from an AWS-format
//!   credentials file or `MAPFLEET_API_KEYS`; secrets never print.
//! - [`verify`]: [`Verifier::verify`] checks one request's `Authorization` header (scope,
//!   15-minute clock skew, known key, signature) and answers with AWS's error codes.
//!
//! Verification re-signs the request with `aws-sigv4` (the signer the AWS SDKs for Rust use)
//! over exactly the headers the client listed in `SignedHeaders`, then compares the two
//! signatures in constant time.

pub mod keys;
pub mod verify;

pub use keys::{KeyError, KeyStore};
pub use verify::{AuthError, Caller, MAX_SKEW, Request, Verifier};

/// What an endpoint lets in.
#[derive(Debug, Clone)]
pub enum Access {
    /// Requests signed with one of the verifier's keys.
    Signed(std::sync::Arc<Verifier>),
    /// Anyone (`--allow-anonymous`): for a trusted network, and said so at start.
    Anonymous,
}

impl Access {
    /// Checks `req` (at the current time); `Ok(None)` for anonymous access.
    pub fn check(&self, req: &Request<'_>) -> Result<Option<Caller>, AuthError> {
        match self {
            Access::Signed(v) => v.verify(req, std::time::SystemTime::now()).map(Some),
            Access::Anonymous => Ok(None),
        }
    }
}
