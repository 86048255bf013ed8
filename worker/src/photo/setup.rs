//! Why the photo tasks' context could not be built: models, stores, the face collection or
//! the buckets. Shown to the person starting a worker or running a command, so each names
//! what it was doing and where.

use crate::face::FaceError;
use crate::face::models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Models(#[from] ModelError),
    /// The local face engine was chosen (the default) but its models are missing: the AWS
    /// engine needs none.
    #[error("{0}, or use --face-engine aws")]
    NoLocalModels(ModelError),
    /// `url` is redacted: it never carries a password.
    #[error("cannot reach Redis at {url} for the face collection and metadata table: {error}")]
    Redis {
        url: String,
        error: shared::redis::RedisError,
    },
    #[error("creating collection {collection_id}: {error}")]
    Collection {
        collection_id: String,
        error: FaceError,
    },
    /// The collection on a Rekognition (or compatible) endpoint.
    #[error("creating face collection {collection_id} at {endpoint}: {error}")]
    RemoteCollection {
        collection_id: String,
        endpoint: String,
        error: FaceError,
    },
    #[error("creating bucket {bucket}: {error}")]
    Bucket {
        bucket: String,
        error: crate::store::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::face::ModelPaths;

    #[test]
    fn missing_models_name_the_file_the_directory_and_the_way_out() {
        let dir = Path::new("no-such-models-dir");
        let e = ModelPaths::in_dir(dir).check().unwrap_err();
        let local = SetupError::from(e.clone()).to_string();
        assert_eq!(
            local,
            "the face models are not installed (no-such-models-dir/\
             face_detection_yunet_2023mar_folded.onnx is missing or from an older fold): \
             run `make models` or \
             `bash deploy/setup-models.sh no-such-models-dir`"
        );
        assert_eq!(
            SetupError::NoLocalModels(e).to_string(),
            format!("{local}, or use --face-engine aws")
        );
    }
}
