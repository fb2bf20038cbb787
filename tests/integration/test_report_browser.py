"""The committed HTML reports render in headless Chromium: a non-blank page and no errors logged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPORTS = Path(__file__).resolve().parents[2] / "reports"
PAGES = {
    "reference report": REPORTS / "smollm2-135m" / "report.html",
    "comparison of the two bundled models": REPORTS / "categories-quick" / "compare" / "compare.html",
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` (apt-get install -y chromium)")
@pytest.mark.parametrize("page", sorted(PAGES))
def test_committed_report_renders_without_errors(page, tmp_path):
    from PIL import Image

    html = PAGES[page]
    assert html.exists(), f"{html} is committed with the repository (README, docs/RESULTS.md)"
    shot = tmp_path / "page.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1200,2000", html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10, "the screenshot is blank"
    log = proc.stderr
    assert "Uncaught" not in log and "CONSOLE" not in log and "Failed to load resource" not in log, log[-2000:]
