#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document (/api/openapi.json) with
# schemathesis, on both backends: `guichet up` embedded (SQLite files and the
# in-process bus, in a data folder of its own) and `guichet up` on PostgreSQL
# and RabbitMQ (a fresh database and vhost, dropped after). Each is seeded
# with real ids first (scripts/fuzz-seed.py), signing in with the tokens of
# the development issuer `guichet up` starts (no GUICHET_OIDC_ISSUER here).
# Each backend is fuzzed twice: anonymously (the protected routes answer
# 401, the public ones their public view), then with each route given the
# token of a development agent who may call it (instructor of 59, mailroom
# operator, supervisor and desk agent of 59), so the code behind the policy
# layer is reached too. The checks: no server error, no status code the
# document does not list, no answer that breaks its schema. Exits non-zero
# on any failure.
#
#   scripts/fuzz-openapi.sh     # FUZZ_MAX_EXAMPLES=25 cases per route and phase signed in,
#                               # FUZZ_ANONYMOUS_MAX_EXAMPLES=10 anonymously
#
# Needs: python3 with schemathesis, grpcio and grpcio-tools (installed here
# when missing), psql and curl, PostgreSQL on 127.0.0.1:5432 (user postgres,
# trust) and RabbitMQ on 127.0.0.1:5672 with its management API on 15672.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${FUZZ_MAX_EXAMPLES:-25}
anonymous_max_examples=${FUZZ_ANONYMOUS_MAX_EXAMPLES:-10}
pg_host=${FUZZ_PG_HOST:-127.0.0.1}
amqp_base=${FUZZ_AMQP_BASE:-amqp://guest:guest@127.0.0.1:5672}
rabbit_api=${FUZZ_RABBITMQ_API:-http://127.0.0.1:15672}

# Run as a module, so a pip that puts scripts outside PATH does not matter.
python3 -c 'import schemathesis.cli' 2>/dev/null || python3 -m pip install -q schemathesis
python3 -c 'import grpc, grpc_tools' 2>/dev/null || python3 -m pip install -q grpcio grpcio-tools

work=$(mktemp -d)
name="guichet_fuzz_$$_${RANDOM}"
pgids=()
created_db=""
created_vhost=""

cleanup() {
    for pgid in "${pgids[@]}"; do
        kill -TERM -- "-$pgid" 2>/dev/null || true
    done
    for pgid in "${pgids[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    done
    if [ -n "$created_db" ]; then
        psql -h "$pg_host" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $created_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ -n "$created_vhost" ]; then
        curl -fsS -u guest:guest -X DELETE "$rabbit_api/api/vhosts/$created_vhost" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Builds once, so the two starts below only start.
cargo build -q --bin guichet

# start NAME [VAR=VALUE...]: `cargo run -- up` on a free port, in a process
# group of its own (so that stopping it stops guichet too), ready when
# /readyz says so; the port is left in $started_port. The port is free when
# picked, not held: when another process took it meanwhile, guichet says
# "Address already in use" and exits, and it is started again on another.
# Any other failure is shown and ends the run.
start() {
    local label=$1 port pid
    shift
    for _attempt in 1 2 3; do
        port=$(free_port)
        setsid env "$@" GUICHET_HTTP_ADDR="127.0.0.1:$port" GUICHET_DATA_DIR="$work/$label" \
            cargo run -q -- up >"$work/$label.log" 2>&1 &
        pid=$!
        pgids+=("$pid")
        for _ in $(seq 1 120); do
            if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
                started_port=$port
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null || ! grep -q "Address already in use" "$work/$label.log"; then
            break
        fi
        echo "guichet ($label): port $port taken meanwhile; starting it again on another" >&2
    done
    # Up to its backtrace, whose frames would push the error and its
    # causes out of the last lines.
    echo "guichet ($label) did not get ready; its log, up to any backtrace:" >&2
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^Stack backtrace:/,$d' "$work/$label.log" | tail -50 >&2
    return 1
}

# run_schemathesis CONFIG BASE MAX_EXAMPLES: one run; its exit status.
run_schemathesis() {
    local config=$1 base=$2 examples=$3
    # From the scratch folder: schemathesis keeps a cache where it runs.
    (cd "$work" && python3 -m schemathesis.cli --config-file "$config" \
        run "$base/api/openapi.json" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance \
        --max-examples "$examples" \
        --request-timeout 20 \
        --generation-database none \
        --no-color)
}

# audited NAME PORT: what the signed-in run did, from the audit log (read
# as the operator): calls per agent and status class.
audited() {
    local label=$1 base="http://127.0.0.1:$2"
    curl -fsS "$base/api/v1/admin/audit?limit=1000" \
        -H "Authorization: Bearer $(cat "$work/$label/dev-tokens/operator-1")" |
        python3 -c '
import collections, json, sys
rows = json.load(sys.stdin)
seen = collections.Counter((r["actor"], str(r["status"] // 100) + "xx") for r in rows)
print("audit log (last %d agent calls):" % len(rows),
      ", ".join(f"{a} {s} {n}" for (a, s), n in sorted(seen.items())))
' || echo "cannot read the audit log" >&2
}

# fuzz NAME PORT: seeds, then runs schemathesis anonymously and signed in;
# non-zero when either found a failure.
fuzz() {
    local label=$1 port=$2 base="http://127.0.0.1:$2" status=0
    printf '\n== fuzzing /api/openapi.json: %s (at %ss)\n' "$label" "$SECONDS"
    # The desk service's own address, for what the gateway does not pass on
    # yet (see fuzz-seed.py).
    FUZZ_DESK_GRPC_ADDR=$(sed 's/\x1b\[[0-9;]*m//g' "$work/$label.log" |
        sed -n 's/.*grpc_addr=\([0-9.:]*\) service="guichet.v1.Desk".*/\1/p' | head -1) \
        python3 scripts/fuzz-seed.py "$base" proto examples/filings \
        "$work/$label/dev-tokens" "$work/$label" || return 1
    printf '\n== %s, anonymous (at %ss)\n' "$label" "$SECONDS"
    run_schemathesis "$work/$label.anonymous.toml" "$base" "$anonymous_max_examples" || status=1
    printf '\n== %s, signed in (at %ss)\n' "$label" "$SECONDS"
    run_schemathesis "$work/$label.agents.toml" "$base" "$max_examples" || status=1
    audited "$label" "$port"
    return "$status"
}

failed=0

start embedded
embedded_port=$started_port
fuzz embedded "$embedded_port" || failed=1

psql -h "$pg_host" -U postgres -d postgres -qc "CREATE DATABASE $name"
created_db=$name
curl -fsS -u guest:guest -X PUT "$rabbit_api/api/vhosts/$name" >/dev/null
created_vhost=$name
curl -fsS -u guest:guest -X PUT "$rabbit_api/api/permissions/$name/guest" \
    -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' >/dev/null
start servers \
    GUICHET_DATABASE_URL="postgres://postgres@$pg_host:5432/$name" \
    GUICHET_AMQP_URL="$amqp_base/$name"
servers_port=$started_port
fuzz servers "$servers_port" || failed=1

printf '\n== fuzzing done (at %ss)\n' "$SECONDS"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: failures above (schemathesis prints each with the curl command to reproduce it)" >&2
    for label in embedded servers; do
        if grep -qiE 'panicked|ERROR' "$work/$label.log" 2>/dev/null; then
            echo "--- errors in the $label log:" >&2
            grep -iE 'panicked|ERROR' "$work/$label.log" | tail -20 >&2
        fi
    done
fi
exit "$failed"
