"""The seed stage: formats, validation with file:line, stable ids, reproducible sampling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.config import SeedConfig
from evolcoder.errors import DataError
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
    assert result.stats == {"read": 4, "skipped": 1, "duplicates": 1, "written": 2}
    assert result.skipped == [f"{path}:2: 'instruction' is missing or not a string"]


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
