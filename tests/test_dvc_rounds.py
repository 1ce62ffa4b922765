"""The real `dvc repro` / `dvc exp run` in a temporary git repo: which round stages run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvcproject import default_params, make_project, out, ran, set_llm, sh
from fakeserver import subprocess_server

pytestmark = pytest.mark.slow


def loopback_params(seed: Path, base_url: str, rounds: int) -> dict:
    """The default params with this seed file, `rounds` rounds, and the loopback server as evolver."""
    params = default_params()
    params["seed"]["path"] = str(seed)
    params["evol"]["rounds"] = rounds
    set_llm(params, provider="openai", model="fake", base_url=base_url, concurrency=4)
    params["merge"]["decontaminate"] = ["humaneval"]
    return params


def test_rounds_rerun_only_what_changed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} squared plus n.",
                                        "output": f"def f(n):\n    return {i} ** 2 + n"}) + "\n"
                            for i in range(6)))
    with subprocess_server() as base_url:
        project = make_project(tmp_path, loopback_params(seed, base_url, rounds=3))

        first = sh(project, "dvc", "repro", "merge")
        assert {"seed", "plan", "evolver", "round@1", "round@2", "round@3", "merge"} <= ran(first)
        train = [json.loads(line) for line in (project / "data/train/train.jsonl").read_text().splitlines()]
        assert sorted({r["round"] for r in train}) == [0, 1, 2, 3]
        evol = json.loads((project / "metrics/evol.json").read_text())
        assert evol["rounds"] == 3 and evol["per_round"]["r3"]["kept"] == 6

        assert ran(sh(project, "dvc", "repro", "merge")) == set()  # nothing changed: nothing runs
        sh(project, "git", "add", "-A")
        sh(project, "git", "commit", "-qm", "three rounds")

        four = ran(sh(project, "dvc", "exp", "run", "-S", "evol.rounds=4", "merge"))
        assert {"plan", "round@4", "merge"} <= four
        assert not four & {"seed", "evolver", "round@1", "round@2", "round@3"}

        reseed = ran(sh(project, "dvc", "exp", "run", "-S", "+evol.per_round.r3.seed=7", "merge"))
        assert {"plan", "round@3", "merge"} <= reseed
        assert not reseed & {"seed", "evolver", "round@1", "round@2"}

        reworded = ran(sh(project, "dvc", "exp", "run", "-S",
                          "+evol.per_round.r3.heuristics.constraints=Add two new constraints to the problem.",
                          "merge"))
        assert {"plan", "round@3", "merge"} <= reworded
        assert not reworded & {"seed", "evolver", "round@1", "round@2"}

        too_many = sh(project, "dvc", "exp", "run", "-S", "evol.rounds=11", "merge", check=False)
        assert too_many.returncode != 0
        assert "evol.rounds: is 11 but dvc.yaml declares only 10" in out(too_many)
        assert "vars: slots" in out(too_many)


def test_merge_fails_when_an_active_round_is_not_among_its_inputs(tmp_path: Path) -> None:
    """A slot added to the plan but missing from dvc.yaml must not silently drop out of train.jsonl."""
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Write a function that returns {i} cubed."}) + "\n"
                            for i in range(3)))
    with subprocess_server() as base_url:
        project = make_project(tmp_path, loopback_params(seed, base_url, rounds=2))
        sh(project, "dvc", "repro", "merge")
        plan = project / "data/plan"
        manifest = json.loads((plan / "manifest.json").read_text())
        (plan / "manifest.json").write_text(json.dumps({**manifest, "active": [1, 2, 3]}))
        proc = sh(project, "python", "stages/merge.py", "--seed", "data/seed/seed.jsonl", "--plan-dir", "data/plan",
                  "--rounds-dir", "data/rounds", "--out", "t.jsonl", "--dropped", "d.jsonl", "--metrics", "m.json",
                  "--evol-metrics", "e.json", "--evol-plot", "p.json", "--card", "c.md", check=False)
        assert proc.returncode == 2
        assert "round 3 is active in the plan but its outputs are not that round's" in out(proc)
        assert not (project / "t.jsonl").exists()
