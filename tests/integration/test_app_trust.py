"""A site runs only the FedRad it installed, on real processes: the aggregator submits an
app whose ClientApp is a module of its own, and one that is FedRad's but ships a `fedrad`
package shadowing the installed one; every site refuses both (the shipped code never
runs, the site log says why, the study stops at the aggregator naming the refusal), while
the genuine study runs to its results.
"""

from __future__ import annotations

import shutil
import time

import pytest
from loopback import LoopbackFederation

from fedrad.common.config import StudyConfig
from fedrad.server.superlink import study_app_project

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]

MARKER_APP = """
from pathlib import Path
from flwr.clientapp import ClientApp
Path({marker!r}).write_text("the aggregator's code ran at a site")
app = ClientApp()
"""


def _study() -> StudyConfig:
    """Tiny, so that the genuine study costs few of Flower's per-message process starts."""
    return StudyConfig().updated(
        federation={"min_sites": 2, "secure_aggregation": False},
        harmonization={"method": "none"},
        model={"max_newton_iterations": 1},
        selection={"screen": "none"},
        validation={"scheme": "holdout"},
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    loopback = LoopbackFederation(tmp_path_factory.mktemp("trust"), _study(), sizes=(40, 40))
    root = loopback.root
    marker = MARKER_APP.format(marker=str(root / "marker"))
    own_clientapp = study_app_project(loopback.study_path, root / "own").replace(
        "fedrad.client.app:app", "shipped_app:app"
    )
    attacks = {
        "own": {"pyproject.toml": own_clientapp, "shipped_app.py": marker},
        "shadow": {
            "fedrad/__init__.py": "",
            "fedrad/client/__init__.py": "",
            "fedrad/client/app.py": marker,
        },
    }
    try:
        loopback.start()
        started = time.monotonic()
        for name, files in attacks.items():
            loopback.submit(root / name, files=files)
        loopback.submit(root / "genuine")
        loopback.outcome = {name: loopback.results(root / name) for name in [*attacks, "genuine"]}
        print(f"two refused apps and the genuine study: {time.monotonic() - started:.0f} s")
        yield loopback
    finally:
        loopback.stop_all()


@pytest.mark.parametrize("attack", ["own", "shadow"])
def test_an_app_carrying_code_is_refused_at_every_site(federation, attack):
    results = federation.outcome[attack]
    assert not (federation.root / "marker").exists()
    assert results["status"] == "stopped"
    reasons = [site["reason"] for site in results["sites"]]
    assert len(reasons) == 2 and all("AppRefused" in reason for reason in reasons), reasons
    assert all("carries code or files" in reason for reason in reasons), reasons
    for name in federation.tables:
        assert "FedRad site: refused app fedrad/fedrad-study" in federation.log(name)


def test_the_genuine_study_still_runs(federation):
    results = federation.outcome["genuine"]
    assert results.get("status") != "stopped", results.get("reason")
    assert [site["status"] for site in results["sites"]] == ["included"] * 2
    assert 0 <= results["metrics"]["federated"]["auc"] <= 1
