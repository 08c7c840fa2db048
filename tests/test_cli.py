"""The command line through real subprocesses: clear one-line errors, a real server, clean exit."""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import gateway
from tests.waiting import eventually

GATEWAY_SCRIPT = Path(sys.executable).parent / "gateway"
LAUNCHERS = {
    "console-script": [str(GATEWAY_SCRIPT)],
    "python-m": [sys.executable, "-m", "gateway"],
}
TIMEOUT = 30


@pytest.fixture(params=list(LAUNCHERS), ids=list(LAUNCHERS))
def launcher(request: pytest.FixtureRequest) -> list[str]:
    """How the CLI is started: the venv's console script, or `python -m gateway`."""
    return LAUNCHERS[request.param]


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without any GATEWAY_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | extra


def run_cli(
    launcher: list[str], *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*launcher, *args],
        cwd=cwd,
        env=environ() if env is None else env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit whose stderr is one line naming every needle, and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    assert result.stdout == "", result.stdout
    return lines[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_assistants(port: int) -> int | None:
    """The status of GET /v1/assistants, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/v1/assistants")
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            assert json.loads(body)["object"] == "list"
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@contextmanager
def serving(
    command: list[str], *, cwd: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the server, wait (bounded) until it answers, and never leave it running."""
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=environ() if env is None else env, stdout=out, stderr=out
        )
    try:

        def answering() -> bool:
            assert proc.poll() is None, f"server exited {proc.returncode}: {log.read_text()}"
            return get_assistants(port) == 200

        eventually(answering, interval=0.05, what=lambda: f"server ready: {log.read_text()}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
    assert "Traceback" not in log.read_text(), log.read_text()


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the server and return its exit code; it must exit within 10 seconds."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(10)


# --- bad flags and settings ------------------------------------------------------------------


def test_port_that_is_not_a_number_is_a_usage_error(launcher: list[str], tmp_path: Path) -> None:
    """`--port notanumber` exits 2 with argparse's one error line and no traceback."""
    result = run_cli(launcher, "serve", "--port", "notanumber", cwd=tmp_path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "--port" in errors[0] and "notanumber" in errors[0]
    assert result.stderr.startswith("usage: gateway serve")


def test_port_in_use_is_one_clear_line(launcher: list[str], tmp_path: Path) -> None:
    """Serving on a port another socket holds exits non-zero naming the port, no traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            launcher,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(tmp_path / "x.db"),
            cwd=tmp_path,
        )
    assert_one_clear_line(result, str(port), "address already in use")
    assert not (tmp_path / "x.db").exists()


def test_database_in_a_missing_folder_is_one_clear_line(
    launcher: list[str], tmp_path: Path
) -> None:
    """`--database /nonexistent-dir/x.db` exits non-zero with one line naming the folder."""
    result = run_cli(
        launcher,
        "serve",
        "--port",
        str(free_port()),
        "--database",
        "/nonexistent-dir/x.db",
        cwd=tmp_path,
    )
    assert_one_clear_line(result, "/nonexistent-dir")


def test_database_under_a_regular_file_is_one_clear_line(
    launcher: list[str], tmp_path: Path
) -> None:
    """A database path whose parent is a regular file exits non-zero with one clear line."""
    parent = tmp_path / "not-a-folder"
    parent.write_text("")
    result = run_cli(
        launcher,
        "serve",
        "--port",
        str(free_port()),
        "--database",
        str(parent / "x.db"),
        cwd=tmp_path,
    )
    assert_one_clear_line(result, str(parent))


@pytest.fixture
def unwritable_database(tmp_path: Path) -> Iterator[str]:
    """A database path in a folder nobody may create files in.

    Root ignores permission bits, so as root the folder is /proc, which refuses new files.
    """
    if os.geteuid() == 0:
        yield "/proc/gateway-test.db"
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        yield str(folder / "x.db")
    finally:
        folder.chmod(0o700)


def test_database_in_a_read_only_folder_is_one_clear_line(
    launcher: list[str], tmp_path: Path, unwritable_database: str
) -> None:
    """A database that cannot be created exits non-zero with one line naming it, no traceback."""
    result = run_cli(
        launcher, "serve", "--port", "0", "--database", unwritable_database, cwd=tmp_path
    )
    assert_one_clear_line(result, unwritable_database)


@pytest.mark.parametrize(
    ("database", "needle"),
    [("mysql://localhost/db", "mysql"), ("sqlite://rel.db", "sqlite://rel.db")],
)
def test_unusable_database_url_is_one_clear_line(
    launcher: list[str], tmp_path: Path, database: str, needle: str
) -> None:
    """An unsupported scheme or a malformed sqlite URL exits non-zero with one clear line."""
    result = run_cli(launcher, "serve", "--database", database, cwd=tmp_path)
    assert_one_clear_line(result, needle)


@pytest.mark.parametrize(
    ("name", "value"),
    [("GATEWAY_PORT", "abc"), ("GATEWAY_PORT", "70000"), ("GATEWAY_LOG_LEVEL", "loud")],
)
def test_bad_environment_variable_is_one_clear_line(
    launcher: list[str], tmp_path: Path, name: str, value: str
) -> None:
    """A GATEWAY_* variable the gateway cannot use exits non-zero with one line naming it."""
    result = run_cli(launcher, "serve", cwd=tmp_path, env=environ(**{name: value}))
    line = assert_one_clear_line(result, value)
    assert name in line or name.removeprefix("GATEWAY_").lower().replace("_", " ") in line


def test_version(launcher: list[str], tmp_path: Path) -> None:
    """`gateway --version` prints the package version and exits 0."""
    result = run_cli(launcher, "--version", cwd=tmp_path)
    assert result.returncode == 0, result
    assert result.stdout == f"gateway {gateway.__version__}\n"
    assert gateway.__version__ == importlib.metadata.version("assistants-gateway")


def test_no_command_is_a_usage_error(launcher: list[str], tmp_path: Path) -> None:
    """`gateway` with no command exits 2 with a usage error, not a traceback."""
    result = run_cli(launcher, cwd=tmp_path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr


# --- serving ---------------------------------------------------------------------------------


def test_python_m_gateway_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`python -m gateway serve --port P` answers on P, then shuts down within 10 s of SIGTERM
    and exits with status 0 (uvicorn alone would raise the signal again and die by it)."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    command += ["--database", str(tmp_path / "gateway.db"), "--log-level", "info"]
    with serving(command, cwd=tmp_path, port=port) as proc:
        returncode = stop(proc)
    logged = (tmp_path / f"server-{port}.log").read_text()
    assert "Application shutdown complete" in logged
    assert (tmp_path / "gateway.db").exists()
    assert returncode == 0
    # The start-up log says where it listens and with what, in a few lines.
    assert f"serving the API at http://127.0.0.1:{port}/v1" in logged
    assert f"playground: http://127.0.0.1:{port}/playground" in logged
    assert f"database: {tmp_path / 'gateway.db'}; bus: memory://" in logged
    assert "models: every model: the built-in model" in logged


def test_console_script_serves_a_relative_sqlite_url(tmp_path: Path) -> None:
    """`--database sqlite:///rel.db` serves from rel.db in the working directory."""
    port = free_port()
    command = [str(GATEWAY_SCRIPT), "serve", "--port", str(port), "--database", "sqlite:///rel.db"]
    with serving(command, cwd=tmp_path, port=port) as proc:
        assert (tmp_path / "rel.db").exists()
        stop(proc)


def test_port_from_the_environment_is_used(tmp_path: Path) -> None:
    """GATEWAY_PORT and GATEWAY_DATABASE configure the server when no flag is given."""
    port = free_port()
    database = tmp_path / "env.db"
    env = environ(GATEWAY_PORT=str(port), GATEWAY_DATABASE=str(database))
    with serving([str(GATEWAY_SCRIPT), "serve"], cwd=tmp_path, port=port, env=env) as proc:
        assert database.exists()
        stop(proc)


def test_data_survives_a_restart(tmp_path: Path) -> None:
    """An assistant created before a SIGTERM is still listed by the next server on the file."""
    database = str(tmp_path / "gateway.db")
    created = None
    for _ in range(2):
        port = free_port()
        command = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
        with serving([*command, "--database", database], cwd=tmp_path, port=port) as proc:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                if created is None:
                    body = json.dumps({"model": "m"})
                    headers = {"Content-Type": "application/json"}
                    conn.request("POST", "/v1/assistants", body=body, headers=headers)
                    created = json.loads(conn.getresponse().read())["id"]
                else:
                    conn.request("GET", "/v1/assistants")
                    listed = json.loads(conn.getresponse().read())["data"]
                    assert [a["id"] for a in listed] == [created]
            finally:
                conn.close()
            stop(proc)  # the exit code is pinned by the SIGTERM test above


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds() -> None:
    """Before serving, start-up objects leave the collected generations and the collector's
    thresholds are the gateway's."""
    import gc

    from gateway.serving import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    "shared",
    [[], ["--bus", "redis://127.0.0.1:6379/0"]],
    ids=["sqlite-and-memory", "sqlite-and-redis"],
)
def test_workers_without_a_shared_database_and_bus_are_refused(
    launcher: list[str], tmp_path: Path, shared: list[str]
) -> None:
    """`--workers 2` on SQLite or the memory bus would split runs between processes that
    cannot see each other's: one clear line instead."""
    result = run_cli(
        launcher, "serve", "--port", str(free_port()), "--workers", "2", *shared, cwd=tmp_path
    )
    assert_one_clear_line(result, "--workers 2", "postgresql://", "redis://")


def test_an_unreachable_redis_bus_is_one_clear_line(launcher: list[str], tmp_path: Path) -> None:
    """`--bus redis://...` that nothing answers stops the server at start with one line
    naming the bus (without its password) and the cause, instead of a ready server whose
    runs all answer 503."""
    dead = free_port()
    started = time.monotonic()
    result = run_cli(
        launcher,
        "serve",
        *("--port", str(free_port()), "--bus", f"redis://:hunter2@127.0.0.1:{dead}/0"),
        cwd=tmp_path,
    )
    line = assert_one_clear_line(result, f"redis://127.0.0.1:{dead}/0", "Connect")
    assert "hunter2" not in result.stderr, line
    assert time.monotonic() - started < 15


def test_a_required_sandbox_that_does_not_work_is_one_clear_line(
    launcher: list[str], tmp_path: Path
) -> None:
    """`--code-interpreter bwrap` on a machine where the sandbox does not work (here: no bwrap
    on the PATH) stops the server at start with one line saying why."""
    result = run_cli(
        launcher,
        *("serve", "--port", str(free_port()), "--code-interpreter", "bwrap"),
        cwd=tmp_path,
        env=environ(PATH=str(tmp_path)),
    )
    assert_one_clear_line(result, "--code-interpreter bwrap", "bwrap is not installed")


@pytest.mark.parametrize(
    "where",
    ["before the command", "after keys", "after the action"],
)
def test_database_goes_anywhere_on_the_line(
    launcher: list[str], tmp_path: Path, where: str
) -> None:
    """`--database` is taken before the command, after `keys`, or after the action (as the
    README's `gateway keys create --project beta --database X` writes it)."""
    database = str(tmp_path / "keys.db")
    flag = ["--database", database]
    lines = {
        "before the command": [*flag, "keys", "create", "--project", "beta"],
        "after keys": ["keys", *flag, "create", "--project", "beta"],
        "after the action": ["keys", "create", "--project", "beta", *flag],
    }
    created = run_cli(launcher, *lines[where], cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("gwk_")
    listed = run_cli(launcher, "keys", "list", "--database", database, cwd=tmp_path)
    assert listed.returncode == 0 and " beta " in listed.stdout
    assert not (tmp_path / "gateway.db").exists()  # the default file was never touched


def test_help_shows_real_defaults(launcher: list[str], tmp_path: Path) -> None:
    shown = run_cli(launcher, "serve", "--help", cwd=tmp_path).stdout
    assert "default )" not in shown and "default none)" in " ".join(shown.split())
    assert "default ./gateway.db" in " ".join(shown.split())
