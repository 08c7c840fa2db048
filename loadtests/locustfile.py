"""Locust users for the gateway: streamed runs, the GET event stream and create+poll, each
reporting the run's own timings to locust as custom metrics of request type SSE or RUN.

Run it headless against a gateway on loopback (see loadtests/README.md):

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s \
        --host http://127.0.0.1:8000

Environment: LOCUST_WORDS (words per user message, default 30), LOCUST_MESSAGE (the whole
message instead, e.g. one with "[[fail]]" to exercise failures), LOCUST_MODEL (default "local"),
LOCUST_RUN_TIMEOUT (seconds one run may take end to end, default 30), LOCUST_READ_TIMEOUT
(seconds without a byte before a request fails, default 20, above the gateway's 15 s pings),
LOCUST_WAIT (seconds a user pauses between runs, default 0), OPENAI_API_KEY (the gateway's key,
sent as a Bearer token, once the gateway has keys).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import requests
from locust import HttpUser, constant, task
from locust.exception import StopUser

WORDS = int(os.environ.get("LOCUST_WORDS", "30"))
API_KEY = os.environ.get("OPENAI_API_KEY", "")
MODEL = os.environ.get("LOCUST_MODEL", "local")
RUN_TIMEOUT = float(os.environ.get("LOCUST_RUN_TIMEOUT", "30"))
READ_TIMEOUT = float(os.environ.get("LOCUST_READ_TIMEOUT", "20"))
CONNECT_TIMEOUT = 5.0
TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
POLL_INTERVAL = 0.05

# Words that name no tool, so the local model answers with text ("You said: ...") every time.
VOCABULARY = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")
MESSAGE = os.environ.get("LOCUST_MESSAGE") or " ".join(
    VOCABULARY[i % len(VOCABULARY)] for i in range(WORDS)
)

GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

ACTIVE_STATUSES = frozenset({"queued", "in_progress", "cancelling"})
TEXT_DELTA = "thread.message.delta"
RUN_EVENT_PREFIX = "thread.run."
STEP_EVENT_PREFIX = "thread.run.step."


class RunFailure(Exception):
    """A run that locust counts as failed; its repr is the cause, which names the failure row."""

    def __repr__(self) -> str:
        return str(self.args[0])


def http_cause(response: requests.Response) -> str:
    """The failure cause of a response that is not 200: its status, or why there was none."""
    if response.status_code:
        return f"http_{response.status_code}"
    error = getattr(response, "error", None)
    return "timeout" if isinstance(error, requests.Timeout) else "connection_error"


def stream_cause(error: requests.RequestException) -> str:
    """The failure cause of an error while reading a stream (requests wraps read timeouts)."""
    if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        return "timeout"
    return "connection_error"


def sse_frames(response: requests.Response, deadline: float) -> Iterator[str]:
    """The event name of each SSE frame as its bytes arrive (comments and data are skipped)."""
    buffer = b""
    name = ""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if name:
                    yield name
                name = ""
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode()
        if time.monotonic() > deadline:
            raise RunFailure("timeout")


class RunWatch:
    """Times one run's event stream from its request and reports the SSE metrics to locust."""

    def __init__(self, user: HttpUser, label: str) -> None:
        self.user = user
        self.label = label
        self.start = time.perf_counter()
        self.events = 0
        self.text_seen = False
        self.last_run_event = ""

    def fire(
        self, metric: str, length: int = 0, cause: str | None = None, value: float | None = None
    ) -> None:
        """One sample of `metric` (`value`, else ms since the request), failed given a cause."""
        self.user.environment.events.request.fire(
            request_type="SSE",
            name=f"{self.label}: {metric}",
            response_time=(time.perf_counter() - self.start) * 1000 if value is None else value,
            response_length=length,
            exception=RunFailure(cause) if cause else None,
            context={},
        )

    def consume(self, response: requests.Response) -> None:
        """Read the stream to `done`, then report the run's completion (or why it failed)."""
        if response.status_code != 200:
            self.finish(http_cause(response))
            return
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            for name in sse_frames(response, deadline):
                if name == "done":
                    self.finish(self.run_cause())
                    return
                if name == "error":
                    self.finish("error_event")
                    return
                self.on_event(name)
        except RunFailure as failure:
            self.finish(str(failure.args[0]))
            return
        except requests.RequestException as error:
            self.finish(stream_cause(error))
            return
        self.finish("no_done")

    def on_event(self, name: str) -> None:
        """Count one event and report the first event and the first text delta."""
        self.events += 1
        if self.events == 1:
            self.fire("time to first event")
        if name == TEXT_DELTA and not self.text_seen:
            self.text_seen = True
            self.fire("time to first text delta")
        if name.startswith(RUN_EVENT_PREFIX) and not name.startswith(STEP_EVENT_PREFIX):
            self.last_run_event = name

    def run_cause(self) -> str | None:
        """None when the run completed, else `run_<status>` from its last run event."""
        status = self.last_run_event.removeprefix(RUN_EVENT_PREFIX)
        return None if status == "completed" else f"run_{status or 'unknown'}"

    def finish(self, cause: str | None) -> None:
        """Report the run's completion time and, for a completed run, its number of events."""
        # The count rides as the response length too (the CSV's "Average Content Size"), but only
        # a row of its own shows it in the printed summary.
        self.fire("run completion", length=self.events, cause=cause)
        if cause is None:
            self.fire("events per run (count)", value=self.events)


