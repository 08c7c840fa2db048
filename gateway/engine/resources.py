"""Tool resources and attachments: what assistants, threads and messages hand to the tools.

- `tool_resources.file_search.vector_store_ids` must name stores of the project; the
  `vector_stores` helper (on create) makes the store from its files and is echoed as its id;
  `code_interpreter.file_ids` must name files of the project.
- A message's `attachments` add their files to the thread: with `file_search`, to the thread's
  vector store (made on the fly when the thread has none, expiring 7 days after it was last
  active, as OpenAI does); with `code_interpreter`, to the thread's code_interpreter files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway import objects
from gateway.engine.vector_stores import VectorStores, file_key
from gateway.errors import InvalidRequestError
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj

# A store made for a thread's attachments expires this long after its last activity.
THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": 7}
# OpenAI's limit of code_interpreter files of a thread or assistant.
MAX_CODE_FILES = 20


class Resources:
    def __init__(self, store: RunStore, vector_stores: VectorStores) -> None:
        self.store = store
        self.vector_stores = vector_stores

    async def prepare(
        self, requested: Mapping[str, Any] | None, *, project: str, param: str = "tool_resources"
    ) -> Obj | None:
        """Check the tool resources of a create or modify, and make the helper's store."""
        if not requested:
            return None
        resources: Obj = {k: dict(v) if v else v for k, v in requested.items()}
        code = resources.get("code_interpreter") or {}
        for i, file_id in enumerate(code.get("file_ids") or ()):
            await self._check_file(file_id, project, f"{param}.code_interpreter.file_ids[{i}]")
        search = resources.get("file_search") or {}
        for i, store_id in enumerate(search.get("vector_store_ids") or ()):
            if await self.store.get(Kind.VECTOR_STORE, store_id, project=project) is None:
                raise InvalidRequestError(
                    f"No vector store found with id '{store_id}'.",
                    param=f"{param}.file_search.vector_store_ids[{i}]",
                )
        helpers = search.pop("vector_stores", None)
        if helpers:
            (helper,) = helpers
            for i, file_id in enumerate(helper.get("file_ids") or ()):
                where = f"{param}.file_search.vector_stores[0].file_ids[{i}]"
                await self._check_file(file_id, project, where)
            made = await self.vector_stores.create(
                project=project,
                file_ids=helper.get("file_ids") or (),
                chunking_strategy=helper.get("chunking_strategy"),
                metadata=helper.get("metadata"),
            )
            search["vector_store_ids"] = [made["id"]]
        return resources

    async def check_attachments(
        self, messages: Sequence[Mapping[str, Any]], *, project: str, param: str
    ) -> None:
        """Every attached file must be a file of the project (400 naming it)."""
        for m, message in enumerate(messages):
            for a, attachment in enumerate(message.get("attachments") or ()):
                where = f"{param}[{m}].attachments[{a}].file_id"
                await self._check_file(attachment["file_id"], project, where)

    async def attach(
        self, thread_id: str, messages: Sequence[Mapping[str, Any]], *, project: str
    ) -> None:
        """Give an existing thread's tools the files its new messages attach."""
        searched, code = _attached(messages)
        if code:
            await self._add_code_files(thread_id, code)
        if searched:
            await self._add_searched(
                await self._thread_store(thread_id, project), searched, project
            )

    async def attach_to_new(
        self, thread: Obj, messages: Sequence[Mapping[str, Any]], *, project: str
    ) -> None:
        """The same for a thread about to be created: its tool_resources (the object is
        changed) name the store of its attachments, made now with their files."""
        searched, code = _attached(messages)
        resources = dict(thread.get("tool_resources") or {})
        if code:
            held = list((resources.get("code_interpreter") or {}).get("file_ids") or ())
            held += [f for f in code if f not in held]
            resources["code_interpreter"] = {"file_ids": held[-MAX_CODE_FILES:]}
        if searched:
            store_ids = _store_ids(thread)
            if not store_ids:
                made = await self.vector_stores.create(
                    project=project,
                    name=f"{thread['id']} attachments",
                    expires_after=THREAD_STORE_EXPIRY,
                )
                store_ids = [made["id"]]
                resources["file_search"] = {"vector_store_ids": store_ids}
            await self._add_searched(store_ids[0], searched, project)
        if code or searched:
            thread["tool_resources"] = objects.tool_resources(resources)

    async def _add_searched(self, store_id: str, file_ids: Sequence[str], project: str) -> None:
        for file_id in file_ids:
            if await self.store.get(Kind.VECTOR_STORE_FILE, file_key(store_id, file_id)):
                continue
            await self.vector_stores.add_file(store_id, file_id, project=project)

    async def _thread_store(self, thread_id: str, project: str) -> str:
        """The thread's vector store, made now if it has none."""
        thread = await self.store.get(Kind.THREAD, thread_id)
        ids = _store_ids(thread)
        if ids:
            return ids[0]
        made = await self.vector_stores.create(
            project=project, name=f"{thread_id} attachments", expires_after=THREAD_STORE_EXPIRY
        )

        async def write(tx: StoreTx) -> str:
            current = await tx.get(Kind.THREAD, thread_id)
            assert current is not None
            existing = _store_ids(current)
            if existing:  # another request made one meanwhile: keep theirs
                return existing[0]
            resources = dict(current.get("tool_resources") or {})
            resources["file_search"] = {"vector_store_ids": [made["id"]]}
            current["tool_resources"] = objects.tool_resources(resources)
            await tx.save(Kind.THREAD, current)
            return str(made["id"])

        return await self.store.write(write)

    async def _add_code_files(self, thread_id: str, file_ids: Sequence[str]) -> None:
        async def write(tx: StoreTx) -> None:
            current = await tx.get(Kind.THREAD, thread_id)
            assert current is not None
            resources = dict(current.get("tool_resources") or {})
            held = list((resources.get("code_interpreter") or {}).get("file_ids") or ())
            held += [f for f in dict.fromkeys(file_ids) if f not in held]
            resources["code_interpreter"] = {"file_ids": held[-MAX_CODE_FILES:]}
            current["tool_resources"] = objects.tool_resources(resources)
            await tx.save(Kind.THREAD, current)

        await self.store.write(write)

    async def _check_file(self, file_id: str, project: str, param: str) -> None:
        if await self.store.get(Kind.FILE, file_id, project=project) is None:
            raise InvalidRequestError(f"No such File object: {file_id}", param=param)


def _attached(messages: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The files the messages attach for file_search, and for code_interpreter."""
    searched: list[str] = []
    code: list[str] = []
    for message in messages:
        for attachment in message.get("attachments") or ():
            kinds = {tool["type"] for tool in attachment.get("tools") or ()}
            if "file_search" in kinds and attachment["file_id"] not in searched:
                searched.append(attachment["file_id"])
            if "code_interpreter" in kinds and attachment["file_id"] not in code:
                code.append(attachment["file_id"])
    return searched, code


def _store_ids(thread: Mapping[str, Any] | None) -> list[str]:
    resources = (thread or {}).get("tool_resources") or {}
    return list((resources.get("file_search") or {}).get("vector_store_ids") or ())
