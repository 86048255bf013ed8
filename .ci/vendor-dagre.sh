#!/usr/bin/env bash
# Refreshes the console's vendored graph layout library from npm, by package name:
#   bash .ci/vendor-dagre.sh [VERSION]   (default: the version named in the NOTICE)
# The console embeds the file in the binary; nothing of npm is needed to build or run it.
set -euo pipefail
version="${1:-3.1.3}"
dest="$(cd "$(dirname "$0")/.." && pwd)/coordinator/cli/src/console/assets/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "@dagrejs/dagre@$version" >/dev/null && tar xzf ./*.tgz)
sed -e '/sourceMappingURL/d' \
    -e "s|/\*! For license information please see dagre.min.js.LEGAL.txt \*/|/*! dagre $version (npm @dagrejs/dagre, bundles @dagrejs/graphlib); MIT licence: see LICENSE-dagre and NOTICE.md beside this file */|" \
    "$work/package/dist/dagre.min.js" >"$dest/dagre.min.js"
cp "$work/package/LICENSE" "$dest/LICENSE-dagre"
echo "vendored @dagrejs/dagre $version into $dest (update the version in NOTICE.md)"
