"""The routing file: loading, defaults, routing, and one precise error per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, UpstreamConfig
from gateway.config_file import ConfigError, load_config

SECRET = "sk-FAKE-do-not-print-7f3a9c"
ENVIRON = {"VLLM_API_KEY": SECRET, "EMPTY_KEY": ""}
MARK = "# <-"  # marks the line an error must point at

FULL = """\
default_route = "cloud"  # unmatched models go to the cloud

[[upstream]]
name = "local-vllm"
base_url = "http://127.0.0.1:8001/v1/"
api_key_env = "VLLM_API_KEY"
models = ["llama-*", "qwen*"]
connect_timeout = 5
first_byte_timeout = 30.5
idle_timeout = 30
max_retries = 0

[[upstream]]
name = "cloud"
base_url = "https://api.example.com/v1"
models = ["gpt-*"]
"""

GOOD = """\
[[upstream]]
name = "first"
base_url = "http://127.0.0.1:8001/v1"
api_key_env = "VLLM_API_KEY"
models = ["llama-*"]
"""


def second(*lines: str) -> str:
    """A file with a good upstream, then a second upstream made of `lines`."""
    return GOOD + "\n[[upstream]]\n" + "".join(line + "\n" for line in lines)


NAME = 'name = "second"'
URL = 'base_url = "http://127.0.0.1:8002"'
MODELS = 'models = ["qwen*"]'


def write(tmp_path: Path, text: str | bytes) -> Path:
    """Write the config file under tmp_path and return its path."""
    path = tmp_path / "gateway.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def marked_line(text: str) -> int:
    """The 1-based number of the one line carrying MARK."""
    (line,) = [n for n, row in enumerate(text.split("\n"), 1) if MARK in row]
    return line


def load_error(tmp_path: Path, text: str | bytes) -> ConfigError:
    """The ConfigError that loading `text` raises, checked to be one line without the secret."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), ENVIRON)
    error = info.value
    message = str(error)
    assert "\n" not in message
    assert SECRET not in message and SECRET not in repr(error)
    assert message.startswith(str(tmp_path / "gateway.toml"))
    return error


# --- loading -------------------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    """Every key of a full file lands in the config, with the API key read from the environ."""
    config = load_config(write(tmp_path, FULL), ENVIRON)
    assert config == GatewayConfig(
        upstreams=(
            UpstreamConfig(
                name="local-vllm",
                base_url="http://127.0.0.1:8001/v1",
                models=("llama-*", "qwen*"),
                api_key_env="VLLM_API_KEY",
                api_key=SECRET,
                connect_timeout=5.0,
                first_byte_timeout=30.5,
                idle_timeout=30.0,
                max_retries=0,
            ),
            UpstreamConfig(name="cloud", base_url="https://api.example.com/v1", models=("gpt-*",)),
        ),
        default_route="cloud",
    )
    assert isinstance(config.upstreams[0].connect_timeout, float)


def test_defaults(tmp_path: Path) -> None:
    """An upstream with only the required keys gets the documented defaults."""
    config = load_config(write(tmp_path, second(NAME, URL, MODELS)), ENVIRON)
    upstream = config.upstreams[1]
    assert config.default_route == "local"
    assert upstream.api_key_env is None and upstream.api_key is None
    assert (upstream.connect_timeout, upstream.first_byte_timeout) == (10.0, 60.0)
    assert (upstream.idle_timeout, upstream.max_retries) == (60.0, 2)


def test_empty_file_is_all_local(tmp_path: Path) -> None:
    """An empty file means no upstreams and every model served locally."""
    assert load_config(write(tmp_path, ""), {}) == GatewayConfig()


def test_path_may_be_a_string(tmp_path: Path) -> None:
    """load_config takes a str path as well as a Path."""
    assert load_config(str(write(tmp_path, GOOD)), ENVIRON).upstreams[0].name == "first"


def test_api_key_comes_from_the_given_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit environ is the only place the key is looked up."""
    monkeypatch.setenv("VLLM_API_KEY", "from-os-environ")
    config = load_config(write(tmp_path, GOOD), {"VLLM_API_KEY": SECRET})
    assert config.upstreams[0].api_key == SECRET


def test_api_key_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument the key comes from os.environ."""
    monkeypatch.setenv("VLLM_API_KEY", SECRET)
    assert load_config(write(tmp_path, GOOD)).upstreams[0].api_key == SECRET


