#!/usr/bin/env bash
# Installs the pinned aws-local-stepfunctions (package-lock.json) for compare.py, from the npm
# registry, into DIR (default ~/.cache/mapfleet/local-sfn), with run.cjs next to it; prints DIR.
# Needs Node.js and npm.
#   usage: bash loadtest/local-sfn/setup.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$HOME/.cache/mapfleet/local-sfn}
if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2
    else
        echo "local-sfn: npm is not installed (Debian's nodejs and npm packages); install it and rerun" >&2
        exit 1
    fi
fi
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$here/run.cjs" "$dir/"
if [ ! -d "$dir/node_modules/aws-local-stepfunctions" ] || ! cmp -s "$here/package-lock.json" "$dir/.installed-lock"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    cp "$here/package-lock.json" "$dir/.installed-lock"
fi
echo "$dir"
