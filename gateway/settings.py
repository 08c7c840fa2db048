"""Every setting of the gateway, its environment variable and its default, in one dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "GATEWAY_"


class SettingsError(ValueError):
    """A setting has a value the gateway cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    # Listen on an address other than loopback even though no API key exists (the API is then
    # open to anyone who reaches it).
    insecure: bool = False
    port: int = 8000
    # A SQLite file (a path or sqlite:/// URL), or a postgresql:// URL for several workers.
    database: str = "./gateway.db"
    # PostgreSQL only: the connections each gateway process keeps open (a fixed pool).
    database_pool_size: int = 10
    # The event bus: memory:// (one process), or redis://HOST:PORT/DB for several processes
    # sharing a PostgreSQL database (`?prefix=` sets its keys' prefix).
    bus: str = "memory://"
    # Processes serving one port (`serve --workers N`); more than one needs a shared database
    # (postgresql://) and bus (redis://).
    workers: int = 1
    # Several processes: how long a run's lease lasts. A run whose process stops renewing it
    # (it died) is taken over by another process within about this long.
    lease_seconds: float = 30.0
    # This process's name in the shared database; "" = host:port, which a restart keeps.
    worker_id: str = ""
    log_level: str = "info"
    # "text", or "json": one JSON object per line with request id, project and run id.
    log_format: str = "text"
    # The routing configuration file (TOML) naming the model upstreams; "" = none, every run is
    # answered by the built-in local model.
    config: str = ""
    # Seconds a run may stay active (queued, in_progress, requires_action) before it expires.
    run_expiry_seconds: int = 600
    # Pause between the built-in local model's tokens, about a real model's pace; 0 emits them
    # as fast as possible.
    local_model_delay_ms: float = 20.0
    # Write run events to the database (resume across restarts). Off keeps them in memory only,
    # while the run is active: for measuring what persistence costs.
    persist_events: bool = True
    # How long the event log gathers a moment's events before writing them in one commit: a
    # crash loses at most this much of the log (never a run's state), and fewer, larger writes.
    event_flush_ms: float = 20.0
    # How long a run's logged events are kept after the run ends (for resuming streams).
    event_retention_seconds: float = 3600.0
    # How often logged events past their retention are deleted.
    event_prune_seconds: float = 60.0
    # A stream whose client takes longer than this to accept one send is closed (it can resume).
    stream_send_timeout_seconds: float = 30.0
    # A request must arrive in full (headers and body) within this many seconds of the
    # connection's opening or of its first byte; a slower one is closed (0 = no limit).
    request_timeout_seconds: float = 30.0
    # A connection whose peer acknowledges nothing sent for this long is closed by the kernel
    # (TCP_USER_TIMEOUT, keep-alive probes when idle): half-open connections end (0 = off).
    peer_timeout_seconds: float = 30.0
    # How long a browser stream token stays valid.
    stream_token_seconds: int = 600
    # How soon an EventSource reconnects after a drop (sent as `retry:`).
    stream_retry_ms: int = 1000
    # Origins allowed to call the API from a browser (CORS), comma-separated; "*" for any.
    cors_origins: str = ""
    # Sent as `openai-poll-after-ms` on run responses: how long the SDK's poll helpers wait.
    poll_after_ms: int = 200
    # Seconds between keep-alive comments on an idle event stream (0 turns them off).
    stream_ping_seconds: float = 15.0
    # Events a subscriber may have waiting before it is dropped (it can resume from the log).
    subscriber_buffer: int = 10_000
    # How often the engine looks for runs whose expires_at has passed.
    expiry_check_seconds: float = 1.0
    # Seconds shutdown waits for running runs before it cancels them.
    shutdown_grace_seconds: int = 5
    # How long a write waits for another process's lock on the database before it is refused
    # with a 503 (Retry-After) instead of hanging.
    database_busy_ms: int = 5000
    # Limits. A request body larger than this is refused (413).
    max_body_bytes: int = 8 * 1024 * 1024
    # Bytes of one uploaded file (POST /v1/files; OpenAI's limit is 512 MB).
    max_file_bytes: int = 512 * 1024 * 1024
    # A large request body (a file) may take this long beyond request_timeout_seconds: its
    # length at this many bytes a second; a slower upload is cut off.
    min_upload_bytes_per_second: int = 256 * 1024
    # Threads the embedded embedding model computes with (one leaves the other core to the
    # event loop on a 2-core machine).
    embedding_threads: int = 1
    # A file that takes longer than this to parse and chunk fails ingestion (invalid_file); the
    # worker process that was reading it is killed and replaced.
    ingestion_timeout_seconds: float = 300.0
    # code_interpreter: "auto" runs it in a bubblewrap sandbox when one works on this machine
    # (checked at start; the log says which), "bwrap" requires it, "off" never runs it (a run
    # whose model calls it fails with a clear last_error).
    code_interpreter: str = "auto"
    # Sandboxed sessions at once (one per thread that ran code), and how long an idle one is
    # kept warm (OpenAI: an hour).
    code_interpreter_sessions: int = 8
    code_interpreter_idle_seconds: float = 3600.0
    # Limits of a session: wall time of one call, CPU seconds of each of its processes in all,
    # memory (address space of a process, and of the whole session with its files where a
    # cgroup can be made), processes, disk (/mnt/data and /tmp each), and output kept per call.
    code_interpreter_call_seconds: float = 60.0
    code_interpreter_cpu_seconds: int = 600
    code_interpreter_memory_mb: int = 2048
    code_interpreter_processes: int = 64
    code_interpreter_disk_mb: int = 512
    code_interpreter_output_kb: int = 64
    # Characters of one message's text, and of instructions (either kind).
    max_message_chars: int = 256_000
    max_instructions_chars: int = 256_000
    # Tools of an assistant or run, and tool outputs in one submission.
    max_tools: int = 128
    max_tool_outputs: int = 128
    # Requests per second each API key may make, and the burst it may save up (0 = no limit).
    # Keyless (open) requests are not limited.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # Active runs one project may have at once (429 beyond), one API key (429), and the whole
    # gateway (503). Counted per process.
    max_active_runs_per_project: int = 200
    max_active_runs_per_key: int = 200
    max_active_runs: int = 2000
    # Assistants and threads whose project the process remembers (the most recent), so that
    # most ownership checks cost no trip to the store; each takes about 250 bytes.
    owner_cache_size: int = 10_000

    @property
    def database_path(self) -> Path:
        """The SQLite file named by `database`, which is a path or a sqlite:/// URL."""
        return sqlite_path(self.database)


