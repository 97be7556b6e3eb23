#!/usr/bin/env bash
# The system packages the book needs outside Python, and the one place that installs them.
#
# `make test`, `make execute` (and `make unit`, `make notebooks`, `make site-check`) run this first;
# `.ci/run` runs it before `make` exists. What it does depends on the system:
#
#   Debian/Ubuntu  asks dpkg-query which of the packages below are installed; when some are missing
#                  it runs `apt-get update` and `apt-get install` for those only (as root, or with
#                  sudo). When all are there it takes a fraction of a second and installs nothing.
#   anything else  (macOS, Fedora, ...) installs nothing: it looks for the files and programs the
#                  packages provide, and when something is missing it stops with one message
#                  naming every package (Homebrew names where they exist, which chapters need it,
#                  and how to get what Homebrew lacks).
#
# Usage:
#   bash tools/system_deps.sh              check, install what is missing (Debian), or stop (elsewhere)
#   bash tools/system_deps.sh --dry-run    say what is missing and what would run; install nothing
#   bash tools/system_deps.sh --check [KEY...]   exit 1 with the message when any (or KEY) is missing;
#                                          never installs (`make book` uses `--check npm`)
#   bash tools/system_deps.sh --list       the Debian package names, one a line
#
# Environment:
#   GENAI_PLATFORM=debian|macos|other   overrides the detection (tests use it to simulate macOS)
#   GENAI_SKIP_SYSTEM_DEPS=1            skip the check, with a warning (the chapters that need a
#                                       missing package then fail in their own cells)
#   GENAI_CHROMIUM                      the browser's program file, when it is not `chromium` on PATH
#   GENAI_FORTUNES_DIR, GENAI_FASHION_MNIST_DIR, NLTK_DATA, XDG_CACHE_HOME
#                                       where genai_helpers also looks for the data (see below)
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# The list: the only place the book's system packages are named (README and .ci/run point here).
# key | Debian packages | Homebrew | what needs it | how else to get it
# ---------------------------------------------------------------------------------------------
DEPS=(
"browser|chromium|brew install --cask chromium|make test: the browser check of the built site (tests/site/)|any Chrome or Chromium works: set GENAI_CHROMIUM to its program file, e.g. \"/Applications/Google Chrome.app/Contents/MacOS/Google Chrome\""
"fortunes|fortunes|brew install fortune|chapters 01, 02, 03, 04, 07, 09 (the English text corpus) and tests/test_data.py|a folder of fortune files named by GENAI_FORTUNES_DIR"
"fashion|dataset-fashion-mnist||chapter 12 (Fashion-MNIST images) and tests/test_image_data.py|no Homebrew package: after \`make setup\`, with network once: .venv/bin/python -c 'from genai_helpers.data.images import download_fashion_mnist as d; d()' (caches the four files in ~/.cache/genai_helpers/fashion-mnist), or name a folder holding them with GENAI_FASHION_MNIST_DIR"
"wordnet|wordnet-base wordnet-sense-index||chapters 03 and 05 (METEOR's synonym matches) and tests/test_metrics.py|no Homebrew package the book reads: after \`make setup\`, with network once: .venv/bin/python -m nltk.downloader wordnet (into ~/nltk_data)"
"tesseract|tesseract-ocr tesseract-ocr-eng|brew install tesseract|chapter 07 (OCR of a rendered page) and tests/test_rag_pipeline.py|-"
"bibles|sword-text-web sword-text-sparv libsword-utils||chapter 05 (English-Spanish Bible verse pairs, exported with mod2imp)|no Homebrew package ships these SWORD modules: copy engWEB2015eb.json and spaRV1909eb.json from ~/.cache/genai_helpers/bibles/ of a Debian/Ubuntu machine (or Colab) where chapter 05 ran, into the same folder here"
"corpus|dict-gcide dict-foldoc dict-jargon dict-devil debian-reference-en||make pretrain (the book LM's corpus: genai_helpers/data/book_corpus.py) and tests/test_book_corpus.py|no Homebrew packages: copy the built corpus folder ~/.cache/genai_helpers/book_corpus/ from a Debian/Ubuntu machine (or Colab), or name it with GENAI_BOOK_CORPUS_DIR; the shipped weights need none of this"
"speech|espeak-ng|brew install espeak-ng|chapter 16 (the speech corpus: espeak-ng reads sentences aloud) and tests/test_speech.py|-"
"make|make|xcode-select --install (Apple's command line tools)|every make target|-"
"venv|python3-venv||make setup (python3 -m venv .venv)|macOS's and Homebrew's Python include venv"
"npm|npm|brew install node|make book and make test (offline copies of MathJax, RequireJS and the widget manager: tools/vendor_assets.sh)|-"
)
BROWSER_NAMES=(chromium chromium-browser google-chrome google-chrome-stable)   # = tests/site/test_site.py
FORTUNE_DIRS=(/usr/share/games/fortunes /usr/share/fortunes /usr/local/share/games/fortunes
              /opt/homebrew/share/games/fortunes /usr/local/share/fortunes)        # = genai_helpers/data/text.py
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/genai_helpers

