"""Follow the README top to bottom on a fresh copy of the repository, as a newcomer would.

Every fenced block of README.md runs, in order, in the copy's folder:

- `bash` blocks go to one bash process, as if pasted into one terminal: variables one block sets
  (the ids the curl block captures, `OPENAI_API_KEY`) are there for the next. The shell runs
  with `set -eo pipefail`, so a failing command fails the walkthrough.
- `python` blocks are saved to a file and run with the venv's Python from that shell.
- A block marked `<!-- walkthrough: server -->` starts the server: it runs in the background
  (installing first, as its command says) until the end, and the walkthrough waits until it
  answers.
- A `toml` block marked `<!-- walkthrough: config NAME -->` is saved as NAME, and a second server
  started with `--config NAME` must come up and answer; it is then stopped.
- `<!-- walkthrough: skip (why) -->` skips a block and says why; any other block without a
  marker is an error, so a new block cannot be left out silently.
- `expect "text"` in a block's marker: its output must contain that text.

Uses port 8000 as the README does when it is free; otherwise another free port, and every
`127.0.0.1:8000` in the blocks is rewritten to it (said in the output), and OPENAI_BASE_URL
points the examples there. Exits non-zero on the
first failure. Usage: `python3 .ci/readme_walkthrough.py [--keep] [--no-tests]` from the
repository (`--no-tests` has the block that runs the test suite only collect them, for a
quick look; CI runs every block as written).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_PORT = 8000
SERVER_START_SECONDS = 900.0  # its command installs the package first
BLOCK_SECONDS = 300.0
TESTS_SECONDS = 3600.0  # the block that runs the whole test suite
STOP_SECONDS = 20.0
SENTINEL = "__walkthrough_block_done__"

_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*walkthrough:((?:(?!-->).)*)-->[ \t]*\n\Z", re.S)
_EXPECT = re.compile(r'expect\s+"([^"]*)"')


class WalkthroughError(Exception):
    """A step of the README that did not do what it says."""


@dataclass
class Block:
    line: int  # where its fence opens in README.md
    language: str
    code: str
    mode: str = "run"  # run, server, config, skip
    argument: str = ""  # the config file's name, or why a block is skipped
    expects: list[str] = field(default_factory=list)


def blocks(readme: str) -> list[Block]:
    """README.md's fenced blocks in order, each with what its marker (if any) says."""
    found: list[Block] = []
    for match in _FENCE.finditer(readme):
        before = readme[: match.start()]
        block = Block(before.count("\n") + 1, match.group(1), match.group(2))
        marker = _MARKER.search(before)
        if marker:
            words = marker.group(1).strip()
            block.expects = _EXPECT.findall(words)
            parts = [part.strip() for part in _EXPECT.sub("", words).split(";")]
            mode, _, argument = "; ".join(part for part in parts if part).partition(" ")
            block.mode = mode or "run"
            block.argument = argument.strip().strip("()")
        if block.mode not in ("run", "server", "config", "skip"):
            raise WalkthroughError(f"README.md:{block.line}: unknown walkthrough mode {mode!r}")
        if block.mode == "run" and block.language not in ("bash", "python"):
            raise WalkthroughError(
                f"README.md:{block.line}: a {block.language or 'plain'} block needs a walkthrough "
                "marker (config NAME, or skip (why))"
            )
        if block.mode == "config" and not block.argument:
            raise WalkthroughError(f"README.md:{block.line}: config needs a file name")
        found.append(block)
    return found


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_repository(target: Path) -> None:
    """The repository's files as a fresh clone would have them (tracked, plus new files not
    ignored, so that it can run before a commit too); nothing built or installed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def wait_until_answering(url: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WalkthroughError(f"the server exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise WalkthroughError(f"{url} did not answer within {seconds:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (bash, pip's child, the server); it must stop in time."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise WalkthroughError("the server did not stop on SIGTERM") from None


class Shell:
    """One bash process that blocks are pasted into, one after another."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=folder,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send("set -eo pipefail")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, code: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(code + "\n")
        self.process.stdin.flush()

    def run(self, code: str, seconds: float) -> str:
        """Paste `code`; its output (printed as it comes) once it is done."""
        # The sentinel follows on its own line, after a newline that ends the block's last
        # command; under set -e the shell exits instead when a command fails.
        self.send(code.rstrip("\n") + f"\necho; echo {SENTINEL}")
        deadline = time.monotonic() + seconds
        output: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise WalkthroughError(f"the block did not finish within {seconds:.0f} s") from None
            if line is None:
                status = self.process.wait()
                none = status == 5 and "pytest" in code
                why = " (pytest's 5: no tests collected)" if none else ""
                raise WalkthroughError(f"the block failed: the shell exited with {status}{why}")
            if line.rstrip("\n") == SENTINEL:
                return "".join(output)
            output.append(line)
            sys.stdout.write("  | " + line)
            sys.stdout.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(STOP_SECONDS)


