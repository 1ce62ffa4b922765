"""Params are validated on load: unknown keys and wrong types name the offending key and file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evolcoder.config import (SECTIONS, EvalConfig, EvolConfig, EvolverConfig, LLMConfig, LLMTransport, Params,
                              SandboxConfig, SeedConfig, build, describe, load_section, validate_all)
from evolcoder.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_build_for_every_section() -> None:
    for name, cls in SECTIONS.items():
        assert isinstance(build(cls, {}, name), cls)


@pytest.mark.parametrize(
    ("cls", "section", "data", "key"),
    [
        (SeedConfig, "seed", {"nn": 3}, "seed.nn"),
        (SeedConfig, "seed", {"n": "3"}, "seed.n"),
        (SeedConfig, "seed", {"n": -1}, "seed.n"),
        (SeedConfig, "seed", {"on_error": "ignore"}, "seed.on_error"),
        (EvolConfig, "evol", {"rounds": 2.5}, "evol.rounds"),
        (EvolConfig, "evol", {"methods": {"constraints": 0}}, "evol.methods"),
        (EvolConfig, "evol", {"methods": {"constraints": -1}}, "evol.methods.constraints"),
        (EvolConfig, "evol", {"per_round": {"r2": {"sed": 1}}}, "evol.per_round.r2.sed"),
        (EvolConfig, "evol", {"per_round": {"three": {"seed": 1}}}, "evol.per_round.three"),
        (EvolConfig, "evol", {"per_round": {"r1": {"seed": "x"}}}, "evol.per_round.r1.seed"),
        (EvolConfig, "evol", {"heuristics": {"constraints": " "}}, "evol.heuristics.constraints"),
        (LLMTransport, "llm", {"concurrency": 0}, "llm.concurrency"),
        (LLMTransport, "llm", {"api_key": "sk-..."}, "llm.api_key"),
        (LLMTransport, "llm", {"price_per_1k": {"promt": 1.0}}, "llm.price_per_1k.promt"),
        (EvolverConfig, "evolver", {"provider": "anthropic"}, "evolver.provider"),
        (EvolverConfig, "evolver", {"temperature": True}, "evolver.temperature"),
        (EvolverConfig, "evolver", {"top_p": 0}, "evolver.top_p"),
        (EvalConfig, "eval", {"benchmarks": ["humaneval", "nosuchbench"]}, "eval.benchmarks[1]"),
        (EvalConfig, "eval", {"benchmarks": ["humaneval", "humaneval"]}, "eval.benchmarks"),
        (SandboxConfig, "sandbox", {"verify_workers": 0}, "sandbox.verify_workers"),
    ],
)
def test_bad_values_name_the_key(cls: type, section: str, data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(cls, data, section)
    assert f"params: {key}:" in str(err.value)


def test_ints_are_accepted_where_floats_are_expected() -> None:
    cfg = build(LLMTransport, {"timeout_s": 30}, "llm")
    assert cfg.timeout_s == 30.0 and isinstance(cfg.timeout_s, float)


def test_nested_overrides_are_typed() -> None:
    cfg = build(EvolConfig, {"per_round": {"r3": {"seed": 7}}}, "evol")
    assert cfg.per_round["r3"].seed == 7 and cfg.per_round["r3"].methods is None


def test_sections_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        EvolConfig().rounds = 4  # type: ignore[misc]


def test_yaml_errors_name_file_and_line(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed:\n  n: 3\n evol: [\n")
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: invalid YAML"):
        load_section(SeedConfig, "seed", path)


def test_repo_params_file_is_valid() -> None:
    for name, cls in SECTIONS.items():
        assert isinstance(load_section(cls, name, REPO / "params.yaml"), cls)


@pytest.mark.parametrize("preset", sorted((REPO / "configs" / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_are_valid(preset: Path) -> None:
    Params.build(yaml.safe_load(preset.read_text()))


def test_unknown_section_is_rejected(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: {n: 2}\nfinetnue: {learning_rate: 1.0e-5}\n")
    with pytest.raises(ConfigError, match="params: finetnue: unknown section"):
        validate_all(path)


def test_loading_one_section_validates_the_whole_file_and_names_it(tmp_path) -> None:
    """A typo in a section a stage does not read still fails that stage (before any paid call)."""
    path = tmp_path / "my-params.yaml"
    path.write_text("seed: {n: 2}\neval: {benchmarks: [humaneval, nosuchbench]}\n")
    with pytest.raises(ConfigError) as err:
        load_section(SeedConfig, "seed", path)
    assert "params: eval.benchmarks[1]: unknown benchmark 'nosuchbench'" in str(err.value)
    assert str(path) in str(err.value)


def test_moved_keys_say_where_they_live_now() -> None:
    for old, new in [("llm", "model"), ("evol", "verify_workers"), ("dev", "workers")]:
        with pytest.raises(ConfigError, match=rf"params: {old}.{new}: moved to (evolver|sandbox)\."):
            Params.build({old: {new: 1}})


def test_llm_config_joins_the_evolver_and_the_transport(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("evolver: {provider: openai, model: m, temperature: 0.2}\nllm: {concurrency: 3}\n")
    cfg = load_section(LLMConfig, "llm", path)
    assert (cfg.provider, cfg.model, cfg.temperature, cfg.concurrency) == ("openai", "m", 0.2, 3)
    assert Params.load(path).llm_config() == cfg


def test_the_file_is_parsed_once_per_version(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: {n: 2}\n")
    assert Params.load(path) is Params.load(path)
    path.write_text("seed: {n: 3, seed: 1}\n")
    assert Params.load(path).seed.n == 3


def test_describe_reads_the_models() -> None:
    rows = {name: (text, default) for name, text, default in describe(EvolConfig)}
    assert rows["rounds"] == (EvolConfig.model_fields["rounds"].description, 3)
    assert all(text for text, _ in rows.values())


def test_a_typo_in_eval_fails_the_plan_stage(tmp_path) -> None:
    """The first stage that runs (plan, before any round pays for a call) refuses a bad eval section."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["eval"]["benchmarks"] = ["humaneval", "nosuchbench"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "plan.py"), "--params", str(path),
                           "--out-dir", str(tmp_path / "plan"), "--slots", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: params: eval.benchmarks[1]: unknown benchmark 'nosuchbench'" in proc.stderr
    assert not (tmp_path / "plan").exists()
