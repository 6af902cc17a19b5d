"""Secure aggregation on real processes: a SuperLink with TLS and node keys, four
SuperNodes (tests/loopback.py), the study's sums masked, the sites' identity keys pinned.

site04 is SIGKILLed once its masked share has entered a total (at its first reveal): it
is left out, the fit restarts without it, and the model equals the in-process federation
of the three sites left; what the aggregator recorded of the sites is totals only.
"""

from __future__ import annotations

import shutil
import time

import pytest
from loopback import LoopbackFederation

from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.study import StudyProtocol
from fedrad.simulations.in_process import in_process_transport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]

DROPPED = "site04"
DEADLINE_S = 2400  # only to turn a hang into a failure


def _study() -> StudyConfig:
    return StudyConfig().updated(
        federation={"min_sites": 2, "secure_aggregation": True, "round_timeout_s": 90.0},
        selection={"screen": "none"},
        validation={"scheme": "holdout"},
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    loopback = LoopbackFederation(tmp_path_factory.mktemp("secure"), _study(), sizes=(40,) * 4)
    try:
        loopback.start()
        loopback.wait_until("online", list(loopback.tables))
        started = time.monotonic()
        out = loopback.root / "out"
        loopback.run_id = loopback.submit(out)
        loopback.wait_for_log(DROPPED, "Receiving: query.secagg_reveal", timeout_s=DEADLINE_S)
        loopback.kill(DROPPED)
        loopback.results_json = loopback.results(out, timeout_s=DEADLINE_S)
        print(f"deployed study under secure aggregation: {time.monotonic() - started:.0f} s")
        yield loopback
    finally:
        loopback.stop_all()


def test_a_site_killed_after_its_share_entered_a_total_is_left_out_and_the_fit_redone(
    federation,
):
    results, study = federation.results_json, federation.study
    status = {site["name"]: site["status"] for site in results["sites"]}
    assert status == {"site01": "included", "site02": "included", "site03": "included",
                      DROPPED: "dropped"}, results["events"]  # fmt: skip
    assert results["model"]["training_sites"] == ["site01", "site02", "site03"]
    left = [
        SiteData.load(federation.tables[name], name, study) for name in status if name != DROPPED
    ]
    reference = StudyProtocol(in_process_transport(left, study), study, expected_sites=3).run()
    model, expected = results["model"]["coefficients"], reference["model"]["coefficients"]
    assert list(model) == list(expected)
    assert max(abs(model[name] - expected[name]) for name in model) <= 1e-9
    assert results["metrics"]["federated"]["auc"] == pytest.approx(
        reference["metrics"]["federated"]["auc"], abs=1e-9
    )


def test_the_dropped_site_is_named_with_the_fit_it_left(federation):
    (site,) = [site for site in federation.results_json["sites"] if site["name"] == DROPPED]
    assert site["reason"].startswith("holdout: "), site
