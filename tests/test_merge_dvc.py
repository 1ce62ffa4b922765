"""The real `dvc repro merge`: planted near-duplicates and contaminated answers in a seed set
end up dropped, listed with their reason and counted, and the card names the licence."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from dvcproject import default_params, make_project, set_llm, sh
from fakeserver import subprocess_server

from evolcoder.records import record_id

pytestmark = pytest.mark.slow
DATA = Path(os.environ.get("EVOLCODER_DATA_DIR", ""))
RESOURCES = Path(__file__).resolve().parents[1] / "src" / "evolcoder" / "resources"


@pytest.mark.skipif(not (DATA / "humaneval").is_dir(), reason="EVOLCODER_DATA_DIR has no benchmark copies")
def test_planted_duplicates_and_contamination_are_dropped_and_counted(tmp_path: Path) -> None:
    clean = [json.loads(line) for line in (RESOURCES / "seed.jsonl").read_text().splitlines()][:8]
    he = [json.loads(line) for line in gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    mbpp = [json.loads(line) for line in (DATA / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    base = ("Write a Python function that takes a list of dictionaries describing books, keeps the ones "
            "published after a given year and returns their titles sorted alphabetically")
    near = [{"instruction": base + ".", "input": "", "output": "def f(b, y):\n    return sorted(x['title'] for x in b if x['year'] > y)"},
            {"instruction": base + ", without duplicates.", "input": "", "output": "def g(): pass"},
            {"instruction": base.upper() + "!", "input": "", "output": "def h(): pass"}]
    program = he[12]["prompt"].split('"""')[0] + he[12]["canonical_solution"]
    renamed = program.replace("longest", "pick_best").replace("strings", "names").replace("max_len", "top")
    tainted = [
        {"instruction": "Return the longest of some strings, the first one on ties.", "input": "",
         "output": f"Here you go:\n\n```python\n{renamed}```\nIt returns None for an empty list."},
        {"instruction": "Write a helper for my script that finds shared items.", "input": "",
         "output": "```python\n" + mbpp[1]["code"].replace("similar_elements", "shared").replace("test_tup", "t") + "\n```"},
    ]
    seed = tmp_path / "code_alpaca_sample.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in clean + near + tainted))
    with subprocess_server() as base_url:
        params = default_params()
        params["seed"].update(path=str(seed), n=0)
        params["evol"]["rounds"] = 1
        set_llm(params, provider="openai", model="fake", base_url=base_url, concurrency=4)
        project = make_project(tmp_path, params)
        sh(project, "dvc", "repro", "merge")

    metrics = json.loads((project / "metrics/merge.json").read_text())
    dropped = [json.loads(line) for line in (project / "data/train/dropped.jsonl").read_text().splitlines()]
    by_id = {d["id"]: d for d in dropped}
    ids = [record_id(r["instruction"]) for r in near + tainted]
    assert ids[0] not in by_id  # the earliest of the near-duplicates is kept
    for i in ids[1:3]:
        assert by_id[i]["reason"] == "near_duplicate" and by_id[i]["kept_id"] == ids[0]
        assert 0.8 <= by_id[i]["similarity"] <= 1.0
    assert {(h["field"], h["detector"], h["benchmark"]) for h in by_id[ids[3]]["hits"]} == {("output", "code", "humaneval")}
    assert by_id[ids[4]]["reason"] == "contaminated" and by_id[ids[4]]["hits"][0]["benchmark"] == "mbpp-full"
    assert metrics["dropped"] == dict(Counter(d["reason"] for d in dropped))
    assert metrics["dropped"]["near_duplicate"] >= 2 and metrics["dropped"]["contaminated"] >= 2
    assert metrics["contamination"]["by_reason"]["output_code"] >= 2
    train_ids = {json.loads(line)["id"] for line in (project / "data/train/train.jsonl").read_text().splitlines()}
    assert not train_ids & set(ids[1:]) and ids[0] in train_ids
    card = (project / "data/train/README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "CC BY-NC 4.0" in card
    assert f"| {metrics['records_in']} | {metrics['records_out']} |" in card

    assert sh(project, "dvc", "status", "merge").stdout.strip().endswith("up to date.")
