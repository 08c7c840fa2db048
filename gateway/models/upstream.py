"""OpenAI-compatible chat-completions upstreams over aiohttp: one shared, pooled session for
every upstream; streamed answers turned into model chunks as they arrive.

Failures before the first token (connection errors, 429, 5xx) are retried with exponential
backoff and jitter (stamina), honouring Retry-After; after the first token a failure ends the
answer, because what the client has seen cannot be taken back. API keys never leave this module
except in the Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.config import UpstreamConfig
from gateway.ids import call_id
from gateway.metrics import Metrics, upstream_wait
from gateway.models.base import (
    ChatMessage,
    Finish,
    ModelBackendError,
    ModelChunk,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
)
from gateway.models.chat import (
    ChunkReader,
    MalformedChunkError,
    estimate_tokens,
    finish_reason,
    request_body,
)
from gateway.models.sse_decoder import SSEDecoder, SSEMessage
from gateway.retrying import retrying

log = logging.getLogger("gateway.upstream")

# Longest Retry-After the gateway waits out; beyond it the run fails at once.
MAX_RETRY_AFTER_SECONDS = 60.0


class UpstreamStatusError(Exception):
    """The upstream answered an error status before streaming anything."""

    def __init__(self, upstream: str, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"upstream '{upstream}' answered HTTP {status}: {detail}")
        self.status = status
        self.retry_after = retry_after


class UpstreamDroppedError(Exception):
    """The upstream closed the connection before its first token."""


def _retry_decision(exc: BaseException) -> bool | float:
    """stamina's backoff hook: whether to retry, or after how many seconds (Retry-After)."""
    if isinstance(exc, UpstreamStatusError):
        if exc.status != 429 and exc.status < 500:
            return False
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= MAX_RETRY_AFTER_SECONDS else False
    return isinstance(exc, aiohttp.ClientConnectionError | UpstreamDroppedError)


@dataclass
class _Opened:
    response: aiohttp.ClientResponse
    decoder: SSEDecoder
    pending: list[SSEMessage]


@dataclass
class ProxiedResponse:
    """An upstream's answer to a forwarded request, streamed back as it arrives."""

    status: int
    content_type: str
    body: AsyncIterator[bytes]
    close: Any  # () -> None: drops the upstream connection if the body was not read to the end


