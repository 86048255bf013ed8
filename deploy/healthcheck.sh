#!/bin/bash
# Container health check of a mapfleet process: its metrics endpoint on 127.0.0.1:PORT answers
# and carries the build info. bash's /dev/tcp only: the images have no curl or wget.
#   usage: healthcheck.sh PORT
set -euo pipefail
port=${1:?usage: healthcheck.sh PORT}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -q '^mapfleet_build_info' <&3
