"""The seed stage: formats, validation with file:line, stable ids, reproducible sampling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.config import SeedConfig
from evolcoder.errors import ConfigError, DataError
from evolcoder.dataset.seed import load_seed
from evolcoder.records import record_id

REPO = Path(__file__).resolve().parents[1]


def _cfg(path: Path, **kw) -> SeedConfig:
    return SeedConfig(path=str(path), **kw)


def test_json_array_jsonl_and_saved_dataset_agree(tmp_path: Path) -> None:
    import datasets

    rows = [{"instruction": f"Write function number {i}.", "input": "", "output": f"def f{i}(): pass"}
            for i in range(5)]
    array = tmp_path / "seed.json"
    array.write_text(json.dumps(rows, indent=2))
    jsonl = tmp_path / "seed.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    results = [load_seed(_cfg(p)).records for p in (array, jsonl, saved)]
    assert results[0] == results[1] == results[2]
    assert [r["id"] for r in results[0]] == [record_id(r["instruction"]) for r in rows]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('[\n  {"instruction": "ok"},\n  {"instruction": ""}\n]', ":3:", "empty"),
        ('[\n  {"instruction": "ok"},\n\n  {"instruction": "x", "output": 5}\n]', ":4:", "'output' must be a string"),
        ('[\n  {"instruction": "ok"},\n  {"instruction": "x",,}\n]', ":3:", "invalid JSON"),
        ('[\n  "just a string"\n]', ":2:", "expected an object"),
    ],
)
def test_bad_array_records_name_file_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = tmp_path / "seed.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_seed(_cfg(path))
    assert f"{path}{where}" in str(err.value) and what in str(err.value)


def test_bad_jsonl_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b'{"instruction": "a"}\n{"instruction": "b"}\n\xff\xfe\n')
    with pytest.raises(DataError, match=rf"{path}:3: not valid UTF-8"):
        load_seed(_cfg(path))


def test_skip_mode_counts_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_text('{"instruction": "a"}\n{"instruction": 3}\n{"instruction": "a"}\n{"instruction": "b"}\n')
    result = load_seed(_cfg(path, on_error="skip"))
    assert result.stats == {"read": 4, "skipped": 1, "duplicates": 1, "written": 2, "skipped_lines": [2],
                            "skipped_by_reason": {"'instruction' is missing or not a string": 1}}
    assert result.skipped == [f"{path}:2: 'instruction' is missing or not a string"]


def test_skip_mode_skips_malformed_and_undecodable_lines_by_line_number(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b'{"instruction": "a"}\n{"instruction": "b",,}\n\n{"instruction": "c"}\n'
                     b'\xff\xfe\n{"instruction": \n{"instruction": "d"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        load_seed(_cfg(path))
    result = load_seed(_cfg(path, on_error="skip"))
    assert [r["instruction"] for r in result.records] == ["a", "c", "d"]
    assert result.stats["skipped"] == 3 and result.stats["skipped_lines"] == [2, 5, 6]
    assert result.stats["skipped_by_reason"] == {"invalid JSON": 2, "not valid UTF-8": 1}
    assert result.skipped[0].startswith(f"{path}:2: invalid JSON")


def test_missing_local_path_names_seed_path(tmp_path: Path) -> None:
    from evolcoder.dataset.seed import fingerprint

    for missing in (str(tmp_path / "nope.jsonl"), "data/seed/input.jsonl", "seeds.json"):
        with pytest.raises(ConfigError, match=r"params: seed.path: .* does not exist"):
            load_seed(_cfg(Path(missing)))
        with pytest.raises(ConfigError, match=r"params: seed.path: .* does not exist"):
            fingerprint(missing)


def test_file_fingerprint_follows_content(tmp_path: Path) -> None:
    from evolcoder.dataset.seed import fingerprint

    path = tmp_path / "seed.jsonl"
    path.write_text('{"instruction": "a"}\n')
    first = fingerprint(str(path))
    assert first == fingerprint(str(path)) and first["kind"] == "file"
    path.write_text('{"instruction": "b"}\n')
    assert fingerprint(str(path))["sha256"] != first["sha256"]


def test_sampling_is_reproducible_and_seeded() -> None:
    path = REPO.parent / "shared" / "data" / "codealpaca" / "code_alpaca_2k.json"
    if not path.exists():
        pytest.skip("shared Code Alpaca copy not present")
    a = load_seed(_cfg(path, n=20, seed=1)).records
    b = load_seed(_cfg(path, n=20, seed=1)).records
    c = load_seed(_cfg(path, n=20, seed=2)).records
    assert a == b and len(a) == 20 and {r["id"] for r in a} != {r["id"] for r in c}


def test_stage_fails_cleanly_and_leaves_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "fine"}\n{"input": "no instruction"}\n')
    params = tmp_path / "params.yaml"
    params.write_text(f"seed:\n  path: {bad}\n")
    out = tmp_path / "out" / "seed.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "seed.py"), "--params", str(params),
                           "--out", str(out), "--metrics", str(tmp_path / "m.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}:2: 'instruction' is missing" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out/*"))


def test_stage_rejects_unknown_params_key(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed:\n  sample_size: 10\n")
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "seed.py"), "--params", str(params),
                           "--out", str(tmp_path / "s.jsonl"), "--metrics", str(tmp_path / "m.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "params: seed.sample_size: unknown key" in proc.stderr


def _hub_snapshot(home: Path, repo: str, revision: str, rows: list[dict]) -> None:
    """A dataset in the local Hugging Face hub cache layout, as a download would leave it."""
    base = home / "hub" / f"datasets--{repo.replace('/', '--')}"
    snap = base / "snapshots" / revision
    snap.mkdir(parents=True)
    (snap / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(revision)


@pytest.mark.slow
def test_hub_seed_is_snapshotted_then_versioned_by_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id is exported at a pinned commit to a file; DVC then re-runs `seed` only when the file changes."""
    from dvcproject import default_params, make_project, out, ran, sh

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [{"instruction": f"Write function number {i}.", "output": "pass"} for i in range(3)]
    first, second = "1" * 40, "2" * 40
    _hub_snapshot(home, "tester/seeds", first, rows[:2])
    params = default_params()
    params["seed"].update({"path": "tester/seeds", "n": 0})
    project = make_project(tmp_path, params)
    evolcoder = str(Path(sys.executable).with_name("evolcoder"))

    direct = sh(project, sys.executable, "stages/seed.py", "--out", "s.jsonl", "--metrics", "m.json", check=False)
    assert direct.returncode == 2 and "evolcoder export-seed tester/seeds data/seed/tester--seeds.jsonl" in out(direct)
    assert sh(project, "dvc", "repro", "seed", check=False).returncode != 0

    exported = sh(project, evolcoder, "export-seed", "tester/seeds", "data/seed/tester--seeds.jsonl")
    assert f"hub commit {first}" in out(exported)
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace(
        "path: tester/seeds", "path: data/seed/tester--seeds.jsonl"))
    assert ran(sh(project, "dvc", "repro", "seed")) == {"seed"}
    assert json.loads((project / "metrics/seed.json").read_text())["written"] == 2
    assert ran(sh(project, "dvc", "repro", "seed")) == set(), "same snapshot: nothing runs"

    _hub_snapshot(home, "tester/seeds", second, rows)  # the dataset moved on the hub: update the seed
    pinned = sh(project, evolcoder, "export-seed", "tester/seeds", "data/seed/tester--seeds.jsonl",
                "--revision", first)
    assert f"hub commit {first}" in out(pinned)
    assert ran(sh(project, "dvc", "repro", "seed")) == set(), "re-exported at the pinned commit: same bytes"
    sh(project, evolcoder, "export-seed", "tester/seeds", "data/seed/tester--seeds.jsonl")
    assert ran(sh(project, "dvc", "repro", "seed")) == {"seed"}
    assert len((project / "data/seed/seed.jsonl").read_text().splitlines()) == 3

    missing = project / "params.yaml"
    missing.write_text(missing.read_text().replace("path: data/seed/tester--seeds.jsonl",
                                                   "path: data/seed/missing.jsonl"))
    failed = sh(project, "dvc", "repro", "seed", check=False)
    assert failed.returncode != 0 and "data/seed/missing.jsonl" in out(failed)
