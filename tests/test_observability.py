"""Health, readiness, Prometheus metrics and the overhead header, through a live gateway."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.config import GatewayConfig, UpstreamConfig
from tests.conftest import need
from tests.fake_upstream import FakeUpstream, Finish, Script, Sleep, Text
from tests.http import call
from tests.redis_server import PrivateRedis
from tests.server import LiveServer
from tests.waiting import eventually


def sample(metrics: str, name: str, labels: str = "") -> float:
    """The value of one sample of the Prometheus text, e.g. sample(m, "x_total", 'a="b"')."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", metrics, flags=re.M)
    assert match is not None, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


def test_health_and_readiness(server: LiveServer) -> None:
    """/healthz and /readyz answer 200 on a running gateway; readiness reports each part."""
    assert call(server, "GET", "/healthz").status == 200
    ready = call(server, "GET", "/readyz")
    assert ready.status == 200
    assert ready.json() == {"status": "ready", "database": "ok", "bus": "ok"}


def test_readiness_reports_a_bus_that_went_away(tmp_path: Path) -> None:
    """With Redis down, /readyz is 503 and names the bus (the database still ok); once Redis
    is back it is ready again."""
    need(PrivateRedis.missing() is None, PrivateRedis.missing() or "")
    redis_server = PrivateRedis(tmp_path).start()
    server = LiveServer(tmp_path / "gateway.db", bus=redis_server.url).start()
    try:
        assert call(server, "GET", "/readyz").json()["bus"] == "ok"
        redis_server.stop()
        ready = call(server, "GET", "/readyz")
        assert ready.status == 503
        assert ready.json() == {"status": "unavailable", "database": "ok", "bus": "unavailable"}
        redis_server.start()
        eventually(
            lambda: call(server, "GET", "/readyz").status == 200,
            interval=0.1,
            what="/readyz to answer 200 once Redis is back",
        )
    finally:
        server.stop()
        redis_server.stop()


def test_metrics_count_runs_streams_and_first_tokens(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """After a streamed run, /metrics counts its statuses, the frames sent and how it ended."""
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "one two"}])
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    metrics = call(server, "GET", "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.raw.decode()
    assert sample(text, "gateway_run_status_changes_total", 'status="completed"') == 1
    assert sample(text, "gateway_events_sent_total") == len(events)
    assert sample(text, "gateway_stream_ends_total", 'reason="done"') == 1
    assert sample(text, "gateway_time_to_first_token_seconds_count") == 1
    assert sample(text, "gateway_active_runs") == 0
    assert sample(text, "gateway_active_streams") == 0


def test_overhead_header_on_plain_calls(server: LiveServer) -> None:
    """Every response says how long the gateway itself took, in milliseconds."""
    headers = call(server, "GET", "/v1/assistants").headers
    assert 0 <= float(headers["x-gateway-overhead-ms"]) < 1000


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    with FakeUpstream() as fake:
        config = GatewayConfig(
            upstreams=(UpstreamConfig(name="fake", base_url=fake.base_url, models=("fake-*",)),)
        )
        live = LiveServer(tmp_path / "o.db", config=config).start()
        yield live, fake
        live.stop()


def test_overhead_excludes_upstream_wait(routed: tuple[LiveServer, FakeUpstream]) -> None:
    """A proxied call's overhead header leaves out the time the upstream took to answer."""
    live, fake = routed
    fake.enqueue(Script([Sleep(0.3), Text("slow"), Finish("stop")]))
    with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="fake-large", messages=[{"role": "user", "content": "x"}]
        )
    assert float(raw.headers["x-gateway-overhead-ms"]) < 150
    assert raw.parse().choices[0].message.content == "slow"


def test_the_root_leads_a_browser_to_the_playground_and_a_client_to_links(
    server: LiveServer,
) -> None:
    browser = call(server, "GET", "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status == 302 and browser.headers["location"].endswith("/playground")
    page = call(server, "GET", browser.headers["location"].removeprefix(server.root_url))
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    client = call(server, "GET", "/", headers={"Accept": "application/json"})
    assert client.status == 200
    links = client.json()["links"]
    assert links["api"] == "/v1" and links["playground"] == "/playground"
    for path in links.values():
        if path != "/v1":
            assert call(server, "GET", path).status == 200, path