def test_secret_is_never_shown(tmp_path: Path) -> None:
    """Neither str nor repr of the config or its upstreams contains the API key."""
    config = load_config(write(tmp_path, FULL), ENVIRON)
    assert config.upstreams[0].api_key == SECRET
    for shown in (str(config), repr(config), str(config.upstreams[0]), repr(config.upstreams)):
        assert SECRET not in shown
    assert "VLLM_API_KEY" in repr(config)


# --- routing -------------------------------------------------------------------------------------


def routed(config: GatewayConfig, model: str) -> str | None:
    """The name of the upstream serving `model`, or None for the built-in model."""
    upstream = config.route(model)
    return None if upstream is None else upstream.name


def two_upstreams(default_route: str = "local") -> GatewayConfig:
    """A config where both upstreams claim `llama-3*`."""
    return GatewayConfig(
        upstreams=(
            UpstreamConfig(name="a", base_url="http://a", models=("llama-3*", "qwen?")),
            UpstreamConfig(name="b", base_url="http://b", models=("llama-*", "mistral-[78]b")),
        ),
        default_route=default_route,
    )


def test_first_match_wins() -> None:
    """A model matched by two upstreams goes to the one listed first."""
    assert routed(two_upstreams(), "llama-3-8b") == "a"
    assert routed(two_upstreams(), "llama-2-7b") == "b"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qwen2", "a"),
        ("qwen", None),  # `?` needs exactly one character
        ("qwen25", None),
        ("mistral-7b", "b"),
        ("mistral-9b", None),
        ("LLAMA-3", None),  # matching is case-sensitive
        ("", None),
    ],
)
def test_glob_patterns(model: str, expected: str | None) -> None:
    """Patterns follow fnmatch.fnmatchcase: `*`, `?`, `[...]`, case-sensitive."""
    assert routed(two_upstreams(), model) == expected


def test_unmatched_goes_local() -> None:
    """With the default route "local", an unmatched model routes to None (the built-in model)."""
    assert two_upstreams().route("gpt-4o") is None


def test_unmatched_goes_to_named_default() -> None:
    """With a named default route, an unmatched model goes to that upstream."""
    assert routed(two_upstreams(default_route="b"), "gpt-4o") == "b"


def test_matches() -> None:
    """An upstream matches a model when any one of its patterns does."""
    upstream = UpstreamConfig(name="a", base_url="http://a", models=("x", "y*"))
    assert upstream.matches("x") and upstream.matches("yes") and not upstream.matches("xy")


def test_default_route_must_name_an_upstream_when_built_directly() -> None:
    """A GatewayConfig built in code refuses a default route that names no upstream."""
    with pytest.raises(ValueError, match="nowhere"):
        GatewayConfig(default_route="nowhere")


# --- errors --------------------------------------------------------------------------------------


def test_error_format() -> None:
    """A ConfigError reads `path:line: problem`, or `path: problem` when the line is unknown."""
    assert str(ConfigError("gw.toml", 3, "bad")) == "gw.toml:3: bad"
    assert str(ConfigError("gw.toml", None, "bad")) == "gw.toml: bad"


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is reported as unreadable, with no line."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", {})
    expected = f"{tmp_path / 'absent.toml'}: cannot read the file: No such file or directory"
    assert str(info.value) == expected
    assert info.value.line is None


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory in place of the file is reported as unreadable."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path, {})


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported at the line of the first bad byte."""
    error = load_error(tmp_path, b'default_route = "local"\n# caf\xe9\n')
    assert error.line == 2
    assert error.problem == "the file is not UTF-8 text (byte 0xe9)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (second(NAME, f"base_url = {MARK}"), "Invalid value"),
        (f"[[upstream] {MARK}", "Expected ']]' at the end of an array declaration"),
        (GOOD + f'name = "again" {MARK}', "Cannot overwrite a value"),
        (
            second(NAME, URL, "models = [", f'  "qwen*" {MARK}', ""),
            "Unclosed array at end of file",
        ),
    ],
)
def test_toml_syntax_errors(tmp_path: Path, text: str, problem: str) -> None:
    """tomllib's message is kept and its position becomes the line after the path."""
    error = load_error(tmp_path, text)
    assert (error.line, error.problem) == (marked_line(text), problem)


