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
/// The folds' manifest, and the first line it must have (`FOLD_VERSION` in the script).
pub const MANIFEST_FILE: &str = "folded.sha256";
const FOLD_VERSION: &str = "fold 2";

/// The embedding's length.
pub const EMBEDDING_LEN: usize = 128;

/// Where the models and the onnxruntime library are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    pub yunet: PathBuf,
    pub sface: PathBuf,
    pub onnxruntime: PathBuf,
    /// `folded.sha256`, whose first line names the fold's version.
    pub manifest: PathBuf,
}

impl ModelPaths {
    /// The files `deploy/setup-models.sh` writes into `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            yunet: dir.join(YUNET_FILE),
            sface: dir.join(SFACE_FILE),
            onnxruntime: dir.join(ORT_LIB_FILE),
            manifest: dir.join(MANIFEST_FILE),
        }
    }

    /// The first missing file, if any; the folds' manifest when the folded models are from
    /// an older `setup-models.sh` (their fixed input shapes no longer fit the detector's input).
    pub fn missing(&self) -> Option<&Path> {
        let missing = [&self.yunet, &self.sface, &self.onnxruntime]
            .into_iter()
            .find(|p| !p.is_file())
            .map(PathBuf::as_path);
        if missing.is_some() {
            return missing;
        }
        let manifest = self.manifest.as_path();
        let current = std::fs::read_to_string(manifest)
            .map(|m| m.lines().next() == Some(FOLD_VERSION))
            .unwrap_or(false);
        (!current).then_some(manifest)
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
        "the face models are not installed ({} is missing or from an older fold): run `make models` or \
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
                .map_err(opts)?
                // Buffers planned once per input shape and reused (the photos of a batch
                // come in a few shapes; onnxruntime's default, stated because it matters).
                .with_memory_pattern(true)
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
    /// The detector's input long side, in pixels (rounded up to 32). 640, the Python
    /// baseline's and OpenCV's size, finds faces down to about 20 px in a 1200 px photo.
    pub size: usize,
    /// The second look (see [`Models::detect`]): when the first pass finds no face, each
    /// candidate scoring at least this much is looked at again, zoomed in; 1.0 turns it off.
    pub rescue_threshold: f32,
    /// At most this many candidates are looked at again.
    pub rescue_candidates: usize,
    /// A last pass at this larger size when neither pass found a face (off by default: it
    /// costs about three first passes on every photo without a face). At 1280 it finds faces
    /// down to about 12 px in a 1200 px photo; 640 with the second look, about 30 px.
    pub retry_size: Option<usize>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.8,
            nms_iou: 0.3,
            max_faces: 100,
            size: yunet::INPUT_SIZE,
            rescue_threshold: 0.5,
            rescue_candidates: 3,
            retry_size: None,
        }
    }
}

