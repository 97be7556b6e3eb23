"""Browser check of the built website: the pages a reader lands on render, offline.

``make test`` builds the book, then runs this file against the result. It opens the intro and
every chapter notebook in headless Chromium (network disabled), takes the DOM after MathJax and
the widget scripts have run, and fails on what a reader would see as broken:

- a blank page (almost no visible text);
- a Python traceback or notebook error output;
- math that MathJax did not typeset (raw ``$x$``, ``$$``, ``\\(``, ``\\[`` left in the text, or a
  MathJax error), or pages with math but no MathJax output at all;
- a missing figure (an ``<img>`` whose file is absent or empty, or that points at the internet);
- saved ipywidgets that were not drawn; a chapter with no figure at all;
- on chapter 1: no animation player from ``matplotlib.animation.Animation.to_jshtml()`` (that is
  how sliders work on the static site).

Nothing may come from outside the site (the README promises a site that renders with no
network), checked twice: every built page and every stylesheet it loads is read for ``<link>``,
``<script src>``, ``<img src>``, media, frames, ``@import`` and ``url()`` pointing at another host
(links a reader clicks are fine); and Chromium's network log (``--log-net-log``) of every built
page must show no request to the network at all, whatever the page's scripts did.

Animation players must show their buttons: a player made by ``viz.sweep_player`` and chapter 1's
first stored player are screenshotted and each of the nine buttons must contain drawn pixels
(matplotlib's own player links Font Awesome from a CDN, so offline its buttons are blank; a test
checks that this is caught).

It also checks that local scripts, stylesheets and images exist, that search finds chapter 1,
and saves screenshots to ``_build/screenshots/`` for a person to look at.

The check functions are tested on deliberately broken pages at the bottom of this file, so a
check that silently stopped working would show up as a failing test.

Environment:
    GENAI_SITE_DIR         the built site (default: ``_build/html`` in the repository)
    GENAI_REQUIRE_BROWSER  ``1`` turns "Chromium not found" from a skip into a failure (CI sets it)
    GENAI_CHROMIUM         path of the browser, if it is not ``chromium`` on the PATH
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup  # installed with jupyter-book (its theme depends on it)

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_DIR = Path(os.environ.get("GENAI_SITE_DIR") or REPO_ROOT / "_build" / "html").resolve()
SCREENSHOT_DIR = SITE_DIR.parent / "screenshots"

INTRO = "book/intro.html"
CHAPTER_01 = "notebooks/01_attention.html"


def chapter_pages() -> list[str]:
    """Chapter 1 and every other chapter notebook that has been built."""
    built = {p.relative_to(SITE_DIR).as_posix() for p in (SITE_DIR / "notebooks").glob("*.html")}
    return sorted(built | {CHAPTER_01})


CHAPTERS = chapter_pages()
# The pages opened in the browser, with the name their screenshots are saved under.
BROWSER_PAGES = {INTRO: "intro", **{page: Path(page).stem for page in CHAPTERS}}
# The pages whose network requests are checked in the browser: all that were built.
NETWORK_PAGES = sorted(set(BROWSER_PAGES) | {
    p.relative_to(SITE_DIR).as_posix() for p in SITE_DIR.rglob("*.html")
    if "_static" not in p.relative_to(SITE_DIR).parts})

MIN_VISIBLE_CHARS = 300  # the intro has a few thousand; a page that failed to render has ~0
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_TIMEOUT_S = 180
# Flags from ../shared/ENVIRONMENT.md, plus --host-resolver-rules so that no host name resolves:
# the pages must render from the files on disk alone, even on a machine that is online.
BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
    # Virtual time runs ahead as soon as the page is idle, so this costs about a second of
    # real time; it bounds waiting for MathJax and the widget manager (and the index redirect).
    "--virtual-time-budget=15000",
)
WINDOW = (1280, 900)
LONG_WINDOW = (1280, 6000)  # a second, taller screenshot showing more of the page


# --------------------------------------------------------------------------------------------
# Check functions: each takes a parsed page and returns a list of problems (empty when fine).
# --------------------------------------------------------------------------------------------

def parse(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def content_of(soup: BeautifulSoup):
    """The page's own content: the article without the navigation, or the body as a fallback."""
    return soup.select_one("article.bd-article") or soup.select_one("main") or soup.body or soup


def _text_without(node, selectors: str) -> str:
    """Text of ``node`` with the elements matching ``selectors`` (a CSS selector list) removed."""
    clone = parse(str(node))
    for el in clone.select(selectors):
        el.decompose()
    return clone.get_text(" ")


NOT_VISIBLE = "script, style, noscript, template, head"
# Code, program output and MathJax's own output may legitimately contain $ and backslashes.
NOT_PROSE = NOT_VISIBLE + ", pre, code, kbd, samp, textarea, mjx-container, .highlight"


def visible_text(soup: BeautifulSoup) -> str:
    """The words a reader sees in the page content, whitespace collapsed."""
    return " ".join(_text_without(content_of(soup), NOT_VISIBLE).split())


