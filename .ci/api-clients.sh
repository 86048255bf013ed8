#!/usr/bin/env bash
# The AWS clients the Step Functions API tests drive (coordinator/cli/tests/api_fleet.rs): the
# `aws` CLI and boto3 from PyPI, in a venv of their own. The tests look for it at
# $MAPFLEET_API_CLIENTS (default ~/.cache/mapfleet/api-clients) and fall back to `aws` and
# `python3` on PATH. Re-running it is cheap: a venv that already has both is left alone.
set -euo pipefail

say() { echo "api-clients: $*" >&2; }

VENV=${MAPFLEET_API_CLIENTS:-$HOME/.cache/mapfleet/api-clients}
# The versions the wire format was checked with (see the API section of the README).
AWSCLI_SPEC=${MAPFLEET_AWSCLI_SPEC:-awscli>=1.40,<2}
BOTO3_SPEC=${MAPFLEET_BOTO3_SPEC:-boto3>=1.40,<2}

if [ -x "$VENV/bin/aws" ] && "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    say "aws CLI and boto3 ready in $VENV"
    exit 0
fi

PY=$(command -v python3 || true)
if [ -z "$PY" ] || ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing python3 and venv from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 python3-venv python3-pip >/dev/null
        PY=$(command -v python3)
    else
        say "error: python3 with venv is needed (apt-get install python3-venv)"
        exit 1
    fi
fi

say "installing the aws CLI and boto3 into $VENV"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$AWSCLI_SPEC" "$BOTO3_SPEC"
"$VENV/bin/aws" --version >&2
