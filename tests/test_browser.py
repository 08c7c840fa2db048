"""The browser playground and plain EventSource clients, in Debian's Chromium under Playwright.

Playwright drives /usr/bin/chromium (it downloads no browser of its own). The page loads from the
gateway itself, so its EventSource is same-origin; to cut a stream server-side without stopping
the run, a test puts a loopback TCP proxy between the browser and the gateway.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import need
from tests.http import call, ok
from tests.keys import make_key
from tests.server import LiveServer
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LONG_MESSAGE = " ".join(f"word{i}" for i in range(1, 61))
CATS = "Cats sleep for sixteen hours a day. They purr when they are content.\n"
TIMEOUT_MS = 15_000


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, shared by this module's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]  # reported by need() below
    need(sync_playwright is not None, "playwright is not installed: pip install -e '.[dev]'")
    need(CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM}")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page; an uncaught error in the page fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == []


def png_facts(path: Path) -> tuple[int, int, int]:
    """A PNG's width, height and how many distinct byte values its pixel data holds."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width = height = 0
    pixels = b""
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            pixels += body
        position += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


class CuttingProxy:
    """A loopback TCP proxy in front of the gateway: it notes every request head that passes and
    can cut, server-side, the connections that carried a run's event stream."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[tuple[str, dict[str, str]]] = []  # request line, lower-cased headers
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._streams: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._spawn(self._accept)

    @property
    def event_requests(self) -> list[dict[str, str]]:
        with self._lock:
            return [headers for line, headers in self.requests if "/events?" in line]

    def cut_streams(self) -> int:
        """Close both ends of every connection that carried an event stream; how many."""
        with self._lock:
            streams, self._streams = self._streams, []
        for pair in streams:
            for sock in pair:
                _shutdown(sock)
        return len(streams)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        for thread in self._threads:
            thread.join(5)
        for sock in [*sockets, self._listener]:
            sock.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        buffer, body_left = b"", 0
        try:
            while chunk := source.recv(65536):
                if requests:
                    buffer, body_left = self._note(source, sink, buffer + chunk, body_left)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            _shutdown(sink)
            _shutdown(source)

    def _note(
        self, client: socket.socket, upstream: socket.socket, buffer: bytes, body_left: int
    ) -> tuple[bytes, int]:
        """Record the request heads in `buffer`; what is left of it and of the current body."""
        while True:
            skipped = min(body_left, len(buffer))
            buffer, body_left = buffer[skipped:], body_left - skipped
            if body_left or b"\r\n\r\n" not in buffer:
                return buffer, body_left
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            line, *fields = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (f.split(":", 1) for f in fields if ":" in f)
            }
            body_left = int(headers.get("content-length", "0"))
            with self._lock:
                self.requests.append((line, headers))
                if "/events?" in line:
                    self._streams.append((client, upstream))


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut, or never connected
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[CuttingProxy]:
    """A cutting proxy in front of the live gateway."""
    cutting = CuttingProxy(server.port)
    yield cutting
    cutting.close()


def expect_no_errors(page: Page) -> None:
    """No error box shows anywhere on the page."""
    from playwright.sync_api import expect

    expect(page.locator(".error:visible")).to_have_count(0)


def create_assistant_in_page(page: Page, tools: str = "", name: str = "") -> None:
    page.fill("#assistant-model", "gpt-4o")
    page.fill("#assistant-name", name)
    page.fill("#assistant-tools", tools)
    page.click("#create-assistant")
    from playwright.sync_api import expect

    expect(page.locator("#assistant-select")).to_have_value(re.compile(r"^asst_"))


# --- the route -------------------------------------------------------------------------------


def test_playground_page_and_assets_are_served(server: LiveServer) -> None:
    """GET /playground serves the page as HTML, and its script and style sheet beside it."""
    html = call(server, "GET", "/playground")
    assert html.status == 200
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert b'src="/playground/playground.js"' in html.raw
    assert "default-src 'none'" in html.headers["content-security-policy"]
    script = call(server, "GET", "/playground/playground.js")
    assert (script.status, script.headers["content-type"]) == (
        200,
        "text/javascript; charset=utf-8",
    )
    style = call(server, "GET", "/playground/playground.css")
    assert (style.status, style.headers["content-type"]) == (200, "text/css; charset=utf-8")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/playground",
        "/v1/playground/playground.js",
        "/playground/missing.js",
        "/playground/..%2Fapp.py",
        "/playground/%2E%2E%2Fapi%2Fplayground.py",
        "/playground/../app.py",
        "/playground/__init__.py",
    ],
)
def test_playground_serves_nothing_else(server: LiveServer, path: str) -> None:
    """Only the static folder's own files are served, at the root, and no path leaves it."""
    answer = call(server, "GET", path)
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "unknown_url"


