#!/usr/bin/env bash
# Builds the coordinator and worker images from deploy/Containerfile with whichever engine is
# here: podman (or buildah) first, else docker (BuildKit). From the repository root:
#
#   deploy/build-images.sh [TAG]        # TAG defaults to the workspace version
#   ENGINE=docker deploy/build-images.sh
#
# Images: mapfleet-coordinator:TAG, mapfleet-worker:TAG (compose and the Kubernetes
# manifests use these names).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
engine=${ENGINE:-}
if [ -z "$engine" ]; then
    for e in podman buildah docker; do
        if command -v "$e" >/dev/null; then engine=$e; break; fi
    done
fi
[ -n "$engine" ] || { echo "build-images: no podman, buildah or docker found" >&2; exit 1; }
for target in coordinator worker; do
    echo "build-images: $engine building mapfleet-$target:$tag" >&2
    case $engine in
        buildah) buildah bud --layers -f deploy/Containerfile --target "$target" -t "mapfleet-$target:$tag" . ;;
        docker) DOCKER_BUILDKIT=1 docker build -f deploy/Containerfile --target "$target" -t "mapfleet-$target:$tag" . ;;
        *) "$engine" build -f deploy/Containerfile --target "$target" -t "mapfleet-$target:$tag" . ;;
    esac
done
