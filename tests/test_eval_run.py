"""`evolcoder.eval.run.evaluate_model` as a library call, the endpoint backend built through
`make_client`, the language registry and the one provenance block.

The endpoint tests use the real `openai` client over HTTP against the loopback server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import FakeServer

from evolcoder.config import EvalConfig, GenerateConfig, LLMConfig, SandboxConfig, build
from evolcoder.errors import BudgetExhausted, ConfigError
from evolcoder.eval.problems import load_benchmark

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"public datasets not found at {DATA}")


@pytest.fixture(scope="module")
def humaneval():
    return load_benchmark("humaneval")


def _responder(humaneval):
    by_prompt = {p.prompt: p for p in humaneval.problems}

    def respond(messages: list[dict]) -> str:
        problem = by_prompt[messages[-1]["content"]]
        body = problem.canonical_solution if problem.task_id.endswith(("/0", "/2")) else "    return None\n"
        return body + "\n\ndef unused():\n    pass\n"

    return respond


def _gen(server: FakeServer, **values) -> GenerateConfig:
    return build(GenerateConfig, {"backend": "openai", "base_url": server.base_url, "api_model": "served",
                                  "max_new_tokens": 512, "mode": "completion", **values}, "generate")


def test_evaluate_model_writes_what_it_returns(humaneval, tmp_path: Path) -> None:
    from evolcoder.eval.run import evaluate_model

    lines: list[str] = []
    with FakeServer(responder=_responder(humaneval)) as server:
        cfg = build(EvalConfig, {"benchmarks": ["humaneval"], "limit": 3, "ks": [1]}, "eval")
        llm = build(LLMConfig, {"cache": str(tmp_path / "cache.sqlite"), "price_per_1k": {"prompt": 1.0,
                                                                                         "completion": 2.0}}, "llm")
        result = evaluate_model("served", _gen(server), cfg, llm=llm, sandbox=SandboxConfig(workers=2),
                                out_dir=tmp_path / "out", metrics_path=tmp_path / "m.json", log=lines.append)
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(result))
    assert result["humaneval"]["per_task_pass@1"] == [1.0, 0.0, 1.0]
    assert result["humaneval"]["pass@1"] == pytest.approx(2 / 3, abs=1e-6)
    prov = result["provenance"]
    assert (prov["mode"], prov["prompt_style"], prov["backend"], prov["greedy"]) == \
        ("completion", "completion", "openai", True)
    assert "decoding" not in prov and prov["versions"]["evolcoder"]
    assert prov["runs"]["humaneval"]["llm"]["est_cost"] > 0, "llm.price_per_1k reaches the eval's client"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["humaneval.results.jsonl",
                                                                     "humaneval.samples.jsonl"]
    assert lines and lines[0].startswith("eval/finetuned: humaneval: pass@1 0.6667")
    assert not list(tmp_path.glob(".out.*")) and not list((tmp_path / "journal").glob("*.jsonl"))


def test_a_bad_model_path_fails_before_any_output(tmp_path: Path) -> None:
    from evolcoder.eval.run import evaluate_model

    gen = build(GenerateConfig, {"backend": "hf"}, "generate")
    cfg = build(EvalConfig, {"benchmarks": ["humaneval"], "limit": 1}, "eval")
    with pytest.raises(ConfigError, match="model .*nope: directory not found"):
        evaluate_model(str(tmp_path / "nope"), gen, cfg, out_dir=tmp_path / "out", metrics_path=tmp_path / "m.json",
                       llm=build(LLMConfig, {"cache": str(tmp_path / "c.sqlite")}, "llm"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_endpoint_backend_keeps_llm_max_calls(humaneval, tmp_path: Path) -> None:
    """The eval's client comes from `make_client`: `llm.max_calls` caps its paid calls too."""
    from evolcoder.eval.backends import make_backend
    from evolcoder.eval.generate import generate_samples

    with FakeServer(responder=_responder(humaneval)) as server:
        gen = _gen(server, concurrency=1)
        llm = build(LLMConfig, {"max_calls": 2, "cache": str(tmp_path / "cache.sqlite")}, "llm")
        backend = make_backend(gen, "served", llm=llm, cache_path=tmp_path / "cache.sqlite", stage="eval")
        with pytest.raises(BudgetExhausted, match="llm.max_calls=2 paid calls reached in stage eval"):
            generate_samples(humaneval.problems[:4], backend, gen, "completion")
        assert server.count("/v1/completions") == 2


def test_language_registry_is_what_prompts_postprocess_and_execute_read() -> None:
    from evolcoder.eval import execute, postprocess, prompts
    from evolcoder.eval.generate import stops_for
    from evolcoder.eval.languages import LANGUAGES
    from evolcoder.suites import MULTIPL_E_LANGUAGES

    assert set(LANGUAGES) == {"python", *MULTIPL_E_LANGUAGES}
    assert postprocess.FENCE_TAGS == {n: lang.fences for n, lang in LANGUAGES.items()}
    assert postprocess.COMPLETION_STOPS == ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
    assert prompts.LANGUAGE_NAMES["cpp"] == "C++" and "python" not in prompts.LANGUAGE_NAMES
    cpp = load_benchmark("multipl-e-cpp").problems[0]
    assert stops_for(cpp, "completion", ["END"]) == ("\n}", "END") and stops_for(cpp, "instruct") == ()
    job = execute._job(cpp, "int main() {}", 5.0)
    assert job["files"] == {"main.cpp": "int main() {}\n" + cpp.test}
    assert job["steps"] == [["g++", "-std=c++17", "-o", "main", "main.cpp"], ["./main"]]
    go = execute._job(load_benchmark("multipl-e-go").problems[0], "package main", 5.0)
    assert list(go["files"]) == ["main_test.go", "go.mod"] and go["env"]["CGO_ENABLED"] == "0"
    assert execute.task_timeout(cpp, None, 3.0) == 33.0


def test_special_comparisons_are_named_by_the_dataset_and_known_to_the_oracle() -> None:
    from evolcoder.eval.sandbox.oracle import RULES

    named = {p.task_id: p.compare for name in ("humaneval+", "mbpp+") for p in load_benchmark(name).problems
             if p.compare}
    assert set(named.values()) <= set(RULES)
    assert named["HumanEval/32"] == "poly_root" and named["Mbpp/2"] == "set"
    assert not [p for p in load_benchmark("mbpp").problems if p.compare]  # assert-judged MBPP needs none


def test_report_reads_the_provenance_block_old_and_new() -> None:
    from evolcoder.report import _decoding

    assert _decoding({"provenance": {"mode": "completion", "dtype": "float32"}}) == "completion, float32"
    assert _decoding({"provenance": {"decoding": {"mode": "instruct", "dtype": "bfloat16"}}}) == "instruct, bfloat16"
