"""API keys and the projects they open.

A key reads `gwk_<id>_<secret>`. The store keeps its id, its project and a SHA-256 of the
secret, never the secret; the key is shown once, when it is made. A request's key is found by
its id and its secret compared in constant time (`hmac.compare_digest`).

`KeyRing` is the server's view of the stored keys, read again every `refresh_seconds`, so a key
made or revoked with `gateway keys` from another process counts within that time. The server
is open (no key needed; every object in the empty project) only while no key was ever made:
revoking every key locks the API rather than opening it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from gateway.ids import new_id
from gateway.objects import now
from gateway.periodic import Periodic
from gateway.store import ApiKey, RunStore

log = logging.getLogger("gateway.auth")

KEY_PREFIX = "gwk_"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key(project: str) -> tuple[str, ApiKey]:
    """A new key for `project`: the key to show once, and what to store of it."""
    key_id = new_id("key_")
    secret = secrets.token_urlsafe(32)
    stored = ApiKey(key_id, project, hash_secret(secret), now(), None)
    return f"{KEY_PREFIX}{key_id.removeprefix('key_')}_{secret}", stored


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a key in the gateway's format, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    short_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not short_id or not secret:
        return None
    return "key_" + short_id, secret


class KeyRing:
    def __init__(self, store: RunStore, *, refresh_seconds: float = 1.0) -> None:
        self.store = store
        self._keys: dict[str, ApiKey] = {}
        self._refresher = Periodic(
            "key-ring-refresh",
            refresh_seconds,
            self.refresh,
            "could not read the API keys; keeping the ones read before",
        )

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> None:
        self._keys = {key.id: key for key in await self.store.api_keys()}

    @property
    def open(self) -> bool:
        """No key was ever made: the API needs none."""
        return not self._keys

    def key_for(self, key: str) -> ApiKey | None:
        """The stored key `key` is, or None for a key that is unknown, wrong or revoked."""
        return self.match(key, self._keys)

    @staticmethod
    def match(key: str, keys: dict[str, ApiKey]) -> ApiKey | None:
        """The key of `keys` (by id) that `key` is, or None for one unknown, wrong or revoked."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        stored = keys.get(key_id)
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(hash_secret(secret), stored.hash):
            return None
        return stored
