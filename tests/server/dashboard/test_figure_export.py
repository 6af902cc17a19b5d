"""A run's figures as PNG and SVG files drawn on the server (Kaleido with the machine's
Chromium), and a sentence instead where they cannot be."""

from __future__ import annotations

import shutil

import dashboard_store
import pytest
from fastapi.testclient import TestClient

from fedrad.server.dashboard.app import create_app
from fedrad.server.dashboard.figure_export import run_figures

store = dashboard_store.store  # the module's recorded store (a fixture)


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(store.engine), headers={"Authorization": f"Bearer {store.viewer}"})


def test_every_figure_of_the_run_page_is_listed_with_its_files(client, store):
    listed = client.get(f"/api/runs/{store.finished_run}/figures").json()
    drawn = run_figures(store.engine, store.finished_run)
    assert [link["name"] for link in listed] == list(drawn)
    assert "newton-deviance-by-iteration" in drawn  # the rounds, then the results' figures
    assert len(drawn) >= 4
    first = listed[0]
    assert first["svg"] == f"/api/runs/{store.finished_run}/figures/{first['name']}.svg"


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
    reason="no Chromium for Kaleido (apt-get install chromium)",
)
def test_a_figure_downloads_as_svg_and_png_drawn_on_the_server(client, store):
    base = f"/api/runs/{store.finished_run}/figures/newton-deviance-by-iteration"
    svg = client.get(f"{base}.svg")
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg") and b"Newton deviance by iteration" in svg.content
    assert 'filename="run-' in svg.headers["content-disposition"]
    png = client.get(f"{base}.png")
    assert (png.status_code, png.content[:8]) == (200, b"\x89PNG\r\n\x1a\n")


def test_without_kaleido_a_figure_request_is_told_why_and_what_to_install(
    client, store, monkeypatch
):
    # what plotly concludes, and caches, when kaleido is not installed
    monkeypatch.setattr("plotly.io._kaleido._KALEIDO_AVAILABLE", False)
    answer = client.get(f"/api/runs/{store.finished_run}/figures/newton-deviance-by-iteration.svg")
    assert answer.status_code == 501
    assert "pip install 'fedrad[export]'" in answer.json()["detail"]


def test_an_unknown_figure_or_format_is_refused(client, store):
    run = store.finished_run
    assert client.get(f"/api/runs/{run}/figures/no-such-plot.svg").status_code == 404
    assert (
        client.get(f"/api/runs/{run}/figures/newton-deviance-by-iteration.gif").status_code == 422
    )
    assert client.get("/api/runs/999/figures").status_code == 404