# --- the playground in a browser ----------------------------------------------------------


def test_playground_answers_a_tool_call(server: LiveServer, page: Page, tmp_path: Path) -> None:
    """The playground creates an assistant with a function tool, takes the call's output in the
    page and shows the model's final reply."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page, tools="get_weather")
    page.fill("#message", 'Weather in Paris? {"city": "Paris"}')
    page.click("#send")

    output = page.get_by_test_id("tool-output-input")
    expect(output).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_have_text("requires_action")
    expect(page.get_by_test_id("tool-call-name")).to_have_text("get_weather")
    expect(page.get_by_test_id("tool-call-arguments")).to_have_text('{"city":"Paris"}')
    output.fill('{"temp_c": 21}')
    page.click("#submit-tool-outputs")

    expect(page.get_by_test_id("assistant-text")).to_have_text(
        'Tool results: get_weather returned {"temp_c": 21}.'
    )
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.get_by_test_id("tool-call-output")).to_have_text('→ {"temp_c": 21}')
    expect(page.locator("#drop")).to_be_disabled()  # `done` closed the EventSource
    expect_no_errors(page)
    expect(page.get_by_test_id("user-text")).to_have_text('Weather in Paris? {"city": "Paris"}')

    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height, distinct = png_facts(shot)
    assert width > 0 and height > 0
    assert distinct > 16, "the screenshot is blank"


def test_playground_searches_an_attached_file_and_cites_it(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    """An assistant created with file_search checked and a file attached in the page: the file
    is uploaded and attached to the message, the run's search shows the file with a folded
    excerpt, and the answer's citation is a badge naming the file, listed under Sources."""
    from playwright.sync_api import expect

    notes = tmp_path / "cats.md"
    notes.write_text(CATS)
    page.goto(f"{server.root_url}/playground")
    page.check("#assistant-file-search")
    create_assistant_in_page(page)
    assistant_id = page.locator("#assistant-select").input_value()
    assistant = ok(server, "GET", f"/v1/assistants/{assistant_id}")
    assert [tool["type"] for tool in assistant["tools"]] == ["file_search"]

    page.set_input_files("#attach-files", notes)
    expect(page.get_by_test_id("attached-file")).to_contain_text("cats.md")
    page.fill("#message", "How long do cats sleep?")
    page.click("#send")

    search = page.get_by_test_id("file-search")
    expect(search).to_contain_text("Searched files")
    expect(search.get_by_test_id("search-result")).to_contain_text("cats.md")
    excerpt = search.get_by_test_id("search-excerpt")
    expect(excerpt).to_be_attached()  # the text, fetched with include[] once the step completed
    expect(excerpt).to_be_hidden()  # folded until asked for
    search.get_by_text("Excerpt").click()
    expect(excerpt).to_contain_text("Cats sleep for sixteen hours a day.")

    answer = page.get_by_test_id("assistant-text")
    expect(answer).to_have_text('According to cats.md: "Cats sleep for sixteen hours a day." [1]')
    expect(answer.get_by_test_id("citation")).to_have_attribute("title", "cats.md")
    expect(page.get_by_test_id("sources")).to_have_text("Sources: cats.md")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.get_by_test_id("message-files")).to_have_text("Attached: cats.md")
    expect(page.get_by_test_id("attached-file")).to_have_count(0)  # sent with that message
    expect_no_errors(page)
    expect(page.get_by_test_id("attach-error")).to_be_hidden()

    thread_id = page.get_by_test_id("thread-id").text_content()
    question = ok(server, "GET", f"/v1/threads/{thread_id}/messages?order=asc")["data"][0]
    (attachment,) = question["attachments"]
    assert attachment["tools"] == [{"type": "file_search"}]
    uploaded = ok(server, "GET", f"/v1/files/{attachment['file_id']}")
    assert (uploaded["filename"], uploaded["purpose"]) == ("cats.md", "assistants")

    shot = tmp_path / "file-search.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height, distinct = png_facts(shot)
    assert width > 0 and height > 0
    assert distinct > 16, "the screenshot is blank"


