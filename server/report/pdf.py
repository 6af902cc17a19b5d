"""The study report as PDF: the same HTML page printed by Debian's chromium, headless (the
browser the dashboard's tests drive; none is ever downloaded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-pdf-header-footer",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=20000",  # let Plotly draw before the page is printed
)


class NoBrowser(RuntimeError):
    """No chromium to print with, or it failed: the HTML stands, the PDF does not."""


def print_pdf(page: Path, out: Path, chromium: Path = CHROMIUM, timeout_s: float = 180) -> Path:
    """Print the HTML `page` to `out` with chromium; NoBrowser, in a sentence, if it cannot."""
    if not chromium.exists():
        raise NoBrowser(f"no PDF: {chromium} is missing (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(chromium), *_ARGS, f"--print-to-pdf={out.resolve()}", page.resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise NoBrowser(f"no PDF: chromium did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise NoBrowser(f"no PDF: chromium failed (exit {done.returncode}: {last})")
    return out
