"""The server-rendered pages: what each shows from the store, and the run's progress
fragment, which keeps htmx polling only while the run is running."""

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


def test_the_progress_fragment_polls_while_running_and_not_once_finished(client, store):
    running = client.get(f"/runs/{store.running.run_id}/progress").text
    assert f'hx-get="/runs/{store.running.run_id}/progress"' in running
    assert 'hx-trigger="every 2s"' in running
    finished = client.get(f"/runs/{store.finished_run}/progress").text
    assert "hx-trigger" not in finished and "finished" in finished


def test_a_poll_that_finds_the_run_ended_reloads_the_page_to_show_its_results(client, store):
    as_htmx = {"HX-Request": "true"}
    ended = client.get(f"/runs/{store.finished_run}/progress", headers=as_htmx)
    assert ended.headers.get("HX-Refresh") == "true"
    running = client.get(f"/runs/{store.running.run_id}/progress", headers=as_htmx)
    assert "HX-Refresh" not in running.headers


def test_the_overview_refreshes_its_sites_and_runs_every_five_seconds(client, store):
    page = client.get("/").text
    assert '<div id="live" hx-get="/" hx-select="#live"' in page
    assert 'hx-trigger="every 5s"' in page
    assert f'href="/runs/{store.running.run_id}"' in page


def test_the_run_page_shows_plots_results_fits_features_harmonization_and_bytes(client, store):
    page = client.get(f"/runs/{store.finished_run}").text
    assert page.count('class="plotly-graph-div"') >= 5  # rounds, per site, calibration, ...
    assert "Newton deviance by iteration" in page and "Calibration (slope" in page
    for section in (
        'id="pooled"',
        'id="per-site"',
        'id="fits"',
        'id="bytes"',
        'id="harmonization"',
        'id="stability"',
        "Selected features: final",
    ):
        assert section in page
    assert "Privacy: sites sent summed quantities masked" in page
    assert 'id="comparison"' not in page  # a run without --compare has no arms


def test_the_running_run_page_has_no_results_yet_but_its_progress(client, store):
    page = client.get(f"/runs/{store.running.run_id}").text
    assert 'id="progress"' in page and "updating live" in page
    assert 'id="pooled"' not in page and "plotly-graph-div" not in page


def test_the_site_page_shows_its_census_as_sent_qc_and_events(client, store):
    page = client.get("/sites/site03").text
    assert "HGG: &lt;3, BM: &gt;=3" in page  # the running run's census, as sent
    assert 'id="qc"' in page and "included" in page
    assert "census: matches the study" in page


def test_pages_load_their_scripts_from_the_dashboard_not_a_cdn(client):
    page = client.get("/").text
    assert '<script src="/static/htmx.min.js">' in page
    assert '<script src="/static/plotly.min.js">' in page
    assert "https://" not in page
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and "plotly.js" in plotly.text[:500]
