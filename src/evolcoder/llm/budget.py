"""`llm.budget_usd`: a hard dollar cap on one stage's new calls, held by reservations.

Why reservations: with hundreds of requests in flight, counting dollars only when answers
arrive lets the in-flight ones overshoot the cap. Each request (or batch) instead reserves
its worst case before it is sent (`pricing.worst_case_usd`) and releases the difference
when its real usage is known, so `spent + reserved` never passes the cap, whatever is in
flight. A request that failed releases its whole reservation (failed calls are not billed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from evolcoder.config import LLMConfig
from evolcoder.errors import DollarCapReached
from evolcoder.llm.base import ChatRequest, Completion
from evolcoder.llm.pricing import Prices, require_prices, worst_case_usd


@dataclass
class Budget:
    """What one stage may still spend; thread-safe so worker threads may share it."""

    cap_usd: float
    price: Prices
    stage: str = ""
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    paid_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, cfg: LLMConfig, stage: str = "") -> "Budget | None":
        if cfg.budget_usd is None:
            return None
        return cls(cfg.budget_usd, require_prices(cfg.provider, cfg.model, cfg.price_per_1k, cfg.base_url), stage)

    def reserve(self, requests: list[ChatRequest], batch: bool = False) -> float:
        """Reserve the worst case of `requests` or stop the stage (exit 3) before they are sent."""
        need = sum(worst_case_usd(r, self.price, batch) for r in requests)
        with self._lock:
            if self.spent_usd + self.reserved_usd + need > self.cap_usd + 1e-12:
                raise DollarCapReached(self._stop_message(need, len(requests)))
            self.reserved_usd += need
        return need

    def settle(self, reserved: float, completions: list[Completion], batch: bool = False,
               fallback: float | None = None) -> float:
        """Release a reservation and charge what was really used (the reservation when usage is unknown)."""
        cost = 0.0
        for c in completions:
            if c.prompt_tokens or c.completion_tokens:
                cost += self.price.usd(c.prompt_tokens, c.completion_tokens, batch)
            else:
                cost += (fallback if fallback is not None else reserved / max(1, len(completions)))
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved)
            self.spent_usd += min(cost, reserved) if reserved else cost
            self.paid_requests += len(completions)
        return cost

    def release(self, reserved: float) -> None:
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved)

    def _stop_message(self, need: float, count: int) -> str:
        what = "the next request" if count == 1 else f"the next batch of {count} requests"
        return (f"llm.budget_usd={self.cap_usd:g} reached in stage {self.stage or '?'}: spent ${self.spent_usd:.4f} "
                f"on {self.paid_requests} requests (${self.reserved_usd:.4f} more reserved in flight); {what} "
                f"could cost up to ${need:.4f} ({self.price.source}). Nothing was written; every answered "
                "request is cached; raise llm.budget_usd and re-run to continue.")
