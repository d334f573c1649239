#!/usr/bin/env bash
# The State's design system (DSFR), as the gateway serves it: the files of
# the pinned @gouvfr/dsfr release the pages use, beside its licence, under
# gateway/assets/dsfr/. They travel with the repository so a fresh clone
# serves styled pages with nothing installed.
#
#   scripts/fetch-dsfr.sh          fetch the release, check its integrity, copy the files
#   scripts/fetch-dsfr.sh --check  fetch it again and check the vendored files are its own
#
# The release's integrity hash (npm's sha512) is pinned here: a tarball that
# does not match is refused.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.15.3
INTEGRITY='sha512-R9AALZc1LfZjtytWZMOaUIOHWTkllBZ/sZlsL8TpKZVgF3qUKXt/uNYh+L1D1Fh4p92ZqWxbtNcebsigBZe5pQ=='
DEST=gateway/assets/dsfr

# The parts of the release the pages use: the core (fonts, grid, typography),
# the components, the fonts and the one icon the core points to.
COMPONENTS="alert badge breadcrumb button callout checkbox form header footer input link logo notice radio select skiplink stepper summary table tag upload"
files() {
    echo LICENSE.md
    echo dist/core/core.main.min.css
    for c in $COMPONENTS; do echo "dist/component/$c/$c.main.min.css"; done
    # Every font (woff2: what browsers take first) and icon those name.
    (cd "$1/dist" && cat core/core.main.min.css $(for c in $COMPONENTS; do echo "component/$c/$c.main.min.css"; done)) \
        | grep -o 'url([^)]*)' | grep -v 'data:' \
        | sed -E 's/url\("?(\.\.\/)+//; s/"?\)$//' | grep -v '\.woff$' | sort -u | sed 's|^|dist/|'
    echo dist/favicon/favicon.svg
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@gouvfr/dsfr@$VERSION" >/dev/null)
tarball=$(ls "$work"/gouvfr-dsfr-*.tgz)
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
    echo "the @gouvfr/dsfr@$VERSION tarball has integrity $actual, not the pinned $INTEGRITY" >&2
    exit 1
fi
tar xzf "$tarball" -C "$work"

if [ "${1:-}" = "--check" ]; then
    status=0
    for f in $(files "$work/package"); do
        cmp -s "$work/package/$f" "$DEST/$f" || { echo "differs from the release: $DEST/$f" >&2; status=1; }
    done
    extra=$(cd "$DEST" && find . -type f ! -name VERSION | sed 's|^\./||' | sort)
    expected=$(files "$work/package" | sort)
    [ "$extra" = "$expected" ] || { echo "the vendored files are not the list in $0" >&2; status=1; }
    [ "$(cat "$DEST/VERSION")" = "$VERSION $INTEGRITY" ] || { echo "$DEST/VERSION is not $VERSION" >&2; status=1; }
    [ $status -eq 0 ] && echo "gateway/assets/dsfr: the files of @gouvfr/dsfr@$VERSION ($INTEGRITY)"
    exit $status
fi

rm -rf "$DEST"
for f in $(files "$work/package"); do
    mkdir -p "$DEST/$(dirname "$f")"
    cp "$work/package/$f" "$DEST/$f"
done
echo "$VERSION $INTEGRITY" > "$DEST/VERSION"
echo "copied $(files "$work/package" | wc -l) files of @gouvfr/dsfr@$VERSION into $DEST"