@pytest.mark.settings(max_file_bytes=16)
def test_playground_shows_a_failed_upload_beside_the_file_input(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    """An upload the gateway refuses is reported beside the file input and nothing is sent;
    without the file the message goes."""
    from playwright.sync_api import expect

    notes = tmp_path / "cats.md"
    notes.write_text(CATS)
    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page)
    page.set_input_files("#attach-files", notes)
    page.fill("#message", "hello")
    page.click("#send")

    expect(page.get_by_test_id("attach-error")).to_contain_text("Uploading cats.md")
    expect(page.get_by_test_id("attach-error")).to_contain_text("file_too_large")
    expect(page.get_by_test_id("attached-status")).to_have_text("failed")
    expect(page.get_by_role("alert")).to_have_count(1)  # that one, nothing elsewhere
    expect(page.get_by_test_id("thread-id")).to_have_text("none yet")

    page.get_by_role("button", name="Remove cats.md").click()
    expect(page.get_by_test_id("attached-file")).to_have_count(0)
    expect(page.get_by_test_id("attach-error")).to_be_hidden()
    page.click("#send")
    expect(page.get_by_test_id("assistant-text")).to_have_text("You said: hello")


def test_playground_shows_api_errors(server: LiveServer, page: Page) -> None:
    """An API refusal reaches the page as a visible alert with the gateway's message."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    page.fill("#assistant-tools", '[{"type": "retrieval"}]')
    page.click("#create-assistant")
    error = page.get_by_test_id("create-error")  # in the form that was sent
    expect(error).to_contain_text("Invalid value for 'tools[0].type'")
    expect(page.get_by_role("alert")).to_have_count(1)


def test_playground_with_api_keys(server: LiveServer, page: Page) -> None:
    """Once the gateway has keys the playground says a key is missing; with one entered it
    sees only that key's project and streams runs (the EventSource through a stream token)."""
    from playwright.sync_api import expect

    # Off this thread: Playwright's own event loop runs on it, and the CLI starts one.
    with ThreadPoolExecutor(1) as other:
        alpha, beta = other.map(make_key, [server.settings.database] * 2, ["alpha", "beta"])
    # The server rereads its keys every second: once it has, a call without a key is refused.
    eventually(
        lambda: call(server, "GET", "/v1/assistants").status == 401,
        what="the server to see its new keys",
    )
    ok(server, "POST", "/v1/assistants", {"model": "local", "name": "beta's"}, key=beta)

    page.goto(f"{server.root_url}/playground")
    expect(page.get_by_test_id("key-error")).to_contain_text("missing_api_key")  # beside the key
    expect(page.get_by_role("alert")).to_have_count(1)
    page.fill("#api-key", alpha)
    page.click("#use-key")
    expect_no_errors(page)
    expect(page.locator("#assistant-select option")).to_have_text(["No assistants yet: create one"])
    create_assistant_in_page(page)
    page.fill("#message", "hello from alpha")
    page.click("#send")
    expect(page.get_by_test_id("assistant-text")).to_have_text("You said: hello from alpha")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect_no_errors(page)
    assert alpha not in page.content()  # not echoed into the page


@pytest.mark.settings(local_model_delay_ms=30)
def test_playground_drop_connection_keeps_the_text_exact(server: LiveServer, page: Page) -> None:
    """Dropping the playground's stream mid-run and resuming with ?after= loses and repeats
    nothing."""
    from playwright.sync_api import expect

    event_urls: list[str] = []
    page.on("request", lambda r: event_urls.append(r.url) if "/events?" in r.url else None)
    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page)
    page.fill("#message", LONG_MESSAGE)
    page.click("#send")

    text = page.get_by_test_id("assistant-text")
    expect(text).to_contain_text("word8 ")
    before = text.text_content() or ""
    page.click("#drop")
    assert len(before) < len(f"You said: {LONG_MESSAGE}"), "the run ended before the drop"

    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(text).to_have_text(f"You said: {LONG_MESSAGE}")
    expect(page.get_by_test_id("reconnected")).to_have_text("Reconnected (1)")
    assert len(event_urls) == 2
    assert re.search(r"&after=\d+$", event_urls[1]), event_urls[1]