class _Silence:
    """The idle timeout of an upstream's reads: a wait longer than `seconds` is cancelled.

    One timer per `seconds` of a stream rather than one per read: the timer is armed when a
    wait starts and none is armed, and when it fires during a later, shorter wait it re-arms
    for that wait's deadline. (A timeout context per read took 13% of the gateway's CPU with
    100 paced streams, profiled.) It cancels only while a read is waiting, so the cancellation
    lands in that read."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    def waiting(self) -> None:
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self.seconds, self._check)

    def done(self) -> None:
        self._since = None

    def expired(self) -> bool:
        """Whether this cancelled the task (and, if so, takes that cancellation back)."""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() == 0  # else someone else cancelled it too

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._since is None:
            return  # not waiting now: the next wait arms the timer again
        deadline = self._since + self.seconds
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check)
        elif self._task is not None:
            self._fired = True
            self._task.cancel()


class OpenAICompatibleBackend:
    """A `ModelBackend` for one configured upstream."""

    def __init__(
        self, config: UpstreamConfig, session: aiohttp.ClientSession, metrics: Metrics
    ) -> None:
        self.config = config
        self._session = session
        self._metrics = metrics
        self._url = config.base_url + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._timeout = aiohttp.ClientTimeout(sock_connect=config.connect_timeout)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return estimate_tokens(messages)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelChunk, None]:
        body = orjson.dumps(request_body(request, stream=True))
        opened = await self._open_with_retries(body)
        reader = ChunkReader()
        errors = self._metrics.upstream_errors
        done = finished = False
        try:
            # The messages read while opening, then those of each read as it comes: one level
            # of async generator per chunk (this one), not two.
            for message in opened.pending:
                if message.data.startswith("[DONE]"):
                    done = True
                    break
                for chunk in self._chunks(message, reader):
                    yield chunk
            if not done:
                async with contextlib.aclosing(self._reads(opened.response)) as reads:
                    async for data in reads:
                        for message in opened.decoder.feed(data):
                            if message.data.startswith("[DONE]"):
                                done = True
                                break
                            for chunk in self._chunks(message, reader):
                                yield chunk
                        if done:
                            break
            if not done and reader.finish_reason is None:
                raise ModelBackendError(
                    f"Upstream '{self.config.name}' ended its stream before the answer finished."
                )
            finished = True
            yield self._finish(request, reader)
        except ModelBackendError:
            errors.labels(self.config.name, "mid_stream").inc()
            raise
        finally:
            if finished:
                opened.response.release()
            else:
                # Cancelled or failed mid-answer: close the connection so the upstream stops.
                opened.response.close()

    def _finish(self, request: ModelRequest, reader: ChunkReader) -> Finish:
        reason = finish_reason(reader.finish_reason)
        prompt = reader.prompt_tokens
        completion = reader.completion_tokens
        return Finish(
            reason,
            prompt if prompt is not None else estimate_tokens(request.messages),
            completion if completion is not None else (reader.completion_chars + 3) // 4,
        )

    def _chunks(self, message: SSEMessage, reader: ChunkReader) -> list[TextChunk | ToolCallChunk]:
        try:
            return reader.read(orjson.loads(message.data), call_id)
        except (orjson.JSONDecodeError, MalformedChunkError) as exc:
            raise ModelBackendError(
                f"Upstream '{self.config.name}' sent a malformed chunk ({exc})."
            ) from None

    async def _reads(self, response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        """The response body as it arrives, failing when the upstream stays silent too long."""
        idle = self.config.idle_timeout
        silence = _Silence(idle)
        try:
            while True:
                silence.waiting()
                try:
                    data = await response.content.readany()
                except asyncio.CancelledError:
                    if silence.expired():
                        raise ModelBackendError(
                            f"Upstream '{self.config.name}' sent nothing for {idle:g} s."
                        ) from None
                    raise
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    raise ModelBackendError(
                        f"Upstream '{self.config.name}' closed the stream before the answer "
                        "finished."
                    ) from None
                finally:
                    silence.done()
                if not data:
                    return
                yield data
        finally:
            silence.close()

    async def _open_with_retries(self, body: bytes) -> _Opened:
        try:
            async for attempt in retrying(
                f"upstream '{self.config.name}'",
                on=_retry_decision,
                attempts=self.config.max_retries + 1,
                wait_initial=0.5,
                wait_max=8.0,
                jitter=0.5,
            ):
                with attempt:
                    return await self._open(body)
        except UpstreamStatusError as exc:
            self._metrics.upstream_errors.labels(self.config.name, f"http_{exc.status}").inc()
            code = "rate_limit_exceeded" if exc.status == 429 else "server_error"
            message = str(exc)
            raise ModelBackendError(
                message if message.endswith(".") else message + ".", code=code
            ) from None
        except TimeoutError:
            self._metrics.upstream_errors.labels(self.config.name, "first_byte_timeout").inc()
            raise ModelBackendError(
                f"Upstream '{self.config.name}' did not start answering within "
                f"{self.config.first_byte_timeout:g} s."
            ) from None
        except (aiohttp.ClientConnectionError, UpstreamDroppedError) as exc:
            self._metrics.upstream_errors.labels(self.config.name, "connection").inc()
            raise ModelBackendError(
                f"Could not reach upstream '{self.config.name}': {exc.__class__.__name__}."
            ) from None
        raise AssertionError("unreachable: stamina returns or raises")

    async def _open(self, body: bytes) -> _Opened:
        """Send the request and read up to the first chunk that carries something."""
        sent = time.monotonic()
        async with asyncio.timeout(self.config.first_byte_timeout):
            response = await self._session.post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            )
            try:
                if response.status != 200:
                    raise UpstreamStatusError(
                        self.config.name,
                        response.status,
                        _redact(await _error_detail(response), self.config.api_key),
                        _retry_after(response.headers),
                    )
                decoder = SSEDecoder()
                while True:
                    try:
                        data = await response.content.readany()
                    except aiohttp.ClientPayloadError as exc:
                        raise UpstreamDroppedError(str(exc)) from None
                    if not data:
                        raise UpstreamDroppedError("the stream ended before any chunk")
                    pending = decoder.feed(data)
                    if pending:
                        self._metrics.upstream_first_byte.labels(self.config.name).observe(
                            time.monotonic() - sent
                        )
                        return _Opened(response, decoder, pending)
            except BaseException:
                response.close()
                raise

    async def proxy(self, body: bytes) -> ProxiedResponse:
        """Forward a chat-completions request body unchanged; stream the answer back."""
        config = self.config
        sent = time.monotonic()
        try:
            async with asyncio.timeout(config.first_byte_timeout):
                response = await self._session.post(
                    self._url, data=body, headers=self._headers, timeout=self._timeout
                )
        except TimeoutError:
            raise ModelBackendError(
                f"Upstream '{config.name}' did not answer within {config.first_byte_timeout:g} s."
            ) from None
        except aiohttp.ClientError as exc:
            raise ModelBackendError(
                f"Could not reach upstream '{config.name}': {exc.__class__.__name__}."
            ) from None

        waited = upstream_wait.get()
        if waited is not None:
            waited.seconds += time.monotonic() - sent
        if response.status != 200:
            # An error body is small and may quote our key back: read it whole and redact it.
            try:
                raw = await response.read()
            finally:
                response.release()
            text = _redact(raw.decode("utf-8", errors="replace"), config.api_key)

            async def error_body() -> AsyncIterator[bytes]:
                yield text.encode()

            return ProxiedResponse(
                status=response.status,
                content_type=response.headers.get("Content-Type", "application/json"),
                body=error_body(),
                close=response.close,
            )

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for data in self._reads(response):
                    yield data
            finally:
                response.close()

        return ProxiedResponse(
            status=response.status,
            content_type=response.headers.get("Content-Type", "application/json"),
            body=chunks(),
            close=response.close,
        )

    async def list_models(self) -> list[str]:
        """The model ids the upstream lists (GET /models), or [] when it cannot tell us."""
        config = self.config
        headers = {k: v for k, v in self._headers.items() if k != "Accept"}
        try:
            async with (
                asyncio.timeout(config.connect_timeout),
                self._session.get(config.base_url + "/models", headers=headers) as response,
            ):
                if response.status != 200:
                    return []
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            log.warning("upstream '%s' did not list its models", config.name)
            return []
        data = payload.get("data") if isinstance(payload, dict) else None
        return [m["id"] for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def embeddings(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """Each text's embedding from the upstream's POST /embeddings, in order. Connection
        errors, 429 and 5xx are retried as a run's first call is; then ModelBackendError."""
        config = self.config
        body = orjson.dumps({"model": model, "input": list(texts), "encoding_format": "float"})
        headers = {**self._headers, "Accept": "application/json"}
        try:
            async for attempt in retrying(
                f"upstream '{config.name}' embeddings",
                on=_retry_decision,
                attempts=config.max_retries + 1,
                wait_initial=0.5,
                wait_max=8.0,
                jitter=1.0,  # stamina's default
            ):
                with attempt:
                    async with (
                        asyncio.timeout(config.connect_timeout + config.first_byte_timeout),
                        self._session.post(
                            config.base_url + "/embeddings", data=body, headers=headers
                        ) as response,
                    ):
                        if response.status != 200:
                            detail = _redact(await _error_detail(response), config.api_key)
                            raise UpstreamStatusError(
                                config.name, response.status, detail, _retry_after(response.headers)
                            )
                        payload = await response.json(content_type=None)
        except UpstreamStatusError as exc:
            raise ModelBackendError(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            message = f"upstream '{config.name}' embeddings failed: {type(exc).__name__}"
            raise ModelBackendError(message) from None
        return _vectors(payload, len(texts), config.name)


def _vectors(payload: Any, count: int, upstream: str) -> list[list[float]]:
    """The embeddings of an /embeddings answer, by their `index`; a malformed one is an error."""
    data = payload.get("data") if isinstance(payload, dict) else None
    vectors: list[list[float] | None] = [None] * count
    for item in data if isinstance(data, list) else ():
        index = item.get("index") if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(index, int) and 0 <= index < count and isinstance(vector, list):
            vectors[index] = [float(x) for x in vector]
    if any(v is None for v in vectors):
        raise ModelBackendError(f"upstream '{upstream}' answered embeddings without every input")
    return [v for v in vectors if v is not None]


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The upstream's error message, short and without anything we sent."""
    with contextlib.suppress(Exception):
        payload = await response.json(content_type=None)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    return response.reason or "no detail"


def _redact(text: str, secret: str | None) -> str:
    """The text with our key taken out: upstreams quote a wrong key back in their 401s."""
    return text.replace(secret, "***") if secret else text


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


class UpstreamPool:
    """Owns the one aiohttp session shared by every upstream, and their backends."""

    def __init__(self, upstreams: Sequence[UpstreamConfig], metrics: Metrics) -> None:
        self._configs = list(upstreams)
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self.backends: dict[str, OpenAICompatibleBackend] = {}

    async def open(self) -> None:
        if not self._configs:
            return
        connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        for config in self._configs:
            self.backends[config.name] = OpenAICompatibleBackend(
                config, self._session, self._metrics
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