CASES = {
    # top level
    "unknown top-level key": (
        f"timeout = 5 {MARK}\n" + GOOD,
        "unknown top-level key 'timeout' "
        "(allowed: default_route, embeddings, embedding_model, code_interpreter, upstream)",
    ),
    "unknown top-level table": (
        GOOD + f"[server] {MARK}\nport = 1\n",
        "unknown top-level key 'server'",
    ),
    "upstream a string": (
        f'upstream = "x" {MARK}',
        "'upstream' must be an array of tables, got a string",
    ),
    "upstream a single table": (
        f"[upstream] {MARK}\n{NAME}\n",
        "'upstream' must be an array of tables, got a table",
    ),
    "upstream an array of numbers": (
        f"upstream = [1, 2] {MARK}",
        "'upstream' must be an array of tables, got an array holding an integer",
    ),
    "default_route not a string": (
        f"default_route = 1 {MARK}\n" + GOOD,
        "'default_route' must be a string, got an integer",
    ),
    "default_route names nothing": (
        f'default_route = "cloud" {MARK}\n' + GOOD,
        "'default_route' is 'cloud'; it must be one of 'local', 'first'",
    ),
    # keys of an upstream
    "unknown upstream key": (
        second(NAME, URL, f'modles = ["x"] {MARK}', MODELS),
        "upstream #2: unknown key 'modles' (allowed: name, base_url, api_key_env, models, "
        "connect_timeout, first_byte_timeout, idle_timeout, max_retries)",
    ),
    "unknown upstream sub-table": (
        second(NAME, URL, MODELS, f"[upstream.headers] {MARK}", 'x = "y"'),
        "upstream #2: unknown key 'headers'",
    ),
    "unknown quoted key": (
        second(NAME, URL, MODELS, f'"api key" = "x" {MARK}'),
        "upstream #2: unknown key 'api key'",
    ),
    "missing name": (
        GOOD + f"\n[[upstream]] {MARK}\n{URL}\n{MODELS}\n",
        "upstream #2: missing required key 'name'",
    ),
    "missing base_url": (
        GOOD + f"\n[[upstream]] {MARK}\n{NAME}\n{MODELS}\n",
        "upstream #2: missing required key 'base_url'",
    ),
    "missing models": (
        GOOD + f"\n[[upstream]] {MARK}\n{NAME}\n{URL}\n",
        "upstream #2: missing required key 'models'",
    ),
    # name
    "name not a string": (
        second(f"name = 2 {MARK}", URL, MODELS),
        "upstream #2: 'name' must be a string, got an integer",
    ),
    "empty name": (
        second(f'name = "" {MARK}', URL, MODELS),
        "upstream #2: 'name' must not be empty",
    ),
    "duplicate name": (
        second(URL, MODELS, f'name = "first" {MARK}'),
        "upstream #2: name 'first' is already used by upstream #1",
    ),
    "reserved name": (
        second(f'name = "local" {MARK}', URL, MODELS),
        "upstream #2: the name 'local' is reserved for the built-in model",
    ),
    # base_url
    "base_url not a string": (
        second(NAME, f"base_url = 8002 {MARK}", MODELS),
        "upstream #2: 'base_url' must be a string, got an integer",
    ),
    "base_url other scheme": (
        second(NAME, f'base_url = "ftp://example.com" {MARK}', MODELS),
        "upstream #2: 'base_url' must start with http:// or https://, got scheme 'ftp'",
    ),
    "base_url no scheme": (
        second(NAME, f'base_url = "example.com/v1" {MARK}', MODELS),
        "upstream #2: 'base_url' must start with http:// or https://, got no scheme",
    ),
    "base_url no host": (
        second(NAME, f'base_url = "http:///v1" {MARK}', MODELS),
        "upstream #2: 'base_url' must name a host",
    ),
    "base_url bad port": (
        second(NAME, f'base_url = "http://example.com:80a" {MARK}', MODELS),
        "upstream #2: 'base_url' is not a valid URL",
    ),
    "base_url with a space": (
        second(NAME, f'base_url = "http://exa mple.com" {MARK}', MODELS),
        "upstream #2: 'base_url' must not contain spaces or control characters",
    ),
    "base_url with credentials": (
        second(NAME, f'base_url = "https://user:{SECRET}@example.com" {MARK}', MODELS),
        "upstream #2: 'base_url' must not carry credentials",
    ),
    "base_url with a query": (
        second(NAME, f'base_url = "https://example.com/v1?x=1" {MARK}', MODELS),
        "upstream #2: 'base_url' must not have a query or fragment",
    ),
    # models
    "models a string": (
        second(NAME, URL, f'models = "qwen*" {MARK}'),
        "upstream #2: 'models' must be an array of strings, got a string",
    ),
    "models empty": (
        second(NAME, URL, f"models = [] {MARK}"),
        "upstream #2: 'models' must list at least one model pattern",
    ),
    "models item not a string": (
        second(NAME, URL, f'models = ["qwen*", 7] {MARK}'),
        "upstream #2: 'models' item 2 must be a string, got an integer",
    ),
    "models item empty": (
        second(NAME, URL, f'models = [""] {MARK}'),
        "upstream #2: 'models' item 1 is an empty string",
    ),
    # api_key_env
    "api_key_env not a string": (
        second(NAME, URL, MODELS, f"api_key_env = true {MARK}"),
        "upstream #2: 'api_key_env' must be a string, got a boolean",
    ),
    "api_key_env empty": (
        second(NAME, URL, MODELS, f'api_key_env = "" {MARK}'),
        "upstream #2: 'api_key_env' must not be empty",
    ),
    "api key variable not set": (
        second(NAME, URL, MODELS, f'api_key_env = "ABSENT_KEY" {MARK}'),
        "upstream #2: environment variable 'ABSENT_KEY' (from 'api_key_env') is not set",
    ),
    "api key variable empty": (
        second(NAME, URL, MODELS, f'api_key_env = "EMPTY_KEY" {MARK}'),
        "upstream #2: environment variable 'EMPTY_KEY' (from 'api_key_env') is empty",
    ),
    # max_retries
    "max_retries negative": (
        second(NAME, URL, MODELS, f"max_retries = -1 {MARK}"),
        "upstream #2: 'max_retries' must be between 0 and 10, got -1",
    ),
    "max_retries too many": (
        second(NAME, URL, MODELS, f"max_retries = 11 {MARK}"),
        "upstream #2: 'max_retries' must be between 0 and 10, got 11",
    ),
    "max_retries a float": (
        second(NAME, URL, MODELS, f"max_retries = 1.0 {MARK}"),
        "upstream #2: 'max_retries' must be an integer, got a float",
    ),
    "max_retries a boolean": (
        second(NAME, URL, MODELS, f"max_retries = true {MARK}"),
        "upstream #2: 'max_retries' must be an integer, got a boolean",
    ),
}
for _key in ("connect_timeout", "first_byte_timeout", "idle_timeout"):
    CASES |= {
        f"{_key} zero": (
            second(NAME, URL, MODELS, f"{_key} = 0 {MARK}"),
            f"upstream #2: '{_key}' must be a positive number of seconds, got 0",
        ),
        f"{_key} negative": (
            second(NAME, URL, MODELS, f"{_key} = -2.5 {MARK}"),
            f"upstream #2: '{_key}' must be a positive number of seconds, got -2.5",
        ),
        f"{_key} infinite": (
            second(NAME, URL, MODELS, f"{_key} = inf {MARK}"),
            f"upstream #2: '{_key}' must be a positive number of seconds, got inf",
        ),
        f"{_key} nan": (
            second(NAME, URL, MODELS, f"{_key} = nan {MARK}"),
            f"upstream #2: '{_key}' must be a positive number of seconds, got nan",
        ),
        f"{_key} a string": (
            second(NAME, URL, MODELS, f'{_key} = "5" {MARK}'),
            f"upstream #2: '{_key}' must be a number of seconds, got a string",
        ),
        f"{_key} a boolean": (
            second(NAME, URL, MODELS, f"{_key} = true {MARK}"),
            f"upstream #2: '{_key}' must be a number of seconds, got a boolean",
        ),
    }


