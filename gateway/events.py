"""The OpenAI Assistants stream events: their names, spelled as OpenAI spells them, and builders.

An `Event` pairs a name with its data (a wire object snapshot or a delta), encoded once when
the event is built.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from gateway.types import AnyObj, Obj

THREAD_CREATED: Final = "thread.created"
RUN_CREATED: Final = "thread.run.created"
RUN_QUEUED: Final = "thread.run.queued"
RUN_IN_PROGRESS: Final = "thread.run.in_progress"
RUN_REQUIRES_ACTION: Final = "thread.run.requires_action"
RUN_COMPLETED: Final = "thread.run.completed"
RUN_INCOMPLETE: Final = "thread.run.incomplete"
RUN_FAILED: Final = "thread.run.failed"
RUN_CANCELLING: Final = "thread.run.cancelling"
RUN_CANCELLED: Final = "thread.run.cancelled"
RUN_EXPIRED: Final = "thread.run.expired"
STEP_CREATED: Final = "thread.run.step.created"
STEP_IN_PROGRESS: Final = "thread.run.step.in_progress"
STEP_DELTA: Final = "thread.run.step.delta"
STEP_COMPLETED: Final = "thread.run.step.completed"
STEP_FAILED: Final = "thread.run.step.failed"
STEP_CANCELLED: Final = "thread.run.step.cancelled"
STEP_EXPIRED: Final = "thread.run.step.expired"
MESSAGE_CREATED: Final = "thread.message.created"
MESSAGE_IN_PROGRESS: Final = "thread.message.in_progress"
MESSAGE_DELTA: Final = "thread.message.delta"
MESSAGE_COMPLETED: Final = "thread.message.completed"
MESSAGE_INCOMPLETE: Final = "thread.message.incomplete"
ERROR: Final = "error"
DONE: Final = "done"
# Not an OpenAI event and never sent: marks, on the bus, where a stream of the run ends (after
# requires_action or a terminal status, and after any error event that follows it).
STREAM_END: Final = "gateway.stream_end"

ALL_EVENTS: Final = frozenset(
    {
        THREAD_CREATED, RUN_CREATED, RUN_QUEUED, RUN_IN_PROGRESS, RUN_REQUIRES_ACTION,
        RUN_COMPLETED, RUN_INCOMPLETE, RUN_FAILED, RUN_CANCELLING, RUN_CANCELLED, RUN_EXPIRED,
        STEP_CREATED, STEP_IN_PROGRESS, STEP_DELTA, STEP_COMPLETED, STEP_FAILED, STEP_CANCELLED,
        STEP_EXPIRED, MESSAGE_CREATED, MESSAGE_IN_PROGRESS, MESSAGE_DELTA, MESSAGE_COMPLETED,
        MESSAGE_INCOMPLETE, ERROR, DONE,
    }
)  # fmt: skip

# Status a run/step/message has -> the event announcing it.
RUN_STATUS_EVENTS: Final = {
    "queued": RUN_QUEUED,
    "in_progress": RUN_IN_PROGRESS,
    "requires_action": RUN_REQUIRES_ACTION,
    "cancelling": RUN_CANCELLING,
    "cancelled": RUN_CANCELLED,
    "failed": RUN_FAILED,
    "completed": RUN_COMPLETED,
    "incomplete": RUN_INCOMPLETE,
    "expired": RUN_EXPIRED,
}
STEP_STATUS_EVENTS: Final = {
    "in_progress": STEP_IN_PROGRESS,
    "cancelled": STEP_CANCELLED,
    "failed": STEP_FAILED,
    "completed": STEP_COMPLETED,
    "expired": STEP_EXPIRED,
}
MESSAGE_STATUS_EVENTS: Final = {
    "in_progress": MESSAGE_IN_PROGRESS,
    "completed": MESSAGE_COMPLETED,
    "incomplete": MESSAGE_INCOMPLETE,
}


# A run's events are numbered 1, 2, 3...; a process that takes a run over after a crash goes on
# from the last stored number plus EPOCH_GAP (see engine/eventlog.py), so that a number a client
# saw but the store never received can never name a newer event.
EPOCH_GAP: Final = 1_000_000


def follows(last: int, following: int) -> bool:
    """Whether event `following` comes right after event `last` of the same run: numbers go
    one by one, except the jump to a new epoch when another process takes the run over."""
    return following == last + 1 or following - last >= EPOCH_GAP // 2


class Event:
    """One stream event, encoded when it is made: `body` is its SSE block without the `id:`
    line (`event: <name>`, one `data:` line of compact JSON, a blank line).

    Encoding at once is also what keeps a snapshot a snapshot: a later change to the engine's
    live object cannot alter bytes already made, so nothing needs copying. The event log numbers
    an event (`numbered`), which gives it `seq` (the SSE `id:`) and `frame`, its whole block;
    many subscribers then share the one encoding."""

    __slots__ = ("body", "frame", "name", "seq")

    def __init__(self, name: str, body: bytes, seq: int | None = None) -> None:
        self.name = name
        self.body = body
        self.seq = seq
        self.frame = body if seq is None or not body else b"id: %d\n" % seq + body

    @classmethod
    def of(cls, name: str, data: AnyObj) -> Event:
        return cls(name, b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def numbered(self, seq: int) -> Event:
        return Event(self.name, self.body, seq)

    @property
    def data(self) -> Obj | None:
        """The JSON payload, decoded again from the bytes (None for done and the marker)."""
        if self.name in (DONE, STREAM_END):
            return None
        start = self.body.index(b"\ndata: ") + 7
        decoded: Obj = orjson.loads(self.body[start:-2])
        return decoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.name, self.seq, self.body) == (other.name, other.seq, other.body)

    def __hash__(self) -> int:
        return hash((self.name, self.seq, self.body))

    def __repr__(self) -> str:
        return f"Event({self.name!r}, seq={self.seq!r})"


def snapshot(name: str, obj: AnyObj) -> Event:
    return Event.of(name, obj)


def run_status(run: AnyObj) -> Event:
    return snapshot(RUN_STATUS_EVENTS[run["status"]], run)


def step_status(step: AnyObj) -> Event:
    return snapshot(STEP_STATUS_EVENTS[step["status"]], step)


def message_status(message: AnyObj) -> Event:
    return snapshot(MESSAGE_STATUS_EVENTS[message["status"]], message)


# The bytes of a text delta around its message id and fragment: the hottest event, made
# without building its five nested dicts (test_events checks it equals the dict's encoding).
_TEXT_DELTA_HEAD = b'event: thread.message.delta\ndata: {"id":"'
_TEXT_DELTA_MIDDLE = (
    b'","object":"thread.message.delta","delta":{"content":[{"index":%d,"type":"text","text":'
    b'{"value":'
)
_TEXT_DELTA_TAIL = b"}}]}}\n\n"


def message_text_delta(message_id: str, index: int, fragment: str, *, first: bool) -> Event:
    if not first:
        return Event(
            MESSAGE_DELTA,
            _TEXT_DELTA_HEAD
            + message_id.encode()  # our own ids: ASCII letters, digits and `_`
            + _TEXT_DELTA_MIDDLE % index
            + orjson.dumps(fragment)
            + _TEXT_DELTA_TAIL,
        )
    text: dict[str, Any] = {"value": fragment, "annotations": []}
    return Event.of(
        MESSAGE_DELTA,
        {
            "id": message_id,
            "object": "thread.message.delta",
            "delta": {"content": [{"index": index, "type": "text", "text": text}]},
        },
    )


def message_parts_delta(message_id: str, parts: list[tuple[int, dict[str, Any]]]) -> Event:
    """A message delta adding whole content parts (images), each at its index."""
    content = [{"index": index, **part} for index, part in parts]
    return Event.of(
        MESSAGE_DELTA,
        {"id": message_id, "object": "thread.message.delta", "delta": {"content": content}},
    )


def message_annotations_delta(
    message_id: str, index: int, annotations: list[dict[str, Any]]
) -> Event:
    """Annotations (citations) of a text part, in a delta of their own with no new text."""
    text: dict[str, Any] = {"value": "", "annotations": annotations}
    return Event.of(
        MESSAGE_DELTA,
        {
            "id": message_id,
            "object": "thread.message.delta",
            "delta": {"content": [{"index": index, "type": "text", "text": text}]},
        },
    )


def tool_call_delta(step_id: str, call: dict[str, Any]) -> Event:
    return Event.of(
        STEP_DELTA,
        {
            "id": step_id,
            "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}},
        },
    )


def error(
    message: str,
    *,
    type_: str = "server_error",
    code: str | None = "server_error",
    run: AnyObj | None = None,
) -> Event:
    """An `error` event the SDK both parses as ErrorObject and raises on (sdk-notes 5);
    `run`, when given, travels with it (the run as it is now)."""
    inner = {"message": message, "type": type_, "param": None, "code": code}
    data: Obj = {**inner, "error": dict(inner)}
    if run is not None:
        data["run"] = run
    return Event.of(ERROR, data)


DONE_EVENT: Final = Event(DONE, b"event: done\ndata: [DONE]\n\n")
DONE_FRAME: Final = DONE_EVENT.frame
STREAM_END_EVENT: Final = Event(STREAM_END, b"")


def retry_frame(milliseconds: int) -> bytes:
    """Tells an EventSource how soon to reconnect after a drop."""
    return b"retry: %d\n\n" % milliseconds