def is_postgres(database: str) -> bool:
    """The database is a PostgreSQL URL (else a SQLite file)."""
    return database.startswith(("postgresql://", "postgres://"))


def sqlite_path(database: str) -> Path:
    """Turn `./x.db`, `sqlite:///x.db` or `sqlite:////abs/x.db` into a path."""
    if "://" not in database:
        return Path(database)
    scheme, _, rest = database.partition("://")
    if scheme != "sqlite":
        raise SettingsError(
            f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        )
    if not rest.startswith("/") or rest == "/":
        raise SettingsError(
            f"bad SQLite URL {database!r}: write sqlite:///relative.db or sqlite:////abs.db"
        )
    return Path(rest[1:])


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def from_env(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from GATEWAY_* variables, then explicit overrides (flags win over the env)."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is None:
            continue
        values[f.name] = _convert(f.name, raw, type(getattr(Settings(), f.name)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]  # keys come from fields(Settings)
    validate(settings)
    return settings


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        value = raw.strip().lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{env_name(name)}={raw!r} is not a valid boolean (true or false)")
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}") from None


def validate(settings: Settings) -> None:
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port {settings.port} is out of range 0..65535")
    if settings.run_expiry_seconds < 1:
        raise SettingsError("run expiry must be at least 1 second")
    if settings.local_model_delay_ms < 0:
        raise SettingsError("local model delay must not be negative")
    if settings.stream_ping_seconds < 0:
        raise SettingsError("stream ping interval must not be negative")
    if settings.request_timeout_seconds < 0 or settings.peer_timeout_seconds < 0:
        raise SettingsError("request and peer timeouts must not be negative")
    if settings.workers < 1:
        raise SettingsError("workers must be at least 1")
    if settings.workers > 1 and (
        not is_postgres(settings.database) or settings.bus.startswith("memory")
    ):
        raise SettingsError(
            f"--workers {settings.workers} needs a database and an event bus the workers "
            "share: --database postgresql://... and --bus redis://... (SQLite and the memory "
            "bus belong to one process)"
        )
    if settings.lease_seconds < 1:
        raise SettingsError("the run lease must be at least 1 second")
    if settings.event_flush_ms < 0:
        raise SettingsError("the event flush interval must not be negative")
    if settings.poll_after_ms < 0:
        raise SettingsError("poll-after must not be negative")
    if settings.subscriber_buffer < 1:
        raise SettingsError("subscriber buffer must be at least 1")
    for name in (
        "database_busy_ms",
        "database_pool_size",
        "max_body_bytes",
        "max_file_bytes",
        "min_upload_bytes_per_second",
        "embedding_threads",
        "max_message_chars",
        "max_instructions_chars",
        "max_tools",
        "max_tool_outputs",
        "max_active_runs_per_project",
        "max_active_runs_per_key",
        "max_active_runs",
        "owner_cache_size",
        "code_interpreter_sessions",
        "code_interpreter_cpu_seconds",
        "code_interpreter_memory_mb",
        "code_interpreter_processes",
        "code_interpreter_disk_mb",
        "code_interpreter_output_kb",
    ):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{env_name(name)} must be at least 1")
    if settings.rate_limit_per_second < 0 or settings.rate_limit_burst < 1:
        raise SettingsError("the rate limit must not be negative, and its burst at least 1")
    if settings.code_interpreter not in {"auto", "bwrap", "off"}:
        raise SettingsError(
            f"unknown code interpreter {settings.code_interpreter!r}: auto, bwrap or off"
        )
    if settings.code_interpreter_call_seconds <= 0 or settings.code_interpreter_idle_seconds <= 0:
        raise SettingsError("code interpreter call and idle times must be positive")
    if settings.log_format not in {"text", "json"}:
        raise SettingsError(f"unknown log format {settings.log_format!r}: text or json")
    if settings.log_level.lower() not in {"critical", "error", "warning", "info", "debug", "trace"}:
        raise SettingsError(f"unknown log level {settings.log_level!r}")
    if not is_postgres(settings.database):
        sqlite_path(settings.database)
    if settings.bus.partition("://")[0] not in ("memory", "redis", "rediss", "unix"):
        raise SettingsError(f"unsupported bus URL {settings.bus!r}: use memory:// or redis://")
