"""A test-only ClientApp for the process tests: FedRad's own, except that the site named
by the run config's `faulty-site` answers messages of type `faulty-message` with every
number of its reply made NaN (a site whose software or memory went wrong).

It travels in the submitted app (the FAB), which Flower unpacks at each SuperNode and
puts first on the ClientApp process's path; nothing of it is in FedRad itself.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, Context, Message
from flwr.clientapp import ClientApp

from fedrad.client.app import make_client_app
from fedrad.common.messages import MESSAGE_TYPES

honest = make_client_app()
app = ClientApp()


def corrupting(message: Message, context: Context) -> Message:
    reply = honest(message, context)
    faulty = context.node_config.get("site-name") == context.run_config.get("faulty-site")
    if faulty and message.metadata.message_type == context.run_config.get("faulty-message"):
        arrays = reply.content["arrays"]
        for name in list(arrays):
            value = arrays[name].numpy()
            if value.dtype.kind == "f":
                arrays[name] = Array(np.full_like(value, np.nan))
    return reply


for message_type in MESSAGE_TYPES.values():
    category, _, action = message_type.partition(".")
    register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}[category]
    (register(action) if action else register())(corrupting)
