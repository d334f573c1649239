#!/usr/bin/env bash
# Installs PgBouncer 1.21 or later as /usr/local/bin/pgbouncer, for the pooler
# test (tests/integration/pooler.rs). Debian 12's own package is 1.18, which
# does not follow prepared statements across the server connections it hands
# out in transaction mode (`max_prepared_statements` came in 1.21), and sqlx
# prepares every statement. So this builds Debian 13's source package: apt
# fetches it with a throwaway configuration of its own (the machine's sources
# and lists are left alone) and checks it against the archive's signed index,
# as for any package. Nothing to do when a recent enough pgbouncer is on PATH.
set -euo pipefail

SUITE=${GUICHET_PGBOUNCER_SUITE:-trixie}

recent_enough() {
    local version
    version=$(pgbouncer --version 2>/dev/null | awk 'NR == 1 {print $2}') || return 1
    [ -n "$version" ] || return 1
    # 1.21 or later.
    [ "$(printf '%s\n%s\n' 1.21 "$version" | sort -V | head -1)" = 1.21 ]
}

if recent_enough; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
missing=()
for pkg in gcc make pkg-config libevent-dev libssl-dev libc-ares-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" \
    > "$work/sources.list"
apt_own=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
         -o APT::Sandbox::User=root)
apt-get "${apt_own[@]}" update -qq
(cd "$work" && apt-get "${apt_own[@]}" source --download-only -qq pgbouncer 2>/dev/null)

orig=$(ls "$work"/pgbouncer_*.orig.tar.gz)
tar -xzf "$orig" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'pgbouncer-*' | head -1)
(
    cd "$src"
    ./configure --prefix=/usr/local --with-cares --without-systemd >/dev/null
    make -j"$(nproc)" pgbouncer >/dev/null
    install -m 0755 pgbouncer /usr/local/bin/pgbouncer
)
hash -r
recent_enough || { echo "the pgbouncer built from $orig is not 1.21 or later" >&2; exit 1; }
pgbouncer --version | head -1