@pytest.mark.settings(local_model_delay_ms=30)
def test_playground_recovers_from_a_server_side_drop(
    server: LiveServer, proxy: CuttingProxy, page: Page
) -> None:
    """The playground's EventSource, cut server-side mid-run, reconnects by itself, says so, and
    its text stays exact."""
    from playwright.sync_api import expect

    page.goto(f"http://127.0.0.1:{proxy.port}/playground")
    create_assistant_in_page(page)
    page.fill("#message", LONG_MESSAGE)
    page.click("#send")

    text = page.get_by_test_id("assistant-text")
    expect(text).to_contain_text("word8 ")
    before = text.text_content() or ""
    assert proxy.cut_streams() == 1
    assert len(before) < len(f"You said: {LONG_MESSAGE}"), "the run ended before the cut"

    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(text).to_have_text(f"You said: {LONG_MESSAGE}")
    expect(page.get_by_test_id("reconnected")).to_have_text("Reconnected (1)")
    expect_no_errors(page)
    first, second = proxy.event_requests
    assert "last-event-id" not in first
    assert int(second["last-event-id"]) > 8


@pytest.mark.settings(local_model_delay_ms=30)
def test_plain_eventsource_survives_a_server_side_drop(
    server: LiveServer, proxy: CuttingProxy, page: Page
) -> None:
    """A plain `new EventSource(url)` whose connection is cut mid-run reconnects by itself with
    Last-Event-ID and ends with the full text, once."""
    page.goto(f"http://127.0.0.1:{proxy.port}/playground")  # same origin as the stream
    assistant = ok(server, "POST", "/v1/assistants", {"model": "gpt-4o"})
    thread = {"messages": [{"role": "user", "content": LONG_MESSAGE}]}
    run = ok(
        server, "POST", "/v1/threads/runs", {"assistant_id": assistant["id"], "thread": thread}
    )
    token = ok(server, "POST", f"/v1/threads/{run['thread_id']}/runs/{run['id']}/stream_token")
    page.evaluate(
        """(url) => {
            window.collected = ""; window.deltas = 0; window.opens = 0;
            window.failures = 0; window.done = false;
            const es = new EventSource(url);
            es.onopen = () => { window.opens += 1; };
            es.addEventListener("thread.message.delta", (e) => {
                window.deltas += 1;
                for (const part of JSON.parse(e.data).delta.content) {
                    if (part.type === "text") window.collected += part.text.value;
                }
            });
            es.addEventListener("error", (e) => {
                if (!(e instanceof MessageEvent)) window.failures += 1;  // a connection error
            });
            es.addEventListener("done", () => { es.close(); window.done = true; });
        }""",
        token["url"],
    )
    page.wait_for_function("() => window.deltas >= 8")
    before = page.evaluate("window.collected")
    assert proxy.cut_streams() == 1
    assert len(before) < len(f"You said: {LONG_MESSAGE}"), "the run ended before the cut"

    page.wait_for_function("() => window.done")
    assert page.evaluate("window.collected") == f"You said: {LONG_MESSAGE}"
    assert page.evaluate("[window.opens, window.failures]") == [2, 1]
    first, second = proxy.event_requests
    assert "last-event-id" not in first
    assert int(second["last-event-id"]) > 8  # past at least the 8 deltas seen before the cut


