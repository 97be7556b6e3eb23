#!/usr/bin/env bash
# Fetch offline copies of the JavaScript the static site needs, so that it renders with no CDN:
#
#   mathjax/       MathJax 3 (es5 build: tex-chtml.js, the TeX extensions it autoloads, its fonts)
#   requirejs/     RequireJS, which the ipywidgets embed manager uses to define its modules
#   html-manager/  @jupyter-widgets/html-manager 1.x (embed-amd.js), which draws saved widget
#                  state on a static page (1.x is the series that matches ipywidgets 8)
#
# Usage:  bash tools/vendor_assets.sh DEST        (the Makefile passes DEST=_vendor)
#
# The packages come from the npm registry with `npm pack` (npm's own client, its configured
# registry); each tarball is checked against the SHA-256 pinned below. `_config.yml` lists DEST in
# `html_static_path`, so DEST's contents land in `_build/html/_static/` and `mathjax_path` /
# `nb_ipywidgets_js` point there. Do not unpack these into a `_static/` folder at the repository
# root: Jupyter Book adds every .js found under the static paths to every page once `_static/`
# exists.
#
# Idempotent: when DEST already holds exactly these versions, copied by this version of the
# script (DEST/VERSIONS), nothing is fetched.
# To change a version, edit the pins below (version and checksum together) and run it again.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
DEST=${1%/}
if [ -z "$DEST" ] || [ "$DEST" = "." ] || [ "$DEST" = ".." ]; then
    echo "vendor_assets: ERROR: refusing to use '$1' as DEST (it is replaced as a whole)" >&2
    exit 2
fi

# name@version  sha256 of the registry tarball
PINS=(
    "mathjax@3.2.2 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
    "requirejs@2.3.8 777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec"
    "@jupyter-widgets/html-manager@1.0.15 2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638"
)
# What DEST/VERSIONS records: the pins, and a hash of this script (so that a change to what is
# kept below also triggers a fresh copy).
WANT=$(printf '%s\n' "${PINS[@]}" "vendor_assets.sh $(sha256sum "$0" | cut -d' ' -f1)")

if [ -f "$DEST/VERSIONS" ] && [ "$(cat "$DEST/VERSIONS")" = "$WANT" ] \
    && [ -s "$DEST/mathjax/es5/tex-chtml.js" ] && [ -s "$DEST/requirejs/require.js" ] \
    && [ -s "$DEST/html-manager/embed-amd.js" ]; then
    echo "vendor_assets: $DEST is up to date"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "vendor_assets: ERROR: npm is not installed; it is needed to fetch MathJax, RequireJS and" >&2
    echo "the ipywidgets embed manager for the offline site (Debian: apt-get install npm)." >&2
    exit 1
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tgz" "$WORK/out"

for pin in "${PINS[@]}"; do
    spec=${pin% *}
    sum=${pin#* }
    # npm pack prints the tarball's file name on stdout (last line).
    tgz=$(cd "$WORK/tgz" && npm pack --silent "$spec" 2>/dev/null | tail -n 1)
    if [ -z "$tgz" ] || [ ! -s "$WORK/tgz/$tgz" ]; then
        echo "vendor_assets: ERROR: 'npm pack $spec' produced no tarball (is the registry reachable?)" >&2
        (cd "$WORK/tgz" && npm pack "$spec") >&2 || true
        exit 1
    fi
    got=$(sha256sum "$WORK/tgz/$tgz" | cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then
        echo "vendor_assets: ERROR: $spec tarball has sha256 $got, expected $sum" >&2
        exit 1
    fi
    name=${spec%@*}
    mkdir -p "$WORK/pkg/$name"
    tar -xzf "$WORK/tgz/$tgz" -C "$WORK/pkg/$name" --strip-components=1
done

# Copy only what a page loads. REL paths are relative to the package root.
keep() {  # keep PACKAGE TARGET_DIR REL...
    local pkg=$1 target=$2
    shift 2
    for rel in "$@"; do
        mkdir -p "$WORK/out/$target/$(dirname "$rel")"
        cp -R "$WORK/pkg/$pkg/$rel" "$WORK/out/$target/$rel"
    done
}

# MathJax: the single-file TeX -> CommonHTML component (it already contains the context menu and
# assistive MathML), the TeX extensions its autoloader fetches on first use (\boldsymbol,
# \cancel, \ce from mhchem, ...), and the CommonHTML web fonts.
# Left out: the SVG output, MathML input, and the speech/explorer accessibility modules, which
# load only if a reader turns them on in MathJax's context menu.
keep mathjax mathjax LICENSE \
    es5/tex-chtml.js \
    es5/input/tex/extensions \
    es5/output/chtml/fonts/woff-v2
# RequireJS: the loader itself (the package has no minified copy; this one is 86 kB and carries
# its MIT licence in its header).
keep requirejs requirejs require.js
# html-manager: the self-contained AMD bundle (it defines @jupyter-widgets/base, controls and the
# manager itself). Its icon fonts are left out: the bundle computes their URLs in a way that does
# not work from file://, and the book's widgets (sliders, dropdowns, checkboxes) do not use them.
keep @jupyter-widgets/html-manager html-manager dist/embed-amd.js package.json
mv "$WORK/out/html-manager/dist/embed-amd.js" "$WORK/out/html-manager/embed-amd.js"
rmdir "$WORK/out/html-manager/dist"

printf '%s\n' "$WANT" >"$WORK/out/VERSIONS"

# Replace DEST in one step so an interrupted run never leaves a half-filled folder behind.
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp"
mv "$WORK/out" "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "vendor_assets: $DEST ready ($(du -sh "$DEST" | cut -f1)):"
grep -v '^vendor_assets' "$DEST/VERSIONS" | sed 's/ .*//; s/^/  /'