class GatewayUser(HttpUser):
    """A user with its own assistant (the built-in model and a `get_weather` function tool)."""

    abstract = True
    wait_time = constant(float(os.environ.get("LOCUST_WAIT", "0")))
    assistant_id = ""

    def on_start(self) -> None:
        """Create this user's assistant once; a user that cannot, stops (its failure is counted)."""
        if API_KEY:
            self.client.headers["Authorization"] = f"Bearer {API_KEY}"
        response = self.client.post(
            "/v1/assistants",
            json={"model": MODEL, "name": "locust", "tools": [GET_WEATHER]},
            timeout=TIMEOUT,
        )
        if response.status_code != 200:
            raise StopUser()
        self.assistant_id = response.json()["id"]

    def create_thread(self) -> str | None:
        """A new thread holding one user message, or None when the request failed."""
        response = self.client.post(
            "/v1/threads",
            json={"messages": [{"role": "user", "content": MESSAGE}]},
            timeout=TIMEOUT,
        )
        return response.json()["id"] if response.status_code == 200 else None

    def create_run(self, thread_id: str) -> dict[str, Any] | None:
        """A run created without streaming, or None when the request failed."""
        response = self.client.post(
            f"/v1/threads/{thread_id}/runs",
            json={"assistant_id": self.assistant_id},
            name="/v1/threads/[id]/runs",
            timeout=TIMEOUT,
        )
        return response.json() if response.status_code == 200 else None


class StreamingRunUser(GatewayUser):
    """Creates each run with `"stream": true` and reads its SSE response to `done`."""

    weight = 3

    @task
    def streamed_run(self) -> None:
        """One thread, one streamed run."""
        thread_id = self.create_thread()
        if thread_id is None:
            return
        watch = RunWatch(self, "POST stream")
        # closing(): locust's own with-block needs catch_response, which would hide non-200s.
        with closing(
            self.client.post(
                f"/v1/threads/{thread_id}/runs",
                json={"assistant_id": self.assistant_id, "stream": True},
                name="/v1/threads/[id]/runs (stream)",
                stream=True,
                timeout=TIMEOUT,
            )
        ) as response:
            watch.consume(response)


class EventStreamUser(GatewayUser):
    """Creates each run without streaming, then reads GET .../events (replay, then live) to done."""

    weight = 1

    @task
    def watched_run(self) -> None:
        """One thread, one run, one event stream opened right after the run was created."""
        thread_id = self.create_thread()
        run = self.create_run(thread_id) if thread_id else None
        if run is None:
            return
        watch = RunWatch(self, "GET events")
        with closing(
            self.client.get(
                f"/v1/threads/{thread_id}/runs/{run['id']}/events",
                name="/v1/threads/[id]/runs/[id]/events",
                stream=True,
                timeout=TIMEOUT,
            )
        ) as response:
            watch.consume(response)


class PollingUser(GatewayUser):
    """Creates each run without streaming and polls it every 50 ms until it stops being active."""

    weight = 1

    @task
    def polled_run(self) -> None:
        """One thread, one run, polled until terminal or RUN_TIMEOUT."""
        thread_id = self.create_thread()
        if thread_id is None:
            return
        start = time.perf_counter()
        run = self.create_run(thread_id)
        cause = self.poll(run) if run else "create_failed"
        self.environment.events.request.fire(
            request_type="RUN",
            name="poll: create+poll completion",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=RunFailure(cause) if cause else None,
            context={},
        )

    def poll(self, run: dict[str, Any]) -> str | None:
        """None when the run completed, else the failure cause."""
        deadline = time.monotonic() + RUN_TIMEOUT
        url = f"/v1/threads/{run['thread_id']}/runs/{run['id']}"
        status = run["status"]
        while status in ACTIVE_STATUSES:
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(POLL_INTERVAL)  # gevent-patched: yields to the other users
            response = self.client.get(url, name="/v1/threads/[id]/runs/[id]", timeout=TIMEOUT)
            if response.status_code != 200:
                return http_cause(response)
            status = response.json()["status"]
        return None if status == "completed" else f"run_{status}"
