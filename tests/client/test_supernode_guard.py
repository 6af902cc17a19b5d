"""A ClientApp process that dies after starting its task but before reading its message
does not leave the site's SuperNode waiting for ever: the message gets Flower's own
"ClientApp stopped responding" reply, as a message already read does."""

from __future__ import annotations

from datetime import timedelta

from flwr.app import Message, RecordDict
from flwr.common import now
from flwr.supercore.constant import TaskType
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supernode.nodestate.in_memory_nodestate import CLIENT_APP_CRASHED_ERROR, InMemoryNodeState
from flwr.supernode.start_client_internal import _insert_message

from fedrad.client.supernode_guard import answer_unread_messages

RUN_ID = 7


def _state_with_a_started_task(state_class: type) -> tuple[InMemoryNodeState, Message]:
    """A SuperNode's state holding one message of a run whose app process started its task
    (claimed it, pulled its inputs) and then stopped: no heartbeat, the message unread."""
    store = ObjectStoreFactory().store()
    state = state_class(store)
    message = Message(RecordDict(), dst_node_id=1, message_type="query")
    message.metadata.__dict__["_run_id"] = RUN_ID
    _insert_message(message, state, store)
    task_id = state.create_task(TaskType.CLIENT_APP, RUN_ID)
    assert state.claim_task(task_id) is not None and state.activate_task(task_id)
    state.task_token_store[task_id].active_until = now() - timedelta(seconds=1)
    return state, message


def _replies(state: InMemoryNodeState) -> list[Message]:
    return list(state.get_messages_legacy(is_reply=True))  # what the SuperNode waits for


def test_flowers_own_state_leaves_an_unread_message_of_an_expired_task_unanswered():
    state, _ = _state_with_a_started_task(InMemoryNodeState)
    assert _replies(state) == []


def test_an_unread_message_of_an_expired_task_gets_flowers_crash_reply():
    class GuardedState(InMemoryNodeState):
        pass

    assert answer_unread_messages(GuardedState)
    state, message = _state_with_a_started_task(GuardedState)
    [reply] = _replies(state)
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert reply.error.code == CLIENT_APP_CRASHED_ERROR.code
    assert _replies(state) == []  # answered once


def test_a_node_state_of_another_shape_is_left_alone():
    class Other:
        def _on_task_tokens_expired(self, tasks):
            pass

    own = Other._on_task_tokens_expired
    assert not answer_unread_messages(Other)
    assert Other._on_task_tokens_expired is own
