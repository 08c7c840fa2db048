"""A built wheel, installed in a fresh virtual environment (not editable), serves: run by
.ci/run as `<venv>/bin/python .ci/wheel_smoke.py`.

It starts `<venv>/bin/gateway serve` from an empty folder outside the repository (so nothing of
the source tree can be imported), on a free loopback port and a new SQLite file, then checks:
the gateway imported is the installed one, the playground page and its assets are served (the
wheel's static files), a run completes (the migrations ran), and SIGTERM ends the server with
status 0. Standard library only: the fresh environment has no test dependencies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def request(base: str, method: str, path: str, body: Any = None) -> tuple[int, bytes, str]:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        sent.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(sent, timeout=10) as answer:
        return answer.status, answer.read(), answer.headers.get("Content-Type", "")


def api(base: str, method: str, path: str, body: Any = None) -> Any:
    status, raw, _ = request(base, method, "/v1" + path, body)
    assert status == 200, (method, path, status, raw)
    return json.loads(raw)


def main() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="wheel-smoke-"))
    where = subprocess.run(
        [str(BIN / "python"), "-c", "import gateway; print(gateway.__file__)"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "site-packages" in where, f"the gateway imported is not the installed one: {where}"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "gateway"), "serve", "--port", str(port), "--database", "smoke.db"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(base, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, "the server exited at start"
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.2)
        status, page, kind = request(base, "GET", "/playground")
        assert status == 200 and kind.startswith("text/html") and b"<html" in page.lower()
        for asset in ("playground.js", "playground.css"):
            assert request(base, "GET", f"/playground/{asset}")[0] == 200, asset
        assistant = api(base, "POST", "/assistants", {"model": "local"})
        run = api(
            base,
            "POST",
            "/threads/runs",
            {
                "assistant_id": assistant["id"],
                "thread": {"messages": [{"role": "user", "content": "hello wheel"}]},
            },
        )
        for _ in range(200):
            run = api(base, "GET", f"/threads/{run['thread_id']}/runs/{run['id']}")
            if run["status"] not in ("queued", "in_progress"):
                break
            time.sleep(0.05)
        assert run["status"] == "completed", run
        messages = api(base, "GET", f"/threads/{run['thread_id']}/messages")["data"]
        assert messages[0]["content"][0]["text"]["value"] == "You said: hello wheel"
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0, f"the server exited with {code}:\n{(folder / 'server.log').read_text()}"
    print(f"wheel smoke: ok ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