@pytest.mark.settings(local_model_delay_ms=100)
def test_playground_cancels_a_run_and_keeps_the_newest_message_in_view(
    server: LiveServer, page: Page
) -> None:
    """Cancel run stops a streaming run (the page shows it cancelled), and on a narrow screen
    the page follows the conversation down to the newest message."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 360, "height": 640})
    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page)
    cancel = page.get_by_test_id("cancel-run")
    expect(cancel).to_be_disabled()
    page.fill("#message", LONG_MESSAGE)
    page.click("#send")
    expect(page.get_by_test_id("assistant-text")).to_contain_text("word3 ")
    expect(page.get_by_test_id("assistant-bubble").last).to_be_in_viewport()
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(page.get_by_test_id("run-status")).to_have_text("cancelled")
    expect(cancel).to_be_disabled()
    expect_no_errors(page)
    text = page.get_by_test_id("assistant-text").text_content() or ""
    assert len(text) < len(f"You said: {LONG_MESSAGE}")


def send_in_page(page: Page, text: str) -> None:
    """Send `text` and wait for the run to complete."""
    from playwright.sync_api import expect

    page.fill("#message", text)
    page.click("#send")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")


def test_playground_lists_its_threads_and_reopens_one(server: LiveServer, page: Page) -> None:
    """Each thread started in the page is listed (newest first, titled by its first message) and
    survives a reload; opening one draws its messages under the assistant's name, and the
    conversation goes on in that thread."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    expect(page.get_by_test_id("threads-empty")).to_be_visible()
    create_assistant_in_page(page, name="Echo bot")
    send_in_page(page, "first thread, first question")
    first = page.get_by_test_id("thread-id").text_content()
    page.click("#new-thread")
    send_in_page(page, "second thread")
    second = page.get_by_test_id("thread-id").text_content()

    page.reload()
    threads = page.get_by_test_id("thread")
    expect(threads.get_by_test_id("thread-open")).to_have_text(
        ["second thread", "first thread, first question"]
    )
    expect(page.get_by_test_id("threads-empty")).to_be_hidden()
    expect(page.get_by_test_id("conversation")).to_be_empty()
    threads.nth(1).get_by_test_id("thread-open").click()

    expect(page.get_by_test_id("thread-id")).to_have_text(first or "")
    expect(page.get_by_test_id("user-text")).to_have_text(["first thread, first question"])
    expect(page.get_by_test_id("assistant-text")).to_have_text(
        ["You said: first thread, first question"]
    )
    expect(page.get_by_test_id("assistant-bubble").get_by_test_id("who")).to_have_text("Echo bot")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(threads.nth(1)).to_have_attribute("aria-current", "true")

    send_in_page(page, "and once more")
    expect(page.get_by_test_id("assistant-text")).to_have_text(
        ["You said: first thread, first question", "You said: and once more"]
    )
    expect(threads.get_by_test_id("thread-open")).to_have_text(  # the thread used last comes first
        ["first thread, first question", "second thread"]
    )
    stored = ok(server, "GET", f"/v1/threads/{first}/messages?order=asc")["data"]
    assert [m["content"][0]["text"]["value"] for m in stored] == [
        "first thread, first question",
        "You said: first thread, first question",
        "and once more",
        "You said: and once more",
    ]
    assert len(ok(server, "GET", f"/v1/threads/{second}/messages")["data"]) == 2
    expect_no_errors(page)


@pytest.mark.settings(local_model_delay_ms=30)
def test_playground_reopens_a_thread_whose_run_is_still_going(
    server: LiveServer, page: Page
) -> None:
    """A page reloaded mid-run reopens the thread and follows the run to its end, text exact."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page)
    page.fill("#message", LONG_MESSAGE)
    page.click("#send")
    expect(page.get_by_test_id("assistant-text")).to_contain_text("word3 ")
    page.reload()
    page.get_by_test_id("thread-open").click()
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.get_by_test_id("user-text")).to_have_text([LONG_MESSAGE])
    expect(page.get_by_test_id("assistant-text")).to_have_text([f"You said: {LONG_MESSAGE}"])
    expect_no_errors(page)


def test_playground_forgets_a_thread_that_is_gone(server: LiveServer, page: Page) -> None:
    """Opening a listed thread that was deleted says so beside the list and drops it; Forget
    drops one without opening it."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page)
    send_in_page(page, "soon deleted")
    deleted = page.get_by_test_id("thread-id").text_content()
    page.click("#new-thread")
    send_in_page(page, "soon forgotten")
    ok(server, "DELETE", f"/v1/threads/{deleted}")

    page.get_by_role("button", name="soon deleted", exact=True).click()
    error = page.get_by_test_id("threads-error")
    expect(error).to_contain_text(f"Thread {deleted} is not there")
    expect(page.get_by_role("alert")).to_have_count(1)
    expect(page.get_by_test_id("thread-open")).to_have_text(["soon forgotten"])
    page.get_by_role("button", name="Forget soon forgotten").click()
    expect(page.get_by_test_id("thread")).to_have_count(0)
    expect(page.get_by_test_id("threads-empty")).to_be_visible()
    expect(error).to_be_hidden()


def test_playground_names_unnamed_assistants(server: LiveServer, page: Page) -> None:
    """An assistant without a name is listed by its model, creation time and the end of its id,
    not by a bare id; a named one by its name and model."""
    from playwright.sync_api import expect

    unnamed = ok(server, "POST", "/v1/assistants", {"model": "gpt-4o-mini"})
    ok(server, "POST", "/v1/assistants", {"model": "local", "name": "Helper"})
    page.goto(f"{server.root_url}/playground")
    options = page.locator("#assistant-select option")
    expect(options).to_have_count(2)
    labels = options.all_text_contents()
    assert "Helper · local" in labels
    (label,) = [text for text in labels if text != "Helper · local"]
    assert re.fullmatch(r"Unnamed · gpt-4o-mini · created .+ · …" + unnamed["id"][-6:], label)
    assert unnamed["id"] not in label


