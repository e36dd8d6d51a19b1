"""Headless Chromium for the HTML report tests: the DOM it builds from a page file and the page's console lines.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); without it the calling test is skipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

RENDER_TIMEOUT_S = 60  # one headless page load on a busy 2-core machine


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); the CI image installs it")
    return path


def render(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM Chromium built from ``page`` and the page's console lines (errors, uncaught exceptions, content
    security policy violations)."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Chromium logs every console message of the page as ":INFO:CONSOLE(line)] "message", source: ..."
    # (or ":CONSOLE:line]" in newer builds); an uncaught exception is one of them.
    console = [ln for ln in proc.stderr.splitlines() if re.search(r":CONSOLE[(:]|Uncaught", ln)]
    return proc.stdout, console
