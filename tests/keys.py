"""Making API keys for tests, through the real `gateway keys` command."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import openai

from gateway.__main__ import main
from tests.server import LiveServer


def make_key(database: Path | str, project: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["keys", "--database", str(database), "create", "--project", project]) == 0
    key = out.getvalue().strip()
    assert key.startswith("gwk_") and "\n" not in key
    return key


@contextlib.contextmanager
def two_projects(database: Path) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    """A gateway on `database` with keys of projects alpha and beta, and an SDK client each."""
    alpha_key, beta_key = make_key(database, "alpha"), make_key(database, "beta")
    live = LiveServer(database).start()
    try:
        with (
            openai.OpenAI(base_url=live.base_url, api_key=alpha_key, max_retries=0) as alpha,
            openai.OpenAI(base_url=live.base_url, api_key=beta_key, max_retries=0) as beta,
        ):
            yield alpha, beta
    finally:
        live.stop()
