"""The app as a whole: FastAPI's own docs pages, which load scripts from a CDN, are off,
and every template and static file is shipped in the wheel as package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

import fedrad.server.dashboard as dashboard
from fedrad.server.dashboard.app import create_app

REPO = Path(__file__).resolve().parents[3]


def test_fastapis_cdn_backed_docs_pages_and_public_schema_are_off(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    client = TestClient(create_app(engine), follow_redirects=False)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    engine.dispose()


def test_every_template_and_static_file_is_shipped_as_package_data():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["fedrad.server.dashboard"]
    package = Path(dashboard.__file__).parent
    files = [
        path.relative_to(package).as_posix()
        for folder in ("templates", "static")
        for path in (package / folder).iterdir()
    ]
    assert "static/htmx.min.js" in files
    assert all(any(fnmatch(name, pattern) for pattern in patterns) for name in files), files
