"""One source of defaults: params.yaml spells out every key with the value the config model defaults to.

A key missing from params.yaml would fall back to a default that DVC never sees (so
changing that default in code would leave stale data "up to date"), and a default that
differs from params.yaml makes `evolcoder params` describe a run nobody makes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evolcoder.config import SECTIONS, build

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def defaults_of(cls: type) -> dict:
    return build(cls, {}, cls.__name__).model_dump()


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_params_yaml_writes_every_key_with_the_default(section: str) -> None:
    written = PARAMS.get(section)
    assert isinstance(written, dict), f"params.yaml has no `{section}` section"
    defaults = defaults_of(SECTIONS[section])
    missing = sorted(set(defaults) - set(written))
    assert not missing, f"params.yaml: {section}: keys missing (DVC cannot see their defaults): {missing}"
    built = build(SECTIONS[section], written, section).model_dump()
    differ = {k: (built[k], defaults[k]) for k in defaults if built[k] != defaults[k]}
    assert not differ, f"params.yaml: {section}: values differ from the model defaults (yaml, code): {differ}"


def test_params_yaml_has_no_unknown_sections() -> None:
    assert set(PARAMS) == set(SECTIONS)
