"""The report as a pipeline output: this run's train.jsonl sha256, offline SVG figures (checked
in a real headless Chromium where one is installed), and the paper's arms side by side."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from evolcoder.experiments.arms import arms_section
from evolcoder.report import write_report

SHA = "ab" * 32
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _metrics(tmp: Path) -> Path:
    m = tmp / "metrics"
    m.mkdir()
    merge = {"records_in": 30, "records_out": 10, "by_round": {"round_1": 6, "round_2": 4}, "dropped": {},
             "contamination": {"by_reason": {}}, "train_sha256": SHA,
             "near_duplicates": {"measure": "Jaccard of padded word 2-shingle sets", "threshold": 0.65,
                                 "lineage": "records of the same root_id never compared"},
             "control": {"by": "tokens", "seed": 0, "seed_records": 10, "seed_tokens": 900, "evolved_records": 20,
                         "evolved_tokens": 2400, "train_records": 8, "train_tokens": 890, "tokens_off": 10}}
    rounds = {f"r{n}": {"records": 10, "mean": 0.1 + n / 100,
                        "by_benchmark": {"humaneval": {"p90": 0.2, "max": 0.3 + n / 10}}} for n in range(4)}
    evol = {"rounds": 3, "per_round": {}, "test_similarity": {"measure": "TF-IDF cosine over word 1-2-grams",
                                                              "benchmarks": ["humaneval"], "rounds": rounds}}
    rows = [{"round": n, "mean_instruction_words": 10.0 + 5 * n, "kept": 10, "test_similarity": 0.1 + n / 100}
            for n in range(4)]
    for name, data in (("merge.json", merge), ("evol.json", evol), ("evol_rounds.json", rows)):
        (m / name).write_text(json.dumps(data))
    return m


def test_report_names_this_runs_training_set_and_links_its_figures(tmp_path: Path) -> None:
    m = _metrics(tmp_path)
    out, figures = write_report(m, m / "report.md", m / "figures")
    text = out.read_text()
    assert f"sha256 `{SHA}`" in text and "merge.match: tokens" in text and "| trained on | 8 | 890 |" in text
    assert "![Test-set similarity by round](figures/test_similarity.svg)" in text
    assert "| r3 | 10 | 0.13 | 0.2 | 0.6 |" in text
    assert [f.name for f in figures] == ["test_similarity.svg", "mean_instruction_words.svg"]
    svg = ET.parse(figures[0]).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}polyline")) == 1 and len(svg.findall(f"{ns}circle")) == 4
    assert "http" not in figures[0].read_text().replace("http://www.w3.org/2000/svg", "")  # nothing to fetch


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install -y chromium)")
def test_figures_render_offline_in_headless_chromium(tmp_path: Path) -> None:
    m = _metrics(tmp_path)
    _, figures = write_report(m, m / "report.md", m / "figures")
    page = m / "figures.html"
    page.write_text("<html><body style='margin:0'>" + "".join(f"<img src='figures/{f.name}'>" for f in figures)
                    + "</body></html>")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,400", f"--screenshot={shot}",
           page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    pixels = _png_pixels(shot.read_bytes())
    assert (31, 119, 180) in pixels  # the series' stroke (#1f77b4): the curve was drawn, offline
    assert (255, 255, 255) in pixels and len(pixels) > 20  # axes, labels and anti-aliasing, not a blank page


def _png_pixels(png: bytes) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of an 8-bit RGB/RGBA PNG (stdlib only: zlib and the five filters)."""
    import struct
    import zlib

    pos, chunks, header = 8, [], b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        header = body if kind == b"IHDR" else header
        chunks += [body] if kind == b"IDAT" else []
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    prev, seen = bytearray(stride), set()
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            a, b = line[i - bpp] if i >= bpp else 0, prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        seen.update(tuple(line[i:i + 3]) for i in range(0, stride, bpp))
        prev = line
    return seen


def _node(rev: str, name: str, rounds: int, match: str | None, dev: list[float], ts: str) -> dict:
    tasks = [f"EvolDev/{i}" for i in range(len(dev))]
    metrics = {"metrics/dev.json": {"data": {"dev": {"pass@1": sum(dev) / len(dev), "task_ids": tasks,
                                                     "per_task_pass@1": dev}}},
               "metrics/eval.json": {"data": {"humaneval": {"pass@1": 0.1, "task_ids": tasks,
                                                            "per_task_pass@1": dev}}}}
    metrics["metrics/merge.json"] = {"data": {"records_out": len(dev)}}
    params = {"params.yaml": {"data": {"evol": {"rounds": rounds}, "merge": {"match": match}}}}
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "timestamp": ts, "params": params, "metrics": metrics}}


def test_arms_side_by_side_with_paired_intervals() -> None:
    exps = [_node("a" * 40, "original", 0, None, [0, 1, 0, 0, 1, 0], "2026-01-02"),
            _node("b" * 40, "samples", 3, "samples", [1, 1, 0, 1, 1, 0], "2026-01-03"),
            _node("c" * 40, "tokens", 3, "tokens", [1, 1, 1, 1, 1, 0], "2026-01-04")]
    baseline = _node("d" * 40, "main", 3, None, [0, 1, 1, 0, 1, 0], "2026-01-01")
    baseline["experiments"] = [{"revs": [e], "executor": None, "name": e["data"]["rev"]} for e in exps]
    lines = "\n".join(arms_section([baseline]))
    assert "| evolved, matched by samples | samples | 3 | 6 |  |" in lines
    assert "| original (evol.rounds=0) | original | 0 |" in lines
    tokens_row = next(line for line in lines.splitlines() if line.startswith("| evolved, matched by tokens"))
    assert "+0.5000 [" in tokens_row and "(6 tasks)" in tokens_row


def test_evol_stop_leaves_the_control_arms_out_of_the_rounds_sweep() -> None:
    from evolcoder.experiments.evolstop import candidates, parse_exp_show

    exps = [_node("a" * 40, "three", 3, None, [0, 1, 0, 1], "2026-01-02"),
            _node("b" * 40, "three-matched", 3, "samples", [1, 1, 1, 1], "2026-01-03")]
    baseline = _node("d" * 40, "main", 2, None, [0, 1, 1, 0], "2026-01-01")
    baseline["experiments"] = [{"revs": [e], "executor": None, "name": e["data"]["rev"]} for e in exps]
    assert [(r.rounds, r.name) for r in candidates(parse_exp_show([baseline]))] == [(2, "main"), (3, "three")]
