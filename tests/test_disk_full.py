"""A full disk under a live gateway: its SQLite file sits on a small tmpfs that the test fills
while a run streams. Creates answer 503 store_unavailable (reads go on), the streaming run
pauses instead of failing or getting stuck, and once space is freed it completes with every
event logged; the database passes its integrity check and service is back."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.beta.threads import TextContentBlock

from tests.conftest import need
from tests.http import call
from tests.server import LiveServer
from tests.sse_client import is_event, parse
from tests.waiting import eventually

WORDS = 150  # at 20 ms a token, about 3 s of streaming


def can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs to fill needs root"
    if shutil.which("mount") is None:
        return "`mount` is not installed"
    return None


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; returns it (delete it to free the disk)."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    return filler


def test_a_full_disk_is_a_503_the_run_pauses_and_service_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reason = can_mount()
    need(reason is None, reason or "")
    caplog.set_level(logging.WARNING, logger="gateway.retrying")
    with small_disk(tmp_path / "disk") as disk:
        server = LiveServer(disk / "gateway.db", local_model_delay_ms=20).start()
        try:
            run_through_a_full_disk(server, disk, caplog)
        finally:
            server.stop()


def run_through_a_full_disk(
    server: LiveServer, disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create()
    text = " ".join(f"w{i}" for i in range(WORDS))
    client.beta.threads.messages.create(thread.id, role="user", content=text)

    names: list[str] = []
    first_delta = threading.Event()
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            with client.beta.threads.runs.stream(
                thread_id=thread.id, assistant_id=assistant.id
            ) as stream:
                for event in stream:
                    names.append(event.event)
                    if event.event == "thread.message.delta":
                        first_delta.set()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
            first_delta.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert first_delta.wait(10)

    filler = fill(disk)
    try:
        answer = call(server, "POST", "/v1/assistants", {"model": "local", "name": "refused"})
        assert answer.status == 503, answer
        assert answer.error()["code"] == "store_unavailable"
        assert int(answer.headers["retry-after"]) >= 1
        assert call(server, "GET", f"/v1/assistants/{assistant.id}").status == 200
        # The run reaches its end while the disk is full: it waits to save it (the write
        # that ends it is refused and retried, which the log says), it does not fail and it
        # is not forgotten; its stream stays open.
        run = client.beta.threads.runs.list(thread_id=thread.id).data[0]
        eventually(
            lambda: any(
                r.getMessage().startswith(f"ending run {run.id} in ")
                and " failed (" in r.getMessage()
                for r in caplog.records
                if r.name == "gateway.retrying"
            ),
            timeout=WORDS * 0.02 + 10,
            what="the run's ending to be refused by the full disk, and retried",
        )
        assert reader.is_alive(), names[-3:]
        assert "thread.run.completed" not in names
        run = client.beta.threads.runs.list(thread_id=thread.id).data[0]
        assert run.status == "in_progress"
    finally:
        filler.unlink()

    reader.join(15)
    assert not reader.is_alive() and not failure, failure
    assert names[-1] == "thread.run.completed"
    run = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert run.status == "completed"
    reply = client.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert reply.role == "assistant" and reply.status == "completed"
    [part] = reply.content
    assert isinstance(part, TextContentBlock) and part.text.value.split()[-1] == f"w{WORDS - 1}"

    # Every event of the run was logged despite the outage: a replay from the start has
    # them all, numbered one by one.
    frames = replay(server, thread.id, run.id)
    assert [n for _, n in frames if n != "done"] == names
    assert [i for i, _ in frames if i is not None] == list(range(1, len(names) + 1))

    made = client.beta.assistants.create(model="local", name="after")
    assert made.name == "after"
    with sqlite3.connect(server.settings.database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    client.close()


def replay(server: LiveServer, thread_id: str, run_id: str) -> list[tuple[int | None, str]]:
    """The run's logged events from the start, as (id, event)."""
    answer = call(server, "GET", f"/v1/threads/{thread_id}/runs/{run_id}/events")
    return [(f.id, f.event) for f in parse(answer.raw) if is_event(f)]


pytestmark = pytest.mark.timeout(90)
