//! `mapfleet rekognition serve`: mapfleet's Rekognition-compatible endpoint on the local face
//! engine, for the AWS face engine (`mapfleet-worker --face-engine aws`) and any Rekognition
//! client. The server itself is `worker::endpoint`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::access::access;
use clap::{Args, Subcommand};
use worker::endpoint::{Endpoint, EndpointOptions};
use worker::providers::ObjectStoreArgs;

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
    #[command(flatten)]
    pub store: ObjectStoreArgs,
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

pub async fn rekognition(data_dir: &Path, cmd: RekognitionCommand) -> anyhow::Result<ExitCode> {
    let RekognitionCommand::Serve(args) = cmd;
    let store = args.store.object_store(data_dir).await;
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
        assert_eq!(
            a.store.s3_endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(!a.allow_anonymous);
    }
}
