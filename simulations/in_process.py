"""A federation inside this process: no Ray, no SuperLink, the same messages.

`InProcessGrid` hands each message straight to a ClientApp, one Context per node;
`in_process_transport` runs every site's ClientApp through it. The pooled reference,
the comparison arms and the protocol tests run the very message path of a federation
this way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedrad.client.app import make_client_app
from fedrad.client.data import SiteData
from fedrad.common.config import StudyConfig
from fedrad.server.federation import GridTransport


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


def in_process_transport(sites: list[SiteData], study: StudyConfig) -> GridTransport:
    """The federation's own message path, with every site's ClientApp called in-process."""
    app = make_client_app(lambda context: (sites[int(context.node_config["site-index"])], study))
    grid = InProcessGrid(app, [{"site-index": index} for index in range(len(sites))])
    return GridTransport(grid, study.federation.round_timeout_s)
