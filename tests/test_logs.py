"""Structured logs through the real CLI: `--log-format json` writes one JSON object per line,
with the request id (the client's X-Request-ID, echoed back) and no stream token in clear."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.waiting import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_json_logs_carry_the_request_id_and_no_token(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"]
    argv += ["--database", str(tmp_path / "logs.db"), "--local-model-delay-ms", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        eventually(healthy, timeout=20, interval=0.05, what="the gateway to start")
        request = urllib.request.Request(
            f"{base}/v1/assistants", headers={"X-Request-ID": "trace-42"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["x-request-id"] == "trace-42"
        with urllib.request.urlopen(f"{base}/v1/models", timeout=5) as response:
            assert response.headers["x-request-id"].startswith("req_")
        secret = "s3cr3t-stream-token"
        try:
            urllib.request.urlopen(f"{base}/v1/threads/t/runs/r/events?token={secret}", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code in (401, 404)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    lines = [line for line in output.decode().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert any(
        e.get("request_id") == "trace-42" and "/v1/assistants" in e["message"] for e in access
    )
    assert secret not in output.decode()
    assert any("token=***" in e["message"] for e in access)
