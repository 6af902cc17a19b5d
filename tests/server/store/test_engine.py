"""Opening a store migrates it: a new one is built as the schema declares, an old one is
upgraded to head keeping its rows, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from fedrad.server.store.engine import migrate, open_store, store_url
from fedrad.server.store.schema import Base


def test_a_new_store_holds_exactly_the_tables_the_schema_declares(store):
    with store.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
        revision = context.get_current_revision()
    assert differences == []
    assert revision == "0004"


def test_a_store_at_revision_1_with_runs_upgrades_to_head_keeping_them(store_url):
    old = open_store(store_url, revision="0001")
    assert "started_by" not in {c["name"] for c in inspect(old).get_columns("runs")}
    with old.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO studies (id, name, study_hash, extraction_hash, config, created_at)"
                " VALUES (1, 'glioma', 'abc', 'def', '{}', '2026-01-02 03:04:05+00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (id, study_id, mode, status, reason, started_at)"
                " VALUES (7, 1, 'deployment', 'finished', '', '2026-01-02 03:04:05+00')"
            )
        )
    migrate(old)
    with old.connect() as connection:
        rows = connection.execute(text("SELECT id, status, started_by FROM runs")).all()
        revision = MigrationContext.configure(connection).get_current_revision()
    old.dispose()
    assert rows == [(7, "finished", None)]
    assert revision == "0004"


def test_reopening_a_store_leaves_it_as_it_was(tmp_path):
    url = store_url(tmp_path / "state")
    open_store(url).dispose()
    engine = open_store(url)
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    assert (tmp_path / "state" / "runs.db").is_file()
    assert revision == "0004"


def test_the_default_store_is_runs_db_in_the_folder(tmp_path):
    assert create_engine(store_url(tmp_path)).url.database == str(tmp_path / "runs.db")
