//! The ONNX models (YuNet, SFace, and the sunglasses classifier compiled into the binary, see
//! [`super::sunglasses`]), run with onnxruntime through `ort` (`load-dynamic`: the library is the
//! `libonnxruntime.so` that `deploy/setup-models.sh` takes from the PyPI `onnxruntime` wheel).
//!
//! Sessions run single-threaded (`intra_threads = 1`, no spinning): parallelism comes from
//! running several tasks at once, one session each, so a pool holds one session per
//! concurrent runner. `Session::run` needs `&mut`, hence a mutex per session.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use image::RgbImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::align::CROP;
use super::similarity::normalize;
use super::sunglasses;
use super::yunet::{self, Detection, LetterboxError, StrideOutputs};

/// File names inside the models directory (as written by `deploy/setup-models.sh`).
pub const YUNET_FILE: &str = "face_detection_yunet_2023mar_folded.onnx";
pub const SFACE_FILE: &str = "face_recognition_sface_2021dec_folded.onnx";
pub const ORT_LIB_FILE: &str = "libonnxruntime.so";

/// The embedding's length.
pub const EMBEDDING_LEN: usize = 128;

/// Where the models and the onnxruntime library are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    pub yunet: PathBuf,
    pub sface: PathBuf,
    pub onnxruntime: PathBuf,
}

impl ModelPaths {
    /// The files `deploy/setup-models.sh` writes into `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            yunet: dir.join(YUNET_FILE),
            sface: dir.join(SFACE_FILE),
            onnxruntime: dir.join(ORT_LIB_FILE),
        }
    }

    /// The first missing file, if any.
    pub fn missing(&self) -> Option<&Path> {
        [&self.yunet, &self.sface, &self.onnxruntime]
            .into_iter()
            .find(|p| !p.is_file())
            .map(PathBuf::as_path)
    }

    /// [`ModelError::NotInstalled`] (naming the directory to install into) when a file is
    /// missing.
    pub fn check(&self) -> Result<(), ModelError> {
        match self.missing() {
            None => Ok(()),
            Some(missing) => Err(ModelError::NotInstalled {
                missing: missing.to_path_buf(),
                dir: missing.parent().map(Path::to_path_buf).unwrap_or_default(),
            }),
        }
    }
}

