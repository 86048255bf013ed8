//! `mapfleet rekognition serve`: mapfleet's Rekognition-compatible endpoint on the local face
//! engine, for the AWS face engine (`mapfleet-worker --face-engine aws`) and any Rekognition
//! client. The server itself is `worker::endpoint`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use mapfleet_auth::{Access, KeyStore, Verifier};
use worker::endpoint::{Endpoint, EndpointOptions};
use worker::providers::{ObjectStoreKind, ProviderArgs};

#[derive(Subcommand, Debug)]
pub enum RekognitionCommand {
    /// Serve Amazon Rekognition's JSON API (awsJson 1.1: CreateCollection, DetectFaces,
    /// SearchFacesByImage, IndexFaces, ListFaces, DeleteFaces, CompareFaces) on the local
    /// engine. Requests must be SigV4-signed (service `rekognition`) by a key pair from
    /// MAPFLEET_API_KEYS or --credentials-file, unless --allow-anonymous.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(
        long,
        env = "MAPFLEET_REKOGNITION_ADDR",
        default_value = "127.0.0.1:8091"
    )]
    pub addr: SocketAddr,
    /// ONNX sessions per model: the number of photos analysed at once.
    #[arg(long, default_value_t = 2)]
    pub sessions: usize,
    /// Where `Image.S3Object` images are read: `local` (`<data-dir>/buckets`) or `s3`
    /// (implied by --s3-endpoint; region and credentials from the standard AWS chain).
    #[arg(long, env = "MAPFLEET_OBJECT_STORE", value_enum, default_value_t)]
    pub object_store: ObjectStoreKind,
    /// S3 endpoint URL of an S3-compatible server (path-style addressing).
    #[arg(long, env = "MAPFLEET_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The key pairs allowed to call, in the AWS credentials file format (every profile's
    /// `aws_access_key_id` / `aws_secret_access_key`). Adds to MAPFLEET_API_KEYS
    /// (`AKID:SECRET` pairs, comma-separated), which is read from the environment only so that
    /// no secret shows in `ps`.
    #[arg(long, env = "MAPFLEET_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Accept unsigned requests from anyone who can reach the address (a trusted network
    /// only; a warning says so at start).
    #[arg(long)]
    pub allow_anonymous: bool,
}

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

pub async fn rekognition(data_dir: &Path, cmd: RekognitionCommand) -> anyhow::Result<ExitCode> {
    let RekognitionCommand::Serve(args) = cmd;
    let providers = ProviderArgs {
        object_store: args.object_store,
        s3_endpoint: args.s3_endpoint,
        ..ProviderArgs::default()
    };
    let store = providers.object_store(data_dir).await;
    let models_dir = worker::registry::models_dir(data_dir);
    let engine =
        worker::endpoint::local_engine(data_dir, &models_dir, args.sessions, store).await?;
    let api_keys = std::env::var("MAPFLEET_API_KEYS").ok();
    let access = access(
        args.credentials_file.as_deref(),
        api_keys.as_deref(),
        args.allow_anonymous,
        worker::endpoint::SIGNING_NAME,
    )?;
    let endpoint = Endpoint::bind(args.addr, engine, EndpointOptions::new(access)).await?;
    let bound = endpoint.local_addr()?;
    // The one line a script waits for; the port is the real one when --addr asked for 0.
    eprintln!(
        "Rekognition endpoint on http://{bound} (collections under {})",
        data_dir.join("collections").display()
    );
    endpoint.run(shared::process::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_takes_its_address_and_store() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(subcommand)]
            cmd: RekognitionCommand,
        }
        let t = T::try_parse_from([
            "t",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
        ])
        .unwrap();
        let RekognitionCommand::Serve(a) = t.cmd;
        assert_eq!(a.addr.port(), 0);
        assert_eq!(a.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!a.allow_anonymous);
    }

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
