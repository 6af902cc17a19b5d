"""The JSON API: every endpoint FastAPI's OpenAPI schema documents answers a signed-in
viewer or coordinator with a status the schema lists and a body its schema accepts."""

from __future__ import annotations

import dashboard_store
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from fedrad.server.dashboard.app import create_app

store = dashboard_store.store  # the module's recorded store (a fixture)


@pytest.fixture(scope="module")
def app(store):
    return create_app(store.engine)


def _client(app, token: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def _check_against_schema(schema: dict, operation: dict, response) -> None:
    documented = operation["responses"]
    assert str(response.status_code) in documented, (response.status_code, response.text)
    content = documented[str(response.status_code)].get("content", {})
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in content, (media_type, list(content))
    body_schema = content[media_type].get("schema")
    if media_type == "application/json" and body_schema:
        Draft202012Validator({**body_schema, "components": schema["components"]}).validate(
            response.json()
        )


def test_every_documented_endpoint_answers_as_its_schema_says(app, store):
    schema = app.openapi()
    params = {"run_id": str(store.finished_run), "name": "site02", "fmt": "svg"}
    checked = []
    for path, operations in schema["paths"].items():
        figure = {"name": "newton-deviance-by-iteration"} if "/figures/" in path else {}
        url = path.format(**params | figure)
        for method, operation in operations.items():
            token = store.coordinator if method == "post" else store.viewer
            body = {"like": store.finished_run} if method == "post" else None
            response = _client(app, token).request(method, url, json=body)
            _check_against_schema(schema, operation, response)
            checked.append((method, path, response.status_code))
    assert ("get", "/api/overview", 200) in checked
    assert ("get", "/api/runs/{run_id}/metrics.csv", 200) in checked
    assert ("post", "/api/runs/{run_id}/stop", 501) in checked  # served without --state
    assert ("post", "/api/runs", 501) in checked
    assert all(status in {200, 501} for _, _, status in checked), checked


def test_the_running_run_answers_as_its_schema_says(app, store):
    schema = app.openapi()
    for path in ("/api/runs/{run_id}", "/api/runs/{run_id}/progress"):
        response = _client(app, store.viewer).get(path.format(run_id=store.running.run_id))
        _check_against_schema(schema, schema["paths"][path]["get"], response)
    progress = _client(app, store.viewer).get(f"/api/runs/{store.running.run_id}/progress")
    assert progress.json()["status"] == "running"
    assert len(progress.json()["phases"]) >= 1


def test_a_run_or_site_not_in_the_store_is_404_as_documented(app, store):
    schema = app.openapi()
    client = _client(app, store.viewer)
    for path, url in (
        ("/api/runs/{run_id}", "/api/runs/999"),
        ("/api/sites/{name}", "/api/sites/x"),
    ):
        response = client.get(url)
        assert response.status_code == 404
        _check_against_schema(schema, schema["paths"][path]["get"], response)


def test_the_overview_compares_each_sites_extraction_hash_with_the_study(app, store):
    body = _client(app, store.viewer).get("/api/overview").json()
    assert [row["site"]["name"] for row in body["sites"]] == ["site01", "site02", "site03"]
    assert all(row["extraction_hash_matches"] is True for row in body["sites"])
    assert [run["status"] for run in body["runs"]] == ["running", "finished"]


def test_a_finished_run_shows_its_results_and_privacy_and_a_running_one_none_yet(app, store):
    client = _client(app, store.viewer)
    finished = client.get(f"/api/runs/{store.finished_run}").json()
    assert finished["has_results"] and finished["privacy"].startswith("Privacy:")
    assert finished["metrics"]["federated"]["auc_ci"][0] < finished["metrics"]["federated"]["auc"]
    running = client.get(f"/api/runs/{store.running.run_id}").json()
    assert (running["has_results"], running["privacy"]) == (False, "")
    assert (finished["suppressed_cells"], running["suppressed_cells"]) == (0, 2)
    results = client.get(f"/api/runs/{store.finished_run}/results").json()
    assert results["metrics"]["federated"]["auc"] == finished["metrics"]["federated"]["auc"]


def test_the_schema_itself_is_served_behind_a_token(app, store):
    assert TestClient(app).get("/api/openapi.json").status_code == 401
    served = _client(app, store.viewer).get("/api/openapi.json").json()
    assert "/api/runs/{run_id}/metrics.csv" in served["paths"]


def test_selection_stability_counts_the_folds_that_kept_each_feature(app, store):
    run = _client(app, store.viewer).get(f"/api/runs/{store.finished_run}").json()
    folds = {fit: {f["feature"] for f in kept} for fit, kept in run["selected_features"].items()}
    final = folds.pop("final")
    for row in run["selection_stability"]:
        assert row["of_fits"] == len(folds) == 3
        assert row["kept_by"] == sum(row["feature"] in kept for kept in folds.values())
        assert row["in_final"] == (row["feature"] in final)
    assert {row["feature"] for row in run["selection_stability"]} == set().union(
        final, *folds.values()
    )


def test_each_fit_lists_the_sites_that_trained_it_and_those_left_out(app, store):
    run = _client(app, store.viewer).get(f"/api/runs/{store.finished_run}").json()
    assert [row["fit"] for row in run["fits"]] == ["fold 1", "fold 2", "fold 3"]
    for row in run["fits"]:
        assert sorted(row["training_sites"] + row["left_out"]) == ["site01", "site02", "site03"]
