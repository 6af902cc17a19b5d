"""The aggregator killed mid-study (SuperLink and ServerApp, SIGKILL) after its fit was
saved; `fedrad server resume RUN` restarts the SuperLink with its own command line and
submits the study again, which loads the saved phase and finishes with the results of
an uninterrupted run (the in-process federation on the same tables)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from loopback import LoopbackFederation

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.checkpoint import read_checkpoint
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]


def _study() -> StudyConfig:
    """Small, as the deployment test's: one holdout fit (with ComBat, no screening), sums in
    the clear (masking adds reveal rounds). The aggregator dies once the fit is saved, so
    the resumed run scores the loaded pipeline at sites whose new run has none of it cached:
    equal metrics show the saved pipeline is the fitted one. A 2-fold study (prepared fits,
    rounds in lockstep) resumes alike but takes twice as long; tests/server/test_checkpoint.py
    covers it."""
    return StudyConfig().updated(
        federation={"min_sites": 3, "secure_aggregation": False},
        selection={"screen": "none"},
        validation={"scheme": "holdout"},
    )


def _first_phase(checkpoint, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(checkpoint.glob("000-*.json")):
        assert time.monotonic() < deadline, f"no phase saved in {timeout_s:g} s"
        time.sleep(0.2)


def test_a_killed_aggregator_resumes_to_the_results_of_an_uninterrupted_run(tmp_path):
    loopback = LoopbackFederation(tmp_path, _study())
    out = tmp_path / "out"
    try:
        loopback.start().wait_until("online", list(loopback.tables))
        started = time.monotonic()
        run = loopback.submit(out)
        _first_phase(out / "checkpoint")
        loopback.kill("superlink")  # the ServerApp's process goes with it
        killed = time.monotonic()
        assert not (out / "results.json").exists()
        fedrad = str(Path(sys.executable).parent / "fedrad")
        command = [fedrad, "server", "resume", str(run)]
        loopback.start_process([*command, "--state", str(loopback.state)], "resume")
        deployed = loopback.results(out)
        print(
            f"killed after {killed - started:.0f} s, resumed in {time.monotonic() - killed:.0f} s"
        )
    finally:
        loopback.stop_all()
    assert f"run {run} resumed as run" in loopback.log("resume")
    # the resumed run saved only what the killed one had not: nothing was done twice
    record, phases = read_checkpoint(out / "checkpoint", loopback.study)
    assert len(record["runs"]) == 2 and record["runs"][0] == run and record["finished"]
    assert [(phase.kind, phase.tag) for phase in phases] == [
        ("fitted", "holdout"),
        ("evaluation", "evaluation"),
    ]
    study = loopback.study
    sites = [SiteData.load(path, name, study) for name, path in loopback.tables.items()]
    reference = StudyProtocol(in_process_transport(sites, study), study, expected_sites=3).run()
    assert [site["status"] for site in deployed["sites"]] == ["included"] * 3
    model, expected = deployed["model"]["coefficients"], reference["model"]["coefficients"]
    assert list(model) == list(expected)
    assert max(abs(model[name] - expected[name]) for name in model) <= 1e-9
    for key in ("auc", "sensitivity", "specificity", "balanced_accuracy"):
        assert deployed["metrics"]["federated"][key] == pytest.approx(
            reference["metrics"]["federated"][key], abs=1e-9
        )
    assert deployed["validation"] == reference["validation"]
    assert deployed["rounds"] == reference["rounds"]
