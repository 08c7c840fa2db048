"""The live state of one active run, owned by the engine while the run is not terminal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.types import Obj
from gateway.wire import Message, Run, Step


class StopReason(StrEnum):
    CANCEL = "cancel"
    EXPIRE = "expire"
    SHUTDOWN = "shutdown"


@dataclass(eq=False)
class RunHandle:
    run: Run
    # The project of the run's thread ("" while the server is open).
    project: str = ""
    # The API key that made the run ("" while open, or for a run adopted from another process).
    key: str = ""
    # The task generating the run's next segment; None while queued-and-not-spawned or waiting.
    task: asyncio.Task[None] | None = None
    started: bool = False
    stop_reason: StopReason | None = None
    # Token usage summed over the run's segments so far.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # What is open right now: the step being written, and the message of a message step.
    step: Step | None = None
    message: Message | None = None
    # Text fragments written so far into the open message.
    fragments: list[str] = field(default_factory=list)
    # Usage of the segment that produced the open tool_calls step, set on it when it completes.
    step_usage: tuple[int, int] = (0, 0)
    # The files of the run's file_search results, by their citation number.
    sources: list[str] = field(default_factory=list)
    # The files code_interpreter calls of the run wrote: /mnt/data path -> file id.
    sandbox_files: dict[str, str] = field(default_factory=dict)
    # The images code_interpreter calls of the run showed (file ids), for the answer to hold.
    images: list[str] = field(default_factory=list)
    # The open message's citations so far, and how much text came before the last fragment
    # with the few characters before it that a citation's start may be in.
    annotations: list[Obj] = field(default_factory=list)
    text_length: int = 0
    text_tail: str = ""
    # The run's history as the engine just wrote it, for its first segment to use instead of
    # reading it back (a new thread's messages; a new run's steps, none); None: read it.
    known_messages: list[Obj] | None = None
    known_steps: list[Obj] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        run_id: str = self.run["id"]
        return run_id

    @property
    def thread_id(self) -> str:
        thread_id: str = self.run["thread_id"]
        return thread_id
