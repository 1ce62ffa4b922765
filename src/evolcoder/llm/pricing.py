"""Dollars per request: a dated price table, token counts, and the bounds a hard cap needs.

Why bounds and not just counts: a cap must hold before an answer exists, so it reserves
the worst case of a request. The prompt side of the worst case must hold for *any*
tokenizer, because the endpoint's may be unknown (a vLLM server, a renamed model): every
byte-level BPE or byte-fallback tokenizer spends at least one byte of UTF-8 per token, so
the UTF-8 length of the contents plus a per-message allowance for the chat template's
role and separator tokens is an upper bound. The completion side is `max_tokens`.

Counting (the expected figure) uses `tiktoken` for OpenAI models when it is installed and
its encoding files are already on disk: tiktoken downloads them from
openaipublic.blob.core.windows.net on first use, which fails offline. Without them the
count is the stated approximation of 4 UTF-8 bytes per token (English and code with
OpenAI's cl100k/o200k encodings), always below the bound above.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from evolcoder.errors import ConfigError
from evolcoder.llm.base import ChatRequest

# USD per 1M tokens (input, output), OpenAI list prices for the synchronous API as published
# on openai.com/api/pricing; the Batch API bills half of both. Longest matching prefix wins.
PRICE_TABLE_DATE = "2025-06-01"
PRICES_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4": (30.00, 60.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}
BATCH_DISCOUNT = 0.5
MESSAGE_ALLOWANCE = 8  # tokens a chat template may add per message (role, separators); OpenAI: 3-4
REPLY_ALLOWANCE = 8  # tokens priming the assistant's reply
BYTES_PER_TOKEN = 4.0  # the stated approximation when no tokenizer is available


@dataclass(frozen=True)
class Prices:
    """USD per 1k tokens, online; `source` says where they came from (for messages)."""

    prompt: float
    completion: float
    source: str
    batch_factor: float = 1.0  # what the Batch API bills of the online price (OpenAI: half)

    def usd(self, prompt_tokens: float, completion_tokens: float, batch: bool = False) -> float:
        factor = self.batch_factor if batch else 1.0
        return factor * (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1000.0


def prices(provider: str, model: str, configured: dict[str, float] | None, base_url: str | None = None) -> Prices | None:
    """`llm.price_per_1k` if set, else the table's entry for `model`, else None (unknown).

    An in-process model (provider transformers) costs nothing per token. The batch discount
    is OpenAI's: it applies to table prices and to any price when `base_url` is OpenAI's own
    (null); another endpoint's batches are priced like its online calls.
    """
    openai_itself = provider == "openai" and not base_url
    if configured:
        return Prices(configured.get("prompt", 0.0), configured.get("completion", 0.0), "llm.price_per_1k",
                      BATCH_DISCOUNT if openai_itself else 1.0)
    if provider == "transformers":
        return Prices(0.0, 0.0, "in-process model")
    name = model.rsplit("/", 1)[-1].lower()
    matches = [k for k in PRICES_PER_1M if name == k or name.startswith(k + "-")]
    if not matches:
        return None
    best = max(matches, key=len)
    prompt, completion = PRICES_PER_1M[best]
    return Prices(prompt / 1000.0, completion / 1000.0, f"table {best} ({PRICE_TABLE_DATE})", BATCH_DISCOUNT)


def require_prices(provider: str, model: str, configured: dict[str, float] | None,
                   base_url: str | None = None) -> Prices:
    """Prices for a capped stage: an unknown price cannot be capped, so it is a params error."""
    found = prices(provider, model, configured, base_url)
    if found is None:
        raise ConfigError(f"params: llm.price_per_1k: no price known for model {model!r} and llm.budget_usd "
                          "is set; give llm.price_per_1k: {prompt: USD, completion: USD} per 1k tokens "
                          f"(built-in table of {PRICE_TABLE_DATE}: {', '.join(sorted(PRICES_PER_1M))})")
    return found


def prompt_bound(request: ChatRequest) -> int:
    """Prompt tokens this request cannot exceed under any byte-level tokenizer."""
    return sum(len(content.encode("utf-8")) + MESSAGE_ALLOWANCE for _, content in request.messages) + REPLY_ALLOWANCE


def worst_case_usd(request: ChatRequest, price: Prices, batch: bool = False) -> float:
    """What one request can cost at most: its prompt bound and max_tokens of completion."""
    return price.usd(prompt_bound(request), request.max_tokens, batch)


@functools.lru_cache(maxsize=8)
def _encoding(model: str) -> Any:
    """tiktoken's encoding for an OpenAI model when it is installed and cached on disk, else None."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_for_model(model.rsplit("/", 1)[-1])
    except Exception:  # unknown model, or the encoding file would have to be downloaded
        return None


def tokenizer_name(model: str) -> str:
    enc = _encoding(model)
    return f"tiktoken {enc.name}" if enc is not None else f"approximation: UTF-8 bytes / {BYTES_PER_TOKEN:g}"


def count_tokens(text: str, model: str) -> int:
    """Tokens of `text` for `model`: exact with tiktoken, else the stated approximation."""
    enc = _encoding(model)
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def prompt_tokens(request: ChatRequest, model: str) -> int:
    """Expected prompt tokens of a chat request (OpenAI's 3 per message + 3 for the reply)."""
    return sum(count_tokens(content, model) + 3 for _, content in request.messages) + 3