@pytest.mark.parametrize(("text", "problem"), list(CASES.values()), ids=list(CASES))
def test_validation_errors(tmp_path: Path, text: str, problem: str) -> None:
    """Each mistake is reported at its own line, in words that name the key and the problem."""
    error = load_error(tmp_path, text)
    assert error.line == marked_line(text)
    assert error.problem.startswith(problem)
    assert str(error) == f"{tmp_path / 'gateway.toml'}:{error.line}: {error.problem}"


def test_lines_survive_tricky_layout(tmp_path: Path) -> None:
    """Comments, multi-line arrays and strings holding TOML-like text do not shift the line."""
    text = (
        "# a comment that mentions [[upstream]] and name = 'x'\n"
        + GOOD.replace('models = ["llama-*"]', 'models = [\n  "llama-*",  # ]\n  "x]#\'",\n]')
        + '\n[[upstream]]\nname = """\nmax_retries = 1\n[[upstream]]\n"""\n'
        + f"base_url = 'http://h2'\nmodels = ['a']\n\"max_retries\" = 11 {MARK}\n"
    )
    error = load_error(tmp_path, text)
    assert error.line == marked_line(text)
    assert error.problem.startswith("upstream #2: 'max_retries' must be between 0 and 10")


def test_inline_upstream_array_falls_back_to_its_key(tmp_path: Path) -> None:
    """Upstreams written as an inline array are placed at the `upstream =` line."""
    text = f'upstream = [{{ name = "a", base_url = "http://a", models = [] }}] {MARK}'
    error = load_error(tmp_path, text)
    assert error.line == marked_line(text)
    assert error.problem == "upstream #1: 'models' must list at least one model pattern"