say() { echo "system_deps: $*"; }
field() { local IFS='|'; local -a f; read -r -a f <<<"$1"; echo "${f[$2]:-}"; }   # field LINE INDEX

# --- arguments --------------------------------------------------------------------------------
MODE=ensure
ONLY=()
case "${1:-}" in
    "") ;;
    --dry-run) MODE=dry-run ;;
    --check) MODE=check; shift; ONLY=("$@") ;;
    --list) for d in "${DEPS[@]}"; do tr ' ' '\n' <<<"$(field "$d" 1)"; done; exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--dry-run | --check [KEY...] | --list]" >&2; exit 2 ;;
esac
if [ "$MODE" != check ] && [ $# -gt 1 ]; then echo "usage: $0 [--dry-run | --check [KEY...] | --list]" >&2; exit 2; fi

SELECTED=()
for d in "${DEPS[@]}"; do
    key=$(field "$d" 0)
    if [ ${#ONLY[@]} -eq 0 ] || [[ " ${ONLY[*]} " == *" $key "* ]]; then SELECTED+=("$d"); fi
done
for k in ${ONLY[@]+"${ONLY[@]}"}; do
    found=0; for d in "${DEPS[@]}"; do [ "$(field "$d" 0)" = "$k" ] && found=1; done
    if [ $found -eq 0 ]; then
        echo "system_deps: unknown key '$k'; keys: $(for d in "${DEPS[@]}"; do printf '%s ' "$(field "$d" 0)"; done)" >&2
        exit 2
    fi
done

if [ "${GENAI_SKIP_SYSTEM_DEPS:-}" = 1 ]; then
    say "WARNING: GENAI_SKIP_SYSTEM_DEPS=1, so the system packages are not checked; the chapters and" >&2
    say "WARNING: tests that need a missing one will fail (or, for Chromium, be skipped) in their own cells." >&2
    exit 0
fi

PLATFORM=${GENAI_PLATFORM:-}
if [ -z "$PLATFORM" ]; then
    if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then PLATFORM=debian
    elif [ "$(uname -s)" = Darwin ]; then PLATFORM=macos
    else PLATFORM=other; fi
fi
case "$PLATFORM" in debian|macos|other) ;; *)
    echo "system_deps: GENAI_PLATFORM must be debian, macos or other, got '$PLATFORM'" >&2; exit 2 ;;
esac

# --- is a dependency there? ---------------------------------------------------------------------
have_browser() {
    if [ -n "${GENAI_CHROMIUM:-}" ]; then
        [ -x "$GENAI_CHROMIUM" ] || command -v "$GENAI_CHROMIUM" >/dev/null 2>&1
        return
    fi
    local b; for b in "${BROWSER_NAMES[@]}"; do command -v "$b" >/dev/null 2>&1 && return 0; done
    return 1
}

# Where genai_helpers looks (the same order as the package), for systems without dpkg.
present() {  # present KEY
    local f d
    case "$1" in
        browser) have_browser ;;
        fortunes)
            for d in "${GENAI_FORTUNES_DIR:-}" "${FORTUNE_DIRS[@]}"; do
                [ -n "$d" ] && [ -f "$d/wisdom" ] && return 0
            done; return 1 ;;
        fashion)
            for d in "${GENAI_FASHION_MNIST_DIR:-}" /usr/share/datasets/fashion-mnist "$CACHE_DIR/fashion-mnist"; do
                [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-images-idx3-ubyte.gz" ] && return 0
            done; return 1 ;;
        wordnet)
            [ -f /usr/share/wordnet/data.noun ] && [ -f /usr/share/wordnet/index.sense ] && return 0
            local IFS=:
            for d in ${NLTK_DATA:-} "$HOME/nltk_data" /usr/local/share/nltk_data /usr/share/nltk_data; do
                [ -n "$d" ] && { [ -f "$d/corpora/wordnet/data.noun" ] || [ -f "$d/corpora/wordnet.zip" ]; } && return 0
            done; return 1 ;;
        tesseract)
            command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>&1 | grep -qx eng ;;
        bibles)
            for f in engWEB2015eb spaRV1909eb; do
                [ -f "$CACHE_DIR/bibles/$f.json" ] && continue
                [ -f "/usr/share/sword/mods.d/$f.conf" ] \
                    || [ -f "/usr/share/sword/mods.d/$(tr '[:upper:]' '[:lower:]' <<<"$f").conf" ] || return 1
                command -v mod2imp >/dev/null 2>&1 || return 1
            done ;;
        corpus)
            [ -n "${GENAI_BOOK_CORPUS_DIR:-}" ] && [ -f "$GENAI_BOOK_CORPUS_DIR/card.json" ] && return 0
            [ -f "$CACHE_DIR/book_corpus/v1/card.json" ] && return 0
            for f in gcide foldoc jargon devil; do [ -f "/usr/share/dictd/$f.dict.dz" ] || return 1; done
            [ -f /usr/share/debian-reference/ch01.en.html ] ;;
        speech) command -v espeak-ng >/dev/null 2>&1 ;;
        make) command -v make >/dev/null 2>&1 ;;
        venv) "${PYTHON:-python3}" -c "import venv, ensurepip" >/dev/null 2>&1 ;;
        npm) command -v npm >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

