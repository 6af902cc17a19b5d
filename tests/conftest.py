"""Shared fixtures: an in-process Flower grid and small synthetic feature tables."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower 1.42 needs a run id to build instruction messages outside a runtime."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


class InProcessGrid(Grid):
    """Routes messages straight into a ClientApp, one Context per node: no Ray, no SuperLink.

    `drop_after` makes a node stop answering after that many messages (a site that
    drops out); `tamper` may rewrite a node's reply (a malformed update). Every
    reply is kept in `sent` so tests can inspect what left each site.
    """

    def __init__(self, client_app: ClientApp, node_configs: list[dict]):
        self.client_app = client_app
        self.contexts = {
            node_id: Context(
                run_id=1, node_id=node_id, node_config=config, state=RecordDict(), run_config={}
            )
            for node_id, config in enumerate(node_configs, start=101)
        }
        self.drop_after: dict[int, int] = {}
        self.tamper: Callable[[int, Message], Message] | None = None
        self.sent: list[tuple[int, str, Message]] = []
        self._received: dict[int, int] = {}

    def set_run(self, run) -> None:  # pragma: no cover - not used in-process
        raise NotImplementedError

    @property
    def run(self):  # pragma: no cover - not used in-process
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages):  # pragma: no cover - not used in-process
        raise NotImplementedError

    def pull_messages(self, message_ids):  # pragma: no cover - not used in-process
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None) -> list[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self._received[node] = self._received.get(node, 0) + 1
            if self._received[node] > self.drop_after.get(node, np.inf):
                continue
            incoming = copy.deepcopy(message)
            try:
                reply = self.client_app(incoming, self.contexts[node])
            except Exception as exc:  # the runtime turns a handler exception into an error reply
                reply = Message(Error(code=0, reason=str(exc)), reply_to=incoming)
            if self.tamper is not None:
                reply = self.tamper(node, reply)
            self.sent.append((node, message.metadata.message_type, reply))
            replies.append(reply)
        return replies