def walk(folder: Path, *, tests: bool = True) -> None:
    readme = (folder / "README.md").read_text()
    steps = blocks(readme)
    port = README_PORT if port_is_free(README_PORT) else free_port()
    if port != README_PORT:
        print(f"port {README_PORT} is taken: using {port}, rewritten in every block")
    # A newcomer's shell: no gateway or OpenAI settings of this one's (but whether the tests
    # may skip a missing service, which CI decides).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    if "GATEWAY_REQUIRE_SERVICES" in os.environ:
        env["GATEWAY_REQUIRE_SERVICES"] = os.environ["GATEWAY_REQUIRE_SERVICES"]
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if port != README_PORT:  # what the examples read instead of their default address
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    shell = Shell(folder, env)
    servers: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for number, block in enumerate(steps, 1):
            code = block.code.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")
            head = f"[{number}/{len(steps)}] README.md:{block.line} {block.language or 'text'}"
            if block.mode == "skip":
                print(f"{head}: skipped ({block.argument})")
                continue
            if not tests and "pytest" in code:
                code = code.rstrip("\n") + " --collect-only -q | tail -1"
                head += " (--no-tests: installs, then only collects)"
            print(f"{head}: {block.mode} {block.argument}".rstrip())
            started = time.monotonic()
            if block.mode == "server":
                log = folder / f"walkthrough-server-{number}.log"  # its access log is long
                print(f"  (its output goes to {log.name}; the end of it is shown on a failure)")
                logs.append(log)
                server = subprocess.Popen(
                    ["bash", "-c", code],
                    cwd=folder,
                    env={**env, "GATEWAY_PORT": str(port)},
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                servers.append(server)
                health = f"http://127.0.0.1:{port}/healthz"
                wait_until_answering(health, server, SERVER_START_SECONDS)
                output = ""
            elif block.mode == "config":
                (folder / block.argument).write_text(code)
                output = check_config(folder, env, block.argument)
            elif block.language == "python":
                script = folder / f".walkthrough-{number}.py"
                script.write_text(code)
                output = shell.run(f".venv/bin/python {script.name}", BLOCK_SECONDS)
            else:
                seconds = TESTS_SECONDS if "pytest" in code else BLOCK_SECONDS
                output = shell.run(code, seconds)
            for text in block.expects:
                if text not in output:
                    raise WalkthroughError(f"{head}: the output lacks {text!r}")
            print(f"{head}: ok in {time.monotonic() - started:.1f} s")
        for server in servers:
            stop(server)
            if server.returncode not in (0, -signal.SIGTERM):
                raise WalkthroughError(f"the server exited with {server.returncode}")
    except WalkthroughError:
        for log in logs:
            print(f"--- the end of {log.name}")
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        raise
    finally:
        shell.close()
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def check_config(folder: Path, env: dict[str, str], name: str) -> str:
    """A server started with `--config name` (its own port and database) comes up and answers
    GET /v1/models; the models it lists are returned as the block's output. The variables the
    file names in `api_key_env` are set to a placeholder, as a user would set them to a key."""
    keys = re.findall(r'^\s*api_key_env\s*=\s*"([^"]+)"', (folder / name).read_text(), re.M)
    if keys:
        print(f"  (setting {', '.join(keys)} to a placeholder, as the file asks for them)")
    env = {**env, **{key: "walkthrough-placeholder" for key in keys}}
    port = free_port()
    command = [".venv/bin/gateway", "serve", "--config", name, "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--database", "walkthrough-config.db"],
        cwd=folder,
        env=env,
        start_new_session=True,
    )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/healthz", server, 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as answer:
            return str(answer.read().decode())
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the copy for a look afterwards")
    parser.add_argument("--no-tests", action="store_true", help="leave out the test-suite block")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="readme-walkthrough-"))
    started = time.monotonic()
    try:
        copy_repository(folder)
        print(f"README walkthrough in {folder}")
        walk(folder, tests=not args.no_tests)
    except WalkthroughError as error:
        print(f"README walkthrough FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"README walkthrough: every block ran as written ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
