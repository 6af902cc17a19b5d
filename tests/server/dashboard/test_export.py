"""A run's metrics as CSV: the pooled figures with their CIs, each site's, and every
round's deviance, as the store holds them."""

from __future__ import annotations

import csv
import io

import dashboard_store
import pytest
from fastapi.testclient import TestClient

from fedrad.server.dashboard.app import create_app
from fedrad.server.dashboard.export import COLUMNS
from fedrad.server.store.reader import run_page

store = dashboard_store.store  # the module's recorded store (a fixture)


@pytest.fixture(scope="module")
def exported(store):
    client = TestClient(
        create_app(store.engine), headers={"Authorization": f"Bearer {store.viewer}"}
    )
    response = client.get(f"/api/runs/{store.finished_run}/metrics.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert f"run-{store.finished_run}-metrics.csv" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_csv_has_the_pooled_auc_with_its_confidence_interval(store, exported):
    pooled = run_page(store.engine, store.finished_run).metrics["federated"]
    (auc,) = [row for row in exported if (row["scope"], row["name"]) == ("pooled", "auc")]
    low, high = pooled["auc_ci"]
    assert [float(auc[c]) for c in ("value", "ci_low", "ci_high")] == [pooled["auc"], low, high]
    assert not any(row["name"] == "auc_ci" for row in exported)  # folded into the auc row


def test_the_csv_has_every_sites_figures_and_every_round(store, exported):
    page = run_page(store.engine, store.finished_run)
    assert {row["subject"] for row in exported if row["scope"] == "site"} == set(
        page.metrics["per_site"]
    )
    rounds = [r for phase in page.phases for r in phase["rounds"]]
    assert len([row for row in exported if row["scope"] == "round"]) == len(rounds) > 0
    assert list(exported[0]) == COLUMNS
