"""One segment of a run: from queued to the next requires_action or terminal status.

The runner asks the model backend for the next answer and turns its chunks into steps, messages
and stream events: a message_creation step when text arrives, a tool_calls step when tool calls
arrive, and the ending the finish reason calls for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from gateway import events, objects
from gateway.engine.handle import RunHandle
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.prompt import PromptTooLongError, build_request
from gateway.metrics import Metrics
from gateway.models.base import Finish, ModelBackend, ModelBackendError, TextChunk, ToolCallChunk
from gateway.objects import RunStatus, StepStatus, usage
from gateway.store import Kind, RunStore
from gateway.types import Obj


class Runner:
    def __init__(
        self,
        store: RunStore,
        lifecycle: Lifecycle,
        backend_for: Callable[[str], ModelBackend],
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.lc = lifecycle
        self.backend_for = backend_for
        self.metrics = metrics

    async def run_segment(self, handle: RunHandle) -> None:
        # The status is saved while the history is read: three round trips to the store's
        # threads in the time of one (the reads do not depend on the write).
        _, messages, steps = await asyncio.gather(
            self.lc.run_status(handle, RunStatus.IN_PROGRESS),
            self.store.list_all(Kind.MESSAGE, thread_id=handle.thread_id),
            self.store.list_all(Kind.STEP, run_id=handle.id),
        )
        run = handle.run
        backend = self.backend_for(run["model"])
        try:
            request = build_request(run, messages, steps, backend)
        except PromptTooLongError:
            run["incomplete_details"] = {"reason": "max_prompt_tokens"}
            await self.lc.end(
                handle, RunStatus.INCOMPLETE, step_status=StepStatus.COMPLETED, message_reason=None
            )
            return

        calls: list[Obj] = []
        positions: dict[int, int] = {}
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
                    await self._text(handle, chunk.text)
                elif isinstance(chunk, ToolCallChunk):
                    await self._tool_call(handle, chunk, calls, positions)
                else:
                    finish = chunk
        if finish is None:
            raise ModelBackendError("The model stream ended without a finish reason.")
        handle.prompt_tokens += finish.prompt_tokens
        handle.completion_tokens += finish.completion_tokens
        segment_usage = usage(finish.prompt_tokens, finish.completion_tokens)

        if calls:
            await self._requires_action(
                handle, calls, (finish.prompt_tokens, finish.completion_tokens)
            )
            return
        if handle.message is None:
            await self._open_message(handle)
        content = [objects.text_part("".join(handle.fragments))] if handle.fragments else []
        if finish.reason == "stop":
            await self.lc.end(
                handle,
                RunStatus.COMPLETED,
                step_status=StepStatus.COMPLETED,
                message_reason=None,
                content=content,
                step_fields={"usage": segment_usage},
            )
            return
        reason = "max_tokens" if finish.reason == "length" else finish.reason
        run["incomplete_details"] = {
            "reason": "max_completion_tokens" if finish.reason == "length" else finish.reason
        }
        await self.lc.end(
            handle,
            RunStatus.INCOMPLETE,
            step_status=StepStatus.COMPLETED,
            message_reason=reason,
            content=content,
            step_fields={"usage": segment_usage},
        )

    # --- text -----------------------------------------------------------------------------

    async def _open_message(self, handle: RunHandle) -> None:
        message = objects.assistant_message(handle.run)
        step = objects.step(
            handle.run,
            {"type": "message_creation", "message_creation": {"message_id": message["id"]}},
        )
        handle.step, handle.message, handle.fragments = step, message, []
        await self.lc.save(handle, (Kind.STEP, step), (Kind.MESSAGE, message))
        await self.lc.publish(
            handle,
            events.snapshot(events.STEP_CREATED, step),
            events.snapshot(events.STEP_IN_PROGRESS, step),
            events.snapshot(events.MESSAGE_CREATED, message),
            events.snapshot(events.MESSAGE_IN_PROGRESS, message),
        )

    async def _text(self, handle: RunHandle, text: str) -> None:
        if not text:
            return
        if handle.message is None:
            await self._open_message(handle)
        assert handle.message is not None
        first = not handle.fragments
        handle.fragments.append(text)
        # Straight to the log: the one event a token makes, on the hottest path there is.
        await self.lc.log.publish(
            handle.id, events.message_text_delta(handle.message["id"], 0, text, first=first)
        )

    # --- tool calls -----------------------------------------------------------------------

    async def _open_tool_step(self, handle: RunHandle) -> None:
        if handle.message is not None:
            # Text came before the calls: finish that message step before the tool step opens.
            content = [objects.text_part("".join(handle.fragments))]
            self.lc.close_message(handle.message, content, None)
            assert handle.step is not None
            self.lc.set_step_status(handle.step, StepStatus.COMPLETED, usage=usage(0, 0))
            await self.lc.save(handle, (Kind.MESSAGE, handle.message), (Kind.STEP, handle.step))
            await self.lc.publish(
                handle, events.message_status(handle.message), events.step_status(handle.step)
            )
            handle.message, handle.fragments = None, []
        step = objects.step(handle.run, {"type": "tool_calls", "tool_calls": []})
        handle.step = step
        await self.lc.save(handle, (Kind.STEP, step))
        await self.lc.publish(
            handle,
            events.snapshot(events.STEP_CREATED, step),
            events.snapshot(events.STEP_IN_PROGRESS, step),
        )

    async def _tool_call(
        self,
        handle: RunHandle,
        chunk: ToolCallChunk,
        calls: list[Obj],
        positions: dict[int, int],
    ) -> None:
        if handle.step is None or handle.step["type"] != "tool_calls":
            await self._open_tool_step(handle)
        assert handle.step is not None
        step_id = handle.step["id"]
        index = positions.get(chunk.index)
        if index is None:
            if chunk.id is None or chunk.name is None:
                raise ModelBackendError("The model sent a tool call without an id and a name.")
            index = positions[chunk.index] = len(calls)
            calls.append(
                {
                    "id": chunk.id,
                    "type": "function",
                    "function": {"name": chunk.name, "arguments": "", "output": None},
                }
            )
            await self.lc.publish(
                handle,
                events.tool_call_delta(
                    step_id,
                    {
                        "index": index,
                        "id": chunk.id,
                        "type": "function",
                        "function": {"name": chunk.name, "arguments": "", "output": None},
                    },
                ),
            )
        if chunk.arguments:
            calls[index]["function"]["arguments"] += chunk.arguments
            await self.lc.publish(
                handle,
                events.tool_call_delta(
                    step_id,
                    {
                        "index": index,
                        "type": "function",
                        "function": {"arguments": chunk.arguments},
                    },
                ),
            )

    async def _requires_action(
        self, handle: RunHandle, calls: list[Obj], step_usage: tuple[int, int]
    ) -> None:
        assert handle.step is not None
        handle.step["step_details"]["tool_calls"] = calls
        handle.step_usage = step_usage
        run = handle.run
        self.lc.set_run_status(run, RunStatus.REQUIRES_ACTION)
        run["required_action"] = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": c["function"]["arguments"],
                        },
                    }
                    for c in calls
                ]
            },
        }
        await self.lc.end_segment(
            handle, [(Kind.STEP, handle.step), (Kind.RUN, run)], lambda: [events.run_status(run)]
        )
