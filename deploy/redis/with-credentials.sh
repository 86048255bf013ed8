#!/bin/sh
# Starts Redis (the official image's entrypoint) with redis.conf and the fleet's ACL user,
# `mapfleet`, whose password is the Compose secret /run/secrets/redis-password: written into an
# included file only the server reads, never onto a command line, so `ps` does not show it.
# The `default` user is off; `mapfleet` may touch the keys under the fleet's prefix only
# (MAPFLEET_PREFIX, `mapfleet` by default) and run the commands in acl-rules.
set -eu
acl=/tmp/mapfleet-users.conf
rules=$(grep -v '^#' /usr/local/etc/redis/acl-rules | tr '\n' ' ')
umask 077
printf 'user default off\nuser mapfleet on >%s ~%s:* %s\n' \
    "$(cat /run/secrets/redis-password)" "${MAPFLEET_PREFIX:-mapfleet}" "$rules" > "$acl"
chown redis:redis "$acl"
exec docker-entrypoint.sh redis-server /usr/local/etc/redis/redis.conf --include "$acl"
