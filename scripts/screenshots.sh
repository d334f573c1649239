#!/usr/bin/env bash
# Screenshots of the persons' pages (desktop and a 360 px phone, French and
# English) and their weights, from a running Guichet:
#
#   cargo run --release -- up &          # or any running Guichet
#   scripts/screenshots.sh [http://127.0.0.1:8080]
#
# Needs Debian's chromium and `npm ci` in tests/browser. Writes
# docs/screenshots/*.png and docs/screenshots/weights.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export GUICHET_URL=${1:-${GUICHET_URL:-http://127.0.0.1:8080}}
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)
curl -fsS "$GUICHET_URL/healthz" >/dev/null || { echo "no Guichet answers at $GUICHET_URL" >&2; exit 1; }
node tests/browser/screenshots.mjs
# The agents' workspace, signed in through `guichet up`'s development
# issuer (seeds filings, a report and a scanned envelope first).
node tests/browser/agent_screenshots.mjs
