//! The rider-photo commands: `resources`, `objects`, `faces`, `metadata` and `demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use worker::photo::{
    DEFAULT_COLLECTION_ID, DEFAULT_METADATA_TABLE, DEFAULT_PHOTO_BUCKET, DEFAULT_THUMBNAIL_BUCKET,
    PhotoConfig, PhotoContext, PhotoStores, StoresAt, TASK_NAMES,
};
use worker::store::ObjectStore;
use worker::task::resource_arn;

#[derive(Subcommand, Debug)]
pub enum ObjectsCommand {
    /// Copy local files into a bucket (key = the file name, or `--key`).
    Put {
        bucket: String,
        files: Vec<PathBuf>,
        /// The key, when putting a single file.
        #[arg(long)]
        key: Option<String>,
    },
    /// List a bucket's keys.
    List { bucket: String },
}

#[derive(Subcommand, Debug)]
pub enum FacesCommand {
    /// DetectFaces on an image file: prints the FaceDetails.
    Detect { image: PathBuf },
    /// CompareFaces between two image files (similarity 0-100, match at 70).
    Compare { source: PathBuf, target: PathBuf },
    /// The face collection.
    #[command(subcommand)]
    Collection(CollectionCommand),
}

/// Which face collection and metadata table a command reads: the fleet's (in Redis) or the
/// data dir's (embedded mode).
#[derive(Args, Debug, Clone)]
pub struct StoresArgs {
    /// Read the fleet's, in its Redis (`--redis`), instead of the data dir's.
    #[command(flatten)]
    pub fleet: super::FleetArgs,
}

impl StoresArgs {
    async fn open(&self, data_dir: &Path) -> anyhow::Result<PhotoStores> {
        let at = match &self.fleet.redis {
            Some(_) => StoresAt::Redis {
                url: self.fleet.redis_url()?,
                prefix: self.fleet.prefix.clone(),
                tls: Default::default(),
                shared_analysis: std::time::Duration::ZERO,
            },
            None => StoresAt::DataDir,
        };
        Ok(PhotoStores::open(&at, data_dir).await?)
    }
}

