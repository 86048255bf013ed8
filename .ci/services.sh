#!/usr/bin/env bash
# Makes sure the services the tests talk to are up on loopback:
#   RabbitMQ 127.0.0.1:5672 (guest/guest), Redis 127.0.0.1:6379; and that Prometheus
#   (promtool and the server, Debian's `prometheus`) is installed for the deploy tests.
# A service already listening is left alone. One installed but stopped is started; one
# missing is installed from Debian's packages first (needs root and apt-get).
set -euo pipefail

say() { echo "services: $*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        listening "$1" && return 0
        sleep 0.5
    done
    say "error: $3 did not start listening on 127.0.0.1:$1 within $2 s"
    return 1
}

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "error: $* not installed and cannot install it here (needs root and apt-get); install it and rerun"
        exit 1
    fi
    say "installing $* from Debian's packages"
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if listening 6379; then
    say "Redis is up on 127.0.0.1:6379"
else
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    mkdir -p /tmp/mapfleet-redis
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp/mapfleet-redis --logfile /tmp/mapfleet-redis/redis.log
    wait_port 6379 30 Redis
fi

if listening 5672; then
    say "RabbitMQ is up on 127.0.0.1:5672"
else
    command -v rabbitmq-server >/dev/null || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
    say "starting RabbitMQ (takes 10-20 s)"
    rabbitmq-server -detached >/dev/null 2>&1 || /usr/lib/rabbitmq/bin/rabbitmq-server -detached
    wait_port 5672 120 RabbitMQ
    rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

# Prometheus's promtool and server: the deploy tests check the rules with them and scrape a
# real fleet (shared/tests/deploy.rs, worker/tests/fleet_prometheus.rs). Not started here.
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    say "Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') is installed"
else
    apt_install prometheus
fi

# The manifest checks (deploy/validate.sh): kubectl's built-in kustomize, and a venv with
# PyPI's kubernetes-validate (made once, then reused).
command -v kubectl >/dev/null || apt_install kubernetes-client
bash deploy/validate.sh --setup

# What the broker carries into the run: a broker left with thousands of queues, or with a
# memory or disk alarm raised (publishers blocked), makes the fleet tests hang; say so up front.
if command -v rabbitmqctl >/dev/null; then
    queues=$(timeout 60 rabbitmqctl list_queues name -q 2>/dev/null | wc -l || echo "?")
    say "RabbitMQ holds $queues queues"
    if ! timeout 60 rabbitmq-diagnostics -q check_local_alarms >/dev/null 2>&1; then
        say "warning: RabbitMQ reports a resource alarm (publishers are blocked):"
        timeout 60 rabbitmq-diagnostics -q alarms >&2 || true
    fi
fi

# The aws CLI and boto3 for the Step Functions API tests.
bash "$(dirname "$0")/api-clients.sh"

# Headless Chromium and chromedriver for the web console test.
bash "$(dirname "$0")/chromium.sh"
