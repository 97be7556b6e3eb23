"""Repository-wide pytest hooks: print how long each notebook took under nbval.

nbval turns every notebook cell into a test item; this sums the cells per notebook so the test
run ends with a per-chapter timing table (the smoke-mode budget is about 90 s per chapter on the
CI machine; times are reported, never asserted).
"""
from collections import defaultdict

_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook times (smoke mode)")
    for path, seconds in sorted(_notebook_seconds.items()):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
