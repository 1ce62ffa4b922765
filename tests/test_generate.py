"""Generation: the tiny test model end to end into `execute`, and the endpoint backend.

The tiny model is random, so its code fails; what it shows is the real transformers path
(left-padded batches equal one-by-one generation, early stop changes no sample, sampling
gives n samples per task) feeding the real sandbox. Correct answers come from a real HTTP
server answering `/v1/completions` with the canonical solutions through the real
`openai` client, which shows prompting, post-processing and execution agree end to end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from evolcoder.config import GenerateConfig, build

from evolcoder.errors import ConfigError
from evolcoder.eval.execute import evaluate_samples
from evolcoder.eval.generate import (HFBackend, OpenAIBackend, build_prompt, check_model, generate_samples,
                                make_backend)
from evolcoder.eval.postprocess import postprocess
from evolcoder.eval.problems import load_benchmark

sys.path.insert(0, str(Path(__file__).parent))
from fakeserver import FakeServer  # noqa: E402


@pytest.fixture(scope="module")
def humaneval():
    return load_benchmark("humaneval")


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_model_dir), dtype="float32")


def cfg(**values) -> GenerateConfig:
    return build(GenerateConfig, {"max_new_tokens": 24, **values}, "generate")


def test_tiny_model_into_execute(tiny_backend: HFBackend, humaneval) -> None:
    problems = humaneval.problems[:3]
    for mode in ("instruct", "completion"):
        samples, stats = generate_samples(problems, tiny_backend, cfg(batch_size=3), mode)
        assert [s["task_id"] for s in samples] == [p.task_id for p in problems]
        for s, p in zip(samples, problems):
            assert s["mode"] == mode and isinstance(s["raw"], str)
            style = cfg().prompt_style
            assert s["completion"] == postprocess(s["raw"], mode, prompt=build_prompt(p, mode, style), style=style,
                                                  family=p.family)
            assert 1 <= s["n_tokens"] <= 24
        assert stats["samples"] == 3 and stats["generated_tokens"] == sum(s["n_tokens"] for s in samples)
        report = evaluate_samples(humaneval, samples, ks=(1,), workers=2)
        assert len(report.results) == 3
        assert {r["task_id"] for r in report.results} == {p.task_id for p in problems}
        assert all(r["result"] for r in report.results)
        assert 0.0 <= report.pass_at_k["pass@1"] <= 1.0


def test_left_padded_batches_match_one_by_one(tiny_backend: HFBackend, humaneval) -> None:
    """Prompts of different lengths in one batch generate exactly what they do alone."""
    problems = humaneval.problems[:4]
    alone, _ = generate_samples(problems, tiny_backend, cfg(batch_size=1, early_stop=False), "completion")
    batched, _ = generate_samples(problems, tiny_backend, cfg(batch_size=4, early_stop=False), "completion")
    assert [s["raw"] for s in batched] == [s["raw"] for s in alone]
    assert len({len(p.prompt) for p in problems}) == 4  # really different lengths


def test_early_stop_changes_no_sample(tiny_backend: HFBackend, humaneval) -> None:
    """A very common stop string makes early stop fire; the scored code stays the same.

    Sampled (the random tiny model's greedy text is all newlines): finished rows still draw
    their token each step, so both runs consume the seeded RNG identically.
    """
    problems = humaneval.problems[:4]
    settings = dict(stop=["e"], batch_size=4, temperature=1.0, seed=3)
    full, _ = generate_samples(problems, tiny_backend, cfg(early_stop=False, **settings), "completion")
    early, _ = generate_samples(problems, tiny_backend, cfg(early_stop=True, **settings), "completion")
    assert [s["completion"] for s in early] == [s["completion"] for s in full]
    assert any(s["finish_reason"] == "early" for s in early)
    assert sum(s["n_tokens"] for s in early) < sum(s["n_tokens"] for s in full)
    for s in early:
        assert "e" not in s["completion"]


def test_sampling_n_per_task_is_seeded(tiny_backend: HFBackend, humaneval) -> None:
    problems = humaneval.problems[:2]
    settings = cfg(n=3, temperature=1.0, top_p=0.95, seed=7, batch_size=2)
    first, _ = generate_samples(problems, tiny_backend, settings, "completion")
    again, _ = generate_samples(problems, tiny_backend, settings, "completion")
    assert [(s["task_id"], s["completion_id"]) for s in first] == [
        (p.task_id, i) for p in problems for i in range(3)]
    assert [s["raw"] for s in first] == [s["raw"] for s in again]
    assert len({s["raw"] for s in first}) > 1
    report = evaluate_samples(humaneval, first, ks=(1, 3), workers=2)
    assert set(report.pass_at_k) == {"pass@1", "pass@3"}


def test_progress_on_stderr_and_the_resolved_dtype_is_recorded(tiny_model_dir: Path, humaneval,
                                                               capfd: pytest.CaptureFixture) -> None:
    from evolcoder.eval.provenance import verdict_provenance
    from evolcoder.hf.precision import resolve_dtype

    backend = HFBackend(str(tiny_model_dir), dtype="auto", progress=True)
    assert backend.dtype == resolve_dtype("auto", "cpu")
    generate_samples(humaneval.problems[:3], backend, cfg(batch_size=2, max_new_tokens=4), "completion")
    err = capfd.readouterr().err
    assert f"generate ({backend.dtype})" in err and "3/3" in err and "tok/s" in err, err
    assert verdict_provenance(cfg(dtype="auto"), "completion", backend, 3.0)["dtype"] == backend.dtype


def test_journal_resumes_only_the_same_run(tiny_backend: HFBackend, humaneval, tmp_path: Path) -> None:
    """A journal serves the run that wrote it, survives a torn last line, and nothing else."""
    problems = humaneval.problems[:3]
    settings = cfg(batch_size=1)
    first, stats = generate_samples(problems, tiny_backend, settings, "completion", journal_dir=tmp_path)
    assert stats["resumed_samples"] == 0 and stats["generated_samples"] == 3
    journal = stats["journal"]
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # killed while writing the third
    again, stats = generate_samples(problems, tiny_backend, settings, "completion", journal_dir=tmp_path)
    assert (stats["resumed_samples"], stats["generated_samples"]) == (2, 1)
    assert again == first
    assert len(journal.read_text().splitlines()) == 4  # the torn line is closed, the batch written after it
    _, stats = generate_samples(problems, tiny_backend, settings, "completion", journal_dir=tmp_path)
    assert stats["resumed_samples"] == 3 and stats["generated_tokens"] == 0
    _, other = generate_samples(problems, tiny_backend, cfg(batch_size=1, max_new_tokens=23), "completion",
                                journal_dir=tmp_path)
    assert other["resumed_samples"] == 0 and other["journal"] != journal


# ---------------------------------------------------------------------------------------
# The endpoint backend over real HTTP


def _canonical_responder(humaneval, mode: str, wrong: set[str] = frozenset()):
    by_prompt = {p.prompt: p for p in humaneval.problems}

    def respond(messages):
        text = messages[-1]["content"]
        # WizardCoder's instruct prompt indents with tabs.
        problem = next(p for prompt, p in by_prompt.items() if prompt in text or prompt.replace("    ", "\t") in text)
        body = "    return None\n" if problem.task_id in wrong else problem.canonical_solution
        if mode == "completion":
            return body + "\n\ndef check_it():\n    pass\n"  # cut by the \ndef stop
        return (f"Here is the script:\n```python\n{problem.prompt}{body}\n```\n\n"
                f"# Example usage\nprint({problem.entry_point})\n")

    return respond


@pytest.mark.parametrize("mode", ["instruct", "completion"])
def test_endpoint_backend_end_to_end(humaneval, mode: str, tmp_path: Path) -> None:
    problems = humaneval.problems[:5]
    wrong = {problems[1].task_id, problems[3].task_id}
    with FakeServer(responder=_canonical_responder(humaneval, mode, wrong)) as server:
        settings = cfg(backend="openai", base_url=server.base_url, api_model="served-model", max_new_tokens=512)
        backend = make_backend(settings, "served-model", cache_path=tmp_path / "cache.sqlite")
        assert isinstance(backend, OpenAIBackend)
        samples, _ = generate_samples(problems, backend, settings, mode)
        bodies = [r for r in server.requests if "prompt" in r]
    assert server.count("/v1/completions") == 5
    assert all(b["model"] == "served-model" and b["max_tokens"] == 512 and b["temperature"] == 0.0
               for b in bodies)
    if mode == "completion":
        assert all(b["stop"] == ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"] for b in bodies)
        assert sorted(b["prompt"] for b in bodies) == sorted(p.prompt for p in problems)
    else:
        assert all(b["prompt"].startswith("Below is an instruction") and b["prompt"].endswith("### Response:")
                   for b in bodies)
    report = evaluate_samples(humaneval, samples, ks=(1,), workers=2)
    passed = {r["task_id"]: r["passed"] for r in report.results}
    assert passed == {p.task_id: p.task_id not in wrong for p in problems}
    assert report.pass_at_k["pass@1"] == pytest.approx(0.6)


def test_endpoint_journal_resumes_without_requests(humaneval, tmp_path: Path) -> None:
    """Journaled tasks are not asked for again, not even of the cache (here: deleted)."""
    problems = humaneval.problems[:4]
    with FakeServer(responder=_canonical_responder(humaneval, "completion")) as server:
        settings = cfg(backend="openai", base_url=server.base_url, api_model="served", max_new_tokens=512)
        backend = make_backend(settings, "served", cache_path=tmp_path / "cache.sqlite")
        first, stats = generate_samples(problems, backend, settings, "completion", journal_dir=tmp_path / "j")
        assert server.count("/v1/completions") == 4 and stats["llm"]["requests"] == 4
        (tmp_path / "cache.sqlite").unlink()
        again, stats = generate_samples(problems, backend, settings, "completion", journal_dir=tmp_path / "j")
        assert server.count("/v1/completions") == 4
    assert stats["resumed_samples"] == 4 and again == first


def test_endpoint_wrong_route_names_the_generate_keys(humaneval, tmp_path: Path) -> None:
    with FakeServer() as server:
        settings = cfg(backend="openai", base_url=server.base_url.replace("/v1", "/v2"), api_model="served")
        backend = make_backend(settings, "served", cache_path=tmp_path / "cache.sqlite")
        with pytest.raises(ConfigError, match=r"params: generate.api_model: 'served' or generate.base_url .*/v2 "
                                              r"not found \(HTTP 404"):
            generate_samples(humaneval.problems[:3], backend, settings, "completion")


# ---------------------------------------------------------------------------------------
# Fail fast


def test_bad_model_paths(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert check_model(str(tiny_model_dir), "hf") == str(tiny_model_dir)
    assert check_model("bigcode/starcoder", "hf") == "bigcode/starcoder"  # a hub id, resolved later
    with pytest.raises(ConfigError, match=re.escape(f"model {tmp_path}/nope: directory not found")):
        check_model(str(tmp_path / "nope"), "hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a model directory"):
        check_model(str(tmp_path / "empty"), "hf")


def test_bad_generate_params() -> None:
    with pytest.raises(ConfigError, match="params: generate.n: is 4 but greedy decoding"):
        cfg(n=4)
    with pytest.raises(ConfigError, match="params: generate.base_url: is required for backend openai"):
        cfg(backend="openai")
    with pytest.raises(ConfigError, match="params: generate.max_new_tokens: expected an integer"):
        cfg(max_new_tokens="lots")


def test_vllm_missing_is_a_clear_error(tiny_model_dir: Path) -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="vllm is not installed"):
            make_backend(cfg(backend="vllm"), str(tiny_model_dir))
    else:
        pytest.skip("vllm is installed here")


def test_generate_cli_fails_fast_and_writes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evolcoder.cli import main

    out = tmp_path / "samples.jsonl"
    runner = CliRunner()
    result = runner.invoke(main, ["generate", "--benchmark", "humaneval-x", "--model", str(tmp_path),
                                  "--out", str(out), "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "error: unknown benchmark 'humaneval-x'" in result.output
    result = runner.invoke(main, ["generate", "--benchmark", "humaneval", "--model", str(tmp_path / "missing"),
                                  "--out", str(out), "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert f"error: model {tmp_path / 'missing'}: directory not found" in result.output
    result = runner.invoke(main, ["generate", "--benchmark", "humaneval", "--model", "x", "--out", str(out),
                                  "--params", str(tmp_path / "none.yaml"), "--set", "n=3"])
    assert result.exit_code == 2
    assert "params: generate.n: is 3 but greedy decoding" in result.output
    assert not out.exists()


def test_generate_cli_with_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from click.testing import CliRunner

    from evolcoder.cli import main
    from evolcoder.eval.execute import read_samples

    out = tmp_path / "samples.jsonl"
    result = CliRunner().invoke(main, [
        "generate", "--benchmark", "mbpp", "--model", str(tiny_model_dir), "--out", str(out), "--limit", "2",
        "--params", str(tmp_path / "none.yaml"), "--set", "max_new_tokens=8", "--set", "dtype=float32",
        "--mode", "completion"])
    assert result.exit_code == 0, result.output
    samples = read_samples(out, load_benchmark("mbpp"))
    assert [s["task_id"] for s in samples] == ["Mbpp/11", "Mbpp/12"]
