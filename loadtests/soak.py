"""Soak: an hour (by default) of mixed traffic against one gateway on loopback, sampling its
memory, open files, tasks and active runs, to show whether anything grows with the traffic.

    python loadtests/soak.py                      # 3600 s, 16 clients, results in docs/bench/
    python loadtests/soak.py --seconds 120 --out /tmp/soak

Each client has an API key of its own (four projects) and loops over the flows real apps make,
picked at random with these weights: streamed create-thread-and-run; create and poll; a tool
call answered with streamed outputs; a cancel mid-stream; resuming a finished run's stream from
its start and from the middle; an Idempotency-Key retry; lists and deleting a thread; a stream
abandoned mid-way; now and then a 20,000-token run. The gateway keeps a run's events for five
minutes after it ends (pruned every 30 s), so the database reaches its steady state within the
soak.

It writes `soak.json` (every sample and the flows' counts) and, with matplotlib, `soak.png`, and
prints the verdict: RSS is flat when the median of the last quarter is within 10% (and 10 MiB)
of the median of the second quarter. Traffic goes only to 127.0.0.1, bounded by --seconds and
--clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit.servers import PYTHON, ROOT, Fleet, Server

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FLOWS = {
    "stream": 6,
    "poll": 4,
    "tool_call": 2,
    "cancel": 2,
    "resume": 2,
    "idempotent": 1,
    "lists_and_delete": 2,
    "abandon": 1,
    "long_run": 0.2,
}
RUN_SECONDS = 120  # no flow's run waits longer than this
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


def words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


class Client:
    """One virtual user: a key, an assistant, and a loop of flows."""

    def __init__(self, http: aiohttp.ClientSession, api: str, key: str, seed: int) -> None:
        self.http, self.api = http, api
        self.headers = {"Authorization": f"Bearer {key}"}
        self.random = random.Random(seed)
        self.assistant = ""

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        async with self.http.request(
            method, self.api + path, json=body, headers={**self.headers, **headers}
        ) as response:
            answer = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {answer}")
            return answer

    async def stream(self, path: str, body: Any = None, *, stop_after: int = 0) -> list[str]:
        """The events of a streamed POST (or a GET without a body), up to `done`, or up to
        `stop_after` deltas when that is set (then the connection is dropped)."""
        method = "GET" if body is None else "POST"
        names: list[str] = []
        async with self.http.request(
            method, self.api + path, json=body, headers=self.headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            async for line in response.content:
                if line.startswith(b"event: "):
                    names.append(line[7:].strip().decode())
                    if stop_after and names.count("thread.message.delta") >= stop_after:
                        break
                    if names[-1] == "done":
                        break
        return names

    async def start(self) -> None:
        made = await self.call("POST", "/assistants", {"model": "local", "tools": [WEATHER]})
        self.assistant = made["id"]

    def thread_body(self, text: str, **extra: Any) -> dict[str, Any]:
        messages = [{"role": "user", "content": text}]
        return {"assistant_id": self.assistant, "thread": {"messages": messages}, **extra}

    async def settled(self, thread: str, run: str) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            found: dict[str, Any] = await self.call("GET", f"/threads/{thread}/runs/{run}")
            if found["status"] in TERMINAL or found["status"] == "requires_action":
                return found
            await asyncio.sleep(0.05)
        raise RuntimeError(f"run {run} did not settle within {RUN_SECONDS} s")

    # --- flows ----------------------------------------------------------------------------

    async def flow_stream(self) -> None:
        body = self.thread_body(words(self.random.randint(20, 200)), stream=True)
        names = await self.stream("/threads/runs", body)
        if names[-2:] != ["thread.run.completed", "done"]:
            raise RuntimeError(f"stream ended {names[-2:]}")

    async def flow_poll(self) -> None:
        thread = await self.call("POST", "/threads", {"messages": []})
        text = words(self.random.randint(10, 100))
        await self.call(
            "POST", f"/threads/{thread['id']}/messages", {"role": "user", "content": text}
        )
        run = await self.call(
            "POST", f"/threads/{thread['id']}/runs", {"assistant_id": self.assistant}
        )
        if (await self.settled(thread["id"], run["id"]))["status"] != "completed":
            raise RuntimeError("polled run did not complete")

    async def flow_tool_call(self) -> None:
        run = await self.call(
            "POST", "/threads/runs", self.thread_body('Weather in Paris? {"city": "Paris"}')
        )
        waiting = await self.settled(run["thread_id"], run["id"])
        calls = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
        outputs = [{"tool_call_id": c["id"], "output": "21 C"} for c in calls]
        path = f"/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs"
        names = await self.stream(path, {"tool_outputs": outputs, "stream": True})
        if names[-2:] != ["thread.run.completed", "done"]:
            raise RuntimeError(f"tool outputs stream ended {names[-2:]}")

    async def flow_cancel(self) -> None:
        run = await self.call("POST", "/threads/runs", self.thread_body(words(2000)))
        thread = run["thread_id"]
        following = asyncio.create_task(self.stream(f"/threads/{thread}/runs/{run['id']}/events"))
        await asyncio.sleep(self.random.uniform(0.1, 0.5))
        await self.call("POST", f"/threads/{thread}/runs/{run['id']}/cancel")
        names = await asyncio.wait_for(following, RUN_SECONDS)
        if names[-2:] != ["thread.run.cancelled", "done"]:
            raise RuntimeError(f"cancelled stream ended {names[-2:]}")

    async def flow_resume(self) -> None:
        run = await self.call("POST", "/threads/runs", self.thread_body(words(50)))
        await self.settled(run["thread_id"], run["id"])
        path = f"/threads/{run['thread_id']}/runs/{run['id']}/events"
        whole = await self.stream(path)
        async with self.http.get(
            self.api + path, headers={**self.headers, "Last-Event-ID": str(len(whole) // 2)}
        ) as response:
            rest = (await response.text()).count("event: ")
        if whole[-1] != "done" or not 0 < rest < len(whole):
            raise RuntimeError(f"resume: {len(whole)} events, then {rest}")

    async def flow_idempotent(self) -> None:
        key = f"soak-{self.random.getrandbits(64):x}"
        first = await self.call(
            "POST", "/threads", {"metadata": {"k": key}}, **{"Idempotency-Key": key}
        )
        again = await self.call(
            "POST", "/threads", {"metadata": {"k": key}}, **{"Idempotency-Key": key}
        )
        if first["id"] != again["id"]:
            raise RuntimeError("an idempotent retry made a second thread")
        await self.call("DELETE", f"/threads/{first['id']}")

    async def flow_lists_and_delete(self) -> None:
        run = await self.call("POST", "/threads/runs", self.thread_body(words(30)))
        thread = run["thread_id"]
        await self.settled(thread, run["id"])
        await self.call("GET", f"/threads/{thread}/messages?limit=100")
        await self.call("GET", f"/threads/{thread}/runs")
        await self.call("GET", f"/threads/{thread}/runs/{run['id']}/steps")
        await self.call("GET", "/assistants?limit=5")
        await self.call("DELETE", f"/threads/{thread}")

    async def flow_abandon(self) -> None:
        body = self.thread_body(words(500), stream=True)
        await self.stream("/threads/runs", body, stop_after=self.random.randint(1, 20))

    async def flow_long_run(self) -> None:
        body = self.thread_body(words(20_000), stream=True)
        names = await self.stream("/threads/runs", body)
        if names[-2:] != ["thread.run.completed", "done"]:
            raise RuntimeError(f"long stream ended {names[-2:]}")


async def client_loop(client: Client, deadline: float, counts: Counter[str]) -> None:
    await client.start()
    flows, weights = list(FLOWS), list(FLOWS.values())
    while time.monotonic() < deadline:
        flow = client.random.choices(flows, weights)[0]
        try:
            await asyncio.wait_for(getattr(client, f"flow_{flow}")(), RUN_SECONDS)
            counts[flow] += 1
        except Exception as exc:  # counted, and the soak goes on: it measures memory
            counts[f"{flow}:error"] += 1
            counts[f"error:{type(exc).__name__}:{str(exc)[:80]}"] += 1


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


async def sampler(
    http: aiohttp.ClientSession,
    server: Server,
    started: float,
    deadline: float,
    every: float,
    out: list[Any],
) -> None:
    """A sample every `every` seconds until `deadline` (monotonic), timed from `started`."""
    while True:
        async with http.get(server.url + "/metrics") as response:
            text = await response.text()
        out.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rss_mib": round(server.rss_kib() / 1024, 2),
                "fds": len(os.listdir(f"/proc/{server.pid}/fd")),
                "tasks": metric(text, "gateway_asyncio_tasks"),
                "active_runs": metric(text, "gateway_active_runs"),
                "active_streams": metric(text, "gateway_active_streams"),
                "cpu_s": round(server.cpu_seconds(), 1),
            }
        )
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(min(every, max(deadline - time.monotonic(), 0)))


def make_keys(database: Path, count: int) -> list[str]:
    keys = []
    for index in range(count):
        made = subprocess.run(
            [PYTHON, "-m", "gateway", "keys", "--database", str(database), "create",
             "--project", f"soak{index % 4}"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        keys.append(next(w for w in made.stdout.split() if w.startswith("gwk_")))
    return keys


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    rss = [s["rss_mib"] for s in samples[1:-1]] or [samples[0]["rss_mib"]]  # under traffic
    quarter = max(len(rss) // 4, 1)
    second, last = rss[quarter : 2 * quarter] or rss, rss[-quarter:]
    before, after = statistics.median(second), statistics.median(last)
    flat = after <= before * 1.10 or after - before <= 10
    return {
        "rss_at_rest_before_mib": samples[0]["rss_mib"],
        "rss_at_rest_after_mib": samples[-1]["rss_mib"],
        "rss_second_quarter_median_mib": before,
        "rss_last_quarter_median_mib": after,
        "rss_max_mib": max(rss),
        "growth_last_vs_second_quarter": round(after / before, 3),
        "flat": flat,
        # At rest before the traffic, and at rest after it.
        "fds_before_after": [samples[0]["fds"], samples[-1]["fds"]],
        "tasks_before_after": [samples[0]["tasks"], samples[-1]["tasks"]],
    }


def plot(path: Path, samples: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    figure, (memory, load) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    memory.plot(minutes, [s["rss_mib"] for s in samples], label="gateway RSS (MiB)")
    memory.set(ylabel="MiB", ylim=(0, max(s["rss_mib"] for s in samples) * 1.2))
    memory.set_title("Soak: mixed traffic, 16 clients (loadtests/soak.py)")
    memory.legend(loc="lower right")
    load.plot(minutes, [s["tasks"] for s in samples], label="asyncio tasks")
    load.plot(minutes, [s["fds"] for s in samples], label="open files")
    load.plot(minutes, [s["active_runs"] for s in samples], label="active runs")
    load.set(xlabel="minutes", ylabel="count")
    load.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    database = workdir / "soak.db"
    keys = make_keys(database, args.clients)
    os.environ.update(
        {
            "GATEWAY_EVENT_RETENTION_SECONDS": "300",
            "GATEWAY_EVENT_PRUNE_SECONDS": "30",
            "GATEWAY_RUN_EXPIRY_SECONDS": "600",
        }
    )
    counts: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    with Fleet(workdir) as fleet:
        server = fleet.gateway("gateway", delay_ms=args.delay_ms, database=str(database))
        api = server.url + "/v1"
        timeout = aiohttp.ClientTimeout(total=RUN_SECONDS * 2, sock_read=RUN_SECONDS)
        connector = aiohttp.TCPConnector(limit=args.clients * 4)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            started = time.monotonic()
            await sampler(http, server, started, 0, 0, samples)  # at rest, before any traffic
            deadline = started + args.seconds
            clients = [Client(http, api, key, seed) for seed, key in enumerate(keys)]
            loops = [client_loop(c, deadline, counts) for c in clients]
            await asyncio.gather(
                sampler(http, server, started, deadline, args.sample_seconds, samples), *loops
            )
            await asyncio.sleep(5)  # the last runs settle; one more sample at rest
            await sampler(http, server, started, 0, 0, samples)
        server.check_alive()  # it never died under the soak
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {
        "settings": settings,
        "counts": dict(counts),
        "samples": samples,
        "verdict": verdict(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=2.0, help="the local model's pace")
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    try:
        plot(args.out / "soak.png", result["samples"])
    except ImportError:
        print("matplotlib is not installed: no soak.png", file=sys.stderr)
    flows = {k: v for k, v in result["counts"].items() if not k.startswith("error:")}
    print(json.dumps({"flows": flows, "verdict": result["verdict"]}, indent=1))
    errors = {k: v for k, v in result["counts"].items() if k.startswith("error:")}
    if errors:
        print("errors:", json.dumps(errors, indent=1))
    return 0 if result["verdict"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
