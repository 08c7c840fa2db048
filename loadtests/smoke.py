"""The CI smoke run of the locustfile: a gateway on a free loopback port with a temporary
database and an unpaced local model, 10 locust users for 10 seconds, then a check of the stats.

Exits non-zero when the gateway does not start or stop, locust fails or reports any failure,
no request was made, or a user class completed no run. Usage: `.venv/bin/python loadtests/smoke.py`.
"""

from __future__ import annotations

import csv
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
STARTUP_SECONDS = 20.0
LOCUST_SECONDS = 90.0  # -t 10s plus start-up and the summary; a hang beyond this fails
STOP_SECONDS = 15.0
# Every user class must have completed runs: these rows prove its custom metrics were reported.
REQUIRED_ROWS = (
    "POST stream: run completion",
    "GET events: run completion",
    "poll: create+poll completion",
)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base: str, gateway: subprocess.Popen[bytes]) -> None:
    """Return once GET /v1/assistants answers 200; raise if the gateway exits or takes too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base}/v1/assistants", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway did not answer within {STARTUP_SECONDS:.0f} s")


def stop(gateway: subprocess.Popen[bytes]) -> bool:
    """SIGTERM the gateway and wait; kill it and return False when it does not stop in time."""
    if gateway.poll() is not None:
        return True
    gateway.send_signal(signal.SIGTERM)
    try:
        gateway.wait(timeout=STOP_SECONDS)
        return True
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait(timeout=STOP_SECONDS)
        return False


def check_stats(stats_csv: Path) -> list[str]:
    """The problems in locust's stats: failures, no requests, or a user class with no runs."""
    with stats_csv.open(newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    problems = []
    total = rows.get("Aggregated")
    if total is None or int(total["Request Count"]) == 0:
        problems.append("locust made no requests")
    elif int(total["Failure Count"]):
        problems.append(f"locust reported {total['Failure Count']} failures")
    for name in REQUIRED_ROWS:
        row = rows.get(name)
        if row is None or int(row["Request Count"]) - int(row["Failure Count"]) == 0:
            problems.append(f"no successful {name!r}")
    return problems


def main() -> int:
    """Start the gateway, run locust headless against it, stop the gateway, judge the run."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="gateway-smoke-") as tmp:
        folder = Path(tmp)
        log_path = folder / "gateway.log"
        with log_path.open("wb") as log:
            gateway = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1"),
                    *("--port", str(port), "--database", str(folder / "smoke.db")),
                    *("--local-model-delay-ms", "0", "--log-level", "warning"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        problems: list[str] = []
        started = time.monotonic()
        try:
            wait_until_serving(base, gateway)
            locust = subprocess.run(
                [
                    *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
                    *("-u", "10", "-r", "5", "-t", "10s", "--host", base, "--only-summary"),
                    *("--exit-code-on-error", "1", "--csv", str(folder / "locust")),
                ],
                timeout=LOCUST_SECONDS,
                check=False,
            )
            if locust.returncode:
                problems.append(f"locust exited with {locust.returncode}")
            problems += check_stats(folder / "locust_stats.csv")
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
            problems.append(str(error))
        finally:
            if not stop(gateway):
                problems.append(f"gateway did not stop within {STOP_SECONDS:.0f} s of SIGTERM")
        elapsed = time.monotonic() - started
        if problems:
            print(f"--- gateway log ({log_path.name}) ---", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            for problem in problems:
                print(f"smoke: FAIL: {problem}", file=sys.stderr)
            return 1
    print(f"smoke: ok in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
