"""The set-up inside the README's two commands: ``make test`` installs (or names) the system packages.

``tools/system_deps.sh`` holds the one list of the Debian packages the chapters read (fortunes,
Fashion-MNIST, WordNet, Tesseract, the SWORD Bibles), the browser check's Chromium, and what set-up
itself needs (make, python3-venv, npm). These tests run it against fake ``dpkg-query``, ``apt-get``
and ``sudo`` programs put first on ``PATH``, so nothing is ever installed, and simulate macOS with
``GENAI_PLATFORM``.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "system_deps.sh"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def bash_major() -> int:
    out = subprocess.run(["bash", "-c", "echo ${BASH_VERSINFO[0]}"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


needs_bash4 = pytest.mark.skipif(bash_major() < 4, reason="the Debian path of system_deps.sh needs bash >= 4")


def run_script(*args: str, env: dict | None = None, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("GENAI_PLATFORM", "GENAI_SKIP_SYSTEM_DEPS")}
    if path_prefix is not None:
        full_env["PATH"] = f"{path_prefix}{os.pathsep}{full_env['PATH']}"
    full_env.update(env or {})
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env,
                          cwd=REPO, timeout=60)


def package_list() -> list[str]:
    out = run_script("--list")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def write_program(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_apt(tmp_path: Path):
    """A bin folder with fake dpkg-query / apt-get / sudo; returns (bin, installed-file, calls-file).

    dpkg-query reports a package as installed ("ii") when its name is a line of the installed file,
    otherwise as known but not installed ("un"), like the real one; apt-get logs its arguments to
    the calls file, and `apt-get install` adds the packages to the installed file.
    """
    fake_bin, installed, calls = tmp_path / "bin", tmp_path / "installed.txt", tmp_path / "calls.txt"
    fake_bin.mkdir()
    installed.write_text("")
    calls.write_text("")
    write_program(fake_bin, "dpkg-query", f"""
for a in "$@"; do
    case "$a" in -W|-f=*) continue ;; esac
    if grep -qxF "$a" {installed}; then echo "ii |$a"; else echo "un |$a"; fi
done
""")
    write_program(fake_bin, "apt-get", f"""
echo "$*" >> {calls}
if [ "$1" = install ]; then
    for a in "$@"; do case "$a" in install|-*) ;; *) echo "$a" >> {installed} ;; esac; done
