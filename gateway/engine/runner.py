"""One segment of a run: from queued to the next requires_action or terminal status.

The runner asks the model backend for the next answer and turns its chunks into steps, messages
and stream events: a message_creation step when text arrives, a tool_calls step when tool calls
arrive, and the ending the finish reason calls for. It writes nothing itself: every change
goes through the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.engine.handle import RunHandle
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.prompt import PromptTooLongError, build_request
from gateway.engine.tools import HostedTool, ToolUnavailableError, code_input, offered
from gateway.metrics import Metrics
from gateway.models.base import (
    Finish,
    ModelBackend,
    ModelBackendError,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
)
from gateway.objects import RunStatus
from gateway.store import Kind, RunStore
from gateway.types import Obj

log = logging.getLogger("gateway.engine")

# Model calls in one segment that end in hosted tool calls, before the run fails.
MAX_HOSTED_ROUNDS = 8

HostedNames = Mapping[str, str]  # function name offered to the model -> hosted tool type


class Runner:
    def __init__(
        self,
        store: RunStore,
        lifecycle: Lifecycle,
        backend_for: Callable[[str], ModelBackend],
        metrics: Metrics,
        tools: Mapping[str, HostedTool],
    ) -> None:
        self.store = store
        self.lc = lifecycle
        self.backend_for = backend_for
        self.metrics = metrics
        self.tools = tools  # hosted tool type -> the tool

    async def run_segment(self, handle: RunHandle) -> None:
        # The status is saved while the history is read: three round trips to the store's
        # threads in the time of one (the reads do not depend on the write). What the engine
        # just wrote of the history (a new thread's messages, a new run's steps) is not read.
        _, messages, steps = await asyncio.gather(
            self.lc.run_status(handle, RunStatus.IN_PROGRESS),
            self._known(handle.known_messages, Kind.MESSAGE, thread_id=handle.thread_id),
            self._known(handle.known_steps, Kind.STEP, run_id=handle.id),
        )
        handle.known_messages = handle.known_steps = None  # later segments read the store
        backend = self.backend_for(handle.run["model"])
        _, hosted = offered(handle.run["tools"])
        for _ in range(MAX_HOSTED_ROUNDS):
            try:
                request = build_request(handle.run, messages, steps, backend)
            except PromptTooLongError:
                await self.lc.end_prompt_too_long(handle)
                return
            try:
                if not await self._answer(handle, backend, request, hosted):
                    return  # the segment ended: answered, or waiting for function outputs
            except ToolUnavailableError as exc:
                await self.lc.end_failed(handle, str(exc))
                return
            steps = await self.store.list_all(Kind.STEP, run_id=handle.id)
        await self.lc.end_failed(
            handle,
            f"The model called the gateway's tools {MAX_HOSTED_ROUNDS} times in a row "
            "without answering.",
        )

    async def _known(self, known: list[Obj] | None, kind: Kind, **filters: str) -> list[Obj]:
        return list(known) if known is not None else await self.store.list_all(kind, **filters)

    async def _answer(
        self, handle: RunHandle, backend: ModelBackend, request: ModelRequest, hosted: HostedNames
    ) -> bool:
        """One model call, written as it streams, then its hosted tool calls run. True when
        the model is to be called again with their results; False when the segment ended
        (the model answered, or the run waits for function outputs)."""
        # The model's call indexes (its numbering) -> the calls' places in the tool step.
        calls: dict[int, int] = {}
        hosted_calls: dict[int, HostedCall] = {}
        finish: Finish | None = None
        started, first = time.monotonic(), True
        # aclosing: a cancelled run closes the model stream (and its upstream connection) now,
        # not whenever the generator is garbage-collected.
        async with contextlib.aclosing(backend.stream(request)) as chunks:
            async for chunk in chunks:
                if first and not isinstance(chunk, Finish):
                    self.metrics.first_token.observe(time.monotonic() - started)
                    first = False
                if isinstance(chunk, TextChunk):
                    await self._text(handle, chunk.text, calling=bool(calls))
                elif isinstance(chunk, ToolCallChunk):
                    await self._tool_call(handle, chunk, calls, hosted, hosted_calls)
                else:
                    finish = chunk
        if finish is None:
            raise ModelBackendError("The model stream ended without a finish reason.")
        self.lc.count_tokens(handle, finish.prompt_tokens, finish.completion_tokens)
        step_usage = (finish.prompt_tokens, finish.completion_tokens)
        for call in hosted_calls.values():
            arguments = "".join(call.arguments)
            if call.type == "code_interpreter":
                # The code shows on the step (and its stream) before it runs.
                await self.lc.hosted_call_input(handle, call.index, code_input(arguments))
            details = await self.tools[call.type].call(handle, arguments)
            await self.lc.finish_hosted_call(handle, call.index, details)
        if calls and len(hosted_calls) == len(calls):
            await self.lc.complete_tool_step(handle, step_usage)
            return True
        if calls:
            # Function calls (beside any hosted ones, run above) wait for their outputs.
            await self.lc.require_action(handle, step_usage)
        elif finish.reason == "stop":
            await self.lc.end_answered(handle, step_usage)
        elif finish.reason == "length":
            incomplete = ("max_completion_tokens", "max_tokens")
            await self.lc.end_answered(handle, step_usage, incomplete)
        else:
            await self.lc.end_answered(handle, step_usage, (finish.reason, finish.reason))
        return False

    async def _text(self, handle: RunHandle, text: str, *, calling: bool) -> None:
        if not text:
            return
        if calling:
            # Text after the tool calls began: the answer of this segment is the calls (the
            # tool step stays the open step); the text is not part of any message.
            log.warning("run %s: model text after its tool calls is dropped", handle.id)
            return
        await self.lc.write_text(handle, text)

    async def _tool_call(
        self,
        handle: RunHandle,
        chunk: ToolCallChunk,
        calls: dict[int, int],
        hosted: HostedNames,
        hosted_calls: dict[int, HostedCall],
    ) -> None:
        index = calls.get(chunk.index)
        if index is None:
            if chunk.id is None or chunk.name is None:
                raise ModelBackendError("The model sent a tool call without an id and a name.")
            kind = hosted.get(chunk.name)
            if kind is None:
                index = await self.lc.start_tool_call(handle, chunk.id, chunk.name)
            else:
                index = await self.lc.start_hosted_call(handle, chunk.id, kind)
                hosted_calls[chunk.index] = HostedCall(index, kind, [])
            calls[chunk.index] = index
        if not chunk.arguments:
            return
        call = hosted_calls.get(chunk.index)
        if call is None:
            await self.lc.add_tool_arguments(handle, index, chunk.arguments)
        else:
            # A hosted call's arguments are the gateway's to read, not part of the step.
            call.arguments.append(chunk.arguments)


@dataclass(frozen=True)
class HostedCall:
    """A hosted tool call of the model: its place in the step, its tool, its arguments."""

    index: int
    type: str
    arguments: list[str]
