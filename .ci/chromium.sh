#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console test (coordinator/cli/tests/console_chromium.rs):
# Debian's `chromium` and `chromium-driver`, installed by package name when missing.
set -euo pipefail

say() { echo "chromium: $*" >&2; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    say "$(chromium --version 2>/dev/null | head -1) and chromedriver are installed"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "error: chromium and chromium-driver are not installed and cannot be installed here (needs root and apt-get)"
    exit 1
fi
say "installing chromium and chromium-driver from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
