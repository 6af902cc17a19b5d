"""A message whose ClientApp process died before reading it still gets a reply.

Flower 1.42's SuperNode hands one message at a time to an app process and waits for its
reply before it asks the SuperLink for more. When an app process stops sending heartbeats
its task expires, and Flower answers with a "ClientApp stopped responding" error, but only
for a message the process had already read. A process killed or stopped between starting
its task and reading its message (an out-of-memory kill, a SIGSTOP) left the SuperNode
waiting for that reply for ever: the site served no later message or run until
`fedrad site join` was restarted. This gives such a message the same error reply, so the
aggregator sets the site aside for that request and the site goes on.
"""

from __future__ import annotations

from flwr.supercore.constant import TaskType
from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState


def answer_unread_messages(state_class: type = InMemoryNodeState) -> bool:
    """Make `state_class` answer an expired ClientApp task's unread message with Flower's
    own error reply; a Flower whose node state differs is left alone (returns False)."""
    expired = getattr(state_class, "_on_task_tokens_expired", None)
    if expired is None or not hasattr(state_class, "_store_error_replies"):
        return False

    def on_task_tokens_expired(self, tasks) -> None:
        runs = {task.run_id for task in tasks if task.type == TaskType.CLIENT_APP}
        with self.lock_msg_store:
            for entry in self.msg_store.values():
                metadata = entry.message.metadata
                if metadata.run_id in runs and not metadata.reply_to_message_id:
                    entry.is_retrieved = True  # Flower replies only to messages read
        expired(self, tasks)

    state_class._on_task_tokens_expired = on_task_tokens_expired
    return True
