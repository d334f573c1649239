#!/bin/sh
# Gives each Guichet service a RabbitMQ user of its own, with the least it
# needs on the vhost, through the management API. Run it once per vhost, and
# again after changing a password (it replaces users and permissions).
#
#   RABBITMQ_API=http://rabbitmq:15672 RABBITMQ_ADMIN=guest:guest \
#   RABBITMQ_VHOST=/ \
#   GUICHET_AMQP_PASSWORD_INSTRUCTION=... GUICHET_AMQP_PASSWORD_INTAKE_WEB=... \
#   GUICHET_AMQP_PASSWORD_INTAKE_CCC=... GUICHET_AMQP_PASSWORD_INTAKE_PAN=... \
#   GUICHET_AMQP_PASSWORD_INTAKE_POSTAL=... GUICHET_AMQP_PASSWORD_NOTIFIER=... \
#   sh infra/rabbitmq/users.sh
#
# User names are read from the variables the services read
# (GUICHET_AMQP_USER_<SERVICE>), `guichet-<service>` when unset; every
# password must be set. POSIX sh and curl only, so it runs in a small image.
#
# What each may do (regular expressions on exchange and queue names;
# `instruction` declares the topology, the others find it declared):
#   instruction    declares every exchange and queue; publishes case and title
#                  events and dead letters; consumes instruction.dossiers.
#                  It cannot publish on guichet.dossiers.
#   intake-web     publishes dossier.submitted.web on guichet.dossiers only.
#   intake-ccc     dossier.submitted.ccc, and report.* on guichet.events.
#   intake-pan     dossier.submitted.pan, and appointment.* on guichet.events.
#   intake-postal  dossier.submitted.postal; consumes postal.letters.
#   notifier       consumes notifier.case-events; publishes letter.* on
#                  guichet.events (letters for the mailroom to post).
# The broker also checks each message's user_id against the user who
# publishes it; instruction refuses a dossier whose channel is not its
# publisher's (services/instruction/src/consumer.rs).
set -eu

api="${RABBITMQ_API:-http://127.0.0.1:15672}"
admin="${RABBITMQ_ADMIN:-guest:guest}"
vhost="${RABBITMQ_VHOST:-/}"
# The vhost as one path segment: `/` is `%2F`.
vhost_path=$(printf '%s' "$vhost" | sed 's|%|%25|g; s|/|%2F|g')

# A JSON string of $1: backslashes and quotes escaped.
json() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

put() {
    curl -fsS -o /dev/null -u "$admin" -X PUT -H 'content-type: application/json' \
        --data "$2" "$api$1"
}

# user <service> <ENV_SUFFIX> <configure> <write> <read>
user() {
    eval "name=\${GUICHET_AMQP_USER_$2:-guichet-$1}"
    eval "password=\${GUICHET_AMQP_PASSWORD_$2:-}"
    if [ -z "$password" ]; then
        echo "users.sh: GUICHET_AMQP_PASSWORD_$2 is not set" >&2
        exit 1
    fi
    put "/api/users/$name" "{\"password\": $(json "$password"), \"tags\": \"\"}"
    put "/api/permissions/$vhost_path/$name" \
        "{\"configure\": $(json "$3"), \"write\": $(json "$4"), \"read\": $(json "$5")}"
    echo "user $name ($1) on vhost $vhost"
}

# topic <service> <ENV_SUFFIX> <exchange> <write> <read>: the routing keys
# the user may publish (and bind) on a topic exchange.
topic() {
    eval "name=\${GUICHET_AMQP_USER_$2:-guichet-$1}"
    put "/api/topic-permissions/$vhost_path/$name" \
        "{\"exchange\": $(json "$3"), \"write\": $(json "$4"), \"read\": $(json "$5")}"
}

queues='instruction\.dossiers|notifier\.case-events|postal\.letters|guichet\.dead\.letters'

# Declaring a queue that dead-letters needs read on it and write on
# guichet.dead; binding one needs write on it and read on the exchange.
user instruction INSTRUCTION \
    "^(guichet\.(dossiers|events|dead)|$queues)\$" \
    "^(guichet\.(events|dead)|$queues)\$" \
    "^(guichet\.(dossiers|events|dead)|$queues)\$"
topic instruction INSTRUCTION guichet.events '^(case|title)\.' '.*'
topic instruction INSTRUCTION guichet.dead '.*' '.*'

user intake-web INTAKE_WEB '^$' '^guichet\.dossiers$' '^$'
topic intake-web INTAKE_WEB guichet.dossiers '^dossier\.submitted\.web$' '^$'

user intake-ccc INTAKE_CCC '^$' '^guichet\.(dossiers|events)$' '^$'
topic intake-ccc INTAKE_CCC guichet.dossiers '^dossier\.submitted\.ccc$' '^$'
topic intake-ccc INTAKE_CCC guichet.events '^report\.' '^$'

user intake-pan INTAKE_PAN '^$' '^guichet\.(dossiers|events)$' '^$'
topic intake-pan INTAKE_PAN guichet.dossiers '^dossier\.submitted\.pan$' '^$'
topic intake-pan INTAKE_PAN guichet.events '^appointment\.' '^$'

user intake-postal INTAKE_POSTAL '^$' '^guichet\.dossiers$' '^postal\.letters$'
topic intake-postal INTAKE_POSTAL guichet.dossiers '^dossier\.submitted\.postal$' '^$'

user notifier NOTIFIER '^$' '^guichet\.events$' '^notifier\.case-events$'
topic notifier NOTIFIER guichet.events '^letter\.' '^$'