def test_playground_shows_each_error_beside_its_cause(server: LiveServer, page: Page) -> None:
    """A send without an assistant is refused in the composer, and tool outputs the gateway
    refuses (the run was cancelled meanwhile) in the tool outputs form: one alert at a time."""
    from playwright.sync_api import expect

    page.goto(f"{server.root_url}/playground")
    page.fill("#message", "hello")
    page.click("#send")
    expect(page.get_by_test_id("composer-error")).to_have_text("Pick or create an assistant first.")
    expect(page.get_by_role("alert")).to_have_count(1)

    create_assistant_in_page(page, tools="get_weather")
    page.fill("#message", 'Weather in Paris? {"city": "Paris"}')
    page.click("#send")
    expect(page.get_by_test_id("composer-error")).to_be_hidden()
    expect(page.get_by_test_id("run-status")).to_have_text("requires_action")
    thread_id = page.get_by_test_id("thread-id").text_content()
    run_id = page.get_by_test_id("run-id").text_content()
    ok(server, "POST", f"/v1/threads/{thread_id}/runs/{run_id}/cancel")
    page.get_by_test_id("tool-output-input").fill("21")
    page.click("#submit-tool-outputs")
    error = page.get_by_test_id("tool-outputs-error")
    expect(error).to_contain_text("submit_tool_outputs: HTTP 400")
    expect(page.get_by_role("alert")).to_have_count(1)


@pytest.mark.parametrize("width", [360, 768, 1280])
def test_playground_fits_the_screen(server: LiveServer, page: Page, width: int) -> None:
    """From a phone to a desktop the page never scrolls sideways, with long ids, names, tool
    arguments and unbroken words on it; a screenshot at each width goes to $GATEWAY_SCREENSHOTS
    when set (the README's pictures: docs/screenshots)."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page, tools="get_weather", name="Weather desk")
    send_in_page(page, "Hello! Which tools can you use?")
    page.fill("#message", 'Weather in Paris? {"city": "Paris", "unit": "celsius", "days": 3}')
    page.click("#send")
    page.get_by_test_id("tool-output-input").fill('{"temp_c": 21, "sky": "clear"}')
    page.click("#submit-tool-outputs")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    page.click("#new-thread")
    send_in_page(page, "x" * 120)
    page.get_by_role("button", name="Hello! Which tools can you use?", exact=True).click()
    expect(page.get_by_test_id("assistant-bubble")).to_have_count(2)
    expect(page.get_by_test_id("tool-call-name")).to_have_text("get_weather")  # the last run's
    page.fill("#message", "What's the weather like in Paris today?")
    page.evaluate("window.scrollTo(0, 0)")

    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    wide = page.evaluate(
        """() => {
            const edge = document.documentElement.clientWidth + 0.5;
            return [...document.querySelectorAll("body *")]
                .filter((e) => e.getBoundingClientRect().right > edge)
                .map((e) => e.tagName + "#" + e.id + "." + e.className);
        }"""
    )
    assert wide == [], wide
    expect_no_errors(page)
    folder = os.environ.get("GATEWAY_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"playground-{width}.png"), full_page=True)


@pytest.mark.settings(local_model_delay_ms=30)
def test_playground_follows_the_newest_message_unless_the_reader_scrolled_up(
    server: LiveServer, page: Page
) -> None:
    """On a phone the reply to answered tool outputs comes into view (the outputs form sat below
    the conversation); a reader who scrolled up to read is left where they are."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{server.root_url}/playground")
    create_assistant_in_page(page, tools="get_weather")
    page.fill("#message", 'Weather in Paris? {"city": "Paris", "unit": "celsius", "days": 3}')
    page.click("#send")
    page.get_by_test_id("tool-output-input").fill(
        '{"temp_c": 21, "sky": "clear", "wind": "light from the west", "humidity": 40}'
    )
    page.click("#submit-tool-outputs")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.get_by_test_id("assistant-bubble").last).to_be_in_viewport(ratio=1)

    page.fill("#message", LONG_MESSAGE)
    page.click("#send")
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("word3 ")
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    assert page.evaluate("window.scrollY") == 0
    expect(page.get_by_test_id("assistant-bubble").last).not_to_be_in_viewport()
