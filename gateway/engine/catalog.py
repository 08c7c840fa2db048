"""The objects around runs: assistants, threads, messages, and the lists and reads of runs and
steps. Their rules live here (what exists, what belongs to what, how a list pages); the API
calls these and nothing below them.

The writes that touch a thread's active run (deleting a thread, adding a message, creating a
run) are the run engine's: they need its registry of active runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import cast

from gateway import objects
from gateway.bodies import AssistantBody, AssistantChanges, ThreadBody
from gateway.engine.pages import page_of
from gateway.engine.resources import Resources
from gateway.errors import not_found
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj, PageQuery
from gateway.wire import Assistant, Deleted, Page, Thread

_LABELS = {
    Kind.ASSISTANT: "assistant",
    Kind.THREAD: "thread",
    Kind.MESSAGE: "message",
    Kind.RUN: "run",
    Kind.STEP: "run step",
}


class Catalog:
    def __init__(
        self, store: RunStore, resources: Resources, *, owner_cache_size: int = 10_000
    ) -> None:
        self.store = store
        self.resources = resources
        self._owners = _Owners(store, owner_cache_size)

    # --- who owns what --------------------------------------------------------------------

    async def project_of_assistant(self, assistant_id: str) -> str | None:
        """The assistant's project; None when there is no such assistant."""
        return await self._owners.project_of(Kind.ASSISTANT, assistant_id)

    async def project_of_thread(self, thread_id: str) -> str | None:
        """The thread's project; None when there is no such thread."""
        return await self._owners.project_of(Kind.THREAD, thread_id)

    async def check_database(self) -> None:
        """Raise unless the database answers a read."""
        await self.store.list_page(Kind.ASSISTANT, PageQuery(limit=1))

    # --- assistants -----------------------------------------------------------------------

    async def create_assistant(self, fields: AssistantBody, *, project: str) -> Assistant:
        resources = await self.resources.prepare(fields.get("tool_resources"), project=project)
        assistant = objects.assistant({**fields, "tool_resources": resources})

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.ASSISTANT, assistant, project=project)

        await self.store.write(write)
        return assistant

    async def list_assistants(self, query: PageQuery, *, project: str) -> Page:
        return await self._page(Kind.ASSISTANT, query, project=project)

    async def get_assistant(self, assistant_id: str) -> Obj:
        return await self._get(Kind.ASSISTANT, assistant_id)

    async def modify_assistant(
        self, assistant_id: str, changes: AssistantChanges, *, project: str = ""
    ) -> Obj:
        """Replace the fields in `changes` (reasoning_effort is accepted but, as at OpenAI,
        neither kept nor echoed)."""
        kept = {name: value for name, value in changes.items() if name != "reasoning_effort"}
        if "tool_resources" in kept:
            kept["tool_resources"] = await self.resources.prepare(
                changes.get("tool_resources"), project=project
            )

        def change(assistant: Obj) -> None:
            assistant.update(kept)
            if "tools" in kept:
                assistant["tools"] = objects.tools(changes.get("tools"))
            if "tools" in kept or "tool_resources" in kept:
                assistant["tool_resources"] = objects.tool_resources(
                    assistant.get("tool_resources"), assistant["tools"]
                )

        return await self._modify(Kind.ASSISTANT, assistant_id, change)

    async def delete_assistant(self, assistant_id: str) -> Deleted:
        await self._delete(Kind.ASSISTANT, assistant_id)
        return objects.deleted(assistant_id, "assistant.deleted")

    # --- threads and messages -------------------------------------------------------------

    async def create_thread(self, fields: ThreadBody, *, project: str) -> Thread:
        resources = await self.resources.prepare(fields.get("tool_resources"), project=project)
        given = fields.get("messages") or []
        await self.resources.check_attachments(given, project=project, param="messages")
        thread = objects.thread({**fields, "tool_resources": resources})
        await self.resources.attach_to_new(cast(Obj, thread), given, project=project)
        messages = [objects.user_message(thread["id"], m) for m in given]

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.THREAD, thread, project=project)
            for message in messages:
                await tx.insert(Kind.MESSAGE, message)

        await self.store.write(write)
        return thread

    async def get_thread(self, thread_id: str) -> Obj:
        return await self._get(Kind.THREAD, thread_id)

    async def modify_thread(self, thread_id: str, fields: ThreadBody, *, project: str = "") -> Obj:
        if "tool_resources" in fields:
            resources = await self.resources.prepare(fields["tool_resources"], project=project)

        def apply(thread: Obj) -> None:
            if "metadata" in fields:
                thread["metadata"] = fields["metadata"] or {}
            if "tool_resources" in fields:
                thread["tool_resources"] = objects.tool_resources(resources)

        return await self._modify(Kind.THREAD, thread_id, apply)

    async def list_messages(self, thread_id: str, query: PageQuery, *, run_id: str = "") -> Page:
        await self.get_thread(thread_id)
        filters = {"thread_id": thread_id} | ({"run_id": run_id} if run_id else {})
        return await self._page(Kind.MESSAGE, query, **filters)

    async def get_message(self, thread_id: str, message_id: str) -> Obj:
        message = await self.store.get(Kind.MESSAGE, message_id)
        if message is None or message["thread_id"] != thread_id:
            await self.get_thread(thread_id)  # a missing thread is named first
            raise not_found("message", message_id)
        return message

    async def modify_message(
        self, thread_id: str, message_id: str, metadata: dict[str, str] | None
    ) -> Obj:
        await self.get_message(thread_id, message_id)

        def apply(message: Obj) -> None:
            message["metadata"] = metadata or {}

        return await self._modify(Kind.MESSAGE, message_id, apply)

    async def delete_message(self, thread_id: str, message_id: str) -> Deleted:
        await self.get_message(thread_id, message_id)
        await self._delete(Kind.MESSAGE, message_id)
        return objects.deleted(message_id, "thread.message.deleted")

    # --- runs and steps, read ---------------------------------------------------------------

    async def get_run(self, thread_id: str, run_id: str) -> Obj:
        run = await self.store.get(Kind.RUN, run_id)
        if run is None or run["thread_id"] != thread_id:
            raise not_found("run", run_id)
        return run

    async def list_runs(self, thread_id: str, query: PageQuery) -> Page:
        await self.get_thread(thread_id)
        return await self._page(Kind.RUN, query, thread_id=thread_id)

    async def list_steps(
        self, thread_id: str, run_id: str, query: PageQuery, *, with_content: bool = False
    ) -> Page:
        """The run's steps; file_search results carry their text only `with_content`."""
        await self.get_run(thread_id, run_id)
        page = await self._page(Kind.STEP, query, run_id=run_id)
        page["data"] = [objects.step_shown(s, with_content=with_content) for s in page["data"]]
        return page

    async def get_step(
        self, thread_id: str, run_id: str, step_id: str, *, with_content: bool = False
    ) -> Obj:
        await self.get_run(thread_id, run_id)
        step = await self.store.get(Kind.STEP, step_id)
        if step is None or step["run_id"] != run_id:
            raise not_found("run step", step_id)
        shown: Obj = objects.step_shown(step, with_content=with_content)
        return shown

    # --- the shapes every object shares ---------------------------------------------------

    async def _get(self, kind: Kind, object_id: str) -> Obj:
        obj = await self.store.get(kind, object_id)
        if obj is None:
            raise not_found(_LABELS[kind], object_id)
        return obj

    async def _page(self, kind: Kind, query: PageQuery, **filters: str) -> Page:
        return await page_of(self.store, kind, query, **filters)

    async def _modify(self, kind: Kind, object_id: str, apply: Callable[[Obj], None]) -> Obj:
        """Apply `apply` to the stored object in one transaction; the object as saved."""

        async def write(tx: StoreTx) -> Obj:
            obj = await tx.get(kind, object_id)
            if obj is None:
                raise not_found(_LABELS[kind], object_id)
            apply(obj)
            await tx.save(kind, obj)
            return obj

        return await self.store.write(write)

    async def _delete(self, kind: Kind, object_id: str) -> None:
        async def write(tx: StoreTx) -> bool:
            return await tx.delete(kind, object_id)

        if not await self.store.write(write):
            raise not_found(_LABELS[kind], object_id)


class _Owners:
    """The project of each assistant and thread looked up, remembered (it never changes) for
    the `limit` most recent ones."""

    def __init__(self, store: RunStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self._known: OrderedDict[tuple[Kind, str], str] = OrderedDict()

    async def project_of(self, kind: Kind, object_id: str) -> str | None:
        key = (kind, object_id)
        project = self._known.get(key)
        if project is not None:
            self._known.move_to_end(key)
            return project
        project = await self.store.project_of(kind, object_id)
        if project is not None:
            self._known[key] = project
            if len(self._known) > self.limit:
                self._known.popitem(last=False)
        return project
