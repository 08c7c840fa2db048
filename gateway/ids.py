"""OpenAI-style object ids: a prefix and 24 random base62 characters."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 24


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


def assistant_id() -> str:
    return new_id("asst_")


def thread_id() -> str:
    return new_id("thread_")


def message_id() -> str:
    return new_id("msg_")


def run_id() -> str:
    return new_id("run_")


def step_id() -> str:
    return new_id("step_")


def call_id() -> str:
    return new_id("call_")