# The Debian packages of SELECTED that are missing: dpkg-query, except npm (only when `npm` is not
# on PATH: apt's npm conflicts with a nodejs from NodeSource, which ships its own npm) and chromium
# (not needed when a Chromium or Chrome is already on PATH, e.g. Ubuntu's snap chromium-browser).
debian_missing() {  # prints the missing packages in the order of the list
    local all=() d key p installed=""
    for d in "${SELECTED[@]}"; do
        key=$(field "$d" 0)
        if [ "$key" = npm ]; then present npm || all+=("npm:cmd"); continue; fi
        if [ "$key" = browser ] && have_browser; then continue; fi
        for p in $(field "$d" 1); do all+=("$p"); done
    done
    [ ${#all[@]} -eq 0 ] && return 0
    local asked=(); for p in "${all[@]}"; do [[ $p == *:cmd ]] || asked+=("$p"); done
    if [ ${#asked[@]} -gt 0 ]; then
        installed=$(dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' "${asked[@]}" 2>/dev/null \
                    | sed -n 's/^ii *|//p' | sed 's/:.*//' || true)
    fi
    for p in "${all[@]}"; do
        if [[ $p == *:cmd ]]; then echo "${p%:cmd}"; else grep -qxF "$p" <<<"$installed" || echo "$p"; fi
    done
}

# The one message for a system where this script installs nothing: every dependency, found or not.
explain() {  # explain "why nothing is installed"
    local d key n_missing=0 status brew
    for d in "${SELECTED[@]}"; do present "$(field "$d" 0)" || n_missing=$((n_missing + 1)); done
    {
        echo
        echo "system_deps: $1"
        echo "system_deps: the book needs these system packages; $n_missing of ${#SELECTED[@]} MISSING:"
        echo
        for d in "${SELECTED[@]}"; do
            key=$(field "$d" 0)
            if present "$key"; then status="found  "; else status="MISSING"; fi
            brew=$(field "$d" 2)
            printf '  %s  %-10s Debian/Ubuntu: %s\n' "$status" "$key" "$(field "$d" 1)"
            printf '                      needed by: %s\n' "$(field "$d" 3)"
            if [ -n "$brew" ]; then printf '                      macOS: %s\n' "$brew"; fi
            if [ "$(field "$d" 4)" != "-" ]; then printf '                      otherwise: %s\n' "$(field "$d" 4)"; fi
        done
        echo
        echo "Install the MISSING ones, then run make again. To run the tests anyway (the chapters that"
        echo "need a missing package then fail in their own cells): GENAI_SKIP_SYSTEM_DEPS=1 make test"
    } >&2
    [ $n_missing -eq 0 ]
}

# --- not Debian/Ubuntu: look, never install -----------------------------------------------------
if [ "$PLATFORM" != debian ]; then
    missing=()
    for d in "${SELECTED[@]}"; do present "$(field "$d" 0)" || missing+=("$(field "$d" 0)"); done
    if [ ${#missing[@]} -eq 0 ]; then
        [ "$MODE" = check ] || say "all ${#SELECTED[@]} system dependencies found ($PLATFORM)"
        exit 0
    fi
    explain "this is not Debian/Ubuntu (GENAI_PLATFORM=$PLATFORM), so nothing is installed for you." || true
    [ "$MODE" = dry-run ] && exit 0
    exit 1
fi

# --- Debian/Ubuntu -----------------------------------------------------------------------------
# (From here on only Debian/Ubuntu runs, with bash >= 5; the code above also runs in macOS's bash 3.2.)
mapfile -t MISSING < <(debian_missing)
if [ ${#MISSING[@]} -eq 0 ]; then
    n=0; for d in "${SELECTED[@]}"; do for p in $(field "$d" 1); do n=$((n + 1)); done; done
    [ "$MODE" = check ] || say "$n/$n system packages installed (dpkg-query); nothing to install"
    exit 0
fi

if [ "$MODE" = check ]; then
    say "missing: ${MISSING[*]}" >&2
    for d in "${SELECTED[@]}"; do
        for p in "${MISSING[@]}"; do
            [[ " $(field "$d" 1) " == *" $p "* ]] && { say "  $p: needed by $(field "$d" 3)" >&2; break; }
        done
    done
    say "install with: sudo apt-get install --no-install-recommends ${MISSING[*]}   (or: make system-deps)" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    elif [ "$MODE" != dry-run ]; then
        say "missing: ${MISSING[*]}" >&2
        say "not root and no sudo: as root run  apt-get update && apt-get install --no-install-recommends ${MISSING[*]}" >&2
        exit 1
    fi
fi
UPDATE=(${SUDO[@]+"${SUDO[@]}"} apt-get update -qq)
INSTALL=(${SUDO[@]+"${SUDO[@]}"} apt-get install -y -qq --no-install-recommends "${MISSING[@]}")

if [ "$MODE" = dry-run ]; then
    say "missing (dry run, nothing installed): ${MISSING[*]}"
    say "would run: ${UPDATE[*]}"
    say "would run: ${INSTALL[*]}"
    exit 0
fi

LOG=$(mktemp)
say "installing ${#MISSING[@]} missing package(s)${SUDO[@]+ with sudo}: ${MISSING[*]}"
say "(a few minutes on a fresh machine; apt-get writes its output to $LOG)"
trap 'rm -f "$LOG"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${UPDATE[@]}" >"$LOG" 2>&1 || ! "${INSTALL[@]}" >>"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    say "ERROR: apt-get failed (above). Install these yourself, or run anyway with" >&2
    say "GENAI_SKIP_SYSTEM_DEPS=1 (the chapters that need them then fail): ${MISSING[*]}" >&2
    exit 1
fi
mapfile -t STILL < <(debian_missing)
if [ ${#STILL[@]} -ne 0 ]; then
    say "ERROR: still missing after apt-get install: ${STILL[*]}" >&2
    exit 1
fi
say "installed: ${MISSING[*]}"
