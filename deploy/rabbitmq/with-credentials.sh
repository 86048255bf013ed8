#!/bin/sh
# Starts RabbitMQ (the official image's entrypoint) with the fleet's user, `mapfleet`, whose
# password is the Compose secret /run/secrets/amqp-password: written into a conf.d file only
# the broker reads (`default_user`/`default_pass`, applied when the node first creates its
# database), never onto a command line, so `ps` does not show it. No `guest` user is made.
set -eu
conf=/etc/rabbitmq/conf.d/40-mapfleet-credentials.conf
umask 077
printf 'default_user = mapfleet\ndefault_pass = %s\n' "$(cat /run/secrets/amqp-password)" > "$conf"
chown rabbitmq:rabbitmq "$conf"
exec docker-entrypoint.sh rabbitmq-server
