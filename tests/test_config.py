"""Params are validated on load: unknown keys and wrong types name the offending key."""

from __future__ import annotations

import pytest

from evolcoder.config import SECTIONS, EvolConfig, LLMConfig, SeedConfig, build, load_section
from evolcoder.errors import ConfigError


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
        (EvolConfig, "evol", {"per_round": {"r2": {"sed": 1}}}, "evol.per_round.r2.sed"),
        (EvolConfig, "evol", {"per_round": {"three": {"seed": 1}}}, "evol.per_round.three"),
        (LLMConfig, "llm", {"concurrency": 0}, "llm.concurrency"),
        (LLMConfig, "llm", {"provider": "anthropic"}, "llm.provider"),
        (LLMConfig, "llm", {"temperature": True}, "llm.temperature"),
        (LLMConfig, "llm", {"api_key": "sk-..."}, "llm.api_key"),
    ],
)
def test_bad_values_name_the_key(cls: type, section: str, data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(cls, data, section)
    assert f"params: {key}:" in str(err.value)


def test_ints_are_accepted_where_floats_are_expected() -> None:
    cfg = build(LLMConfig, {"temperature": 1, "timeout_s": 30}, "llm")
    assert cfg.temperature == 1.0 and isinstance(cfg.timeout_s, float)


def test_nested_overrides_are_typed() -> None:
    cfg = build(EvolConfig, {"per_round": {"r3": {"seed": 7}}}, "evol")
    assert cfg.per_round["r3"].seed == 7 and cfg.per_round["r3"].methods is None


def test_yaml_errors_name_file_and_line(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed:\n  n: 3\n evol: [\n")
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: invalid YAML"):
        load_section(SeedConfig, "seed", path)


def test_repo_params_file_is_valid() -> None:
    from pathlib import Path

    params = Path(__file__).resolve().parents[1] / "params.yaml"
    for name, cls in SECTIONS.items():
        load_section(cls, name, params)


def test_unknown_section_is_rejected(tmp_path) -> None:
    from evolcoder.config import validate_all

    path = tmp_path / "params.yaml"
    path.write_text("seed: {n: 2}\nfinetnue: {learning_rate: 1.0e-5}\n")
    with pytest.raises(ConfigError, match="params: finetnue: unknown section"):
        validate_all(path)
