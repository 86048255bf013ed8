#!/usr/bin/env bash
# Validates the deployment manifests offline (no cluster, no container engine):
#   - each Kubernetes overlay (deploy/k8s/overlays/*), built with `kubectl kustomize`, against
#     the Kubernetes API schemas (PyPI `kubernetes-validate`, strict: unknown fields refused)
#     and KEDA's CRD schemas vendored in deploy/k8s/vendor/keda/;
#   - deploy/compose.yaml, deploy/Containerfile and the manifests against the fleet's own
#     rules (deploy/validate.py: probes, limits, non-root, read-only roots, shutdown grace
#     longer than the worker's drain, the KEDA queue the fleet's prefix names, ...).
#
#   usage: deploy/validate.sh            (shared/tests/deploy.rs runs it)
#          deploy/validate.sh --setup    (only make the venv; .ci/services.sh does this)
#
# The venv ($MAPFLEET_DEPLOY_VENV, default ~/.cache/mapfleet/deploy-venv) is made on first
# use with pinned versions from PyPI. kubectl comes from Debian's `kubernetes-client` package
# or any kubectl with kustomize built in.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${MAPFLEET_DEPLOY_VENV:-$HOME/.cache/mapfleet/deploy-venv}
K8S_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=${MAPFLEET_KUBERNETES_VERSION:-1.30.0}

say() { echo "validate: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    command -v python3 >/dev/null || die "python3 is needed"
    say "making $VENV (kubernetes-validate==$K8S_VALIDATE_VERSION from PyPI)"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install -q "kubernetes-validate==$K8S_VALIDATE_VERSION" \
        || die "pip install kubernetes-validate failed (is PyPI reachable?)"
fi
[ "${1:-}" = --setup ] && exit 0

command -v kubectl >/dev/null \
    || die "kubectl not found (Debian: apt-get install kubernetes-client; .ci/services.sh does it)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in k8s/overlays/*/; do
    name=$(basename "$overlay")
    kubectl kustomize "$overlay" > "$out/$name.yaml" 2> "$out/$name.err" \
        || die "kubectl kustomize $overlay failed: $(cat "$out/$name.err")"
done
exec "$VENV/bin/python" validate.py --kubernetes-version "$KUBERNETES_VERSION" "$out"/*.yaml
