"""Grids besides Flower's own: an in-process one, and a view on a subset of nodes.

`InProcessGrid` hands each message straight to a ClientApp, one Context per node,
with no Ray and no SuperLink: the pooled reference and the comparison arms run the
very message path of a federation through it. `NodeSubset` lets a Flower strategy
(which samples from every connected node) train on the training sites of one fit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


class InProcessGrid(Grid):
    """Delivers messages by calling the ClientApp directly; node ids are 1..n."""

    def __init__(self, client_app: ClientApp, node_configs: list[dict]):
        # Flower 1.42 builds instruction messages only inside a runtime that set the task
        # identity; in-process there is none, so set what the runtime would (internal API).
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.client_app = client_app
        self.contexts = {
            node_id: Context(
                run_id=1, node_id=node_id, node_config=config, state=RecordDict(), run_config={}
            )
            for node_id, config in enumerate(node_configs, start=1)
        }

    def set_run(self, run) -> None:
        raise NotImplementedError("an in-process grid has a single implicit run")

    @property
    def run(self):
        raise NotImplementedError("an in-process grid has a single implicit run")

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages):
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids):
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None) -> list[Message]:
        replies = (self.deliver(message) for message in messages)
        return [reply for reply in replies if reply is not None]

    def deliver(self, message: Message) -> Message | None:
        """The node's reply; a handler's exception becomes an error reply, as in Flower."""
        incoming = copy.deepcopy(message)  # a site must never share objects with the server
        try:
            return self.client_app(incoming, self.contexts[message.metadata.dst_node_id])
        except Exception as exc:
            return Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=incoming)


class NodeSubset(Grid):
    """A grid that shows only some nodes of another grid."""

    def __init__(self, grid: Grid, node_ids: Iterable[int]):
        self.grid = grid
        self.node_ids = list(node_ids)

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages):
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None):
        return self.grid.send_and_receive(messages, timeout=timeout)
