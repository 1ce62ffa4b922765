"""The user-facing CLI: presets merge into params.yaml safely; every command has help."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from evolcoder.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_every_command_and_option_has_help() -> None:
    for name, command in main.commands.items():
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.name}"


def test_preset_merges_and_validates(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    result = CliRunner().invoke(main, ["preset", str(REPO / "configs/presets/wizardcoder.yaml"),
                                       "--params", str(params)])
    assert result.exit_code == 0, result.output
    merged = yaml.safe_load(params.read_text())
    assert merged["finetune"]["learning_rate"] == 2e-5 and merged["finetune"]["warmup_steps"] == 30
    assert merged["seed"] == yaml.safe_load((REPO / "params.yaml").read_text())["seed"]
    assert "# evolcoder pipeline parameters" in params.read_text()


def test_bad_preset_changes_nothing(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  max_length: 0\n")
    result = CliRunner().invoke(main, ["preset", str(bad), "--params", str(params)])
    assert result.exit_code == 2 and "params: finetune.max_length" in result.output
    assert params.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml",
                                                                                          "params.yaml"]
