"""What a site's per-message process costs: Flower starts one for every message a
deployed site answers, so the ClientApp's imports are paid on each (docs/protocol.md)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "scipy.stats", "torch", "SimpleITK", "radiomics", "matplotlib")


def test_the_client_app_imports_no_heavy_package():
    probe = (
        f"import sys, fedrad.client.app; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=True,
        timeout=120,
    ).stdout.strip()
    assert loaded == "", f"fedrad.client.app imports {loaded} on every message"
