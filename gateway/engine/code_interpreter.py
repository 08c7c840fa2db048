"""The code_interpreter tool as the gateway runs it: the model's code run in its thread's
sandboxed session (gateway/sandbox), with the thread's and the assistant's
`code_interpreter.file_ids` in /mnt/data; what it printed becomes a `logs` output, each image
it showed a file (purpose assistants_output) and an `image` output, and each file it wrote to
/mnt/data a file the answer can link to."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from gateway.engine.files import Files
from gateway.engine.handle import RunHandle
from gateway.engine.tools import ToolUnavailableError, code_input
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.sandbox.kernel import SandboxError
from gateway.sandbox.sessions import FileSource, Sessions, SessionsBusyError
from gateway.store import Kind, RunStore
from gateway.types import Obj

OUTPUT_PURPOSE = "assistants_output"

# What the model is told when a limit stopped its code.
_LIMITS = {
    "time": "the code ran past the time limit of a call and was stopped",
    "ended": "the sandbox session ended (a memory, CPU or process limit, or a crash); "
    "its variables are gone, the files given to it are put back at the next call",
    "output": "the output was cut at the size limit",
}


class CodeInterpreterTool:
    def __init__(
        self, store: RunStore, files: Files, sessions: Sessions, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.files = files
        self.sessions = sessions
        self.metrics = metrics

    async def call(self, handle: RunHandle, arguments: str) -> Obj:
        code = code_input(arguments)
        sources = await self._inputs(handle)
        started = time.monotonic()
        try:
            outcome = await self.sessions.call(handle.thread_id, code, sources)
        except SessionsBusyError as exc:
            self._count("busy")
            return {"input": code, "outputs": [{"type": "logs", "logs": f"Error: {exc}."}]}
        except SandboxError as exc:
            raise ToolUnavailableError(f"code_interpreter could not run: {exc}") from None
        result = outcome.result
        self._count(result.limit or ("error" if result.error else "ok"))
        if self.metrics is not None:
            self.metrics.code_call_seconds.labels("cold" if outcome.cold else "warm").observe(
                time.monotonic() - started
            )
        logs = result.logs
        if result.limit in _LIMITS:
            logs += f"\n[{_LIMITS[result.limit]}]\n"
        written = []
        for data_file in outcome.files:
            file = await self._keep(handle, data_file.name, data_file.data)
            path = f"/mnt/data/{data_file.name}"
            # The answer's sandbox:/mnt/data/... links become file_path annotations of these.
            handle.sandbox_files[path] = file["id"]
            written.append(path)
        if written:
            logs += f"\n[files written: {', '.join(written)}]\n"
        outputs: list[Obj] = [{"type": "logs", "logs": logs}] if logs else []
        for number, image in enumerate(result.images, 1):
            file = await self._keep(handle, f"image-{number}.png", image)
            outputs.append({"type": "image", "image": {"file_id": file["id"]}})
            handle.images.append(file["id"])
        return {"input": code, "outputs": outputs}

    def _chunks(self, file_id: str) -> Callable[[], AsyncIterator[bytes]]:
        return lambda: self.files.chunks(file_id)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.code_calls.labels(outcome).inc()

    async def _keep(self, handle: RunHandle, name: str, data: bytes) -> Any:
        async def content() -> AsyncIterator[bytes]:
            yield data

        return await self.files.create(
            content(), project=handle.project, filename=name, purpose=OUTPUT_PURPOSE
        )

    async def _inputs(self, handle: RunHandle) -> list[FileSource]:
        """The files of the thread's and the assistant's code_interpreter.file_ids, by name
        (a later file of the same name is put as `<id>-<name>`)."""
        sources: list[FileSource] = []
        names: set[str] = set()
        for kind, object_id in (
            (Kind.THREAD, handle.thread_id),
            (Kind.ASSISTANT, handle.run["assistant_id"]),
        ):
            obj = await self.store.get(kind, object_id)
            resources: Mapping[str, Any] = (obj or {}).get("tool_resources") or {}
            for file_id in (resources.get("code_interpreter") or {}).get("file_ids") or ():
                try:
                    file = await self.files.get(file_id, project=handle.project)
                except GatewayError:
                    continue  # deleted since it was attached
                name = _safe_name(str(file["filename"])) or file_id
                if name in names:
                    name = f"{file_id}-{name}"
                names.add(name)
                sources.append((file_id, name, self._chunks(file_id)))
        return sources


def _safe_name(name: str) -> str:
    """A file name usable as one entry of /mnt/data."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
    return "" if base in ("", ".", "..") else base[:200]
