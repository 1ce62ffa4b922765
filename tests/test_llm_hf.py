"""The in-process transformers provider on a tiny model built on the fly (never the hub)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tinymodel import build_tiny_model

from evolcoder.config import LLMConfig
from evolcoder.llm.base import ChatRequest
from evolcoder.llm.client import make_client
from evolcoder.llm.hf_provider import (EXAMPLE_INSTRUCTION, EXAMPLE_RESPONSE, PLAIN_FORMAT, RESPONSE_MARKER,
                                       STOP_MARKER, HFProvider, cut_at_stop, plain_prompt)


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat"), chat_template=True, layers=1, hidden=128)


def _reqs(n: int, **kw) -> list[ChatRequest]:
    kw.setdefault("max_tokens", 8)
    return [ChatRequest.user(f"Write a function that adds {i} to a number.", **kw) for i in range(n)]


async def _gather(provider: HFProvider, requests: list[ChatRequest]):
    return await asyncio.gather(*(provider.complete(r) for r in requests))


def test_concurrent_requests_are_micro_batched_and_reproducible(tiny_model_dir: Path) -> None:
    provider = HFProvider(str(tiny_model_dir), batch_size=4)
    first = asyncio.run(_gather(provider, _reqs(6)))
    assert provider.batches == [4, 2]
    again = asyncio.run(_gather(HFProvider(str(tiny_model_dir), batch_size=4), _reqs(6)))
    assert [c.text for c in first] == [c.text for c in again]
    for c in first:
        assert 1 <= c.completion_tokens <= 8 and c.prompt_tokens > 20
        assert c.finish_reason in ("stop", "length")


def test_batches_group_requests_by_sampling_settings(tiny_model_dir: Path) -> None:
    provider = HFProvider(str(tiny_model_dir), batch_size=8)
    mixed = _reqs(3, temperature=0.0) + _reqs(3, temperature=1.0, seed=5)
    asyncio.run(_gather(provider, mixed))
    assert sorted(provider.batches) == [3, 3]


def test_base_model_gets_a_worked_example_and_stops_at_the_next_one(tiny_model_dir: Path) -> None:
    provider = HFProvider(str(tiny_model_dir))
    assert not provider.has_chat_template
    prompt = provider.build_prompt(ChatRequest(messages=(("system", "You write Python."), ("user", "Sort a list."))))
    assert prompt.startswith("You write Python.") and prompt.count(STOP_MARKER) == 2
    assert prompt.endswith(f"{STOP_MARKER}\nSort a list.\n\n### Response:\n")
    assert f"{EXAMPLE_INSTRUCTION}\n\n### Response:\n{EXAMPLE_RESPONSE}" in prompt
    assert plain_prompt((("user", "x"),)).endswith(f"{STOP_MARKER}\nx\n\n### Response:\n")
    assert cut_at_stop("def f(): pass\n\n### Instruction:\nnext", (STOP_MARKER,)) == ("def f(): pass\n\n", True)
    assert cut_at_stop("no marker", (STOP_MARKER,)) == ("no marker", False)
    rewrite = "Sort a list of tuples by their second item.\n\n### Response:\nsorted(xs, key=...)"
    assert cut_at_stop(rewrite, (STOP_MARKER, RESPONSE_MARKER)) == (
        "Sort a list of tuples by their second item.\n\n", True), "a rewrite must not run on into an answer"


def test_chat_model_uses_its_chat_template(chat_model_dir: Path) -> None:
    provider = HFProvider(str(chat_model_dir))
    assert provider.has_chat_template
    prompt = provider.build_prompt(ChatRequest.user("Sort a list."))
    assert prompt == "<|im_start|>user\nSort a list.<|im_end|>\n<|im_start|>assistant\n"
    [completion] = asyncio.run(_gather(provider, _reqs(1)))
    assert completion.prompt_tokens < 30  # no worked example around a chat prompt


def test_event_loop_keeps_running_during_generation(chat_model_dir: Path) -> None:
    provider = HFProvider(str(chat_model_dir), batch_size=2)
    ticks = 0

    async def go():
        nonlocal ticks
        task = asyncio.ensure_future(_gather(provider, _reqs(2, max_tokens=48)))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.002)
        return task.result()

    asyncio.run(go())
    assert ticks > 5


def test_through_the_client_a_rerun_generates_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = LLMConfig(provider="transformers", model=str(tiny_model_dir), concurrency=4,
                    cache=str(tmp_path / "cache.sqlite"))

    async def run():
        client = make_client(cfg, stage="hf")
        try:
            results = await asyncio.gather(*(client.complete(r) for r in _reqs(5)))
            return results, list(client.provider.batches), client.usage()
        finally:
            await client.aclose()

    first, batches1, usage1 = asyncio.run(run())
    second, batches2, usage2 = asyncio.run(run())
    assert sum(batches1) == 5 and batches2 == []
    assert usage1["dtype"] == usage2["dtype"] in ("float32", "bfloat16"), "the round stats record the dtype"
    assert usage1["requests"] == 5 and usage2["requests"] == 0 and usage2["cache_hits"] == 5
    assert [r.text for r in first] == [r.text for r in second]


def test_materialised_model_dir_is_followed_and_its_hash_keys_the_cache(tmp_path: Path,
                                                                        tiny_model_dir: Path) -> None:
    from evolcoder.hf.models import materialize

    info = materialize(str(tiny_model_dir), tmp_path / "base")
    provider = HFProvider(str(tmp_path / "base"))
    fmt = "" if provider.has_chat_template else f"|{PLAIN_FORMAT}"
    assert provider.model == f"{tmp_path / 'base'}#{info['sha256'][:16]}{fmt}|{provider.dtype}"
    [completion] = asyncio.run(_gather(provider, _reqs(1)))
    assert completion.completion_tokens >= 1


def test_stop_criterion_stops_only_rows_whose_generated_text_has_the_marker(tiny_model_dir: Path) -> None:
    import torch

    from evolcoder.hf.generation import Prompt, RowStop

    provider = HFProvider(str(tiny_model_dir))
    tok = provider._tok
    prompt = tok(f"{STOP_MARKER}\nSort a list.\n\n### Response:\n", return_tensors="pt")["input_ids"][0]
    done = tok("def f():\n    pass\n\n### Instruction:\n", return_tensors="pt")["input_ids"][0]
    going = tok("def f():\n    return sorted(x)\n", return_tensors="pt")["input_ids"][0]
    width = max(len(done), len(going))
    pad = tok.pad_token_id
    rows = [torch.cat([prompt, torch.full((width - len(t),), pad), t]) for t in (done, going)]
    stops = Prompt("", (STOP_MARKER,))
    criterion = RowStop(tok, [stops, stops], len(prompt), tail=width)
    assert criterion(torch.stack(rows), None).tolist() == [True, False]
    assert criterion.stopped_at == [(width, "stop"), None]
    alone = RowStop(tok, [stops], len(prompt))
    assert alone(prompt.unsqueeze(0), None).tolist() == [False], "the prompt's own marker must not count"


def test_the_resolved_dtype_keys_the_cache(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Numerics decide the texts: a completion cached in bf16 is never served to an fp32 run."""
    cache = str(tmp_path / "cache.sqlite")

    async def run(dtype: str):
        cfg = LLMConfig(provider="transformers", model=str(tiny_model_dir), concurrency=4, cache=cache,
                        dtype=dtype)
        client = make_client(cfg, stage="hf")
        try:
            await asyncio.gather(*(client.complete(r) for r in _reqs(2)))
            return client.provider.model, client.usage()
        finally:
            await client.aclose()

    bf16_name, bf16 = asyncio.run(run("bfloat16"))
    fp32_name, fp32 = asyncio.run(run("float32"))
    again_name, again = asyncio.run(run("float32"))
    assert bf16_name.endswith("|bfloat16") and fp32_name.endswith("|float32")
    assert (bf16["requests"], fp32["requests"], again["requests"]) == (2, 2, 0)
    assert (bf16["dtype"], fp32["dtype"]) == ("bfloat16", "float32")
