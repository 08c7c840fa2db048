"""`gateway keys create|list|revoke`: API keys, kept in the gateway's database.

A running server reads the keys again every second, so what these commands change counts
there within that time. The new key is printed once, on stdout alone; only its hash is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import Any

from gateway.auth import KEY_PREFIX, KeyRing, new_key
from gateway.objects import now
from gateway.settings import SettingsError, env_name, from_env
from gateway.store import ApiKey, RunStore, StoreOpenError, StoreTx, open_store

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def database_flag() -> argparse.ArgumentParser:
    """The --database flag, for every level of the command line: `gateway --database X keys
    list`, `gateway keys --database X list` and `gateway keys list --database X` alike (the
    last one given wins)."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help="SQLite file path, sqlite:/// or postgresql:// URL "
        f"(env {env_name('database')}, default ./gateway.db)",
    )
    return shared


def add_key_commands(commands: Any) -> None:
    shared = database_flag()
    keys = commands.add_parser("keys", help="make, list and revoke API keys", parents=[shared])
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser(
        "create", help="make a key for a project and print it once", parents=[shared]
    )
    create.add_argument("--project", required=True, help="the project the key opens")
    actions.add_parser("list", help="every key: id, project, made, revoked", parents=[shared])
    revoke = actions.add_parser(
        "revoke", help="revoke a key; it stops working within a second", parents=[shared]
    )
    revoke.add_argument(
        "key",
        help="the key's id (key_...), as `gateway keys list` shows, or the key itself (gwk_...)",
    )


def run_key_command(args: argparse.Namespace) -> int:
    try:
        settings = from_env(database=getattr(args, "database", None))
        store = open_store(settings.database)
        if args.keys_command == "create":
            if not PROJECT_NAME.fullmatch(args.project):
                raise SettingsError(
                    f"invalid project name {args.project!r}: 1 to 64 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit"
                )
            return asyncio.run(_create(store, args.project))
        if args.keys_command == "list":
            return asyncio.run(_list(store))
        return asyncio.run(_revoke(store, args.key))
    except (SettingsError, StoreOpenError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2


async def _create(store: RunStore, project: str) -> int:
    key, stored = new_key(project)

    async def write(tx: StoreTx) -> None:
        await tx.add_key(stored)

    await _with(store, lambda: store.write(write))
    print(key)
    print(
        f"gateway: made {stored.id} for project {project!r}; the key above is shown only now",
        file=sys.stderr,
    )
    return 0


async def _list(store: RunStore) -> int:
    keys: list[ApiKey] = await _with(store, store.api_keys)
    print(f"{'ID':<28} {'PROJECT':<24} {'MADE (UTC)':<20} REVOKED (UTC)")
    for key in keys:
        revoked = _when(key.revoked_at) if key.revoked_at is not None else "-"
        print(f"{key.id:<28} {key.project:<24} {_when(key.created_at):<20} {revoked}")
    return 0


async def _revoke(store: RunStore, given: str) -> int:
    key_id = given
    if given.startswith(KEY_PREFIX):  # the key itself: its id, once its secret is checked
        keys: list[ApiKey] = await _with(store, store.api_keys)
        stored = KeyRing.match(given, {key.id: key for key in keys})
        if stored is None:
            print(
                "gateway: error: that key is not a live key of this database "
                "(unknown, wrong or revoked)",
                file=sys.stderr,
            )
            return 1
        key_id = stored.id

    async def write(tx: StoreTx) -> bool:
        return await tx.revoke_key(key_id, now())

    if not await _with(store, lambda: store.write(write)):
        print(f"gateway: error: no key {key_id!r} that is not already revoked", file=sys.stderr)
        return 1
    print(f"gateway: revoked {key_id}", file=sys.stderr)
    return 0


async def _with(store: RunStore, work: Any) -> Any:
    await store.open()
    try:
        return await work()
    finally:
        await store.close()


def _when(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))
