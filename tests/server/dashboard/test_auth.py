"""Access: without a valid token nothing but the login page; a viewer reads, a coordinator
may also ask to start or stop a run (refused as not implemented yet, saying what is
missing); every refusal is logged, never with the token."""

from __future__ import annotations

import logging

import dashboard_store
import pytest
from fastapi.testclient import TestClient

from fedrad.server.dashboard.app import create_app
from fedrad.server.dashboard.auth import COOKIE
from fedrad.server.run_control import RunControl

store = dashboard_store.store  # the module's recorded store (a fixture)


@pytest.fixture
def client(store):
    return TestClient(create_app(store.engine), follow_redirects=False)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_only_the_login_page_and_vendored_scripts_are_served(client, store):
    assert client.get("/login").status_code == 200
    assert client.get("/static/htmx.min.js").status_code == 200
    for page in ("/", "/sites/site01", f"/runs/{store.finished_run}"):
        response = client.get(page)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    for endpoint in ("/api/overview", f"/api/runs/{store.finished_run}/metrics.csv"):
        assert client.get(endpoint).status_code == 401


def test_a_wrong_token_is_refused_and_logged_without_the_token(client, caplog):
    with caplog.at_level(logging.WARNING, logger="fedrad.dashboard.access"):
        response = client.get("/api/overview", headers=_bearer("not-a-token"))
    assert response.status_code == 401
    assert response.json() == {"detail": "unknown token"}
    assert "refused GET /api/overview with 401" in caplog.text
    assert "not-a-token" not in caplog.text


def test_signing_in_with_a_wrong_token_shows_the_login_page_refusing_it(client, caplog):
    with caplog.at_level(logging.WARNING, logger="fedrad.dashboard.access"):
        response = client.post("/login", data={"token": "guessed"})
    assert response.status_code == 401
    assert "Refused: unknown token at sign-in" in response.text
    assert COOKIE not in response.cookies
    assert "refused POST /login with 401" in caplog.text


def test_signing_in_sets_a_cookie_that_opens_the_pages(client, store):
    response = client.post("/login", data={"token": store.viewer})
    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert "httponly" in response.headers["set-cookie"].lower()
    page = client.get("/")
    assert page.status_code == 200 and "site02" in page.text and "vera (viewer)" in page.text


def test_a_viewer_cannot_stop_or_start_a_run(client, store, caplog):
    with caplog.at_level(logging.WARNING, logger="fedrad.dashboard.access"):
        stop = client.post(f"/api/runs/{store.running.run_id}/stop", headers=_bearer(store.viewer))
        start = client.post("/api/runs", headers=_bearer(store.viewer))
    assert (stop.status_code, start.status_code) == (403, 403)
    assert stop.json()["detail"] == "vera is a viewer; this needs a coordinator"
    assert caplog.text.count("with 403") == 2


def test_a_coordinator_is_told_how_to_serve_a_dashboard_that_controls_runs(client, store):
    stop = client.post(f"/api/runs/{store.running.run_id}/stop", headers=_bearer(store.coordinator))
    assert stop.status_code == 501
    assert "serve it with --state STATE" in stop.json()["detail"]


def test_a_simulated_run_cannot_be_stopped_nor_started_from_the_dashboard(store, tmp_path):
    client = TestClient(create_app(store.engine, RunControl(tmp_path)))
    coordinator = _bearer(store.coordinator)
    stop = client.post(f"/api/runs/{store.running.run_id}/stop", headers=coordinator)
    start = client.post("/api/runs", json={"like": store.finished_run}, headers=coordinator)
    assert (stop.status_code, start.status_code) == (409, 409)
    assert stop.json()["detail"] == (
        f"run {store.running.run_id} is a simulation: it runs inside its own command only"
    )
    missing = client.post("/api/runs/999/stop", headers=coordinator)
    assert (missing.status_code, missing.json()["detail"]) == (404, "no run 999")


def test_a_removed_token_is_refused_from_the_next_request(client, store):
    from fedrad.server.dashboard.tokens import Role, add_token, remove_token

    token = add_token(store.engine, "leaving", Role.viewer)
    assert client.get("/api/overview", headers=_bearer(token)).status_code == 200
    assert remove_token(store.engine, "leaving")
    assert client.get("/api/overview", headers=_bearer(token)).status_code == 401
