"""Shared fixtures: an in-process Flower grid whose sites can misbehave."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from fedrad.simulations.in_process import InProcessGrid

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
