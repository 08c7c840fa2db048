"""Command line: `gateway serve [flags]` runs the server under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import socket
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.cli_keys import add_key_commands, database_flag, run_key_command
from gateway.config import GatewayConfig
from gateway.config_file import ConfigError, load_config
from gateway.settings import Settings, SettingsError, env_name, from_env, sqlite_path
from gateway.store import StoreOpenError, is_postgres, open_store
from gateway.store.sqlite_check import count_keys_in_file

DEFAULTS = Settings()


def _parser() -> argparse.ArgumentParser:
    shared = database_flag()
    parser = argparse.ArgumentParser(
        prog="gateway", description="Assistants Gateway", parents=[shared]
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server", parents=[shared])

    def flag(name: str, kind: type, help_: str) -> None:
        default = getattr(DEFAULTS, name)
        shown = "none" if default in ("", None) else default
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"{help_} (env {env_name(name)}, default {shown})",
        )

    flag("host", str, "address to listen on")
    serve.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="listen on an address other than loopback although no API key exists "
        f"(env {env_name('insecure')})",
    )
    flag("port", int, "port to listen on")
    flag("workers", int, "processes serving the port (needs postgresql:// and redis://)")
    serve.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's socket
    flag("bus", str, "event bus: memory://, or redis://HOST:PORT/DB for several processes")
    flag("log_level", str, "critical, error, warning, info or debug")
    flag("log_format", str, "text, or json: one JSON object per line")
    flag("config", str, "routing configuration file (TOML) naming model upstreams")
    flag("run_expiry_seconds", int, "seconds before an active run expires")
    flag("local_model_delay_ms", float, "pause between the local model's tokens, 0 = none")
    flag("stream_ping_seconds", float, "keep-alive comment interval on event streams, 0 = none")
    flag("code_interpreter", str, "auto (a bwrap sandbox when it works), bwrap, or off")
    flag("cors_origins", str, "origins allowed to call from a browser, comma-separated, * = any")
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        return run_key_command(args)
    try:
        flags = {k: v for k, v in vars(args).items() if k not in ("command", "fd")}
        flags.setdefault("database", None)
        if args.fd is not None:
            flags["workers"] = 1  # a worker of `--workers N`: serve the socket it was given
        settings = from_env(**flags)
        config = load_config(settings.config) if settings.config else GatewayConfig()
        if args.fd is not None:  # a worker: its supervisor checked the database and exposure
            sock = _inherited(args.fd)
        else:
            sock = _bind(settings.host, settings.port)
            try:
                keys = _check_database(settings)
                _check_bus(settings)
                _check_sandbox(settings, config)
                _check_exposure(settings, keys)
            except SettingsError:
                sock.close()
                raise
    except (SettingsError, ConfigError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return _supervise(settings, sock, list(argv if argv is not None else sys.argv[1:]))
    return _serve(settings, config, sock)


def _inherited(fd: int) -> socket.socket:
    return socket.socket(fileno=fd)


def _supervise(settings: Settings, sock: socket.socket, argv: list[str]) -> int:
    from gateway.engine.leases import default_owner
    from gateway.logs import configure as configure_logging
    from gateway.workers import Supervisor

    configure_logging(settings.log_level, settings.log_format)
    serve = argv[argv.index("serve") + 1 :]
    child: list[str] = []
    skip = False
    for item in serve:  # the children's flags: these, without --workers
        if skip:
            skip = False
            continue
        if item == "--workers":
            skip = True
            continue
        if not item.startswith("--workers="):
            child.append(item)
    owner = settings.worker_id or default_owner(sock.getsockname()[1])
    supervisor = Supervisor(
        child, sock, settings.workers, owner=owner, grace=settings.shutdown_grace_seconds
    )
    return supervisor.run()


def _check_exposure(settings: Settings, keys: int) -> None:
    """Without any API key the API is open: serve it on loopback only, unless told otherwise."""
    if keys or settings.insecure or _is_loopback(settings.host):
        return
    raise SettingsError(
        f"refusing to listen on {settings.host} with no API key: anyone reaching it could use "
        "the API. Make a key with `gateway keys create --project NAME`, listen on 127.0.0.1, "
        "or pass --insecure"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_database(settings: Settings) -> int:
    """Open the database file once for writing, so that a bad path is one line, not a traceback;
    returns how many API keys it holds (revoked ones included).

    (The server opens it again through aiosqlite inside the event loop, where a failure could
    only surface as uvicorn's startup traceback.)
    """
    if is_postgres(settings.database):
        return asyncio.run(_count_keys(settings.database))
    path = sqlite_path(settings.database).resolve()
    folder = path.parent
    if not folder.is_dir():
        raise SettingsError(
            f"cannot use database {str(path)!r}: folder {str(folder)!r} does not exist"
        )
    try:
        return count_keys_in_file(path)
    except StoreOpenError as exc:
        raise SettingsError(f"cannot use database {str(path)!r}: {exc}") from None


def _check_sandbox(settings: Settings, config: GatewayConfig) -> None:
    """With `--code-interpreter bwrap`, a sandbox that does not work here is one line at
    start (with `auto` the server starts and says so in its log)."""
    from gateway.app import code_mode_of, sandbox_limits
    from gateway.sandbox.kernel import probe

    if code_mode_of(settings, config) != "bwrap":
        return
    reason = asyncio.run(probe(sandbox_limits(settings)))
    if reason is not None:
        raise SettingsError(f"--code-interpreter bwrap: the sandbox does not work here: {reason}")


def _check_bus(settings: Settings) -> None:
    """Reach the bus once before serving, so that an unreachable Redis is one line at start
    rather than a ready server whose runs all answer 503."""
    from gateway.bus import BusUnavailableError, open_bus

    try:
        bus = open_bus(settings.bus, subscriber_buffer=settings.subscriber_buffer)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None

    async def check() -> None:
        try:
            await bus.check()
        finally:
            await bus.close()

    try:
        asyncio.run(check())
    except BusUnavailableError as exc:
        raise SettingsError(str(exc)) from None


async def _count_keys(database: str) -> int:
    """Reach the database and apply its migrations once, before serving."""
    store = open_store(database)
    try:
        await store.open()
        return len(await store.api_keys())
    except StoreOpenError as exc:
        raise SettingsError(str(exc)) from None
    finally:
        await store.close()


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so that a busy port is one clear line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise SettingsError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _serve(settings: Settings, config: GatewayConfig, sock: socket.socket) -> int:
    from gateway.logs import configure as configure_logging
    from gateway.serving import build_server, tune_gc

    configure_logging(settings.log_level, settings.log_format)
    server = build_server(settings, config=config)
    _announce(settings, config, sock)
    tune_gc()
    server.run(sockets=[sock])
    # uvicorn exits with 3 when startup (the lifespan: opening the database) failed.
    return 0 if server.started else 3


def _announce(settings: Settings, config: GatewayConfig, sock: socket.socket) -> None:
    """Where the server listens and what it serves with, in a few lines of the log."""
    import logging
    from urllib.parse import urlsplit, urlunsplit

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    database = settings.database
    if is_postgres(database):  # without its password
        parts = urlsplit(database)
        database = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    routes = [f"{u.name} ({', '.join(u.models)})" for u in config.upstreams]
    default = config.default_route
    fallback = "the built-in model" if default == "local" else default
    routes.append(f"any other: {fallback}" if routes else f"every model: {fallback}")
    log = logging.getLogger("gateway")
    log.info("serving the API at %s/v1 (the openai SDK's base_url)", base)
    log.info("playground: %s/playground", base)
    log.info("database: %s; bus: %s", database, settings.bus)
    log.info("models: %s", "; ".join(routes))


if __name__ == "__main__":
    sys.exit(main())
