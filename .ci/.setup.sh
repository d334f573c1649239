#!/usr/bin/env bash
# CI for Guichet: on a fresh machine, install and start what the tests need
# (PostgreSQL, RabbitMQ with its management API), then run the README's test
# command. Safe to run again on a machine where everything already runs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

apt_install() {
    log "installing $*"
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # description, seconds, command...
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq 1 "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

command -v curl >/dev/null || apt_install curl ca-certificates

# ---- PostgreSQL ------------------------------------------------------------
command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    log "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
wait_for "PostgreSQL" 60 pg_isready -h 127.0.0.1 -p 5432 -q
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    # A fresh cluster asks for passwords on TCP: the tests connect as postgres
    # on loopback, so trust loopback (this is a throwaway CI machine).
    log "trusting loopback connections to PostgreSQL"
    version=$(ls /etc/postgresql | sort -n | tail -1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for "PostgreSQL trust" 30 psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1'
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'

# ---- RabbitMQ ----------------------------------------------------------------
command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
fi
wait_for "RabbitMQ" 120 rabbitmq-diagnostics -q check_running
# The tests make a vhost each through the management API.
rabbitmq-plugins enable --online rabbitmq_management >/dev/null
wait_for "RabbitMQ management API" 60 curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview

# ---- Prometheus configuration -----------------------------------------------------
# promtool comes with Debian's prometheus package; only the tool is used.
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
log "checking infra/prometheus/prometheus.yml"
promtool check config infra/prometheus/prometheus.yml
python3 -c 'import json, sys; [json.load(open(f)) for f in sys.argv[1:]]' infra/grafana/dashboards/*.json

# ---- Kubernetes manifests (infra/k8s), offline: strict schemas of one Kubernetes
# version (kubernetes-validate, from PyPI) and the base's own consistency.
log "checking infra/k8s"
bash scripts/check-k8s.sh

# ---- Python gRPC, for the client test that shares no code with the servers --------
python3 -c 'import grpc, grpc_tools, grpc_reflection, grpc_health' 2>/dev/null \
    || { log "installing grpcio for the Python client test"; \
         python3 -m pip install -q grpcio grpcio-tools grpcio-reflection grpcio-health-checking; }

# ---- a real SMTP server for the notifier's tests: aiosmtpd, from PyPI ---------------
python3 -c 'import aiosmtpd' 2>/dev/null \
    || { log "installing aiosmtpd for the notifier's tests"; \
         python3 -m pip install -q aiosmtpd; }

# ---- a real S3 server for the document store's tests: moto's, from PyPI ------------
python3 -c 'import moto.server, flask_cors' 2>/dev/null \
    || { log "installing moto's S3 server for the document store's tests"; \
         python3 -m pip install -q 'moto[server]'; }

# ---- the test OpenID provider: oidc-provider from the npm registry, pinned by ---------
# infra/oidc/package-lock.json; the identity tests start it (services/identity/tests).
{ command -v node >/dev/null && command -v npm >/dev/null; } || apt_install nodejs npm
log "installing the test OpenID provider (infra/oidc)"
(cd infra/oidc && npm ci --no-audit --no-fund)

# ---- the postal channel's tools: PDF pages (poppler), OCR (Tesseract, French) ------
command -v pdftoppm >/dev/null || apt_install --no-install-recommends poppler-utils
{ command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx fra; } \
    || apt_install --no-install-recommends tesseract-ocr tesseract-ocr-fra
# PDF base fonts render through fontconfig: any sans-serif face will do.
fc-list 2>/dev/null | grep -q . || apt_install --no-install-recommends fonts-dejavu-core

# ---- ClamAV's daemon, which scans uploads: the tests start their own clamd ------------
# (tests/integration/common/clamd.rs) with a local signature file holding the
# EICAR test signature, since signatures cannot be downloaded here.
command -v clamd >/dev/null || [ -x /usr/sbin/clamd ] \
    || apt_install --no-install-recommends clamav-daemon

# ---- the browser tests: Debian's Chromium driven by playwright-core, with ----------
# axe-core (tests/browser, pinned by its package-lock.json; no browser download).
command -v chromium >/dev/null || apt_install --no-install-recommends chromium
log "installing the browser tests' packages (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund)
(cd tests/browser && node -e "import('playwright-core').then(({chromium}) => chromium.launch({executablePath: '/usr/bin/chromium', args: ['--no-sandbox']})).then(b => b.close())") \
    || { echo "Chromium does not start under playwright-core" >&2; exit 1; }

# ---- the design system's files: the vendored ones are the pinned release's ---------
log "checking gateway/assets/dsfr against the npm registry"
bash scripts/fetch-dsfr.sh --check

# ---- Rust components -------------------------------------------------------------
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