/// The second look's input side: a candidate's surroundings (three times its box) are
/// resized to this, so that the face spans about 75 px, where YuNet scores best.
const RESCUE_SIZE: usize = 224;
/// How much of the candidate's surroundings the second look sees, in box sizes.
const RESCUE_CONTEXT: f32 = 3.0;

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
    ///
    /// One pass at `opts.size`. When it finds no face, the candidates that scored between
    /// `opts.rescue_threshold` and the threshold (a face behind dark glasses, a small or
    /// blurred face) are looked at again: each one's surroundings are cut from the full image
    /// and resized so that the face is large for the detector, which then decides with the
    /// same threshold. A background blob stays below the threshold when zoomed in, so the
    /// no-face photo stays without a face; this costs one small pass per candidate, and only
    /// on photos where nothing was found.
    pub fn detect(
        &self,
        rgb: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, ModelError> {
        let lb = yunet::letterbox(rgb, opts.size).map_err(ModelError::Letterbox)?;
        let low = opts.rescue_threshold.min(opts.score_threshold);
        let cands = self.yunet_candidates(&lb, low)?;
        let (found, maybe): (Vec<Detection>, Vec<Detection>) = cands
            .into_iter()
            .partition(|d| d.score >= opts.score_threshold);
        let found = yunet::nms(found, opts.nms_iou, opts.max_faces);
        if !found.is_empty() {
            return Ok(found);
        }
        let mut rescued = Vec::new();
        for c in yunet::nms(maybe, opts.nms_iou, opts.rescue_candidates) {
            rescued.extend(self.second_look(rgb, &c, opts)?);
        }
        let rescued = yunet::nms(rescued, opts.nms_iou, opts.max_faces);
        match opts.retry_size {
            Some(size) if rescued.is_empty() && size > opts.size => {
                let lb = yunet::letterbox(rgb, size).map_err(ModelError::Letterbox)?;
                let found = self.yunet_candidates(&lb, opts.score_threshold)?;
                Ok(yunet::nms(found, opts.nms_iou, opts.max_faces))
            }
            _ => Ok(rescued),
        }
    }

    /// YuNet on a candidate's surroundings, zoomed in; the faces found there whose centre is
    /// near the candidate's, in the full image's pixels.
    fn second_look(
        &self,
        rgb: &RgbImage,
        c: &Detection,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, ModelError> {
        let side = (c.w.max(c.h) * RESCUE_CONTEXT).max(16.0);
        let (cx, cy) = (c.x + c.w / 2.0, c.y + c.h / 2.0);
        let (w, h) = (rgb.width() as f32, rgb.height() as f32);
        let x0 = (cx - side / 2.0).clamp(0.0, (w - 1.0).max(0.0)).floor();
        let y0 = (cy - side / 2.0).clamp(0.0, (h - 1.0).max(0.0)).floor();
        let x1 = (cx + side / 2.0).clamp(x0 + 1.0, w).ceil();
        let y1 = (cy + side / 2.0).clamp(y0 + 1.0, h).ceil();
        let crop = image::imageops::crop_imm(
            rgb,
            x0 as u32,
            y0 as u32,
            (x1 - x0) as u32,
            (y1 - y0) as u32,
        )
        .to_image();
        let lb = yunet::letterbox(&crop, RESCUE_SIZE).map_err(ModelError::Letterbox)?;
        let found = self.yunet_candidates(&lb, opts.score_threshold)?;
        let near = |d: &Detection| {
            let (dx, dy) = (d.x + d.w / 2.0 - (cx - x0), d.y + d.h / 2.0 - (cy - y0));
            dx.abs() <= c.w.max(d.w) && dy.abs() <= c.h.max(d.h)
        };
        Ok(found
            .into_iter()
            .filter(near)
            .map(|mut d| {
                d.x += x0;
                d.y += y0;
                for p in &mut d.landmarks {
                    p[0] += x0;
                    p[1] += y0;
                }
                d
            })
            .collect())
    }

    /// YuNet on a letterboxed input: every cell scoring at least `threshold`, in the original
    /// image's pixels (no NMS).
    fn yunet_candidates(
        &self,
        lb: &yunet::Letterbox,
        threshold: f32,
    ) -> Result<Vec<Detection>, ModelError> {
        let (w, h) = (lb.width as i64, lb.height as i64);
        self.yunet.with(|s| {
            let input =
                TensorRef::from_array_view(([1i64, 3, h, w], &lb.data[..])).map_err(|e| {
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
            Ok(yunet::candidates(
                &per,
                (lb.width, lb.height),
                lb.scale,
                threshold,
            ))
        })
    }

    /// The L2-normalised SFace embedding of an aligned 112×112 RGB crop.
    pub fn embed(&self, crop: &[u8]) -> Result<Vec<f32>, ModelError> {
        let mut v = self.embed_batch(&[crop])?;
        v.pop().ok_or(ModelError::EmbeddingLength(0))
    }

    /// The embeddings of several crops, as one ONNX batch. On a CPU core this is no faster
    /// per face than one at a time (the bench's "batched inference" rows say by how much), so
    /// the tasks embed one face at a time; it is kept for callers with many faces at hand.
    pub fn embed_batch(&self, crops: &[&[u8]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if crops.iter().any(|c| c.len() != CROP * CROP * 3) {
            return Err(ModelError::CropSize);
        }
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let plane = CROP * CROP;
        let mut data = vec![0f32; 3 * plane * crops.len()];
        for (crop, out) in crops.iter().zip(data.chunks_exact_mut(3 * plane)) {
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in crop.chunks_exact(3).enumerate() {
                r[i] = f32::from(px[0]);
                g[i] = f32::from(px[1]);
                b[i] = f32::from(px[2]);
            }
        }
        let n = CROP as i64;
        self.sface.with(|s| {
            let ort_error = |error| ModelError::Run {
                model: SFACE,
                error: Arc::new(error),
            };
            let input = TensorRef::from_array_view(([crops.len() as i64, 3, n, n], &data[..]))
                .map_err(|e| ModelError::Input {
                    model: SFACE,
                    error: Arc::new(e),
                })?;
            let out = s.run(ort::inputs![input]).map_err(ort_error)?;
            let (_, v) = out[0].try_extract_tensor::<f32>().map_err(ort_error)?;
            if v.len() != EMBEDDING_LEN * crops.len() {
                return Err(ModelError::EmbeddingLength(v.len()));
            }
            Ok(v.chunks_exact(EMBEDDING_LEN)
                .map(|e| {
                    let mut e = e.to_vec();
                    normalize(&mut e);
                    e
                })
                .collect())
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
