//! The access key pairs an endpoint accepts.
//!
//! Two sources, which may be combined: an AWS-format credentials file (`[profile]` sections
//! with `aws_access_key_id` and `aws_secret_access_key`, as `aws configure` writes it) and the
//! `MAPFLEET_API_KEYS` environment variable (`AKID:SECRET` pairs separated by commas or
//! whitespace). Neither a secret nor a line holding one ever appears in an error or a log.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret access key. Its `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a key source was refused. Names the file and line or the entry, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {path}, line {line}: {reason}")]
    File {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("credentials file {path}, profile [{profile}]: {reason}")]
    Profile {
        path: PathBuf,
        profile: String,
        reason: String,
    },
    #[error("MAPFLEET_API_KEYS, entry {entry}: {reason}")]
    List { entry: usize, reason: String },
    #[error("access key id {id} is given twice with different secrets")]
    Conflict { id: String },
}

/// Access key id → secret.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: BTreeMap<String, Secret>,
}

impl KeyStore {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pair; the same id twice is refused unless the secrets agree.
    pub fn insert(&mut self, id: &str, secret: &str) -> Result<(), KeyError> {
        match self.keys.get(id) {
            Some(known) if known.expose() != secret => Err(KeyError::Conflict { id: id.into() }),
            _ => {
                self.keys.insert(id.into(), Secret(secret.into()));
                Ok(())
            }
        }
    }

    /// Adds every pair of `other`.
    pub fn merge(&mut self, other: KeyStore) -> Result<(), KeyError> {
        for (id, secret) in other.keys {
            self.insert(&id, secret.expose())?;
        }
        Ok(())
    }

    /// Parses `MAPFLEET_API_KEYS`: `AKID:SECRET` pairs separated by commas or whitespace.
    pub fn parse_list(list: &str) -> Result<Self, KeyError> {
        let mut store = KeyStore::new();
        let entries = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let entry_no = i + 1;
            let Some((id, secret)) = entry.split_once(':') else {
                return Err(KeyError::List {
                    entry: entry_no,
                    reason: "expected ACCESS_KEY_ID:SECRET_ACCESS_KEY".into(),
                });
            };
            check_pair(id, secret).map_err(|reason| KeyError::List {
                entry: entry_no,
                reason,
            })?;
            store.insert(id, secret)?;
        }
        Ok(store)
    }

    /// Reads an AWS-format credentials file: every profile with a key pair is accepted.
    pub fn from_credentials_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse_credentials(&text, path)
    }

    fn parse_credentials(text: &str, path: &Path) -> Result<Self, KeyError> {
        struct Profile {
            name: String,
            id: Option<String>,
            secret: Option<String>,
        }
        let mut profiles: Vec<Profile> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let file_error = |reason: &str| KeyError::File {
                path: path.into(),
                line: i + 1,
                reason: reason.into(),
            };
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| file_error("a section header must end with ']'"))?;
                profiles.push(Profile {
                    name: name.trim().into(),
                    id: None,
                    secret: None,
                });
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(file_error("expected `name = value`"));
            };
            let profile = profiles
                .last_mut()
                .ok_or_else(|| file_error("a setting before the first [profile] header"))?;
            let value = value.trim().to_owned();
            match key.trim() {
                "aws_access_key_id" => profile.id = Some(value),
                "aws_secret_access_key" => profile.secret = Some(value),
                _ => {} // region, session tokens and the like: not ours
            }
        }
        let mut store = KeyStore::new();
        for p in profiles {
            let profile_error = |reason: String| KeyError::Profile {
                path: path.into(),
                profile: p.name.clone(),
                reason,
            };
            match (&p.id, &p.secret) {
                (None, None) => {}
                (Some(id), Some(secret)) => {
                    check_pair(id, secret).map_err(profile_error)?;
                    store.insert(id, secret)?;
                }
                (Some(_), None) => {
                    return Err(profile_error("aws_secret_access_key is missing".into()));
                }
                (None, Some(_)) => {
                    return Err(profile_error("aws_access_key_id is missing".into()));
                }
            }
        }
        Ok(store)
    }

    /// The secret of `id`.
    pub fn secret(&self, id: &str) -> Option<&Secret> {
        self.keys.get(id)
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn check_pair(id: &str, secret: &str) -> Result<(), String> {
    // The id travels in `Credential=ID/date/region/service/aws4_request`, so no slash.
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | ':' | ','))
    {
        return Err("an access key id is printable ASCII without spaces, '/', ':' or ','".into());
    }
    if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the secret of {id} must be non-empty, without spaces or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_pairs_is_read() {
        let store = KeyStore::parse_list("AKID1:s3cr/et+1, AKID2:other\nAKID3:x").unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.secret("AKID1").unwrap().expose(), "s3cr/et+1");
        assert!(store.secret("nobody").is_none());
    }

    #[test]
    fn a_bad_list_entry_is_named_and_its_secret_never_shown() {
        let err = KeyStore::parse_list("AKID1:fine,oops-no-colon-TOPSECRET").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("entry 2"), "{text}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        let err = KeyStore::parse_list("AK ID:TOPSECRET,AKID:a,AKID:b").unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"), "{err}");
        let err = KeyStore::parse_list("AKID:a,AKID:b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "access key id AKID is given twice with different secrets"
        );
    }

    #[test]
    fn the_aws_credentials_format_is_read() {
        let text = "# made by aws configure\n[default]\naws_access_key_id = AKIDA\n\
                    aws_secret_access_key = secretA\nregion = us-east-1\n\n\
                    [ci]\naws_access_key_id=AKIDB\naws_secret_access_key=secretB\n\
                    aws_session_token = ignored\n[empty]\n";
        let store = KeyStore::parse_credentials(text, Path::new("creds")).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.secret("AKIDB").unwrap().expose(), "secretB");
    }

    #[test]
    fn a_broken_credentials_file_names_the_line_or_profile() {
        let err = KeyStore::parse_credentials("[a]\nnonsense TOPSECRET\n", Path::new("creds"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "credentials file creds, line 2: expected `name = value`"
        );
        let err =
            KeyStore::parse_credentials("[half]\naws_access_key_id = AKID\n", Path::new("creds"))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "credentials file creds, profile [half]: aws_secret_access_key is missing"
        );
        let missing = KeyStore::from_credentials_file(Path::new("/nonexistent/creds"));
        assert!(matches!(missing, Err(KeyError::Read { .. })));
    }

    #[test]
    fn secrets_do_not_print() {
        let store = KeyStore::parse_list("AKID:TOPSECRET").unwrap();
        assert!(!format!("{store:?}").contains("TOPSECRET"));
    }
}