/// Why the models could not be loaded or run. The ONNX runtime's errors are shared (`Arc`)
/// because the environment's outcome is kept for the whole process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the face models are not installed ({} is missing): run `make models` or \
         `bash deploy/setup-models.sh {}`",
        missing.display(),
        dir.display()
    )]
    NotInstalled { missing: PathBuf, dir: PathBuf },
    /// The onnxruntime library.
    #[error("loading {}: {error}", path.display())]
    Library {
        path: PathBuf,
        error: Arc<ort::LoadDynamicError>,
    },
    /// A model file.
    #[error("loading {}: {error}", path.display())]
    Load {
        path: PathBuf,
        error: Arc<ort::Error>,
    },
    #[error("onnxruntime environment: {0}")]
    Environment(Arc<ort::Error>),
    #[error("session builder: {0}")]
    SessionBuilder(Arc<ort::Error>),
    #[error("session options: {0}")]
    SessionOptions(Arc<ort::Error>),
    /// The blocking task that loads the models panicked or was cancelled.
    #[error("loading the face models: {0}")]
    LoadTask(Arc<tokio::task::JoinError>),
    #[error("{model} input: {error}")]
    Input {
        model: &'static str,
        error: Arc<ort::Error>,
    },
    #[error("{model}: {error}")]
    Run {
        model: &'static str,
        error: Arc<ort::Error>,
    },
    #[error("{model}: no output {name}")]
    MissingOutput { model: &'static str, name: String },
    #[error("{model} {name}: {error}")]
    Output {
        model: &'static str,
        name: String,
        error: Arc<ort::Error>,
    },
    #[error("{model}: unexpected outputs")]
    Outputs { model: &'static str },
    #[error("embed: crop must be 112x112 RGB")]
    CropSize,
    #[error(transparent)]
    SunglassesModel(#[from] sunglasses::ModelMismatch),
    #[error("sunglasses model: {0}")]
    SunglassesLoad(Arc<ort::Error>),
    #[error("sunglasses model: output has {0} values for one face")]
    SunglassesOutput(usize),
    #[error("SFace: embedding has {0} values")]
    EmbeddingLength(usize),
    /// Not `#[from]`: the message already says it, it is not repeated as a source.
    #[error("YuNet input: {0}")]
    Letterbox(LetterboxError),
}

const YUNET: &str = "YuNet";
const SFACE: &str = "SFace";
const SUNGLASSES: &str = "sunglasses";

/// The process-wide onnxruntime environment: the library can be loaded once per process.
static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, ModelError>> = OnceLock::new();

fn environment(lib: &Path) -> Result<&'static ort::environment::Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(lib).map_err(|e| ModelError::Library {
                path: lib.to_path_buf(),
                error: Arc::new(e),
            })?;
            builder
                .with_name("mapfleet")
                .build()
                .map_err(|e| ModelError::Environment(Arc::new(e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A few sessions of one model; a runner takes a free one, or waits on one.
struct Pool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl Pool {
    fn load(
        env: &ort::environment::Environment,
        path: &Path,
        size: usize,
    ) -> Result<Self, ModelError> {
        Self::build(env, size, |b| {
            b.commit_from_file(path).map_err(|e| ModelError::Load {
                path: path.to_path_buf(),
                error: Arc::new(e),
            })
        })
    }

    /// A pool of a model held in memory.
    fn from_memory(
        env: &ort::environment::Environment,
        model: &[u8],
        size: usize,
    ) -> Result<Self, ModelError> {
        Self::build(env, size, |b| {
            b.commit_from_memory(model)
                .map_err(|e| ModelError::SunglassesLoad(Arc::new(e)))
        })
    }

    fn build(
        env: &ort::environment::Environment,
        size: usize,
        commit: impl Fn(&mut ort::session::builder::SessionBuilder) -> Result<Session, ModelError>,
    ) -> Result<Self, ModelError> {
        let mut sessions = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            let opts = |e: ort::Error<ort::session::builder::SessionBuilder>| {
                ModelError::SessionOptions(Arc::new(e.into()))
            };
            let mut b = Session::builder(env)
                .map_err(|e| ModelError::SessionBuilder(Arc::new(e)))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(opts)?
                .with_intra_threads(1)
                .map_err(opts)?
                .with_inter_threads(1)
                .map_err(opts)?
                .with_intra_op_spinning(false)
                .map_err(opts)?;
            let s = commit(&mut b)?;
            sessions.push(Mutex::new(s));
        }
        Ok(Self {
            sessions,
            next: AtomicUsize::new(0),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        for s in &self.sessions {
            if let Ok(mut g) = s.try_lock() {
                return f(&mut g);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        let mut g = self.sessions[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

/// Detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Minimum face score (0–1); 0.8 drops YuNet's rare background hits.
    pub score_threshold: f32,
    /// NMS overlap.
    pub nms_iou: f32,
    /// At most this many faces per image.
    pub max_faces: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.8,
            nms_iou: 0.3,
            max_faces: 100,
        }
    }
}

/// YuNet, SFace and the sunglasses classifier, loaded.
pub struct Models {
    yunet: Pool,
    sface: Pool,
    sunglasses: Pool,
}

impl Models {
    /// Loads the models with `sessions` sessions each (the sunglasses model after checking
    /// its sha256).
    pub fn load(paths: &ModelPaths, sessions: usize) -> Result<Self, ModelError> {
        paths.check()?;
        let env = environment(&paths.onnxruntime)?;
        Ok(Self {
            yunet: Pool::load(env, &paths.yunet, sessions)?,
            sface: Pool::load(env, &paths.sface, sessions)?,
            sunglasses: Pool::from_memory(env, sunglasses::verified_model()?, sessions)?,
        })
    }

    /// [`Models::load`] on the blocking pool, for async callers (loading takes seconds).
    pub async fn load_blocking(paths: ModelPaths, sessions: usize) -> Result<Self, ModelError> {
        tokio::task::spawn_blocking(move || Self::load(&paths, sessions))
            .await
            .map_err(|e| ModelError::LoadTask(Arc::new(e)))?
    }

    /// The faces of an image, best first.
    pub fn detect(
        &self,
        rgb: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, ModelError> {
        let lb = yunet::letterbox(rgb).map_err(ModelError::Letterbox)?;
        let n = yunet::INPUT_SIZE as i64;
        self.yunet.with(|s| {
            let input =
                TensorRef::from_array_view(([1i64, 3, n, n], &lb.data[..])).map_err(|e| {
                    ModelError::Input {
                        model: YUNET,
                        error: Arc::new(e),
                    }
                })?;
            let out = s
                .run(ort::inputs!["input" => input])
                .map_err(|e| ModelError::Run {
                    model: YUNET,
                    error: Arc::new(e),
                })?;
            let get = |name: String| -> Result<&[f32], ModelError> {
                let Some(v) = out.get(&name) else {
                    return Err(ModelError::MissingOutput { model: YUNET, name });
                };
                match v.try_extract_tensor::<f32>() {
                    Ok((_, d)) => Ok(d),
                    Err(e) => Err(ModelError::Output {
                        model: YUNET,
                        name,
                        error: Arc::new(e),
                    }),
                }
            };
            let mut per = Vec::with_capacity(3);
            for s in yunet::STRIDES {
                per.push(StrideOutputs {
                    cls: get(format!("cls_{s}"))?,
                    obj: get(format!("obj_{s}"))?,
                    bbox: get(format!("bbox_{s}"))?,
                    kps: get(format!("kps_{s}"))?,
                });
            }
            let per: [StrideOutputs<'_>; 3] = per
                .try_into()
                .map_err(|_| ModelError::Outputs { model: YUNET })?;
            Ok(yunet::decode(
                &per,
                lb.scale,
                opts.score_threshold,
                opts.nms_iou,
                opts.max_faces,
            ))
        })
    }

    /// The L2-normalised SFace embedding of an aligned 112×112 RGB crop.
    pub fn embed(&self, crop: &[u8]) -> Result<Vec<f32>, ModelError> {
        if crop.len() != CROP * CROP * 3 {
            return Err(ModelError::CropSize);
        }
        let plane = CROP * CROP;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in crop.chunks_exact(3).enumerate() {
            data[i] = f32::from(px[0]);
            data[plane + i] = f32::from(px[1]);
            data[2 * plane + i] = f32::from(px[2]);
        }
        let n = CROP as i64;
        self.sface.with(|s| {
            let ort_error = |error| ModelError::Run {
                model: SFACE,
                error: Arc::new(error),
            };
            let input = TensorRef::from_array_view(([1i64, 3, n, n], &data[..])).map_err(|e| {
                ModelError::Input {
                    model: SFACE,
                    error: Arc::new(e),
                }
            })?;
            let out = s.run(ort::inputs![input]).map_err(ort_error)?;
            let (_, v) = out[0].try_extract_tensor::<f32>().map_err(ort_error)?;
            if v.len() != EMBEDDING_LEN {
                return Err(ModelError::EmbeddingLength(v.len()));
            }
            let mut v = v.to_vec();
            normalize(&mut v);
            Ok(v)
        })
    }

    /// The calibrated probability (0–1) that the face of an aligned 112×112 RGB crop wears
    /// sunglasses.
    pub fn sunglasses(&self, crop: &[u8]) -> Result<f32, ModelError> {
        let data = sunglasses::input(crop).ok_or(ModelError::CropSize)?;
        let [c, h, w] = sunglasses::INPUT_SHAPE.map(|d| d as i64);
        self.sunglasses.with(|s| {
            let ort_error = |error| ModelError::Run {
                model: SUNGLASSES,
                error: Arc::new(error),
            };
            let input = TensorRef::from_array_view(([1i64, c, h, w], &data[..])).map_err(|e| {
                ModelError::Input {
                    model: SUNGLASSES,
                    error: Arc::new(e),
                }
            })?;
            let out = s
                .run(ort::inputs![sunglasses::INPUT => input])
                .map_err(ort_error)?;
            let (_, v) = out[0].try_extract_tensor::<f32>().map_err(ort_error)?;
            match v {
                [p] => Ok(*p),
                _ => Err(ModelError::SunglassesOutput(v.len())),
            }
        })
    }
}
