"""Measures SFace cosine on same-person and different-person pairs of the training faces and
writes the table that docs/face-similarity.md and worker/src/face/similarity.rs are based on.

    python calibrate_similarity.py --downloads DIR --models MODELS_DIR --out FILE.json

Pairs (faces from faces.py, detected and aligned as the worker does; never the evaluation
packages):
- same person, different photos: the people faces.SAME_PERSON groups across files;
- same person, same photo re-taken: each face against re-rendered copies of itself (alignment
  jitter, brightness, blur, noise, JPEG, mirror; train_sunglasses.render with no eyewear);
- different people: every pair of faces of different people.
Crops from the same photo (a file and its crop) are left out of the "different photos" group.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faces  # noqa: E402
import train_sunglasses as ts  # noqa: E402

SEED = 20261203
VARIANTS = 4
# Prior odds that two faces in a duplicate search are the same person: 1 to PRIOR_ODDS_AGAINST.
PRIOR_ODDS_AGAINST = 19


def embedder(model_path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def embed(crops):  # N x 112 x 112 x 3 uint8, RGB
        x = crops.astype(np.float32).transpose(0, 3, 1, 2)
        out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def same_photo(a, b):
    """A photo and a crop of it (the packages ship both for some people)."""
    stem = lambda k: k.split("/")[1].split("#")[0].rsplit(".", 1)[0].replace("_crop", "")  # noqa: E731
    return stem(a) == stem(b)


def fit(same, diff):
    """Class-balanced logistic regression of same-person on cosine (Newton's method):
    returns slope k and the cosine where the balanced posterior is 50%."""
    z = np.concatenate([same, diff])
    y = np.concatenate([np.ones(len(same)), np.zeros(len(diff))])
    w = np.where(y == 1, 0.5 / len(same), 0.5 / len(diff))
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * z + b)))
        g = np.array([(w * (p - y) * z).sum(), (w * (p - y)).sum()])
        ww = w * p * (1 - p)
        h = np.array([[(ww * z * z).sum(), (ww * z).sum()], [(ww * z).sum(), ww.sum()]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
    return float(a), float(-b / a)


def table(out, k, c50):
    """Markdown: cosine, similarity, and the share of each pair group at or above it."""
    groups = {name: np.array([p[2] for p in pairs]) for name, pairs in out.items()}
    rows = ["| cosine | Similarity | same person, other photo ≥ | same photo re-rendered ≥ | different people ≥ |",
            "|---|---|---|---|---|"]
    for c in (0.2, 0.3, 0.363, 0.4, 0.45, 0.476, 0.5, 0.53, 0.558, 0.6, 0.65, 0.7, 0.8, 0.9):
        sim = 100 / (1 + np.exp(-k * (c - c50)))
        cells = [f"{(g >= c).mean() * 100:.1f}% ({int((g >= c).sum())})" for g in groups.values()]
        rows.append(f"| {c:.3f} | {sim:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--downloads", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pins", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "packages.sha256"))
    args = ap.parse_args()
    pins = dict(line.split()[::-1] for line in open(args.pins) if line.strip() and not line.startswith("#"))
    faces.fetch(args.downloads, pins)
    canvas, lms, keys, persons = faces.extract(
        args.downloads, os.path.join(args.models, "face_detection_yunet_2023mar_folded.onnx"))
    embed = embedder(os.path.join(args.models, "face_recognition_sface_2021dec_folded.onnx"))
    crops = canvas[:, faces.PAD : faces.PAD + faces.CROP, faces.PAD : faces.PAD + faces.CROP]
    e = embed(crops)
    cos = e @ e.T
    n = len(keys)
    same, diff = [], []
    for i in range(n):
        for j in range(i + 1, n):
            pair = (keys[i], keys[j], float(cos[i, j]))
            if persons[i] == persons[j]:
                if not same_photo(keys[i], keys[j]):
                    same.append(pair)
            else:
                diff.append(pair)
    # Re-rendered copies: the aligned crop with jitter and image degradation, full 112 rows.
    rng = np.random.default_rng(SEED)
    rerendered = []
    for i in range(n):
        kinds = ["bare"] * VARIANTS
        x, _y = ts.render(np.repeat(canvas[i : i + 1], VARIANTS, 0), np.repeat(lms[i : i + 1], VARIANTS, 0),
                          np.zeros(VARIANTS, bool), kinds, rng, rows=(0, faces.CROP))
        ev = embed(x)
        rerendered += [(keys[i], f"variant {v}", float(ev[v] @ e[i])) for v in range(VARIANTS)]
    out = {"same_person_other_photo": same, "same_person_rerendered": rerendered, "different_people": diff}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for name, pairs in out.items():
        c = np.array([p[2] for p in pairs])
        print(f"{name}: {len(c)} pairs, cosine min {c.min():.3f} p5 {np.percentile(c, 5):.3f} "
              f"median {np.median(c):.3f} p95 {np.percentile(c, 95):.3f} max {c.max():.3f}")
    same_c = np.array([p[2] for p in same + rerendered])
    diff_c = np.array([p[2] for p in diff])
    k, c50_balanced = fit(same_c, diff_c)
    c50 = c50_balanced + np.log(PRIOR_ODDS_AGAINST) / k
    print(f"fitted slope {k:.2f}, balanced 50% at cosine {c50_balanced:.4f}; with the 1:{PRIOR_ODDS_AGAINST} "
          f"prior 50% at {c50:.4f}, 70 at {c50 + np.log(7 / 3) / k:.4f}")
    print(f"rounded as worker/src/face/similarity.rs uses them: slope {round(k)}, 50% at {round(c50, 2):.2f}")
    print(table(out, round(k), round(c50, 2)))
    top = sorted(diff, key=lambda p: -p[2])[:5]
    print("closest different people:", top)
    low = sorted(same, key=lambda p: p[2])[:5]
    print("farthest same person:", low)


if __name__ == "__main__":
    main()
