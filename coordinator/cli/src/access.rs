//! Who may call mapfleet's AWS-compatible servers (`mapfleet rekognition serve`,
//! `mapfleet serve`): the key pairs from `MAPFLEET_API_KEYS` and `--credentials-file`, or
//! anyone with `--allow-anonymous` (with a warning at start).

use std::path::Path;
use std::sync::Arc;

use mapfleet_auth::{Access, KeyStore, Verifier};

/// Who may call, from the flags and `MAPFLEET_API_KEYS`.
pub fn access(
    credentials_file: Option<&Path>,
    api_keys: Option<&str>,
    allow_anonymous: bool,
    service: &str,
) -> anyhow::Result<Access> {
    let mut keys = KeyStore::new();
    if let Some(list) = api_keys {
        keys.merge(KeyStore::parse_list(list)?)?;
    }
    if let Some(file) = credentials_file {
        keys.merge(KeyStore::from_credentials_file(file)?)?;
    }
    match (keys.is_empty(), allow_anonymous) {
        (true, false) => anyhow::bail!(
            "no API keys: set MAPFLEET_API_KEYS=ACCESS_KEY_ID:SECRET (comma-separated pairs) or \
             --credentials-file FILE (the AWS credentials format), or pass --allow-anonymous to \
             accept unsigned requests"
        ),
        (true, true) => {
            tracing::warn!(
                "--allow-anonymous: requests are not authenticated; anyone who reaches this \
                 address may call it"
            );
            Ok(Access::Anonymous)
        }
        (false, anonymous) => {
            if anonymous {
                tracing::warn!("--allow-anonymous is ignored: API keys are configured");
            }
            tracing::info!(keys = keys.len(), "requests must be SigV4-signed");
            Ok(Access::Signed(Arc::new(Verifier::new(keys, service))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keys_and_no_anonymous_flag_is_refused_with_the_way_out() {
        let err = access(None, None, false, "rekognition")
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAPFLEET_API_KEYS"), "{err}");
        assert!(err.contains("--allow-anonymous"), "{err}");
        assert!(matches!(
            access(None, None, true, "rekognition").unwrap(),
            Access::Anonymous
        ));
        match access(None, Some("AKID:secret"), true, "rekognition").unwrap() {
            Access::Signed(v) => assert_eq!(v.keys(), 1),
            Access::Anonymous => panic!("keys given: signed access"),
        }
        let err = access(None, Some("bad entry TOPSECRET"), false, "rekognition")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
    }
}
