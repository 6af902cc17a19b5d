"""Shared fixtures: an in-process Flower grid whose sites can misbehave; run stores on SQLite
and on the machine's PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from fedrad.simulations.in_process import InProcessGrid

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# the PostgreSQL these machines run (trust auth); each test gets a schema of its own
POSTGRESQL = os.environ.get(
    "FEDRAD_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test?connect_timeout=5"
)


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower 1.42 needs a run id to build instruction messages outside a runtime."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


class FaultyGrid(InProcessGrid):
    """An in-process grid whose sites can misbehave, and which keeps every reply.

    `drop_after` makes a node stop answering after that many messages (a site that
    drops out); `tamper` may rewrite a node's reply (a malformed update); `sent` holds
    every reply so tests can inspect what left each site.
    """

    def __init__(self, client_app: ClientApp, node_configs: list[dict]):
        super().__init__(client_app, node_configs)
        self.drop_after: dict[int, int] = {}
        self.tamper: Callable[[int, Message], Message] | None = None
        self.sent: list[tuple[int, str, Message]] = []
        self._received: dict[int, int] = {}

    def deliver(self, message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        self._received[node] = self._received.get(node, 0) + 1
        if self._received[node] > self.drop_after.get(node, np.inf):
            return None
        reply = super().deliver(message)
        if self.tamper is not None:
            reply = self.tamper(node, reply)
        self.sent.append((node, message.metadata.message_type, reply))
        return reply


def site_grid(tables: dict[str, Path], study, grid_class: type = FaultyGrid) -> FaultyGrid:
    """A faulty in-process grid whose node i is the site of the i-th feature table."""
    from fedrad.client.app import TableLoader, make_client_app

    def locate(context):
        return str(context.node_config["site-name"]), Path(context.node_config["path"])

    client = make_client_app(TableLoader(locate, lambda _: study))
    return grid_class(client, [{"site-name": n, "path": str(p)} for n, p in tables.items()])


def run_study(grid: FaultyGrid, study) -> dict:
    """The study's results over `grid`, as the ServerApp would run it."""
    from fedrad.server.federation import GridTransport
    from fedrad.server.study import StudyProtocol

    transport = GridTransport(grid, timeout_s=60)
    return StudyProtocol(transport, study, len(grid.contexts), log=lambda _: None).run()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store's URL: a SQLite file, or a new schema of the local PostgreSQL
    (dropped afterwards, so parallel runs never meet). Skips, saying why, with no server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"fedrad_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRESQL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        where = f"{admin.url.host}:{admin.url.port}, database {admin.url.database}"
        pytest.skip(f"no PostgreSQL reachable at {where} ({exc.orig})")
    yield f"{POSTGRESQL}&options=-csearch_path%3D{schema}"
    with admin.begin() as connection:  # a test that left a transaction open fails, not hangs
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def store(store_url):
    """The store at `store_url`, migrated to head; its connections closed afterwards."""
    from fedrad.server.store.engine import open_store

    engine = open_store(store_url)
    yield engine
    engine.dispose()