def find_blank_page(soup: BeautifulSoup, min_chars: int = MIN_VISIBLE_CHARS) -> list[str]:
    n = len(visible_text(soup))
    return [f"only {n} characters of visible text (expected at least {min_chars})"] if n < min_chars else []


TRACEBACK_TEXT = re.compile(r"Traceback \(most recent call last\)")


def find_tracebacks(soup: BeautifulSoup) -> list[str]:
    """Error outputs of notebook cells (myst-nb gives them the class ``traceback``) and any
    visible Python traceback."""
    problems = []
    for el in content_of(soup).select(".traceback"):
        first_line = " ".join(el.get_text(" ").split())[:200]
        problems.append(f"error output in the page: {first_line!r}")
    text = _text_without(content_of(soup), NOT_VISIBLE)
    for m in TRACEBACK_TEXT.finditer(text):
        problems.append(f"visible traceback: {text[max(0, m.start() - 80):m.end() + 120]!r}")
    return problems


RAW_MATH = [
    (re.compile(r"\$\$"), "$$"),
    (re.compile(r"\\\(|\\\)"), r"\( \)"),
    (re.compile(r"\\\[|\\\]"), r"\[ \]"),
    (re.compile(r"\\begin\{\w+\*?\}"), r"\begin{...}"),
    # $...$ on one line with TeX-looking content: a backslash command, ^, _ or braces.
    (re.compile(r"\$[^$\n]*(?:\\[A-Za-z]+|[\^_{}])[^$\n]*\$"), "$...$"),
]


def find_raw_math(soup: BeautifulSoup) -> list[str]:
    """TeX left in the prose after MathJax ran (code blocks and outputs are ignored)."""
    text = _text_without(content_of(soup), NOT_PROSE)
    problems = []
    for pattern, name in RAW_MATH:
        hits = list(pattern.finditer(text))
        if hits:
            m = hits[0]
            example = " ".join(text[max(0, m.start() - 40):m.end() + 40].split())
            problems.append(f"unrendered math ({name}, {len(hits)} times), first: {example!r}")
    return problems


def find_untypeset_math(soup: BeautifulSoup) -> list[str]:
    """Math elements that MathJax did not turn into ``mjx-container``, and MathJax errors.

    Sphinx writes every formula as an element with class ``math``; MathJax puts its output
    inside it. An undefined macro shows up as ``mjx-merror``.
    """
    problems = []
    for el in content_of(soup).select(".math"):
        if el.find("mjx-container") is None:
            problems.append(f"formula not typeset by MathJax: {' '.join(el.get_text(' ').split())[:120]!r}")
    for el in soup.find_all("mjx-merror"):
        problems.append(f"MathJax error: {el.get('data-mjx-error') or el.get_text(' ')!r}")
    # MathJax draws an undefined macro such as \foo as its name in red text.
    for el in soup.select('mjx-container mjx-mtext[style*="color: red"]'):
        problems.append(f"undefined TeX macro (shown in red): {mathjax_chars(el)!r}")
    return problems


def mathjax_chars(el) -> str:
    """The characters MathJax drew in ``el``: each is an ``mjx-c`` whose class names its code
    point (``mjx-c5C`` is a backslash)."""
    out = []
    for c in el.find_all("mjx-c"):
        for cls in c.get("class") or []:
            m = re.fullmatch(r"mjx-c([0-9A-F]+)", cls)
            if m:
                out.append(chr(int(m.group(1), 16)))
    return "".join(out)


def is_remote(url: str) -> bool:
    """True for a URL on another host (http:, https:, protocol-relative //host/...)."""
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


def find_missing_images(soup: BeautifulSoup, page: Path) -> list[str]:
    """Every ``<img>`` must show something: a data: URI, or a non-empty file next to the page.

    An image from the internet counts as missing: the site has to work offline.
    """
    problems = []
    for img in soup.find_all("img"):
        src = (img.get("src") or "").strip()
        label = f"<img src={src[:80]!r} alt={img.get('alt', '')!r}>"
        if not src:
            problems.append(f"{label}: no src (for an animation player: its script did not run)")
        elif src.startswith("data:"):
            if "," not in src or len(src.split(",", 1)[1]) < 20:
                problems.append(f"{label}: empty data URI")
        elif is_remote(src) or urlsplit(src).scheme:
            problems.append(f"{label}: loaded from the network, missing offline")
        else:
            target = (page.parent / unquote(urlsplit(src).path)).resolve()
            if not target.is_file():
                problems.append(f"{label}: file {target} does not exist")
            elif target.stat().st_size == 0:
                problems.append(f"{label}: file {target} is empty")
    return problems


def find_animation_players(soup: BeautifulSoup) -> list:
    """Players written by ``Animation.to_jshtml()``: a ``div.animation`` with a range slider."""
    return [div for div in soup.select("div.animation") if div.select_one('input[type="range"]')]