fi
""")
    write_program(fake_bin, "sudo", 'exec "$@"\n')
    return fake_bin, installed, calls


# ------------------------------------------------------------------------------------ the Makefile

@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "execute"])
def test_make_dry_run_shows_the_system_package_step_first(target):
    out = subprocess.run(["make", "-n", target], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    step = [i for i, line in enumerate(lines) if line.strip() == "bash tools/system_deps.sh"]
    assert step, f"`make -n {target}` does not run tools/system_deps.sh:\n{out.stdout}"
    first_python = next(i for i, line in enumerate(lines) if ".venv/bin/" in line)
    assert step[0] < first_python


def test_ci_runs_the_same_step_before_make_test():
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands.index("bash tools/system_deps.sh") < commands.index("make test")
    assert "GENAI_REQUIRE_BROWSER=1" in ci


# ------------------------------------------------------------------------------------- the list

def test_package_list_is_defined_once():
    packages = package_list()
    assert len(packages) == len(set(packages)), f"duplicates in {packages}"
    expected = {"chromium", "fortunes", "dataset-fashion-mnist", "make", "wordnet-base", "wordnet-sense-index",
                "tesseract-ocr", "tesseract-ocr-eng", "sword-text-web", "sword-text-sparv", "libsword-utils",
                "npm", "python3-venv", "espeak-ng", "dict-gcide", "dict-foldoc", "dict-jargon", "dict-devil", "debian-reference-en"}
    assert set(packages) == expected
    # Neither the CI script nor the Makefile keeps a copy of the list: they run the script.
    for name in (".ci/run", "Makefile"):
        text = (REPO / name).read_text()
        assert "apt-get install" not in text, name
        assert not re.search(r"\b(dataset-fashion-mnist|wordnet-base|sword-text-web|tesseract-ocr)\b", text), name


def test_every_package_an_install_hint_names_is_in_the_list():
    """Each `apt-get install ...` the package, the tests or the README tells a reader to run is covered."""
    packages = set(package_list())
    files = [*REPO.glob("genai_helpers/**/*.py"), *REPO.glob("tests/**/*.py"), *REPO.glob("tools/*.sh"),
             REPO / "README.md"]
    named = {}
    for f in files:
        for match in re.finditer(r"apt-get install((?: +[a-z0-9][a-z0-9.+-]*| +--?[a-z-]+)+)", f.read_text()):
            for word in match.group(1).split():
                if not word.startswith("-"):
                    named.setdefault(word.rstrip("."), f.relative_to(REPO).as_posix())
    assert named, "no install hints found: the pattern is wrong"
    prerequisites = {"python3", "git"}        # the README's "before make" line; make cannot install its own Python
    assert {w: f for w, f in named.items() if w not in packages | prerequisites} == {}


# ---------------------------------------------------------------------------- elsewhere (macOS)

def test_macos_stops_with_one_message_naming_every_package(fake_apt):
    fake_bin, _, calls = fake_apt
    out = run_script(env={"GENAI_PLATFORM": "macos", "GENAI_CHROMIUM": "/nonexistent/chromium"},
                     path_prefix=fake_bin)
    assert out.returncode == 1
    message = out.stderr
    for package in package_list():
        assert package in message, package
    # Homebrew names, and where Homebrew has nothing, how else to get it.
    for brew in ("brew install --cask chromium", "brew install fortune", "brew install tesseract", "brew install node"):
        assert brew in message
    assert "download_fashion_mnist" in message and "GENAI_FASHION_MNIST_DIR" in message
    assert "spaRV1909eb.json" in message and "nltk.downloader wordnet" in message
    assert re.search(r"MISSING +browser", message)
    assert "chapter 05" in message and "chapter 12" in message
    assert "GENAI_SKIP_SYSTEM_DEPS=1" in message
    assert calls.read_text() == "", "nothing may be installed off Debian"


def test_check_of_one_key_names_only_it(fake_apt):
    fake_bin, _, _ = fake_apt
    out = run_script("--check", "browser", env={"GENAI_PLATFORM": "macos", "GENAI_CHROMIUM": "/nonexistent/chromium"},
                     path_prefix=fake_bin)
    assert out.returncode == 1
    assert "chromium" in out.stderr and "fortunes" not in out.stderr


def test_bad_platform_and_unknown_key_are_refused():
    out = run_script(env={"GENAI_PLATFORM": "windows"})
    assert out.returncode == 2 and "GENAI_PLATFORM must be debian, macos or other" in out.stderr
    out = run_script("--check", "nope", env={"GENAI_PLATFORM": "macos"})
    assert out.returncode == 2 and "unknown key 'nope'" in out.stderr


def test_skip_switch_warns_and_installs_nothing(fake_apt):
    fake_bin, _, calls = fake_apt
    out = run_script(env={"GENAI_PLATFORM": "debian", "GENAI_SKIP_SYSTEM_DEPS": "1"}, path_prefix=fake_bin)
    assert out.returncode == 0
    assert "WARNING" in out.stderr and "not checked" in out.stderr
    assert calls.read_text() == ""


# --------------------------------------------------------------------------------- Debian/Ubuntu

def expected_missing_when_nothing_is_installed(path: str) -> list[str]:
    """Every package, except npm when an npm is on PATH (apt's npm would conflict with NodeSource's)."""
    return [p for p in package_list() if not (p == "npm" and shutil.which("npm", path=path))]


@needs_bash4
def test_debian_dry_run_lists_the_missing_packages_and_installs_nothing(fake_apt):
    fake_bin, installed, calls = fake_apt
    installed.write_text("fortunes\nmake\n")
    env = {"GENAI_PLATFORM": "debian", "GENAI_CHROMIUM": "/nonexistent/chromium"}
    out = run_script("--dry-run", env=env, path_prefix=fake_bin)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if "missing (dry run" in x)
    listed = line.split(":", 2)[2].split()
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    assert listed == [p for p in expected_missing_when_nothing_is_installed(path) if p not in ("fortunes", "make")]
    assert "would run:" in out.stdout and "apt-get update" in out.stdout
    assert calls.read_text() == "" and installed.read_text() == "fortunes\nmake\n"


@needs_bash4
def test_debian_installs_only_what_is_missing_then_does_nothing(fake_apt):
    fake_bin, installed, calls = fake_apt
    everything = package_list()
    installed.write_text("\n".join(p for p in everything if p not in ("fortunes", "tesseract-ocr-eng")) + "\n")
    env = {"GENAI_PLATFORM": "debian", "GENAI_CHROMIUM": "/nonexistent/chromium"}
    out = run_script(env=env, path_prefix=fake_bin)
    assert out.returncode == 0, out.stdout + out.stderr
    assert calls.read_text().splitlines() == [
        "update -qq", "install -y -qq --no-install-recommends fortunes tesseract-ocr-eng"]
    # Second run: everything is there, so no apt-get at all (not even `update`).
    calls.write_text("")
    out = run_script(env=env, path_prefix=fake_bin)
    assert out.returncode == 0
    assert "nothing to install" in out.stdout
    assert calls.read_text() == ""


@needs_bash4
def test_debian_chromium_is_not_needed_when_a_browser_is_on_path(fake_apt, tmp_path):
    fake_bin, installed, _ = fake_apt
    installed.write_text("\n".join(p for p in package_list() if p != "chromium") + "\n")
    write_program(fake_bin, "google-chrome", "exit 0\n")
    out = run_script("--dry-run", env={"GENAI_PLATFORM": "debian"}, path_prefix=fake_bin)
    assert out.returncode == 0
    assert "nothing to install" in out.stdout


@needs_bash4
def test_debian_check_mode_names_the_command_and_never_installs(fake_apt):
    fake_bin, installed, calls = fake_apt
    installed.write_text("\n".join(p for p in package_list() if p != "dataset-fashion-mnist") + "\n")
    out = run_script("--check", env={"GENAI_PLATFORM": "debian"}, path_prefix=fake_bin)
    assert out.returncode == 1
    assert "apt-get install --no-install-recommends dataset-fashion-mnist" in out.stderr
    assert "chapter 12" in out.stderr
    assert calls.read_text() == ""
