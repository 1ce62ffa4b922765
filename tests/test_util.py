"""The one-helper-per-job modules (`evolcoder.util`, JSONL in `evolcoder.jsonio`).

The fence, stop and hashing helpers replaced several implementations whose outputs feed
stored data (dedup fingerprints, verification, eval samples, cache keys), so each is checked
against the implementation it replaced, kept here verbatim as the reference, on inputs
chosen for the cases where such parsers usually differ.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

import pytest

from evolcoder.errors import DataError
from evolcoder.evolution.checks import code_blocks
from evolcoder.jsonio import read_jsonl, write_jsonl
from evolcoder.util import fences
from evolcoder.util.atomic import atomic_dir, atomic_open, atomic_write
from evolcoder.util.hashing import file_sha256, files_sha256, json_sha256, manifest
from evolcoder.util.hubid import looks_like_hub_dataset, looks_local, path_shaped
from evolcoder.util.stops import cut_at_stops

# --- the replaced implementations (as they were at 7179784), the reference for equality ---

_FP_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)  # dataset/fingerprint.py
_CHECKS_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)  # evolution/checks.py
_PYTHON_TAGS = {"", "python", "py", "python3", "pycon"}


def _old_fingerprint_blocks(text: str) -> list[str]:
    blocks = _FP_FENCE.findall(text)
    return blocks if blocks else [text]


def _old_checks_code_blocks(text: str) -> list[str]:
    from evolcoder.evolution.checks import _parsable_prefix, _parses

    closed = _CHECKS_FENCE.findall(text)
    blocks = [body for tag, body in closed if tag.lower() in _PYTHON_TAGS]
    tail = text.split("```")
    if len(tail) % 2 == 0:
        tag, _, body = tail[-1].partition("\n")
        if tag.strip().lower() in _PYTHON_TAGS:
            blocks.append(body)
    blocks = [b for b in map(_parsable_prefix, blocks) if b.strip()]
    if not closed and len(tail) == 1 and _parses(text) and text.strip():
        blocks = [text]
    return blocks


def _old_postprocess_fenced(text: str, tags: tuple[str, ...]) -> tuple[str | None, bool]:
    match = re.compile(r"```(?:%s)[ \t]*\n" % "|".join(map(re.escape, tags))).search(text)
    if match is None:
        return None, False
    body = text[match.end():]
    end = body.find("```")
    return (body if end < 0 else body[:end]), "```" in text[match.end():]


def _old_any_fence(text: str) -> str | None:
    match = re.search(r"```[^\n`]*\n", text)
    if match is None:
        return None
    body = text[match.end():]
    end = body.find("```")
    return body if end < 0 else body[:end]


PIECES = ["```python\n", "```py thing\n", "```\n", "```cpp\n", "```python", "x = 1\n", "prose ``` inline\n",
          "```", "``", "`", "\n", "def f():\n    return 2\n", "```Python \t\n", "```{python}\n", "``` python\n"]
TEXTS = ["", "plain text", "def f(): pass"] + ["".join(combo) for combo in itertools.product(PIECES, repeat=3)]


def test_fence_blocks_match_the_three_parsers_they_replaced() -> None:
    for text in TEXTS:
        found = fences.blocks(text)
        assert ([b.body for b in found] or [text]) == _old_fingerprint_blocks(text), text
        assert code_blocks(text) == _old_checks_code_blocks(text), text
        for tags in (("python", "py", "Python", "python3"), ("cpp", "c++", "C++")):
            block = fences.find_block(text, tags)
            old = _old_postprocess_fenced(text, tags)
            assert (None, False) == old if block is None else (block.body, block.closed) == old, text
        assert (found[0].body if found else None) == _old_any_fence(text), text


def test_an_open_last_block_runs_to_the_end() -> None:
    (block,) = fences.blocks("Here:\n```python\ndef f():\n    return 1\n")
    assert (block.tag, block.closed, block.body) == ("python", False, "def f():\n    return 1\n")
    assert [b.tag for b in fences.blocks("```py x\na\n```\n```js\nb\n```")] == ["py", "js"]


def test_cut_at_stops_is_the_earliest_and_ignores_empty_stops() -> None:
    assert cut_at_stops("a\ndef b\nclass c", ("\nclass ", "\ndef ")) == ("a", True)
    assert cut_at_stops("nothing", ("\ndef ",)) == ("nothing", False)
    assert cut_at_stops("keep all", ("", "zz")) == ("keep all", False)


def test_json_sha256_keeps_each_spelling_it_replaced() -> None:
    data = {"b": ["é", 1], "a": {"z": None, "y": 2.5}}
    assert json_sha256(data) == hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    assert json_sha256(data, ensure_ascii=True) == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    pair = ["add two numbers", "é"]  # records.record_id: a list, no sort_keys needed
    assert json_sha256(pair) == hashlib.sha256(json.dumps(pair, ensure_ascii=False).encode("utf-8")).hexdigest()


def test_file_hashes(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "a.txt").write_text("config")
    assert file_sha256(tmp_path / "a.txt") == hashlib.sha256(b"config").hexdigest()
    expected = hashlib.sha256(b"a.txt" + b"config" + b"b.bin" + b"\x00" * 10).hexdigest()
    assert files_sha256([tmp_path / "b.bin", tmp_path / "a.txt"]) == expected
    assert manifest(tmp_path, 8) == [["a.txt", 6, hashlib.sha256(b"config").hexdigest()], ["b.bin", 10, None]]


def test_atomic_writers_leave_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "data.json"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["data.json"]
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "w").write_text("x")
        raise RuntimeError("killed")
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "out"]
    with atomic_dir(out) as tmp:
        (tmp / "w").write_text("x")
    assert (out / "w").read_text() == "x" and oct(out.stat().st_mode & 0o777) == "0o755"


def test_hub_ids_and_paths(tmp_path: Path) -> None:
    assert looks_like_hub_dataset("sahil280114/codealpaca", (".json",))
    assert not looks_like_hub_dataset("data/seed.json", (".json",)) and not looks_like_hub_dataset("a/b/c")
    assert path_shaped("./m") and path_shaped("a/b/c") and not path_shaped("bigcode/starcoder")
    assert looks_local(str(tmp_path)) and not looks_local("gpt2")


def test_jsonl_round_trip_and_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [{"b": 1, "a": "é"}, [1, 2]]) == 2
    assert path.read_bytes() == '{"a":"é","b":1}\n[1,2]\n'.encode()
    path.write_bytes(b'{"a": 1}\n\n   \n{"a": \n')
    with pytest.raises(DataError, match=r"r\.jsonl:4: invalid JSON: Expecting value \(column 1\)"):
        list(read_jsonl(path))
    path.write_bytes(b'{"a": 1}\n\xff\n{"a": 2}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: not valid UTF-8 \(invalid start byte at byte 0\)"):
        list(read_jsonl(path))
    assert list(read_jsonl(path, skip_bad=True)) == [(1, {"a": 1}), (3, {"a": 2})]
