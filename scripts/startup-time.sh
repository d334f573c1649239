#!/usr/bin/env bash
# Time from starting `guichet up` to the gateway's /readyz answering 200, in
# milliseconds, over a few runs. Embedded by default; set GUICHET_DATABASE_URL
# and GUICHET_AMQP_URL to time the servers mode.  Usage: scripts/startup-time.sh [runs]
set -euo pipefail
runs=${1:-5}
bin=${GUICHET_BIN:-target/release/guichet}
[ -x "$bin" ] || cargo build --release --bin guichet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for _ in $(seq "$runs"); do
    data=$(mktemp -d)
    start=$(date +%s%N)
    GUICHET_DATA_DIR=$data GUICHET_HTTP_ADDR=127.0.0.1:$port RUST_LOG=warn "$bin" up >/dev/null 2>&1 &
    pid=$!
    until curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; do sleep 0.002; done
    end=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
    echo "$(( (end - start) / 1000000 )) ms"
done