def find_undrawn_widgets(soup: BeautifulSoup) -> list[str]:
    """Saved ipywidgets views that the embed manager did not draw from their stored state."""
    saved = " ".join(s.get_text() for s in
                     soup.find_all("script", type="application/vnd.jupyter.widget-state+json"))
    problems = []
    for script in soup.find_all("script", type="application/vnd.jupyter.widget-view+json"):
        if script.parent is None or script.parent.select_one(".jupyter-widgets") is None:
            m = re.search(r'"model_id"\s*:\s*"(\w+)"', script.get_text())
            why = ("its model is not in the notebook's saved widget state"
                   if m and m.group(1) not in saved else "the widget embed scripts did not draw it")
            problems.append(f"widget view not drawn ({why}): {script.get_text()[:100]!r}")
    return problems


# <link rel=...> values that make the browser fetch something (canonical, alternate, next, ...
# are only references).
LOADING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "preconnect", "dns-prefetch",
                "prerender", "icon", "apple-touch-icon", "mask-icon", "manifest"}
# Elements and the attributes through which they load a resource.
LOADING_ATTRS = {
    "script": ("src",), "img": ("src", "srcset"), "source": ("src", "srcset"), "video": ("src", "poster"),
    "audio": ("src",), "track": ("src",), "iframe": ("src",), "frame": ("src",), "embed": ("src",),
    "object": ("data",), "input": ("src",), "image": ("href", "xlink:href"), "use": ("href", "xlink:href"),
    "feimage": ("href", "xlink:href"),
}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""", re.IGNORECASE)
CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?(['"]?)([^'")\s;]+)\1""", re.IGNORECASE)


def _urls_in_srcset(value: str) -> list[str]:
    return [part.split()[0] for part in value.split(",") if part.split()]


def find_outside_loads_in_css(css: str) -> list[str]:
    """``@import`` and ``url(...)`` in a stylesheet that point outside the site (a web font, an
    image or another stylesheet from a CDN)."""
    problems = []
    for pattern, what in ((CSS_IMPORT, "@import"), (CSS_URL, "url()")):
        for m in pattern.finditer(css):
            if is_remote(m.group(2).strip()):
                problems.append(f"CSS {what} loads {m.group(2).strip()} from the network")
    return problems


def find_network_assets(soup: BeautifulSoup) -> list[str]:
    """Everything in the page that the browser would fetch from outside the site: stylesheets,
    preloads and icons (``<link>``), scripts, images, media, frames, SVG ``<image>``/``<use>``,
    and ``@import``/``url()`` in ``<style>`` blocks and ``style=`` attributes. Links a reader
    clicks (``<a href>``, the Colab and repository buttons) are not loads and are allowed."""
    problems = []
    for el in soup.find_all(True):
        name = el.name.lower()
        if name == "link":
            rels = {r.lower() for r in (el.get("rel") or [])}
            if rels & LOADING_RELS and is_remote(el.get("href") or ""):
                problems.append(f"<link rel={' '.join(sorted(rels))}> loads {el['href']} from the network")
            continue
        for attr in LOADING_ATTRS.get(name, ()):
            value = (el.get(attr) or "").strip()
            urls = _urls_in_srcset(value) if attr == "srcset" else [value]
            problems += [f"<{name} {attr}> loads {u} from the network" for u in urls if u and is_remote(u)]
        if el.get("style"):
            problems += [f"<{name} style> {p}" for p in find_outside_loads_in_css(el["style"])]
        if name == "style":
            problems += [f"<style> {p}" for p in find_outside_loads_in_css(el.get_text())]
    return problems


def local_stylesheets(soup: BeautifulSoup, page: Path) -> set[Path]:
    """The local CSS files a page loads, with the files they ``@import`` (recursively)."""
    todo = [(page.parent / unquote(urlsplit(link["href"]).path)).resolve()
            for link in soup.find_all("link", href=True)
            if "stylesheet" in (link.get("rel") or []) and not urlsplit(link["href"]).scheme
            and not link["href"].startswith("//")]
    seen: set[Path] = set()
    while todo:
        css = todo.pop()
        if css in seen or not css.is_file():
            continue
        seen.add(css)
        for m in CSS_IMPORT.finditer(css.read_text(encoding="utf-8", errors="replace")):
            url = m.group(2).strip()
            if not urlsplit(url).scheme and not url.startswith("//"):
                todo.append((css.parent / unquote(urlsplit(url).path)).resolve())
    return seen


def find_missing_local_assets(soup: BeautifulSoup, page: Path) -> list[str]:
    """Local scripts and stylesheets (the vendored MathJax and widget scripts among them) that
    do not exist relative to the page: the check that relative paths work at every depth."""
    problems = []
    for el in soup.find_all(["script", "link"]):
        url = el.get("src") if el.name == "script" else el.get("href")
        if el.name == "link" and "stylesheet" not in (el.get("rel") or []):
            continue
        if not url or urlsplit(url).scheme or url.startswith("//"):
            continue
        target = (page.parent / unquote(urlsplit(url).path)).resolve()
        if not target.is_file() or target.stat().st_size == 0:
            problems.append(f"<{el.name}> {url}: {target} is missing or empty")
    return problems


