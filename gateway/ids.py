"""OpenAI-style object ids: a prefix and 24 random base62 characters."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 24


def new_id(prefix: str) -> str:
    # One read of 18 random bytes (144 bits) written in base 62: 24 characters cover 142.9 bits,
    # so the leftover bias is negligible, at a fraction of the cost of 24 secrets.choice calls.
    number = int.from_bytes(secrets.token_bytes(18), "big")
    chars = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)


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


def file_id() -> str:
    return new_id("file-")


def upload_id() -> str:
    return new_id("upload_")


def part_id() -> str:
    return new_id("part_")


def vector_store_id() -> str:
    return new_id("vs_")


def file_batch_id() -> str:
    return new_id("vsfb_")