def test_errors_never_show_the_secret(tmp_path: Path) -> None:
    """An error raised after the key is resolved does not carry the key's value anywhere."""
    text = 'default_route = "nope"\n' + GOOD  # checked after every upstream's key is read
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), ENVIRON)
    error = info.value
    assert all(SECRET not in str(part) for part in (error, repr(error), *error.args))


# --- embeddings ----------------------------------------------------------------------------------

UPSTREAM = (
    '[[upstream]]\nname = "cloud"\nbase_url = "https://api.example.com/v1"\nmodels = ["gpt-*"]\n'
)


def test_embeddings_name_an_upstream_and_its_model(tmp_path: Path) -> None:
    text = 'embeddings = "cloud"\nembedding_model = "text-embedding-3-large"\n' + UPSTREAM
    config = load_config(write(tmp_path, text), ENVIRON)
    assert config.embeddings == "cloud" and config.embedding_model == "text-embedding-3-large"
    assert config.embeddings_upstream() is config.upstreams[0]
    assert load_config(write(tmp_path, 'embeddings = "none"\n'), {}).embeddings == "none"
    assert load_config(write(tmp_path, ""), {}).embeddings_upstream() is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('embeddings = "elsewhere"\n', "'embeddings' is 'elsewhere'; it must be one of"),
        ('embeddings = "cloud"\n' + UPSTREAM, "give its 'embedding_model'"),
        ("embeddings = 3\n", "'embeddings' must be a string, got an integer"),
        ('embedding_model = ""\n', "'embedding_model' must be a model name"),
    ],
)
def test_bad_embeddings_are_refused_at_start(tmp_path: Path, text: str, problem: str) -> None:
    error = load_error(tmp_path, text)
    assert problem in str(error)
    assert error.line == 1


def test_code_interpreter_may_be_set_in_the_file(tmp_path: Path) -> None:
    for mode in ("auto", "bwrap", "off"):
        config = load_config(write(tmp_path, f'code_interpreter = "{mode}"\n'), {})
        assert config.code_interpreter == mode
    assert load_config(write(tmp_path, ""), {}).code_interpreter is None
    error = load_error(tmp_path, 'code_interpreter = "docker"\n')
    assert "'code_interpreter' is 'docker'; it must be one of 'auto', 'bwrap', 'off'" in str(error)
    assert error.line == 1