def page_problems(soup: BeautifulSoup, page: Path) -> list[str]:
    """Everything that must hold on every page opened in the browser."""
    return (find_blank_page(soup) + find_tracebacks(soup) + find_raw_math(soup)
            + find_untypeset_math(soup) + find_missing_images(soup, page) + find_undrawn_widgets(soup))


def report(page: str, problems: list[str]) -> str:
    return f"{page}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------

def find_browser() -> str | None:
    explicit = os.environ.get("GENAI_CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) or Path(explicit).is_file() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


# URL -> the requests its page made to the network (filled by every dump_dom call).
NETWORK_REQUESTS: dict[str, list[str]] = {}


def run_browser(browser: str, url: str, *args: str, window=WINDOW) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; return its stdout.

    Chromium's network log (``--log-net-log``) is kept: :func:`outside_requests` reads from it
    what the page asked the network for, and ``NETWORK_REQUESTS[url]`` records the answer.
    """
    with tempfile.TemporaryDirectory(prefix="genai-chromium-") as profile:
        netlog = Path(profile) / "netlog.json"
        cmd = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}",
               f"--window-size={window[0]},{window[1]}", *args, url]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Chromium did not finish within {BROWSER_TIMEOUT_S} s on {url}")
        if proc.returncode == 0:
            NETWORK_REQUESTS[url] = outside_requests(netlog)
    if proc.returncode != 0:
        pytest.fail(f"Chromium exited with {proc.returncode} on {url}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def outside_requests(netlog: Path) -> list[str]:
    """URLs that a local page asked the network for, read from a Chromium NetLog.

    Counts every URL request (http, https, ws, wss) whose network isolation key is a local file
    (``file://``), that is, one made for the page: a stylesheet, script, font, image, fetch or
    XHR, blocked or not (``--host-resolver-rules`` makes them all fail). The browser's own
    background requests (update checks, clock) are keyed otherwise and not counted.
    """
    if not netlog.is_file():
        pytest.fail(f"Chromium wrote no network log to {netlog}")
    text = netlog.read_text(encoding="utf-8", errors="replace")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        url = params.get("url", "")
        if (event.get("type") == start_job and urlsplit(url).scheme in ("http", "https", "ws", "wss")
                and "file://" in params.get("network_isolation_key", "")):
            urls.append(url)
    return sorted(set(urls))


def dump_dom(browser: str, path: Path, query: str = "", *args: str) -> BeautifulSoup:
    url = path.as_uri() + (f"?{query}" if query else "")
    html = run_browser(browser, url, "--dump-dom", *args)
    if "<html" not in html.lower():
        pytest.fail(f"Chromium returned no DOM for {url} (stdout: {html[:300]!r})")
    return parse(html)


def screenshot(browser: str, path: Path, out: Path, window=WINDOW) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run_browser(browser, path.as_uri(), f"--screenshot={out}", window=window)
    return out


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE_DIR / INTRO).is_file():
        pytest.fail(
            f"No built site at {SITE_DIR} (looked for {INTRO}). Build it first with `make book` "
            "(or `jupyter-book build .`), or point GENAI_SITE_DIR at a built _build/html.",
            pytrace=False)
    return SITE_DIR


@pytest.fixture(scope="session")
def browser() -> str:
    found = find_browser()
    if found is None:
        msg = ("Chromium not found (tried " + ", ".join(BROWSER_NAMES) + "; set GENAI_CHROMIUM). "
               "Debian/Ubuntu: apt-get install --no-install-recommends chromium")
        if os.environ.get("GENAI_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " -- GENAI_REQUIRE_BROWSER=1, so the browser check cannot be skipped.",
                        pytrace=False)
        pytest.skip(msg)
    return found


@pytest.fixture(scope="session")
def rendered(site: Path, browser: str):
    """``rendered(page, query="")`` -> the DOM of ``site/page`` after its scripts ran (cached)."""
    @functools.lru_cache(maxsize=None)
    def render(page: str, query: str = "") -> BeautifulSoup:
        path = site / page
        if not path.is_file():
            pytest.fail(f"{path} was not built (is it in _toc.yml?)", pytrace=False)
        return dump_dom(browser, path, query)
    return render


def all_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)


# --------------------------------------------------------------------------------------------
# Tests of the built site
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", list(BROWSER_PAGES))
def test_page_renders_with_text_math_and_figures_and_no_errors(rendered, site, page):
    soup = rendered(page)
    problems = page_problems(soup, site / page)
    assert not problems, report(page, problems)


@pytest.mark.parametrize("page", list(BROWSER_PAGES))
def test_page_with_math_gets_typeset_by_mathjax(rendered, site, page):
    static = parse((site / page).read_text(encoding="utf-8"))
    formulas = content_of(static).select(".math")
    if page == INTRO:
        assert formulas, f"{page} should contain at least one formula (the attention formula)"
    if formulas:
        n = len(rendered(page).find_all("mjx-container"))
        assert n >= len(formulas), (
            f"{page}: {len(formulas)} formulas but {n} MathJax outputs (mjx-container); is the "
            "vendored MathJax (mathjax_path in _config.yml, _vendor/) loading?")


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_shows_at_least_one_figure(rendered, page):
    # Figures are stored with the site (files or data: URIs); a badge from the web does not count.
    figures = [img for img in content_of(rendered(page)).find_all("img")
               if img.get("src") and not is_remote(img["src"])]
    assert figures, f"{page} shows no figure (no <img> stored with the site): its plots are missing"


def test_chapter_01_has_a_working_animation_player(rendered):
    players = find_animation_players(rendered(CHAPTER_01))
    assert players, (f"{CHAPTER_01} has no animation player (a div.animation with a range slider "
                     "from Animation.to_jshtml()); sliders on the static site need one")
    for player in players:
        img = player.find("img")
        assert img is not None and (img.get("src") or "").startswith("data:image"), (
            f"{CHAPTER_01}: an animation player shows no frame (its script did not run)")


# --------------------------------------------------------------------------------------------
# Player buttons: drawn, not blank (read from screenshot pixels)
# --------------------------------------------------------------------------------------------

# Added to a page before it is rendered: once the page has settled, pin the first player to the
# top left corner of the window (in place in the page, so the site's styles still apply to it;
# a headless screenshot of a scrolled page comes out blank) and record each of its buttons' box
# (CSS pixels, relative to the window).
PLAYER_PROBE = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var bar = document.querySelector("div.animation .anim-buttons");
    var boxes = [];
    if (bar) {
      var player = bar.closest("div.animation");
      Object.assign(player.style, {position: "fixed", top: "0", left: "0", zIndex: "100000",
                                   background: "white", padding: "8px"});
      bar.querySelectorAll("button").forEach(function (b) {
        var r = b.getBoundingClientRect();
        boxes.push([r.left, r.top, r.right, r.bottom]);
      });
    }
    document.body.setAttribute("data-player-buttons", JSON.stringify(boxes));
  }, 3000);
});
</script>"""
MIN_BUTTON_INK = 10  # pixels of ink: a drawn 14 px icon has 25 (a minus sign) to 100; a blank button 0
ONE_PIXEL_PER_PIXEL = "--force-device-scale-factor=1"


def with_player_probe(html: str) -> str:
    i = html.lower().rfind("</body>")
    return html[:i] + PLAYER_PROBE + html[i:] if i >= 0 else html + PLAYER_PROBE


def button_ink(png: Path, boxes: list) -> list[int]:
    """For each button box: how many pixels inside it (3 px in from the border) differ clearly
    from the button's own background (its median grey level) -- the icon's ink."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        gray = np.asarray(im.convert("L"), dtype=np.int16)
    fractions = []
    for left, top, right, bottom in boxes:
        inside = gray[int(round(top)) + 3:int(round(bottom)) - 3, int(round(left)) + 3:int(round(right)) - 3]
        if inside.size == 0:
            fractions.append(0)
            continue
        fractions.append(int((np.abs(inside - np.median(inside)) > 60).sum()))
    return fractions


def player_button_ink(browser: str, page: Path, png: Path) -> list[int]:
    """Render ``page`` (with :data:`PLAYER_PROBE` in it) twice -- once for the button boxes, once
    for a screenshot -- and return :func:`button_ink` of each button of its first player."""
    soup = dump_dom(browser, page, "", ONE_PIXEL_PER_PIXEL)
    boxes = json.loads((soup.body or {}).get("data-player-buttons") or "[]")
    assert boxes, f"{page}: no player buttons found (div.animation .anim-buttons button)"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    run_browser(browser, page.as_uri(), f"--screenshot={png}", ONE_PIXEL_PER_PIXEL)
    assert png.is_file(), f"no screenshot written to {png}"
    return button_ink(png, boxes)


def player_fixture_page(folder: Path, name: str, player_html: str) -> Path:
    page = folder / name
    page.write_text(with_player_probe(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{name}</title></head>"
        f"<body>{player_html}</body></html>"), encoding="utf-8")
    return page


def sweep_player_html() -> str:
    """A small player made by the book's own helper, as a chapter makes one."""
    from genai_helpers import viz

    def draw(fig, value):
        ax = fig.add_subplot()
        ax.plot([0, 1, 2], [0, value, 2 * value])
        ax.set_title(f"slope {value}")

    return viz.sweep_player([1, 2, 3], draw, figsize=(3, 2)).data


def test_sweep_player_buttons_are_drawn_offline(browser, tmp_path):
    page = player_fixture_page(tmp_path, "player.html", sweep_player_html())
    ink = player_button_ink(browser, page, SCREENSHOT_DIR / "player_fixture.png")
    assert len(ink) == 9, f"expected matplotlib's 9 player buttons, found {len(ink)}"
    assert min(ink) >= MIN_BUTTON_INK, (
        f"player buttons look blank (ink pixels per button {ink}, "
        f"need >= {MIN_BUTTON_INK}); see {SCREENSHOT_DIR / 'player_fixture.png'}")
    assert NETWORK_REQUESTS[page.as_uri()] == [], NETWORK_REQUESTS[page.as_uri()]


def test_the_button_check_fails_on_matplotlibs_own_cdn_player(browser, tmp_path):
    """The check above must catch the bug it is for: matplotlib's ``to_jshtml()`` links Font
    Awesome from a CDN, so offline its nine buttons are empty grey boxes."""
    from matplotlib.animation import FuncAnimation
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    anim = FuncAnimation(fig, lambda i: ax.plot([0, 1], [0, i]), frames=3)
    page = player_fixture_page(tmp_path, "cdn_player.html", anim.to_jshtml())
    ink = player_button_ink(browser, page, tmp_path / "cdn_player.png")
    assert len(ink) == 9 and max(ink) < MIN_BUTTON_INK, ink
    assert any("font-awesome" in url for url in NETWORK_REQUESTS[page.as_uri()]), (
        f"the CDN stylesheet request was not seen in the network log: {NETWORK_REQUESTS[page.as_uri()]}")


def test_chapter_01_player_buttons_are_drawn_on_the_site(site, browser):
    """The first stored player of chapter 1, as the built site shows it (a copy of the page with
    the probe added, next to the original so that its relative links work)."""
    probe = site / "notebooks" / "_player_probe_01.html"
    probe.write_text(with_player_probe((site / CHAPTER_01).read_text(encoding="utf-8")), encoding="utf-8")
    try:
        ink = player_button_ink(browser, probe, SCREENSHOT_DIR / "01_attention_player.png")
    finally:
        probe.unlink(missing_ok=True)
    assert len(ink) == 9 and min(ink) >= MIN_BUTTON_INK, (
        f"{CHAPTER_01}: player buttons look blank (ink pixels per button "
        f"{ink}); see {SCREENSHOT_DIR / '01_attention_player.png'}")


def test_index_redirects_to_the_intro(rendered, site):
    assert (site / "index.html").is_file(), f"{site}/index.html is missing"
    soup = rendered("index.html")
    intro_title = parse((site / INTRO).read_text(encoding="utf-8")).title
    assert soup.title is not None and intro_title is not None
    assert soup.title.get_text() == intro_title.get_text(), (
        f"index.html shows {soup.title.get_text()!r}, not the intro")


def test_search_page_finds_chapter_01(rendered):
    soup = rendered("search.html", "q=attention")
    results = soup.select("#search-results li a, .search li a")
    texts = [a.get_text(" ") for a in results]
    assert any("Chapter 1" in t for t in texts), (
        f"searching 'attention' did not list chapter 1; results: {texts}")


def test_every_page_loads_its_scripts_and_styles_from_the_site_not_the_network(site):
    """Static check of every built page (the browser check below sees what scripts add): no
    stylesheet, script, font or image from outside the site, in the page or in the CSS files it
    loads; and every local script and stylesheet exists."""
    problems, stylesheets = [], set()
    for path in all_pages(site):
        soup = parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(site).as_posix()
        problems += [f"{rel}: {p}" for p in find_network_assets(soup)]
        problems += [f"{rel}: {p}" for p in find_missing_local_assets(soup, path)]
        stylesheets |= local_stylesheets(soup, path)
    assert stylesheets, "no page loads a local stylesheet: is the theme's CSS missing?"
    for css in sorted(stylesheets):
        rel = css.relative_to(site).as_posix() if css.is_relative_to(site) else str(css)
        problems += [f"{rel}: {p}" for p in find_outside_loads_in_css(css.read_text(encoding="utf-8", errors="replace"))]
    assert not problems, f"{len(problems)} outside load(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("page", NETWORK_PAGES)
def test_page_asks_the_network_for_nothing_in_the_browser(rendered, site, page):
    """What the browser actually requested while rendering the page (its scripts ran, MathJax
    typeset, widgets and players drew): nothing may come from outside the site. The on-demand
    launchers (Colab, Binder, live code) load only when clicked, so they do not show here."""
    rendered(page)
    url = (site / page).as_uri()
    requests = NETWORK_REQUESTS.get(url)
    assert requests is not None, f"no network log recorded for {url}"
    assert not requests, (f"{page} asked the network for {len(requests)} resource(s) (offline they "
                          "are missing):\n  " + "\n  ".join(requests))


def test_every_page_has_its_static_images_on_disk(site):
    problems = []
    for path in all_pages(site):
        soup = parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(site).as_posix()
        # Before scripts run, an animation player's <img> has no src yet: skip those here.
        for img in soup.select("div.animation img"):
            img.decompose()
        problems += [f"{rel}: {p}" for p in find_missing_images(soup, path)]
    assert not problems, "\n".join(problems)


def test_notebook_pages_offer_an_open_in_colab_launch_button(site):
    page = (site / CHAPTER_01).read_text(encoding="utf-8")
    assert re.search(r'href="https://colab\.research\.google\.com/github/[^"]+/notebooks/01_attention\.ipynb"',
                     page), (f"{CHAPTER_01} has no Colab launch link; check launch_buttons.colab_url "
                             "and repository.url in _config.yml")


def test_pages_load_only_the_vendored_entry_scripts(site):
    """MathJax's extensions and fonts are fetched by MathJax itself when needed. If they appear as
    <script> tags, Jupyter Book is adding every .js under the static paths to every page (it does
    that once a _static/ folder exists at the repository root)."""
    allowed = {"mathjax/es5/tex-chtml.js", "requirejs/require.js", "html-manager/embed-amd.js"}
    problems = []
    for path in all_pages(site):
        soup = parse(path.read_text(encoding="utf-8"))
        for script in soup.find_all("script", src=True):
            m = re.search(r"_static/((?:mathjax|requirejs|html-manager)/[^?#]+)", script["src"])
            if m and m.group(1) not in allowed:
                problems.append(f"{path.relative_to(site)}: loads {m.group(1)}")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("page", list(BROWSER_PAGES))
def test_screenshots_are_saved_and_not_blank(site, browser, page):
    name = BROWSER_PAGES[page]
    for suffix, window in (("", WINDOW), ("_long", LONG_WINDOW)):
        out = screenshot(browser, site / page, SCREENSHOT_DIR / f"{name}{suffix}.png", window)
        assert out.is_file() and out.stat().st_size > 0, f"no screenshot written to {out}"
        assert ink_fraction(out) > 0.01, f"{out} is (almost) blank"


def ink_fraction(png: Path) -> float:
    """Fraction of pixels that are not near-white (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(png) as im:
        counts = im.convert("L").histogram()  # 256 bins of gray levels
    return sum(counts[:235]) / max(1, sum(counts))


# --------------------------------------------------------------------------------------------
# The checks themselves, on deliberately broken pages (no built site needed)
# --------------------------------------------------------------------------------------------

GOOD_PROSE = "<p>" + "A page with enough words to count as a real page of the book. " * 10 + "</p>"


def page_html(body: str) -> str:
    return f"<html><head><title>t</title></head><body><main>{GOOD_PROSE}{body}</main></body></html>"


def test_checks_pass_a_good_page(tmp_path):
    (tmp_path / "fig.png").write_bytes(b"\x89PNG not really, but not empty")
    soup = parse(page_html(
        '<span class="math"><mjx-container>x</mjx-container></span>'
        '<img src="fig.png"><img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB">'
        '<pre>echo $HOME and $PATH; a \\(b\\) $x^2$</pre><code>$$</code>'
        '<p>It costs 5 dollars, or $5 and $6 in total.</p>'))
    assert page_problems(soup, tmp_path / "page.html") == []


def test_raw_math_is_flagged():
    for snippet in ["$x^2$", r"$\mathrm{softmax}(QK^T)$", "$$ a = b $$", r"\(a+b\)", r"\[ a \]",
                    r"\begin{align} a \end{align}"]:
        soup = parse(page_html(f"<p>before {snippet} after</p>"))
        assert find_raw_math(soup), f"raw math {snippet!r} was not flagged"


def test_math_left_untypeset_and_mathjax_errors_are_flagged():
    soup = parse(page_html(r'<span class="math notranslate">\(x\)</span>'))
    assert find_untypeset_math(soup)
    soup = parse(page_html('<span class="math"><mjx-container><mjx-merror '
                           'data-mjx-error="Undefined control sequence \\foo">'
                           "</mjx-merror></mjx-container></span>"))
    assert any("Undefined control sequence" in p for p in find_untypeset_math(soup))
    red = ('<span class="math"><mjx-container><mjx-mtext style="color: red;">'
           '<mjx-c class="mjx-c5C"></mjx-c><mjx-c class="mjx-c66"></mjx-c><mjx-c class="mjx-c6F">'
           '</mjx-c><mjx-c class="mjx-c6F"></mjx-c></mjx-mtext></mjx-container></span>')
    assert any("\\foo" in p for p in find_untypeset_math(parse(page_html(red))))


def test_missing_empty_remote_and_srcless_images_are_flagged(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "ok.png").write_bytes(b"png bytes")
    page = tmp_path / "sub" / "page.html"
    cases = {
        '<img src="missing.png">': "does not exist",
        '<img src="../empty.png">': "is empty",
        '<img src="https://example.org/badge.svg">': "network",
        "<img>": "no src",
        '<img src="data:image/png;base64,">': "empty data URI",
    }
    for tag, expected in cases.items():
        problems = find_missing_images(parse(page_html(tag)), page)
        assert len(problems) == 1 and expected in problems[0], (tag, problems)
    assert find_missing_images(parse(page_html('<img src="../ok.png?v=1">')), page) == []


def test_tracebacks_and_error_outputs_are_flagged():
    tb = ("<pre>---------------------------------------------------------------------------\n"
          "ZeroDivisionError   Traceback (most recent call last)\nCell In[3], line 1\n"
          "----&gt; 1 1/0\nZeroDivisionError: division by zero</pre>")
    assert find_tracebacks(parse(page_html(tb)))
    err = '<div class="cell_output"><div class="output traceback highlight-ipythontb">x</div></div>'
    assert find_tracebacks(parse(page_html(err)))
    assert find_tracebacks(parse(page_html("<p>Use a try block around risky code.</p>"))) == []


def test_blank_page_is_flagged():
    assert find_blank_page(parse("<html><body><main><h1>Title</h1></main></body></html>"))
    assert find_blank_page(parse(page_html(""))) == []


def test_player_without_slider_and_undrawn_widget_are_flagged():
    assert find_animation_players(parse(page_html('<div class="animation"><img></div>'))) == []
    player = '<div class="animation"><img src="data:,x"><input type="range" min="0" max="9"></div>'
    assert len(find_animation_players(parse(page_html(player)))) == 1
    view = ('<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">'
            '{"model_id": "abc"}</script></div>')
    assert find_undrawn_widgets(parse(page_html(view)))
    drawn = view.replace("<script", '<div class="widget-subarea"><div class="jupyter-widgets">'
                                    "</div></div><script")
    assert find_undrawn_widgets(parse(page_html(drawn))) == []


def test_network_and_missing_assets_are_flagged(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "here.js").write_text("//")
    soup = parse('<html><head><script src="https://cdn.example.org/x.js"></script>'
                 '<link rel="stylesheet" href="//fonts.example.org/css">'
                 '<script src="_static/here.js?v=1"></script>'
                 '<script src="_static/gone.js"></script>'
                 '<link rel="canonical" href="https://example.org/page.html"></head></html>')
    assert len(find_network_assets(soup)) == 2
    missing = find_missing_local_assets(soup, tmp_path / "page.html")
    assert len(missing) == 1 and "gone.js" in missing[0]


def test_every_kind_of_outside_load_is_flagged_and_plain_links_are_not():
    loads = [
        '<link rel="preload" as="font" href="https://fonts.example.org/a.woff2">',
        '<link rel="icon" href="http://example.org/favicon.ico">',
        '<script src="//cdn.example.org/lib.js"></script>',
        '<img srcset="local.png 1x, https://example.org/big.png 2x">',
        '<video poster="https://example.org/p.jpg"></video>',
        '<iframe src="https://example.org/embed"></iframe>',
        '<svg><image href="https://example.org/i.png"></image></svg>',
        '<div style="background: url(\'https://example.org/bg.png\')"></div>',
        '<style>@import "https://fonts.example.org/css?family=Roboto";</style>',
        '<style>@font-face { src: url(//fonts.example.org/x.woff2) }</style>',
    ]
    for tag in loads:
        assert len(find_network_assets(parse(page_html(tag)))) == 1, tag
    fine = ('<a href="https://colab.research.google.com/github/x/y.ipynb">Colab</a>'
            '<link rel="canonical" href="https://example.org/page.html">'
            '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0h1v1z"/></svg>'
            '<img src="data:image/png;base64,AAAA"><img src="../_images/fig.png">'
            '<style>.x { background: url("../_static/bg.png") }</style>')
    assert find_network_assets(parse(page_html(fine))) == []


def test_stylesheets_are_followed_through_local_imports(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "theme.css").write_text('@import "base.css";\nbody { color: black }')
    (tmp_path / "_static" / "base.css").write_text(
        "@font-face { src: url('https://fonts.example.org/x.woff2') }")
    soup = parse('<html><head><link rel="stylesheet" href="_static/theme.css?v=2"></head></html>')
    found = local_stylesheets(soup, tmp_path / "page.html")
    assert {p.name for p in found} == {"theme.css", "base.css"}
    problems = [p for css in found for p in find_outside_loads_in_css(css.read_text())]
    assert len(problems) == 1 and "fonts.example.org" in problems[0]


def test_button_ink_tells_a_drawn_button_from_a_blank_one(tmp_path):
    import numpy as np
    from PIL import Image

    img = np.full((40, 100), 255, np.uint8)
    img[10:30, 10:46] = 239                   # two grey buttons, 36 x 20
    img[10:30, 50:86] = 239
    img[14:26, 22:34] = 0                     # an icon in the first one only
    Image.fromarray(img).save(tmp_path / "b.png")
    drawn, blank = button_ink(tmp_path / "b.png", [[10, 10, 46, 30], [50, 10, 86, 30]])
    assert drawn == 144 and blank == 0


def test_a_broken_page_fails_the_checks_in_the_real_browser(browser, tmp_path):
    """End to end: raw math with no MathJax, a missing image and a traceback, rendered by
    Chromium, must all be caught (guards against a browser run that returns nothing useful)."""
    page = tmp_path / "broken.html"
    page.write_text(page_html(
        '<p>Inline $\\sqrt{d_k}$ math.</p><img src="nowhere.png">'
        '<div class="output traceback">Traceback (most recent call last)</div>'), encoding="utf-8")
    problems = page_problems(dump_dom(browser, page), page)
    joined = "\n".join(problems)
    assert "unrendered math" in joined and "does not exist" in joined and "traceback" in joined, joined