#[derive(Subcommand, Debug)]
pub enum CollectionCommand {
    /// ListFaces.
    List {
        #[command(flatten)]
        stores: StoresArgs,
    },
    /// DeleteFaces: the given face ids, or every face with `--all`.
    Delete {
        face_ids: Vec<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        stores: StoresArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MetadataCommand {
    /// Every stored row.
    List {
        #[command(flatten)]
        stores: StoresArgs,
    },
    /// The row of one user.
    Get {
        user_id: String,
        #[command(flatten)]
        stores: StoresArgs,
    },
}

/// The workshop's CloudFormation outputs, mapfleet's way: what to put in place of each
/// `REPLACE_WITH_...`.
pub fn resources() -> ExitCode {
    let outputs = [
        ("FaceDetectionFunctionArn", resource_arn("face-detection")),
        (
            "NotificationPlaceholderFunctionArn",
            resource_arn("notification-placeholder"),
        ),
        ("FaceSearchFunctionArn", resource_arn("face-search")),
        ("IndexFaceFunctionArn", resource_arn("index-face")),
        ("ThumbnailFunctionArn", resource_arn("thumbnail")),
        (
            "PersistMetadataFunctionArn",
            resource_arn("persist-metadata"),
        ),
        ("RiderPhotoS3Bucket", DEFAULT_PHOTO_BUCKET.to_string()),
        ("ThumbnailS3Bucket", DEFAULT_THUMBNAIL_BUCKET.to_string()),
        ("RiderPhotoDDBTable", DEFAULT_METADATA_TABLE.to_string()),
        ("RekognitionCollectionID", DEFAULT_COLLECTION_ID.to_string()),
    ];
    let width = outputs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in outputs {
        println!("{k:width$}  {v}");
    }
    debug_assert_eq!(TASK_NAMES.len(), 6);
    for extra in ["echo", "sleep", "fail"] {
        println!(
            "{:width$}  {}",
            format!("utility: {extra}"),
            resource_arn(extra)
        );
    }
    ExitCode::SUCCESS
}

async fn context(data_dir: &Path) -> anyhow::Result<PhotoContext> {
    let sessions = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(worker::registry::local_photo_context(data_dir, sessions).await?)
}

fn store(data_dir: &Path) -> worker::store::LocalStore {
    worker::store::LocalStore::new(data_dir.join("buckets"))
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Copies files into a local bucket.
pub async fn put_objects(
    data_dir: &Path,
    bucket: &str,
    files: &[PathBuf],
    key: Option<&str>,
) -> anyhow::Result<()> {
    if key.is_some() && files.len() != 1 {
        bail!("--key names one object: give exactly one file with it");
    }
    let store = store(data_dir);
    store
        .create_bucket(bucket)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for file in files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = match key {
            Some(k) => k.to_string(),
            None => file
                .file_name()
                .and_then(|n| n.to_str())
                .context("a file name is needed as the key")?
                .to_string(),
        };
        store
            .put(bucket, &name, bytes, content_type(file))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        eprintln!("put s3://{bucket}/{name}");
    }
    Ok(())
}

pub async fn objects(data_dir: &Path, cmd: ObjectsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ObjectsCommand::Put { bucket, files, key } => {
            put_objects(data_dir, &bucket, &files, key.as_deref()).await?
        }
        ObjectsCommand::List { bucket } => {
            for k in store(data_dir)
                .list(&bucket)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                println!("{k}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn faces(data_dir: &Path, cmd: FacesCommand) -> anyhow::Result<ExitCode> {
    use worker::face::commands as fc;
    // The collection commands need no models: only the store they read.
    let collection = PhotoConfig::default().collection_id;
    let out: Value = match cmd {
        FacesCommand::Detect { image } => {
            let ctx = context(data_dir).await?;
            fc::detect_file(&*ctx.faces, &image).await
        }
        FacesCommand::Compare { source, target } => {
            let ctx = context(data_dir).await?;
            let threshold = ctx.config.face_match_threshold;
            fc::compare_files(&*ctx.faces, &source, &target, threshold).await
        }
        FacesCommand::Collection(CollectionCommand::List { stores }) => {
            let stores = stores.open(data_dir).await?;
            fc::collection_list(&*stores.collections, &collection).await
        }
        FacesCommand::Collection(CollectionCommand::Delete {
            face_ids,
            all,
            stores,
        }) => {
            if face_ids.is_empty() && !all {
                bail!("name the face ids to delete, or pass --all");
            }
            let stores = stores.open(data_dir).await?;
            fc::collection_delete(&*stores.collections, &collection, &face_ids).await
        }
    }?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn metadata(data_dir: &Path, cmd: MetadataCommand) -> anyhow::Result<ExitCode> {
    let out = match cmd {
        MetadataCommand::List { stores } => {
            let table = stores.open(data_dir).await?.metadata;
            json!({ "Items": table.list().await.map_err(|e| anyhow::anyhow!("{e}"))? })
        }
        MetadataCommand::Get { user_id, stores } => match stores
            .open(data_dir)
            .await?
            .metadata
            .get(&user_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            Some(row) => json!({ "Item": row }),
            None => bail!("no metadata row for user {user_id:?}"),
        },
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The main job: the workshop's batch of rider photos through the dynamic-input (Map) state
/// machine, in embedded mode. Loads the photos into the bucket first.
/// The bucket the Distributed Map demo's ResultWriter writes to.
pub const DEMO_RESULTS_BUCKET: &str = "mapfleet-rider-results";

/// `mapfleet demo`: the workshop's photos into the photo bucket, then its batch state
/// machine; with `distributed`, the same batch as a Distributed Map reading a CSV manifest
/// (put into the photo bucket too) and writing its results to [`DEMO_RESULTS_BUCKET`].
pub async fn demo(data_dir: &Path, examples: &Path, distributed: bool) -> anyhow::Result<ExitCode> {
    let photos = examples.join("photos");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&photos)
        .with_context(|| {
            format!(
                "cannot read {} (run the demo from the repository root, or pass --examples)",
                photos.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| content_type(p).starts_with("image/"))
        .collect();
    files.sort();
    put_objects(data_dir, DEFAULT_PHOTO_BUCKET, &files, None).await?;
    let (definition, input) = if distributed {
        let manifest = examples.join("batch-manifest.csv");
        put_objects(data_dir, DEFAULT_PHOTO_BUCKET, &[manifest], None).await?;
        store(data_dir)
            .create_bucket(DEMO_RESULTS_BUCKET)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        (
            examples.join("ImageProcessingStateMachine-Distributed.json"),
            examples.join("distributed-input.json"),
        )
    } else {
        (
            examples.join("ImageProcessingStateMachine-DynamicInput.json"),
            examples.join("batch-input.json"),
        )
    };
    eprintln!(
        "running {} with {} (embedded mode, data in {})",
        definition.display(),
        input.display(),
        data_dir.display()
    );
    let args = super::RunArgs {
        definition,
        input: Some(input.to_string_lossy().into_owned()),
        name: None,
        describe: false,
        history: false,
        fleet: super::FleetArgs::none(),
        detach: false,
        task_slots: crate::embedded::default_task_slots(),
        max_payload_bytes: crate::engine::PAYLOAD_LIMIT_BYTES,
        max_history_events: crate::engine::run::MAX_HISTORY_EVENTS,
        // The demo's Distributed Map reads and writes the data dir's buckets.
        objects: worker::providers::ObjectStoreArgs::default(),
        data_dir: data_dir.to_path_buf(),
        before_output: (!distributed).then_some(print_summary as fn(&Value)),
    };
    let code = super::run_embedded(args).await;
    eprintln!(
        "\nTo explore a run graph by graph, iteration by iteration, open the web console: run \
         `mapfleet serve` (in this process, over the same --data-dir; or with --redis next to a \
         fleet), start the batch through it (`aws stepfunctions start-execution` or boto3), then \
         open http://127.0.0.1:8083/ (README, section \"The web console\")."
    );
    Ok(code)
}

/// The demo's per-item table, on stderr so that stdout stays the output JSON.
fn print_summary(output: &Value) {
    if let Some(table) = summary_table(output) {
        eprintln!("{table}");
    }
}

/// One row per photo of the batch's output (`results`): user, key, outcome, message and
/// thumbnail, as the workshop reads them; `None` when the output is not the batch's.
pub fn summary_table(output: &Value) -> Option<String> {
    let results = output.get("results")?.as_array()?;
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut rows: Vec<[String; 5]> = vec![[
        "USER".into(),
        "KEY".into(),
        "OUTCOME".into(),
        "MESSAGE".into(),
        "THUMBNAIL".into(),
    ]];
    for r in results {
        let notice = &r["errorInfo"]["messageToSend"];
        let (outcome, message, thumbnail) = if notice.is_object() {
            (text(&notice["title"]), text(&notice["message"]), "-".into())
        } else if r["parallelResult"].is_array() {
            (
                "accepted".to_string(),
                format!(
                    "face indexed as {}",
                    text(&r["parallelResult"][0]["FaceId"])
                ),
                text(&r["parallelResult"][1]["thumbnail"]["s3key"]),
            )
        } else {
            ("?".into(), r.to_string(), "-".into())
        };
        rows.push([
            text(&r["userId"]),
            text(&r["s3Key"]),
            outcome,
            message.trim().to_string(),
            thumbnail,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect();
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_a_row_per_photo_with_its_outcome_and_thumbnail() {
        let output = json!({"results": [
            {"userId": "user_a", "s3Key": "1_happy_face.jpg",
             "parallelResult": [{"FaceId": "f-1"}, {"thumbnail": {"s3key": "resized-1_happy_face.jpg"}}]},
            {"userId": "user_b", "s3Key": "2_sunglass_face.jpg",
             "errorInfo": {"messageToSend": {"title": "PhotoDoesNotMeetRequirementError", "message": "Face is wearing sunglasses"}}},
        ]});
        let t = summary_table(&output).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("USER    KEY"), "{t}");
        assert!(
            lines[1].contains("accepted") && lines[1].ends_with("resized-1_happy_face.jpg"),
            "{t}"
        );
        assert!(
            lines[2].contains("PhotoDoesNotMeetRequirementError  Face is wearing sunglasses"),
            "{t}"
        );
        assert_eq!(summary_table(&json!({"other": 1})), None);
    }
}
