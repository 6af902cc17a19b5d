"""The run page links the study report (`fedrad report`), which the dashboard renders behind
the same token, with Plotly's script served from the dashboard."""

from __future__ import annotations

import pytest
from dashboard_store import recorded_store
from fastapi.testclient import TestClient

from fedrad.server.dashboard.app import create_app


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    recorded = recorded_store(tmp_path_factory.mktemp("store"))
    yield recorded
    recorded.engine.dispose()


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(store.engine), headers={"Authorization": f"Bearer {store.viewer}"})


def test_the_run_page_links_the_study_report_which_the_dashboard_renders(client, store):
    page = client.get(f"/runs/{store.finished_run}").text
    assert f'href="/runs/{store.finished_run}/report"' in page
    report = client.get(f"/runs/{store.finished_run}/report")
    assert report.status_code == 200
    assert "<script src='/static/plotly.min.js'></script>" in report.text
    assert "Reporting checklist" in report.text and "Cohort per site" in report.text
    assert client.get(f"/runs/{store.running.run_id}/report").status_code == 404


def test_the_study_report_is_behind_the_token(store):
    anonymous = TestClient(create_app(store.engine))
    response = anonymous.get(f"/runs/{store.finished_run}/report", follow_redirects=False)
    assert response.status_code in (303, 401)
